"""What abuse costs the real servers: a burst of expensive requests, then a soak of valid and
malformed requests mixed, against `python -m webapp` (waitress, the embedded engine) and the
real Seldon microservice, on this machine:

    .venv/bin/python benchmarks/soak.py [--seconds 60] [--clients 8] [--skip-seldon]

- burst: four requests at once, first the one that used to hold the app for 18 s and 1.6 GB (64
  issues, num_beams 16, every candidate), then four of the most expensive the budget accepts
  (13 issues at the page's setting), with /healthz probed every 0.1 s meanwhile;
- soak: `--clients` threads for `--seconds`, each sending in turn a valid title request and the
  malformed kinds below; answers counted by kind and status, latency p50/p99 of the valid ones,
  the server's memory at start and end.

The baseline each figure is read against, measured first in the same run: /healthz latency and
memory of the idle server. The run fails (exit 1) on any 5xx other than a 503 with Retry-After,
or any request that got no answer.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
from serve import real_bodies

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "models" / "default"
JSON = {"Content-Type": "application/json"}
Send = Callable[[requests.Session, str], requests.Response]


def _post(path: str, data: bytes | str, headers: dict[str, str] | None = None) -> Send:
    return lambda session, url: session.post(f"{url}{path}", data=data, headers=headers or JSON, timeout=60)


def web_requests(bodies: list[str]) -> dict[str, Callable[[int], Send]]:
    """Each kind of request the soak sends the web app, by name; `valid` varies its body."""
    nothing = json.dumps({"body": "<!-- template -->\n### Describe the bug\n\n\u200b"})
    return {
        "valid": lambda i: _post("/api/summarize", json.dumps({"body": bodies[i % len(bodies)]})),
        "nested JSON": lambda i: _post("/api/summarize", b"[" * 100_000),
        "invalid UTF-8": lambda i: _post("/api/summarize", b'{"body": "caf\xe9 crash"}'),
        "5,000-digit number": lambda i: _post("/api/summarize", b'{"body": "x", "num_beams": 1' + b"0" * 5000
                                              + b"}"),
        "nothing to summarize": lambda i: _post("/api/summarize", nothing),
        "over the budget": lambda i: _post("/api/summarize", json.dumps(
            {"issues": [{"body": bodies[0]}] * 64, "num_beams": 16, "candidates": True})),
        "over the size limit": lambda i: _post("/api/summarize", json.dumps({"body": "word " * 300_000})),
        "feedback spam": lambda i: _post("/api/feedback", json.dumps(
            {"body": bodies[0], "suggested": "A title", "verdict": "good", "model_version": "soak"})),
        "invented method": lambda i: lambda session, url: session.request(f"SOAK{i % 1000}", f"{url}/",
                                                                           timeout=60),
    }


def seldon_requests(bodies: list[str]) -> dict[str, Callable[[int], Send]]:
    predictions = "/api/v1.0/predictions"
    return {
        "valid": lambda i: _post(predictions, json.dumps({"data": {"ndarray": [[bodies[i % len(bodies)]]]}})),
        "nested JSON": lambda i: _post(predictions, b'{"data": ' + b"[" * 100_000),
        "lone surrogate": lambda i: _post(predictions, '{"strData": "a crash \\ud800"}'),
        "invalid UTF-8": lambda i: _post(predictions, b'{"strData": "caf\xe9 crash"}'),
        "nothing to summarize": lambda i: _post(predictions, json.dumps({"strData": "```\n```"})),
        "over the batch limit": lambda i: _post(predictions, json.dumps({"data": {"ndarray": [["a"]] * 65}})),
        "wrong type": lambda i: _post(predictions, json.dumps({"strData": 42})),
    }


@dataclass
class Tally:
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    valid_seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # 5xx other than a proper 503, or no answer
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, answer: requests.Response | None, seconds: float, problem: str = "") -> None:
        status = str(answer.status_code) if answer is not None else "no answer"
        proper_busy = answer is not None and answer.status_code == 503 and "Retry-After" in answer.headers
        with self.lock:
            self.statuses[(kind, status)] += 1
            if answer is not None and answer.status_code == 200 and kind == "valid":
                self.valid_seconds.append(seconds)
            if answer is None or (answer.status_code >= 500 and not proper_busy):
                self.failures.append(f"{kind}: {status} {problem or (answer.text[:200] if answer else '')}")


def soak(url: str, kinds: dict[str, Callable[[int], Send]], clients: int, seconds: float) -> Tally:
    """`clients` threads, each sending the kinds in turn (valid every other request)."""
    tally, deadline = Tally(), time.monotonic() + seconds
    names = [name for other in kinds if other != "valid" for name in ("valid", other)]

    def client(number: int) -> None:
        with requests.Session() as session:
            for i in itertools.count(number * 7):
                if time.monotonic() > deadline:
                    return
                kind = names[i % len(names)]
                started = time.perf_counter()
                try:
                    answer: requests.Response | None = kinds[kind](i)(session, url)
                    problem = ""
                except requests.RequestException as error:
                    answer, problem = None, f"{type(error).__name__}: {error}"
                tally.add(kind, answer, time.perf_counter() - started, problem)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


def report_soak(name: str, tally: Tally, seconds: float) -> None:
    times = np.array(tally.valid_seconds) * 1e3
    total = sum(tally.statuses.values())
    print(f"\n{name}: {total:,} requests in {seconds:.0f} s ({total / seconds:.1f}/s); valid titles "
          f"p50 {np.percentile(times, 50):.0f} ms, p99 {np.percentile(times, 99):.0f} ms")
    for (kind, status), count in sorted(tally.statuses.items()):
        print(f"    {kind:<22} {status:>9}  {count:>6,}")
    for failure in sorted(set(tally.failures))[:10]:
        print(f"    FAILURE {failure}")


def memory(pids: list[int]) -> tuple[float, float]:
    """Resident and peak resident MiB of these processes, summed."""
    resident = peak = 0.0
    for pid in pids:
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        except OSError:
            continue
        resident += int(fields["VmRSS"].split()[0]) / 1024
        peak += int(fields["VmHWM"].split()[0]) / 1024
    return resident, peak


def group(pid: int) -> list[int]:
    """Every process of the process group `pid` leads."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if os.getpgid(int(entry.name)) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


