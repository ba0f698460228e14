"""`prepare`: issue records to a training dataset (clean, filter, split, tokenize, featurize).

The output folder holds `tokenizer.json`, sharded `.npy` arrays per split, the cleaned text
of each split (`<split>.jsonl.gz`, for evaluation and inspection), `report.json` (what was
dropped and why, split sizes, truncation) and `dataset.json` (settings and the sha256 of
every file), written last: a folder without `dataset.json` is not a finished dataset.
The same inputs and settings give byte-identical outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import orjson

from summarizer import __version__, storage
from summarizer.cleaning import CHARS_PER_TOKEN, clean_body, clean_title, model_text
from summarizer.errors import UserError
from summarizer.featurize import Featurizer, Pending, write_shards
from summarizer.filters import content_key, is_bot, near_key
from summarizer.progress import progress
from summarizer.readers import read_file
from summarizer.records import Issue
from summarizer.skips import SkipCounter
from summarizer.splitting import SPLITS, SplitConfig, assign_splits
from summarizer.tokenization import SPECIAL_TOKENS, train_tokenizer

log = logging.getLogger(__name__)
MANIFEST, REPORT, TOKENIZER = "dataset.json", "report.json", "tokenizer.json"
FORMAT_VERSION = 1
CHUNK = 2000
T, R = TypeVar("T"), TypeVar("R")


@dataclass(frozen=True)
class PrepareConfig:
    vocab_size: int = 16000
    body_len: int = 256
    title_len: int = 24
    shards: int = 4
    min_body_words: int = 5
    max_raw_chars: int = 50_000
    tokenizer_sample: int = 30_000  # 50,000 compress test bodies only 0.2% better, 40% slower
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        if self.title_len < 2:
            raise UserError(f"title length {self.title_len} leaves no room for <s> and </s>; use 2 or more")

    @property
    def body_chars(self) -> int:
        """Cleaned text kept for tokenizing (see CHARS_PER_TOKEN)."""
        return self.body_len * CHARS_PER_TOKEN


@dataclass
class _Kept:
    """The kept issues as parallel columns (cheaper than a million small objects)."""

    urls: list[str | None] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    repos: list[str | None] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)


def _read(inputs: Sequence[str], skips: SkipCounter,
          drops: Counter[str]) -> Iterator[tuple[str, Issue]]:
    """Records from every input, without duplicates by url or numeric id (duplicate content
    is caught after cleaning, where the workers hash it)."""
    seen_urls: set[str] = set()
    seen_ids: set[int] = set()
    files = [path for source in inputs for path in storage.list_files(source)]
    for path in files:
        for issue in read_file(path, skips):
            if issue.url and issue.url in seen_urls:
                drops["duplicate_url"] += 1
                continue
            if issue.id is not None and issue.id in seen_ids:
                drops["duplicate_id"] += 1
                continue
            if issue.url:
                seen_urls.add(issue.url)
            if issue.id is not None:
                seen_ids.add(issue.id)
            yield path.rsplit("/", 1)[-1], issue


def _clean_chunk(args: tuple[list[tuple[str, str, str | None]], PrepareConfig]) -> list[tuple]:
    """Worker: clean a chunk; per issue (title, body, word count up to one past the minimum,
    bot?, exact content key, near-duplicate key). Bodies are cleaned only as far as the model
    reads them, and the near-duplicate key looks at that much: two issues that differ only
    past it are one input with two targets to the model."""
    chunk, config = args
    out = []
    for title, raw, author in chunk:
        bot = is_bot(Issue(url=None, repo=None, title=title, body=raw, author=author))
        exact = content_key(title, raw)
        body = model_text(raw, config.max_raw_chars, config.body_len)
        words = len(body.split(None, config.min_body_words))  # enough to tell short ones
        if words < config.min_body_words and len(body) == config.body_chars:
            # Cut: the words past the cut count too (a tiny body_len must not drop issues).
            words = len(clean_body(raw[:config.max_raw_chars]).split(None, config.min_body_words))
        out.append((clean_title(title), body, words, bot, exact, near_key(body)))
    return out


def _chunks(issues: Iterator[tuple[str, Issue]], meta: list,
            config: PrepareConfig) -> Iterator[tuple]:
    chunk: list[tuple[str, str, str | None]] = []
    for source, issue in issues:
        meta.append((issue.url, issue.repo, source))
        chunk.append((issue.title, issue.body, issue.author))
        if len(chunk) == CHUNK:
            yield chunk, config
            chunk = []
    if chunk:
        yield chunk, config


def _parallel_map(function: Callable[[T], R], items: Iterator[T], workers: int) -> Iterator[R]:
    """Results in order, with only a few chunks in flight (Executor.map would read all input
    into its queue first)."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _clean_and_filter(
    issues: Iterator[tuple[str, Issue]], config: PrepareConfig, workers: int, drops: Counter[str]
) -> tuple[_Kept, list[bytes]]:
    kept, keys, meta = _Kept(), [], []
    seen_near: set[bytes] = set()
    chunks = _parallel_map(_clean_chunk, _chunks(issues, meta, config), workers)
    cleaned = (row for chunk in chunks for row in chunk)
    seen_content: set[bytes] = set()
    for index, (title, body, words, bot, exact, key) in enumerate(progress(cleaned, "cleaning")):
        reason = (
            "duplicate_content" if exact in seen_content
            else "empty_title" if not title
            else "empty_body" if not body
            else "short_body" if words < config.min_body_words
            else "bot" if bot
            else "near_duplicate" if key in seen_near
            else None
        )
        seen_content.add(exact)
        if reason:
            drops[reason] += 1
            continue
        seen_near.add(key)
        url, repo, source = meta[index]
        kept.urls.append(url)
        kept.sources.append(source)
        kept.repos.append(repo)
        kept.titles.append(title)
        kept.bodies.append(body)
        keys.append(key)
    return kept, keys


