"""The web app through Flask's test client: the page (plain form POSTs, as without JavaScript), the
JSON API, GitHub URLs against a local server replaying recorded GitHub answers, feedback stored and
exported as training records, every error answered with a message (never a traceback), health,
metrics and security headers; the app in front of the real Seldon microservice and the real
MLServer (V2), and in front of an endpoint that is down; and `python -m webapp` under waitress."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests
from cli_in_process import cli
from flask import Flask, abort
from flask.testing import FlaskClient
from github_replay import GitHubReplay
from servers import build_serving_environment, free_ports, mlserver
from werkzeug.test import TestResponse

from serving.microservice import serve
from summarizer.engine import Summarizer
from summarizer.errors import UserError
from webapp.app import create_app
from webapp.metrics import Metrics
from webapp.samples import EXAMPLES, load_samples
from webapp.security import HEADERS
from webapp.services import EXTENSION, Services
from webapp.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLE = REPO_ROOT / "models" / "default"
FIXTURES = Path(__file__).parent / "fixtures" / "webapp"
ISSUE_7 = json.loads((FIXTURES / "issue_7.json").read_text())
XSS = '<script>alert("owned")</script><img src=x onerror=alert(1)>'
BODIES = [
    "When I run `pip install widgets` on Windows 11 the build fails with\n"
    "ModuleNotFoundError: No module named 'setuptools'. Python 3.12, pip 24.",
    "The save button on the settings page does nothing in Firefox 125; Chrome works. "
    "No errors in the console.",
    "Add a --dry-run flag to the deploy command so we can see what would change before applying it.",
]
MAX_BATCH = 5
SAMPLES = 8  # titles sampled for the consensus: fewer than the app's default, to keep tests quick
AS_APP = {"num_beams": 4, "consensus": True, "samples": SAMPLES}  # how the app decodes (with NUM_BEAMS=4)


# --- helpers ---------------------------------------------------------------------------------


class Page(HTMLParser):
    """A rendered page: elements by id (tag, attributes, text inside), the candidates' texts and
    scores, and every script tag's attributes."""

    VOID = {"input", "meta", "link", "br", "img", "hr"}

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, Any]] = {}
        self._in_list: dict[str, list[dict[str, Any]]] = {"text": [], "score": []}
        self.scripts: list[dict[str, str | None]] = []
        self._open: list[dict[str, Any]] = []
        self.feed(html)

    @property
    def candidates(self) -> list[str]:
        return [element["text"].strip() for element in self._in_list["text"]]

    @property
    def scores(self) -> list[str]:
        return [element["text"].strip() for element in self._in_list["score"]]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        if "id" in element["attrs"]:
            self.by_id[str(element["attrs"]["id"])] = element
        if tag == "script":
            self.scripts.append(element["attrs"])
        kind = element["attrs"].get("class")
        if kind in self._in_list and any(entry["attrs"].get("id") == "candidates" for entry in self._open):
            self._in_list[kind].append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element["text"] += data

    def text(self, element_id: str) -> str:
        return self.by_id[element_id]["text"].strip()

    def attr(self, element_id: str, name: str) -> str | None:
        return self.by_id[element_id]["attrs"].get(name)

    def shown(self, element_id: str) -> bool:
        return "hidden" not in self.by_id[element_id]["attrs"]


def token(client: FlaskClient) -> str:
    """This client's CSRF token, from the page (the session cookie stays in the client)."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True))
    assert match
    return match.group(1)


def post_form(client: FlaskClient, path: str, **fields: str) -> tuple[TestResponse, Page]:
    response = client.post(path, data={"csrf_token": token(client), **fields})
    return response, Page(response.get_data(as_text=True))


def no_trace(response: TestResponse) -> None:
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text, text[:2000]


def parts(app: Flask) -> Services:
    return app.extensions[EXTENSION]


@contextmanager
def silent_server() -> Iterator[str]:
    """An address that accepts connections and never answers (the kernel queues them)."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_TOKEN", "GITHUB_API_URL", "SUMMARIZER_URL", "SUMMARIZER_MODEL", "FEEDBACK_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def engine() -> Summarizer:
    return Summarizer.load(BUNDLE)


@pytest.fixture(scope="module")
def github() -> Iterator[GitHubReplay]:
    with GitHubReplay.from_manifest(FIXTURES / "github_responses.json") as server:
        yield server


