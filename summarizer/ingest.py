"""`ingest`: issues from any mix of sources into one JSON-lines file of issue records."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from summarizer import storage
from summarizer.progress import progress
from summarizer.readers import read_file
from summarizer.readers.github_api import RepositoryCrawl
from summarizer.records import Issue
from summarizer.skips import SkipCounter

log = logging.getLogger(__name__)
GITHUB = "github:"


def _crawl_for(source: str, output: str, since: str | None, api_url: str | None,
               state_root: Path) -> RepositoryCrawl:
    # One state folder per (output, repository): rerunning the same command resumes it.
    key = hashlib.sha256(f"{os.path.abspath(output) if not storage.is_gcs(output) else output}"
                         f"\0{source}".encode()).hexdigest()[:16]
    return RepositoryCrawl(source[len(GITHUB):], state_root / key, since=since, api_url=api_url)


def ingest(
    sources: Sequence[str],
    output: str,
    *,
    fmt: str = "auto",
    since: str | None = None,
    api_url: str | None = None,
    state_root: Path | None = None,
) -> dict:
    """Read every source, write all records to `output` atomically, and report the counts."""
    state_root = state_root or storage.cache_dir("crawls")  # what interrupted crawls fetched
    skips = SkipCounter()
    crawls = [_crawl_for(s, output, since, api_url, state_root)
              for s in sources if s.startswith(GITHUB)]
    files = [path for s in sources if not s.startswith(GITHUB) for path in storage.list_files(s)]

    def records() -> Iterator[Issue]:
        for crawl in crawls:
            yield from crawl.issues(skips)
        for path in files:
            yield from read_file(path, skips, fmt)

    written = 0
    with storage.open_write(output) as handle:
        for issue in progress(records(), "ingesting"):
            handle.write(issue.to_json().encode("utf-8") + b"\n")
            written += 1
    for crawl in crawls:
        crawl.finish()
    report = {"sources": list(sources), "files": len(files), "written": written,
              "skipped": skips.as_dict(), "skipped_total": skips.total(), "output": output}
    log.info("wrote %s issues to %s; skipped %s %s", f"{written:,}", output,
             f"{skips.total():,}", skips.as_dict() or "")
    return report