def _write_text(path: Path, kept: _Kept, rows: list[int]) -> None:
    """The cleaned text of one split. It runs in a thread beside featurizing: compression
    releases the GIL, and the pool's workers are busy with the ids meanwhile."""
    with storage.open_write(str(path)) as out:  # the project's one deterministic gzip writer
        for start in range(0, len(rows), CHUNK):
            out.write(b"".join(
                orjson.dumps({"url": kept.urls[i], "repo": kept.repos[i],
                              "source": kept.sources[i], "title": kept.titles[i],
                              "body": kept.bodies[i]}) + b"\n"
                for i in rows[start:start + CHUNK]))


def _write_split(folder: Path, name: str, chosen: list[int], kept: _Kept, ids: tuple[Pending, Pending],
                 config: PrepareConfig) -> tuple[dict, dict, dict]:
    """One split's arrays; returns its manifest entry, size and truncation."""
    (bodies, cut_bodies), (titles, cut_titles) = (pending.result() for pending in ids)
    shards = write_shards(folder, name, {"body": bodies, "title": titles},
                          config.shards if chosen else 1)
    log.info("%s: %s issues featurized", name, f"{len(chosen):,}")
    rows = max(len(chosen), 1)
    return (
        {"rows": len(chosen), "shards": shards, "text": f"{name}.jsonl.gz"},
        {"issues": len(chosen),
         "repositories": len({kept.repos[i] for i in chosen if kept.repos[i]})},
        {"body": cut_bodies, "body_rate": round(cut_bodies / rows, 4),
         "title": cut_titles, "title_rate": round(cut_titles / rows, 4)},
    )


