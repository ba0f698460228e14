"""GitHub answers that are slow, huge or ask for absurd waits, against the local replay server:
the web app's fetch is bounded in time and bytes as a whole (redirects included) and hangs up,
and neither the web app nor the crawler shows or sleeps a giant rate-limit wait."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from email.utils import formatdate
from itertools import pairwise
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from github_replay import GitHubReplay, HangUp, route_key

from summarizer.errors import UserError
from summarizer.readers.github_api import LONGEST_WAIT, RepositoryCrawl, rate_limit_wait
from summarizer.skips import SkipCounter
from webapp.app import create_app
from webapp.github import MAX_ANSWER_BYTES
from webapp.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 0.5  # the app's SUMMARIZER_TIMEOUT here
JSON = {"Content-Type": "application/json; charset=utf-8"}
AN_ISSUE = {"title": "Export fails", "body": "Exporting a widget whose name has a slash fails with "
            "FileNotFoundError on Linux and Windows alike."}
RATE_LIMITED = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you "
                "try again."}
CRAWL_FIXTURES = Path(__file__).parent / "fixtures" / "github_api"
PAGE1 = "/repos/octo-org/widgets/issues?state=all&per_page=100&sort=created&direction=asc"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_TOKEN", "GITHUB_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def github() -> Iterator[GitHubReplay]:
    with GitHubReplay() as server:
        yield server


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, github: GitHubReplay) -> FlaskClient:
    folder = tmp_path_factory.mktemp("app")
    return create_app(Settings(model=str(REPO_ROOT / "models" / "default"), feedback_db=folder / "f.db",
                               github_api_url=github.base_url, timeout=TIMEOUT)).test_client()


def issue(number: int) -> str:
    """The API path of octo-org/widgets#number: each test its own, so no answer outlives its test."""
    return f"/repos/octo-org/widgets/issues/{number}"


def fetch(client: FlaskClient, number: int) -> tuple[int, str, float]:
    """Status, error message and seconds of asking the app to summarize octo-org/widgets#number."""
    started = time.monotonic()
    answer = client.post("/api/summarize", json={"url": f"https://github.com/octo-org/widgets/issues/{number}"})
    return answer.status_code, answer.get_json().get("error", ""), time.monotonic() - started


def hang_up(server: GitHubReplay, path: str) -> HangUp:
    """The server's record of the client closing the connection on `path`'s answer."""
    give_up = time.monotonic() + 5
    while time.monotonic() < give_up:
        found = [h for h in server.hung_up if h.key == route_key(path)]
        if found:
            return found[-1]
        time.sleep(0.01)
    raise AssertionError(f"the client never hung up on {path}")


# --- time: the timeout bounds the whole exchange -----------------------------------------------


def test_an_answer_dripping_a_byte_at_a_time_is_cut_at_the_timeout(client: FlaskClient,
                                                                   github: GitHubReplay) -> None:
    github.set(issue(1), {"status": 200, "headers": JSON, "body": AN_ISSUE, "drip": 0.02})  # ~3 s in all
    status, message, seconds = fetch(client, 1)
    assert status == 504 and message.startswith(f"GitHub did not answer within {TIMEOUT:g} s")
    assert "could not reach" not in message
    assert TIMEOUT <= seconds < TIMEOUT + 0.5
    cut = hang_up(github, issue(1))
    assert 0 < cut.sent < cut.size


def test_an_answer_that_stalls_is_cut_at_the_timeout(client: FlaskClient, github: GitHubReplay) -> None:
    github.set(issue(7), {"status": 200, "headers": JSON, "body": AN_ISSUE, "drip": TIMEOUT + 0.1})
    status, message, seconds = fetch(client, 7)
    assert status == 504 and message.startswith(f"GitHub did not answer within {TIMEOUT:g} s")
    assert TIMEOUT <= seconds < TIMEOUT + 0.5
    assert hang_up(github, issue(7)).sent <= 1


def test_an_answer_that_breaks_off_is_a_message(client: FlaskClient, github: GitHubReplay) -> None:
    github.set(issue(8), {"status": 200, "headers": JSON, "body": AN_ISSUE, "cut": 20})
    status, message, _ = fetch(client, 8)
    assert (status, message) == (502, "GitHub's answer for octo-org/widgets#8 broke off; try again later")


def test_redirects_share_one_timeout(client: FlaskClient, github: GitHubReplay) -> None:
    # Each hop answers well within the timeout; the three together do not.
    hops = ["/repos/octo-org/old-widgets/issues/2", "/repositories/734120001/issues/2", issue(2)]
    for here, there in pairwise(hops):
        github.set(here, {"status": 301, "headers": {"Location": f"{{base}}{there}"}, "delay": 0.25})
    github.set(issue(2), {"status": 200, "headers": JSON, "body": AN_ISSUE, "delay": 0.25})
    started = time.monotonic()
    answer = client.post("/api/summarize", json={"url": "https://github.com/octo-org/old-widgets/issues/2"})
    assert answer.status_code == 504
    assert answer.get_json()["error"].startswith(f"GitHub did not answer within {TIMEOUT:g} s")
    assert time.monotonic() - started < TIMEOUT + 0.3


# --- bytes: an answer is read only up to MAX_ANSWER_BYTES --------------------------------------


def test_an_answer_declared_too_large_is_refused_before_its_body(client: FlaskClient,
                                                                 github: GitHubReplay) -> None:
    # The body's first byte comes later than the timeout: only a refusal on the headers is a 413.
    github.set(issue(3), {"status": 200, "headers": JSON, "size": 50_000_000, "drip": TIMEOUT + 0.2})
    status, message, seconds = fetch(client, 3)
    assert status == 413 and seconds < TIMEOUT / 2
    assert message == ("octo-org/widgets#3 is too large to summarize (GitHub's answer is over 2 MiB): paste "
                       "the start of its text instead")
    assert hang_up(github, issue(3)).sent <= 1  # a write after a hang-up goes out: its reset stops the next


