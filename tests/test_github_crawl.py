"""The GitHub API crawler against a local server replaying recorded API responses."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from github_replay import GitHubReplay, route_key

from summarizer.errors import UserError
from summarizer.readers.github_api import STATE_FILE, RepositoryCrawl, parse_repo
from summarizer.skips import SkipCounter

FIXTURES = Path(__file__).parent / "fixtures" / "github_api"
QUERY = "state=all&per_page=100&sort=created&direction=asc"
PAGE1 = f"/repos/octo-org/widgets/issues?{QUERY}"
PAGE2 = f"/repositories/734120001/issues?{QUERY}&page=2"
PAGE3 = f"/repositories/734120001/issues?{QUERY}&page=3"
ALL_ISSUES = [1, 2, 4, 5, 6, 8, 9]  # 3 and 7 are pull requests
LOGGER = "summarizer.readers.github_api"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_TOKEN", "GITHUB_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def github() -> Iterator[GitHubReplay]:
    with GitHubReplay.from_manifest(FIXTURES / "responses.json") as server:
        yield server


class Sleeps(list):
    """An injected sleep that records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def crawl(server: GitHubReplay, state_dir: Path | None, repo: str = "octo-org/widgets",
          **kwargs) -> RepositoryCrawl:
    kwargs.setdefault("sleep", Sleeps())
    return RepositoryCrawl(repo, state_dir, api_url=server.base_url, **kwargs)


def numbers(issues) -> list[int]:
    return [int(issue.url.rsplit("/", 1)[1]) for issue in issues]


def test_follows_link_headers_and_drops_pull_requests(github: GitHubReplay, tmp_path: Path):
    skips = SkipCounter()
    issues = list(crawl(github, tmp_path / "state").issues(skips))

    assert github.fetched() == [route_key(p) for p in (PAGE1, PAGE2, PAGE3)]
    assert numbers(issues) == ALL_ISSUES
    assert skips.as_dict() == {"pull_request": 2}
    first = issues[0]
    assert first.url == "https://github.com/octo-org/widgets/issues/1"
    assert first.repo == "octo-org/widgets"
    assert first.title == "Export fails when a widget name contains a slash"
    assert first.labels == ["bug"] and first.author == "mara-quill"
    assert first.created_at == "2024-01-08T09:14:02Z"
    assert issues[-1].body == ""  # a null body
    assert issues[3].labels == ["bug", "crash"]
    request = github.requests[0]
    assert request.query == {"state": "all", "per_page": "100", "sort": "created",
                             "direction": "asc"}
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert request.headers["user-agent"].startswith("issue-summarizer")


def test_token_sent_only_when_set(github: GitHubReplay, monkeypatch: pytest.MonkeyPatch):
    list(crawl(github, None).issues(SkipCounter()))
    assert all("authorization" not in r.headers for r in github.requests)

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_exampletoken0123456789")
    github.requests.clear()
    list(crawl(github, None).issues(SkipCounter()))
    assert len(github.requests) == 3
    assert {r.headers.get("authorization") for r in github.requests} == {
        "Bearer ghp_exampletoken0123456789"}


def test_waits_out_primary_rate_limit(github: GitHubReplay, caplog: pytest.LogCaptureFixture):
    github.queue(PAGE2, github.named["rate_limited"])
    sleeps = Sleeps()
    caplog.set_level(logging.INFO, logger=LOGGER)

    issues = list(crawl(github, None, sleep=sleeps).issues(SkipCounter()))

    assert numbers(issues) == ALL_ISSUES
    assert len(sleeps) == 1 and 1 <= sleeps[0] <= 4  # reset 2 s ahead, + 1 s for clock skew
    assert github.fetched().count(route_key(PAGE2)) == 2  # the same URL, retried
    assert "GitHub rate limit reached; waiting" in caplog.text
    assert "UTC). Set GITHUB_TOKEN for a higher limit." in caplog.text


