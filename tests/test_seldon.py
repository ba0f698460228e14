"""The Seldon model class: in-process for its input checks (against stand-ins for the two
seldon_core names it imports, as seldon-core cannot share this environment), and under the real
`seldon-core-microservice` from .venvs/seldon on the shipped bundle: titles equal the engine's,
bad and hostile payloads get a 4xx with a clear message and the service keeps serving, a busy
service answers 503 with Retry-After and still answers health checks, health, metadata and
metrics answer, a bad bundle or setting stops it with one line, and the service is reachable
only on loopback. The environment also reads a bundle from Cloud Storage (the emulator)."""

from __future__ import annotations

import contextlib
import csv
import importlib
import json
import os
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from servers import assert_sheds_load, build_serving_environment, overload, stopped_by_itself

from serving.microservice import ENVIRONMENT, SERVING, Service, serve
from summarizer import storage
from summarizer.decoding import DEFAULT_LEAD_BONUS
from summarizer.engine import Summarizer

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLE = REPO_ROOT / "models" / "default"
EXAMPLES = REPO_ROOT / "examples" / "issues"
MAX_BATCH = 24  # the service's configured limit; the batch test sends 20 bodies
# What the engine cannot title: bodies that clean down to nothing.
NOTHING_TO_SUMMARIZE = ["\u200b\u200c\ufeff", "\x00", "```\n```", "<!-- describe the bug here -->",
                        "### Describe the bug\n\n### Expected behavior\n\n### Steps to reproduce\n"]
# The web page's decoding: 4 beams, 32 samples and the greedy title, 37 titles a body.
EXPENSIVE = {"CONSENSUS": "on", "NUM_BEAMS": "4", "SAMPLES": "32"}
LONG_BODY = "The app crashes with a KeyError when I open a CSV file after updating to 2.0. " * 5


@pytest.fixture(scope="module")
def bodies() -> list[str]:
    """20 issue bodies from the example files."""
    with open(EXAMPLES / "kaggle-dump.csv", newline="") as handle:
        found = [row["body"] for row in csv.DictReader(handle)]
    found += [issue["body"] for issue in json.loads((EXAMPLES / "rest-api-page.json").read_text())
              if issue.get("body")]
    assert len(found) >= 20
    return found[:20]


@pytest.fixture(scope="module")
def engine() -> Summarizer:
    return Summarizer.load(BUNDLE, threads=1)


# --- the class in-process -------------------------------------------------------------------


class _SeldonError(Exception):
    """Stands in for seldon_core.flask_utils.SeldonMicroserviceException (same signature)."""

    def __init__(self, message: str, status_code: int | None = None, payload: Any = None,
                 reason: str = "MICROSERVICE_BAD_DATA") -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code or 400


class _SeldonNotImplemented(_SeldonError):
    pass


@pytest.fixture(scope="module")
def model_module() -> Iterator[types.ModuleType]:
    flask_utils = types.ModuleType("seldon_core.flask_utils")
    flask_utils.SeldonMicroserviceException = _SeldonError
    user_model = types.ModuleType("seldon_core.user_model")
    user_model.SeldonNotImplementedError = _SeldonNotImplemented
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "seldon_core", types.ModuleType("seldon_core"))
        patch.setitem(sys.modules, "seldon_core.flask_utils", flask_utils)
        patch.setitem(sys.modules, "seldon_core.user_model", user_model)
        patch.delitem(sys.modules, "serving.IssueSummarization", raising=False)
        yield importlib.import_module("serving.IssueSummarization")
        sys.modules.pop("serving.IssueSummarization", None)


@pytest.fixture(scope="module")
def model(model_module: types.ModuleType) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODEL_BUNDLE", str(BUNDLE))
        patch.setenv("MAX_BATCH", "3")
        patch.setenv("MAX_BODY_CHARS", "1000")
        instance = model_module.IssueSummarization()
    instance.load()
    return instance


def _refusal(call: Any, *args: Any) -> _SeldonError:
    with pytest.raises(_SeldonError) as raised:
        call(*args)
    assert not isinstance(raised.value, _SeldonNotImplemented), "it was accepted"
    return raised.value


