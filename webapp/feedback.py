"""Feedback on suggested titles, kept in SQLite and exported as issue records, so that the titles
people accept or correct become training data (`issue-summarizer feedback export`)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import unicodedata
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
_ELSEWHERE = "set FEEDBACK_DB (or --db) to a file in a folder this user can write"
# Characters a title may not hold: controls (NUL, tab, line breaks, DEL, the C1 set) and the
# Unicode line and paragraph separators. Format characters (Cf) stay allowed: the zero-width
# joiners are part of emoji and of Persian and Indic writing.
_NOT_IN_A_TITLE = ("Cc", "Zl", "Zp")
_CHARACTER_NAMES = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab", "\0": "a NUL",
                    "\u2028": "a line separator", "\u2029": "a paragraph separator"}


def default_db_path() -> Path:
    """feedback.sqlite3 in the user's data folder (XDG_DATA_HOME or ~/.local/share)."""
    root = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(root, "issue-summarizer", "feedback.sqlite3")


def title_problem(title: str) -> str | None:
    """What keeps `title` from being one line of printable text, or None when nothing does.
    Titles are the model's training targets and are shown in one-line fields: a line break,
    tab or NUL in one would teach the model to write them, and break the records' readers.
    Tabs are refused too rather than turned into spaces, so that what is stored is what was sent."""
    for char in title:
        if unicodedata.category(char) in _NOT_IN_A_TITLE:
            name = _CHARACTER_NAMES.get(char, "a control character")
            return f"it holds {name} (U+{ord(char):04X})"
    return None


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


class StoreFull(UserError):
    """The feedback database is at its size limit (or its disk is full): no row can be added."""


class FeedbackStore:
    """A SQLite file of Feedback rows, of at most `max_mb` megabytes when that is given. Each
    call opens its own connection, so the store is safe to share between the server's threads;
    WAL lets readers and a writer work at once.

    The size limit is SQLite's own (PRAGMA max_page_count, set on every connection), so every
    process that opens the store through this class holds to it, with no count of our own to
    drift from the file."""

    def __init__(self, path: Path, max_mb: int | None = None) -> None:
        self.path = path
        self.max_mb = max_mb
        if os.path.isdir(path):  # os.path's checks answer False where pathlib's could raise
            raise UserError(f"{path} is a folder; {_ELSEWHERE}, e.g. {path / 'feedback.sqlite3'}")
        try:  # a failure here is the place's fault: say which place, not a traceback
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            in_the_way = next((parent for parent in path.parents if os.path.isfile(parent)), None)
            why = f"{in_the_way} is a file, not a folder" if in_the_way else error.strerror or str(error)
            raise UserError(f"{path}: cannot create the folder for the feedback database ({why}); "
                            f"{_ELSEWHERE}") from None
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            connection = sqlite3.connect(self.path, timeout=10)
        except sqlite3.Error as error:
            raise UserError(f"{self.path}: cannot open the feedback database ({error}); "
                            f"{_ELSEWHERE}") from None
        try:
            with connection:  # commits, or rolls back on an exception
                if self.max_mb is not None:
                    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
                    connection.execute(f"PRAGMA max_page_count = {self.max_mb * 2**20 // page_size}")
                yield connection
        except sqlite3.DatabaseError as error:
            if error.sqlite_errorcode == sqlite3.SQLITE_FULL:
                limit = f"FEEDBACK_MAX_MB={self.max_mb}, or the disk" if self.max_mb else "the disk"
                raise StoreFull(f"{self.path}: the feedback database is full ({limit}); export the "
                                "feedback and move the file away, or raise FEEDBACK_MAX_MB") from None
            raise UserError(f"{self.path}: not a usable feedback database ({error}); {_ELSEWHERE}") from None
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
    Rows judged bad with no correction carry no title to learn from and are counted, not written;
    so are rows whose title is not one line of printable text (stored before the app checked),
    under "unprintable_title" when there are any."""
    if not db.is_file():
        raise UserError(f"{db}: no feedback database there; pass --db or set FEEDBACK_DB to the web "
                        "app's database")
    counts = {"written": 0, "without_title": 0}
    unprintable = 0
    with storage.open_write(output) as handle:
        for feedback in FeedbackStore(db).entries():
            title = feedback.training_title()
            if title is None:
                counts["without_title"] += 1
                continue
            if title_problem(title):
                unprintable += 1
                continue
            issue = make_issue(url=feedback.url, repo=None, title=title, body=feedback.body,
                               created_at=feedback.created_at)
            handle.write(issue.to_json().encode() + b"\n")
            counts["written"] += 1
    if unprintable:  # only then, so that a clean database's counts read as they always have
        counts["unprintable_title"] = unprintable
    return counts
