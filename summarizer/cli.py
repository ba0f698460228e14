"""The `issue-summarizer` command: one subcommand per pipeline stage."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from summarizer import __version__
from summarizer.decoding import SERVING_DECODING, DecodeConfig
from summarizer.errors import NothingToSummarize, UserError
from summarizer.prepare import PrepareConfig
from summarizer.readers import FORMATS
from summarizer.splitting import SPLITS, SplitConfig

if TYPE_CHECKING:  # the engine loads ONNX Runtime: only `summarize` needs it
    from summarizer.engine import Summarizer, Title
    from summarizer.inputs import Body

log = logging.getLogger("summarizer")
EVALUATION_DECODING = DecodeConfig()  # every search option off: the model as trained


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def _at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than `minimum`, described as `what`."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    return parse


_positive = _at_least(1, "a positive whole number")


def _non_negative(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number, 0 or more")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in [0, 1)")
    return value


def _add_ingest(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "ingest",
        parents=[common], formatter_class=_Help,
        help="read GitHub issues from files, gs:// or a live repository into issue records",
        description=(
            "Read issues from any mix of sources and write them as JSON-lines issue records "
            "(url, repo, title, body, labels, created_at). A SOURCE is a file, folder, glob or "
            "gs://bucket/prefix holding Kaggle/BigQuery CSV dumps, GitHub REST API JSON (an "
            "object, an array, JSON lines, concatenated pages, backup wrappers) or GH Archive "
            "hourly files (.json.gz); or github:OWNER/REPO to crawl a live repository through "
            "the GitHub REST API (token from GITHUB_TOKEN; interrupted crawls resume). Bad "
            "records are skipped and counted; pull requests are dropped."
        ),
        epilog="example: issue-summarizer ingest issues.csv github:octo-org/widgets -o issues.jsonl.gz",
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE")
    parser.add_argument("-o", "--output", required=True,
                        help="records file, local or gs:// (.jsonl, or .jsonl.gz to compress)")
    parser.add_argument("--format", choices=FORMATS, default="auto",
                        help="file format (default: from the file name)")
    parser.add_argument("--since", help="with github:, only issues updated since this ISO 8601 time")
    parser.add_argument("--github-api-url", help="GitHub API base URL (default: GITHUB_API_URL "
                        "or https://api.github.com; set it for GitHub Enterprise)")


def _add_prepare(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    defaults, split = PrepareConfig(), SplitConfig()
    parser = commands.add_parser(
        "prepare",
        parents=[common], formatter_class=_Help,
        help="clean, de-duplicate, split, tokenize and featurize issue records",
        description=(
            "Turn issue records into a training dataset: cleaned text, a repository-held-out "
            "train/dev/test split, a byte-level BPE tokenizer (tokenizer.json) and sharded "
            "fixed-length int32 arrays (.npy). Writes report.json (drops by reason, split "
            "sizes, truncation) and dataset.json (settings, sha256 of every file) last."
        ),
        epilog="example: issue-summarizer prepare issues.jsonl.gz -o data/dataset",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="records files from ingest (any format ingest reads works too)")
    parser.add_argument("-o", "--output", required=True, help="dataset folder, local or gs://")
    parser.add_argument("--vocab-size", type=_positive, default=defaults.vocab_size,
                        help="BPE vocabulary size, special tokens included")
    parser.add_argument("--body-len", type=_positive, default=defaults.body_len, help="body tokens kept")
    parser.add_argument("--title-len", type=_at_least(2, "at least 2 (room for the start and end tokens)"),
                        default=defaults.title_len,
                        help="title tokens, including start and end (at least 2)")
    parser.add_argument("--shards", type=_positive, default=defaults.shards,
                        help="shards per split (at least the number of training workers)")
    parser.add_argument("--min-body-words", type=_positive, default=defaults.min_body_words,
                        help="drop issues whose cleaned body has fewer words")
    parser.add_argument("--tokenizer-sample", type=_positive, default=defaults.tokenizer_sample,
                        help="train issues the tokenizer learns from (an even spread)")
    parser.add_argument("--dev-fraction", type=_fraction, default=split.dev_fraction,
                        help="share of all rows held out for dev")
    parser.add_argument("--test-fraction", type=_fraction, default=split.test_fraction,
                        help="share of all rows held out for test")
    parser.add_argument("--max-heldout-share", type=_fraction, default=split.max_heldout_share,
                        help="repositories with more than this share of rows stay in train")
    parser.add_argument("--split-seed", default=split.seed,
                        help="changes which repositories are held out")
    parser.add_argument("--pretraining", action="store_true",
                        help="also write the pretrain split: gap sentences and masked spans from the "
                             "train repositories' bodies, untitled issues' included")
    parser.add_argument("--kaggle-share", type=_fraction, default=defaults.kaggle_share,
                        help="share of train pairs rewritten as the Kaggle dump writes text "
                             "(lowercase, markdown characters stripped)")
    parser.add_argument("--kaggle-seed", type=int, default=defaults.kaggle_seed,
                        help="changes which train pairs --kaggle-share rewrites")
    parser.add_argument("--workers", type=_positive, help="cleaning processes (default: CPUs)")


def _add_show(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "show", parents=[common], formatter_class=_Help,
        help="summarize a prepared dataset and show a few of its rows",
        description="Print a dataset's report and decode a few rows of its arrays back to text.")
    parser.add_argument("dataset", help="dataset folder, local or gs://")
    parser.add_argument("--split", choices=SPLITS, default="train")
    parser.add_argument("--rows", type=int, default=3, help="rows to decode and print")


def _add_evaluate(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "evaluate", parents=[common], formatter_class=_Help,
        help="score titles on a dataset split against the references and the baselines",
        description=(
            "Compute ROUGE-1/2/L F1 and BLEU, mean title length, a per-source breakdown and "
            "example rows, for the baselines (first sentence of the body cut to 12 words; "
            "first 8 words) on the same issues. Writes OUTPUT.json and OUTPUT.md."
        ),
        epilog="example: issue-summarizer evaluate data/dataset -o reports/test",
    )
    parser.add_argument("dataset", help="dataset folder from prepare (its --split is scored), or "
                        "issues in any format ingest reads, local or gs://")
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument("--examples", type=_positive, default=10, help="rows shown side by side")
    parser.add_argument("--limit", type=_positive, help="score an even spread of this many issues")
    parser.add_argument("-o", "--output", help="report path without extension (default: print only)")
    parser.add_argument("--model", action="append", default=[], metavar="FOLDER",
                        help="a model to score next to the baselines (a training run or an exported "
                             "model folder); repeat for several")
    _add_decoding(parser)


def _lead_bonus(text: str) -> float | None:
    if text == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.inf
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'off'")
    return value


def _add_decoding(parser: argparse.ArgumentParser, defaults: DecodeConfig = EVALUATION_DECODING) -> None:
    group = parser.add_argument_group("decoding")
    group.add_argument("--beams", type=_positive, default=defaults.num_beams, help="beam width (1: greedy)")
    group.add_argument("--max-length", type=_positive, default=defaults.max_length,
                       help="most title tokens generated")
    group.add_argument("--min-length", type=_at_least(0, "a whole number, 0 or more"),
                       default=defaults.min_length, help="fewest title tokens before the end")
    group.add_argument("--length-penalty", type=float, default=defaults.length_penalty,
                       help="beam scores are log-probability / length ** this")
    group.add_argument("--no-repeat-ngram", type=_at_least(0, "a whole number, 0 or more"),
                       default=defaults.no_repeat_ngram,
                       help="no token n-gram of this size twice (0: off)")
    group.add_argument("--repeat-penalty", type=_non_negative,
                       default=defaults.repeat_penalty,
                       help="taken off the log-probability of a token already in the title (0: off)")
    group.add_argument("--end-penalty", type=_non_negative,
                       default=defaults.end_penalty,
                       help="taken off the end token's log-probability: longer titles (0: off)")
    group.add_argument("--lead-bonus", type=_lead_bonus, default=defaults.lead_bonus,
                       help="the body's lead sentence is the title when its mean log-probability per "
                            "token plus this beats the model's title ('off': never)")
    group.add_argument("--consensus", action=argparse.BooleanOptionalAction, default=defaults.consensus,
                       help="the title among the beams, the greedy title, the lead and the --samples "
                            "that agrees most with the others, not the likeliest")
    group.add_argument("--samples", type=_at_least(0, "a whole number, 0 or more"), default=defaults.samples,
                       help="with --consensus: titles sampled from the model for it to weigh (0: none)")


def decode_config(args: argparse.Namespace) -> DecodeConfig:
    try:
        return DecodeConfig(num_beams=args.beams, max_length=args.max_length, min_length=args.min_length,
                            length_penalty=args.length_penalty, no_repeat_ngram=args.no_repeat_ngram,
                            repeat_penalty=args.repeat_penalty, end_penalty=args.end_penalty,
                            lead_bonus=args.lead_bonus, consensus=args.consensus, samples=args.samples)
    except ValueError as error:
        raise UserError(f"decoding settings: {error}") from None


def _add_train(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "train", parents=[common], formatter_class=_Help,
        help="train a title model (gru or transformer) on a prepared dataset; resumable",
        description=(
            "Train the model a TOML config describes, with KEY=VALUE overrides (model settings "
            "as model.KEY=VALUE). Rerunning the same command continues an interrupted run from "
            "its last checkpoint. The run folder gets config.json, run.json (data fingerprint, "
            "versions, hardware, metrics), metrics.jsonl, checkpoint/, model.keras and logs/."
        ),
        epilog="example: issue-summarizer train --config configs/transformer.toml "
               "dataset=data/dataset output=runs/transformer epochs=3",
    )
    parser.add_argument("--config", help="TOML file (see configs/); defaults apply without one")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")


def _add_export(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "export", parents=[common], formatter_class=_Help,
        help="turn a finished training run into a model bundle with a manifest",
        description=(
            "Write the run's best model into OUTPUT (local or gs://) as a model bundle: the ONNX "
            "graphs serving runs and the Keras weights, every weight stored once in weights.bin, "
            "its tokenizer.json, and manifest.json: architecture, settings, commands, data "
            "fingerprint, scores from an evaluate report, training time, hardware and the sha256 "
            "of every file. Given a bundle instead of a run, re-pack it in this version's format "
            "(its manifest kept, the re-packing recorded)."
        ),
        epilog="example: issue-summarizer export runs/transformer -o models/default "
               "--report reports/test.json",
    )
    parser.add_argument("run", help="training run folder (from issue-summarizer train), or a bundle "
                                    "folder to re-pack")
    parser.add_argument("-o", "--output", required=True, help="bundle folder to write")
    parser.add_argument("--report", help="evaluate's JSON report that scored this run (--model RUN)")


def _add_summarize(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "summarize", parents=[common], formatter_class=_Help,
        help="print a title for each issue body (ONNX engine; no TensorFlow)",
        description=(
            "Titles from a model bundle for issue bodies given as arguments, as files (one body "
            "per file), as JSON lines ({\"body\": ...} per line) or on stdin (one body; used when "
            "nothing else is given). Prints one title per body, in order, or JSON lines with "
            "--json."
        ),
        epilog="examples: issue-summarizer summarize \"The app crashes when I click save\"; "
               "issue-summarizer summarize --jsonl issues.jsonl --beams 4 --json",
    )
    parser.add_argument("bodies", nargs="*", metavar="BODY", help="issue body text")
    parser.add_argument("--file", action="append", default=[], metavar="PATH",
                        help="a file holding one body ('-': stdin); repeatable")
    parser.add_argument("--jsonl", action="append", default=[], metavar="PATH",
                        help="JSON lines, one {\"body\": ...} object per line ('-': stdin); repeatable")
    parser.add_argument("--model", help="model bundle folder or gs:// prefix (default: "
                                        "$SUMMARIZER_MODEL, else the shipped models/default)")
    parser.add_argument("--threads", type=_positive, help="ONNX Runtime threads (default: all cores)")
    parser.add_argument("--candidates", type=_positive, default=1,
                        help="titles per body (at most --beams); shown with --json")
    parser.add_argument("--json", action="store_true",
                        help="print {\"title\", \"score\", \"candidates\"} JSON per body")
    _add_decoding(parser, SERVING_DECODING)


def _add_feedback(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "feedback", parents=[common], formatter_class=_Help,
        help="work with the feedback people gave in the web app",
        description="The web app stores verdicts on its titles and people's corrections in SQLite.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export", parents=[common], formatter_class=_Help,
        help="write the feedback as issue records (training data)",
        description=(
            "Write every feedback entry that names a title (a correction, or a suggestion judged "
            "good) as an issue record in the format ingest writes, so prepare can train on it. "
            "Entries judged bad without a correction are counted and left out."
        ),
        epilog="example: issue-summarizer feedback export -o feedback.jsonl.gz && "
               "issue-summarizer prepare issues.jsonl.gz feedback.jsonl.gz -o dataset",
    )
    export.add_argument("-o", "--output", required=True,
                        help="records file, local or gs:// (.jsonl, or .jsonl.gz to compress)")
    export.add_argument("--db", help="the web app's SQLite file (default: $FEEDBACK_DB, else "
                                     "feedback.sqlite3 in ~/.local/share/issue-summarizer)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="issue-summarizer",
        description="Write short, accurate titles for GitHub issues: data pipeline, training, "
                    "evaluation, export and summarize commands.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    _add_ingest(commands, common)
    _add_prepare(commands, common)
    _add_show(commands, common)
    _add_evaluate(commands, common)
    _add_train(commands, common)
    _add_export(commands, common)
    _add_summarize(commands, common)
    _add_feedback(commands, common)
    commands.add_parser(
        "bigquery-sql", parents=[common],
        help="print the BigQuery SQL that extracts opened issues from GH Archive",
        description="Print the SQL; its CSV export is a SOURCE for ingest.")
    return parser


def _run_ingest(args: argparse.Namespace) -> None:
    from summarizer.ingest import ingest

    report = ingest(args.sources, args.output, fmt=args.format, since=args.since,
                    api_url=args.github_api_url)
    print(json.dumps(report, indent=2))


def _run_prepare(args: argparse.Namespace) -> None:
    from summarizer.prepare import prepare

    config = PrepareConfig(
        vocab_size=args.vocab_size, body_len=args.body_len, title_len=args.title_len,
        shards=args.shards, min_body_words=args.min_body_words,
        tokenizer_sample=args.tokenizer_sample,
        split=SplitConfig(dev_fraction=args.dev_fraction, test_fraction=args.test_fraction,
                          max_heldout_share=args.max_heldout_share, seed=args.split_seed),
        pretraining=args.pretraining, kaggle_share=args.kaggle_share, kaggle_seed=args.kaggle_seed,
    )
    report = prepare(args.inputs, args.output, config, workers=args.workers)
    print(json.dumps(report, indent=2))


def _run_show(args: argparse.Namespace) -> None:
    from summarizer.show import show

    print(show(args.dataset, args.split, args.rows))


def _run_evaluate(args: argparse.Namespace) -> None:
    from summarizer.evaluate import evaluate, markdown, write_report

    decoding = decode_config(args)
    names = [Path(folder.rstrip("/")).name for folder in args.model]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:  # a report keys scores by folder name: one would silently replace the other
        raise UserError(f"several --model folders are named {', '.join(map(repr, repeated))}; "
                        "a report names each model by its folder, so give them distinct names")
    from summarizer.titles import title_predictor

    predictors = {name: title_predictor(folder, decoding)
                  for name, folder in zip(names, args.model, strict=True)}
    report = evaluate(args.dataset, args.split, predictors=predictors, examples=args.examples,
                      limit=args.limit or 0)
    if predictors:
        report["decoding"] = asdict(decoding)
    if args.output:
        write_report(report, args.output)
    print(markdown(report))


def _run_train(args: argparse.Namespace) -> None:
    from summarizer.train import train
    from summarizer.train_config import load_config

    run = train(load_config(args.config, args.overrides))
    print(json.dumps(run["metrics"], indent=2))


def _run_export(args: argparse.Namespace) -> None:
    from summarizer.export import export

    manifest = export(args.run, args.output, args.report)
    print(json.dumps({"output": args.output, "files": manifest["files"]}, indent=2))


def _titles(engine: Summarizer, bodies: list[Body], config: DecodeConfig) -> tuple[dict[int, list[Title]],
                                                                                      dict[int, str]]:
    """Titles for the usable bodies, by index, and the reason each other body has none."""
    problems = {index: body.problem for index, body in enumerate(bodies) if body.problem}
    usable = [index for index in range(len(bodies)) if index not in problems]
    try:
        found = engine.candidates([bodies[i].text for i in usable], **asdict(config)) if usable else []
    except NothingToSummarize as error:  # those bodies get their reason, the others their titles
        problems |= {usable[i]: "nothing to summarize: no words are left once markup, template "
                                "headings and invisible characters are removed" for i in error.indices}
        usable = [index for index in usable if index not in problems]
        found = engine.candidates([bodies[i].text for i in usable], **asdict(config)) if usable else []
    return dict(zip(usable, found, strict=True)), problems


def _run_summarize(args: argparse.Namespace) -> None:
    from summarizer.engine import Summarizer, default_bundle
    from summarizer.inputs import read_bodies

    if args.candidates > args.beams:
        raise UserError(f"--candidates {args.candidates} is more than --beams {args.beams}; "
                        "raise --beams or lower --candidates")
    config = replace(decode_config(args), num_return=args.candidates)
    bodies = read_bodies(args.bodies, args.file, args.jsonl)
    engine = Summarizer.load(args.model or default_bundle(), threads=args.threads)
    titles, problems = _titles(engine, bodies, config)
    for index in range(len(bodies)):  # one line per body, in order, titled or not
        best = titles.get(index)
        if args.json:
            print(json.dumps({"error": problems[index]} if best is None else
                             {"title": best[0].text, "score": round(best[0].score, 4),
                              "candidates": [{"title": c.text, "score": round(c.score, 4)} for c in best]},
                             ensure_ascii=False))
        else:
            print("" if best is None else best[0].text)
    for index, problem in sorted(problems.items()):
        print(f"issue-summarizer: {bodies[index].where}: {problem}", file=sys.stderr)
    if problems:
        raise UserError(f"{len(problems)} of {len(bodies)} bodies got no title (the lines above say why)")


def _run_feedback(args: argparse.Namespace) -> None:
    from webapp.feedback import default_db_path, export

    db = Path(args.db or os.environ.get("FEEDBACK_DB") or default_db_path())
    counts = export(db, args.output)
    print(json.dumps({"output": args.output, **counts}, indent=2))


def _run_bigquery_sql(_: argparse.Namespace) -> None:
    print(resources.files("summarizer").joinpath("sql/gharchive_opened_issues.sql").read_text())


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


RUNNERS = {"ingest": _run_ingest, "prepare": _run_prepare, "show": _run_show,
           "evaluate": _run_evaluate, "train": _run_train, "export": _run_export,
           "summarize": _run_summarize, "feedback": _run_feedback, "bigquery-sql": _run_bigquery_sql}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up notes are noise here
    signal.signal(signal.SIGTERM, _interrupt)  # a stopped pod ends like Ctrl-C: cleanly
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    try:
        RUNNERS[args.command](args)
    except UserError as error:
        print(f"issue-summarizer: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("issue-summarizer: interrupted; nothing half-written was left behind "
              "(rerun the same command to continue)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
