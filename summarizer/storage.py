"""Reading and writing files at a local path or a `gs://bucket/prefix` URL, atomically.

Every stage goes through these functions, so every stage runs the same against a laptop
folder and a Cloud Storage bucket. A write goes to a temporary name first and is renamed
when complete: an interrupted run never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import glob
import gzip
import hashlib
import io
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from summarizer.errors import UserError

GCS = "gs://"
_TEMPORARY = re.compile(r"\.tmp-(?:\d+-)?[0-9a-f]{8}(?:/|$)")  # the names _local_atomic and
# upload_file give files (and staged_directory folders) until they are complete
log = logging.getLogger(__name__)


def is_gcs(path: str) -> bool:
    return path.startswith(GCS)


def join(base: str, *names: str) -> str:
    if is_gcs(base):
        return "/".join([base.rstrip("/"), *names])
    return str(Path(base, *names))


def _split(url: str) -> tuple[str, str]:
    bucket, _, name = url[len(GCS):].partition("/")
    if not bucket:
        raise UserError(f"{url}: not a Cloud Storage URL; write gs://BUCKET/PATH")
    return bucket, name


@functools.cache
def _client():  # noqa: ANN202 - google.cloud.storage.Client, imported lazily
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        project = os.environ.get("GOOGLE_CLOUD_PROJECT", "local")
        return storage.Client(project=project, credentials=AnonymousCredentials())
    try:
        return storage.Client()
    except DefaultCredentialsError as error:
        raise UserError(
            "no Google Cloud credentials for gs:// paths: run "
            "'gcloud auth application-default login' or set GOOGLE_APPLICATION_CREDENTIALS "
            "to a service-account key file"
        ) from error


def _retry():  # noqa: ANN202 - google.api_core.retry.Retry
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(float(os.environ.get("SUMMARIZER_GCS_RETRY_SECONDS", "60")))


@contextlib.contextmanager
def _errors(path: str) -> Iterator[None]:
    """Turn storage failures into one-line messages that say what to do."""
    try:
        yield
    except UserError:
        raise
    except (FileNotFoundError, NotADirectoryError) as error:
        raise UserError(f"{path}: no such file or directory") from error
    except IsADirectoryError as error:
        raise UserError(f"{path}: is a directory, expected a file") from error
    except PermissionError as error:
        raise UserError(f"{path}: permission denied") from error
    except Exception as error:
        if not is_gcs(path):
            raise
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import GoogleAuthError
        from requests.exceptions import ConnectionError as RequestsConnectionError

        if isinstance(error, gexc.NotFound):
            raise UserError(f"{path}: not found (check the bucket and object name)") from error
        if isinstance(error, gexc.Forbidden | gexc.Unauthorized | GoogleAuthError):
            raise UserError(
                f"{path}: access denied; give the account storage.objects permissions on the "
                "bucket or use other credentials"
            ) from error
        if isinstance(error, RequestsConnectionError | gexc.RetryError | gexc.ServiceUnavailable):
            raise UserError(
                f"{path}: cannot reach Cloud Storage ({type(error).__name__}); check the network "
                "or STORAGE_EMULATOR_HOST"
            ) from error
        if isinstance(error, gexc.GoogleAPIError):
            raise UserError(f"{path}: Cloud Storage error: {error}") from error
        raise


def _maybe_gunzip(path: str, raw: BinaryIO) -> BinaryIO:
    if not path.endswith(".gz"):
        return raw
    # GzipFile's own 8 KiB buffer makes reading lines 20% slower; a bigger one would lose
    # more of a truncated archive (what was read before the damage is kept, see readers).
    return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), 1 << 16)  # type: ignore[arg-type]


@contextlib.contextmanager
def open_read(path: str) -> Iterator[BinaryIO]:
    """Open a file for binary reading, streaming from GCS and un-gzipping `.gz` names."""
    with _errors(path):
        if is_gcs(path):
            bucket, name = _split(path)
            blob = _client().bucket(bucket).blob(name)
            with blob.open("rb", retry=_retry()) as raw:
                yield _maybe_gunzip(path, raw)
        else:
            with open(path, "rb") as raw:
                yield _maybe_gunzip(path, raw)


def read_bytes(path: str) -> bytes:
    with open_read(path) as handle:
        return handle.read()


def exists(path: str) -> bool:
    with _errors(path):
        if is_gcs(path):
            bucket, name = _split(path)
            return _client().bucket(bucket).blob(name).exists(retry=_retry())
        return os.path.exists(path)


def list_files(path: str) -> list[str]:
    """Expand a file, folder, glob or gs:// prefix or glob into the sorted files it names."""
    with _errors(path):
        if is_gcs(path):
            bucket, name = _split(path)
            client = _client()
            pattern = name if any(ch in name for ch in "*?[") else None
            if pattern:
                prefix = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
            elif name and client.bucket(bucket).blob(name).exists(retry=_retry()):
                return [path]
            else:
                prefix = name.rstrip("/") + "/" if name else ""
            blobs = client.list_blobs(bucket, prefix=prefix, retry=_retry())
            found = sorted(f"{GCS}{bucket}/{b.name}" for b in blobs if not b.name.endswith("/")
                           and (pattern is None or fnmatch.fnmatchcase(b.name, pattern)))
        elif any(ch in path for ch in "*?["):
            found = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        elif os.path.isdir(path):
            found = sorted(
                str(p) for p in Path(path).rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif os.path.isfile(path):
            return [path]
        else:
            raise UserError(f"{path}: no such file or directory")
    found = _without_unfinished(found)
    if not found:
        raise UserError(f"{path}: no files found there")
    return found


def _without_unfinished(paths: list[str]) -> list[str]:
    """Leave out what an interrupted write left under a temporary name: it is not data."""
    kept = [p for p in paths if not _TEMPORARY.search(p)]
    if len(kept) < len(paths):
        log.warning("left out %d unfinished file(s) of interrupted runs, e.g. %s",
                    len(paths) - len(kept), next(p for p in paths if _TEMPORARY.search(p)))
    return kept


@contextlib.contextmanager
def open_write(path: str) -> Iterator[BinaryIO]:
    """Write a file under a temporary name, then rename it into place when complete."""
    with _errors(path):
        if is_gcs(path):
            local = Path(_staging_dir(), uuid.uuid4().hex)
            try:
                with _local_atomic(str(local), path) as handle:
                    yield handle
                upload_file(str(local), path)
            finally:
                local.unlink(missing_ok=True)
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with _local_atomic(path, path) as handle:
                yield handle


@contextlib.contextmanager
def _local_atomic(target: str, name: str) -> Iterator[BinaryIO]:
    tmp = f"{target}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as raw:
            if name.endswith(".gz"):  # no timestamp or name: reruns give identical bytes
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=1) as zipped:
                    yield zipped  # type: ignore[misc]
            else:
                yield raw
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a local file, read in blocks (datasets hold large arrays)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bytes(path: str, data: bytes) -> None:
    with open_write(path) as handle:
        handle.write(data)


