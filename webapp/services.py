"""The app's parts, built once by `create_app` and shared by every request: the model backend,
the GitHub client, the feedback store, the samples and the metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import current_app

from summarizer.errors import UserError
from webapp.backends import Backend, Suggestions
from webapp.errors import WebError
from webapp.feedback import Feedback, FeedbackStore
from webapp.github import FetchedIssue, GitHubClient
from webapp.inputs import MAX_BODY_CHARS, text
from webapp.metrics import Metrics
from webapp.samples import Sample
from webapp.settings import Settings

EXTENSION = "issue_summarizer"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    settings: Settings
    backend: Backend
    github: GitHubClient
    feedback: FeedbackStore
    samples: list[Sample]
    metrics: Metrics

    def suggest(self, bodies: list[str], num_beams: int, num_return: int) -> tuple[Suggestions, float]:
        """Titles for `bodies` and the milliseconds the model took."""
        started = time.perf_counter()
        found = self.backend.suggest(bodies, num_beams, num_return)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.metrics.titles(len(bodies))
        self.metrics.model(found.model_version, self.backend.mode)
        return found, elapsed_ms

    def save_feedback(self, entry: Feedback) -> int:
        """Store `entry`; a storage failure is logged here and reported without the server's details."""
        try:
            return self.feedback.add(entry)
        except UserError as error:
            log.error("feedback not saved: %s", error)
            raise WebError("the feedback could not be saved; the server's log says why", 500,
                           "feedback") from None

    def issue_text(self, body: object, url: object) -> tuple[str, FetchedIssue | None]:
        """The body to summarize: the issue at `url` when one is given, else `body`."""
        url = text(url, "url", 300)
        if url:
            issue = self.github.issue(url)
            return text(issue.body, "body", MAX_BODY_CHARS, required=True), issue
        return text(body, "body", MAX_BODY_CHARS, required=True), None


def services() -> Services:
    """This app's Services (inside a request or an app context)."""
    return current_app.extensions[EXTENSION]
