"""`evaluate`: score title predictors on a dataset split, baselines always included, so every
number in a report stands next to what a model must beat on the same issues."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence

from summarizer import storage
from summarizer.baselines import BASELINES
from summarizer.cleaning import clean_title, has_words, model_text
from summarizer.dataset import open_dataset
from summarizer.errors import UserError
from summarizer.kaggle_format import kaggle_format
from summarizer.metrics import invention_stats, score, title_stats
from summarizer.prepare import MANIFEST, PrepareConfig
from summarizer.progress import progress
from summarizer.readers import read_file
from summarizer.skips import SkipCounter

log = logging.getLogger(__name__)
Predictor = Callable[[Sequence[str]], list[str]]  # bodies in, titles out


def baseline_predictors() -> dict[str, Predictor]:
    return {name: (lambda bodies, f=function: [f(b) for b in bodies])
            for name, function in BASELINES.items()}


def _dataset_rows(dataset_path: str, split: str) -> tuple[list[dict], str]:
    dataset = open_dataset(dataset_path)
    if split not in dataset.manifest["splits"]:
        raise UserError(f"{dataset_path} has no split {split!r}")
    path = dataset.folder / dataset.manifest["splits"][split]["text"]
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    if not rows:
        raise UserError(f"the {split} split of {dataset_path} is empty; prepare with a larger "
                        "--test-fraction or --dev-fraction")
    return rows, dataset.manifest["fingerprint"]


def _record_rows(source: str) -> tuple[list[dict], str]:
    """Issues from any source `ingest` reads, cleaned the way `prepare` cleans them: how a
    held-out set nobody prepared (new repositories, a customer's issues) is scored."""
    config, skips, rows = PrepareConfig(), SkipCounter(), []
    for path in storage.list_files(source):
        for issue in read_file(path, skips):
            title = clean_title(issue.title)
            body = model_text(issue.body, config.max_raw_chars, config.body_len)
            if title and has_words(body):  # the engine refuses a body with no words
                rows.append({"url": issue.url, "repo": issue.repo,
                             "source": path.rsplit("/", 1)[-1], "title": title, "body": body})
            else:
                skips.add("empty_title_or_body", path, issue.url or issue.title[:60])
    if not rows:
        raise UserError(f"{source}: no issue with both a title and a body to evaluate on")
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode("utf-8", "surrogatepass"))
    return rows, digest.hexdigest()


def _rows(source: str, split: str) -> tuple[list[dict], str, str | None]:
    """The rows to score, a fingerprint of them, and the split (None: a plain issue source)."""
    if storage.exists(storage.join(source, MANIFEST)):
        return (*_dataset_rows(source, split), split)
    return (*_record_rows(source), None)


def _scores(titles: list[str], references: list[str], bodies: list[str]) -> dict:
    """Overlap with the real titles, and identifiers made up: a title can score well on ROUGE
    and still name a function or version its issue never mentions."""
    return {**score(titles, references), **invention_stats(titles, bodies)}


def text_format(body: str) -> str:
    """`kaggle` for a body written as the Kaggle/BigQuery dump writes text (lowercase, one line,
    no markdown characters: the input the original example trained on), else `github`. Scored
    apart, since the two forms are not equally hard and the mix differs between sources. A body
    of a few words ("help") could be either and counts as github."""
    return "kaggle" if len(body.split()) >= 8 and body == kaggle_format(body) else "github"


def _breakdown(groups: dict[str, list[int]], titles: dict[str, list[str]], references: list[str],
               bodies: list[str]) -> dict[str, dict[str, dict]]:
    """Each predictor's scores on each group of rows."""
    return {name: {group: _scores([predicted[i] for i in chosen], [references[i] for i in chosen],
                                  [bodies[i] for i in chosen])
                   for group, chosen in sorted(groups.items())}
            for name, predicted in titles.items()}


