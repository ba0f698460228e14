"""Splitting: deterministic, by repository, with fractions of all rows held out."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from summarizer.splitting import SPLITS, SplitConfig, split_rule

CONFIG = SplitConfig()


def assign_splits(groups: list[str], config: SplitConfig) -> list[str]:
    """The split of each row, as prepare assigns it from the rows' group keys."""
    return list(map(split_rule(groups, config), groups))


def small_repos(count: int, rows: int, prefix: str = "repo:acme/lib") -> list[str]:
    return [f"{prefix}{i}" for i in range(count) for _ in range(rows)]


def natural_split(group: str, config: SplitConfig = CONFIG) -> str:
    """Where a group lands by its hash alone: as one row among many one-row repositories."""
    return assign_splits([group, *small_repos(1000, 1, "repo:probe/p")], config)[0]


def group_named(prefix: str, split: str, config: SplitConfig = CONFIG) -> str:
    """The first `prefix<i>` whose hash places it in `split`."""
    return next(f"{prefix}{i}" for i in range(10_000) if natural_split(f"{prefix}{i}", config) == split)


def mapping(groups: list[str], splits: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for group, split in zip(groups, splits, strict=True):
        assert result.setdefault(group, split) == split, f"{group} is in two splits"
    return result


def shares(splits: list[str]) -> dict[str, float]:
    counts = Counter(splits)
    return {name: counts[name] / len(splits) for name in SPLITS}


def test_output_is_one_known_split_per_row():
    groups = small_repos(300, 3)
    splits = assign_splits(groups, CONFIG)
    assert len(splits) == len(groups)
    assert set(splits) == set(SPLITS)


def test_empty_input():
    assert assign_splits([], CONFIG) == []


def test_deterministic():
    groups = small_repos(500, 4) + [f"content:{i:032x}" for i in range(200)]
    assert assign_splits(groups, CONFIG) == assign_splits(list(groups), CONFIG)


def test_independent_of_row_order():
    groups = small_repos(400, 3) + ["repo:big/one"] * 100 + [f"content:{i:x}" for i in range(50)]
    shuffled = groups[:]
    random.Random(7).shuffle(shuffled)
    assert mapping(groups, assign_splits(groups, CONFIG)) == mapping(
        shuffled, assign_splits(shuffled, CONFIG)
    )


def test_a_repository_lands_in_one_split():
    groups = [f"repo:acme/lib{i % 300}" for i in range(3000)]  # rows of a repo interleaved
    mapping(groups, assign_splits(groups, CONFIG))  # asserts inside


def test_fractions_over_many_small_repositories():
    groups = small_repos(2000, 5)
    got = shares(assign_splits(groups, CONFIG))
    assert got["dev"] == pytest.approx(0.05, abs=0.02)
    assert got["test"] == pytest.approx(0.05, abs=0.02)
    assert got["train"] == pytest.approx(0.90, abs=0.03)


def test_custom_fractions():
    config = SplitConfig(dev_fraction=0.1, test_fraction=0.2)
    got = shares(assign_splits(small_repos(3000, 2), config))
    assert got["dev"] == pytest.approx(0.1, abs=0.02)
    assert got["test"] == pytest.approx(0.2, abs=0.02)


def test_big_repository_goes_to_train_and_fractions_stay_of_all_rows():
    big = group_named("repo:giant/g", "test")
    groups = [big] * 3000 + small_repos(1400, 5)  # big holds 30% of rows
    splits = assign_splits(groups, CONFIG)
    assert {s for g, s in zip(groups, splits, strict=True) if g == big} == {"train"}
    got = shares(splits)
    assert got["dev"] == pytest.approx(0.05, abs=0.02)
    assert got["test"] == pytest.approx(0.05, abs=0.02)


def test_forcing_starts_just_above_max_heldout_share():
    big = group_named("repo:giant/g", "test")
    at_limit = [big] * 20 + small_repos(980, 1)  # 20 of 1,000 rows: exactly 2%
    above = [big] * 21 + small_repos(979, 1)
    assert assign_splits(at_limit, CONFIG)[0] == "test"
    assert assign_splits(above, CONFIG)[0] == "train"


def test_small_data_fallback_uses_plain_hashing():
    big = group_named("repo:giant/g", "test")
    # The big repository is 95% of rows: the 5 others cannot fill dev + test (10%).
    groups = [big] * 95 + small_repos(5, 1, "repo:tiny/t")
    splits = assign_splits(groups, CONFIG)
    assert splits[:95] == ["test"] * 95
    for group, split in zip(groups[95:], splits[95:], strict=True):
        assert split == natural_split(group)


def test_content_groups_are_never_forced():
    content = group_named("content:", "dev")
    groups = [content] * 3000 + small_repos(1400, 5)
    splits = assign_splits(groups, CONFIG)
    assert set(splits[:3000]) == {"dev"}


def test_seed_changes_assignments():
    groups = small_repos(1000, 1)
    a = assign_splits(groups, CONFIG)
    b = assign_splits(groups, SplitConfig(seed="another-seed"))
    assert a != b
    assert sum(x != y for x, y in zip(a, b, strict=True)) > 50
    assert shares(b)["test"] == pytest.approx(0.05, abs=0.03)


def test_zero_fractions_put_everything_in_train():
    config = SplitConfig(dev_fraction=0.0, test_fraction=0.0)
    assert set(assign_splits(small_repos(200, 2) + ["repo:big/one"] * 300, config)) == {"train"}
