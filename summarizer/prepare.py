"""`prepare`: issue records to a training dataset (clean, filter, split, tokenize, featurize).

The output folder holds `tokenizer.json`, sharded `.npy` arrays per split, the cleaned text
of each split (`<split>.jsonl.gz`, for evaluation and inspection), `report.json` (what was
dropped and why, split sizes, truncation) and `dataset.json` (settings and the sha256 of
every file), written last: a folder without `dataset.json` is not a finished dataset.
The same inputs and settings give byte-identical outputs.

Two opt-in additions (off, the output is what it was before they existed): `pretraining`
writes a `pretrain` split of self-supervised pairs (summarizer/pretraining.py) from the train
repositories' bodies, untitled issues' included; `kaggle_share` rewrites that share of the
train pairs as the Kaggle dump writes text (summarizer/kaggle_format.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
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
from summarizer.kaggle_format import kaggle_format, picked
from summarizer.pretraining import gap_sentence, has_mask_text, span_denoise
from summarizer.progress import progress
from summarizer.readers import read_file
from summarizer.records import Issue
from summarizer.skips import SkipCounter
from summarizer.splitting import SPLITS, SplitConfig, split_rule
from summarizer.tokenization import PRETRAINING_TOKENS, SPECIAL_TOKENS, train_tokenizer

log = logging.getLogger(__name__)
MANIFEST, REPORT, TOKENIZER = "dataset.json", "report.json", "tokenizer.json"
PRETRAIN = "pretrain"  # the split of self-supervised pairs, beside SPLITS when asked for
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
    pretraining: bool = False  # also write the pretrain split (gap sentences, masked spans)
    kaggle_share: float = 0.0  # share of train pairs rewritten in the Kaggle dump's form
    kaggle_seed: int = 0  # which pairs those are (a hash of seed and url)

    def __post_init__(self) -> None:
        if self.title_len < 2:
            raise UserError(f"title length {self.title_len} leaves no room for <s> and </s>; use 2 or more")
        if not 0 <= self.kaggle_share <= 1:
            raise UserError(f"kaggle share {self.kaggle_share} is not a fraction in [0, 1]")

    @property
    def settings(self) -> dict:
        """The settings a manifest records. The opt-in ones appear only when used: a dataset
        made without them stays byte-identical to one made before they existed."""
        settings = {**asdict(self), "split": asdict(self.split)}
        if not self.pretraining:
            del settings["pretraining"]
        if not self.kaggle_share:
            del settings["kaggle_share"], settings["kaggle_seed"]
        return settings

    @property
    def masked_words(self) -> int:
        """Words masked at most per span-denoising pair: each span costs its mask token and
        words take about 1.4 tokens, so this many fill a title's row without cutting."""
        return max(1, (self.title_len - 2) // 2)

    @property
    def gap_words(self) -> int:
        """Words a gap sentence may have: about as many as fill a title's row."""
        return max(1, round((self.title_len - 2) / 1.4))

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
    kaggle: list[tuple[str, str] | None] = field(default_factory=list)  # (title, body) rewritten


@dataclass
class _Untitled:
    """Issues dropped for an empty title whose bodies could still be read for pretraining
    (only kept with `pretraining`)."""

    urls: list[str | None] = field(default_factory=list)
    repos: list[str | None] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)


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


def _clean_chunk(args: tuple[list[tuple[str | None, str, str, str | None]], PrepareConfig]) -> list[tuple]:
    """Worker: clean a chunk; per issue (title, body, word count up to one past the minimum,
    bot?, exact content key, near-duplicate key, Kaggle-form (title, body) or None). Bodies are
    cleaned only as far as the model reads them, and the near-duplicate key looks at that
    much: two issues that differ only past it are one input with two targets to the model.
    The Kaggle form is made from the raw body, as the dump made it, then cleaned as serving
    cleans such a body; it is used only if the issue lands in train."""
    chunk, config = args
    out = []
    for url, title, raw, author in chunk:
        bot = is_bot(Issue(url=None, repo=None, title=title, body=raw, author=author))
        exact = content_key(title, raw)
        body = model_text(raw, config.max_raw_chars, config.body_len)
        words = len(body.split(None, config.min_body_words))  # enough to tell short ones
        if words < config.min_body_words and len(body) == config.body_chars:
            # Cut: the words past the cut count too (a tiny body_len must not drop issues).
            words = len(clean_body(raw[:config.max_raw_chars]).split(None, config.min_body_words))
        kaggle = None
        if config.kaggle_share and picked(url or exact.hex(), config.kaggle_share, config.kaggle_seed):
            kaggle = (clean_title(kaggle_format(title)),
                      model_text(kaggle_format(raw[:config.max_raw_chars]), config.max_raw_chars,
                                 config.body_len))
            kaggle = kaggle if all(kaggle) else None  # a title of markup alone: left as written
        out.append((clean_title(title), body, words, bot, exact, near_key(body), kaggle))
    return out


