"""Load on the real Seldon microservice: many concurrent clients, each posting one real issue
at a time, for a fixed time.

    .venv/bin/python benchmarks/load.py [--clients 50] [--seconds 60] [--workers 2]

Reports errors, request latency p50/p99, throughput, and the server's peak memory (VmHWM
summed over its processes). The baseline it names is the same service answering one client
(no concurrency), measured first in the same run: what concurrency costs in latency and buys
in throughput.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "serving"))
sys.path.insert(0, str(REPO / "benchmarks"))

from microservice import serve  # noqa: E402
from serve import real_bodies  # noqa: E402


def hammer(url: str, bodies: list[str], clients: int, seconds: float) -> tuple[list[float], list[str]]:
    """Latencies of the successful requests and a description of every failed one."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        with requests.Session() as session:
            index = number
            while time.monotonic() < deadline:
                body = bodies[index % len(bodies)]
                index += clients
                started = time.perf_counter()
                try:
                    answer = session.post(url, json={"data": {"ndarray": [[body]]}}, timeout=60)
                    ok = answer.status_code == 200 and bool(answer.json()["data"]["ndarray"][0][0])
                    problem = "" if ok else f"HTTP {answer.status_code}: {answer.text[:200]}"
                except (requests.RequestException, ValueError, KeyError, IndexError) as error:
                    problem = f"{type(error).__name__}: {error}"
                elapsed = time.perf_counter() - started
                with lock:
                    (errors.append(problem) if problem else latencies.append(elapsed))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def report(name: str, latencies: list[float], errors: list[str], seconds: float) -> None:
    times = np.array(latencies) * 1e3
    print(f"{name:<24} {len(latencies):>7,} ok {len(errors):>5} errors   "
          f"p50 {np.percentile(times, 50):7.1f} ms   p99 {np.percentile(times, 99):7.1f} ms   "
          f"{len(latencies) / seconds:7.1f} requests/s")
    for problem in sorted(set(errors))[:5]:
        print(f"    error: {problem}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "models" / "default"))
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (GUNICORN_WORKERS)")
    args = parser.parse_args()
    bodies = real_bodies(1000)
    with serve(args.model, env={"ENGINE_THREADS": "1"}, workers=args.workers) as service:
        url = f"{service.url}/api/v1.0/predictions"
        print(f"Seldon microservice, {args.workers} workers x 1 engine thread, {len(bodies)} real issues")
        single = min(10.0, args.seconds)
        report("1 client (baseline)", *hammer(url, bodies, 1, single), single)
        latencies, errors = hammer(url, bodies, args.clients, args.seconds)
        report(f"{args.clients} clients", latencies, errors, args.seconds)
        print(f"server peak memory {service.peak_memory_bytes() / 2**20:,.0f} MiB")
        if errors:
            sys.exit(1)


if __name__ == "__main__":
    main()
