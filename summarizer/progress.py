"""Progress for long work: a bar on a terminal, a plain log line every few seconds otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def progress(
    items: Iterable[T], desc: str, total: int | None = None, unit: str = "issues",
    every: float = 10.0,
) -> Iterator[T]:
    """Yield `items` unchanged while showing how far the work has got."""
    if sys.stderr.isatty():
        from tqdm import tqdm  # only on a terminal: serving images leave tqdm out

        yield from tqdm(items, desc=desc, total=total, unit=f" {unit}", leave=False)
        return
    start = last = time.monotonic()
    count = 0
    for count, item in enumerate(items, 1):  # noqa: B007 - count is read after the loop
        yield item
        now = time.monotonic()
        if now - last >= every:
            last = now
            of = f"/{total:,}" if total else ""
            log.info("%s: %s%s %s (%.0f/s)", desc, f"{count:,}", of, unit, count / (now - start))
    log.info("%s: %s %s in %.1f s", desc, f"{count:,}", unit, time.monotonic() - start)
