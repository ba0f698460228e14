"""The page people use. It works with plain form POSTs (each answered with the whole page);
static/app.js, when it runs, sends the same things to the JSON API instead, without reloads."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Blueprint, make_response, render_template, request
from flask.typing import ResponseReturnValue

from webapp import inputs
from webapp.backends import Candidate
from webapp.errors import WebError, with_retry_after
from webapp.feedback import Feedback
from webapp.samples import pick
from webapp.security import check_csrf
from webapp.services import services

pages = Blueprint("pages", __name__)


@dataclass(frozen=True)
class Form:
    """What the summarize form shows in its fields."""

    body: str = ""
    title: str = ""
    url: str = ""


@dataclass(frozen=True)
class Result:
    """A suggested title as the page shows it (and as its feedback form sends it back)."""

    title: str
    model_version: str
    candidates: list[Candidate] = field(default_factory=list)
    elapsed_ms: float | None = None
    url: str | None = None  # the GitHub issue the body came from


def render_page(form: Form | None = None, result: Result | None = None, error: str | None = None,
                feedback_status: str | None = None, status: int = 200) -> ResponseReturnValue:
    return render_template("index.html", form=form or Form(), result=result, error=error,
                           feedback_status=feedback_status), status


def render_error(error: WebError, form: Form | None = None,
                 result: Result | None = None) -> ResponseReturnValue:
    services().metrics.error(error.kind)
    page = make_response(render_page(form, result, error=error.message, status=error.status))
    return with_retry_after(page, error)


def _thanks(entry: Feedback) -> str:
    if entry.corrected:
        return "Thanks! Your title was saved; it will help train the next model."
    return f"Thanks! Saved: the title is {'good' if entry.verdict == 'good' else 'not good'}."


@pages.get("/")
def index() -> ResponseReturnValue:
    return render_page()


@pages.post("/")
def summarize() -> ResponseReturnValue:
    """Summarize the pasted body, or the issue at the pasted URL (which then fills the fields)."""
    form = Form(*(request.form.get(name, "") for name in ("body", "title", "url")))
    app = services()
    try:
        check_csrf()
        body, issue = app.issue_text(form.body, form.url)
        found, elapsed_ms = app.suggest([body], app.settings.num_beams, app.settings.num_beams)
    except WebError as error:
        return render_error(error, form)
    if issue is not None:
        form = Form(issue.body, issue.title, issue.url)
    best = found.candidates[0]
    return render_page(form, Result(best[0].title, found.model_version, best, elapsed_ms,
                                    issue.url if issue else None))


@pages.post("/sample")
def sample() -> ResponseReturnValue:
    """Fill the form with a sample issue."""
    try:
        check_csrf()
    except WebError as error:
        return render_error(error)
    chosen = pick(services().samples)
    return render_page(Form(chosen.body, chosen.title or ""))


@pages.post("/feedback")
def feedback() -> ResponseReturnValue:
    """Store a verdict (the button pressed) and a correction, if one was typed."""
    fields = request.form
    shown = Result(fields.get("suggested", ""), fields.get("model_version", ""),
                   url=fields.get("url") or None)
    form = Form(fields.get("body", ""), url=fields.get("url", ""))
    try:
        check_csrf()
        entry = inputs.feedback(fields)
        services().save_feedback(entry)
    except WebError as error:
        return render_error(error, form, shown if shown.title else None)
    return render_page(form, shown, feedback_status=_thanks(entry))