def _chunks(issues: Iterator[tuple[str, Issue]], meta: list,
            config: PrepareConfig) -> Iterator[tuple]:
    chunk: list[tuple[str | None, str, str, str | None]] = []
    for source, issue in issues:
        meta.append((issue.url, issue.repo, source))
        chunk.append((issue.url, issue.title, issue.body, issue.author))
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
) -> tuple[_Kept, list[bytes], _Untitled]:
    kept, keys, meta, untitled = _Kept(), [], [], _Untitled()
    seen_near: set[bytes] = set()
    chunks = _parallel_map(_clean_chunk, _chunks(issues, meta, config), workers)
    cleaned = (row for chunk in chunks for row in chunk)
    seen_content: set[bytes] = set()
    for index, (title, body, words, bot, exact, key, kaggle) in enumerate(progress(cleaned, "cleaning")):
        if (config.pretraining and not title and exact not in seen_content and body
                and words >= config.min_body_words and not bot):
            # Still dropped from the title pairs (and counted so); its body can pretrain.
            # Its key stays out of seen_near: the title pairs must not depend on it.
            untitled.urls.append(meta[index][0])
            untitled.repos.append(meta[index][1])
            untitled.bodies.append(body)
            untitled.keys.append(key)
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
        kept.kaggle.append(kaggle)
        keys.append(key)
    return kept, keys, untitled


@dataclass
class _Pairs:
    """Pretraining pairs as parallel columns, in the order they are featurized."""

    tasks: list[str] = field(default_factory=list)
    urls: list[str | None] = field(default_factory=list)
    repos: list[str | None] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)


def _pretraining_chunk(args: tuple[list[tuple[str, bytes]], PrepareConfig]) -> list[tuple]:
    """Worker: per body, (gap-sentence pair or None, masked-span pair or None, reason a pair is
    missing or None). A body's spans are seeded by its near-duplicate key: the same body gets
    the same spans whatever else is read, and however the work is cut."""
    chunk, config = args
    out = []
    for body, key in chunk:
        if has_mask_text(body):
            out.append((None, None, "mask_text_in_body"))
            continue
        gap = gap_sentence(body, config.gap_words)
        spans = span_denoise(body, random.Random(key), max_masked=config.masked_words)
        out.append((gap, spans, "no_gap_sentence" if gap is None else
                    "too_few_words" if spans is None else None))
    return out


def _pretraining_pairs(kept: _Kept, keys: list[bytes], train: list[int], untitled: _Untitled,
                       split: Callable[[str], str], config: PrepareConfig,
                       workers: int) -> tuple[_Pairs, dict]:
    """Pairs from the train split's bodies and the untitled bodies of train repositories (of
    a held-out repository, even an untitled body would leak its vocabulary into training)."""
    report: dict = {"train_bodies": len(train), "untitled_bodies": 0, "untitled_held_out": 0,
                    "untitled_duplicate": 0}
    bodies = [(kept.bodies[i], keys[i], kept.urls[i], kept.repos[i]) for i in train]
    seen = set(keys)
    for url, repo, body, key in zip(untitled.urls, untitled.repos, untitled.bodies, untitled.keys,
                                    strict=True):
        if key in seen:
            report["untitled_duplicate"] += 1
        elif split(f"repo:{repo.lower()}" if repo else f"content:{key.hex()}") != "train":
            report["untitled_held_out"] += 1
        else:
            report["untitled_bodies"] += 1
            bodies.append((body, key, url, repo))
        seen.add(key)
    chunks = (([(body, key) for body, key, _, _ in bodies[start:start + CHUNK]], config)
              for start in range(0, len(bodies), CHUNK))
    found = (row for chunk in _parallel_map(_pretraining_chunk, chunks, workers) for row in chunk)
    pairs, made, skipped = _Pairs(), Counter(), Counter()
    for (gap, spans, reason), (_, _, url, repo) in zip(
            progress(found, "pretraining pairs", total=len(bodies), unit="bodies"), bodies, strict=True):
        if reason:
            skipped[reason] += 1
        for task, pair in (("gap_sentence", gap), ("masked_spans", spans)):
            if pair:
                made[task] += 1
                pairs.tasks.append(task)
                pairs.urls.append(url)
                pairs.repos.append(repo)
                pairs.sources.append(pair[0])
                pairs.targets.append(pair[1])
    report |= {"pairs": dict(sorted(made.items())), "skipped": dict(sorted(skipped.items()))}
    return pairs, report


def _write_pairs(path: Path, pairs: _Pairs) -> None:
    """The pretrain split's text, like a split's (see `_write_text`)."""
    with storage.open_write(str(path)) as out:
        for start in range(0, len(pairs.tasks), CHUNK):
            out.write(b"".join(
                orjson.dumps({"task": pairs.tasks[i], "url": pairs.urls[i], "repo": pairs.repos[i],
                              "source": pairs.sources[i], "target": pairs.targets[i]}) + b"\n"
                for i in range(start, min(start + CHUNK, len(pairs.tasks)))))


