"""The issue record every reader produces and every later stage consumes.

Six content fields (url, repo, title, body, labels, created_at) plus two optional identity
fields (GitHub's numeric `id` and the `author` login) that only de-duplication and bot
filtering use. Records travel as JSON lines, one object per issue.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

ISSUE_URL = re.compile(
    r"^https?://(?:api\.)?github\.com/(?:repos/)?([^/\s]+)/([^/\s]+)/(?:issues|pull)/(\d+)"
)

# Bytes that were not UTF-8 (kept by "surrogateescape") and broken \u escapes in JSON both
# leave lone surrogates, which cannot be written back as UTF-8.
UNDECODABLE = re.compile("[\ud800-\udfff]")


class RecordError(ValueError):
    """A source object that cannot become an issue record; `reason` is its count key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(slots=True)
class Issue:
    url: str | None
    repo: str | None
    title: str
    body: str
    labels: list[str] = field(default_factory=list)
    created_at: str | None = None
    id: int | None = None
    author: str | None = None

    def to_json(self) -> str:
        fields = {name: getattr(self, name) for name in self.__slots__}  # asdict deep-copies: slow
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def canonical_url(url: str | None) -> tuple[str | None, str | None]:
    """Return (html issue url, owner/repo) for any GitHub issue url (html or API form)."""
    if not url:
        return None, None
    match = ISSUE_URL.match(url.strip())
    if not match:
        return url.strip(), None
    owner, name, number = match.groups()
    return f"https://github.com/{owner}/{name}/issues/{number}", f"{owner}/{name}"


def _optional_str(name: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise RecordError("wrong_type", f"'{name}' is {type(value).__name__}, expected a string")


def _labels(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):  # some dumps join labels with ',' or ':'
        return [part.strip() for part in re.split(r"[,:]", value) if part.strip()]
    if not isinstance(value, list):
        raise RecordError("wrong_type", f"'labels' is {type(value).__name__}, expected a list")
    names = []
    for label in value:
        name = label.get("name") if isinstance(label, dict) else label
        if not isinstance(name, str):
            raise RecordError("wrong_type", "'labels' holds an item that is not a name")
        names.append(name)
    return names


def make_issue(
    *,
    url: Any,
    repo: Any,
    title: Any,
    body: Any,
    labels: Any = None,
    created_at: Any = None,
    id: Any = None,
    author: Any = None,
) -> Issue:
    """Validate raw values from any source and build a record (raises RecordError)."""
    if title is None:
        raise RecordError("missing_field", "no 'title'")
    if not isinstance(title, str):
        raise RecordError("wrong_type", f"'title' is {type(title).__name__}, expected a string")
    if body is not None and not isinstance(body, str):
        raise RecordError("wrong_type", f"'body' is {type(body).__name__}, expected a string")
    if id is not None and (isinstance(id, bool) or not isinstance(id, int)):
        raise RecordError("wrong_type", f"'id' is {type(id).__name__}, expected an integer")
    html_url, url_repo = canonical_url(_optional_str("url", url))
    issue = Issue(
        url=html_url,
        repo=_optional_str("repo", repo) or url_repo,
        title=title,
        body=body or "",
        labels=_labels(labels),
        created_at=_optional_str("created_at", created_at),
        id=id,
        author=_optional_str("author", author),
    )
    for text in (issue.title, issue.body, issue.url, issue.repo, issue.created_at, issue.author,
                 *issue.labels):  # a plain loop: any() over a generator is slower here
        if text and not text.isascii() and UNDECODABLE.search(text):
            raise RecordError("non_utf8", "bytes that are not UTF-8, or a broken \\u escape")
    return issue