@contextmanager
def health_probe(url: str) -> Iterator[list[float]]:
    """/healthz latencies (seconds), probed every 0.1 s while the block runs."""
    seen: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with requests.Session() as session:
            while not done.is_set():
                started = time.perf_counter()
                session.get(f"{url}/healthz", timeout=60)
                seen.append(time.perf_counter() - started)
                done.wait(0.1)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()


def burst(url: str, payload: dict, count: int = 4) -> list[tuple[int, float, str]]:
    """`count` copies of `payload` sent at once: (status, seconds, Retry-After) of each."""
    answers: list[tuple[int, float, str]] = []
    gate = threading.Barrier(count)

    def send() -> None:
        gate.wait()
        started = time.perf_counter()
        answer = requests.post(f"{url}/api/summarize", json=payload, timeout=120)
        wait = answer.headers.get("Retry-After", "")
        answers.append((answer.status_code, time.perf_counter() - started, wait))

    threads = [threading.Thread(target=send) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(answers)


def web(bodies: list[str], clients: int, seconds: float) -> list[str]:
    sys.path[:0] = [str(REPO / "tests")]
    from webapp_process import running_app

    failures: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        settings = {"SUMMARIZER_MODEL": str(BUNDLE), "FEEDBACK_DB": str(Path(folder) / "feedback.sqlite3"),
                    "NO_PROXY": "127.0.0.1"}
        with running_app(settings) as app:
            pids = group(app.pid)
            with health_probe(app.url) as idle:
                time.sleep(2)
            rest = memory(pids)
            print(f"web app (python -m webapp, 4 threads, MAX_IN_FLIGHT 2), {len(bodies)} real issues")
            print(f"baseline, idle: /healthz p50 {np.median(idle) * 1e3:.1f} ms, "
                  f"max {max(idle) * 1e3:.1f} ms; memory {rest[0]:.0f} MiB")
            for name, payload in (
                    ("64 issues, num_beams 16, candidates", {"issues": [{"body": b} for b in bodies[:64]],
                                                             "num_beams": 16, "candidates": True}),
                    ("13 issues at the page's setting", {"issues": [{"body": b} for b in bodies[:13]]})):
                with health_probe(app.url) as busy:
                    answers = burst(app.url, payload)
                described = ", ".join(f"{status} in {spent:.2f} s"
                                      + (f" (Retry-After {wait})" if wait else "")
                                      for status, spent, wait in answers)
                print(f"burst, 4 x {name}: {described}; /healthz meanwhile max {max(busy) * 1e3:.0f} ms "
                      f"over {len(busy)} probes; peak memory {memory(pids)[1]:.0f} MiB")
            tally = soak(app.url, web_requests(bodies), clients, seconds)
            report_soak(f"web app soak, {clients} clients", tally, seconds)
            end = memory(pids)
            print(f"    memory: {rest[0]:.0f} MiB at start, {end[0]:.0f} MiB at the end, "
                  f"peak {end[1]:.0f} MiB")
            metrics = requests.get(f"{app.url}/metrics", timeout=10).text
            print(f"    /metrics: {len(metrics):,} bytes after the soak (invented methods are one label)")
            failures += tally.failures
    return failures


def seldon(bodies: list[str], clients: int, seconds: float) -> list[str]:
    sys.path[:0] = [str(REPO / "serving")]
    from microservice import serve

    with serve(BUNDLE, env={"MAX_IN_FLIGHT": "2"}, threads=4) as service:
        pids = group(service.pid)
        start = memory(pids)
        print(f"\nSeldon microservice (1 worker, 4 threads, MAX_IN_FLIGHT 2): memory {start[0]:.0f} MiB idle")
        tally = soak(service.url, seldon_requests(bodies), clients, seconds)
        report_soak(f"Seldon soak, {clients} clients", tally, seconds)
        end = memory(pids)
        print(f"    memory: {start[0]:.0f} MiB at start, {end[0]:.0f} MiB at the end, peak {end[1]:.0f} MiB")
    return tally.failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--skip-seldon", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    bodies = real_bodies(200)
    failures = web(bodies, args.clients, args.seconds)
    if not args.skip_seldon:
        failures += seldon(bodies, args.clients, args.seconds)
    if failures:
        sys.exit(f"{len(failures)} requests failed (5xx without Retry-After, or no answer)")


if __name__ == "__main__":
    main()
