"""The app's parts, built once by `create_app` and shared by every request: the model backend,
the GitHub client, the feedback store, the samples and the metrics."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from flask import current_app, request

from summarizer.budget import MAX_BODY_CHARS, Gate, check_request
from summarizer.decoding import DecodeConfig
from summarizer.errors import RequestError, UserError
from webapp.backends import Backend, Suggestions, consensus_options, web_error
from webapp.errors import WebError
from webapp.feedback import Feedback, FeedbackStore, StoreFull
from webapp.github import FetchedIssue, GitHubClient
from webapp.inputs import text
from webapp.metrics import Metrics
from webapp.ratelimit import RateLimiter, client_key
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
    gate: Gate  # requests decoding at once
    feedback_limit: RateLimiter  # feedback rows per client address

    def suggest(self, bodies: list[str], num_beams: int, num_return: int) -> tuple[Suggestions, float]:
        """Titles for `bodies` and the milliseconds the model took, if the request is within the
        budget and a slot is free (summarizer.budget: the rule the serving wrappers apply too)."""
        config = DecodeConfig(num_beams=num_beams, num_return=num_return,
                              **consensus_options(num_beams, self.settings.consensus_samples))
        try:
            check_request(bodies, config, max_batch=self.settings.max_batch, max_body_chars=MAX_BODY_CHARS)
            with self.gate.slot():
                started = time.perf_counter()
                found = self.backend.suggest(bodies, num_beams, num_return)
                elapsed_ms = (time.perf_counter() - started) * 1000
        except RequestError as error:
            raise web_error(error) from None
        self.metrics.titles(len(bodies))
        self.metrics.model(found.model_version, self.backend.mode)
        return found, elapsed_ms

    def save_feedback(self, entry: Feedback) -> int:
        """Store `entry` unless its sender's address is over FEEDBACK_PER_MINUTE (every row becomes
        training data, so one client must not flood it); a storage failure is logged here and
        reported without the server's details."""
        wait = self.feedback_limit.take(client_key(request.remote_addr))
        if wait:
            raise WebError(f"too much feedback from your address: at most {self.feedback_limit.per_minute} "
                           f"a minute; try again in {math.ceil(wait)} s", 429, "rate_limited", wait)
        try:
            return self.feedback.add(entry)
        except StoreFull as error:  # 507: the server cannot store it, and waiting will not help
            log.error("feedback not saved: %s", error)
            raise WebError("the feedback store is full, so feedback cannot be saved for now; titles "
                           "still work", 507, "feedback_full") from None
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