def prepare(inputs: Sequence[str], output: str, config: PrepareConfig,
            workers: int | None = None, timings: dict[str, float] | None = None) -> dict:
    """Run the whole preparation; returns the report that is also written to `report.json`.

    Seconds per stage go into `timings` when given (kept out of the report, which must be
    byte-identical between runs).
    """
    workers = workers or os.cpu_count() or 1
    timings = {} if timings is None else timings
    clock = time.perf_counter()
    skips, drops = SkipCounter(), Counter()
    issues = progress(_read(inputs, skips, drops), "reading")
    kept, keys = _clean_and_filter(issues, config, workers, drops)
    timings["read_and_clean"] = time.perf_counter() - clock
    if not kept.titles:
        raise UserError(
            f"no issues left to train on from {', '.join(inputs)} (read problems: "
            f"{skips.as_dict()}, dropped: {dict(drops)}); check the inputs"
        )
    groups = [f"repo:{repo.lower()}" if repo else f"content:{key.hex()}"
              for repo, key in zip(kept.repos, keys, strict=True)]
    split_of = assign_splits(groups, config.split)
    # A deterministic shuffle: order rows by their content key within each split.
    rows = {name: sorted((i for i, s in enumerate(split_of) if s == name), key=keys.__getitem__)
            for name in SPLITS}
    if not rows["train"]:
        raise UserError("the train split is empty: lower --dev-fraction/--test-fraction")
    # A spread-out sample is enough to learn the merges and keeps this step short.
    step = max(1, len(rows["train"]) // config.tokenizer_sample)
    sample = rows["train"][::step]
    log.info("training the tokenizer (vocabulary %s) on %s train issues",
             f"{config.vocab_size:,}", f"{len(sample):,}")
    clock = time.perf_counter()
    tokenizer = train_tokenizer(
        (text for i in sample for text in (kept.titles[i], kept.bodies[i])), config.vocab_size)
    timings["train_tokenizer"] = time.perf_counter() - clock
    if tokenizer.get_vocab_size() < config.vocab_size:
        log.warning("the tokenizer learned %s tokens of the %s asked for: the train split has "
                    "too little text for that vocabulary", f"{tokenizer.get_vocab_size():,}",
                    f"{config.vocab_size:,}")
    clock = time.perf_counter()
    report: dict = {
        "inputs": list(inputs),
        "read": sum(drops.values()) + len(kept.titles) + skips.total(),
        "skipped_input": skips.as_dict(),
        "dropped": dict(sorted(drops.items())),
        "kept": len(kept.titles),
        "splits": {}, "truncated": {},
    }
    splits_manifest = {}
    with storage.staged_directory(output, last=MANIFEST) as folder, \
            Featurizer(tokenizer, workers) as featurizer, ThreadPoolExecutor(1) as writer:
        tokenizer.save(str(folder / TOKENIZER))
        texts = [writer.submit(_write_text, folder / f"{name}.jsonl.gz", kept, rows[name])
                 for name in SPLITS]
        # Every split's texts go to the workers at once: none idles at a split's end.
        ids = {name: (featurizer.bodies([kept.bodies[i] for i in rows[name]], config.body_len),
                      featurizer.titles([kept.titles[i] for i in rows[name]], config.title_len))
               for name in SPLITS}
        for name in SPLITS:
            splits_manifest[name], report["splits"][name], report["truncated"][name] = \
                _write_split(folder, name, rows[name], kept, ids[name], config)
        for text in texts:
            text.result()
        (folder / REPORT).write_text(json.dumps(report, indent=2) + "\n")
        files = {p.name: storage.sha256_file(p) for p in sorted(folder.iterdir())}
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_by": f"issue-summarizer {__version__}",
            "settings": {**asdict(config), "split": asdict(config.split)},
            "vocab_size": tokenizer.get_vocab_size(),
            "special_tokens": dict(zip(("pad", "unk", "start", "end"), SPECIAL_TOKENS, strict=True)),
            "tokenizer": TOKENIZER,
            "splits": splits_manifest,
            "files": files,
            "fingerprint": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest(),
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    timings["tokenize_and_write"] = time.perf_counter() - clock
    log.info("seconds: %s", ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return report
