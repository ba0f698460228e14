"""The one exception a request turns into an error message for the person or program that sent it."""

from __future__ import annotations


class WebError(Exception):
    """A request that cannot be answered with a title: `message` says why and what to do,
    `status` is the HTTP status it is answered with, `kind` labels it in the error metrics."""

    def __init__(self, message: str, status: int = 400, kind: str = "input") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind
