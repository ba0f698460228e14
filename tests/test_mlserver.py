"""The MLServer runtime under a real `mlserver start` (MLServer 1.7, its own environment built by
`scripts/setup-serving-env.sh mlserver`) on loopback: V2 inference gives the engine's titles,
the metadata lists the tensors, bad and hostile requests get a 4xx with a message while the
server keeps serving, and a busy server answers 503 with Retry-After and still answers health
checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from servers import (
    assert_sheds_load,
    build_serving_environment,
    mlserver,
    overload,
    start_mlserver,
    stopped_by_itself,
)

from summarizer.engine import Summarizer
from summarizer.lead import lead_sentence

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLE = REPO_ROOT / "models" / "default"
MODEL = "issue-summarizer"
BODIES = [
    "When I run `pip install widgets` on Windows 11 the build fails with\n"
    "ModuleNotFoundError: No module named 'setuptools'. Python 3.12, pip 24.",
    "The save button on the settings page does nothing in Firefox 125; Chrome works. "
    "No errors in the console.",
    "Add a --dry-run flag to the deploy command so we can see what would change before applying it.",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a running server that has loaded `models/default`."""
    build_serving_environment("mlserver")
    with mlserver(tmp_path_factory.mktemp("mlserver") / "mlserver.log") as url:
        yield url


@pytest.fixture(scope="module")
def engine() -> Summarizer:
    return Summarizer.load(BUNDLE, threads=1)


def _infer(url: str, payload: dict | str | bytes) -> requests.Response:
    if isinstance(payload, str | bytes):
        return requests.post(f"{url}/v2/models/{MODEL}/infer", data=payload, timeout=60,
                             headers={"Content-Type": "application/json"})
    return requests.post(f"{url}/v2/models/{MODEL}/infer", json=payload, timeout=60)


def _bodies(data: list, shape: list[int] | None = None, **fields) -> dict:
    tensor = {"name": "body", "datatype": "BYTES", "shape": shape or [len(data)], "data": data}
    return {"inputs": [{**tensor, **fields}]}


def _output(response: requests.Response, name: str) -> dict:
    assert response.status_code == 200, response.text
    return next(output for output in response.json()["outputs"] if output["name"] == name)


def test_titles_equal_the_engine(server: str, engine: Summarizer) -> None:
    response = _infer(server, _bodies(BODIES))
    title = _output(response, "title")
    assert title["datatype"] == "BYTES"
    assert title["shape"] == [len(BODIES)]
    assert title["data"] == engine.summarize(BODIES)
    assert response.json()["model_version"] == engine.version
    assert [output["name"] for output in response.json()["outputs"]] == ["title"]


def test_column_input_and_beam_search(server: str, engine: Summarizer) -> None:
    """StringCodec's [N, 1] layout, rows as nested lists, with decoding parameters."""
    payload = _bodies([[body] for body in BODIES], [len(BODIES), 1], parameters={"content_type": "str"})
    payload["parameters"] = {"num_beams": 3, "max_length": 12, "repeat_penalty": 0.5, "end_penalty": 2.5,
                             "lead_bonus": None}
    title = _output(_infer(server, payload), "title")
    assert title["data"] == engine.summarize(BODIES, num_beams=3, max_length=12, repeat_penalty=0.5,
                                             end_penalty=2.5, lead_bonus=None)


@pytest.mark.parametrize("samples", [0, 6])
def test_consensus_candidates_equal_the_engine(server: str, engine: Summarizer, samples: int) -> None:
    response = _infer(server, {**_bodies(BODIES), "parameters": {"num_return": 3, "num_beams": 4,
                                                                 "consensus": True, "samples": samples}})
    expected = engine.candidates(BODIES, num_return=3, num_beams=4, consensus=True, samples=samples)
    assert _output(response, "candidates")["data"] == [title.text for row in expected for title in row]


def test_a_high_lead_bonus_takes_each_bodys_lead_sentence(server: str) -> None:
    payload = {**_bodies(BODIES), "parameters": {"lead_bonus": 10}}
    titles = _output(_infer(server, payload), "title")["data"]
    for body, title in zip(BODIES, titles, strict=True):  # whole words, as many as the model's title allows
        assert len(title.split()) >= 3 and (lead_sentence(body) + " ").startswith(title + " ")