def test_an_answer_without_a_length_is_read_only_to_the_cap(client: FlaskClient,
                                                            github: GitHubReplay) -> None:
    github.set(issue(4), {"status": 200, "headers": JSON, "size": 50_000_000, "chunked": True})
    status, message, _ = fetch(client, 4)
    assert status == 413 and "octo-org/widgets#4 is too large to summarize" in message
    # What the server got out before the hang-up: the cap, plus what the sockets' buffers took.
    assert MAX_ANSWER_BYTES < hang_up(github, issue(4)).sent < 10 * MAX_ANSWER_BYTES


def test_an_error_answer_is_capped_too(client: FlaskClient, github: GitHubReplay) -> None:
    github.set(issue(5), {"status": 502, "headers": JSON, "size": 50_000_000, "chunked": True})
    status, message, _ = fetch(client, 5)
    assert status == 413 and "too large to summarize" in message
    assert hang_up(github, issue(5)).sent < 10 * MAX_ANSWER_BYTES


# --- rate limits: parsed alike, shown and waited within bounds ---------------------------------


@pytest.mark.parametrize(("headers", "said"), [
    ({"Retry-After": "120"}, "try again in about 2 minutes"),
    ({"Retry-After": "{date+120}"}, "try again in about 2 minutes"),  # the HTTP-date form
    ({"Retry-After": "3600"}, "try again in about 60 minutes"),
    ({"Retry-After": "7200"}, "try again in more than an hour"),
    ({"Retry-After": "100000000000000000000"}, "try again in more than an hour"),
    ({"Retry-After": "9" * 400}, "try again in more than an hour"),  # past a float's range
    ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{now+99999999999999}"},
     "try again in more than an hour"),
    ({"Retry-After": "²"}, "try again in about 1 minute"),  # str.isdigit() says yes; no number
    ({"Retry-After": "soon"}, "try again in about 1 minute"),
])
def test_rate_limit_waits_are_said_in_plain_words(client: FlaskClient, github: GitHubReplay,
                                                  headers: dict[str, str], said: str) -> None:
    github.set(issue(6), {"status": 429, "headers": {**JSON, **headers}, "body": RATE_LIMITED})
    status, message, _ = fetch(client, 6)
    assert status == 429 and said in message
    assert not re.search(r"\d{3,}", message.split(" (a GITHUB_TOKEN")[0])


def test_the_headers_are_read_within_bounds() -> None:
    now = time.time()
    assert rate_limit_wait({"Retry-After": " 30 "}, now) == 30.0
    assert rate_limit_wait({"Retry-After": formatdate(now - 600, usegmt=True)}, now) == 1.0  # past: skew
    assert rate_limit_wait({"Retry-After": "Thu, 01 Jan 9999 00:00:00 -0000"}, now) == LONGEST_WAIT
    assert rate_limit_wait({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1x"}, now) == 60.0
    assert rate_limit_wait({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{now + 99:.0f}"},
                           now) == pytest.approx(100, abs=1)
    assert rate_limit_wait({"X-RateLimit-Remaining": "12", "X-RateLimit-Reset": f"{now:.0f}"}, now) is None
    assert rate_limit_wait({}, now) is None


class Sleeps(list):
    """An injected sleep that records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def api() -> Iterator[GitHubReplay]:
    with GitHubReplay.from_manifest(CRAWL_FIXTURES / "responses.json") as server:
        yield server


def crawl_after(api: GitHubReplay, headers: dict[str, str], tmp_path: Path) -> Sleeps:
    """Crawl with the first page rate-limited once with `headers`; the sleeps it asked for."""
    api.queue(PAGE1, {"status": 403, "headers": {**JSON, **headers}, "body": RATE_LIMITED})
    sleeps = Sleeps()
    crawler = RepositoryCrawl("octo-org/widgets", tmp_path, api_url=api.base_url, sleep=sleeps)
    assert len(list(crawler.issues(SkipCounter()))) == 7
    return sleeps


@pytest.mark.parametrize("headers", [
    {"Retry-After": "100000000000000000000"},
    {"Retry-After": "9" * 400},
    {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{now+99999999999999}"},
])
def test_the_crawler_stops_on_an_absurd_wait(api: GitHubReplay, tmp_path: Path,
                                             headers: dict[str, str]) -> None:
    with pytest.raises(UserError) as stopped:
        crawl_after(api, headers, tmp_path)
    assert str(stopped.value) == (
        "GitHub rate limit reached; it resets in more than a day, longer than the maximum wait of 3600 s. "
        "Run again in an hour: the crawl resumes where it stopped. Set GITHUB_TOKEN for a higher limit.")


def test_the_crawler_says_when_to_run_again(api: GitHubReplay, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"resets in 720\d s \(at (20\d\d-\d\d-\d\d \d\d:\d\d:\d\d) UTC\), "
                       r"longer than the maximum wait of 3600 s\. Run again after \1 UTC: the crawl resumes"):
        crawl_after(api, {"Retry-After": "{date+7200}"}, tmp_path)


@pytest.mark.parametrize(("headers", "low", "high"), [
    ({"Retry-After": "{date+5}"}, 4.0, 7.0),
    ({"Retry-After": "²"}, 60.0, 60.0),
])
def test_the_crawler_waits_what_the_headers_say(api: GitHubReplay, tmp_path: Path, headers: dict[str, str],
                                                low: float, high: float) -> None:
    sleeps = crawl_after(api, headers, tmp_path)
    assert len(sleeps) == 1 and low <= sleeps[0] <= high