@pytest.fixture(scope="module")
def make_app(tmp_path_factory: pytest.TempPathFactory, github: GitHubReplay) -> Callable[..., Flask]:
    """Apps on the shipped bundle with their own feedback database, GitHub at the replay server."""
    def make(**settings: Any) -> Flask:
        folder = tmp_path_factory.mktemp("app")
        defaults = {"model": str(BUNDLE), "feedback_db": folder / "feedback.sqlite3",
                    "github_api_url": github.base_url, "max_batch": MAX_BATCH, "consensus_samples": SAMPLES}
        return create_app(Settings(**{**defaults, **settings}))
    return make


@pytest.fixture(scope="module")
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# --- the page, without JavaScript ------------------------------------------------------------


def test_the_page_has_the_form_and_safe_headers(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    page = Page(response.get_data(as_text=True))
    for element_id in ("summarize-form", "body", "current-title", "issue-url", "submit", "sample",
                       "suggested-title", "candidates", "elapsed", "copy", "feedback-form",
                       "feedback-good", "feedback-bad", "corrected-title", "feedback-status"):
        assert element_id in page.by_id, element_id
    assert page.attr("summarize-form", "method") == "post" and page.attr("summarize-form", "action") == "/"
    assert page.attr("feedback-form", "action") == "/feedback"
    assert page.by_id["body"]["tag"] == "textarea" and page.attr("body", "name") == "body"
    assert page.attr("issue-url", "name") == "url" and page.attr("current-title", "name") == "title"
    assert page.attr("error", "role") == "alert" and not page.shown("error") and not page.shown("result")
    assert page.scripts == [{"src": "/static/app.js", "defer": None}]  # no inline script: CSP holds
    assert not re.search(r"\s(on[a-z]+|style)=", response.get_data(as_text=True))
    for name, value in HEADERS.items():
        assert response.headers[name] == value
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    for static in ("/static/app.js", "/static/style.css"):
        answer = client.get(static)
        assert answer.status_code == 200 and answer.headers["X-Content-Type-Options"] == "nosniff"
    assert b"prefers-color-scheme: dark" in client.get("/static/style.css").data


def test_a_form_post_shows_the_title_candidates_and_time(client: FlaskClient, engine: Summarizer) -> None:
    response, page = post_form(client, "/", body=BODIES[0], title="pip install fails")
    assert response.status_code == 200
    expected = engine.candidates([BODIES[0]], **AS_APP)[0]
    assert page.shown("result") and not page.shown("error")
    assert page.text("suggested-title") == expected[0].text
    assert page.candidates == [c.text for c in expected]
    assert page.scores == [f"{c.score:.2f}" for c in expected]
    assert float(page.text("elapsed")) >= 0
    assert page.text("body") == BODIES[0] and page.attr("current-title", "value") == "pip install fails"
    assert page.attr("feedback-body", "value") == BODIES[0]
    assert page.attr("feedback-suggested", "value") == expected[0].text
    assert page.attr("feedback-model-version", "value") == engine.version


def test_html_in_the_input_is_shown_as_text(client: FlaskClient) -> None:
    response, page = post_form(client, "/", body=f"The preview breaks on {XSS} in a body", title=XSS)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in html
    assert page.text("body") == f"The preview breaks on {XSS} in a body"  # the browser shows this text
    assert page.attr("current-title", "value") == XSS
    assert page.scripts == [{"src": "/static/app.js", "defer": None}]


def test_the_sample_button_fills_the_form(client: FlaskClient) -> None:
    samples = load_samples()
    assert len(samples) >= 10 and EXAMPLES.name == "examples.jsonl"
    response, page = post_form(client, "/sample")
    assert response.status_code == 200 and not page.shown("result")
    assert page.text("body") in {sample.body.strip() for sample in samples}
    answer = client.get("/api/sample").get_json()
    assert answer["body"] in {sample.body for sample in samples} and answer["title"]


def test_a_configured_samples_file(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"body": "Only this one"}) + "\n")
    assert make_app(samples_file=samples).test_client().get("/api/sample").get_json() == \
        {"body": "Only this one", "title": None}
    samples.write_text('{"body": "fine"}\n{"text": "no body"}\n')
    with pytest.raises(UserError, match="line 2"):
        load_samples(samples)


