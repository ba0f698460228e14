"""The exception types that reach a user as a one-line message instead of a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do."""


class RequestError(UserError):
    """What one request asked for cannot be done: every server answers `status` with the
    message (and Retry-After when `retry_after` is set), the CLI prints the message."""

    status = 400

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status or self.status
        self.retry_after = retry_after


class NothingToSummarize(RequestError):
    """Bodies that clean down to nothing (only markup, template headings, invisible characters):
    any title would be invented, so the request is refused instead. `indices` name them."""

    status = 422

    def __init__(self, indices: list[int]) -> None:
        more = f" and {len(indices) - 10} more" if len(indices) > 10 else ""
        named = ", ".join(map(str, indices[:10])) + more
        super().__init__(f"nothing to summarize in body {named}: once markup, template headings and "
                         "invisible characters are removed no words are left; send the issue's text")
        self.indices = indices


class Busy(RequestError):
    """Every slot for expensive work is taken: come back after `retry_after` seconds."""

    status = 503
