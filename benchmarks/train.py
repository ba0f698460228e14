"""Training throughput of both models on this machine, in one run, on real batches.

    .venv/bin/python benchmarks/train.py [--dataset data/shared] [--steps 20]
    KERAS_BACKEND=jax python benchmarks/train.py ...     # e.g. on a lent GPU machine

Each model is built from its config (configs/gru.toml, configs/transformer.toml and the shipped
configs/transformer-copy.toml, the transformer with its copy head) and
trained through the same `fit` path `issue-summarizer train` uses, on the train split's own
length-bucketed batches: a few warm-up steps (compilation), then `--steps` timed steps. The
baseline is the `gru` reference; the transformer's speed is printed relative to it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from summarizer.dataset import open_dataset
from summarizer.models import build_model
from summarizer.train import accelerator, compile_model, fit_data, load_batches
from summarizer.train_config import load_config

WARMUP = 3


def measure(config_file: str, dataset_path: str, steps: int) -> dict:
    config = load_config(config_file, [f"dataset={dataset_path}", "init_from="])  # speed needs no start
    dataset = open_dataset(dataset_path)
    train, _ = load_batches(dataset, config)
    model = build_model(config.model, dataset.manifest["vocab_size"])
    compile_model(model, config, steps + WARMUP)
    batches = list(train.epoch(0))[: WARMUP + steps]
    model.fit(fit_data(iter(batches[:WARMUP])), steps_per_epoch=WARMUP, verbose=0, shuffle=False)
    timed = batches[WARMUP:]
    started = time.perf_counter()
    model.fit(fit_data(iter(timed)), steps_per_epoch=len(timed), verbose=0, shuffle=False)
    seconds = time.perf_counter() - started
    examples = sum(len(targets) for _, targets in timed)
    tokens = sum(int((targets != 0).sum()) for _, targets in timed)
    return {"model": Path(config_file).stem, "parameters": model.count_params(), "batch": config.batch_size,
            "examples_per_s": examples / seconds, "target_tokens_per_s": tokens / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="data/shared", help="a prepared dataset (see README)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
    args = parser.parse_args()
    import keras

    print(f"backend {keras.backend.backend()}, device {accelerator()}, {args.steps} timed steps each")
    results = [measure(f"configs/{name}.toml", args.dataset, args.steps)
               for name in ("gru", "transformer", "transformer-copy")]
    baseline = results[0]["examples_per_s"]
    print(f"{'model':<17} {'parameters':>11} {'batch':>6} {'examples/s':>11} {'target tokens/s':>16} "
          f"{'vs gru':>7}")
    for r in results:
        print(f"{r['model']:<17} {r['parameters']:>11,} {r['batch']:>6} {r['examples_per_s']:>11.1f} "
              f"{r['target_tokens_per_s']:>16.0f} {r['examples_per_s'] / baseline:>6.2f}x")


if __name__ == "__main__":
    main()