def test_forms_need_the_csrf_token(client: FlaskClient) -> None:
    token(client)  # a session exists, so only the token is missing or wrong
    for path, fields in (("/", {"body": BODIES[0]}), ("/sample", {}),
                         ("/feedback", {"body": "b", "suggested": "s", "verdict": "good",
                                        "model_version": "v"}),
                         ("/", {"body": BODIES[0], "csrf_token": "forged"})):
        response = client.post(path, data=fields)
        page = Page(response.get_data(as_text=True))
        assert response.status_code == 400, path
        assert page.shown("error") and "reload the page" in page.text("error")
    assert page.text("body") == BODIES[0]  # the text typed is not lost
    fresh = client.application.test_client()  # no session at all
    assert fresh.post("/", data={"body": BODIES[0], "csrf_token": "x"}).status_code == 400


def test_form_errors_are_messages_on_the_page(client: FlaskClient) -> None:
    response, page = post_form(client, "/", body="   ")
    assert response.status_code == 400 and "the issue's text is empty" in page.text("error")
    response, page = post_form(client, "/", body="x" * 100_001)
    assert response.status_code == 413 and "100,000" in page.text("error")
    response, page = post_form(client, "/", url="https://example.com/octo-org/widgets/issues/7")
    assert response.status_code == 400 and "is not a GitHub issue URL" in page.text("error")
    no_trace(response)


# --- the JSON API ----------------------------------------------------------------------------


def test_api_one_body_with_candidates(client: FlaskClient, engine: Summarizer) -> None:
    answer = client.post("/api/summarize", json={"body": BODIES[1], "candidates": True})
    assert answer.status_code == 200
    data = answer.get_json()
    expected = engine.candidates([BODIES[1]], **AS_APP)[0]
    assert list(data) == ["title", "candidates", "model_version", "elapsed_ms"]
    assert data["title"] == expected[0].text
    assert [c["title"] for c in data["candidates"]] == [c.text for c in expected]
    assert data["candidates"][0]["score"] == pytest.approx(expected[0].score, abs=1e-3)
    assert data["model_version"] == engine.version and data["elapsed_ms"] >= 0
    plain = client.post("/api/summarize", json={"body": BODIES[1], "num_beams": 1}).get_json()
    assert set(plain) == {"title", "model_version", "elapsed_ms"}
    assert plain["title"] == engine.summarize([BODIES[1]])[0]


def test_api_batches(client: FlaskClient, engine: Summarizer) -> None:
    data = client.post("/api/summarize", json={"issues": [{"body": body} for body in BODIES]}).get_json()
    assert data["titles"] == engine.summarize(BODIES, **AS_APP)
    data = client.post("/api/summarize", json={"issues": [{"body": b} for b in BODIES], "num_beams": 2,
                                               "candidates": True}).get_json()
    assert [[c["title"] for c in row] for row in data["candidates"]] == \
        [[t.text for t in row] for row in engine.candidates(BODIES, **{**AS_APP, "num_beams": 2})]
    too_many = client.post("/api/summarize", json={"issues": [{"body": "a b c"}] * (MAX_BATCH + 1)})
    assert too_many.status_code == 413 and f"the limit is {MAX_BATCH}" in too_many.get_json()["error"]


@pytest.mark.parametrize(("payload", "status", "message"), [
    ("not json", 415, "Content-Type: application/json"),
    ('{"body": ', 400, "it is not valid JSON (Expecting value at line 1, column 10)"),
    ("[1, 2]", 400, "the request is JSON but not an object"),
    ({}, 400, "the issue's text is empty"),
    ({"body": "   "}, 400, "the issue's text is empty"),
    ({"body": 42}, 400, "'body' must be text"),
    ({"body": "\ud800 lone surrogate"}, 400, "not valid Unicode"),
    ({"body": "x" * 100_001}, 413, "the limit is 100,000"),
    ({"body": "a", "url": "https://github.com/o/r/issues/1"}, 400, "not both"),
    ({"issues": [{"body": "a"}], "body": "b"}, 400, "not both"),
    ({"issues": []}, 400, "non-empty list"),
    ({"issues": ["just text"]}, 400, "must be an object"),
    ({"issues": [{"body": "ok body"}, {"title": "no body"}]}, 400, "issues[1].body"),
    ({"body": "a crash", "num_beams": 0}, 400, "'num_beams' must be"),
    ({"body": "a crash", "num_beams": 17}, 400, "'num_beams' must be"),
    ({"body": "a crash", "num_beams": "4"}, 400, "'num_beams' must be"),
    ({"body": "a crash", "num_beams": True}, 400, "'num_beams' must be"),
    ({"body": "a crash", "candidates": "yes"}, 400, "'candidates' must be"),
])
def test_api_errors_are_json_messages(client: FlaskClient, payload: Any, status: int, message: str) -> None:
    if isinstance(payload, str):
        kind = "text/plain" if status == 415 else "application/json"
        answer = client.post("/api/summarize", data=payload, content_type=kind)
    else:
        answer = client.post("/api/summarize", data=json.dumps(payload), content_type="application/json")
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert message in answer.get_json()["error"]
    no_trace(answer)


