"""Run the web app as a user runs it (`python -m webapp`, under waitress) in a process group of
its own, for the browser tests and benchmarks/web.py.

The app is told its settings through the environment only, as in a container; settings this
shell happens to export (a developer's SUMMARIZER_URL, GITHUB_TOKEN, ...) are left out so that
a test gets exactly the app it asks for. Port 0 lets the app pick a free port, which it names
in the line it prints once it listens; on exit the whole group is ended (waitress may leave
worker threads behind a SIGTERM, a remote client may leave children).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from servers import end_group

REPO = Path(__file__).resolve().parent.parent
WEBAPP = (sys.executable, "-m", "webapp", "--host", "127.0.0.1", "--port", "0")
READY = re.compile(r"issue-summarizer web app: (http://127\.0\.0\.1:\d+)/")
SETTINGS = ("SUMMARIZER_MODEL", "SUMMARIZER_URL", "SUMMARIZER_PROTOCOL", "SUMMARIZER_TIMEOUT",
            "GITHUB_API_URL", "GITHUB_TOKEN", "FEEDBACK_DB", "SAMPLES_FILE", "MAX_BATCH",
            "MAX_CONTENT_LENGTH", "SECRET_KEY", "NUM_BEAMS", "ENGINE_THREADS", "CONSENSUS_SAMPLES",
            "MAX_IN_FLIGHT", "FEEDBACK_PER_MINUTE", "FEEDBACK_MAX_MB",
            "ORT_DISABLE_TELEMETRY")  # this test process sets it: the app must set it itself


class AppError(RuntimeError):
    """The app did not start; the message carries the end of its output."""


@dataclass(frozen=True)
class App:
    url: str  # http://127.0.0.1:PORT, without a trailing slash
    pid: int  # the app's process, also its process group
    log: Path  # what the app printed, until it ends

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running_app(settings: Mapping[str, str], start_timeout: float = 90.0,
                command: Sequence[str] = WEBAPP) -> Iterator[App]:
    """Start the app (by default `python -m webapp --host 127.0.0.1 --port 0`) with `settings`
    as its environment, wait for the line naming its URL, yield it, end its process group on exit."""
    env = {name: value for name, value in os.environ.items() if name not in SETTINGS}
    env.update(settings, PYTHONUNBUFFERED="1")
    with tempfile.TemporaryDirectory(prefix="webapp-") as folder:
        log = Path(folder) / "webapp.log"
        with log.open("wb") as output:  # a file, not a pipe: a full pipe would stall the app
            process = subprocess.Popen(
                list(command), cwd=REPO,
                env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            app = App(_url_once_listening(process, log, start_timeout), process.pid, log)
            yield app
        finally:
            end_group(process)


def _url_once_listening(process: subprocess.Popen, log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = READY.search(log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None or time.monotonic() > deadline:
            why = f"exited with {process.returncode}" if process.returncode is not None else "timed out"
            raise AppError(f"python -m webapp {why} before printing its URL:\n"
                           f"{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
