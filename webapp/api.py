"""The JSON API for programs (and for the page's script): titles, feedback and a sample issue."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from summarizer.budget import MAX_BODY_CHARS
from summarizer.json_text import BadJSON, parse_json
from webapp import inputs
from webapp.backends import Candidate
from webapp.errors import WebError
from webapp.samples import pick
from webapp.security import require_json
from webapp.services import services

api = Blueprint("api", __name__, url_prefix="/api")
USAGE = 'send {"body": "<issue text>"}, {"url": "<GitHub issue URL>"} or {"issues": [{"body": ...}, ...]}'


def _json_object() -> dict[str, Any]:
    """The request's JSON object; each way a payload can be malformed gets its own message."""
    require_json()
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise WebError(f"the request says charset={charset}; send JSON as UTF-8 (charset=utf-8)", 415)
    try:
        data = parse_json(request.get_data(cache=False))  # at most MAX_CONTENT_LENGTH bytes
    except BadJSON as error:
        raise WebError(f"the request cannot be read: {error}; {USAGE}") from None
    if not isinstance(data, dict):
        raise WebError(f"the request is JSON but not an object: {USAGE}")
    return data


def _candidates(found: list[Candidate]) -> list[dict[str, Any]]:
    return [{"title": c.title, "score": None if c.score is None else round(c.score, 4)} for c in found]


def _batch_bodies(issues: Any) -> list[str]:
    limit = services().settings.max_batch
    if not isinstance(issues, list) or not issues:
        raise WebError(f"'issues' must be a non-empty list: {USAGE}")
    if len(issues) > limit:
        raise WebError(f"{len(issues)} issues in one request; the limit is {limit}: send smaller batches",
                       413, "too_large")
    if not all(isinstance(issue, dict) for issue in issues):
        raise WebError('every item of \'issues\' must be an object like {"body": "..."}')
    return [inputs.text(issue.get("body"), f"issues[{i}].body", MAX_BODY_CHARS, required=True)
            for i, issue in enumerate(issues)]


@api.post("/summarize")
def summarize() -> ResponseReturnValue:
    """One title (from "body" or "url") or a batch ("issues"), optionally with every candidate."""
    data = _json_object()
    app = services()
    beams = inputs.num_beams(data.get("num_beams"), app.settings.num_beams)
    with_candidates = data.get("candidates", False)
    if not isinstance(with_candidates, bool):
        raise WebError("'candidates' must be true or false")
    num_return = beams if with_candidates else 1
    if "issues" in data:
        if "body" in data or "url" in data:
            raise WebError(f"send 'issues' or one 'body'/'url', not both: {USAGE}")
        found, elapsed_ms = app.suggest(_batch_bodies(data["issues"]), beams, num_return)
        answer: dict[str, Any] = {"titles": [best[0].title for best in found.candidates]}
        if with_candidates:
            answer["candidates"] = [_candidates(best) for best in found.candidates]
    else:
        if data.get("body") and data.get("url"):
            raise WebError(f"send a 'body' or a 'url', not both: {USAGE}")
        body, issue = app.issue_text(data.get("body"), data.get("url"))
        found, elapsed_ms = app.suggest([body], beams, num_return)
        best = found.candidates[0]
        answer = {"title": best[0].title}
        if with_candidates:
            answer["candidates"] = _candidates(best)
        if issue is not None:
            answer["issue"] = {"url": issue.url, "title": issue.title, "body": issue.body}
    answer |= {"model_version": found.model_version, "elapsed_ms": round(elapsed_ms, 1)}
    return jsonify(answer)


@api.post("/feedback")
def feedback() -> ResponseReturnValue:
    """Store a verdict on a suggested title (and a correction, if any)."""
    number = services().save_feedback(inputs.feedback(_json_object()))
    return jsonify({"status": "saved", "id": number}), 201


@api.get("/sample")
def sample() -> ResponseReturnValue:
    """A sample issue at random."""
    chosen = pick(services().samples)
    return jsonify({"body": chosen.body, "title": chosen.title})
