"""Real servers for the tests: free loopback ports, the serving environments the users' script
builds, MLServer on the shipped bundle, and ending a server's whole process group (servers
leave children behind a SIGTERM to their leader)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
MLSERVER = REPO_ROOT / ".venvs" / "mlserver" / "bin" / "mlserver"
RUNTIME_SETTINGS = ("MODEL_BUNDLE", "ENGINE_THREADS", "MAX_BATCH", "MAX_BODY_CHARS")


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all bound at once, so none repeats)."""
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    try:
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def end_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the process group, then SIGKILL to whatever of it is left after `grace` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def build_serving_environment(name: str) -> None:
    """.venvs/NAME (seldon or mlserver) as `scripts/setup-serving-env.sh` builds it for users:
    about a minute the first time, then a no-op."""
    setup = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "setup-serving-env.sh"), name],
                           capture_output=True, text=True, timeout=1500, check=False)
    if setup.returncode != 0:
        pytest.fail(f"scripts/setup-serving-env.sh {name} failed:\n"
                    f"{setup.stdout[-3000:]}{setup.stderr[-3000:]}")


def start_mlserver(log: Path, bundle: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`mlserver start serving/mlserver` from the repository root with every server on a free
    loopback port (gRPC cannot be turned off in MLServer 1.7); its process and REST URL.
    Without `bundle`, the model settings' uri names models/default."""
    http, grpc, metrics = free_ports(3)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("MLSERVER") and name not in RUNTIME_SETTINGS}
    env.update(MLSERVER_HOST="127.0.0.1", MLSERVER_HTTP_PORT=str(http), MLSERVER_GRPC_PORT=str(grpc),
               MLSERVER_METRICS_PORT=str(metrics))
    if bundle is not None:
        env["MODEL_BUNDLE"] = str(bundle)
    with open(log, "wb") as out:  # a file, not a pipe: a full pipe would stall the server
        process = subprocess.Popen([str(MLSERVER), "start", "serving/mlserver"], cwd=REPO_ROOT, env=env,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return process, f"http://127.0.0.1:{http}"


@contextmanager
def mlserver(log: Path, timeout: float = 90.0) -> Iterator[str]:
    """A ready MLServer on models/default (see `start_mlserver`): its URL; checks it is still
    up at the end, then ends it."""
    process, url = start_mlserver(log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlserver did not get ready:\n{log.read_text(errors='replace')[-4000:]}")
            try:
                if requests.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield url
        assert process.poll() is None, f"mlserver died meanwhile:\n{log.read_text(errors='replace')[-4000:]}"
    finally:
        end_group(process)


@dataclass(frozen=True)
class Overload:
    answers: list[requests.Response]  # of the requests sent at once
    health: requests.Response  # the health check sent while they were decoding
    health_seconds: float
    still_decoding: bool  # whether a request was still running when the health check came back


def overload(send: Callable[[], requests.Response], health_url: str, count: int = 4) -> Overload:
    """`count` calls of `send` at once, and a health check 0.3 s into them: what a server with
    fewer slots than requests answers each, and whether its health check waited for them."""
    answers: list[requests.Response] = []
    senders = [threading.Thread(target=lambda: answers.append(send())) for _ in range(count)]
    for sender in senders:
        sender.start()
    time.sleep(0.3)
    started = time.monotonic()
    health = requests.get(health_url, timeout=10)
    health_seconds = time.monotonic() - started
    still_decoding = any(sender.is_alive() for sender in senders)
    for sender in senders:
        sender.join()
    return Overload(answers, health, health_seconds, still_decoding)


def assert_sheds_load(found: Overload, message: Callable[[requests.Response], str]) -> None:
    """Some requests got titles, the others a 503 with Retry-After and the busy message (read by
    `message`), and the health check answered at once while the titles were being decoded."""
    assert found.health.status_code == 200 and found.health_seconds < 1, found.health_seconds
    assert found.still_decoding, "the requests ended before the health check: make them longer"
    statuses = {answer.status_code for answer in found.answers}
    assert statuses == {200, 503}, [answer.text[:200] for answer in found.answers]
    for answer in found.answers:
        if answer.status_code == 503:
            assert int(answer.headers["Retry-After"]) >= 1
            assert "the server is busy" in message(answer)


def stopped_by_itself(process: subprocess.Popen, log: Path, what: str, timeout: float = 60) -> str:
    """The log of a server that must stop on its own (a bad bundle, a bad setting); the test
    fails with the log's end if it is still running after `timeout` seconds."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} kept running:\n{log.read_text(errors='replace')[-3000:]}")
    finally:
        end_group(process)
    return log.read_text(errors="replace")
