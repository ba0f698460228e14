"""`prepare`: records to a dataset folder (report, tokenizer, int32 shards, manifest last),
and `open_dataset`, which reads it back for training."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from summarizer import featurize, storage
from summarizer import prepare as prepare_module
from summarizer.dataset import Dataset, open_dataset
from summarizer.errors import UserError
from summarizer.ingest import ingest
from summarizer.prepare import PrepareConfig, prepare
from summarizer.splitting import SplitConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples" / "issues"
SPLITS = ("train", "dev", "test")
PAD, START, END = 0, 2, 3
# Held-out fractions large enough that dev and test are not empty with 38 example issues.
CONFIG = PrepareConfig(
    vocab_size=400, body_len=96, title_len=40, shards=3,
    split=SplitConfig(dev_fraction=0.2, test_fraction=0.2, max_heldout_share=0.3),
)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The example issues, ingested once for the module."""
    folder = tmp_path_factory.mktemp("records")
    out = folder / "issues.jsonl.gz"
    report = ingest([str(EXAMPLES)], str(out), state_root=folder / "state")
    assert report["written"] == 38
    return str(out)


@pytest.fixture(scope="module")
def prepared(records: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The examples prepared once with CONFIG: (folder, report)."""
    folder = tmp_path_factory.mktemp("prepared") / "dataset"
    report = prepare([records], str(folder), CONFIG, workers=1)
    return folder, report


def all_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def split_text(folder: Path, split: str) -> list[dict]:
    with gzip.open(folder / f"{split}.jsonl.gz", "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def stacked(dataset: Dataset, split: str, worker: int = 0, workers: int = 1
            ) -> tuple[np.ndarray, np.ndarray]:
    pairs = dataset.arrays(split, worker, workers)
    return (np.concatenate([body for body, _ in pairs]),
            np.concatenate([title for _, title in pairs]))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# ------------------------------------------------------------------ report and contents


def test_report_counts(prepared: tuple[Path, dict]) -> None:
    folder, report = prepared
    assert report == json.loads((folder / "report.json").read_text())
    assert report["read"] == 38
    assert report["skipped_input"] == {}
    # The examples hold one bot issue, one empty and one one-word body, two near-duplicates.
    assert report["dropped"] == {"bot": 1, "empty_body": 1, "near_duplicate": 2,
                                 "short_body": 1}
    assert report["read"] == (report["kept"] + sum(report["dropped"].values())
                              + sum(report["skipped_input"].values()))
    assert sum(s["issues"] for s in report["splits"].values()) == report["kept"] == 33
    assert all(report["splits"][name]["issues"] > 0 for name in SPLITS)
    for name in SPLITS:
        cut = report["truncated"][name]
        issues = report["splits"][name]["issues"]
        assert 0 <= cut["body"] <= issues and 0 <= cut["title"] <= issues
        assert cut["body_rate"] == round(cut["body"] / issues, 4)
        assert cut["title_rate"] == round(cut["title"] / issues, 4)


def test_dropped_issues_are_the_expected_ones(prepared: tuple[Path, dict]) -> None:
    folder, _ = prepared
    kept = {row["url"] for name in SPLITS for row in split_text(folder, name)}
    base = "https://github.com/"
    for dropped in ("sundial-js/sundial/issues/341",  # dependabot
                    "sundial-js/sundial/issues/339",  # empty body
                    "pyrite-dev/pyrite-cli/issues/23"):  # the body is "help"
        assert base + dropped not in kept
    # Of each near-duplicate pair, exactly one copy is kept.
    for a, b in (("pyrite-dev/pyrite-cli/issues/30", "pyrite-dev/pyrite-cli/issues/31"),
                 ("sundial-js/sundial/issues/333", "sundial-js/sundial/issues/334")):
        assert (base + a in kept) != (base + b in kept)


def test_splits_hold_out_whole_repositories(prepared: tuple[Path, dict]) -> None:
    folder, report = prepared
    repos = {name: {row["repo"] for row in split_text(folder, name)} for name in SPLITS}
    assert not repos["train"] & repos["dev"]
    assert not repos["train"] & repos["test"]
    assert not repos["dev"] & repos["test"]
    for name in SPLITS:
        assert len(repos[name]) == report["splits"][name]["repositories"]


def test_arrays_have_the_configured_shape(prepared: tuple[Path, dict]) -> None:
    folder, report = prepared
    dataset = open_dataset(str(folder), verify=True)
    tokenizer = Tokenizer.from_file(str(dataset.tokenizer_path))
    assert dataset.tokenizer_path == folder / "tokenizer.json"
    vocab = tokenizer.get_vocab_size()
    assert vocab == dataset.manifest["vocab_size"] <= CONFIG.vocab_size
    assert [tokenizer.token_to_id(t) for t in ("<pad>", "<unk>", "<s>", "</s>")] == [0, 1, 2, 3]
    assert dataset.manifest["special_tokens"] == {"pad": "<pad>", "unk": "<unk>",
                                                  "start": "<s>", "end": "</s>"}
    untruncated_titles = 0
    for name in SPLITS:
        rows = report["splits"][name]["issues"]
        assert dataset.manifest["splits"][name]["rows"] == rows
        shards = dataset.manifest["splits"][name]["shards"]
        assert len(shards) == CONFIG.shards
        assert sum(s["rows"] for s in shards) == rows
        for (body, title), shard in zip(dataset.arrays(name), shards, strict=True):
            assert body.dtype == np.int32 and title.dtype == np.int32
            assert body.shape == (shard["rows"], CONFIG.body_len)
            assert title.shape == (shard["rows"], CONFIG.title_len)
        bodies, titles = stacked(dataset, name)
        assert bodies.shape == (rows, CONFIG.body_len)
        assert titles.shape == (rows, CONFIG.title_len)
        assert (titles[:, 0] == START).all()
        assert ((titles == END).sum(axis=1) == 1).all()
        assert (bodies >= 0).all() and (bodies < vocab).all()
        assert (titles >= 0).all() and (titles < vocab).all()
        assert (bodies[:, 0] != PAD).all()
        # The arrays are the split's text file, row for row.
        text = split_text(folder, name)
        assert len(text) == rows
        for ids, row in zip(titles.tolist(), text, strict=True):
            end = ids.index(END)
            assert all(i == PAD for i in ids[end + 1:])
            decoded = tokenizer.decode(ids[1:end])
            if end < CONFIG.title_len - 1:
                assert decoded == row["title"]
                untruncated_titles += 1
            else:
                assert row["title"].startswith(decoded.rstrip("\ufffd"))
        for ids, row in zip(bodies.tolist(), text, strict=True):
            decoded = tokenizer.decode([i for i in ids if i != PAD])
            assert row["body"].startswith(decoded.rstrip("\ufffd"))
    assert untruncated_titles > 10


def test_truncation_counts_match_the_text(records: str, tmp_path: Path) -> None:
    config = replace(CONFIG, body_len=12, title_len=6)
    out = tmp_path / "short"
    report = prepare([records], str(out), config, workers=1)
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    for name in SPLITS:
        text = split_text(out, name)
        issues = report["splits"][name]["issues"]
        assert len(text) == issues > 0
        cut = report["truncated"][name]
        long_bodies = sum(len(tokenizer.encode(r["body"], add_special_tokens=False).ids) > 12
                          for r in text)
        long_titles = sum(len(tokenizer.encode(r["title"], add_special_tokens=False).ids) > 4
                          for r in text)
        assert cut["body"] == long_bodies > 0
        assert cut["title"] == long_titles > 0
        assert cut["body_rate"] == round(cut["body"] / issues, 4)
        assert cut["title_rate"] == round(cut["title"] / issues, 4)
        assert 0 < cut["body_rate"] <= 1 and 0 < cut["title_rate"] <= 1
    dataset = open_dataset(str(out), verify=True)
    bodies, titles = stacked(dataset, "train")
    assert bodies.shape[1] == 12 and titles.shape[1] == 6
    cut_titles = titles[:, -1] == END  # a cut title fills the row up to its end token
    assert cut_titles.sum() >= report["truncated"]["train"]["title"]


def test_min_body_words_does_not_depend_on_body_len(tmp_path: Path) -> None:
    path = tmp_path / "issues.jsonl"
    words = "the export job stops after the first page and never writes the rest " * 4
    with path.open("w", encoding="utf-8") as handle:
        for n in range(12):
            handle.write(json.dumps({
                "url": f"https://github.com/acme/exporter{n}/issues/1",
                "title": f"Export stops early in case {n}", "body": f"Case {n}: {words}",
            }) + "\n")
    config = replace(CONFIG, body_len=3)
    report = prepare([str(path)], str(tmp_path / "out"), config, workers=1)
    assert report["dropped"].get("short_body", 0) == 0
    assert report["kept"] == 12


def test_zero_held_out_fractions_put_everything_in_train(records: str, tmp_path: Path) -> None:
    config = replace(CONFIG, split=SplitConfig(dev_fraction=0.0, test_fraction=0.0,
                                               max_heldout_share=0.5))
    report = prepare([records], str(tmp_path / "out"), config, workers=1)
    assert report["splits"]["train"]["issues"] == report["kept"] == 33
    assert report["splits"]["dev"]["issues"] == report["splits"]["test"]["issues"] == 0


# ------------------------------------------------------------------ manifest, staging


def test_manifest_lists_every_file_with_its_sha256(prepared: tuple[Path, dict]) -> None:
    folder, _ = prepared
    manifest = json.loads((folder / "dataset.json").read_text())
    files = all_files(folder)
    assert set(manifest["files"]) == set(files) - {"dataset.json"}
    for name, digest in manifest["files"].items():
        assert sha256(files[name]) == digest, name
    assert manifest["fingerprint"] == sha256(
        json.dumps(manifest["files"], sort_keys=True).encode())
    assert manifest["tokenizer"] == "tokenizer.json"
    assert manifest["settings"]["vocab_size"] == CONFIG.vocab_size
    assert manifest["settings"]["split"]["dev_fraction"] == 0.2
    for name in SPLITS:
        split = manifest["splits"][name]
        assert split["text"] in files
        for shard in split["shards"]:
            assert shard["body"] in files and shard["title"] in files
    # Written last: nothing in the folder is newer than the manifest.
    newest = max((folder / name).stat().st_mtime_ns for name in files)
    assert (folder / "dataset.json").stat().st_mtime_ns == newest
    assert leftovers(folder.parent) == []


@pytest.fixture
def fail_after_first_split(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    written: list[str] = []

    def failing(folder: Path, split: str, columns: dict, count: int) -> list[dict]:
        if written:
            raise RuntimeError("disk full")
        written.append(split)
        return featurize.write_shards(folder, split, columns, count)

    monkeypatch.setattr(prepare_module, "write_shards", failing)
    return written


def test_failure_leaves_no_output_folder(records: str, tmp_path: Path,
                                         fail_after_first_split: list[str]) -> None:
    out = tmp_path / "dataset"
    with pytest.raises(RuntimeError, match="disk full"):
        prepare([records], str(out), CONFIG, workers=1)
    assert fail_after_first_split == ["train"]  # it failed part-way, with files staged
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_older_dataset(prepared: tuple[Path, dict], records: str,
                                         tmp_path: Path, fail_after_first_split: list[str]
                                         ) -> None:
    out = tmp_path / "dataset"
    shutil.copytree(prepared[0], out)
    before = all_files(out)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare([records], str(out), replace(CONFIG, vocab_size=300), workers=1)
    assert fail_after_first_split == ["train"]
    assert all_files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]
    open_dataset(str(out), verify=True)


def test_a_new_run_replaces_the_whole_folder(prepared: tuple[Path, dict], records: str,
                                             tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    shutil.copytree(prepared[0], out)
    (out / "stale.npy").write_bytes(b"from an older run")
    prepare([records], str(out), replace(CONFIG, shards=1), workers=1)
    assert not (out / "stale.npy").exists()
    assert not (out / "train-00000-of-00003.body.npy").exists()
    assert (out / "train-00000-of-00001.body.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


def test_all_records_dropped_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "issues.jsonl"
    path.write_text("".join(json.dumps({"title": f"Title {n}", "body": "too short"}) + "\n"
                            for n in range(3)))
    with pytest.raises(UserError, match="no issues left"):
        prepare([str(path)], str(tmp_path / "out"), CONFIG, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["issues.jsonl"]


def test_exact_duplicates_across_inputs_are_dropped(prepared: tuple[Path, dict], records: str,
                                                    tmp_path: Path) -> None:
    copy = tmp_path / "copy.jsonl.gz"
    shutil.copyfile(records, copy)
    out = tmp_path / "dataset"
    report = prepare([records, str(copy)], str(out), CONFIG, workers=1)
    assert report["read"] == 76
    assert report["dropped"] == {**prepared[1]["dropped"], "duplicate_url": 38}
    assert report["kept"] == prepared[1]["kept"]
    assert report["splits"] == prepared[1]["splits"]
    for name in SPLITS:
        for ours, theirs in zip(stacked(open_dataset(str(out)), name),
                                stacked(open_dataset(str(prepared[0])), name), strict=True):
            np.testing.assert_array_equal(ours, theirs)


# ------------------------------------------------------------------ determinism, workers


@pytest.mark.parametrize("workers", [1, 2])
def test_outputs_are_byte_identical(prepared: tuple[Path, dict], records: str, tmp_path: Path,
                                    workers: int) -> None:
    out = tmp_path / "again"
    prepare([records], str(out), CONFIG, workers=workers)
    ours, theirs = all_files(out), all_files(prepared[0])
    assert sorted(ours) == sorted(theirs)
    for name, data in ours.items():
        assert data == theirs[name], name


def test_worker_shards_are_disjoint_and_cover_the_split(prepared: tuple[Path, dict]) -> None:
    dataset = open_dataset(str(prepared[0]))
    for name in SPLITS:
        all_shards = dataset.shards(name)
        parts = [dataset.shards(name, worker, 2) for worker in (0, 1)]
        names = [[s["body"] for s in part] for part in parts]
        assert not set(names[0]) & set(names[1])
        assert sorted(names[0] + names[1]) == sorted(s["body"] for s in all_shards)
        assert len(parts[0]) == 2 and len(parts[1]) == 1  # 3 shards: 0 and 2, then 1
        full_bodies, full_titles = stacked(dataset, name)
        rows = []
        for worker in (0, 1):
            bodies, titles = stacked(dataset, name, worker, 2)
            rows += [b.tobytes() + t.tobytes() for b, t in zip(bodies, titles, strict=True)]
        assert len(rows) == len(full_bodies)
        assert sorted(rows) == sorted(
            b.tobytes() + t.tobytes() for b, t in zip(full_bodies, full_titles, strict=True))
        assert len(set(rows)) == len(rows)
    with pytest.raises(ValueError):
        dataset.shards("train", 2, 2)


# ------------------------------------------------------------------ open_dataset


def test_open_dataset_needs_the_manifest(prepared: tuple[Path, dict], tmp_path: Path) -> None:
    out = tmp_path / "unfinished"
    shutil.copytree(prepared[0], out)
    (out / "dataset.json").unlink()
    with pytest.raises(UserError, match="not a finished dataset"):
        open_dataset(str(out))
    with pytest.raises(UserError, match="not a finished dataset"):
        open_dataset(str(tmp_path / "nowhere"))


def test_open_dataset_verify_detects_changes(prepared: tuple[Path, dict], tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(prepared[0], out)
    open_dataset(str(out), verify=True)
    shard = out / "train-00001-of-00003.title.npy"
    array = np.load(shard)
    array[0, 1] += 1  # same size and header, one id changed
    np.save(shard, array)
    open_dataset(str(out))  # without verify only the manifest is read
    with pytest.raises(UserError, match="train-00001-of-00003.title.npy.*sha256"):
        open_dataset(str(out), verify=True)
    shutil.copyfile(prepared[0] / shard.name, shard)
    open_dataset(str(out), verify=True)
    (out / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="tokenizer.json: missing or changed"):
        open_dataset(str(out), verify=True)


# ------------------------------------------------------------------ gs://


def test_gcs_round_trip(prepared: tuple[Path, dict], records: str, gcs_bucket: str,
                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    uploads: list[str] = []
    upload = storage.upload_file

    def recording(local: str, url: str) -> None:
        uploads.append(url.rsplit("/", 1)[1])
        upload(local, url)

    monkeypatch.setattr(storage, "upload_file", recording)
    dest = f"{gcs_bucket}/ds"
    report = prepare([records], dest, CONFIG, workers=1)
    assert report["splits"] == prepared[1]["splits"]
    local_manifest = json.loads((prepared[0] / "dataset.json").read_text())
    assert uploads[-1] == "dataset.json"
    assert sorted(uploads) == sorted([*local_manifest["files"], "dataset.json"])
    bucket, _ = storage._split(gcs_bucket)
    objects = sorted(b.name for b in storage._client().list_blobs(bucket))
    assert objects == sorted(f"ds/{name}" for name in uploads)  # no temp objects

    dataset = open_dataset(dest)
    assert dataset.folder.is_relative_to(tmp_path / "cache")
    assert dataset.manifest == local_manifest
    assert dataset.report == prepared[1]
    local = open_dataset(str(prepared[0]))
    for name in SPLITS:
        for ours, theirs in zip(stacked(dataset, name), stacked(local, name), strict=True):
            assert ours.dtype == np.int32
            np.testing.assert_array_equal(ours, theirs)
    # The cache is a copy of the dataset, manifest included, so it opens as a dataset too.
    assert all_files(dataset.folder) == all_files(prepared[0])
    assert open_dataset(str(dataset.folder)).manifest == local_manifest

    # A second open uses the cache; a damaged cached file is downloaded again.
    (dataset.folder / "tokenizer.json").write_text("damaged")
    again = open_dataset(dest)
    assert again.folder == dataset.folder
    assert (again.folder / "tokenizer.json").read_bytes() == (
        prepared[0] / "tokenizer.json").read_bytes()


# ------------------------------------------------------------------ real data


def _first_lines(source: Path, count: int) -> Iterator[bytes]:
    with gzip.open(source, "rb") as handle:
        for _, line in zip(range(count), handle, strict=False):
            yield line


def test_real_issues(shared_data: Path, tmp_path: Path) -> None:
    github = shared_data / "github-issues.jsonl.gz"
    kaggle = shared_data / "kaggle-format-sample.csv"
    if not (github.is_file() and kaggle.is_file()):
        pytest.skip(f"{github.name} or {kaggle.name} is absent from {shared_data}")
    head = tmp_path / "head.jsonl"
    head.write_bytes(b"".join(_first_lines(github, 3000)))
    with kaggle.open(encoding="utf-8", newline="") as handle:
        kaggle_urls = {row[0] for row in list(csv.reader(handle))[1:]}
    head_urls = {json.loads(line).get("url") for line in head.read_text().splitlines()} - {None}
    out = tmp_path / "dataset"
    config = PrepareConfig(vocab_size=600, body_len=64, title_len=16, shards=2)

    report = prepare([str(head), str(kaggle)], str(out), config, workers=2)

    assert report["read"] == (report["kept"] + sum(report["dropped"].values())
                              + sum(report["skipped_input"].values()))
    assert report["read"] >= 3000 + 0.95 * len(kaggle_urls)
    assert report["kept"] >= 0.9 * report["read"]
    for reason, count in report["dropped"].items():
        assert count < 0.05 * report["read"], reason
    splits = report["splits"]
    assert sum(s["issues"] for s in splits.values()) == report["kept"]
    assert splits["test"]["issues"] > 0 and splits["dev"]["issues"] > 0
    assert splits["train"]["issues"] > 0.8 * report["kept"]
    kept_urls = set()
    repos = {}
    for name in SPLITS:
        rows = split_text(out, name)
        kept_urls |= {row["url"] for row in rows}
        repos[name] = {row["repo"] for row in rows if row["repo"]}
    assert len(kept_urls & kaggle_urls) > 0.9 * len(kaggle_urls)
    assert len(kept_urls & head_urls) > 0.9 * len(head_urls)
    assert not repos["train"] & (repos["dev"] | repos["test"])
    assert not repos["dev"] & repos["test"]
    dataset = open_dataset(str(out), verify=True)
    for name in SPLITS:
        bodies, titles = stacked(dataset, name)
        assert bodies.shape == (splits[name]["issues"], 64)
        assert (titles[:, 0] == START).all()
