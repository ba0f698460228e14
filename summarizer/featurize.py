"""Token ids in fixed-length int32 arrays, written as sharded `.npy` files.

`.npy` is memory-mappable (`numpy.load(mmap_mode="r")`), so a training job streams a shard
without loading it, and shards split cleanly between workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from summarizer.progress import progress
from summarizer.tokenization import special_ids

BLOCK = 8192


def _ids(tokenizer: Tokenizer, texts: Sequence[str], what: str) -> Iterator[list[int]]:
    """Token ids of each text, encoded in parallel blocks so progress can be shown."""
    tokenizer.encode_special_tokens = True  # "<s>" typed in an issue is text, not a start id
    blocks = range(0, len(texts), BLOCK)
    for start in progress(blocks, f"tokenizing {what}", total=len(blocks), unit="blocks"):
        for encoding in tokenizer.encode_batch(list(texts[start:start + BLOCK]),
                                               add_special_tokens=False):
            yield encoding.ids


def encode_bodies(tokenizer: Tokenizer, texts: Sequence[str], length: int) -> tuple[np.ndarray, int]:
    """Body ids, cut to `length` and padded; also how many bodies were cut."""
    pad = special_ids(tokenizer)["pad"]
    out = np.full((len(texts), length), pad, dtype=np.int32)
    truncated = 0
    for row, ids in enumerate(_ids(tokenizer, texts, "bodies")):
        if len(ids) > length:
            truncated += 1
            ids = ids[:length]
        out[row, : len(ids)] = ids
    return out, truncated


def encode_titles(tokenizer: Tokenizer, texts: Sequence[str], length: int) -> tuple[np.ndarray, int]:
    """`<s> title </s>` ids padded to `length`; also how many titles were cut to fit."""
    special = special_ids(tokenizer)
    out = np.full((len(texts), length), special["pad"], dtype=np.int32)
    out[:, 0] = special["start"]
    room = length - 2
    truncated = 0
    for row, ids in enumerate(_ids(tokenizer, texts, "titles")):
        if len(ids) > room:
            truncated += 1
            ids = ids[:room]
        out[row, 1 : 1 + len(ids)] = ids
        out[row, 1 + len(ids)] = special["end"]
    return out, truncated


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
