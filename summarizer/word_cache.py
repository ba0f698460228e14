"""Byte-level BPE ids computed word by word with a cache: the same ids as the tokenizer, faster.

Byte-level BPE first cuts text into words with the GPT-2 pattern and then merges bytes inside
each word only, so a text's ids are the concatenation of its words' ids. Issues repeat their
words a great deal, so encoding each distinct word once and looking the rest up is several
times cheaper than encoding every text. Python's `re` can only reproduce the pattern's
Unicode classes (letters, digits, spaces) for ASCII, so a text with a letter, digit or space
outside ASCII goes to the tokenizer itself; punctuation and symbols anywhere are fine.
`tests/test_word_cache.py` checks the ids are equal to the tokenizer's.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from itertools import chain

import numpy as np
from tokenizers import Tokenizer

# The GPT-2 pre-tokenization pattern, with \p{L} and \p{N} written for ASCII.
WORDS = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")
_NOT_PLAIN_ASCII = re.compile(r"[^\t\n\x0b\x0c\r\x20-\x7e]")
MAX_CACHED = 2_000_000  # distinct words kept; past this the cache starts again


def is_exact(text: str) -> bool:
    """Whether WORDS cuts `text` exactly as the tokenizer's own pattern would."""
    if not _NOT_PLAIN_ASCII.search(text):
        return True
    return all(not ch.isascii() and unicodedata.category(ch)[0] in "PS"
               for ch in set(_NOT_PLAIN_ASCII.findall(text)))


class WordCache:
    """Encodes texts like `tokenizer.encode_batch(texts, add_special_tokens=False)`.

    Each distinct word's ids sit in one flat table (`_table[_start[k]:_start[k] + _len[k]]`
    for word number k), so a block of texts is gathered with a few numpy operations instead
    of a Python loop over its words.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.tokenizer.encode_special_tokens = True  # "<s>" typed in an issue is text
        self._clear()

    def _clear(self) -> None:
        self.index: dict[str, int] = {}
        self._table = np.zeros(0, dtype=np.int32)
        self._start = np.zeros(0, dtype=np.int64)
        self._len = np.zeros(0, dtype=np.int64)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def _learn(self, words: list[str]) -> None:
        ids = self._encode(words)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        self.index.update(zip(words, range(len(self.index), len(self.index) + len(words)),
                              strict=True))
        self._start = np.concatenate([self._start, len(self._table) + np.cumsum(lengths) - lengths])
        self._len = np.concatenate([self._len, lengths])
        self._table = np.concatenate(
            [self._table, np.fromiter(chain.from_iterable(ids), dtype=np.int32,
                                      count=int(lengths.sum()))])

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All ids in one array, with each text's start and length in it."""
        words = [WORDS.findall(text) if is_exact(text) else None for text in texts]
        exact = [w for w in words if w is not None]
        if len(self.index) > MAX_CACHED:
            self._clear()
        new = list({word for text_words in exact for word in text_words} - self.index.keys())
        if new:
            self._learn(new)
        flat_words = np.fromiter(map(self.index.__getitem__, chain.from_iterable(exact)),
                                 dtype=np.int64)
        word_lengths = self._len[flat_words]
        gathered = np.repeat(self._start[flat_words] - np.cumsum(word_lengths) + word_lengths,
                             word_lengths) + np.arange(int(word_lengths.sum()))
        ends = np.concatenate([[0], np.cumsum(word_lengths)])[np.cumsum([len(w) for w in exact],
                                                                        dtype=np.int64)]
        exact_lengths = np.diff(np.concatenate([[0], ends])) if exact else np.zeros(0, np.int64)
        others = self._encode([t for t, w in zip(texts, words, strict=True) if w is None])
        flat = np.concatenate([self._table[gathered],
                               np.fromiter(chain.from_iterable(others), dtype=np.int32)])
        lengths = np.empty(len(texts), dtype=np.int64)
        is_exact_text = np.array([w is not None for w in words], dtype=bool)
        lengths[is_exact_text] = exact_lengths
        lengths[~is_exact_text] = [len(ids) for ids in others]
        # Exact texts' ids come first in `flat`, in order, then the others', in order.
        starts = np.empty(len(texts), dtype=np.int64)
        starts[is_exact_text] = np.cumsum(exact_lengths) - exact_lengths
        other_lengths = lengths[~is_exact_text]
        starts[~is_exact_text] = len(gathered) + np.cumsum(other_lengths) - other_lengths
        return flat, starts, lengths

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        flat, starts, lengths = self.encode_flat(texts)
        return [flat[s:s + n].tolist() for s, n in zip(starts, lengths, strict=True)]
