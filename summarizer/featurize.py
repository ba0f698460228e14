"""Token ids in fixed-length int32 arrays, written as sharded `.npy` files.

`.npy` is memory-mappable (`numpy.load(mmap_mode="r")`), so a training job streams a shard
without loading it, and shards split cleanly between workers.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from summarizer.progress import progress
from summarizer.tokenization import mask_ids, special_ids
from summarizer.word_cache import WordCache

BLOCK = 4096  # small enough that the dev and test splits keep both workers busy
_CACHE: WordCache | None = None  # the word cache of this worker process


def pad_rows(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, length: int,
          special: dict[str, int] | None, pad: int) -> tuple[np.ndarray, int]:
    """Rows of `length` ids, padded; titles (`special` given) wrapped in <s> ... </s>."""
    rows = len(starts)
    room, first = (length - 2, 1) if special else (length, 0)
    kept = np.minimum(lengths, room)
    out = np.full((rows, length), pad, dtype=np.int32)
    row = np.repeat(np.arange(rows), kept)
    within = np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept) - kept, kept)
    out[row, first + within] = flat[np.repeat(starts, kept) + within]
    if special:
        out[:, 0] = special["start"]
        out[np.arange(rows), 1 + kept] = special["end"]
    return out, int((lengths > room).sum())


def encode_marked(cache: WordCache, texts: Sequence[str],
                  masks: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`WordCache.encode_flat` for texts holding mask tokens (pretraining pairs): the text
    between masks is encoded as text, each mask is its special id. The space before a mask
    goes with it, as a word's leading space goes with the word in byte-level BPE."""
    pattern = re.compile(" ?(" + "|".join(map(re.escape, masks)) + ")")
    pieces: list[str] = []
    marks: list[list[int]] = []
    for text in texts:
        parts = pattern.split(text)  # text, mask, text, mask, ..., text
        pieces += parts[0::2]
        marks.append([masks[mask] for mask in parts[1::2]])
    flat, starts, lengths = cache.encode_flat(pieces)
    rows: list[np.ndarray] = []
    piece = 0
    for row_marks in marks:
        row = [flat[starts[piece]:starts[piece] + lengths[piece]]]
        for mark in row_marks:
            piece += 1
            row += [np.array([mark], dtype=np.int32), flat[starts[piece]:starts[piece] + lengths[piece]]]
        piece += 1
        rows.append(np.concatenate(row))
    row_lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    joined = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int32)
    return joined, np.cumsum(row_lengths) - row_lengths, row_lengths


def _ids(cache: WordCache, texts: list[str],
         masks: dict[str, int] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return encode_marked(cache, texts, masks) if masks else cache.encode_flat(texts)


def _start_worker(tokenizer_json: str) -> None:
    global _CACHE
    # The workers fill the cores; the tokenizer's own threads would only spin beside them
    # (measured: 6% more time for the same bodies).
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _CACHE = WordCache(Tokenizer.from_str(tokenizer_json))


def _encode_block(texts: list[str], length: int, special: dict[str, int] | None, pad: int,
                  masks: dict[str, int] | None) -> tuple[np.ndarray, int]:
    assert _CACHE is not None, "worker started without its tokenizer"
    return pad_rows(*_ids(_CACHE, texts, masks), length, special, pad)


class Featurizer:
    """Texts to fixed-length id arrays, in worker processes that each keep a word cache.

    Workers are spawned, not forked: the tokenizer's thread pool does not survive a fork.
    """

    def __init__(self, tokenizer: Tokenizer, workers: int = 1) -> None:
        self.special = special_ids(tokenizer)
        self.masks = mask_ids(tokenizer)
        self.workers = workers
        self._tokenizer_json = tokenizer.to_str()
        self._local = WordCache(Tokenizer.from_str(self._tokenizer_json)) if workers <= 1 else None
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Featurizer:
        if self.workers > 1:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker, initargs=(self._tokenizer_json,))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool:
            self._pool.shutdown(cancel_futures=True)

    def _encode(self, texts: Sequence[str], length: int, title: bool, what: str,
                masked: bool) -> Pending:
        special = self.special if title else None
        if masked and not self.masks:
            raise ValueError("masked texts need a tokenizer trained with the mask tokens")
        masks = self.masks if masked else None
        blocks = [list(texts[i:i + BLOCK]) for i in range(0, len(texts), BLOCK)]
        if self._pool:
            results = [self._pool.submit(_encode_block, b, length, special, self.special["pad"], masks)
                       for b in blocks]
            done = (future.result() for future in results)
        else:
            assert self._local is not None
            local = self._local
            done = (pad_rows(*_ids(local, b, masks), length, special, self.special["pad"])
                    for b in blocks)
        return Pending(done, len(blocks), what, np.full((0, length), self.special["pad"], np.int32))

    def bodies(self, texts: Sequence[str], length: int, masked: bool = False) -> Pending:
        """Body ids, cut to `length` and padded; also how many bodies were cut. `masked`:
        the texts are pretraining sources, whose mask tokens become their ids."""
        return self._encode(texts, length, title=False, what="bodies", masked=masked)

    def titles(self, texts: Sequence[str], length: int, masked: bool = False) -> Pending:
        """`<s> title </s>` ids padded to `length`; also how many titles were cut to fit.
        `masked`: the texts are pretraining targets, whose mask tokens become their ids."""
        return self._encode(texts, length, title=True, what="titles", masked=masked)


class Pending:
    """Texts handed to the workers: ask for several before collecting any, and no worker
    waits for the others between them."""

    def __init__(self, done: Iterator[tuple[np.ndarray, int]], blocks: int, what: str,
                 empty: np.ndarray) -> None:
        self._done, self._blocks, self._what, self._empty = done, blocks, what, empty

    def result(self) -> tuple[np.ndarray, int]:
        """The ids of every text, and how many were cut."""
        arrays, truncated = [], 0
        for array, cut in progress(self._done, f"tokenizing {self._what}", total=self._blocks,
                                   unit="blocks"):
            arrays.append(array)
            truncated += cut
        return (np.concatenate(arrays) if arrays else self._empty), truncated


def encode_bodies(tokenizer: Tokenizer, texts: Sequence[str], length: int) -> tuple[np.ndarray, int]:
    """Body ids in this process (see `Featurizer` for many texts)."""
    with Featurizer(tokenizer) as featurizer:
        return featurizer.bodies(texts, length).result()


def encode_titles(tokenizer: Tokenizer, texts: Sequence[str], length: int) -> tuple[np.ndarray, int]:
    """Title ids in this process (see `Featurizer` for many texts)."""
    with Featurizer(tokenizer) as featurizer:
        return featurizer.titles(texts, length).result()


def shard_name(split: str, index: int, count: int, column: str) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.{column}.npy"


def write_shards(folder: Path, split: str, columns: dict[str, np.ndarray], count: int) -> list[dict]:
    """Cut each column into `count` contiguous shards; return what each shard holds."""
    rows = len(next(iter(columns.values())))
    bounds = np.linspace(0, rows, count + 1).astype(int)
    shards = []
    for index in range(count):
        start, stop = int(bounds[index]), int(bounds[index + 1])
        entry: dict = {"rows": stop - start}
        for column, array in columns.items():
            name = shard_name(split, index, count, column)
            np.save(folder / name, np.ascontiguousarray(array[start:stop]), allow_pickle=False)
            entry[column] = name
        shards.append(entry)
    return shards
