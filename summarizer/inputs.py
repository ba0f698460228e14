"""Issue bodies as `summarize` reads them: arguments, whole files, JSON lines or stdin.

A JSON line that is not a `{"body": ...}` object is one bad record, not the end of the run: it
keeps its place (so output lines still match input lines) with the reason it has no title."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from summarizer.errors import UserError
from summarizer.json_text import BadJSON, parse_json


@dataclass(frozen=True)
class Body:
    where: str  # what a message names: "argument 2", a file, "issues.jsonl:7"
    text: str | None  # None: the record is unusable, `problem` says why
    problem: str | None = None


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror or error})") from None


def _json_line(where: str, line: str) -> Body:
    try:
        item = parse_json(line)
    except BadJSON as error:
        return Body(where, None, f"not JSON: {error}; write one {{\"body\": ...}} object per line")
    body = item.get("body") if isinstance(item, dict) else None
    if not isinstance(body, str):
        return Body(where, None, "no \"body\" string in this line; write one {\"body\": ...} object per line")
    return Body(where, body)


def _json_lines(path: str) -> list[Body]:
    return [_json_line(f"{path}:{number}", line)
            for number, line in enumerate(_read_text(path).splitlines(), 1) if line.strip()]


def read_bodies(texts: list[str], files: list[str], jsonl: list[str]) -> list[Body]:
    """Every body given, in the order: arguments, files, JSON lines; stdin when none is."""
    bodies = [*(Body(f"argument {number}", text) for number, text in enumerate(texts, 1)),
              *(Body(path, _read_text(path)) for path in files),
              *(body for path in jsonl for body in _json_lines(path))]
    if not (texts or files or jsonl):
        if sys.stdin.isatty():
            raise UserError("no issue body given: pass it as an argument, with --file or --jsonl, or "
                            "pipe it in")
        bodies = [Body("stdin", sys.stdin.read())]
    return bodies