def test_requests_over_the_size_limit(make_app: Callable[..., Flask]) -> None:
    client = make_app(max_content_length=4096).test_client()
    answer = client.post("/api/summarize", json={"body": "word " * 2000})
    assert answer.status_code == 413 and "the limit is 4,096 bytes" in answer.get_json()["error"]
    csrf = token(client)
    response = client.post("/", data={"csrf_token": csrf, "body": "word " * 2000})
    assert response.status_code == 413
    assert "the limit is 4,096 bytes" in Page(response.get_data(as_text=True)).text("error")
    no_trace(response)


def test_http_errors_and_crashes_are_messages(make_app: Callable[..., Flask],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    for path in ("/api/refused", "/refused"):  # no route of the app's raises a plain 400
        app.add_url_rule(path, endpoint=path, view_func=lambda: abort(400))
    client = app.test_client()
    missing = client.get("/no/such/page")
    assert missing.status_code == 404
    assert Page(missing.get_data(as_text=True)).text("error") == "there is nothing at this address"
    assert client.get("/api/nothing").get_json() == {"error": "there is nothing at this address"}
    wrong = client.get("/api/summarize")
    assert wrong.status_code == 405 and wrong.get_json()["error"] == "GET is not accepted here"
    assert "POST" in wrong.headers["Allow"]
    assert client.delete("/").status_code == 405
    message = "the request could not be handled (400 Bad Request)"
    assert client.get("/api/refused").get_json() == {"error": message}
    refused = client.get("/refused")
    assert refused.status_code == 400 and Page(refused.get_data(as_text=True)).text("error") == message

    def crash(*args: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(parts(app).backend, "suggest", crash)
    for answer in (client.post("/api/summarize", json={"body": BODIES[0]}),
                   post_form(client, "/", body=BODIES[0])[0]):
        assert answer.status_code == 500
        assert "something went wrong on our side" in answer.get_data(as_text=True)
        assert "secret internals" not in answer.get_data(as_text=True)
        no_trace(answer)
        assert answer.headers["X-Frame-Options"] == "DENY"


def test_health_and_metrics(client: FlaskClient, engine: Summarizer) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json() == {"status": "ok", "model_version": engine.version, "mode": "embedded"}
    client.post("/api/summarize", json={"body": BODIES[2]})
    client.post("/api/summarize", json={"body": ""})
    client.get("/missing")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.content_type.startswith("text/plain; version=0.0.4")
    text = metrics.get_data(as_text=True)
    assert re.search(r'^issue_summarizer_web_requests_total\{route="/api/summarize",method="POST",'
                     r'status="200"\} [1-9]', text, re.M)
    assert 'issue_summarizer_web_requests_total{route="unmatched",method="GET",status="404"}' in text
    assert re.search(r'^issue_summarizer_web_request_seconds_bucket\{route="/api/summarize",le="\+Inf"\} '
                     r'[1-9]', text, re.M)
    assert re.search(r'^issue_summarizer_web_errors_total\{kind="input"\} [1-9]', text, re.M)
    assert re.search(r"^issue_summarizer_web_titles_total [1-9]", text, re.M)
    assert f'issue_summarizer_web_model_info{{version="{engine.version}",mode="embedded"}} 1' in text
    assert "# TYPE issue_summarizer_web_request_seconds histogram" in text


def test_histogram_buckets_are_cumulative() -> None:
    metrics = Metrics()
    for seconds in (0.001, 0.005, 0.2, 30.0):
        metrics.request("/", "GET", 200, seconds)
    text = metrics.render()
    assert 'issue_summarizer_web_request_seconds_bucket{route="/",le="0.005"} 2' in text
    assert 'issue_summarizer_web_request_seconds_bucket{route="/",le="0.25"} 3' in text
    assert 'issue_summarizer_web_request_seconds_bucket{route="/",le="10.0"} 3' in text
    assert 'issue_summarizer_web_request_seconds_bucket{route="/",le="+Inf"} 4' in text
    assert 'issue_summarizer_web_request_seconds_count{route="/"} 4' in text


# --- GitHub issue URLs -----------------------------------------------------------------------


def test_an_issue_url_is_fetched_from_the_api_host(client: FlaskClient, github: GitHubReplay,
                                                   engine: Summarizer) -> None:
    before = len(github.requests)
    url = "https://github.com/octo-org/widgets/issues/7#issuecomment-2110044"
    data = client.post("/api/summarize", json={"url": url}).get_json()
    assert data["title"] == engine.summarize([ISSUE_7["body"]], **AS_APP)[0]
    assert data["issue"] == {"url": "https://github.com/octo-org/widgets/issues/7", "title": ISSUE_7["title"],
                             "body": ISSUE_7["body"]}
    request = github.requests[before]
    assert request.key == "/repos/octo-org/widgets/issues/7?"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28" and "authorization" not in request.headers


def test_an_issue_url_in_the_form_fills_it(client: FlaskClient) -> None:
    response, page = post_form(client, "/", url="https://github.com/octo-org/widgets/issues/7")
    assert response.status_code == 200 and page.text("suggested-title")
    assert page.text("body") == ISSUE_7["body"].strip()  # its <script> is text, as every body's
    assert "<script>alert(" not in response.get_data(as_text=True)
    assert page.attr("current-title", "value") == ISSUE_7["title"]
    assert page.attr("feedback-url", "value") == "https://github.com/octo-org/widgets/issues/7"


def test_the_token_is_sent_and_moved_repositories_are_followed_on_the_host(
        make_app: Callable[..., Flask], github: GitHubReplay) -> None:
    client = make_app(github_token="ghp_test0123456789").test_client()
    before = len(github.requests)
    data = client.post("/api/summarize", json={"url": "https://github.com/octo-org/old-widgets/issues/7"})
    assert data.status_code == 200 and data.get_json()["issue"]["title"] == ISSUE_7["title"]
    assert github.fetched()[before:] == ["/repos/octo-org/old-widgets/issues/7?",
                                         "/repositories/734120001/issues/7?"]
    assert {r.headers["authorization"] for r in github.requests[before:]} == {"Bearer ghp_test0123456789"}


@pytest.mark.parametrize(("url", "status", "message"), [
    ("https://github.com/octo-org/widgets/issues/8", 400, "octo-org/widgets#8 is a pull request"),
    ("https://github.com/octo-org/widgets/issues/9", 404,
     "GitHub has no issue octo-org/widgets#9, or the repository is private (a private repository needs a "
     "GITHUB_TOKEN)"),
    ("https://github.com/octo-org/blocked/issues/1", 403, "Repository access blocked"),
    ("https://github.com/octo-org/widgets/issues/12", 400, "has no description"),
    ("https://github.com/octo-org/widgets/issues/13", 410, "was deleted"),
    ("https://github.com/octo-org/widgets/issues/20", 429,
     "rate limit is used up; try again in about 25 minutes (a GITHUB_TOKEN raises the limit"),
    ("https://github.com/octo-org/widgets/issues/21", 429, "try again in about 2 minutes"),
    ("https://github.com/octo-org/elsewhere/issues/7", 502, "to another host; it was not followed"),
    ("https://github.com/octo-org/flaky/issues/1", 502, "GitHub answered 502"),
])
def test_github_failures_are_clear(client: FlaskClient, url: str, status: int, message: str) -> None:
    answer = client.post("/api/summarize", json={"url": url})
    assert answer.status_code == status
    assert message in answer.get_json()["error"]


@pytest.mark.parametrize("url", [
    "https://example.com/octo-org/widgets/issues/7",
    "http://github.com/octo-org/widgets/issues/7",
    "https://github.com.attacker.example/octo-org/widgets/issues/7",
    "https://github.com@attacker.example/octo-org/widgets/issues/7",
    "https://github.com/octo-org/widgets/pull/8",
    "https://github.com/octo-org/widgets/issues/7/../../../../users",
    "https://api.github.com/repos/octo-org/widgets/issues/7",
    "https://github.com/octo-org/widgets/issues/0",
    "https://github.com/octo-org/../issues/7",
    "octo-org/widgets#7",
])
def test_only_github_issue_urls_are_accepted_and_nothing_is_fetched(client: FlaskClient, github: GitHubReplay,
                                                                    url: str) -> None:
    before = len(github.requests)
    answer = client.post("/api/summarize", json={"url": url})
    assert answer.status_code == 400 and "is not a GitHub issue URL" in answer.get_json()["error"]
    assert len(github.requests) == before


def test_github_that_does_not_answer(make_app: Callable[..., Flask]) -> None:
    with silent_server() as address:
        client = make_app(github_api_url=address, timeout=0.5).test_client()
        answer = client.post("/api/summarize", json={"url": "https://github.com/octo-org/widgets/issues/7"})
    assert answer.status_code == 504 and "GitHub did not answer within 0.5 s" in answer.get_json()["error"]
    client = make_app(github_api_url=f"http://127.0.0.1:{free_ports(1)[0]}").test_client()
    answer = client.post("/api/summarize", json={"url": "https://github.com/octo-org/widgets/issues/7"})
    assert answer.status_code == 502 and "could not reach the GitHub API" in answer.get_json()["error"]


# --- feedback --------------------------------------------------------------------------------


def test_feedback_is_stored_and_exported_as_training_records(make_app: Callable[..., Flask], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app()
    client = app.test_client()
    version = parts(app).backend.health()
    response, page = post_form(client, "/feedback", body=BODIES[0].replace("\n", "\r\n"),  # as browsers post
                               suggested="pip install fails on Windows", model_version=version,
                               verdict="good", corrected="")
    assert response.status_code == 200
    assert page.text("feedback-status") == "Thanks! Saved: the title is good."
    response, page = post_form(client, "/feedback", body=BODIES[1], suggested="Button", model_version=version,
                               verdict="bad", corrected="Save button does nothing in Firefox",
                               url="https://github.com/octo-org/widgets/issues/7")
    assert "Your title was saved" in page.text("feedback-status")
    answer = client.post("/api/feedback", json={"body": BODIES[2], "suggested": "Deploy", "verdict": "bad",
                                                "model_version": version})
    assert answer.status_code == 201 and answer.get_json()["status"] == "saved"
    for bad, message in (({"verdict": "meh"}, "'verdict' must be one of good, bad"),
                         ({"verdict": "good", "suggested": "x"}, "the issue's text is empty"),
                         ({"verdict": "good", "body": "b", "suggested": "x", "model_version": "v",
                           "url": "https://evil.example/a"}, "is not a GitHub issue URL")):
        refused = client.post("/api/feedback", json=bad)
        assert refused.status_code == 400 and message in refused.get_json()["error"]
    response, page = post_form(client, "/feedback", body="b", suggested="s", model_version=version,
                               verdict="x")
    assert response.status_code == 400 and "'verdict' must be" in page.text("error")

    db = parts(app).settings.feedback_db
    exported, records = tmp_path / "feedback.jsonl.gz", tmp_path / "issues.jsonl.gz"
    assert cli(["feedback", "export", "-o", str(exported), "--db", str(db)]) == 0
    assert json.loads(capsys.readouterr().out) == {"output": str(exported), "written": 2, "without_title": 1}
    assert cli(["ingest", str(exported), "-o", str(records)]) == 0
    with gzip.open(records, "rt", encoding="utf-8") as lines:
        read = [json.loads(line) for line in lines]
    assert [(r["title"], r["body"]) for r in read] == [("pip install fails on Windows", BODIES[0]),
                                                       ("Save button does nothing in Firefox", BODIES[1])]
    assert (read[1]["url"], read[1]["repo"]) == ("https://github.com/octo-org/widgets/issues/7",
                                                 "octo-org/widgets")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", read[0]["created_at"])


def test_feedback_export_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = str(tmp_path / "out.jsonl")
    assert cli(["feedback", "export", "-o", output, "--db", str(tmp_path / "none.db")]) == 1
    assert "no feedback database there" in capsys.readouterr().err
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database file at all" * 100)
    assert cli(["feedback", "export", "-o", output, "--db", str(junk)]) == 1
    assert "not a usable feedback database" in capsys.readouterr().err


# --- settings --------------------------------------------------------------------------------


def test_settings_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({
        "SUMMARIZER_URL": "http://127.0.0.1:9000/", "SUMMARIZER_PROTOCOL": "v2", "SUMMARIZER_TIMEOUT": "2.5",
        "GITHUB_API_URL": "https://github.example.com/api/v3", "GITHUB_TOKEN": "t",
        "FEEDBACK_DB": str(tmp_path / "f.db"), "MAX_BATCH": "8", "MAX_CONTENT_LENGTH": "2048",
        "SECRET_KEY": "k", "NUM_BEAMS": "2", "SUMMARIZER_MODEL": "m", "ENGINE_THREADS": "3",
        "CONSENSUS_SAMPLES": "0"})
    assert (settings.summarizer_url, settings.protocol, settings.timeout) == \
        ("http://127.0.0.1:9000", "v2", 2.5)
    assert (settings.github_api_url, settings.github_token, settings.feedback_db) == \
        ("https://github.example.com/api/v3", "t", tmp_path / "f.db")
    assert (settings.max_batch, settings.max_content_length, settings.secret_key, settings.num_beams,
            settings.model, settings.engine_threads, settings.consensus_samples) == \
        (8, 2048, "k", 2, "m", 3, 0)
    defaults = Settings.from_env({})
    assert (defaults.summarizer_url, defaults.timeout, defaults.max_batch, defaults.max_content_length,
            defaults.num_beams, defaults.github_api_url, defaults.engine_threads,
            defaults.consensus_samples) == \
        (None, 10.0, 64, 1 << 20, 4, "https://api.github.com", 1, 32)
    assert defaults.feedback_db.name == "feedback.sqlite3" and defaults.model.endswith("default")
    assert defaults.secret_key != Settings.from_env({}).secret_key  # random per process


@pytest.mark.parametrize(("env", "message"), [
    ({"SUMMARIZER_PROTOCOL": "grpc"}, "SUMMARIZER_PROTOCOL='grpc'"),
    ({"SUMMARIZER_URL": "localhost:9000"}, "SUMMARIZER_URL='localhost:9000' is not an http(s) address"),
    ({"GITHUB_API_URL": "ftp://x"}, "GITHUB_API_URL"),
    ({"MAX_BATCH": "lots"}, "MAX_BATCH='lots' is not a number"),
    ({"SUMMARIZER_TIMEOUT": "0"}, "SUMMARIZER_TIMEOUT=0.0: must be above 0"),
    ({"NUM_BEAMS": "20"}, "NUM_BEAMS=20: must be from 1 to 16"),
    ({"ENGINE_THREADS": "0"}, "ENGINE_THREADS=0: must be above 0"),
    ({"CONSENSUS_SAMPLES": "100"}, "CONSENSUS_SAMPLES=100: must be from 0 to 64"),
])
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(UserError) as error:
        Settings.from_env(env)
    assert message in str(error.value)


def test_a_bad_bundle_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a model bundle"):
        create_app(Settings(model=str(tmp_path), feedback_db=tmp_path / "f.db"))


# --- remote model endpoints ------------------------------------------------------------------


@pytest.fixture(scope="module")
def serving_envs() -> None:
    for name in ("seldon", "mlserver"):
        build_serving_environment(name)


def test_in_front_of_the_seldon_microservice(serving_envs: None, make_app: Callable[..., Flask],
                                            engine: Summarizer) -> None:
    with serve(BUNDLE, env={"MAX_BATCH": "2"}) as service:
        client = make_app(summarizer_url=service.url, protocol="seldon").test_client()
        assert client.get("/healthz").get_json() == {"status": "ok", "model_version": engine.version,
                                                     "mode": "seldon"}
        response, page = post_form(client, "/", body=BODIES[0])
        assert response.status_code == 200 and page.text("suggested-title") == engine.summarize(BODIES[:1])[0]
        assert page.scores == ["–"]
        data = client.post("/api/summarize", json={"issues": [{"body": b} for b in BODIES[:2]],
                                                   "candidates": True}).get_json()
        assert data["titles"] == engine.summarize(BODIES[:2])  # the service decodes greedily by default
        assert data["candidates"][0] == [{"title": data["titles"][0], "score": None}]
        assert data["model_version"] == engine.version
        refused = client.post("/api/summarize", json={"issues": [{"body": b} for b in BODIES]})
        assert refused.status_code == 413  # over the service's MAX_BATCH, under the app's
        assert refused.get_json()["error"] == ("the model refused the request: 3 bodies in one request; the "
                                               "limit is MAX_BATCH=2: send them in smaller batches")
        mismatched = make_app(summarizer_url=service.url, protocol="v2").test_client()
        answer = mismatched.post("/api/summarize", json={"body": BODIES[0]})
        assert answer.status_code == 502
        assert answer.get_json()["error"].startswith(f"the summarizer endpoint at {service.url} failed (")
        assert answer.get_json()["error"].endswith("check SUMMARIZER_URL and SUMMARIZER_PROTOCOL")
    assert 'mode="seldon"' in client.get("/metrics").get_data(as_text=True)


def test_in_front_of_mlserver_v2(serving_envs: None, make_app: Callable[..., Flask], engine: Summarizer,
                                 tmp_path: Path) -> None:
    with mlserver(tmp_path / "mlserver.log") as url:
        client = make_app(summarizer_url=url, protocol="v2").test_client()
        assert client.get("/healthz").get_json() == {"status": "ok", "model_version": engine.version,
                                                     "mode": "v2"}
        data = client.post("/api/summarize", json={"body": BODIES[0], "candidates": True}).get_json()
        expected = engine.candidates([BODIES[0]], **AS_APP)[0]
        assert [c["title"] for c in data["candidates"]] == [t.text for t in expected]
        scores = [c["score"] for c in data["candidates"]]
        assert scores == pytest.approx([t.score for t in expected], abs=1e-3)
        batch = client.post("/api/summarize", json={"issues": [{"body": b} for b in BODIES], "num_beams": 1,
                                                    "candidates": True}).get_json()
        assert batch["titles"] == engine.summarize(BODIES)
        greedy = engine.candidates(BODIES, num_beams=1)
        assert [row[0]["score"] for row in batch["candidates"]] == \
            pytest.approx([row[0].score for row in greedy], abs=1e-3)


@pytest.mark.parametrize("protocol", ["seldon", "v2"])
def test_an_endpoint_that_is_down_is_a_clear_message(make_app: Callable[..., Flask], protocol: str) -> None:
    url = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    client = make_app(summarizer_url=url, protocol=protocol).test_client()
    answer = client.post("/api/summarize", json={"body": BODIES[0]})
    message = f"the summarizer endpoint at {url} is down (no connection); start it, or check SUMMARIZER_URL"
    assert answer.status_code == 502 and answer.get_json() == {"error": message}
    response, page = post_form(client, "/", body=BODIES[0])
    assert response.status_code == 502 and page.text("error") == message and page.text("body") == BODIES[0]
    health = client.get("/healthz")
    assert health.status_code == 503 and health.get_json() == {"status": "unavailable", "error": message}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'issue_summarizer_web_errors_total{kind="backend"} 2' in metrics


def test_an_endpoint_that_does_not_answer_times_out(make_app: Callable[..., Flask]) -> None:
    with silent_server() as url:
        client = make_app(summarizer_url=url, timeout=0.5).test_client()
        answer = client.post("/api/summarize", json={"body": BODIES[0]})
    assert answer.status_code == 504
    assert answer.get_json()["error"] == (f"the summarizer endpoint at {url} did not answer within 0.5 s; "
                                          "try again, or raise SUMMARIZER_TIMEOUT")


# --- python -m webapp ------------------------------------------------------------------------


def test_python_m_webapp_serves_with_waitress(tmp_path: Path, engine: Summarizer) -> None:
    env = {**os.environ, "FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"), "SUMMARIZER_MODEL": str(BUNDLE)}
    process = subprocess.Popen([sys.executable, "-m", "webapp", "--port", "0"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        match = re.fullmatch(r"issue-summarizer web app: (http://127\.0\.0\.1:(\d+)/)\n", line)
        assert match, line + (process.stderr.read() if process.stderr and process.poll() is not None else "")
        health = requests.get(f"{match.group(1)}healthz", timeout=10)
        assert health.status_code == 200 and health.headers["Server"] == "waitress"
        assert health.json()["model_version"] == engine.version
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
    failed = subprocess.run([sys.executable, "-m", "webapp", "--port", "0"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60,
                            env={**env, "SUMMARIZER_MODEL": str(tmp_path)})
    assert failed.returncode == 1
    assert failed.stderr.startswith("issue-summarizer web app: error: ") and failed.stderr.count("\n") == 1
