"""`ingest`: any mix of sources into one JSON-lines records file, written atomically."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from github_replay import GitHubReplay

from summarizer import storage
from summarizer.errors import UserError
from summarizer.ingest import ingest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples" / "issues"
KAGGLE = EXAMPLES / "kaggle-dump.csv"
NO_TITLE = REPO_ROOT / "tests" / "fixtures" / "readers" / "no_title_header.csv"
GITHUB_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "github_api" / "responses.json"
FIELDS = ["url", "repo", "title", "body", "labels", "created_at", "id", "author"]
EXAMPLE_SKIPS = {"not_opened_event": 2, "other_event": 2, "pull_request": 1}
QUERY = "state=all&per_page=100&sort=created&direction=asc"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GITHUB_TOKEN", "GITHUB_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # crawl state, if any


@pytest.fixture
def github() -> Iterator[GitHubReplay]:
    with GitHubReplay.from_manifest(GITHUB_FIXTURES) as server:
        yield server


def records(path: Path) -> list[dict]:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_examples_folder(tmp_path: Path) -> None:
    out = tmp_path / "issues.jsonl"
    report = ingest([str(EXAMPLES)], str(out), state_root=tmp_path / "state")

    assert report["files"] == 7
    assert report["written"] == 38
    assert report["skipped"] == EXAMPLE_SKIPS
    assert report["skipped_total"] == 5
    assert report["output"] == str(out)
    got = records(out)
    assert len(got) == 38
    for record in got:
        assert list(record) == FIELDS
        assert record["url"].startswith(f"https://github.com/{record['repo']}/issues/")
        assert isinstance(record["title"], str) and record["title"].strip()
        assert isinstance(record["body"], str)
        assert isinstance(record["labels"], list)
    assert len({r["url"] for r in got}) == 38
    bot = next(r for r in got if r["url"] == "https://github.com/sundial-js/sundial/issues/341")
    assert bot["author"] == "dependabot[bot]"
    assert bot["labels"] == ["dependencies", "javascript"]
    assert os.listdir(tmp_path) == ["issues.jsonl"]  # no temp file, no crawl state


def test_gzip_output_holds_the_same_records(tmp_path: Path) -> None:
    plain, zipped = tmp_path / "issues.jsonl", tmp_path / "issues.jsonl.gz"
    ingest([str(EXAMPLES)], str(plain), state_root=tmp_path / "state")
    ingest([str(EXAMPLES)], str(zipped), state_root=tmp_path / "state")

    assert not plain.read_bytes().startswith(b"\x1f\x8b")
    assert zipped.read_bytes().startswith(b"\x1f\x8b")
    assert gzip.decompress(zipped.read_bytes()) == plain.read_bytes()
    assert zipped.stat().st_size < plain.stat().st_size
    again = tmp_path / "again.jsonl.gz"
    ingest([str(EXAMPLES)], str(again), state_root=tmp_path / "state")
    assert again.read_bytes() == zipped.read_bytes()  # no timestamp in the gzip header


def test_format_can_be_forced_for_an_unknown_extension(tmp_path: Path) -> None:
    renamed = tmp_path / "dump.txt"
    renamed.write_bytes(KAGGLE.read_bytes())
    with pytest.raises(UserError, match="cannot tell the format"):
        ingest([str(renamed)], str(tmp_path / "a.jsonl"), state_root=tmp_path / "state")
    assert not (tmp_path / "a.jsonl").exists()

    report = ingest([str(renamed)], str(tmp_path / "b.jsonl"), fmt="csv",
                    state_root=tmp_path / "state")
    assert report["written"] == 13
    assert records(tmp_path / "b.jsonl") == records_of(KAGGLE, tmp_path)


def records_of(path: Path, tmp_path: Path) -> list[dict]:
    out = tmp_path / f"single-{path.name}.jsonl"
    ingest([str(path)], str(out), state_root=tmp_path / "state")
    return records(out)


@pytest.mark.parametrize("bad", ["no-title.csv", "notes.txt"])
def test_a_failing_source_leaves_no_output(tmp_path: Path, bad: str) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "a-good.csv").write_bytes(KAGGLE.read_bytes())  # read first: sorted names
    (inputs / bad).write_bytes(NO_TITLE.read_bytes())
    out_dir = tmp_path / "out"
    out = out_dir / "issues.jsonl.gz"

    with pytest.raises(UserError, match=bad):
        ingest([str(inputs)], str(out), state_root=tmp_path / "state")
    assert not out.exists()
    assert files_under(out_dir) == []  # no half-written temp file either

    # An older output stays as it was.
    out.write_bytes(b"older output")
    with pytest.raises(UserError):
        ingest([str(inputs / "a-good.csv"), str(inputs / bad)], str(out),
               state_root=tmp_path / "state")
    assert out.read_bytes() == b"older output"
    assert files_under(out_dir) == ["issues.jsonl.gz"]


def test_missing_source_is_a_user_error_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "issues.jsonl"
    with pytest.raises(UserError, match="no such file"):
        ingest([str(KAGGLE), str(tmp_path / "missing.csv")], str(out),
               state_root=tmp_path / "state")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no files found"):
        ingest([str(empty)], str(out), state_root=tmp_path / "state")
    assert not out.exists()


def test_github_repository_mixed_with_a_file(github: GitHubReplay, tmp_path: Path) -> None:
    out = tmp_path / "issues.jsonl"
    state = tmp_path / "state"
    report = ingest(["github:octo-org/widgets", str(KAGGLE)], str(out),
                    api_url=github.base_url, state_root=state)

    assert len(github.requests) == 3  # three pages, Link headers followed
    assert report["written"] == 7 + 13
    assert report["skipped"] == {"pull_request": 2}
    assert report["files"] == 1
    got = records(out)
    crawled = [r for r in got if r["repo"] == "octo-org/widgets"]
    assert [int(r["url"].rsplit("/", 1)[1]) for r in crawled] == [1, 2, 4, 5, 6, 8, 9]
    assert crawled[0]["title"] == "Export fails when a widget name contains a slash"
    assert crawled[0]["author"] == "mara-quill" and crawled[0]["labels"] == ["bug"]
    assert [r for r in got if r["repo"] != "octo-org/widgets"] == records_of(KAGGLE, tmp_path)
    assert files_under(state) == []  # the crawl state is removed once the output is written


def test_crawl_state_survives_a_failed_write(github: GitHubReplay, tmp_path: Path) -> None:
    out = tmp_path / "issues.jsonl"
    state = tmp_path / "state"
    bad = tmp_path / "bad.csv"
    bad.write_bytes(NO_TITLE.read_bytes())
    with pytest.raises(UserError, match="no title or body column"):
        ingest(["github:octo-org/widgets", str(bad)], str(out),
               api_url=github.base_url, state_root=state)
    assert not out.exists()
    assert len(github.requests) == 3
    assert files_under(state)  # the fetched pages are kept for the next run

    report = ingest(["github:octo-org/widgets"], str(out), api_url=github.base_url,
                    state_root=state)
    assert len(github.requests) == 3  # replayed from the saved state, nothing refetched
    assert report["written"] == 7 and report["skipped"] == {"pull_request": 2}
    assert files_under(state) == []


def _issue(number: int, body: str) -> dict:
    return {"html_url": f"https://github.com/octo-org/gadgets/issues/{number}",
            "number": number, "id": 900 + number, "title": f"Gadget issue {number}",
            "body": body, "labels": [], "created_at": "2024-01-01T00:00:00Z",
            "user": {"login": "someone"}}


def test_crawled_issue_with_a_broken_unicode_escape_is_skipped(tmp_path: Path) -> None:
    page = {"status": 200, "headers": {"Content-Type": "application/json"},
            "body": [_issue(1, "A fine body"), _issue(2, "A cut emoji \ud83d here")]}
    with GitHubReplay({f"/repos/octo-org/gadgets/issues?{QUERY}": [page]}) as server:
        out = tmp_path / "issues.jsonl"
        report = ingest(["github:octo-org/gadgets"], str(out), api_url=server.base_url,
                        state_root=tmp_path / "state")
    assert report["written"] == 1
    assert report["skipped"] == {"non_utf8": 1}
    assert [r["title"] for r in records(out)] == ["Gadget issue 1"]


def test_gcs_round_trip(gcs_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    storage.write_bytes(f"{gcs_bucket}/dumps/kaggle.csv", KAGGLE.read_bytes())
    out = f"{gcs_bucket}/records/issues.jsonl.gz"

    report = ingest([f"{gcs_bucket}/dumps"], out, state_root=tmp_path / "state")

    assert report["files"] == 1 and report["written"] == 13 and report["skipped_total"] == 0
    bucket, _ = storage._split(gcs_bucket)
    names = sorted(b.name for b in storage._client().list_blobs(bucket))
    assert names == ["dumps/kaggle.csv", "records/issues.jsonl.gz"]  # no temp objects
    local = tmp_path / "downloaded.jsonl.gz"
    storage.download_file(out, local)
    assert local.read_bytes().startswith(b"\x1f\x8b")
    expected = records_of(KAGGLE, tmp_path)
    assert records(local) == expected
    lines = storage.read_bytes(out).decode("utf-8").splitlines()  # un-gzipped on reading
    assert [json.loads(line) for line in lines] == expected

    # The gs:// output is itself a source: ingest reads its records back unchanged.
    again = tmp_path / "again.jsonl"
    assert ingest([out], str(again), state_root=tmp_path / "state")["written"] == 13
    assert records(again) == expected
