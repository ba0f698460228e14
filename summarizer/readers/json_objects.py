"""GitHub issue JSON in every layout seen in the wild, turned into issue records.

Layouts of the stream: one object, one array, JSON lines, arrays or objects written back
to back (API pages concatenated). Kinds of object, told apart one by one: REST API issues
(including python-github-backup objects), backup wrappers `{"type": "issue", "issue": ...}`,
GH Archive events (only `IssuesEvent` with action `opened` is an issue), and this project's
own records. Pull requests seen through the issues endpoint are dropped and counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import orjson

from summarizer.records import Issue, RecordError, make_issue
from summarizer.skips import SkipCounter

_DECODER = json.JSONDecoder()
# What the parsers raise on hostile input: JSONDecodeError (a ValueError) from both; from the
# standard library also ValueError for integers of over 4,300 digits and RecursionError for
# values nested deeper than the interpreter's recursion limit.
MALFORMED = (ValueError, RecursionError)


def _problem(error: ValueError | RecursionError) -> str:
    """What a skipped value's log line says is wrong with it."""
    if isinstance(error, RecursionError):
        return "nested too deeply"
    if isinstance(error, json.JSONDecodeError):
        return error.msg
    return str(error).split(";")[0]  # drop the advice to raise the digit limit


def _is_pull_request(issue: dict[str, Any]) -> bool:
    # Old (2012) API objects carry "pull_request": {"html_url": null, ...} on plain issues.
    pr = issue.get("pull_request")
    if isinstance(pr, dict) and any(pr.get(k) for k in ("url", "html_url", "diff_url")):
        return True
    html_url = issue.get("html_url")
    # str() of any other value could be nested too deeply to print
    return isinstance(html_url, str) and "/pull/" in html_url


def from_rest(issue: dict[str, Any], repo: str | None = None) -> Issue:
    """A GitHub REST API issue object (as the issues endpoint returns it) to a record."""
    if _is_pull_request(issue):
        raise RecordError("pull_request", "a pull request, not an issue")
    user = issue.get("user")
    repository_url = issue.get("repository_url")
    if repo is None and isinstance(repository_url, str) and "/repos/" in repository_url:
        repo = repository_url.split("/repos/", 1)[1]
    return make_issue(
        url=issue.get("html_url") or issue.get("url"),
        repo=repo,
        title=issue.get("title"),
        body=issue.get("body"),
        labels=issue.get("labels"),
        created_at=issue.get("created_at"),
        id=issue.get("id"),
        author=user.get("login") if isinstance(user, dict) else None,
    )


def from_object(obj: Any) -> Issue:
    """Tell which kind of issue object this is and convert it (raises RecordError)."""
    if not isinstance(obj, dict):
        raise RecordError("wrong_type", f"a JSON {type(obj).__name__}, expected an object")
    kind = obj.get("type")
    if kind == "IssuesEvent" and isinstance(obj.get("payload"), dict):
        payload = obj["payload"]
        action = payload.get("action")
        if action != "opened":
            # repr() of a value that is not a string could be nested too deeply to print
            shown = repr(action) if isinstance(action, str) else f"a {type(action).__name__}"
            raise RecordError("not_opened_event", f"IssuesEvent action {shown}")
        if not isinstance(payload.get("issue"), dict):
            raise RecordError("missing_field", "IssuesEvent without payload.issue")
        repo = obj.get("repo", {}).get("name") if isinstance(obj.get("repo"), dict) else None
        return from_rest(payload["issue"], repo)
    if isinstance(kind, str) and kind.endswith("Event") and "payload" in obj:
        raise RecordError("other_event", f"a GH Archive {kind}")
    if kind == "issue" and isinstance(obj.get("issue"), dict):
        return from_rest(obj["issue"])
    if kind == "pull_request" and isinstance(obj.get("pull_request"), dict):
        raise RecordError("pull_request", "a backed-up pull request")
    if any(k in obj for k in ("html_url", "number", "repository_url", "node_id")):
        return from_rest(obj)
    if "title" in obj or "body" in obj:
        return make_issue(**{k: obj.get(k) for k in (
            "url", "repo", "title", "body", "labels", "created_at", "id", "author")})
    raise RecordError("unrecognized_object", "neither an issue, an event nor a record")


def _after_bad_value(text: str, pos: int) -> int:
    """Where to read on after the value at `pos` failed to parse: the next line that starts
    a value (JSON lines, or documents written back to back)."""
    nxt = min((i for i in (text.find("\n{", pos + 1), text.find("\n[", pos + 1)) if i >= 0),
              default=-1)
    return len(text) if nxt < 0 else nxt + 1


def _values_of_document(text: str, where: str, skips: SkipCounter) -> Iterator[tuple[int, Any]]:
    """Every top-level value of a document that may hold several, with its line number."""
    pos, end = 0, len(text)
    line, counted = 1, 0  # lines counted incrementally: counting from 0 each time is O(n^2)
    while True:
        while pos < end and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= end:
            return
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            value, pos = _DECODER.raw_decode(text, pos)
        except MALFORMED as error:
            skips.add("invalid_json", f"{where}:{line}", _problem(error))
            pos = _after_bad_value(text, pos)
            continue
        if isinstance(value, list):
            for item in value:
                yield line, item
        else:
            yield line, value


def _values(handle: BinaryIO, where: str, skips: SkipCounter) -> Iterator[tuple[int, Any]]:
    first = handle.readline()
    while first and not first.strip():
        first = handle.readline()
    if not first:
        return
    first_text = first.decode("utf-8", "surrogateescape").removeprefix("\ufeff")  # BOM
    if first_text.lstrip().startswith("{"):
        try:
            value = json.loads(first_text)
        except MALFORMED:
            value = None  # not one object per line: a pretty-printed document (or bad JSON)
        if isinstance(value, dict):  # JSON lines: stream, one record per line
            yield 1, value
            for number, raw in enumerate(handle, 2):
                try:
                    yield number, orjson.loads(raw)  # fast path: valid UTF-8 and JSON
                    continue
                except orjson.JSONDecodeError:
                    pass
                # Let the standard parser say what is wrong, keeping non-UTF-8 bytes as
                # surrogates so the record is counted as non_utf8 rather than invalid.
                text = raw.decode("utf-8", "surrogateescape").strip()
                if not text:
                    continue
                try:
                    yield number, json.loads(text)
                except MALFORMED as error:
                    skips.add("invalid_json", f"{where}:{number}", _problem(error))
            return
    rest = handle.read().decode("utf-8", "surrogateescape")
    yield from _values_of_document(first_text + rest, where, skips)


def read_json(handle: BinaryIO, where: str, skips: SkipCounter) -> Iterator[Issue]:
    """Issue records from any JSON layout; bad objects are counted and skipped."""
    for line, value in _values(handle, where, skips):
        try:
            issue = from_object(value)
        except RecordError as error:
            skips.add(error.reason, f"{where}:{line}", str(error))
            continue
        yield issue
