"""An issue's title and body fetched by its GitHub URL through the REST API.

Only `https://github.com/OWNER/REPO/issues/NUMBER` is accepted, and only the configured API host
(GITHUB_API_URL) is ever asked: the URL picks an issue, never a server, and redirects to another
host are not followed. Every failure becomes a WebError saying what happened.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests

from summarizer.readers.github_api import error_message
from webapp.errors import WebError

API_VERSION = "2022-11-28"
USER_AGENT = "issue-summarizer-webapp"
_ISSUE_URL = re.compile(
    r"https://github\.com/(?P<owner>[A-Za-z0-9][A-Za-z0-9-]{0,38})/(?P<repo>[A-Za-z0-9._-]{1,100})"
    r"/issues/(?P<number>[1-9][0-9]{0,9})/?(?:[?#]\S*)?"
)
_REDIRECTS = (301, 302, 307, 308)
_MAX_REDIRECTS = 3  # a renamed and then transferred repository is two


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
    headers = response.headers
    if response.status_code not in (403, 429):
        return None
    if headers.get("Retry-After", "").strip().isdigit():
        return float(headers["Retry-After"])
    if headers.get("X-RateLimit-Remaining") == "0":
        reset = headers.get("X-RateLimit-Reset", "").strip()
        return max(float(reset) - time.time(), 0.0) if reset.isdigit() else 60.0
    return None


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
        response = self._get(f"{self.api_url}/repos/{owner}/{repo}/issues/{number}", where)
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

    def _get(self, url: str, where: str) -> requests.Response:
        origin = urlsplit(self.api_url)[:2]
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                response = requests.get(url, headers=self._headers, timeout=self.timeout,
                                        allow_redirects=False)
            except requests.Timeout:
                raise WebError(f"GitHub did not answer within {self.timeout:g} s; try again", 504,
                               "github") from None
            except requests.RequestException:
                raise WebError(f"could not reach the GitHub API at {self.api_url}; try again later", 502,
                               "github") from None
            if response.status_code not in _REDIRECTS:
                self._check(response, where)
                return response
            url = urljoin(url, response.headers.get("Location", ""))
            if urlsplit(url)[:2] != origin:
                raise WebError(f"GitHub sent {where} to another host; it was not followed", 502, "github")
        raise WebError(f"GitHub redirected {where} too many times", 502, "github")

    def _check(self, response: requests.Response, where: str) -> None:
        status = response.status_code
        if status == 200:
            return
        wait = _rate_limit_wait(response)
        if wait is not None:
            minutes = max(math.ceil(wait / 60), 1)
            hint = "" if "Authorization" in self._headers else \
                " (a GITHUB_TOKEN raises the limit from 60 to 5,000 requests an hour)"
            raise WebError(f"GitHub's API rate limit is used up; try again in about {minutes} "
                           f"minute{'s' if minutes > 1 else ''}{hint}, or paste the issue's text",
                           429, "github")
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
