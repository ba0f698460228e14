"""Feedback on suggested titles, kept in SQLite and exported as issue records, so that the titles
people accept or correct become training data (`issue-summarizer feedback export`)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from summarizer import storage
from summarizer.errors import UserError
from summarizer.records import make_issue

VERDICTS = ("good", "bad")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL,
    suggested TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('good', 'bad')),
    corrected TEXT,
    model_version TEXT NOT NULL,
    url TEXT
)
"""
_COLUMNS = ("body", "suggested", "verdict", "corrected", "model_version", "url", "created_at")


def default_db_path() -> Path:
    """feedback.sqlite3 in the user's data folder (XDG_DATA_HOME or ~/.local/share)."""
    root = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(root, "issue-summarizer", "feedback.sqlite3")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Feedback:
    """What a person said about one suggested title."""

    body: str
    suggested: str
    verdict: str  # one of VERDICTS
    corrected: str | None
    model_version: str
    url: str | None = None  # the GitHub issue the body came from, if it was fetched
    created_at: str = field(default_factory=_now)

    def training_title(self) -> str | None:
        """The title a person stands behind: their correction, else a suggestion they called good."""
        if self.corrected:
            return self.corrected
        return self.suggested if self.verdict == "good" else None


class FeedbackStore:
    """A SQLite file of Feedback rows. Each call opens its own connection, so the store is safe to
    share between the server's threads; WAL lets readers and a writer work at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            connection = sqlite3.connect(self.path, timeout=10)
        except sqlite3.Error as error:
            raise UserError(f"{self.path}: cannot open the feedback database ({error})") from None
        try:
            with connection:  # commits, or rolls back on an exception
                yield connection
        except sqlite3.DatabaseError as error:
            raise UserError(f"{self.path}: not a usable feedback database ({error}); "
                            "point FEEDBACK_DB (or --db) at another file") from None
        finally:
            connection.close()

    def add(self, feedback: Feedback) -> int:
        """Store one row; returns its id."""
        with self._connect() as db:
            cursor = db.execute(f"INSERT INTO feedback ({', '.join(_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [getattr(feedback, name) for name in _COLUMNS])
            return int(cursor.lastrowid or 0)

    def entries(self) -> list[Feedback]:
        """Every row, oldest first."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM feedback ORDER BY id").fetchall()
        return [Feedback(**dict(zip(_COLUMNS, row, strict=True))) for row in rows]


def export(db: Path, output: str) -> dict[str, int]:
    """Write every feedback row that names a title as an issue record (JSON lines, gzipped when
    `output` ends in .gz; local or gs://), the format `issue-summarizer ingest` and `prepare` read.
    Rows judged bad with no correction carry no title to learn from and are counted, not written."""
    if not db.is_file():
        raise UserError(f"{db}: no feedback database there; pass --db or set FEEDBACK_DB to the web "
                        "app's database")
    counts = {"written": 0, "without_title": 0}
    with storage.open_write(output) as handle:
        for feedback in FeedbackStore(db).entries():
            title = feedback.training_title()
            if title is None:
                counts["without_title"] += 1
                continue
            issue = make_issue(url=feedback.url, repo=None, title=title, body=feedback.body,
                               created_at=feedback.created_at)
            handle.write(issue.to_json().encode() + b"\n")
            counts["written"] += 1
    return counts