def evaluate(source: str, split: str = "test", predictors: dict[str, Predictor] | None = None,
             examples: int = 10, limit: int = 0) -> dict:
    """Scores overall and per source file, and a few rows side by side, on a prepared
    dataset's split or on issues from any source `ingest` reads; `limit` scores an even spread
    of that many issues instead of all (for quick comparisons)."""
    rows, fingerprint, split_name = _rows(source, split)
    if limit and limit < len(rows):
        rows = [rows[i * len(rows) // limit] for i in range(limit)]
    predictors = {**baseline_predictors(), **(predictors or {})}
    bodies = [row["body"] for row in rows]
    references = [row["title"] for row in rows]
    titles = {name: predict(bodies) for name, predict in
              progress(predictors.items(), "predicting", total=len(predictors), unit="predictors")}
    by_source: dict[str, list[int]] = defaultdict(list)
    by_format: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_source[row.get("source") or "unknown"].append(index)
        by_format[text_format(row["body"])].append(index)
    step = max(1, len(rows) // max(examples, 1))
    return {
        "dataset": source,
        "fingerprint": fingerprint,
        "split": split_name,
        "issues": len(rows),
        "scores": {name: _scores(predicted, references, bodies) for name, predicted in titles.items()},
        "references": {**title_stats(references), **invention_stats(references, bodies)},
        "by_source": _breakdown(by_source, titles, references, bodies),
        "by_format": _breakdown(by_format, titles, references, bodies),
        "examples": [
            {"url": rows[i].get("url"), "body": bodies[i][:300], "reference": references[i],
             **{name: predicted[i] for name, predicted in titles.items()}}
            for i in range(0, len(rows), step)[:examples]
        ],
    }


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def _invented(stats: dict) -> str:
    """Both invention shares in one cell, as percentages like the columns beside it."""
    shares = (stats["invented_token_share"], stats["inventing_title_share"])
    return " / ".join(str(round(100 * share, 2)) for share in shares)


def markdown(report: dict) -> str:
    """The short human-readable report written next to the JSON."""
    metrics = ("rouge1", "rouge2", "rougeL", "bleu", "mean_words", "empty", "repeated_word")
    lines = [
        f"# Evaluation: {report['split'] or 'all'} issues ({report['issues']:,})"
        if report["split"] is None else
        f"# Evaluation: {report['split']} split, {report['issues']:,} issues",
        "",
        f"Source `{report['dataset']}` (fingerprint `{report['fingerprint'][:16]}`).",
        "",
        "| predictor | ROUGE-1 | ROUGE-2 | ROUGE-L | BLEU | mean words | % empty | % repeating a word "
        "| % invented identifiers (of tokens / of titles) |",
        "|---|---|---|---|---|---|---|---|---|",
        *(f"| {name} | " + " | ".join(str(s[m]) for m in metrics) + f" | {_invented(s)} |"
          for name, s in report["scores"].items()),
        "| *real titles* | – | – | – | – | "
        + " | ".join(str(report["references"][m]) for m in metrics if m in report["references"])
        + f" | {_invented(report['references'])} |",
        *([f"Models decode with {report['decoding']}."] if report.get("decoding") else []),
        "",
        "## ROUGE-L by source",
        "",
    ]
    lines += _rouge_table(report["by_source"])
    lines += ["", "## ROUGE-L by text format (kaggle: lowercase, one line, no markdown)", ""]
    lines += _rouge_table(report["by_format"])
    names = list(report["scores"])
    lines += ["", "## Examples", "", "| reference | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for example in report["examples"]:
        lines.append(f"| {_cell(example['reference'])} | "
                     + " | ".join(_cell(example[n]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def _rouge_table(breakdown: dict[str, dict[str, dict]]) -> list[str]:
    groups = sorted({group for per in breakdown.values() for group in per})
    lines = ["| predictor | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    for name, per in breakdown.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{per[g]['rougeL']} (n={per[g]['count']})" if g in per else "–" for g in groups) + " |")
    return lines


def write_report(report: dict, output: str) -> None:
    """`<output>.json` and `<output>.md`, local or gs://."""
    storage.write_bytes(f"{output}.json", (json.dumps(report, indent=2) + "\n").encode())
    storage.write_bytes(f"{output}.md", markdown(report).encode())