@pytest.mark.parametrize(("payload", "status", "message"), [
    ({"data": {"ndarray": [["a body"], [5]]}}, 400, "data.ndarray[1] must be"),
    ({"data": {"ndarray": [["a body", "another"]]}}, 400, "data.ndarray[0] must be"),
    ({"data": {"ndarray": ["a body", ["nested"]]}}, 400, "data.ndarray[1] must be a string"),
    ({"data": {"ndarray": [[None]]}}, 400, "data.ndarray[0] must be"),
    ({"data": {"ndarray": "a body"}}, 400, "must be a list"),
    ({"data": {"ndarray": []}}, 400, "no issue bodies"),
    ({"data": {"ndarray": [["  \n\t"]]}}, 400, "body 0 is empty"),
    ({"data": {"ndarray": [["ok"], ["x" * 1001]]}}, 413, "MAX_BODY_CHARS=1,000"),
    ({"data": {"ndarray": [["ok"]] * 4}}, 413, "MAX_BATCH=3"),
    ({"data": {"tensor": {"shape": [1], "values": [1.0]}}}, 400, "no issue bodies found"),
    ({"strData": 7}, 400, "strData must be a string"),
    ({"strData": ""}, 400, "body 0 is empty"),
    ({"jsonData": {"body": "a body"}}, 400, "no issue bodies found"),
])
def test_rest_payload_checks(model: Any, payload: dict, status: int, message: str) -> None:
    refusal = _refusal(model.predict_raw, payload)
    assert refusal.status_code == status
    assert message in refusal.message


@pytest.mark.parametrize("payload", [{"data": {"ndarray": [["a body"], ["another"]]}},
                                     {"data": {"ndarray": ["a body", "another"]}}, {"strData": "a body"}])
def test_good_rest_payloads_go_on_to_predict(model: Any, payload: dict) -> None:
    with pytest.raises(_SeldonNotImplemented):  # Seldon's signal to convert and call predict
        model.predict_raw(payload)


@pytest.mark.parametrize(("features", "message"), [
    (np.array([["a", "b"]]), "shape [1, 2]"),
    (np.array([[1.5]]), "body 0 is not a string"),
    (np.array([["a"], [None]], dtype=object), "body 1 is not a string"),
    ({"body": "a"}, "got dict"),
    (np.array([], dtype=object), "no issue bodies"),
])
def test_predict_refuses_what_is_not_bodies(model: Any, features: Any, message: str) -> None:
    assert message in _refusal(model.predict, features, []).message


def test_predict_keeps_the_request_shape(model: Any, engine: Summarizer, bodies: list[str]) -> None:
    expected = engine.summarize(bodies[:3])
    assert model.predict(np.array([[body] for body in bodies[:3]]), []).tolist() == [[t] for t in expected]
    assert model.predict(np.array(bodies[:3]), []).tolist() == expected
    assert model.predict(bodies[0], []) == expected[0]


@pytest.mark.parametrize("body", NOTHING_TO_SUMMARIZE + ["\ud800 a lone surrogate"])
def test_the_engines_refusals_are_4xx(model: Any, body: str) -> None:
    refusal = _refusal(model.predict, np.array([[body]], dtype=object), [])
    assert refusal.status_code == (400 if "\ud800" in body else 422)


def test_a_request_finding_every_slot_taken_is_told_to_come_back(model: Any) -> None:
    slots = model.settings.max_in_flight
    with contextlib.ExitStack() as taken:
        for _ in range(slots):
            taken.enter_context(model.gate.slot())
        refusal = _refusal(model.predict, np.array([["a body"]]), [])
    assert refusal.status_code == 503 and "busy" in refusal.message
    assert model.predict(np.array([["a body"]]), []).shape == (1, 1)  # the slots are free again


def test_metrics_report_each_request_once(model: Any) -> None:
    model.predict(np.array([["one body"], ["another body"]]), [])
    counter, timer = model.metrics()
    assert counter == {"type": "COUNTER", "key": "issue_summarizer_titles", "value": 2}
    assert timer["type"] == "TIMER" and timer["value"] > 0
    assert model.metrics() == []  # a health check after it adds nothing


def test_tags_health_and_metadata(model: Any, engine: Summarizer) -> None:
    assert model.tags() == {"model_version": engine.version}
    assert model.health_status()["status"] == "ok"
    assert model.init_metadata()["custom"] == {"max_batch": "3", "max_body_chars": "1000"}


