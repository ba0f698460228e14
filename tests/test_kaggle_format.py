"""The Kaggle/BigQuery form of issue text, checked against the real dump, and `prepare`'s
`kaggle_share`, which rewrites that share of the train pairs in it."""

from __future__ import annotations

import csv
import gzip
import json
import string
from dataclasses import replace
from pathlib import Path

import pytest

from summarizer.kaggle_format import STRIPPED, kaggle_format, picked
from summarizer.prepare import PrepareConfig, prepare
from summarizer.splitting import SplitConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_kaggle_format_of_a_markdown_body() -> None:
    body = ('### Crash in `parse()` when **README.md** has [links](https://x.io/a#b)\r\n\r\n'
            '  She said "it\'s broken"; see #12 & {x: 1}!\n* item <br>')
    assert kaggle_format(body) == ("crash in parse when readme.md has links https://x.io/a b she "
                                   "said it's broken ; see 12 & {x: 1}! item <br>")
    assert kaggle_format("ÄRGER mit Ümlauten") == "ärger mit ümlauten"


def test_kaggle_format_matches_the_real_dump(shared_data: Path) -> None:
    sample = shared_data / "kaggle-format-sample.csv"
    if not sample.is_file():
        pytest.skip(f"{sample.name} is absent from {shared_data}")
    with sample.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) > 5000
    texts = [text for row in rows for text in (row["issue_title"], row["body"])]
    # Already in the form: rewriting changes only spacing the dump left (a few line breaks).
    assert all(kaggle_format(text) == " ".join(text.split()) for text in texts)
    # The dump keeps exactly the ASCII punctuation that kaggle_format keeps.
    seen = {ch for text in texts for ch in text if ch in string.punctuation}
    assert seen == set(string.punctuation) - set(STRIPPED)


def test_picked_takes_the_share_by_url_and_seed() -> None:
    urls = [f"https://github.com/acme/tool/issues/{n}" for n in range(20_000)]
    chosen = {url for url in urls if picked(url, 0.2, seed=0)}
    assert 0.19 < len(chosen) / len(urls) < 0.21
    assert chosen == {url for url in reversed(urls) if picked(url, 0.2, seed=0)}
    other = {url for url in urls if picked(url, 0.2, seed=1)}
    assert 0.15 < len(chosen & other) / len(chosen) < 0.25  # another seed, another (independent) draw
    assert not any(picked(url, 0.0, seed=0) for url in urls)
    assert all(picked(url, 1.0, seed=0) for url in urls)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> str:
    from summarizer.ingest import ingest

    folder = tmp_path_factory.mktemp("records")
    ingest([str(REPO_ROOT / "examples" / "issues")], str(folder / "issues.jsonl.gz"),
           state_root=folder / "state")
    return str(folder / "issues.jsonl.gz")


def _rows(folder: Path, split: str) -> list[dict]:
    with gzip.open(folder / f"{split}.jsonl.gz", "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_prepare_rewrites_the_share_of_train_pairs_only(records: str, tmp_path: Path) -> None:
    config = PrepareConfig(vocab_size=400, body_len=64, title_len=24, shards=1,
                           split=SplitConfig(dev_fraction=0.2, test_fraction=0.2, max_heldout_share=0.3))
    plain = prepare([records], str(tmp_path / "plain"), config, workers=1)
    report = prepare([records], str(tmp_path / "kaggle"), replace(config, kaggle_share=0.5, kaggle_seed=3),
                     workers=1)
    for name in ("dev", "test"):
        assert _rows(tmp_path / "kaggle", name) == _rows(tmp_path / "plain", name)
    before = _rows(tmp_path / "plain", "train")
    after = _rows(tmp_path / "kaggle", "train")
    assert [row["url"] for row in after] == [row["url"] for row in before]  # the same pairs, in order
    changed = [url for url, old, new in zip([r["url"] for r in before], before, after, strict=True)
               if old["title"] != new["title"]]
    assert changed == [row["url"] for row in before if picked(row["url"], 0.5, 3)]
    for old, new in zip(before, after, strict=True):
        if old["url"] in changed:
            assert new["title"] == kaggle_format(old["title"])
            assert new["body"] == new["body"].lower() and not set(STRIPPED) & set(new["body"])
    assert report["kaggle_format"] == {"share": 0.5, "seed": 3, "rewritten": len(changed)}
    assert 0 < len(changed) < len(after)
    assert report["splits"] == plain["splits"] and "kaggle_format" not in plain
    settings = json.loads((tmp_path / "kaggle" / "dataset.json").read_text())["settings"]
    assert (settings["kaggle_share"], settings["kaggle_seed"]) == (0.5, 3)
    assert "kaggle_share" not in json.loads((tmp_path / "plain" / "dataset.json").read_text())["settings"]
