"""Counting what a stage leaves out, so no record is ever dropped silently."""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger(__name__)


class SkipCounter:
    """Counts skipped records by reason and logs the first few with where they were."""

    def __init__(self, shown: int = 5) -> None:
        self.counts: Counter[str] = Counter()
        self.shown = shown
        self._logged = 0

    def add(self, reason: str, where: str, detail: str = "") -> None:
        self.counts[reason] += 1
        if self._logged < self.shown:
            self._logged += 1
            log.warning("skipped %s: %s%s", where, reason, f" ({detail})" if detail else "")
            if self._logged == self.shown:
                log.warning("(further skipped records are only counted)")

    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))
