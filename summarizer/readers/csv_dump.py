"""The Kaggle / BigQuery CSV dump (`issue_url, issue_title, body`, the original example's
format) and the project's BigQuery export, which adds repo, labels, created_at, id, author.

Dumps are not always valid CSV: a body with a quote that never closes makes a CSV parser
read the next issues into that body. When the file has a URL column, a row counts only if
its URL field is a URL; a broken row is skipped and reading starts again at the next line
that starts a row, so one bad quote costs one issue, not the rest of the file.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import deque
from collections.abc import Callable, Iterator
from itertools import chain
from typing import BinaryIO, TextIO

from summarizer.errors import UserError
from summarizer.records import Issue, RecordError, make_issue
from summarizer.skips import SkipCounter

# Column names each record field is read from, in order of preference.
COLUMNS = {
    "url": ("issue_url", "url", "html_url"),
    "title": ("issue_title", "title"),
    "body": ("body", "issue_body"),
    "repo": ("repo", "repository"),
    "labels": ("labels",),
    "created_at": ("created_at",),
    "id": ("id", "issue_id"),
    "author": ("author", "user_login"),
}
URL = re.compile(r"https?://\S+")

# GitHub caps a body at 65,536 characters: a field far longer is a quote that never closed
# reading the rest of the file, and the limit stops it before the file is all in memory.
csv.field_size_limit(1 << 24)


class _Lines:
    """The file's physical lines as csv.reader reads them, remembering the lines of the row
    being read: csv.reader cannot go back, and a broken row's later lines may be issues."""

    def __init__(self, text: TextIO) -> None:
        self._text = text
        self._pending: deque[str] = deque()  # pushed back, read again before the file
        self.row: list[str] = []  # the lines the row being read has taken so far
        self.first = 1  # line number of the row's first line

    def reader(self, strict: bool) -> Iterator[list[str]]:
        """A csv.reader from the next unread line on (a new one after every push-back:
        one that has seen the end of the file stays ended)."""
        return csv.reader(self._feed(), strict=strict)

    def _feed(self) -> Iterator[str]:
        append = self.row.append
        for line in chain(self._drain(), self._text):
            append(line)
            yield line

    def _drain(self) -> Iterator[str]:
        while self._pending:
            yield self._pending.popleft()

    def end_row(self) -> int:
        """The row read is done with; returns its first line's number."""
        first = self.first
        self.first += len(self.row)
        self.row.clear()
        return first

    def skip_broken(self, starts_row: Callable[[str], bool]) -> tuple[int, int]:
        """Drop the broken row's first line and the lines after it up to one that starts a
        row; its other lines are read again. Returns the first and last line dropped."""
        first = self.first
        self._pending.extendleft(reversed(self.row[1:]))
        self.row.clear()
        self.first = first + 1
        for line in chain(self._drain(), self._text):
            if starts_row(line):
                self._pending.appendleft(line)
                break
            self.first += 1
        return first, self.first - 1


def _labels(text: str) -> list[str] | str | None:
    if text.startswith("["):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):  # not JSON, a 4,300-digit number, deep nesting
            pass
    return text or None


def _id(text: str | None) -> int | None:
    # isdigit() alone also accepts digits like "²" that int() rejects; 20 digits hold any
    # GitHub id, while int() refuses strings of over 4,300.
    return int(text) if text and text.isascii() and text.isdigit() and len(text) <= 20 else None


def _starts_row(url_column: int) -> Callable[[str], bool]:
    """Whether a line, read on its own, has a URL in the URL column."""
    def starts_row(line: str) -> bool:
        try:
            fields = next(csv.reader((line,)), [])
        except csv.Error:
            return False
        return len(fields) > url_column and URL.fullmatch(fields[url_column]) is not None
    return starts_row


def _header(lines: _Lines, where: str) -> tuple[list[str], dict[str, int | None]] | None:
    """The column names and the column of each record field; None for an empty file."""
    try:
        raw = next(lines.reader(strict=False))
    except StopIteration:
        return None
    except csv.Error as error:
        raise UserError(f"{where}: the header row is not valid CSV ({error})") from None
    lines.end_row()
    header = [name.strip().lower().lstrip("\ufeff") for name in raw]
    index = {field: next((header.index(n) for n in names if n in header), None)
             for field, names in COLUMNS.items()}
    if index["title"] is None or index["body"] is None:
        raise UserError(
            f"{where}: the header has no title or body column (found {', '.join(header)[:200]}); "
            "expected issue_url,issue_title,body",
        )
    return header, index


def _issue(row: list[str], index: dict[str, int | None]) -> Issue:
    values = {f: (row[i] if i is not None else None) for f, i in index.items()}
    return make_issue(
        url=values["url"], repo=values["repo"] or None, title=values["title"],
        body=values["body"], labels=_labels(values["labels"] or ""),
        created_at=values["created_at"] or None, id=_id(values["id"]),
        author=values["author"] or None,
    )


def _broken(row: list[str], width: int, url_column: int | None) -> str | None:
    """Why a row cannot be an issue's row; None when it can (or is a blank line)."""
    if row and len(row) != width:
        return f"{len(row)} fields, the header has {width}"
    if row and url_column is not None and not URL.fullmatch(row[url_column]):
        return f"{row[url_column][:60]!r} in the URL column is not a URL"
    return None


def read_csv(handle: BinaryIO, where: str, skips: SkipCounter) -> Iterator[Issue]:
    """Issue records from a CSV with a header row; malformed rows are counted and skipped."""
    text = io.TextIOWrapper(handle, encoding="utf-8", errors="surrogateescape", newline="")
    lines = _Lines(text)
    found = _header(lines, where)
    if found is None:
        return
    header, index = found
    url_column = index["url"]
    # strict: a closing quote followed by text is how a quote that never closed shows up;
    # unstrict, csv.reader glues the text on and the swallowed issues pass as one body.
    rows = lines.reader(strict=url_column is not None)
    while True:
        try:
            row = next(rows)
            problem = _broken(row, len(header), url_column)
        except StopIteration:
            return
        except csv.Error as error:
            problem = f"not valid CSV: {error}"
        if problem is None:
            start = lines.end_row()
            if row:  # not a blank line
                try:
                    issue = _issue(row, index)
                except RecordError as error:
                    skips.add(error.reason, f"{where}:{start}", str(error))
                else:
                    yield issue
        elif url_column is None:
            skips.add("malformed_csv_row", f"{where}:{lines.end_row()}", problem)
        else:
            first, last = lines.skip_broken(_starts_row(url_column))
            dropped = f"; lines {first}-{last} skipped" if last > first else ""
            skips.add("malformed_csv_row", f"{where}:{first}", problem + dropped)
            rows = lines.reader(strict=True)
