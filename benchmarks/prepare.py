"""Benchmark: `prepare` (clean + tokenize + featurize + write) over ../shared/data, against a
single-process word-level tokenizer-and-vocabulary pass like the original example's ktext
step, on the same issues in the same run.

    .venv/bin/pip install -e '.[bench]'     # ftfy and Unidecode, which ktext's cleaner ran
    .venv/bin/python benchmarks/prepare.py [--limit N] [--workers N]

Targets (issue 2): at least 20,000 issues/s for clean + tokenize + write on a 2-core
machine, and at least 10x the word-level pass.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
from ftfy import fix_text
from unidecode import unidecode

from summarizer.prepare import PrepareConfig, prepare

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCES = ("github-issues.jsonl.gz", "kaggle-format-sample.csv")

# ktext's default cleaner: textacy.preprocess_text(fix_unicode=True, lowercase=True,
# transliterate=True, no_urls=True, no_emails=True, no_phone_numbers=True, no_numbers=True,
# no_currency_symbols=True, no_punct=True, no_accents=True), that is ftfy, unidecode and
# these replacements; then Keras' text_to_word_sequence, a vocabulary of the 8,000
# commonest words, ids, padding.
_URL = re.compile(r"(?:https?://|www\.)\S+")
_EMAIL = re.compile(r"\S+@\S+\.\S+")
_PHONE = re.compile(r"(?:\+?\d{1,3}[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}")
_NUMBER = re.compile(r"(?<!\w)[+-]?\d+(?:[.,]\d+)*(?!\w)")
_CURRENCY = re.compile(r"[$€£¥]")
_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


def _ktext_words(text: str) -> list[str]:
    text = unidecode(fix_text(text, normalization="NFC"))
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = _URL.sub(" _url_ ", text)
    text = _EMAIL.sub(" _email_ ", text)
    text = _PHONE.sub(" _phone_ ", text)
    text = _NUMBER.sub(" _number_ ", text)
    text = _CURRENCY.sub(" _cur_ ", text)
    text = _PUNCT.sub(" ", text.lower())
    return _SPACE.sub(" ", text).strip().split(" ")


def word_level_pass(texts: list[str], keep_n: int = 8000, maxlen: int = 70) -> np.ndarray:
    """The baseline: one process, word vocabulary, ids padded to `maxlen` (ktext's defaults)."""
    docs = [_ktext_words(t) for t in texts]
    counts = Counter(word for doc in docs for word in doc)
    vocab = {w: i + 2 for i, (w, _) in enumerate(counts.most_common(keep_n))}  # 0 pad, 1 unk
    out = np.zeros((len(docs), maxlen), dtype=np.int32)
    for row, doc in enumerate(docs):
        ids = [vocab.get(w, 1) for w in doc][:maxlen]
        out[row, maxlen - len(ids):] = ids  # ktext pads and truncates at the front
    return out


def _word_level_seconds(titles: list[str], bodies: list[str]) -> float:
    start = time.perf_counter()
    word_level_pass(bodies)
    word_level_pass(titles, maxlen=12)
    return time.perf_counter() - start


def _load_texts(files: list[Path], limit: int | None) -> tuple[list[str], list[str]]:
    titles, bodies = [], []
    for path in files:
        if path.suffix == ".csv":
            import csv

            with open(path, newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    titles.append(row["issue_title"])
                    bodies.append(row["body"])
        else:
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                for line in handle:
                    record = json.loads(line)
                    titles.append(record["title"])
                    bodies.append(record["body"] or "")
    return titles[:limit], bodies[:limit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, help="use only the first N issues")
    parser.add_argument("--workers", type=int, help="cleaning processes (default: CPUs)")
    args = parser.parse_args()
    files = [DATA / name for name in SOURCES]
    if not all(f.exists() for f in files):
        print(f"benchmark needs {', '.join(SOURCES)} in {DATA}; they are absent", file=sys.stderr)
        return 1
    titles, bodies = _load_texts(files, args.limit)
    # This VM's speed drifts by tens of percent within minutes: the word-level pass runs
    # half before and half after `prepare`, so both see the same mix of fast and slow spells.
    baseline = _word_level_seconds(titles[::2], bodies[::2])
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [str(f) for f in files]
        if args.limit:
            subset = Path(tmp, "subset.jsonl")
            subset.write_text("".join(json.dumps({"title": t, "body": b}) + "\n"
                                      for t, b in zip(titles, bodies, strict=True)))
            inputs = [str(subset)]
        timings: dict[str, float] = {}
        start = time.perf_counter()
        report = prepare(inputs, str(Path(tmp, "dataset")), PrepareConfig(), args.workers, timings)
        total = time.perf_counter() - start
    baseline += _word_level_seconds(titles[1::2], bodies[1::2])
    issues = report["read"]
    pipeline = timings["read_and_clean"] + timings["tokenize_and_write"]

    rate, base_rate = issues / pipeline, len(titles) / baseline
    print(f"issues: {issues:,} (kept {report['kept']:,})")
    for stage, seconds in timings.items():
        print(f"  {stage:20} {seconds:7.1f} s")
    print(f"prepare, clean + tokenize + write: {rate:10,.0f} issues/s  (target >= 20,000)")
    print(f"prepare, everything incl. tokenizer training: {issues / total:,.0f} issues/s")
    print(f"word-level pass (ktext-like, 1 process): {base_rate:10,.0f} issues/s")
    print(f"speed-up over the word-level pass: {rate / base_rate:.1f}x  (target >= 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