def test_candidates_and_scores(server: str, engine: Summarizer) -> None:
    response = _infer(server, {**_bodies(BODIES[:2]), "parameters": {"num_return": 3}})
    expected = engine.candidates(BODIES[:2], num_return=3, num_beams=3)
    candidates, scores = _output(response, "candidates"), _output(response, "scores")
    assert candidates["shape"] == scores["shape"] == [2, 3]
    assert candidates["data"] == [title.text for row in expected for title in row]
    assert scores["data"] == pytest.approx([title.score for row in expected for title in row], rel=1e-5)
    assert _output(response, "title")["data"] == [row[0].text for row in expected]


def test_outputs_named_in_the_request(server: str) -> None:
    response = _infer(server, {**_bodies(BODIES[:1]), "outputs": [{"name": "scores"}]})
    assert [output["name"] for output in response.json()["outputs"]] == ["scores"]
    assert _output(response, "scores")["shape"] == [1, 1]


def test_metadata_and_health(server: str) -> None:
    metadata = requests.get(f"{server}/v2/models/{MODEL}", timeout=10).json()
    assert metadata["name"] == MODEL
    assert [(tensor["name"], tensor["datatype"]) for tensor in metadata["inputs"]] == [("body", "BYTES")]
    assert {tensor["name"]: tensor["datatype"] for tensor in metadata["outputs"]} == {
        "title": "BYTES", "candidates": "BYTES", "scores": "FP32"}
    assert requests.get(f"{server}/v2/health/live", timeout=10).status_code == 200
    assert requests.get(f"{server}/v2/models/{MODEL}/ready", timeout=10).status_code == 200