def cache_dir(*names: str) -> Path:
    """The user's cache folder for this tool (XDG_CACHE_HOME or ~/.cache)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root, "issue-summarizer", *names)


def _staging_dir() -> str:
    path = Path(os.environ.get("TMPDIR", "/tmp"), "issue-summarizer-staging")
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def upload_file(local: str, url: str) -> None:
    """Upload to a temporary object, then rename it: readers never see a partial object."""
    with _errors(url):
        bucket_name, name = _split(url)
        bucket = _client().bucket(bucket_name)
        tmp = bucket.blob(f"{name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.upload_from_filename(local, retry=_retry())
        bucket.rename_blob(tmp, name, retry=_retry())


def download_file(url: str, local: Path) -> None:
    """Copy an object's exact bytes (no un-gzipping) to a local file, atomically."""
    with _errors(url):
        bucket, name = _split(url)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f"{local.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            _client().bucket(bucket).blob(name).download_to_filename(str(tmp), retry=_retry())
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)


def delete(path: str) -> None:
    with _errors(path):
        if is_gcs(path):
            bucket, name = _split(path)
            blob = _client().bucket(bucket).blob(name)
            if blob.exists(retry=_retry()):
                blob.delete(retry=_retry())
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


@contextlib.contextmanager
def staged_directory(dest: str, last: str) -> Iterator[Path]:
    """Build a directory locally, then publish it whole; `last` (a file name) is written last.

    Locally the folder is renamed into place. On GCS there is no folder rename, so the old
    `last` file is removed first and written again only after every other file is uploaded:
    readers take a dataset as complete only when its `last` file exists.
    """
    with _errors(dest):
        if is_gcs(dest):
            staging = Path(_staging_dir(), uuid.uuid4().hex)
        else:
            staging = Path(f"{dest.rstrip('/')}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        staging.mkdir(parents=True)
        try:
            yield staging
            if is_gcs(dest):
                delete(join(dest, last))
                files = sorted(p for p in staging.rglob("*") if p.is_file())
                for file in sorted(files, key=lambda p: p.name == last):
                    upload_file(str(file), join(dest, *file.relative_to(staging).parts))
            else:
                _replace_directory(staging, Path(dest))
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _replace_directory(new: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        old = dest.with_name(f"{dest.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dest, old)
        os.replace(new, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, dest)
