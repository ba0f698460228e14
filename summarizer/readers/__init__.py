"""Readers: every source format becomes the same stream of issue records."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

from summarizer import storage
from summarizer.errors import UserError
from summarizer.readers.csv_dump import read_csv
from summarizer.readers.json_objects import read_json
from summarizer.records import Issue
from summarizer.skips import SkipCounter

FORMATS = ("auto", "csv", "json")


def file_format(path: str, requested: str = "auto") -> str:
    """`csv` or `json` (JSON covers REST dumps, GH Archive events and records)."""
    if requested != "auto":
        return requested
    name = path.lower().removesuffix(".gz")
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith((".json", ".jsonl", ".ndjson")):
        return "json"
    raise UserError(
        f"{path}: cannot tell the format from the name; name it .csv, .json or .jsonl "
        "(optionally .gz) or pass --format"
    )


def read_file(path: str, skips: SkipCounter, fmt: str = "auto") -> Iterator[Issue]:
    """Issue records from one local or gs:// file."""
    reader = read_csv if file_format(path, fmt) == "csv" else read_json
    with storage.open_read(path) as handle:
        try:
            yield from reader(handle, path, skips)
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            # A truncated or corrupt archive: keep what was read, count the rest as lost.
            skips.add("unreadable_rest_of_file", path, f"{error}; is the file complete?")