@pytest.mark.parametrize(("name", "value", "message"), [
    ("MAX_BATCH", "many", "MAX_BATCH='many' is not an integer"),
    ("MAX_BODY_CHARS", "0", "MAX_BODY_CHARS must be at least 1"),
    ("LENGTH_PENALTY", "x", "LENGTH_PENALTY='x' is not a number"),
    ("REPEAT_PENALTY", "-1", "REPEAT_PENALTY must be at least 0"),
    ("END_PENALTY", "-0.5", "END_PENALTY must be at least 0"),
    ("LEAD_BONUS", "on", "LEAD_BONUS='on' is not a number"),
    ("CONSENSUS", "yes", "CONSENSUS='yes' must be 'on' or 'off'"),
    ("CONSENSUS", "on", "CONSENSUS=on needs titles to choose among: NUM_BEAMS or SAMPLES of 2 or more"),
    ("SAMPLES", "8", "SAMPLES only serve the consensus: set CONSENSUS=on, or SAMPLES=0"),
    ("SAMPLES", "-1", "SAMPLES must be at least 0"),
    ("SAMPLES", "65", "SAMPLES must be at most 64"),
    ("NUM_BEAMS", "17", "NUM_BEAMS must be at most 16"),
    ("MAX_LENGTH", "65", "MAX_LENGTH must be at most 64"),
    ("LENGTH_PENALTY", "nan", "LENGTH_PENALTY='nan' is not a finite number"),
    ("MAX_IN_FLIGHT", "0", "MAX_IN_FLIGHT must be at least 1"),
])
def test_bad_settings_stop_the_start(model_module: types.ModuleType, name: str, value: str,
                                     message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        model_module.Settings.from_env({name: value})


def test_lead_bonus_setting(model_module: types.ModuleType) -> None:
    assert model_module.Settings.from_env({}).lead_bonus == DEFAULT_LEAD_BONUS
    assert model_module.Settings.from_env({"LEAD_BONUS": "off"}).lead_bonus is None
    assert model_module.Settings.from_env({"LEAD_BONUS": "-0.5"}).lead_bonus == -0.5


def test_consensus_settings_reach_the_engine(model_module: types.ModuleType) -> None:
    settings = model_module.Settings.from_env({"CONSENSUS": "on", "NUM_BEAMS": "4", "SAMPLES": "6"})
    assert settings.decoding()["consensus"] is True and settings.decoding()["samples"] == 6
    defaults = model_module.Settings.from_env({})
    assert not defaults.consensus and defaults.samples == 0
    engine = Summarizer.load(BUNDLE, threads=1)
    bodies = ["Hi all, the export button does nothing on Firefox 120. Clicking it shows no error.",
              "Would be nice to support dark mode in the settings page, like the mobile app does."]
    expected = [titles[0].text for titles in engine.candidates(bodies, 1, 4, consensus=True, samples=6)]
    assert len(expected) == 2 and all(expected)
    assert engine.summarize(bodies, **settings.decoding()) == expected


# --- the real microservice ------------------------------------------------------------------


@pytest.fixture(scope="module")
def seldon_env() -> None:
    """.venvs/seldon, built by the script users run (about a minute the first time, then a no-op)."""
    build_serving_environment("seldon")


@pytest.fixture(scope="module")
def service(seldon_env: None) -> Iterator[Service]:
    with serve(BUNDLE, env={"MAX_BATCH": str(MAX_BATCH)}) as running:
        yield running


def test_the_environment_loads_a_bundle_from_cloud_storage(seldon_env: None, gcs_bucket: str,
                                                           engine: Summarizer, tmp_path: Path) -> None:
    """google-cloud-storage works under seldon-core's pins (protobuf<4), so MODEL_BUNDLE may be gs://."""
    url = f"{gcs_bucket}/bundle"
    for file in BUNDLE.iterdir():
        storage.upload_file(str(file), storage.join(url, file.name))
    script = ("import sys; from summarizer.engine import Summarizer; "
              "print(Summarizer.load(sys.argv[1]).summarize([sys.argv[2]])[0])")
    body = "The app crashes when I open a file"
    result = subprocess.run([str(ENVIRONMENT / "bin" / "python"), "-c", script, url, body],
                            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)}, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == engine.summarize([body])[0]


def _post(service: Service, payload: Any, path: str = "/api/v1.0/predictions") -> requests.Response:
    return requests.post(service.url + path, json=payload, timeout=60)


@pytest.mark.parametrize("path", ["/api/v1.0/predictions", "/api/v0.1/predictions"])
def test_a_batch_gets_the_engines_titles(service: Service, engine: Summarizer, bodies: list[str],
                                         path: str) -> None:
    answer = _post(service, {"data": {"ndarray": [[body] for body in bodies]}}, path)
    assert answer.status_code == 200, answer.text
    reply = answer.json()
    assert reply["data"]["ndarray"] == [[title] for title in engine.summarize(bodies)]
    assert reply["data"]["names"] == ["title"]
    assert reply["meta"]["tags"]["model_version"] == engine.version


