"""Deterministic train/dev/test split by repository.

Issues of one repository share templates and vocabulary, so splitting by row overstates
quality. Each repository lands in a split by a hash of its name, so the assignment is stable
when data is added. Rows without a repository are placed by a hash of their content.
Repositories that hold more than `max_heldout_share` of all rows always go to train: one
such repository in dev or test would make that split mostly one project (unless the
small repositories are too few to fill dev and test). The dev and test fractions stay
fractions of all rows.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class SplitConfig:
    dev_fraction: float = 0.05
    test_fraction: float = 0.05
    max_heldout_share: float = 0.02
    seed: str = "issue-summarizer"


def _unit(key: str, seed: str) -> float:
    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_rule(groups: Sequence[str], config: SplitConfig) -> Callable[[str], str]:
    """The split of any group key, with the cuts and the repositories kept in train that
    `groups` (one key per row) make: rows that are not part of `groups` (untitled issues read
    for pretraining) follow the same repository split without moving any row of it."""
    sizes = Counter(groups)
    limit = config.max_heldout_share * len(groups)
    forced = {g for g, n in sizes.items() if n > limit and g.startswith("repo:")}
    eligible = len(groups) - sum(sizes[g] for g in forced)
    if eligible < (config.dev_fraction + config.test_fraction) * len(groups):
        forced, eligible = set(), len(groups)  # too few small repositories: plain hashing
    # Fractions are of all rows: scale them up over the rows that may be held out.
    held_out = config.dev_fraction + config.test_fraction
    scale = min(len(groups) / eligible, 0.5 / held_out) if eligible and held_out else 0.0
    test_cut = config.test_fraction * scale
    dev_cut = test_cut + config.dev_fraction * scale

    def split(group: str) -> str:
        u = 1.0 if group in forced else _unit(group, config.seed)
        return "test" if u < test_cut else "dev" if u < dev_cut else "train"

    return split

