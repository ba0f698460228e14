"""The one exception a request turns into an error message for the person or program that sent it."""

from __future__ import annotations

import math

from werkzeug.wrappers import Response


class WebError(Exception):
    """A request that cannot be answered with a title: `message` says why and what to do,
    `status` is the HTTP status it is answered with, `kind` labels it in the error metrics, and
    `retry_after` (seconds), when known, tells clients when to try again (a Retry-After header)."""

    def __init__(self, message: str, status: int = 400, kind: str = "input",
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind
        self.retry_after = retry_after


def with_retry_after(response: Response, error: WebError) -> Response:
    """`response` with Retry-After when `error` says when to try again: whole seconds (as HTTP
    requires), rounded up so that a client that waits that long finds the way clear."""
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return response