BAD_REQUESTS = {
    "not JSON": ("{not json", 422, "JSON"),
    "no inputs field": ({"parameters": {}}, 422, "inputs"),
    "no inputs": ({"inputs": []}, 400, "no inputs"),
    "numbers, not text": (_bodies([1, 2], datatype="INT64"), 400, "datatype INT64"),
    "unknown datatype": (_bodies(["a bug"], datatype="STRING"), 422, "datatype"),
    "non-string item": (_bodies(["a bug", 7]), 400, "body 1 is not text"),
    "empty body": (_bodies(["a real bug report", "  \n "]), 400, "body 1 is empty"),
    "lone surrogate": (json.dumps(_bodies(["\ud800 a bug"])), 422, "no low surrogate"),
    "body over the limit": (_bodies(["x" * 100_001]), 413, "body 0 has 100,001 characters"),
    "batch over the limit": (_bodies(["a bug"] * 65), 413,
                             "65 bodies in one request; the limit is MAX_BATCH=64"),
    "over the cost budget": ({**_bodies(["a bug"] * 33), "parameters": {"num_beams": 16}}, 413,
                             "this request asks for 528 titles decoded (33 bodies x 16 each"),
    "deep nesting": ("[" * 100_000 + "]" * 100_000, 422, "depth limit exceeded"),
    "deep nesting in the data": (json.dumps(_bodies(["a bug"])).replace('"a bug"', "[" * 5000 + "]" * 5000),
                                 422, "depth limit exceeded"),
    "unclosed deep nesting": ("[" * 1000, 422, "JSON decode error"),
    "invalid UTF-8": (json.dumps(_bodies(["a bug"])).encode().replace(b"a bug", b"\xff\xfe bug"), 422,
                      "not valid UTF-8"),
    "a 5,000-digit number": (json.dumps({**_bodies(["a bug"]), "parameters": {"num_beams": 1}})
                             .replace(": 1}", ": " + "9" * 5000 + "}"), 422, "JSON decode error"),
    "NaN": (json.dumps({**_bodies(["a bug"]), "parameters": {"num_beams": 1}}).replace(": 1}", ": NaN}"),
            422, "JSON decode error"),
    "only invisible characters": (_bodies(["a real bug report", "\u200b\u200c\ufeff"]), 422,
                                  "nothing to summarize in body 1"),
    "only NUL": (_bodies(["\x00"]), 422, "nothing to summarize in body 0"),
    "an empty code fence": (_bodies(["```\n```"]), 422, "nothing to summarize in body 0"),
    "an HTML comment": (_bodies(["<!-- describe the bug here -->"]), 422, "nothing to summarize in body 0"),
    "template headings only": (_bodies(["### Describe the bug\n\n### Expected behavior\n"]), 422,
                               "nothing to summarize in body 0"),
    "shape and data disagree": (_bodies(["a bug"], [3]), 400, "shape [3] but 1 items"),
    "base64 content": (_bodies(["YQ=="], parameters={"content_type": "base64"}), 400, "content type"),
    "beams out of range": ({**_bodies(["a bug"]), "parameters": {"num_beams": 0}}, 400, "num_beams"),
    "beams not a number": ({**_bodies(["a bug"]), "parameters": {"num_beams": "four"}}, 400, "integer"),
    "more titles than beams": ({**_bodies(["a bug"]), "parameters": {"num_return": 3, "num_beams": 2}},
                               400, "num_return (3) cannot exceed num_beams (2)"),
    "negative repeat penalty": ({**_bodies(["a bug"]), "parameters": {"repeat_penalty": -1}}, 400,
                                "repeat_penalty"),
    "end penalty over the limit": ({**_bodies(["a bug"]), "parameters": {"end_penalty": 11}}, 400,
                                   "'end_penalty' is 11: it must be between 0.0 and 10.0"),
    "lead bonus not a number": ({**_bodies(["a bug"]), "parameters": {"lead_bonus": "high"}}, 400,
                                "parameter 'lead_bonus' must be a number"),
    "consensus not a boolean": ({**_bodies(["a bug"]), "parameters": {"consensus": "yes"}}, 400,
                                "parameter 'consensus' must be true or false"),
    "consensus without beams": ({**_bodies(["a bug"]), "parameters": {"consensus": True}}, 400,
                                "consensus needs titles to choose among: set num_beams or samples to 2"),
    "samples without consensus": ({**_bodies(["a bug"]), "parameters": {"num_beams": 2, "samples": 4}},
                                  400, "sampled titles only serve the consensus"),
    "too many samples": ({**_bodies(["a bug"]), "parameters": {"consensus": True, "samples": 65}}, 400,
                         "'samples' is 65: it must be between 0 and 64"),
    "unknown output": ({**_bodies(["a bug"]), "outputs": [{"name": "summary"}]}, 400, "unknown output"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_requests_get_a_clear_4xx(server: str, engine: Summarizer, case: str) -> None:
    payload, status, message = BAD_REQUESTS[case]
    response = _infer(server, payload)
    assert response.status_code == status, response.text
    assert message in response.text
    # The server is still serving.
    assert _output(_infer(server, _bodies(BODIES[:1])), "title")["data"] == engine.summarize(BODIES[:1])


def test_a_bad_bundle_stops_the_server_with_its_reason(server: str, tmp_path: Path) -> None:
    """MODEL_BUNDLE wins over the settings' uri; a folder that is no bundle is refused at load
    (the environment exists: `server` built it)."""
    log = tmp_path / "mlserver.log"
    process, _ = start_mlserver(log, tmp_path)
    assert "not a model bundle" in stopped_by_itself(process, log, "mlserver on a folder that is no bundle")


@pytest.fixture(scope="module")
def busy_server(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second server with one slot (`start_mlserver` passes MAX_IN_FLIGHT on from this process)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAX_IN_FLIGHT", "1")
        with mlserver(tmp_path_factory.mktemp("busy") / "mlserver.log") as url:
            yield url


def test_a_busy_server_answers_503_and_health_checks_at_once(busy_server: str) -> None:
    """Four requests of 8 bodies at the web page's decoding (about 1.5 s each, alone) at once
    on one slot."""
    body = "The app crashes with a KeyError when I open a CSV file after updating to 2.0. " * 5
    payload = {**_bodies([body] * 8), "parameters": {"num_beams": 4, "consensus": True, "samples": 32}}
    found = overload(lambda: _infer(busy_server, payload), f"{busy_server}/v2/health/ready")
    assert_sheds_load(found, lambda answer: answer.json()["detail"])
