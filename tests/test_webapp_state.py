"""The web app's state against clients that flood it: feedback limited per client address and in
size, titles that must be one line of printable text (at the door and at export), a feedback
database in a place that cannot hold one, metrics labels from closed sets, and waitress's limits
against connections that open and send nothing (a real `python -m webapp`)."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from webapp_process import WEBAPP, running_app

from summarizer.errors import UserError
from webapp.__main__ import main as webapp_main
from webapp.app import create_app
from webapp.feedback import Feedback, FeedbackStore, StoreFull, export
from webapp.metrics import Metrics
from webapp.ratelimit import RateLimiter, client_key
from webapp.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLE = REPO_ROOT / "models" / "default"
BODY = "The save button on the settings page does nothing in Firefox 125; Chrome works."


def feedback(**fields: str) -> dict[str, str]:
    return {"body": BODY, "suggested": "Save button does nothing", "verdict": "good",
            "model_version": "v1", **fields}


@pytest.fixture(scope="module")
def make_app(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Flask]:
    """Apps on the shipped bundle, each with a feedback database of its own."""
    def make(**settings: Any) -> Flask:
        folder = tmp_path_factory.mktemp("app")
        defaults = {"model": str(BUNDLE), "feedback_db": folder / "feedback.sqlite3", "consensus_samples": 4}
        return create_app(Settings(**{**defaults, **settings}))
    return make


def from_address(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def csrf_token(client: FlaskClient) -> str:
    page = client.get("/").get_data(as_text=True)
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def rows(app: Flask) -> int:
    with sqlite3.connect(app.extensions["issue_summarizer"].settings.feedback_db) as db:
        return db.execute("SELECT count(*) FROM feedback").fetchone()[0]


# --- the rate limiter ------------------------------------------------------------------------


def test_the_bucket_refills_over_a_minute_per_client() -> None:
    limiter = RateLimiter(per_minute=120)  # 2 a second, so a refill is quick to wait for
    assert [limiter.take("a") for _ in range(120)] == [0.0] * 120
    wait = limiter.take("a")
    assert 0.4 < wait <= 0.5  # half a second for the next token
    assert limiter.take("b") == 0.0  # another client has its own bucket
    time.sleep(wait)
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0


def test_the_limiter_forgets_the_least_recently_seen_client_first() -> None:
    limiter = RateLimiter(per_minute=1, max_clients=3)
    for key in ("a", "b", "c"):
        assert limiter.take(key) == 0.0
    assert limiter.take("a") > 0  # seen again: now the most recent
    assert limiter.take("d") == 0.0  # forgets b, the least recent
    assert len(limiter) == 3
    assert limiter.take("a") > 0 and limiter.take("c") > 0 and limiter.take("d") > 0  # remembered
    assert limiter.take("b") == 0.0  # forgotten, so a fresh bucket
    for key in map(str, range(10_000)):
        limiter.take(key)
    assert len(limiter) == 3


def test_the_limiter_gives_out_no_more_tokens_than_it_has_under_threads() -> None:
    limiter = RateLimiter(per_minute=60)
    granted = []
    barrier = threading.Barrier(8)

    def hammer() -> None:
        barrier.wait()
        granted.append(sum(limiter.take("one") == 0.0 for _ in range(200)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refilled = int(time.monotonic() - started)  # one token a second
    assert 60 <= sum(granted) <= 60 + refilled


def test_clients_are_addresses_and_an_ipv6_host_is_its_slash_64() -> None:
    assert client_key("203.0.113.7") == "203.0.113.7"
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key(None) == client_key("") == "unknown"


# --- feedback over the limit -----------------------------------------------------------------


def test_feedback_over_the_limit_is_429_with_retry_after(make_app: Callable[..., Flask]) -> None:
    app = make_app(feedback_per_minute=3)
    client = from_address(app, "203.0.113.7")
    for _ in range(3):
        assert client.post("/api/feedback", json=feedback()).status_code == 201
    refused = client.post("/api/feedback", json=feedback(), headers={"X-Forwarded-For": "198.51.100.1"})
    assert refused.status_code == 429  # a forwarded-for header is no way around it
    message = refused.get_json()["error"]
    assert message.startswith("too much feedback from your address: at most 3 a minute; try again in ")
    assert 1 <= int(refused.headers["Retry-After"]) <= 20  # a token comes every 20 s
    assert f"try again in {refused.headers['Retry-After']} s" in message

    page = client.post("/feedback", data={"csrf_token": csrf_token(client), **feedback()})
    assert page.status_code == 429 and 1 <= int(page.headers["Retry-After"]) <= 20
    assert "too much feedback from your address" in page.get_data(as_text=True)

    other = from_address(app, "203.0.113.8")
    assert other.post("/api/feedback", json=feedback()).status_code == 201
    assert "Retry-After" not in other.post("/api/feedback", json={"verdict": "meh"}).headers
    assert rows(app) == 4
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'issue_summarizer_web_errors_total{kind="rate_limited"} 2' in metrics


# --- a feedback database at its size limit ----------------------------------------------------


def test_a_full_feedback_store_refuses_rows_and_titles_still_work(
        make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(feedback_max_mb=1, feedback_per_minute=1000)
    client = app.test_client()
    big = "x" * 100_000  # the longest body there may be: about 100 KB a row
    answers = [client.post("/api/feedback", json=feedback(body=big)) for _ in range(15)]
    statuses = [answer.status_code for answer in answers]
    assert 201 in statuses and statuses[-1] == 507, statuses
    assert statuses == sorted(statuses)  # once full, every row after is refused
    assert answers[-1].get_json()["error"] == ("the feedback store is full, so feedback cannot be saved "
                                               "for now; titles still work")
    assert "the feedback database is full (FEEDBACK_MAX_MB=1" in caplog.text
    db = app.extensions["issue_summarizer"].settings.feedback_db
    with sqlite3.connect(db) as connection:
        pages, size = (connection.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_count",
                                                                                       "page_size"))
    assert pages * size <= 2**20

    assert client.post("/api/summarize", json={"body": BODY}).status_code == 200
    assert client.get("/healthz").status_code == 200
    page = client.post("/feedback", data={"csrf_token": csrf_token(client), **feedback(body=big)})
    assert page.status_code == 507 and "the feedback store is full" in page.get_data(as_text=True)
    # The limit is SQLite's, set on each connection: another store on the file (another process)
    # holds to it too; one with a higher limit (FEEDBACK_MAX_MB raised) takes rows again.
    with pytest.raises(StoreFull):
        FeedbackStore(db, max_mb=1).add(Feedback(big, "Title", "good", None, "v1"))
    FeedbackStore(db, max_mb=2).add(Feedback(big, "Title", "good", None, "v1"))


# --- titles are one line of printable text ----------------------------------------------------


@pytest.fixture(scope="module")
def titles_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.mark.parametrize("bad, named", [("first line\nsecond line", "a line break (U+000A)"),
                                        ("first line\r\nsecond line", "a line break (U+000A)"),
                                        ("first line\rsecond line", "a line break (U+000A)"),
                                        ("with\ta tab", "a tab (U+0009)"),
                                        ("with a \0 NUL", "a NUL (U+0000)"),
                                        ("with a \x7f DEL", "a control character (U+007F)"),
                                        ("with a \x85 NEL", "a control character (U+0085)"),
                                        ("with a \u2028 separator", "a line separator (U+2028)")])
@pytest.mark.parametrize("field", ["suggested", "corrected"])
def test_titles_with_control_characters_are_refused(titles_app: Flask, field: str, bad: str,
                                                    named: str) -> None:
    client = titles_app.test_client()
    refused = client.post("/api/feedback", json=feedback(**{field: bad}))
    assert refused.status_code == 400
    assert refused.get_json()["error"] == (f"'{field}' must be one line of printable text, without line "
                                           f"breaks, tabs or other control characters: it holds {named}")
    page = client.post("/feedback", data={"csrf_token": csrf_token(client), **feedback(**{field: bad})})
    assert page.status_code == 400 and f"&#39;{field}&#39; must be one line" in page.get_data(as_text=True)
    assert rows(titles_app) == 0


def test_titles_in_any_script_and_with_emoji_are_taken(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    for title in ("تم إصلاح الخطأ", "می\u200cخواهم خروجی ذخیره شود",  # with a zero-width non-joiner
                  "\U0001F469\u200d\U0001F4BB crash on start", "  padded title \n"):
        assert client.post("/api/feedback", json=feedback(corrected=title, verdict="bad")).status_code == 201
    assert rows(app) == 4


def test_export_skips_stored_titles_that_are_not_one_line(tmp_path: Path) -> None:
    db = tmp_path / "feedback.sqlite3"
    store = FeedbackStore(db)  # rows as an older app stored them, without the check
    store.add(Feedback(BODY, "Save button does nothing", "good", None, "v1"))
    store.add(Feedback(BODY, "Save button", "bad", "Save does nothing\nin Firefox", "v1"))
    store.add(Feedback(BODY, "Save button \0 does nothing", "good", None, "v1"))
    store.add(Feedback(BODY, "Save\nbutton", "bad", "Save does nothing in Firefox", "v1"))  # correction kept
    store.add(Feedback(BODY, "Nothing", "bad", None, "v1"))
    output = tmp_path / "feedback.jsonl.gz"
    assert export(db, str(output)) == {"written": 2, "without_title": 1, "unprintable_title": 2}
    with gzip.open(output, "rt", encoding="utf-8") as lines:
        assert [json.loads(line)["title"] for line in lines] == ["Save button does nothing",
                                                                 "Save does nothing in Firefox"]


# --- a feedback database where none can be -----------------------------------------------------


def test_a_feedback_db_in_a_place_that_cannot_hold_one_is_a_one_line_error(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database" * 100)
    for path, reason in ((a_file / "feedback.sqlite3", f"{a_file} is a file, not a folder"),
                         (a_file / "deeper" / "feedback.sqlite3", f"{a_file} is a file, not a folder"),
                         (Path("/proc/no-such/feedback.sqlite3"), "cannot create the folder"),
                         (Path("/proc/self/feedback.sqlite3"), "cannot open the feedback database"),
                         (Path("/proc/self/status"), "not a usable feedback database"),
                         (Path("/sys/feedback.sqlite3"), "cannot open the feedback database"),
                         (tmp_path, "is a folder"),
                         (junk, "not a usable feedback database")):
        with pytest.raises(UserError) as refused:
            FeedbackStore(path)
        message = str(refused.value)
        assert message.startswith(str(path)) and reason in message and "set FEEDBACK_DB" in message, message
        assert "\n" not in message


@pytest.mark.parametrize("where", ["/proc/no-such/feedback.sqlite3", "/sys/feedback.sqlite3",
                                   "a-file/feedback.sqlite3"])
def test_python_m_webapp_with_an_unusable_feedback_db_exits_with_one_line(tmp_path: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    env = {**os.environ, "FEEDBACK_DB": where, "SUMMARIZER_MODEL": str(BUNDLE)}
    failed = subprocess.run([sys.executable, "-m", "webapp", "--port", "0"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith(f"issue-summarizer web app: error: {where}")
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr, failed.stderr


# --- metrics labels from closed sets ---------------------------------------------------------


def test_invented_methods_and_paths_do_not_grow_the_metrics(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()

    def invent(numbers: range) -> str:
        for number in numbers:
            client.open("/" if number % 2 else f"/no/such/page/{number}", method=f"INVENTED{number}")
        return client.get("/metrics").get_data(as_text=True)

    invent(range(10))  # every series there is, /metrics's own included
    before = invent(range(10, 20))
    after = invent(range(20, 2020))
    assert len(after) < 10_000 and len(after) - len(before) < 100, after  # only counts grew, not series
    assert "INVENTED" not in after and "/no/such" not in after
    assert 'route="unmatched",method="other",status="405"} 1010' in after  # a method the route lacks
    assert 'route="unmatched",method="other",status="404"} 1010' in after


def test_metrics_labels_are_bounded_whatever_the_caller_passes() -> None:
    metrics = Metrics()
    metrics.request("/", "get", 200, 0.01)  # methods are upper case on the wire; this is not one
    metrics.request("/", "PATCH", 999, 0.01)
    metrics.request("/", "PATCH", 42, 0.01)
    text = metrics.render()
    assert 'method="other",status="200"} 1' in text and 'method="PATCH",status="other"} 2' in text


# --- python -m webapp against idle connections ----------------------------------------------


@pytest.fixture
def quick_timeouts_app(tmp_path: Path) -> Iterator[str]:
    """`python -m webapp` on the default connection limit, with idle connections closed after
    2 s (checked every second) instead of the default 15 s, to keep the test short."""
    command = (*WEBAPP, "--channel-timeout", "2", "--cleanup-interval", "1")
    with running_app({"FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"), "SUMMARIZER_MODEL": str(BUNDLE)},
                     command=command) as app:
        yield app.url


def healthz_seconds(url: str) -> float:
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    return time.monotonic() - started


def test_idle_connections_neither_lock_out_new_clients_nor_stay_open(quick_timeouts_app: str) -> None:
    host, port = quick_timeouts_app.removeprefix("http://").split(":")
    idle = []
    try:
        for number in range(150):  # more than waitress's default limit of 100
            connection = socket.create_connection((host, int(port)), timeout=5)
            if number % 2:  # half a request, never finished
                connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            idle.append(connection)
        opened = time.monotonic()
        assert healthz_seconds(quick_timeouts_app) < 2  # at once, not after a cleanup

        closed_by_server = 0
        for connection in idle:
            connection.settimeout(max(0.1, opened + 8 - time.monotonic()))  # 2 s timeout, 1 s checks
            try:
                closed_by_server += connection.recv(1024) == b""
            except ConnectionResetError:
                closed_by_server += 1
            except TimeoutError:
                pass
        assert closed_by_server == 150
        assert healthz_seconds(quick_timeouts_app) < 2
    finally:
        for connection in idle:
            connection.close()


def test_the_connection_options_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    for option in ("--connection-limit", "--channel-timeout", "--cleanup-interval"):
        with pytest.raises(SystemExit) as refused:
            webapp_main([option, "0"])
        assert refused.value.code == 2 and f"{option}: 0 must be above 0" in capsys.readouterr().err
