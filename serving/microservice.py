"""Run the real `seldon-core-microservice IssueSummarization` privately, for tests and benchmarks.

seldon-core 1.18 binds 0.0.0.0 with no option to change it: REST on 9000, gRPC on 5000 and
metrics on 6000. To keep all of it off the machine's network, the server runs in a network
namespace of its own (`unshare -rn`), where nothing outside can reach it. The REST port is
brought out without a relay: this process opens a listening socket on 127.0.0.1 (a free
port, so parallel runs never collide) and hands it to gunicorn as a systemd-style inherited
socket (LISTEN_FDS/LISTEN_PID), which gunicorn serves instead of binding its own; a socket
keeps the namespace it was made in, so clients here reach it on loopback at full speed. The
metrics server stays inside the namespace (`Service.metrics` reads it from there) and gRPC is
turned off, since nothing could reach it.

    with serve("models/default") as service:
        requests.post(f"{service.url}/api/v1.0/predictions", json={"strData": body})

The namespace needs `unshare` from util-linux and user namespaces (or root); reading the
metrics from inside it needs root.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

SERVING = Path(__file__).resolve().parent
REPO = SERVING.parent
ENVIRONMENT = REPO / ".venvs" / "seldon"
METRICS_PORT = 6000  # inside the namespace, so the same in every run
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class MicroserviceError(RuntimeError):
    """The microservice could not be started; the message carries the end of its log."""


@dataclass(frozen=True)
class Service:
    url: str  # http://127.0.0.1:PORT, the REST API
    pid: int  # the microservice's main process, also its process group
    log: Path  # what the microservice prints, until it ends

    def metrics(self) -> str:
        """The Prometheus text of the metrics server, fetched from inside the namespace."""
        def fetch() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10) as answer:
                return answer.read().decode()
        return _in_namespace(self.pid, fetch)

    def peak_memory_bytes(self) -> int:
        """The sum of the peak resident memory (VmHWM) of every process of the microservice."""
        total = 0
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                if os.getpgid(int(status.parent.name)) != self.pid:
                    continue
                fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            except (OSError, ValueError):  # the process ended meanwhile
                continue
            total += int(fields.get("VmHWM", "0 kB").split()[0]) * 1024
        return total


def _in_namespace(pid: int, call: Callable[[], T]) -> T:
    """Run `call` on a thread that joined `pid`'s network namespace (setns changes only the
    calling thread, so this process's other sockets stay where they are)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            descriptor = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if libc.setns(descriptor, CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"entering the service's network namespace: {os.strerror(error)}")
            finally:
                os.close(descriptor)
            result.append(call())
        except BaseException as error:  # handed to the caller's thread
            failure.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health/ping", timeout=5) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _end(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the whole group, then SIGKILL to whatever is left: the microservice's children
    (the metrics server, gunicorn workers) do not all end with their parent."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    process.wait()


@contextmanager
def serve(bundle: str | Path = REPO / "models" / "default", env: Mapping[str, str] | None = None,
          workers: int = 1, threads: int = 1, start_timeout: float = 120.0) -> Iterator[Service]:
    """Start the microservice on `bundle`, wait until it answers, yield it, end it on exit.
    `env` adds settings (ENGINE_THREADS, MAX_BATCH, ...); `workers` and `threads` are gunicorn's."""
    command = ENVIRONMENT / "bin" / "seldon-core-microservice"
    if not command.exists():
        raise MicroserviceError(f"{command} is missing: run `bash scripts/setup-serving-env.sh seldon`")
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    settings = {**os.environ, **(env or {}), "MODEL_BUNDLE": str(bundle), "GRPC_WORKERS": "0",
                "GUNICORN_WORKERS": str(workers), "GUNICORN_THREADS": str(threads),
                "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(METRICS_PORT), "LISTEN_FDS": "1"}
    # In the namespace: loopback up (for the metrics server), the socket at fd 3 where LISTEN_FDS
    # says it is, and LISTEN_PID set to the process that exec keeps.
    fd = listener.fileno()
    script = ('ip link set lo up && export LISTEN_PID=$$ && exec "$0" IssueSummarization --service-type MODEL'
              + ("" if fd == 3 else f" 3<&{fd} {fd}<&-"))
    with tempfile.TemporaryDirectory(prefix="seldon-") as folder:
        log = Path(folder) / "microservice.log"
        with log.open("wb") as output:
            process = subprocess.Popen(["unshare", "-rn", "bash", "-c", script, str(command)], cwd=SERVING,
                                       env=settings, stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, pass_fds=(fd,), start_new_session=True)
        listener.close()  # the microservice holds it now
        service = Service(url, process.pid, log)
        try:
            deadline = time.monotonic() + start_timeout
            while not _answers(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    ending = log.read_text(errors="replace")[-3000:]
                    raise MicroserviceError(f"seldon-core-microservice did not start on {url}:\n{ending}")
                time.sleep(0.2)
            yield service
        finally:
            _end(process, grace=10)
