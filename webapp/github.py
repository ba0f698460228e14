"""An issue's title and body fetched by its GitHub URL through the REST API.

Only `https://github.com/OWNER/REPO/issues/NUMBER` is accepted, and only the configured API host
(GITHUB_API_URL) is ever asked: the URL picks an issue, never a server, and redirects to another
host are not followed. The configured timeout bounds the whole exchange, redirects included, and
an answer is read only up to MAX_ANSWER_BYTES: a slow or huge answer is refused, not waited out
or held. Every failure becomes a WebError saying what happened.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from summarizer.readers.github_api import error_message, rate_limit_wait
from webapp.errors import WebError

API_VERSION = "2022-11-28"
USER_AGENT = "issue-summarizer-webapp"
_ISSUE_URL = re.compile(
    r"https://github\.com/(?P<owner>[A-Za-z0-9][A-Za-z0-9-]{0,38})/(?P<repo>[A-Za-z0-9._-]{1,100})"
    r"/issues/(?P<number>[1-9][0-9]{0,9})/?(?:[?#]\S*)?"
)
_REDIRECTS = (301, 302, 307, 308)
_MAX_REDIRECTS = 3  # a renamed and then transferred repository is two
# The most bytes read of one answer. GitHub cuts an issue's body at 65,536 characters, so even
# with its title, labels and JSON escapes a real issue's answer is a small part of this; reading
# a bigger one would only fill memory before refusing it.
MAX_ANSWER_BYTES = 2 * 1024 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchedIssue:
    url: str  # https://github.com/OWNER/REPO/issues/NUMBER
    title: str
    body: str


def parse_issue_url(url: str) -> tuple[str, str, int]:
    """(owner, repo, number) of a GitHub issue URL; a WebError for anything else."""
    match = _ISSUE_URL.fullmatch(url.strip())
    if not match or match["repo"] in (".", ".."):
        raise WebError(f"{url.strip()[:100]!r} is not a GitHub issue URL: paste one like "
                       "https://github.com/OWNER/REPO/issues/123", 400, "github")
    return match["owner"], match["repo"], int(match["number"])


def _error(response: requests.Response) -> str:
    return error_message(response) or f"HTTP {response.status_code}"


def _rate_limit_wait(response: requests.Response) -> float | None:
    """Seconds until the rate limit resets if this is a rate-limit answer, else None."""
    if response.status_code not in (403, 429):
        return None
    return rate_limit_wait(response.headers, time.time())


def _wait_words(seconds: float) -> str:
    """A wait as a person says it; past an hour, more than any GitHub limit asks, no number."""
    minutes = max(round(seconds / 60), 1)
    if minutes > 60:
        return "more than an hour"
    return f"about {minutes} minute{'s' if minutes > 1 else ''}"


def _too_large(where: str) -> WebError:
    return WebError(f"{where} is too large to summarize (GitHub's answer is over "
                    f"{MAX_ANSWER_BYTES >> 20} MiB): paste the start of its text instead", 413, "too_large")


class GitHubClient:
    """Reads issues from one GitHub API host (https://api.github.com or a GitHub Enterprise one)."""

    def __init__(self, api_url: str, token: str | None, timeout: float) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION,
                         "User-Agent": USER_AGENT}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def issue(self, url: str) -> FetchedIssue:
        """The issue `url` names, from the API host; pull requests and empty bodies are refused."""
        owner, repo, number = parse_issue_url(url)
        where = f"{owner}/{repo}#{number}"
        deadline = time.monotonic() + self.timeout
        response = self._get(f"{self.api_url}/repos/{owner}/{repo}/issues/{number}", where, deadline)
        try:
            issue = response.json()
        except ValueError:
            issue = None
        if not isinstance(issue, dict) or not isinstance(issue.get("title"), str):
            raise WebError(f"GitHub's answer for {where} is not an issue", 502, "github")
        if issue.get("pull_request"):
            raise WebError(f"{where} is a pull request, not an issue: paste an issue's URL", 400, "github")
        body = issue.get("body")
        if not isinstance(body, str) or not body.strip():
            raise WebError(f"{where} has no description to make a title from", 400, "github")
        html_url = issue.get("html_url")
        canonical = html_url if isinstance(html_url, str) and _ISSUE_URL.fullmatch(html_url) else \
            f"https://github.com/{owner}/{repo}/issues/{number}"
        return FetchedIssue(canonical, issue["title"], body)

    def _get(self, url: str, where: str, deadline: float) -> requests.Response:
        """The answer for `url` after same-origin redirects, its body read and its connection closed."""
        origin = urlsplit(self.api_url)[:2]
        for _ in range(_MAX_REDIRECTS + 1):
            with self._request(url, deadline) as response:
                if response.status_code not in _REDIRECTS:
                    self._read(response, where, deadline)
                    self._check(response, where)
                    return response
            url = urljoin(url, response.headers.get("Location", ""))
            if urlsplit(url)[:2] != origin:
                raise WebError(f"GitHub sent {where} to another host; it was not followed", 502, "github")
        raise WebError(f"GitHub redirected {where} too many times", 502, "github")

    def _request(self, url: str, deadline: float) -> requests.Response:
        """GitHub's status and headers for `url`; the body is left on the wire for `_read`."""
        try:
            return requests.get(url, headers=self._headers, timeout=self._left(deadline),
                                allow_redirects=False, stream=True)
        except requests.Timeout:
            raise self._too_slow() from None
        except requests.RequestException:
            raise WebError(f"could not reach the GitHub API at {self.api_url}; try again later", 502,
                           "github") from None

    def _read(self, response: requests.Response, where: str, deadline: float) -> None:
        """Read the body into `response` (for .json()) within `deadline` and MAX_ANSWER_BYTES."""
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isascii() and declared.isdigit() and float(declared) > MAX_ANSWER_BYTES:
            raise _too_large(where)  # before reading a byte of it
        body = bytearray()
        try:
            while chunk := self._chunk(response, deadline):
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise _too_large(where)
        except urllib3.exceptions.ReadTimeoutError:
            raise self._too_slow() from None
        except urllib3.exceptions.HTTPError:
            raise WebError(f"GitHub's answer for {where} broke off; try again later", 502, "github") from None
        response._content = bytes(body)  # where requests keeps a read body: .json() and .text use it

    def _chunk(self, response: requests.Response, deadline: float) -> bytes:
        """The body's next bytes as soon as any arrive (b"" at its end), never waiting past `deadline`:
        requests' timeout bounds each socket read, which an answer dripping a byte a second never trips."""
        left = self._left(deadline)
        connection = response.raw.connection  # None once the whole body is in
        if connection is not None and connection.sock is not None:
            connection.sock.settimeout(left)
        return response.raw.read1(_CHUNK, decode_content=True)

    def _left(self, deadline: float) -> float:
        """Seconds left before `deadline`; a 504 once there are none."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._too_slow()
        return left

    def _too_slow(self) -> WebError:
        return WebError(f"GitHub did not answer within {self.timeout:g} s; try again", 504, "github")

    def _check(self, response: requests.Response, where: str) -> None:
        status = response.status_code
        if status == 200:
            return
        wait = _rate_limit_wait(response)
        if wait is not None:
            hint = "" if "Authorization" in self._headers else \
                " (a GITHUB_TOKEN raises the limit from 60 to 5,000 requests an hour)"
            raise WebError(f"GitHub's API rate limit is used up; try again in {_wait_words(wait)}{hint}, "
                           "or paste the issue's text", 429, "github")
        private_hint = "its GITHUB_TOKEN cannot see it" if "Authorization" in self._headers else \
            "a private repository needs a GITHUB_TOKEN"
        if status == 404:
            raise WebError(f"GitHub has no issue {where}, or the repository is private ({private_hint})",
                           404, "github")
        if status == 403:
            raise WebError(f"GitHub refused access to {where}: the repository is private or blocked "
                           f"({private_hint}): {_error(response)}", 403, "github")
        if status == 410:
            raise WebError(f"{where} was deleted, or the repository has issues turned off", 410, "github")
        if status == 401:
            raise WebError(f"GitHub rejected the app's GITHUB_TOKEN ({_error(response)})", 502, "github")
        raise WebError(f"GitHub answered {status} for {where} ({_error(response)}); try again later", 502,
                       "github")
