"""Serving speed of the shipped model, in one run on this machine, against the way the
original example decoded (the baseline):

    .venv/bin/python benchmarks/serve.py [--model models/default] [--issues 200] [--baseline-issues 30]

- engine latency, batch 1 on 1 thread: p50/p95 over `--issues` real issues, greedy and beam 4,
  greedy without weighing each body's lead sentence, beam 4 with consensus, and beam 4 with
  consensus over 32 sampled titles too (the web page);
- engine throughput, batches of 64 on 2 threads (issues/s), and the same without weighing
  each body's lead sentence (what that costs);
- the baseline: the same model's Keras halves, one `predict` for the encoder and one more for
  every generated token, greedy, batch 1 (over `--baseline-issues`, as it is slow);
- end-to-end HTTP latency through the real Seldon microservice, batch 1, greedy.

Issues are real bodies from ../shared/data/github-issues.jsonl.gz, an even spread of them.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from summarizer.cleaning import clean_body, has_words  # noqa: E402

ISSUES = REPO.parent / "shared" / "data" / "github-issues.jsonl.gz"
TARGETS = {"greedy_p50_ms": 15, "beam4_p50_ms": 40, "speedup": 30, "throughput": 200}


def real_bodies(count: int) -> list[str]:
    if not ISSUES.exists():
        sys.exit(f"{ISSUES} is absent: this benchmark reads real issues from ../shared/data")
    with gzip.open(ISSUES, "rt") as lines:
        bodies = [json.loads(line).get("body") or "" for line in itertools.islice(lines, 0, None, 97)]
    return [body for body in bodies if has_words(clean_body(body))][:count]  # the engine refuses the rest


def latencies(*calls: Callable[[str], object], bodies: list[str]) -> list[np.ndarray]:
    """Seconds per body for each call, after one untimed warm-up call each. The calls take
    turns on each body, so this noisy machine's slow phases weigh on all of them alike."""
    for call in calls:
        call(bodies[0])
    times: list[list[float]] = [[] for _ in calls]
    for body in bodies:
        for call, spent in zip(calls, times, strict=True):
            started = time.perf_counter()
            call(body)
            spent.append(time.perf_counter() - started)
    return [np.array(spent) for spent in times]


def percentiles(times: np.ndarray) -> str:
    return f"p50 {np.percentile(times, 50) * 1e3:7.1f} ms   p95 {np.percentile(times, 95) * 1e3:7.1f} ms"


def original_style(model_folder: Path, max_length: int) -> Callable[[str], str]:
    """Greedy decoding as the original example did it: `predict` on the encoder, then one
    `predict` per generated token (the Transformer's Keras step model reruns the prefix)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from summarizer.engine import Summarizer
    from summarizer.models import copy_head, inference_models
    from summarizer.titles import KerasTitler

    engine = Summarizer.load(model_folder, threads=1)  # only for its identical tokenization
    model = KerasTitler.load(str(model_folder)).model  # the bundle's Keras weights
    encoder, decoder = inference_models(model)
    start, end = engine._special["start"], engine._special["end"]

    def title(body: str) -> str:
        ids = engine.body_ids(engine.cleaned([body]))
        ids = ids[:, : max(int((ids != 0).sum()), 1)].astype("int32")
        memory, mask = encoder.predict(ids, verbose=0)
        copied = [ids] if copy_head(model) is not None else []  # its decoder reads the body's ids
        tokens = [start]
        for _ in range(max_length):
            logits = decoder.predict([np.array([tokens], dtype="int32"), memory, mask, *copied], verbose=0)
            token = int(logits[0].argmax())
            if token == end:
                break
            tokens.append(token)
        return engine._tokenizer.decode(tokens[1:])

    return title


def http_latency(model_folder: Path, bodies: list[str]) -> np.ndarray:
    import requests

    sys.path.insert(0, str(REPO / "serving"))
    from microservice import serve

    with serve(str(model_folder)) as service, requests.Session() as session:
        def call(body: str) -> None:
            answer = session.post(f"{service.url}/api/v1.0/predictions",
                                  json={"data": {"ndarray": [[body]]}}, timeout=30)
            answer.raise_for_status()

        return latencies(call, bodies=bodies)[0]


def verdict(name: str, value: float) -> str:
    limit, at_most = TARGETS[name], name.endswith("_ms")
    met = value <= limit if at_most else value >= limit
    return f"{name} {value:.1f} ({'<=' if at_most else '>='} {limit}: {'met' if met else 'MISSED'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "default")
    parser.add_argument("--issues", type=int, default=200)
    parser.add_argument("--baseline-issues", type=int, default=30)
    parser.add_argument("--no-http", action="store_true", help="skip the Seldon microservice")
    args = parser.parse_args()
    from summarizer.decoding import DEFAULT_LEAD_BONUS
    from summarizer.engine import Summarizer

    bodies = real_bodies(max(args.issues, 640))
    timed = bodies[: args.issues]
    print(f"model {args.model}, {len(timed)} real issues, {os.cpu_count()} CPUs")
    one = Summarizer.load(args.model, threads=1)
    greedy, greedy_alone, beam, agreed, sampled = latencies(
        lambda body: one.summarize([body]), lambda body: one.summarize([body], lead_bonus=None),
        lambda body: one.summarize([body], num_beams=4),
        lambda body: one.summarize([body], num_beams=4, consensus=True),
        lambda body: one.summarize([body], num_beams=4, consensus=True, samples=32), bodies=timed)
    print(f"engine, batch 1, 1 thread, greedy   {percentiles(greedy)}")
    print(f"  greedy without lead sentences     {percentiles(greedy_alone)} (LEAD_BONUS=off)")
    print(f"engine, batch 1, 1 thread, beam 4   {percentiles(beam)}")
    print(f"  beam 4 with consensus             {percentiles(agreed)}")
    print(f"  ... and 32 samples (web page)     {percentiles(sampled)}")

    two = Summarizer.load(args.model, threads=2)
    two.summarize(bodies[:64])

    spent = {DEFAULT_LEAD_BONUS: 0.0, None: 0.0}
    for begin in range(0, 640, 64):  # the two settings take turns, batch by batch
        for lead_bonus in spent:
            started = time.perf_counter()
            two.summarize(bodies[begin:begin + 64], lead_bonus=lead_bonus)
            spent[lead_bonus] += time.perf_counter() - started
    throughput = 640 / spent[DEFAULT_LEAD_BONUS]
    print(f"engine, batches of 64, 2 threads     {throughput:7.1f} issues/s")
    print(f"  the same without lead sentences    {640 / spent[None]:7.1f} issues/s (LEAD_BONUS=off)")

    original = original_style(args.model, one.title_tokens - 2)
    baseline = latencies(original, bodies=timed[: args.baseline_issues])[0]
    speedup = np.percentile(baseline, 50) / np.percentile(greedy[: args.baseline_issues], 50)
    print(f"original-style Keras predict, greedy {percentiles(baseline)}   "
          f"(engine is {speedup:.0f}x faster at p50 on the same issues)")

    if not args.no_http:
        http = http_latency(args.model, timed)
        print(f"Seldon microservice HTTP, greedy     {percentiles(http)}")

    results = {"greedy_p50_ms": np.percentile(greedy, 50) * 1e3,
               "beam4_p50_ms": np.percentile(beam, 50) * 1e3, "speedup": speedup, "throughput": throughput}
    print("targets: " + "; ".join(verdict(name, value) for name, value in results.items()))

if __name__ == "__main__":
    main()
