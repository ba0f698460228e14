"""Issues of a live repository, crawled through the GitHub REST API, resumably.

`RepositoryCrawl("owner/repo", state_dir).issues(skips)` lists
`/repos/{owner}/{repo}/issues` oldest first, following the `Link: rel="next"` header, and
yields an `Issue` for every issue (pull requests, which the endpoint mixes in, are counted as
skipped). Rate limits are waited out, server errors retried, and every other failure becomes
a one-line `UserError`.

A crawl of a big repository takes thousands of requests, so it is resumable: after each page
its records and the next page's URL go to `state_dir` (atomically). A crawl that is killed
and run again replays what was saved, without refetching it, and goes on from the saved URL,
so the caller always gets every issue exactly once per run. The caller calls `finish()` once
its own output is safely written, which deletes the state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests

from summarizer.errors import UserError
from summarizer.readers.json_objects import from_rest
from summarizer.records import Issue, RecordError
from summarizer.skips import SkipCounter

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
PER_PAGE = 100
STATE_FILE = "crawl.json"
STATE_FORMAT = 1
_PAGE_FILE = "page-{:06d}.json"

_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_RETRIED = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
_Skip = tuple[str, str, str]  # reason, where, detail: SkipCounter.add's arguments
_MAX_RATE_LIMIT_WAITS = 10  # consecutive rate-limit answers for one URL before giving up
# GitHub's rate-limit windows last an hour and its secondary limits ask for a minute or a few,
# so a longer wait comes from a wrong clock or a broken proxy. Waits are cut to a day: a number
# that prints and sleeps (a Retry-After of 400 digits is an infinite float), yet longer than any
# sane maximum wait, so callers still refuse it.
LONGEST_WAIT = 86400.0
_UNSAID_WAIT = 60.0  # a limit whose length the headers do not say: GitHub's documented minimum


def parse_repo(text: str) -> str:
    """`owner/repo` checked (also accepts `github:owner/repo` and a github.com URL)."""
    value = text.strip().removeprefix("github:")
    value = re.sub(r"^https?://(?:www\.)?github\.com/", "", value).rstrip("/").removesuffix(".git")
    parts = value.split("/")
    if (len(parts) != 2 or not _OWNER.match(parts[0]) or not _NAME.match(parts[1])
            or parts[1] in {".", ".."}):
        raise UserError(
            f"{text!r} is not a GitHub repository: expected owner/repo, e.g. octo-org/widgets"
        )
    return f"{parts[0]}/{parts[1]}"


def _parse_since(since: str | datetime | None) -> str | None:
    """ISO 8601 to GitHub's `YYYY-MM-DDTHH:MM:SSZ` (a time without zone is taken as UTC)."""
    if since is None or since == "":
        return None
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since.strip())
        except ValueError:
            raise UserError(
                f"since {since!r} is not an ISO 8601 time, e.g. 2024-03-01 or 2024-03-01T12:00:00Z"
            ) from None
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_api_url(api_url: str | None) -> str:
    url = (api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(
            f"GitHub API URL {url!r} is not an http(s) address, e.g. {DEFAULT_API_URL} or "
            "https://github.example.com/api/v3 (check GITHUB_API_URL)"
        )
    return url


def _user_agent() -> str:
    try:
        return f"issue-summarizer/{metadata.version('issue-summarizer')}"
    except metadata.PackageNotFoundError:
        return "issue-summarizer"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def error_message(response: requests.Response) -> str:
    """GitHub's `message` from an error body, else the HTTP reason."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return response.reason or ""


def rate_limit_wait(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds a rate-limit answer's headers ask to wait, at most LONGEST_WAIT; None if they say
    nothing of a wait. Shared by the crawler and the web app so both read the headers alike.

    Retry-After is whole seconds or an HTTP date; X-RateLimit-Reset, an epoch second, counts
    only when X-RateLimit-Remaining is 0. Only ASCII digits are numbers ("²".isdigit() is true).
    """
    retry_after = headers.get("Retry-After", "").strip()
    if retry_after:
        if _is_number(retry_after):
            seconds = float(retry_after)  # inf past float's range: cut below
        else:
            at = _http_date(retry_after)
            seconds = _UNSAID_WAIT if at is None else _until(at, now)
    elif headers.get("X-RateLimit-Remaining", "").strip() == "0":
        reset = headers.get("X-RateLimit-Reset", "").strip()
        seconds = _until(float(reset), now) if _is_number(reset) else _UNSAID_WAIT
    else:
        return None
    return min(seconds, LONGEST_WAIT)


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _http_date(text: str) -> float | None:
    """The epoch time of an HTTP date (a zoneless one taken as UTC), None if it is not one."""
    try:
        when = parsedate_to_datetime(text)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _until(at: float, now: float) -> float:
    """Seconds from `now` to `at`, a time on GitHub's clock: one more for the clocks' skew."""
    return max(at - now, 0.0) + 1.0


def _write_atomically(path: Path, data: Any) -> None:
    """Temp file in the same folder, then os.replace: a reader sees the old or the new file."""
    with tempfile.NamedTemporaryFile(
        "w", encoding="ascii", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
        delete=False,
    ) as handle:
        # ensure_ascii: bodies may hold lone surrogates from JSON escapes, not UTF-8 encodable.
        json.dump(data, handle, separators=(",", ":"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


class RepositoryCrawl:
    """One repository's issues through the REST API, resumable from `state_dir`.

    `state_dir` is a folder this crawl owns (created if missing; None: nothing is saved).
    `token` defaults to env GITHUB_TOKEN ("" sends none); `api_url` to env GITHUB_API_URL,
    else https://api.github.com. `sleep` and `clock` are injectable for tests; a rate-limit
    wait longer than `max_wait` seconds raises a UserError instead of waiting.
    """

    def __init__(
        self,
        repo: str,
        state_dir: str | os.PathLike[str] | None,
        *,
        since: str | datetime | None = None,
        api_url: str | None = None,
        token: str | None = None,
        max_wait: float = 3600.0,
        retries: int = 4,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
    ) -> None:
        self.repo = parse_repo(repo)
        self.since = _parse_since(since)
        self.api_url = _parse_api_url(api_url)
        self.token = (os.environ.get("GITHUB_TOKEN", "") if token is None else token).strip()
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.max_wait = max_wait
        self.retries = retries
        self.timeout = timeout
        self._sleep = sleep
        self._clock = clock
        self._session = session or requests.Session()
        self._session.headers.update({
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": _user_agent(),
        })
        self.pages = 0  # pages in this run's output so far, replayed ones included
        self.count = 0  # issues yielded so far

    @property
    def source(self) -> str:
        """How the repository is named in messages: `github:owner/repo`."""
        return f"github:{self.repo}"

    @property
    def first_url(self) -> str:
        """The URL of the first page; later ones come from Link headers."""
        owner, name = self.repo.split("/")
        query: dict[str, str | int] = {
            "state": "all", "per_page": PER_PAGE, "sort": "created", "direction": "asc"}
        if self.since:
            query["since"] = self.since
        return f"{self.api_url}/repos/{quote(owner)}/{quote(name)}/issues?{urlencode(query)}"

    def issues(self, skips: SkipCounter) -> Iterator[Issue]:
        """Every issue, oldest first: saved pages replayed, then the rest fetched and saved.

        Consume it to the end on every run (the replayed part included) and write the whole
        output; then call `finish()`. Pull requests and unusable objects go to `skips`.
        """
        self.pages = self.count = 0
        state = self._load_state()
        if state is None:
            state = {"format": STATE_FORMAT, **self._params(), "pages": 0, "issues": 0,
                     "next": self.first_url}
        else:
            yield from self._replay(state, skips)
        url = state["next"]
        while url:
            items, next_url = self._fetch_page(url)
            records, skipped = self._convert(items, url)
            page = state["pages"] + 1
            # Page first, then the state that points at it: a kill in between refetches it.
            if self.state_dir is not None:
                _write_atomically(self.state_dir / _PAGE_FILE.format(page),
                                  {"url": url, "issues": [asdict(r) for r in records],
                                   "skipped": skipped})
            state.update(pages=page, issues=state["issues"] + len(records), next=next_url)
            self._save_state(state)
            for reason, where, detail in skipped:
                skips.add(reason, where, detail)
            self.pages += 1
            self.count += len(records)
            log.info("%s: page %d fetched, %d issues so far (%d skipped)",
                     self.source, self.pages, self.count, skips.total())
            yield from records
            url = next_url
        log.info("%s: done, %d issues from %d pages", self.source, self.count, self.pages)

    def finish(self) -> None:
        """Delete the saved state: call once the caller's output is safely written."""
        if self.state_dir is None:
            return
        self._clear()
        with contextlib.suppress(OSError):  # not empty (someone else's files) or gone
            self.state_dir.rmdir()

    # -- saved state ---------------------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        return {"repo": self.repo.lower(), "since": self.since, "api_url": self.api_url}

    def _clear(self) -> None:
        assert self.state_dir is not None
        if not self.state_dir.is_dir():
            return
        for pattern in (STATE_FILE, "page-*.json", ".*.tmp"):
            for path in self.state_dir.glob(pattern):
                path.unlink(missing_ok=True)

    def _save_state(self, state: dict[str, Any]) -> None:
        if self.state_dir is not None:
            _write_atomically(self.state_dir / STATE_FILE, state)

    def _load_state(self) -> dict[str, Any] | None:
        """The saved state if it belongs to this crawl, else None (and the folder emptied)."""
        if self.state_dir is None:
            return None
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create crawl state folder {self.state_dir}: {error}") from None
        path = self.state_dir / STATE_FILE
        if not path.exists():
            self._clear()  # page files of a run killed before its first state write
            return None
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            pages = state["pages"]
            ok = isinstance(pages, int) and all(
                (self.state_dir / _PAGE_FILE.format(n)).is_file() for n in range(1, pages + 1))
        except (OSError, ValueError, KeyError, TypeError):
            state, ok = None, False
        if not ok or not isinstance(state, dict):
            log.warning("%s: the crawl state in %s is unreadable; starting over",
                        self.source, self.state_dir)
            self._clear()
            return None
        saved = {key: state.get(key) for key in self._params()}
        if state.get("format") != STATE_FORMAT or saved != self._params():
            log.info("%s: the crawl state in %s was made for other parameters (%s); starting "
                     "over", self.source, self.state_dir,
                     ", ".join(f"{k}={v}" for k, v in saved.items()))
            self._clear()
            return None
        return state

    def _replay(self, state: dict[str, Any], skips: SkipCounter) -> Iterator[Issue]:
        assert self.state_dir is not None
        log.info("%s: resuming from %s: replaying %d saved pages (%d issues)%s", self.source,
                 self.state_dir, state["pages"], state["issues"],
                 "" if state["next"] else "; the crawl was complete")
        for page in range(1, state["pages"] + 1):
            path = self.state_dir / _PAGE_FILE.format(page)
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
                records = [Issue(**fields) for fields in saved["issues"]]
                skipped = [(str(r), str(w), str(d)) for r, w, d in saved["skipped"]]
            except (OSError, ValueError, KeyError, TypeError) as error:
                self._clear()
                raise UserError(f"{self.source}: saved page {path} is damaged ({error}); the "
                                "crawl state was removed, run again to start over") from None
            for reason, where, detail in skipped:
                skips.add(reason, where, detail)
            self.pages += 1
            self.count += len(records)
            yield from records

    # -- HTTP ------------------------------------------------------------------------------

    def _convert(self, items: list[Any], url: str) -> tuple[list[Issue], list[_Skip]]:
        records: list[Issue] = []
        skipped: list[_Skip] = []
        for item in items:
            try:
                if not isinstance(item, dict):
                    raise RecordError("wrong_type", f"a JSON {type(item).__name__} in the page")
                records.append(from_rest(item))
            except RecordError as error:
                skipped.append((error.reason, url, str(error)))
        return records, skipped

    def _fetch_page(self, url: str) -> tuple[list[Any], str | None]:
        """One page's items and the next page's URL (None on the last page)."""
        response = self._get(url)
        status = response.status_code
        if status == 404:
            raise UserError(f"{self.source} not found (or private: set GITHUB_TOKEN with access)")
        if status == 401:
            raise UserError(
                f"GitHub rejected the credentials ({status} {error_message(response)}): check "
                "GITHUB_TOKEN" if self.token else
                f"the GitHub API at {self._host} requires authentication: set GITHUB_TOKEN")
        if status == 410:
            raise UserError(f"{self.source} has its issues turned off ({error_message(response)})")
        if status == 403:
            raise UserError(f"GitHub refused access to {self.source} ({error_message(response)}); "
                            "check that GITHUB_TOKEN may read its issues")
        if status != 200:
            raise UserError(f"GitHub API error for {self.source}: HTTP {status} "
                            f"{error_message(response)} ({url})")
        try:
            items = json.loads(response.content)
        except ValueError:
            raise UserError(
                f"{url} did not return JSON (Content-Type "
                f"{response.headers.get('Content-Type', 'none')}): is {self.api_url} a GitHub "
                "API address? Check GITHUB_API_URL") from None
        if not isinstance(items, list):
            raise UserError(f"{url} returned a JSON {type(items).__name__}, not a list of "
                            f"issues: is {self.api_url} a GitHub API address?")
        return items, response.links.get("next", {}).get("url")

    @property
    def _host(self) -> str:
        return urlsplit(self.api_url).netloc

    def _get(self, url: str) -> requests.Response:
        """GET with rate limits waited out and network/5xx failures retried with backoff."""
        failures = waits = 0
        # The token only goes to the API's own origin, wherever a Link header may point.
        headers = ({"Authorization": f"Bearer {self.token}"}
                   if self.token and _origin(url) == _origin(self.api_url) else {})
        while True:
            try:
                response = self._session.get(url, headers=headers, timeout=self.timeout)
            except _RETRIED as error:
                failures += 1
                match = _ERRNO.search(str(error))
                reason = match.group(1).strip() if match else type(error).__name__
                if failures > self.retries:
                    raise UserError(
                        f"cannot reach the GitHub API at {urlsplit(url).netloc} ({reason}); "
                        "check the network or GITHUB_API_URL") from None
                self._backoff(failures, f"{urlsplit(url).netloc}: {reason}")
                continue
            except requests.RequestException as error:
                raise UserError(f"cannot request {url}: {error}") from None
            wait = self._rate_limit_wait(response, waits)
            if wait is not None:
                waits += 1
                if waits > _MAX_RATE_LIMIT_WAITS:
                    raise UserError(f"GitHub kept answering {url} with a rate limit after "
                                    f"{_MAX_RATE_LIMIT_WAITS} waits; try again later")
                self._wait_for_rate_limit(wait)
                continue
            if response.status_code >= 500:
                failures += 1
                if failures > self.retries:
                    raise UserError(
                        f"the GitHub API at {urlsplit(url).netloc} kept failing (HTTP "
                        f"{response.status_code} {error_message(response)} after {failures} tries); "
                        "try again later")
                self._backoff(failures, f"HTTP {response.status_code} from {url}")
                continue
            return response

    def _backoff(self, failures: int, what: str) -> None:
        delay = min(2.0 ** (failures - 1), 30.0)
        log.warning("%s; retrying in %.0f s (retry %d of %d)", what, delay, failures,
                    self.retries)
        self._sleep(delay)

    def _rate_limit_wait(self, response: requests.Response, waits: int) -> float | None:
        """Seconds to wait if `response` is a rate-limit answer, else None."""
        if response.status_code not in (403, 429):
            return None
        wait = rate_limit_wait(response.headers, self._clock())
        if wait is not None:
            return wait
        if response.status_code == 429 or "rate limit" in error_message(response).lower():
            return 60.0 * 2**waits  # a secondary limit without headers: GitHub says >= 1 min
        return None

    def _wait_for_rate_limit(self, wait: float) -> None:
        hint = "" if self.token else " Set GITHUB_TOKEN for a higher limit."
        if wait > self.max_wait:
            raise self._not_waiting(wait, hint)
        until = datetime.fromtimestamp(self._clock() + wait, UTC).strftime("%H:%M:%S")
        log.warning("GitHub rate limit reached; waiting %.0f s (until %s UTC).%s", wait, until, hint)
        self._sleep(wait)

    def _not_waiting(self, wait: float, hint: str) -> UserError:
        """Why the crawl stops instead of waiting `wait` s, and when to run it again."""
        if wait >= LONGEST_WAIT:  # no GitHub limit lasts that long: its windows are an hour
            when, rerun = "more than a day", "in an hour"
        else:
            until = datetime.fromtimestamp(self._clock() + wait, UTC).strftime("%Y-%m-%d %H:%M:%S")
            when, rerun = f"{wait:.0f} s (at {until} UTC)", f"after {until} UTC"
        return UserError(
            f"GitHub rate limit reached; it resets in {when}, longer than the maximum wait of "
            f"{self.max_wait:.0f} s. Run again {rerun}"
            + (": the crawl resumes where it stopped." if self.state_dir is not None else ".") + hint)
