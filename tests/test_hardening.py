"""Requests an attacker or a careless user sends, against the web app (Flask's test client) and
the library rule every server shares (summarizer.budget, the engine's input checks): hostile
JSON, bodies with nothing to summarize, requests over the cost budget, and more requests than
there are slots. Each is answered with a 4xx or a 503 saying what to do, never a 500."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from summarizer.budget import MAX_COST, Gate, check_request, cost
from summarizer.decoding import MAX_BEAMS, MAX_SAMPLES, DecodeConfig
from summarizer.engine import Summarizer
from summarizer.errors import Busy, NothingToSummarize, RequestError
from summarizer.json_text import BadJSON, parse_json
from webapp.app import create_app
from webapp.services import EXTENSION, Services
from webapp.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLE = REPO_ROOT / "models" / "default"
BODY = "The save button on the settings page does nothing in Firefox 125; Chrome works."
# Bodies that clean down to nothing: any title for them would be invented.
NOTHING = {
    "zero-width characters": "\u200b\u200c\u200d\ufeff" * 20,
    "NUL characters": "\x00" * 50,
    "an empty code fence": "```\n```",
    "an HTML comment": "<!-- Please describe the bug. -->",
    "template headings": "### Describe the bug\n\n### Expected behavior\n\n### Additional context\n",
    "punctuation only": "?!? ... ---",
}
HOSTILE_JSON = {
    "nested 1,000 deep": (b"[" * 1000, "nested too deeply"),
    "nested 100,000 deep": (b'{"body": ' + b"[" * 100_000, "nested too deeply"),
    "invalid UTF-8": (b'{"body": "caf\xe9"}', "not UTF-8 text"),
    "a 5,000-digit number": (b'{"body": "x", "num_beams": 1' + b"0" * 5000 + b"}", "more digits"),
    "NaN": (b'{"body": "x", "num_beams": NaN}', "NaN is not a JSON value"),
    "cut short": (b'{"body": "x"', "not valid JSON"),
}


@pytest.fixture(scope="module")
def engine() -> Summarizer:
    return Summarizer.load(BUNDLE)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    folder = tmp_path_factory.mktemp("hardening")
    return create_app(Settings(model=str(BUNDLE), feedback_db=folder / "feedback.sqlite3",
                               consensus_samples=8, max_in_flight=1))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def parts(app: Flask) -> Services:
    return app.extensions[EXTENSION]


def assert_message(answer: Any, status: int, message: str) -> None:
    text = answer.get_data(as_text=True)
    assert answer.status_code == status, text[:500]
    assert message in answer.get_json()["error"], text[:500]
    assert "Traceback" not in text and 'File "' not in text


# --- hostile JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/summarize", "/api/feedback"])
@pytest.mark.parametrize("name", HOSTILE_JSON)
def test_malformed_json_is_a_400_that_says_what_is_wrong(client: FlaskClient, path: str, name: str) -> None:
    payload, message = HOSTILE_JSON[name]
    answer = client.post(path, data=payload, content_type="application/json")
    assert_message(answer, 400, message)


def test_a_charset_other_than_utf8_is_refused_by_name(client: FlaskClient) -> None:
    answer = client.post("/api/summarize", data=json.dumps({"body": BODY}).encode("latin-1"),
                         content_type="application/json; charset=latin-1")
    assert_message(answer, 415, "charset=latin-1; send JSON as UTF-8")
    same = client.post("/api/summarize", data=json.dumps({"body": BODY}),
                       content_type="application/json; charset=UTF-8")
    assert same.status_code == 200, same.get_data(as_text=True)


def test_parse_json_folds_every_failure_into_one_error() -> None:
    for payload, message in HOSTILE_JSON.values():
        with pytest.raises(BadJSON, match=message):
            parse_json(payload)
    assert parse_json(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}


# --- nothing to summarize --------------------------------------------------------------------


@pytest.mark.parametrize("name", NOTHING)
def test_a_body_with_nothing_to_summarize_is_a_422(client: FlaskClient, name: str) -> None:
    answer = client.post("/api/summarize", json={"body": NOTHING[name]})
    assert_message(answer, 422, "nothing to summarize")
    batch = client.post("/api/summarize", json={"issues": [{"body": BODY}, {"body": NOTHING[name]}]})
    assert_message(batch, 422, "nothing to summarize in body 1")


def test_the_page_says_there_is_nothing_to_summarize(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = client.post("/", data={"csrf_token": token, "body": NOTHING["template headings"]})
    assert answer.status_code == 422
    assert "nothing to summarize" in answer.get_data(as_text=True)


def test_the_engine_refuses_what_would_get_an_invented_title(engine: Summarizer) -> None:
    with pytest.raises(NothingToSummarize) as refused:
        engine.summarize([BODY, *NOTHING.values()])
    assert refused.value.indices == list(range(1, len(NOTHING) + 1))
    assert refused.value.status == 422
    assert engine.summarize([BODY])[0]  # a real body still gets its title


def test_a_lone_surrogate_is_a_request_error(engine: Summarizer) -> None:
    with pytest.raises(RequestError, match="not valid Unicode text"):
        engine.summarize(["a crash \ud800 on save"])


# --- the cost budget -------------------------------------------------------------------------


def test_decoding_settings_are_bounded_wherever_they_come_from() -> None:
    for bad in ({"num_beams": MAX_BEAMS + 1}, {"num_beams": 100_000}, {"samples": MAX_SAMPLES + 1,
                                                                        "consensus": True, "num_beams": 2},
                {"max_length": 10_000}, {"min_length": 30, "max_length": 20},
                {"repeat_penalty": float("inf")}, {"length_penalty": float("nan")}):
        with pytest.raises(ValueError):
            DecodeConfig(**bad)


def test_the_cost_of_a_request_counts_every_title_decoded() -> None:
    page = DecodeConfig(num_beams=4, consensus=True, samples=32)
    assert cost(1, page) == 37
    assert cost(64, DecodeConfig()) == 64
    check_request([BODY] * 13, page)  # 481 titles: within the budget
    with pytest.raises(RequestError, match="send at most 13 bodies at a time") as refused:
        check_request([BODY] * 14, page)
    assert refused.value.status == 413
    with pytest.raises(RequestError, match=f"the limit is {MAX_COST:,}"):
        check_request([BODY] * 64, DecodeConfig(num_beams=16, num_return=16))


def test_an_expensive_api_request_is_refused_before_any_work(client: FlaskClient) -> None:
    answer = client.post("/api/summarize", json={"issues": [{"body": BODY}] * 64, "num_beams": 16,
                                                 "candidates": True})
    assert_message(answer, 413, "titles decoded")


# --- load shedding ---------------------------------------------------------------------------


def test_a_full_gate_answers_busy_at_once_with_retry_after(app: Flask, client: FlaskClient) -> None:
    with parts(app).gate.slot():  # a request in flight: the app has one slot
        answer = client.post("/api/summarize", json={"body": BODY})
        assert_message(answer, 503, "busy")
        assert int(answer.headers["Retry-After"]) >= 1
        assert client.get("/healthz").status_code == 200  # health never waits for a slot
        refused = client.post("/api/summarize", json={"body": NOTHING["an HTML comment"]})
        assert_message(refused, 422, "nothing to summarize")  # found before a slot is asked for
    assert client.post("/api/summarize", json={"body": BODY}).status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'issue_summarizer_web_errors_total{kind="busy"} 1' in metrics


def test_the_gate_lets_through_as_many_as_it_has_slots() -> None:
    gate, entered, release = Gate(2), threading.Barrier(3), threading.Event()

    def hold() -> None:
        with gate.slot():
            entered.wait(timeout=5)
            release.wait(timeout=5)

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    entered.wait(timeout=5)  # both holders are inside
    with pytest.raises(Busy) as refused, gate.slot():
        pass
    assert refused.value.status == 503 and refused.value.retry_after >= 1
    release.set()
    for thread in threads:
        thread.join(timeout=5)
    with gate.slot():  # free again
        pass
