"""`issue-summarizer` run in the test's own process, for tests that need no subprocess."""

from __future__ import annotations

import signal

from summarizer.cli import main


def cli(args: list[str]) -> int:
    """`main` with these arguments, leaving the SIGTERM handler it sets as it was."""
    handler = signal.getsignal(signal.SIGTERM)
    try:
        return main(args)
    finally:
        signal.signal(signal.SIGTERM, handler)
