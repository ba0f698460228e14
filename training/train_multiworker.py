"""The TFJob entry point: `python -m training.train_multiworker --config FILE KEY=VALUE...`.

With TF_CONFIG set (a TFJob sets it in every pod), trains as that cluster member with
MultiWorkerMirroredStrategy (see training/distributed.py); without it, runs the single-machine
`summarizer.train.train`. Every pod runs the same command; only TF_CONFIG differs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from summarizer.errors import UserError
from training.cluster import parse_tf_config

PROG = "train_multiworker"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Train a title model across the workers TF_CONFIG names "
                               "(on this machine alone without TF_CONFIG).")
    parser.add_argument("--config", help="TOML file (see configs/); defaults apply without one")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return parser


def _run(args: argparse.Namespace) -> None:
    text = os.environ.get("TF_CONFIG", "").strip()
    cluster = parse_tf_config(text) if text else None  # checked before the slow imports
    from summarizer.train_config import load_config

    config = load_config(args.config, args.overrides)
    if cluster is None:
        from summarizer.train import train

        run = train(config)
    else:
        from training.distributed import train_multiworker

        run = train_multiworker(config, cluster)
    if run is not None:
        print(json.dumps(run["metrics"], indent=2))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    try:
        _run(args)
    except UserError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (a multi-worker run starts over when rerun; a single-machine "
              "one continues from its checkpoint)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