def test_str_data_and_flat_lists(service: Service, engine: Summarizer, bodies: list[str]) -> None:
    expected = engine.summarize(bodies[:3])
    for body, title in zip(bodies[:3], expected, strict=True):
        answer = _post(service, {"strData": body})
        assert answer.status_code == 200, answer.text
        assert answer.json()["strData"] == title
    assert _post(service, {"data": {"ndarray": bodies[:3]}}).json()["data"]["ndarray"] == expected


@pytest.mark.parametrize(("payload", "status", "message"), [
    (b"this is not JSON", 400, "the request body cannot be read: it is not valid JSON"),
    (b"[" * 1000, 400, "it is nested too deeply"),
    (b'{"data": ' + b"[" * 100_000, 400, "it is nested too deeply"),
    (b'{"strData": "\\ud800 a bug"}', 400, "lone surrogate"),
    (b'{"strData": "\\ud800"}', 400, "lone surrogate"),  # not text, before it is found to hold no words
    (b'{"strData": "\xff\xfe a bug"}', 400, "it is not UTF-8 text"),
    (b'{"strData": ' + b"9" * 5000 + b"}", 400, "a number with more digits"),
    (b'{"strData": NaN}', 400, "NaN is not a JSON value"),
    *[({"strData": body}, 422, "nothing to summarize in body 0") for body in NOTHING_TO_SUMMARIZE],
    ({"data": {"ndarray": [["a real bug report"], ["\u200b"]]}}, 422, "nothing to summarize in body 1"),
    ({"data": {"ndarray": [["a body", "another body"]]}}, 400, "data.ndarray[0] must be"),
    ({"data": {"ndarray": [["a body"], [42]]}}, 400, "data.ndarray[1] must be"),
    ({"data": {"ndarray": [["a body"], [True]]}}, 400, "data.ndarray[1] must be"),
    ({"strData": ["a body"]}, 400, "strData must be a string"),
    ({"data": {"ndarray": [[""]]}}, 400, "body 0 is empty"),
    ({"strData": "   "}, 400, "body 0 is empty"),
    ({"strData": "x" * 1_000_000}, 413, "MAX_BODY_CHARS=100,000"),
    ({"data": {"ndarray": [["a body"]] * (MAX_BATCH + 1)}}, 413, f"MAX_BATCH={MAX_BATCH}"),
    ({"data": {"ndarray": []}}, 400, "no issue bodies"),
    ({}, 400, "no issue bodies found"),
    ([["a body"]], 400, "Invalid request data type"),
])
def test_bad_payloads_get_a_clear_4xx_and_the_service_goes_on(
        service: Service, engine: Summarizer, payload: Any, status: int, message: str) -> None:
    if isinstance(payload, bytes):
        answer = requests.post(service.url + "/api/v1.0/predictions", data=payload, timeout=60,
                               headers={"Content-Type": "application/json"})
    else:
        answer = _post(service, payload)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["status"]["info"]
    assert "Traceback" not in answer.text
    good = _post(service, {"strData": "The app crashes when I open a file"})
    assert good.status_code == 200
    assert good.json()["strData"] == engine.summarize(["The app crashes when I open a file"])[0]


@pytest.mark.parametrize(("how", "field"), [("params", "[" * 1000), ("data", "[" * 1000),
                                            ("data", "not JSON"), ("files", "[" * 1000)])
def test_json_in_form_fields_is_read_strictly_too(service: Service, how: str, field: str) -> None:
    """Seldon also takes the payload from a `json` query argument or form field, or from multipart
    fields, which it parses itself."""
    name = "data" if how == "files" else "json"
    sent = {how: {name: (None, field) if how == "files" else field}}
    answer = requests.post(service.url + "/api/v1.0/predictions", timeout=60, **sent)
    assert answer.status_code == 400, answer.text
    assert "the request's JSON field cannot be read" in answer.json()["status"]["info"]


def test_health_and_metadata(service: Service, engine: Summarizer) -> None:
    assert requests.get(service.url + "/health/ping", timeout=10).text.strip() == "pong"
    status = requests.get(service.url + "/health/status", timeout=30)
    assert status.status_code == 200
    assert status.json()["jsonData"]["model_version"] == engine.version
    metadata = requests.get(service.url + "/api/v1.0/metadata", timeout=10)
    assert metadata.status_code == 200, metadata.text
    assert metadata.json()["name"] == "issue-summarizer"