def test_honours_retry_after(github: GitHubReplay, caplog: pytest.LogCaptureFixture,
                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_exampletoken0123456789")
    github.queue(PAGE3, github.named["secondary_rate_limited"])
    sleeps = Sleeps()
    caplog.set_level(logging.WARNING, logger=LOGGER)

    issues = list(crawl(github, None, sleep=sleeps).issues(SkipCounter()))

    assert numbers(issues) == ALL_ISSUES
    assert sleeps == [1.0]
    assert "GitHub rate limit reached; waiting 1 s" in caplog.text
    assert "Set GITHUB_TOKEN" not in caplog.text  # it is set


def test_rate_limit_beyond_max_wait_is_a_user_error(github: GitHubReplay, tmp_path: Path):
    github.queue(PAGE2, github.named["rate_limited_for_hours"])
    sleeps = Sleeps()
    with pytest.raises(UserError, match=r"resets in \d+ s .*maximum wait of 3600 s.*resumes"):
        list(crawl(github, tmp_path, sleep=sleeps).issues(SkipCounter()))
    assert sleeps == []


def test_since_is_passed_through(github: GitHubReplay):
    issues = list(crawl(github, None, since="2024-03-01T00:00:00Z").issues(SkipCounter()))
    assert github.requests[0].query["since"] == "2024-03-01T00:00:00Z"
    assert numbers(issues) == [8, 9]


def test_resumes_after_interruption_without_refetching(github: GitHubReplay, tmp_path: Path):
    state = tmp_path / "state"
    github.queue(PAGE3, *[github.named["server_error"]] * 5)  # fails past the 4 retries
    first_run: list = []
    with pytest.raises(UserError, match="kept failing.*HTTP 502"):
        for issue in crawl(github, state).issues(SkipCounter()):
            first_run.append(issue)
    assert numbers(first_run) == [1, 2, 4, 5, 6]
    assert json.loads((state / STATE_FILE).read_text())["pages"] == 2

    github.requests.clear()
    skips = SkipCounter()
    again = crawl(github, state)
    second_run = list(again.issues(skips))

    assert github.fetched() == [route_key(PAGE3)]  # pages 1 and 2 came from the state
    assert numbers(second_run) == ALL_ISSUES  # all of them, each once
    assert second_run[:5] == first_run
    assert skips.as_dict() == {"pull_request": 2}  # replayed pages keep their counts

    again.finish()
    assert not state.exists()


def test_stopped_consumer_resumes_and_finish_removes_state(github: GitHubReplay, tmp_path: Path):
    state = tmp_path / "state"
    for count, _issue in enumerate(crawl(github, state).issues(SkipCounter()), 1):
        if count == 4:  # the first issue of page 2: the process "dies" here
            break
    assert any(state.iterdir())

    github.requests.clear()
    resumed = crawl(github, state)
    assert numbers(resumed.issues(SkipCounter())) == ALL_ISSUES
    assert github.fetched() == [route_key(PAGE3)]

    # Run again before finish(): a complete saved crawl is replayed without any request.
    github.requests.clear()
    assert numbers(crawl(github, state).issues(SkipCounter())) == ALL_ISSUES
    assert github.requests == []

    resumed.finish()
    assert not state.exists()
    list(crawl(github, state).issues(SkipCounter()))
    assert route_key(PAGE1) in github.fetched()  # after finish() it starts over


def test_state_for_other_parameters_starts_over(github: GitHubReplay, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture):
    list(crawl(github, tmp_path).issues(SkipCounter()))
    github.requests.clear()
    caplog.set_level(logging.INFO, logger=LOGGER)

    issues = list(crawl(github, tmp_path, since="2024-03-01").issues(SkipCounter()))

    assert numbers(issues) == [8, 9]
    assert github.requests[0].query.get("since") == "2024-03-01T00:00:00Z"
    assert "other parameters" in caplog.text


def test_missing_repository(github: GitHubReplay):
    with pytest.raises(UserError) as error:
        list(crawl(github, None, repo="octo-org/no-such-repo").issues(SkipCounter()))
    assert str(error.value) == (
        "github:octo-org/no-such-repo not found (or private: set GITHUB_TOKEN with access)")


def test_bad_credentials(github: GitHubReplay, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_revoked")
    github.set(PAGE1, github.named["bad_credentials"])
    with pytest.raises(UserError, match="Bad credentials.*check GITHUB_TOKEN"):
        list(crawl(github, None).issues(SkipCounter()))


@pytest.mark.parametrize("response, message", [
    ("html_page", r"did not return JSON \(Content-Type text/html.*GITHUB_API_URL"),
    ("not_a_list", "returned a JSON dict, not a list of issues"),
])
def test_page_that_is_not_an_issue_list(github: GitHubReplay, response: str, message: str):
    github.set(PAGE1, github.named[response])
    with pytest.raises(UserError, match=message):
        list(crawl(github, None).issues(SkipCounter()))


def test_unreachable_host(tmp_path: Path):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps = Sleeps()
    crawler = RepositoryCrawl("octo-org/widgets", tmp_path, api_url=f"http://127.0.0.1:{port}",
                              sleep=sleeps)
    with pytest.raises(UserError) as error:
        list(crawler.issues(SkipCounter()))
    message = str(error.value)
    assert f"cannot reach the GitHub API at 127.0.0.1:{port}" in message
    assert "GITHUB_API_URL" in message and "\n" not in message
    assert sleeps == [1.0, 2.0, 4.0, 8.0]  # backed off, retried, gave up


@pytest.mark.parametrize("text", [
    "widgets", "octo-org/widgets/issues", "octo org/widgets", "/widgets", "octo-org/", "a/..",
])
def test_malformed_repository(text: str):
    with pytest.raises(UserError, match="not a GitHub repository: expected owner/repo"):
        RepositoryCrawl(text, None)


def test_repository_spellings():
    assert parse_repo("github:octo-org/widgets") == "octo-org/widgets"
    assert parse_repo("https://github.com/octo-org/widgets.git") == "octo-org/widgets"


def test_malformed_since():
    with pytest.raises(UserError, match="not an ISO 8601 time"):
        RepositoryCrawl("octo-org/widgets", None, since="last tuesday")
