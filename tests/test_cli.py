"""The `issue-summarizer` console script, run as a user runs it: in a subprocess."""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from summarizer import __version__

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples" / "issues"
READER_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "readers"
SCRIPT = Path(sys.executable).with_name("issue-summarizer")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "summarizer.cli"]
ERROR = re.compile(r"issue-summarizer: error: \S.*")
SMALL = ["--vocab-size", "400", "--body-len", "64", "--title-len", "24", "--shards", "2",
         "--dev-fraction", "0.2", "--test-fraction", "0.2", "--max-heldout-share", "0.3"]


@pytest.fixture
def env(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a run: no cloud or GitHub settings leak in from the caller's."""
    values = {k: v for k, v in os.environ.items() if k not in {
        "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GITHUB_TOKEN",
        "GITHUB_API_URL", "SUMMARIZER_GCS_RETRY_SECONDS"}}
    values.update({
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TMPDIR": str(tmp_path_factory.mktemp("staging")),  # gs:// uploads are staged here
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),  # no gcloud login
        "NO_GCE_CHECK": "True",  # no metadata server probe
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONWARNINGS": "ignore",
    })
    return values


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


def assert_user_error(result: subprocess.CompletedProcess[str], message: str) -> str:
    """Exit 1, one line `issue-summarizer: error: ...` on stderr, no traceback anywhere."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    # Progress lines may come before it; the error is one line, the last.
    assert [line for line in lines if "error" in line.lower()] == lines[-1:], result.stderr
    assert ERROR.fullmatch(lines[-1]), lines[-1]
    assert re.search(message, lines[-1]), lines[-1]
    assert result.stdout == ""
    return lines[-1]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ help, version


def test_help_lists_the_commands(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["--help"], env, tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: issue-summarizer")
    for command in ("ingest", "prepare", "show", "bigquery-sql"):
        assert command in result.stdout


@pytest.mark.parametrize(("command", "mentions"), [
    ("ingest", ["SOURCE", "gs://", "github:OWNER/REPO", "Kaggle", "BigQuery", "CSV",
                "GH Archive", "REST API", ".jsonl.gz", "--format", "--since",
                "--github-api-url", "GITHUB_TOKEN", "pull requests"]),
    ("prepare", ["INPUT", "gs://", "tokenizer.json", "dataset.json", "report.json", "int32",
                 "--vocab-size", "--body-len", "--title-len", "--shards", "--workers",
                 "--dev-fraction", "--test-fraction", "--min-body-words"]),
    ("show", ["dataset", "gs://", "--split", "--rows", "{train,dev,test}"]),
    ("bigquery-sql", ["SQL", "SOURCE"]),
])
def test_subcommand_help(env: dict[str, str], tmp_path: Path, command: str,
                         mentions: list[str]) -> None:
    result = run([command, "--help"], env, tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert result.stdout.startswith(f"usage: issue-summarizer {command}")
    assert "-q, --quiet" in text
    for word in mentions:
        assert word in text, word


def test_version(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["--version"], env, tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"issue-summarizer {__version__}"


def test_bigquery_sql(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["bigquery-sql"], env, tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    assert "IssuesEvent" in result.stdout
    assert "opened" in result.stdout
    assert re.search(r"\bSELECT\b", result.stdout, re.I)


# ------------------------------------------------------------------ end to end


def test_ingest_prepare_show(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["ingest", str(EXAMPLES), "-o", "issues.jsonl.gz"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["written"] == 38 and report["files"] == 7
    assert report["skipped"] == {"not_opened_event": 2, "other_event": 2, "pull_request": 1}
    assert "wrote 38 issues to issues.jsonl.gz" in result.stderr
    assert "gharchive-2024-03-01-15.json.gz:4: other_event" in result.stderr
    assert (tmp_path / "issues.jsonl.gz").read_bytes().startswith(b"\x1f\x8b")

    result = run(["prepare", "issues.jsonl.gz", "-o", "data/dataset", "--workers", "2", *SMALL],
                 env, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["read"] == 38 and report["kept"] == 33
    assert report == json.loads((tmp_path / "data" / "dataset" / "report.json").read_text())
    manifest = json.loads((tmp_path / "data" / "dataset" / "dataset.json").read_text())
    assert manifest["settings"]["body_len"] == 64 and manifest["settings"]["shards"] == 2
    assert sorted(os.listdir(tmp_path / "data")) == ["dataset"]

    result = run(["show", "data/dataset", "--rows", "2"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("dataset data/dataset\n")
    assert f"fingerprint {manifest['fingerprint'][:16]}" in out
    assert "body 64 / title 24 tokens" in out
    assert "read 38 issues, kept 33" in out
    for name, info in report["splits"].items():
        assert re.search(rf"^  {name} +{info['issues']} issues from {info['repositories']} "
                         "repositor", out, re.M), name
    assert out.count("--- train row") == 2
    with gzip.open(tmp_path / "data" / "dataset" / "train.jsonl.gz", "rt") as handle:
        train = [json.loads(line) for line in handle]
    titles = re.findall(r"^title: (.*)$", out, re.M)
    assert len(titles) == 2
    for shown, row in zip(titles, train, strict=False):
        assert row["title"].startswith(shown.rstrip("\ufffd"))
    assert re.search(r"^title ids \[2, ", out, re.M)
    bodies = re.findall(r"^body:  (.*)$", out, re.M)
    assert len(bodies) == 2 and train[0]["body"].startswith(bodies[0])

    result = run(["show", "data/dataset", "--split", "test", "--rows", "1"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("--- test row") == 1


def test_quiet_keeps_only_warnings(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["ingest", "-q", str(EXAMPLES), "-o", "issues.jsonl"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote 38 issues" not in result.stderr
    assert "skipped " in result.stderr  # skipped records are warnings


def test_gcs_end_to_end(gcs_emulator: object, env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"],
           "GOOGLE_CLOUD_PROJECT": os.environ["GOOGLE_CLOUD_PROJECT"]}
    bucket = f"gs://{gcs_emulator.new_bucket()}"  # type: ignore[attr-defined]
    result = run(["ingest", "-q", str(EXAMPLES), "-o", f"{bucket}/issues.jsonl.gz"], env,
                 tmp_path)
    assert result.returncode == 0, result.stderr
    result = run(["prepare", "-q", f"{bucket}/issues.jsonl.gz", "-o", f"{bucket}/ds",
                  "--workers", "1", *SMALL], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["kept"] == 33
    result = run(["show", f"{bucket}/ds", "--rows", "1"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "read 38 issues, kept 33" in result.stdout
    assert result.stdout.count("--- train row") == 1
    assert list((tmp_path / "cache" / "issue-summarizer" / "datasets").iterdir())


# ------------------------------------------------------------------ user errors


def test_missing_input_file(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["ingest", "missing.csv", "-o", "out.jsonl"], env, tmp_path)
    assert_user_error(result, r"missing\.csv: no such file or directory")
    result = run(["prepare", "missing.jsonl", "-o", "ds"], env, tmp_path)
    assert_user_error(result, r"missing\.jsonl: no such file or directory")
    result = run(["show", "missing-dataset"], env, tmp_path)
    assert_user_error(result, r"missing-dataset: not a finished dataset")
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "ds").exists()


def test_folder_without_files(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run(["ingest", "empty", "-o", "out.jsonl"], env, tmp_path)
    assert_user_error(result, r"empty: no files found")
    assert not (tmp_path / "out.jsonl").exists()


def test_unknown_extension(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "issues.txt").write_bytes((EXAMPLES / "kaggle-dump.csv").read_bytes())
    result = run(["ingest", "issues.txt", "-o", "out.jsonl"], env, tmp_path)
    assert_user_error(result, r"issues\.txt: cannot tell the format.*--format")
    assert not (tmp_path / "out.jsonl").exists()
    result = run(["ingest", "-q", "issues.txt", "--format", "csv", "-o", "out.jsonl"], env,
                 tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["written"] == 13


def test_csv_without_title_column(env: dict[str, str], tmp_path: Path) -> None:
    bad = READER_FIXTURES / "no_title_header.csv"
    result = run(["ingest", str(EXAMPLES / "kaggle-dump.csv"), str(bad), "-o", "out.jsonl"],
                 env, tmp_path)
    assert_user_error(result, r"no_title_header\.csv: the header has no title or body column")
    assert not (tmp_path / "out.jsonl").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temp file either


def test_unreachable_cloud_storage(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{closed_port()}",
           "SUMMARIZER_GCS_RETRY_SECONDS": "1"}
    result = run(["ingest", "gs://bucket/issues.csv", "-o", "out.jsonl"], env, tmp_path)
    assert_user_error(result, r"gs://bucket/issues\.csv: cannot reach Cloud Storage")
    result = run(["ingest", str(EXAMPLES / "kaggle-dump.csv"), "-o", "gs://bucket/out.jsonl"],
                 env, tmp_path)
    assert_user_error(result, r"gs://bucket/out\.jsonl: cannot reach Cloud Storage")


def test_no_cloud_credentials(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent"}
    result = run(["ingest", "gs://bucket/issues.csv", "-o", "out.jsonl"], env, tmp_path)
    assert_user_error(result, r"no Google Cloud credentials.*GOOGLE_APPLICATION_CREDENTIALS")
    result = run(["show", "gs://bucket/ds"], env, tmp_path)
    assert_user_error(result, r"no Google Cloud credentials")


@pytest.mark.parametrize("source", ["github:owner", "github:owner/repo/extra", "github:/repo"])
def test_malformed_github_source(env: dict[str, str], tmp_path: Path, source: str) -> None:
    result = run(["ingest", source, "-o", "out.jsonl"], env, tmp_path)
    assert_user_error(result, r"is not a GitHub repository: expected owner/repo")


def test_unreachable_github(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["ingest", "github:octo-org/widgets", "-o", "out.jsonl",
                  "--github-api-url", "not a url"], env, tmp_path)
    assert_user_error(result, r"not an http\(s\) address")


def test_prepare_with_every_record_dropped(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "issues.jsonl").write_text("".join(
        json.dumps({"title": f"Title {n}", "body": "" if n % 2 else "too short"}) + "\n"
        for n in range(4)))
    result = run(["prepare", "-q", "issues.jsonl", "-o", "ds", "--vocab-size", "300"], env,
                 tmp_path)
    line = assert_user_error(result, r"no issues left to train on from issues\.jsonl")
    assert "'empty_body': 2" in line and "'short_body': 2" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["issues.jsonl"]


def test_title_len_below_two_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["prepare", str(EXAMPLES), "-o", "ds", "--vocab-size", "300",
                  "--title-len", "1", "--workers", "1"], env, tmp_path)
    assert "Traceback" not in result.stderr
    assert result.returncode in (1, 2)
    assert "title-len" in result.stderr or "title" in result.stderr.splitlines()[-1]


# ------------------------------------------------------------------ bad records are skipped


def test_malformed_records_are_skipped_and_counted(env: dict[str, str], tmp_path: Path) -> None:
    bad_json = READER_FIXTURES / "bad_lines.jsonl"
    bad_csv = READER_FIXTURES / "non_utf8.csv"
    result = run(["ingest", str(bad_json), str(bad_csv), "-o", "out.jsonl"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["written"] == 2 + 2
    assert report["skipped"] == {"invalid_json": 1, "wrong_type": 1, "missing_field": 1,
                                 "non_utf8": 1}
    assert f"skipped {bad_json}:2: invalid_json" in result.stderr
    assert f"skipped {bad_csv}:3: non_utf8" in result.stderr
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["url"].rsplit("/", 1)[1] for r in written] == ["1", "5", "1", "3"]

    # prepare reads the raw files too, and counts the same problems.
    result = run(["prepare", str(bad_json), str(bad_csv), "-o", "ds", "--vocab-size", "300",
                  "--workers", "1", "--min-body-words", "1", "--dev-fraction", "0",
                  "--test-fraction", "0.01"], env, tmp_path)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["skipped_input"] == {"invalid_json": 1, "wrong_type": 1,
                                       "missing_field": 1, "non_utf8": 1}
    assert report["read"] == 8
    assert f"skipped {bad_csv}:3: non_utf8" in result.stderr


# ------------------------------------------------------------------ usage errors


@pytest.mark.parametrize(("args", "message"), [
    (["prepare", "in.jsonl", "-o", "ds", "--vocab-size", "0"],
     r"argument --vocab-size: 0 is not a positive whole number"),
    (["prepare", "in.jsonl", "-o", "ds", "--dev-fraction", "1.5"],
     r"argument --dev-fraction: 1.5 is not a fraction"),
    (["prepare", "in.jsonl"], r"the following arguments are required: -o/--output"),
    (["ingest", "in.csv", "-o", "out.jsonl", "--format", "xml"], r"argument --format"),
    (["show", "ds", "--split", "validation"], r"argument --split: invalid choice"),
    (["frobnicate"], r"invalid choice: 'frobnicate'"),
    ([], r"the following arguments are required: COMMAND"),
])
def test_usage_errors(env: dict[str, str], tmp_path: Path, args: list[str], message: str
                      ) -> None:
    result = run(args, env, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: issue-summarizer")
    assert re.search(message, result.stderr.strip().splitlines()[-1]), result.stderr
    assert result.stdout == ""