def _titles_counted(service: Service) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in service.metrics().splitlines()
               if line.startswith("issue_summarizer_titles_total{"))


def test_metrics_count_titles(service: Service) -> None:
    before = _titles_counted(service)
    assert _post(service, {"data": {"ndarray": [["one body"], ["two bodies"], ["three"]]}}).status_code == 200
    assert _titles_counted(service) == before + 3
    assert "issue_summarizer_engine_seconds_bucket" in service.metrics()
    assert service.peak_memory_bytes() > 50 * 2**20


@pytest.fixture(scope="module")
def busy_service(seldon_env: None) -> Iterator[Service]:
    """One slot, expensive decoding, and threads to spare for refusals and health checks."""
    with serve(BUNDLE, env={"MAX_IN_FLIGHT": "1", **EXPENSIVE}, threads=4) as running:
        yield running


def test_a_request_over_the_cost_budget_is_refused(busy_service: Service) -> None:
    answer = _post(busy_service, {"data": {"ndarray": [[LONG_BODY]] * 14}})  # 14 x 37 = 518 > 512
    assert answer.status_code == 413, answer.text
    assert "518 titles decoded" in answer.json()["status"]["info"]
    assert "send at most 13 bodies" in answer.json()["status"]["info"]


def test_a_busy_service_answers_503_and_health_checks_at_once(busy_service: Service) -> None:
    """Four requests of 8 bodies (about 1.5 s each, alone) at once on one slot."""
    found = overload(lambda: _post(busy_service, {"data": {"ndarray": [[LONG_BODY]] * 8}}),
                     busy_service.url + "/health/ping")
    assert_sheds_load(found, lambda answer: answer.json()["status"]["info"])


def _bad_hash(bundle: Path) -> Path:
    """A copy of the shipped bundle (linked) whose manifest gives one file another sha256."""
    for file in BUNDLE.iterdir():
        if file.name != "manifest.json":
            (bundle / file.name).symlink_to(file)
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    digests = manifest["files"]
    name = next(iter(digests))
    digests[name] = "0" * 64
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


@pytest.mark.parametrize(("setup", "message"), [
    pytest.param(lambda folder: {"MODEL_BUNDLE": str(folder / "missing")},
                 "missing: not a model bundle (no manifest.json)", id="no bundle"),
    pytest.param(lambda folder: {"MODEL_BUNDLE": str(_bad_hash(folder))},
                 "differs from the manifest (sha256)", id="a wrong sha256"),
    pytest.param(lambda folder: {"MAX_BATCH": "many"}, "MAX_BATCH='many' is not an integer",
                 id="a bad setting"),
])
def test_a_bad_bundle_or_setting_stops_the_service_with_one_line(
        seldon_env: None, tmp_path: Path, setup: Any, message: str) -> None:
    """The real command, in a network namespace of its own (it binds every interface)."""
    env = {**os.environ, "MODEL_BUNDLE": str(BUNDLE), "GRPC_WORKERS": "0", **setup(tmp_path)}
    command = [str(ENVIRONMENT / "bin" / "seldon-core-microservice"), "IssueSummarization",
               "--service-type", "MODEL"]
    output = tmp_path / "microservice.log"
    with output.open("wb") as out:
        process = subprocess.Popen(["unshare", "-rn", *command], cwd=SERVING, env=env,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    log = stopped_by_itself(process, output, "the service")
    assert process.returncode != 0, log[-3000:]
    line = next((line for line in log.splitlines() if "issue-summarizer: error: " in line), "")
    assert message in line, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def _listening(pids: set[int]) -> set[tuple[str, int]]:
    """The TCP addresses that the processes `pids` listen on in this process's network namespace
    (IPv6 ones as ("ipv6", port))."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/self/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            if table == "tcp6":
                address = "ipv6"
            else:  # little-endian hex
                address = ".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0))
            found.add((address, int(port, 16)))
    return found


def _group(pgid: int) -> set[int]:
    members = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getpgid(int(entry.name)) == pgid:
                members.add(int(entry.name))
        except OSError:  # ended meanwhile
            continue
    return members


def test_only_loopback_is_reachable_and_exit_ends_every_process(seldon_env: None) -> None:
    with serve(BUNDLE) as private:
        port = int(private.url.rsplit(":", 1)[1])
        assert _listening(_group(private.pid)) == {("127.0.0.1", port)}
    assert _group(private.pid) == set()
    with pytest.raises(requests.ConnectionError):
        requests.get(private.url + "/health/ping", timeout=5)
