"""The Kaggle / BigQuery CSV dump (`issue_url, issue_title, body`, the original example's
format) and the project's BigQuery export, which adds repo, labels, created_at, id, author."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from typing import BinaryIO

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

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def _labels(text: str) -> list[str] | str | None:
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text or None


def read_csv(handle: BinaryIO, where: str, skips: SkipCounter) -> Iterator[Issue]:
    """Issue records from a CSV with a header row; malformed rows are counted and skipped."""
    text = io.TextIOWrapper(handle, encoding="utf-8", errors="surrogateescape", newline="")
    rows = csv.reader(text)
    try:
        header = [name.strip().lower().lstrip("\ufeff") for name in next(rows)]
    except StopIteration:
        return
    index = {}
    for field, names in COLUMNS.items():
        index[field] = next((header.index(n) for n in names if n in header), None)
    if index["title"] is None or index["body"] is None:
        raise UserError(
            f"{where}: the header has no title or body column (found {', '.join(header)}); "
            "expected issue_url,issue_title,body",
        )
    line = 1
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as error:
            skips.add("malformed_csv_row", f"{where}:{rows.line_num}", str(error))
            continue
        start, line = line + 1, rows.line_num
        if not row:
            continue
        if len(row) != len(header):
            skips.add("malformed_csv_row", f"{where}:{start}",
                      f"{len(row)} fields, the header has {len(header)}")
            continue
        values = {f: (row[i] if i is not None else None) for f, i in index.items()}
        try:
            issue_id = values["id"]
            yield make_issue(
                url=values["url"], repo=values["repo"] or None, title=values["title"],
                body=values["body"], labels=_labels(values["labels"] or ""),
                created_at=values["created_at"] or None,
                id=int(issue_id) if issue_id and issue_id.isdigit() else None,
                author=values["author"] or None,
            )
        except RecordError as error:
            skips.add(error.reason, f"{where}:{start}", str(error))
