"""storage.py against local folders and a real Cloud Storage emulator."""

from __future__ import annotations

import gzip
import os
import socket
from pathlib import Path

import pytest

from summarizer import storage
from summarizer.errors import UserError


class Boom(Exception):
    pass


def _gcs_names(url: str) -> list[str]:
    bucket, prefix = storage._split(url)
    return sorted(b.name for b in storage._client().list_blobs(bucket, prefix=prefix))


# ---------------------------------------------------------------- round trips


@pytest.fixture(params=["local", "gcs"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A folder to write into: a local path or a fresh gs:// bucket."""
    if request.param == "local":
        return str(tmp_path)
    return request.getfixturevalue("gcs_bucket")


def test_bytes_round_trip(base: str) -> None:
    path = storage.join(base, "sub", "data.bin")
    data = bytes(range(256)) * 10
    storage.write_bytes(path, data)
    assert storage.read_bytes(path) == data
    storage.write_bytes(path, b"second")  # overwrite
    assert storage.read_bytes(path) == b"second"


def test_gz_round_trip_is_transparent_and_deterministic(base: str, tmp_path: Path) -> None:
    path = storage.join(base, "rows.jsonl.gz")
    text = b'{"a": 1}\n' * 1000
    with storage.open_write(path) as handle:
        handle.write(text)
    with storage.open_read(path) as handle:
        assert handle.read() == text
    first = _raw(path, tmp_path)
    assert gzip.decompress(first) == text  # stored compressed
    assert first[3] == 0  # header flags: no file name stored
    assert first[4:8] == b"\0\0\0\0"  # header mtime: none
    assert len(first) < len(text)
    storage.write_bytes(path, text)
    assert _raw(path, tmp_path) == first  # byte-identical on a rewrite


def _raw(path: str, tmp_path: Path) -> bytes:
    """The stored bytes, without storage.py's gunzip."""
    if storage.is_gcs(path):
        bucket, name = storage._split(path)
        return storage._client().bucket(bucket).blob(name).download_as_bytes()
    return Path(path).read_bytes()


def test_plain_names_are_not_gzipped(tmp_path: Path) -> None:
    path = str(tmp_path / "plain.txt")
    storage.write_bytes(path, b"hello")
    assert Path(path).read_bytes() == b"hello"


def test_exists_and_delete(base: str) -> None:
    path = storage.join(base, "x.txt")
    assert not storage.exists(path)
    storage.delete(path)  # deleting what is not there is fine
    storage.write_bytes(path, b"x")
    assert storage.exists(path)
    storage.delete(path)
    assert not storage.exists(path)
    with pytest.raises(UserError):
        storage.read_bytes(path)


# ---------------------------------------------------------------- list_files


def test_list_files_local_folder(tmp_path: Path) -> None:
    for name in ["b.txt", "a.txt", "sub/c.txt", ".hidden", ".git/config", "sub/.secret"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    assert storage.list_files(str(tmp_path)) == [
        str(tmp_path / "a.txt"),
        str(tmp_path / "b.txt"),
        str(tmp_path / "sub" / "c.txt"),
    ]
    many = [f"part-{i:02d}" for i in range(30)]
    for name in reversed(many):
        (tmp_path / "many" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "many" / name).write_text(name)
    assert storage.list_files(str(tmp_path / "many")) == [str(tmp_path / "many" / n) for n in many]


def test_list_files_local_glob_and_single_file(tmp_path: Path) -> None:
    for name in ["2.jsonl", "1.jsonl", "notes.md", "deep/3.jsonl"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / "dir.jsonl").mkdir()  # folders never match
    assert storage.list_files(str(tmp_path / "*.jsonl")) == [
        str(tmp_path / "1.jsonl"),
        str(tmp_path / "2.jsonl"),
    ]
    many = [f"part-{i:02d}.csv" for i in range(30)]
    for name in reversed(many):
        (tmp_path / name).write_text(name)
    assert storage.list_files(str(tmp_path / "part-*.csv")) == [str(tmp_path / n) for n in many]
    assert storage.list_files(str(tmp_path / "**" / "*.jsonl")) == [
        str(tmp_path / "1.jsonl"),
        str(tmp_path / "2.jsonl"),
        str(tmp_path / "deep" / "3.jsonl"),
    ]
    single = str(tmp_path / "notes.md")
    assert storage.list_files(single) == [single]


def test_list_files_local_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file or directory"):
        storage.list_files(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="no files found"):
        storage.list_files(str(tmp_path / "*.nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no files found"):
        storage.list_files(str(tmp_path / "empty"))


def test_list_files_gcs(gcs_bucket: str) -> None:
    for name in ["data/b.txt", "data/a.txt", "data/sub/c.txt", "database.txt", "other/d.txt"]:
        storage.write_bytes(f"{gcs_bucket}/{name}", b"x")
    expected = [
        f"{gcs_bucket}/data/a.txt",
        f"{gcs_bucket}/data/b.txt",
        f"{gcs_bucket}/data/sub/c.txt",
    ]
    assert storage.list_files(f"{gcs_bucket}/data") == expected
    assert storage.list_files(f"{gcs_bucket}/data/") == expected  # "database.txt" is not in it
    assert storage.list_files(f"{gcs_bucket}/data/a.txt") == [f"{gcs_bucket}/data/a.txt"]
    assert len(storage.list_files(gcs_bucket)) == 5
    with pytest.raises(UserError, match="no files found"):
        storage.list_files(f"{gcs_bucket}/nothing-here")


# ---------------------------------------------------------------- atomic writes


def test_list_files_gcs_glob(gcs_bucket: str) -> None:
    for name in ("export-000.csv", "export-001.csv", "export-001.json", "other-000.csv"):
        storage.write_bytes(f"{gcs_bucket}/{name}", b"x")
    assert storage.list_files(f"{gcs_bucket}/export-*.csv") == [
        f"{gcs_bucket}/export-000.csv", f"{gcs_bucket}/export-001.csv"]
    with pytest.raises(UserError, match="no files found"):
        storage.list_files(f"{gcs_bucket}/nothing-*.csv")


def test_failed_local_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl.gz"
    with pytest.raises(Boom), storage.open_write(str(path)) as handle:
        handle.write(b"partial")
        raise Boom
    assert list(tmp_path.iterdir()) == []


def test_failed_local_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    storage.write_bytes(str(path), b"old")
    with pytest.raises(Boom), storage.open_write(str(path)) as handle:
        handle.write(b"new")
        raise Boom
    assert os.listdir(tmp_path) == ["out.txt"]
    assert path.read_bytes() == b"old"


def test_failed_gcs_write_leaves_nothing(
    gcs_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    path = f"{gcs_bucket}/out.txt"
    with pytest.raises(Boom), storage.open_write(path) as handle:
        handle.write(b"partial")
        raise Boom
    assert _gcs_names(gcs_bucket) == []
    assert not storage.exists(path)
    staging = tmp_path / "issue-summarizer-staging"
    assert list(staging.iterdir()) == []  # no local temp file either


def test_gcs_write_leaves_no_temp_objects(gcs_bucket: str) -> None:
    storage.write_bytes(f"{gcs_bucket}/a/b.txt", b"x")
    assert _gcs_names(gcs_bucket) == ["a/b.txt"]


# ---------------------------------------------------------------- staged_directory


def test_staged_directory_local_replaces_whole(tmp_path: Path) -> None:
    dest = tmp_path / "dataset"
    dest.mkdir()
    (dest / "stale.txt").write_text("old")
    (dest / "DONE").write_text("old")
    with storage.staged_directory(str(dest), last="DONE") as staging:
        assert staging != dest
        (staging / "part-0.txt").write_text("new")
        (staging / "sub").mkdir()
        (staging / "sub" / "part-1.txt").write_text("new")
        (staging / "DONE").write_text("new")
        assert (dest / "stale.txt").exists()  # not published yet
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
        "DONE",
        "part-0.txt",
        "sub/part-1.txt",
    ]
    assert (dest / "DONE").read_text() == "new"
    assert os.listdir(tmp_path) == ["dataset"]  # no staging or old folder left


def test_staged_directory_local_failure_keeps_old(tmp_path: Path) -> None:
    dest = tmp_path / "dataset"
    dest.mkdir()
    (dest / "DONE").write_text("old")
    with pytest.raises(Boom), storage.staged_directory(str(dest), last="DONE") as staging:
        (staging / "DONE").write_text("new")
        raise Boom
    assert os.listdir(tmp_path) == ["dataset"]
    assert os.listdir(dest) == ["DONE"]
    assert (dest / "DONE").read_text() == "old"


def test_staged_directory_local_new_dest(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b"
    with storage.staged_directory(str(dest), last="DONE") as staging:
        (staging / "DONE").write_text("x")
    assert os.listdir(dest) == ["DONE"]


def test_staged_directory_gcs_uploads_last_file_last(
    gcs_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = f"{gcs_bucket}/dataset"
    storage.write_bytes(f"{dest}/MANIFEST", b"old")
    uploaded: list[str] = []
    real_upload = storage.upload_file

    def record(local: str, url: str) -> None:
        assert not storage.exists(f"{dest}/MANIFEST")  # the old manifest goes first
        uploaded.append(url)
        real_upload(local, url)

    monkeypatch.setattr(storage, "upload_file", record)
    with storage.staged_directory(dest, last="MANIFEST") as staging:
        (staging / "MANIFEST").write_text("new")
        (staging / "z.txt").write_text("z")
        (staging / "a.txt").write_text("a")
        (staging / "sub").mkdir()
        (staging / "sub" / "b.txt").write_text("b")
    assert uploaded[-1] == f"{dest}/MANIFEST"
    assert sorted(uploaded) == sorted(
        f"{dest}/{n}" for n in ["MANIFEST", "a.txt", "sub/b.txt", "z.txt"]
    )
    assert storage.read_bytes(f"{dest}/MANIFEST") == b"new"
    assert _gcs_names(gcs_bucket) == [
        "dataset/MANIFEST",
        "dataset/a.txt",
        "dataset/sub/b.txt",
        "dataset/z.txt",
    ]
    assert not staging.exists()


def test_staged_directory_gcs_failure_publishes_nothing(gcs_bucket: str) -> None:
    dest = f"{gcs_bucket}/dataset"
    with pytest.raises(Boom), storage.staged_directory(dest, last="MANIFEST") as staging:
        (staging / "a.txt").write_text("a")
        (staging / "MANIFEST").write_text("m")
        raise Boom
    assert _gcs_names(gcs_bucket) == []
    assert not staging.exists()


# ---------------------------------------------------------------- errors


def test_missing_local_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.txt")
    with pytest.raises(UserError, match=r"nope\.txt: no such file or directory"):
        storage.read_bytes(path)


def test_local_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is a directory"):
        storage.read_bytes(str(tmp_path))


def test_missing_gcs_object(gcs_bucket: str) -> None:
    path = f"{gcs_bucket}/nope.txt"
    with pytest.raises(UserError, match=r"nope\.txt: not found"):
        storage.read_bytes(path)


def test_missing_gcs_bucket(gcs_emulator: object) -> None:
    path = "gs://no-such-bucket-xyz/file.txt"
    with pytest.raises(UserError, match="no-such-bucket-xyz.*not found"):
        storage.read_bytes(path)
    with pytest.raises(UserError, match="no-such-bucket-xyz.*not found"):
        storage.list_files("gs://no-such-bucket-xyz/prefix")
    with pytest.raises(UserError, match="no-such-bucket-xyz.*not found"):
        storage.write_bytes(path, b"x")


def test_not_a_gcs_url() -> None:
    with pytest.raises(UserError, match="not a Cloud Storage URL"):
        storage.read_bytes("gs:///file.txt")


@pytest.fixture
def clean_client() -> object:
    """Clear the cached client before and after a test that changes the environment."""
    storage._client.cache_clear()
    yield
    storage._client.cache_clear()


def test_unreachable_storage(clean_client: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SUMMARIZER_GCS_RETRY_SECONDS", "1")
    with pytest.raises(UserError, match="cannot reach Cloud Storage"):
        storage.read_bytes("gs://bucket/file.txt")
    with pytest.raises(UserError, match="cannot reach Cloud Storage"):
        storage.exists("gs://bucket/file.txt")


def test_missing_credentials(
    clean_client: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-key.json"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no gcloud login either
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # do not probe the metadata server
    with pytest.raises(UserError, match="no Google Cloud credentials") as raised:
        storage.read_bytes("gs://bucket/file.txt")
    assert "\n" not in str(raised.value)


def test_list_files_leaves_out_unfinished_writes(tmp_path: Path, gcs_bucket: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "issues.jsonl").write_text("{}\n")
    (tmp_path / "issues.jsonl.tmp-4242-0a1b2c3d").write_text("{")  # a killed local write
    (tmp_path / "dataset.tmp-4242-0a1b2c3d").mkdir()  # a killed staged folder
    (tmp_path / "dataset.tmp-4242-0a1b2c3d" / "train.jsonl").write_text("{")
    assert storage.list_files(str(tmp_path)) == [str(tmp_path / "issues.jsonl")]
    assert "unfinished" in caplog.text
    storage.write_bytes(f"{gcs_bucket}/in/a.json", b"[]")
    storage.write_bytes(f"{gcs_bucket}/in/b.json.tmp-0a1b2c3d", b"[")  # a killed upload
    assert storage.list_files(f"{gcs_bucket}/in") == [f"{gcs_bucket}/in/a.json"]
