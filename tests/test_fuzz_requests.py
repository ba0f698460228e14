"""Property-based tests of the request parsers (Hypothesis): whatever bytes or JSON a client
sends to the web app's API, and whatever lines a `summarize --jsonl` file holds, the answer is
a title or a 4xx/503 with a message, never a 500, a traceback or an aborted run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from summarizer.inputs import read_bodies
from summarizer.json_text import BadJSON, parse_json
from webapp.app import create_app
from webapp.settings import Settings

BUNDLE = Path(__file__).resolve().parent.parent / "models" / "default"
ANSWERS = {200, 201, 400, 413, 415, 422, 429, 503}  # a title, feedback saved, or a refusal
FIELDS = ["body", "url", "issues", "num_beams", "candidates", "verdict", "suggested", "corrected",
          "model_version", "title"]
# JSON values, nested a little; texts include the characters that broke servers before.
texts = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("\x00\u200b<!-->`#\n"), max_size=40)
scalars = st.none() | st.booleans() | st.integers(-20, 20) | st.floats(allow_nan=False) | texts
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), inner, max_size=4),
                      max_leaves=12)
requests_ = st.dictionaries(st.sampled_from(FIELDS), values, max_size=5) | st.fixed_dictionaries(
    {"body": texts}, optional={"num_beams": st.integers(0, 17), "candidates": st.booleans()})
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    folder = tmp_path_factory.mktemp("fuzz")
    # Greedy titles and small batches: a valid request found by chance costs little.
    return create_app(Settings(model=str(BUNDLE), feedback_db=folder / "feedback.sqlite3", num_beams=1,
                               consensus_samples=0, max_batch=4, feedback_per_minute=1000))


def assert_answered(answer: Any) -> None:
    event(f"status {answer.status_code}")  # --hypothesis-show-statistics: how often each answer came
    text = answer.get_data(as_text=True)
    assert answer.status_code in ANSWERS, text[:500]
    assert "Traceback" not in text
    if answer.status_code >= 400:
        assert answer.get_json()["error"]  # a message, not an empty refusal


@FUZZ
@given(payload=requests_, path=st.sampled_from(["/api/summarize", "/api/feedback"]))
def test_any_json_object_gets_an_answer(app: Flask, payload: dict, path: str) -> None:
    """Any object of the API's field names with any values: a title, or a 4xx that says why."""
    assert_answered(app.test_client().post(path, data=json.dumps(payload), content_type="application/json"))


@FUZZ
@given(payload=st.binary(max_size=300) | values.map(lambda value: json.dumps(value).encode()),
       path=st.sampled_from(["/api/summarize", "/api/feedback"]),
       kind=st.sampled_from(["application/json", "application/json; charset=latin-1", "text/plain"]))
def test_any_bytes_get_an_answer(app: Flask, payload: bytes, path: str, kind: str) -> None:
    """Any bytes, declared as any of these types: never a 500."""
    assert_answered(app.test_client().post(path, data=payload, content_type=kind))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_parse_json_raises_only_bad_json(data: bytes | str) -> None:
    """Untrusted JSON is a value or BadJSON, and a value round-trips through the standard library."""
    try:
        value = parse_json(data)
    except BadJSON as error:
        assert str(error)
        return
    assert json.loads(json.dumps(value)) == value or value != value  # NaN never gets here


@FUZZ
@given(lines=st.lists(st.binary(max_size=60) | values.map(json.dumps).map(str.encode), max_size=8))
def test_any_json_lines_file_keeps_one_record_per_line(tmp_path: Path, lines: list[bytes]) -> None:
    """Every non-blank line of a --jsonl file is one record: a body, or the reason it has none."""
    path = tmp_path / "issues.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ").replace(b"\r", b" ") for line in lines))
    records = read_bodies([], [], [str(path)])
    text = path.read_text(encoding="utf-8", errors="replace")
    expected = [line for line in text.splitlines() if line.strip()]
    assert len(records) == len(expected)
    assert all((record.text is None) == (record.problem is not None) for record in records)
