"""Checks on the fields a request carries, shared by the page's forms and the JSON API: each one
either yields a clean value or a WebError that says what to send instead."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from summarizer.budget import MAX_BODY_CHARS
from summarizer.decoding import MAX_BEAMS
from webapp.errors import WebError
from webapp.feedback import VERDICTS, Feedback, title_problem
from webapp.github import parse_issue_url

MAX_TITLE_CHARS = 300
MAX_VERSION_CHARS = 100


def text(value: Any, name: str, limit: int, required: bool = False) -> str:
    """`value` as stripped text of at most `limit` characters ("" when absent and not required),
    with \n line ends (browsers send a form's as \r\n; stored text should not depend on the path)."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise WebError(f"'{name}' must be text, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise WebError(f"'{name}' holds characters that are not valid Unicode text") from None
    stripped = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if required and not stripped:
        raise WebError("the issue's text is empty: paste it, or a GitHub issue URL" if name == "body"
                       else f"'{name}' is empty")
    if len(stripped) > limit:
        raise WebError(f"'{name}' has {len(stripped):,} characters; the limit is {limit:,}", 413, "too_large")
    return stripped


def num_beams(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BEAMS:
        raise WebError(f"'num_beams' must be a whole number from 1 to {MAX_BEAMS}")
    return value


def title(value: Any, name: str, required: bool = False) -> str:
    """`value` as a title: text (see `text`) that is one line of printable text (title_problem)."""
    checked = text(value, name, MAX_TITLE_CHARS, required)
    problem = title_problem(checked)
    if problem:
        raise WebError(f"'{name}' must be one line of printable text, without line breaks, tabs or "
                       f"other control characters: {problem}")
    return checked


def feedback(fields: Mapping[str, Any]) -> Feedback:
    """A Feedback from a form or a JSON object: body, suggested, verdict, corrected, model_version, url."""
    verdict = fields.get("verdict")
    if verdict not in VERDICTS:
        raise WebError(f"'verdict' must be one of {', '.join(VERDICTS)}")
    url = text(fields.get("url"), "url", 300)
    if url:
        owner, repo, number = parse_issue_url(url)
        url = f"https://github.com/{owner}/{repo}/issues/{number}"
    return Feedback(
        body=text(fields.get("body"), "body", MAX_BODY_CHARS, required=True),
        suggested=title(fields.get("suggested"), "suggested", required=True),
        verdict=verdict,
        corrected=title(fields.get("corrected"), "corrected") or None,
        model_version=text(fields.get("model_version"), "model_version", MAX_VERSION_CHARS, required=True),
        url=url or None,
    )