def _kaggle_rewrite(kept: _Kept, train: list[int]) -> int:
    """The picked train pairs take their Kaggle form; returns how many did. Dev and test stay
    as written: held-out rows in that form are the real ones (the Kaggle CSV and the
    lowercased benchmark rows), which evaluation reports by source file."""
    rewritten = 0
    for i in train:
        if kept.kaggle[i] is not None:
            kept.titles[i], kept.bodies[i] = kept.kaggle[i]
            rewritten += 1
    return rewritten


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


def _write_pretrain(folder: Path, pairs: _Pairs, ids: tuple[Pending, Pending],
                    config: PrepareConfig) -> tuple[dict, dict]:
    """The pretrain split's arrays (source in `body`, target in `title`, as the trainer reads a
    split); returns its manifest entry and truncation."""
    (sources, cut_sources), (targets, cut_targets) = (pending.result() for pending in ids)
    rows = len(pairs.tasks)
    shards = write_shards(folder, PRETRAIN, {"body": sources, "title": targets},
                          config.shards if rows else 1)
    log.info("%s: %s pairs featurized", PRETRAIN, f"{rows:,}")
    return ({"rows": rows, "shards": shards, "text": f"{PRETRAIN}.jsonl.gz"},
            {"body": cut_sources, "body_rate": round(cut_sources / max(rows, 1), 4),
             "title": cut_targets, "title_rate": round(cut_targets / max(rows, 1), 4)})


def _special_tokens(config: PrepareConfig) -> dict[str, str]:
    names = ("pad", "unk", "start", "end", *(("mask_sentence", "mask_span") if config.pretraining else ()))
    return dict(zip(names, (*SPECIAL_TOKENS, *PRETRAINING_TOKENS), strict=False))


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
    kept, keys, untitled = _clean_and_filter(issues, config, workers, drops)
    timings["read_and_clean"] = time.perf_counter() - clock
    if not kept.titles:
        raise UserError(
            f"no issues left to train on from {', '.join(inputs)} (read problems: "
            f"{skips.as_dict()}, dropped: {dict(drops)}); check the inputs"
        )
    groups = [f"repo:{repo.lower()}" if repo else f"content:{key.hex()}"
              for repo, key in zip(kept.repos, keys, strict=True)]
    split = split_rule(groups, config.split)
    split_of = list(map(split, groups))
    # A deterministic shuffle: order rows by their content key within each split.
    rows = {name: sorted((i for i, s in enumerate(split_of) if s == name), key=keys.__getitem__)
            for name in SPLITS}
    if not rows["train"]:
        raise UserError("the train split is empty: lower --dev-fraction/--test-fraction")
    extra: dict = {}  # the opt-in parts' reports
    if config.kaggle_share:
        extra["kaggle_format"] = {"share": config.kaggle_share, "seed": config.kaggle_seed,
                                  "rewritten": _kaggle_rewrite(kept, rows["train"])}
    pairs = _Pairs()
    if config.pretraining:
        clock = time.perf_counter()
        pairs, extra["pretraining"] = _pretraining_pairs(kept, keys, rows["train"], untitled, split,
                                                         config, workers)
        timings["pretraining_pairs"] = time.perf_counter() - clock
    # A spread-out sample is enough to learn the merges and keeps this step short.
    step = max(1, len(rows["train"]) // config.tokenizer_sample)
    sample = rows["train"][::step]
    log.info("training the tokenizer (vocabulary %s) on %s train issues",
             f"{config.vocab_size:,}", f"{len(sample):,}")
    clock = time.perf_counter()
    tokenizer = train_tokenizer(
        (text for i in sample for text in (kept.titles[i], kept.bodies[i])), config.vocab_size,
        pretraining=config.pretraining)
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
        **extra,
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
        if config.pretraining:
            texts.append(writer.submit(_write_pairs, folder / f"{PRETRAIN}.jsonl.gz", pairs))
            pretrain_ids = (featurizer.bodies(pairs.sources, config.body_len, masked=True),
                            featurizer.titles(pairs.targets, config.title_len, masked=True))
        for name in SPLITS:
            splits_manifest[name], report["splits"][name], report["truncated"][name] = \
                _write_split(folder, name, rows[name], kept, ids[name], config)
        if config.pretraining:
            splits_manifest[PRETRAIN], report["pretraining"]["truncated"] = _write_pretrain(
                folder, pairs, pretrain_ids, config)
        for text in texts:
            text.result()
        (folder / REPORT).write_text(json.dumps(report, indent=2) + "\n")
        files = {p.name: storage.sha256_file(p) for p in sorted(folder.iterdir())}
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_by": f"issue-summarizer {__version__}",
            "settings": config.settings,
            "vocab_size": tokenizer.get_vocab_size(),
            "special_tokens": _special_tokens(config),
            "tokenizer": TOKENIZER,
            "splits": splits_manifest,
            "files": files,
            "fingerprint": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest(),
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    timings["tokenize_and_write"] = time.perf_counter() - clock
    log.info("seconds: %s", ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return report
