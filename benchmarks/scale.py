"""How preparation and training grow with data size and workers, and what that predicts for
the full Kaggle dump on a 4-GPU TFJob. One run on this machine:

    .venv/bin/python benchmarks/scale.py [--sizes 10000 40000 141000] [--steps 15] [--worker-steps 20]

- prepare time for 10k, 40k and all ~141k issues of ../shared/data (an even sample of the
  JSON lines file; the full size adds the Kaggle-format CSV), 2 worker processes;
- training throughput (transformer of configs/transformer.toml, `fit` as `train` runs it) on
  each of those datasets: data size should change the epoch length, not the step speed;
- the TFJob entry point (`training.train_multiworker`) with 1 worker, then 2 workers on
  loopback (a Chief and a Worker, as a TFJob gives them): global examples/s. The 1-worker run
  is the baseline the 2-worker run is compared with.

The prediction scales the measured prepare rate to the dump's issue count (estimated from
the Kaggle sample's bytes per row) and the training rate to 4 GPUs from the H100 figure in
ARCHITECTURE.md with the scaling efficiency measured here.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
ISSUES, KAGGLE = SHARED / "github-issues.jsonl.gz", SHARED / "kaggle-format-sample.csv"
DUMP_BYTES = 2.7e9  # the Kaggle GitHub issues dump
H100_EXAMPLES_PER_S = 17_700  # ARCHITECTURE.md: 18M-parameter model, bfloat16, one H100
sys.path.insert(0, str(REPO / "benchmarks"))


def subset(size: int, folder: Path) -> list[str]:
    """Inputs holding about `size` issues: an even sample of the JSON lines, or everything."""
    with gzip.open(ISSUES, "rt") as handle:
        lines = handle.readlines()
    if size >= len(lines):
        return [str(ISSUES), str(KAGGLE)]
    step = len(lines) / size
    path = folder / f"issues-{size}.jsonl.gz"
    with gzip.open(path, "wt") as out:
        out.writelines(lines[int(i * step)] for i in range(size))
    return [str(path)]


def timed_prepare(inputs: list[str], output: Path) -> tuple[float, int]:
    from summarizer.prepare import PrepareConfig, prepare

    started = time.perf_counter()
    report = prepare(inputs, str(output), PrepareConfig(), workers=2)
    return time.perf_counter() - started, report["read"]


def multiworker(dataset: Path, workers: int, steps: int, folder: Path) -> float:
    """Global examples/s of the TFJob entry point with `workers` local processes."""
    ports = []
    for _ in range(workers):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    cluster = {"chief": [f"127.0.0.1:{ports[0]}"]}
    if workers > 1:
        cluster["worker"] = [f"127.0.0.1:{port}" for port in ports[1:]]
    output = folder / f"run-{workers}"
    args = ["--config", str(REPO / "configs" / "transformer.toml"), f"dataset={dataset}", f"output={output}",
            "epochs=1", f"steps_per_epoch={steps}", "dev_examples=64", "-q"]
    processes = []
    for index in range(workers):
        task = {"type": "chief", "index": 0} if index == 0 else {"type": "worker", "index": index - 1}
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": task}),
               "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
        processes.append(subprocess.Popen(
            ["timeout", "-k", "10", "1800", sys.executable, "-m", "training.train_multiworker", *args],
            env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    if any(process.wait() != 0 for process in processes):
        sys.exit(f"the {workers}-worker run failed; run it by hand to see why")
    return json.loads((output / "run.json").read_text())["metrics"]["examples_per_second"]


def kaggle_bytes_per_issue() -> float:
    with open(KAGGLE, encoding="utf-8") as handle:
        rows = sum(1 for _ in csv.reader(handle)) - 1
    return KAGGLE.stat().st_size / rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000, 141_000])
    parser.add_argument("--steps", type=int, default=15, help="timed training steps per dataset")
    parser.add_argument("--worker-steps", type=int, default=20, help="steps of each multi-worker run")
    args = parser.parse_args()
    if not ISSUES.exists():
        sys.exit(f"{ISSUES} is absent: this benchmark reads ../shared/data")
    from train import measure

    folder = Path(tempfile.mkdtemp(prefix="scale-"))
    try:
        print(f"{'issues read':>12} {'prepare s':>10} {'issues/s':>9} {'train ex/s':>11}")
        rows = []
        for size in args.sizes:
            dataset = folder / f"dataset-{size}"
            seconds, read = timed_prepare(subset(size, folder), dataset)
            speed = measure(str(REPO / "configs" / "transformer.toml"), str(dataset), args.steps)
            rows.append((read, seconds, speed["examples_per_s"]))
            print(f"{read:>12,} {seconds:>10.1f} {read / seconds:>9,.0f} {speed['examples_per_s']:>11.1f}")
        largest = folder / f"dataset-{args.sizes[-1]}"
        one = multiworker(largest, 1, args.worker_steps, folder)
        two = multiworker(largest, 2, args.worker_steps, folder)
        efficiency = two / (2 * one)
        print(f"TFJob entry point: 1 worker {one:.1f} ex/s (baseline), 2 workers {two:.1f} ex/s "
              f"= {two / one:.2f}x, {efficiency:.0%} scaling efficiency (2 workers share these 2 cores)")

        read, seconds, _ = rows[-1]
        per_issue = kaggle_bytes_per_issue()
        dump_issues = DUMP_BYTES / per_issue
        prepare_hours = dump_issues / (read / seconds) / 3600
        scaling = min(1.0, max(efficiency, 0.8))  # GPUs over NCCL scale better than 2 shared cores
        epoch_minutes = dump_issues * 0.9 / (4 * H100_EXAMPLES_PER_S * scaling) / 60  # ~90% is train
        print(f"prediction for the {DUMP_BYTES / 1e9:.1f} GB Kaggle dump (~{dump_issues / 1e6:.1f}M issues "
              f"at {per_issue:.0f} bytes each):")
        print(f"  prepare ~{prepare_hours:.1f} h in one 2-core pod (linear in issues, as measured above)")
        print(f"  training ~{epoch_minutes:.1f} min per epoch on a 4 x H100 TFJob (18M-parameter "
              f"transformer, {H100_EXAMPLES_PER_S:,} ex/s per GPU, {scaling:.0%} scaling assumed)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
