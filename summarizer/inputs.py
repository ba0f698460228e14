"""Issue bodies as `summarize` reads them: arguments, whole files, JSON lines or stdin."""

from __future__ import annotations

import json
import sys

from summarizer.errors import UserError


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror or error})") from None


def _json_lines(path: str) -> list[str]:
    bodies = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as error:
            raise UserError(f"{path}:{number}: not JSON ({error}); write one {{\"body\": ...}} object "
                            "per line") from None
        body = item.get("body") if isinstance(item, dict) else None
        if not isinstance(body, str):
            raise UserError(f"{path}:{number}: no \"body\" string in this line; write one "
                            "{\"body\": ...} object per line")
        bodies.append(body)
    return bodies


def read_bodies(texts: list[str], files: list[str], jsonl: list[str]) -> list[str]:
    """Every body given, in the order: arguments, files, JSON lines; stdin when none is."""
    bodies = [*texts, *map(_read_text, files), *(body for path in jsonl for body in _json_lines(path))]
    if not (texts or files or jsonl):
        if sys.stdin.isatty():
            raise UserError("no issue body given: pass it as an argument, with --file or --jsonl, or "
                            "pipe it in")
        bodies = [sys.stdin.read()]
    return bodies
