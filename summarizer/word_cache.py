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

# The GPT-2 pre-tokenization pattern, with \p{L} and \p{N} written for ASCII. The branches
# are reordered (common ones first; their first characters tell them apart, so the matches
# are the same) and the contractions share one branch: this cuts words 1.6x faster.
WORDS = re.compile(r""" ?[A-Za-z]+| ?[0-9]+|'(?:[stdm]|re|ve|ll)| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")
_NOT_PLAIN_ASCII = re.compile(r"[^\t\n\x0b\x0c\r\x20-\x7e]")
_ASCII_CONTROLS = bytes([*range(0x09), *range(0x0E, 0x20), 0x7F])  # what it finds in ASCII
MAX_CACHED = 2_000_000  # distinct words kept; past this the cache starts again
_SEPARATOR = "\n"
_JOINED_WORDS = 20_000  # new words encoded per joined text (texts are encoded in parallel)


def is_exact(text: str) -> bool:
    """Whether WORDS cuts `text` exactly as the tokenizer's own pattern would."""
    if text.isascii():  # the common case: only control characters can spoil it
        raw = text.encode("ascii")
        return len(raw.translate(None, _ASCII_CONTROLS)) == len(raw)
    return all(not ch.isascii() and unicodedata.category(ch)[0] in "PS"
               for ch in set(_NOT_PLAIN_ASCII.findall(text)))


class _WordNumbers(dict[str, int]):
    """Word -> its number in the cache; an unseen word takes the next number and waits in
    `new` to be encoded, so one pass over the words both looks up and collects."""

    def __init__(self) -> None:
        super().__init__()
        self.new: list[str] = []

    def __missing__(self, word: str) -> int:
        number = self[word] = len(self)
        self.new.append(word)
        return number


class WordCache:
    """Encodes texts like `tokenizer.encode_batch(texts, add_special_tokens=False)`.

    Each distinct word's ids sit in one flat table (`_table[_start[k]:_start[k] + _len[k]]`
    for word number k), so a block of texts is gathered with a few numpy operations instead
    of a Python loop over its words.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.tokenizer.encode_special_tokens = True  # "<s>" typed in an issue is text
        (self._separator,) = self.tokenizer.encode(_SEPARATOR, add_special_tokens=False).ids
        self._clear()

    def _clear(self) -> None:
        self.index = _WordNumbers()
        self._table = np.zeros(0, dtype=np.int32)
        self._start = np.zeros(0, dtype=np.int64)
        self._len = np.zeros(0, dtype=np.int64)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def _word_ids(self, words: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ids of `words` in one table, and where each word's ids start and how many.

        Words go to the tokenizer joined by newlines, a few long texts instead of one call
        per word (20x cheaper): a newline between two words is a word of its own to the
        pattern, so each word keeps its ids and the newline's id marks where it ends.
        Whitespace words would run into the newline and are encoded one by one.
        """
        is_space = np.fromiter(map(str.isspace, words), dtype=bool, count=len(words))
        plain = [w for w, space in zip(words, is_space, strict=True) if not space]
        joined = [_SEPARATOR.join(plain[i:i + _JOINED_WORDS])
                  for i in range(0, len(plain), _JOINED_WORDS)]
        ids = np.fromiter(chain.from_iterable(
            (*e.ids, self._separator) for e in self.tokenizer.encode_batch(
                joined, add_special_tokens=False)), dtype=np.int32)
        plain_lengths = np.diff(np.flatnonzero(ids == self._separator), prepend=-1) - 1
        spaced = self._encode([w for w, space in zip(words, is_space, strict=True) if space])
        space_lengths = np.fromiter(map(len, spaced), dtype=np.int64, count=len(spaced))
        # The table holds the plain words' ids, then the whitespace words'.
        table = np.concatenate([ids[ids != self._separator],
                                np.fromiter(chain.from_iterable(spaced), dtype=np.int32)])
        lengths = np.empty(len(words), dtype=np.int64)
        starts = np.empty(len(words), dtype=np.int64)
        lengths[~is_space], lengths[is_space] = plain_lengths, space_lengths
        starts[~is_space] = np.cumsum(plain_lengths) - plain_lengths
        starts[is_space] = plain_lengths.sum() + np.cumsum(space_lengths) - space_lengths
        return table, starts, lengths

    def _learn(self, words: list[str]) -> None:
        table, starts, lengths = self._word_ids(words)
        self._start = np.concatenate([self._start, len(self._table) + starts])
        self._len = np.concatenate([self._len, lengths])
        self._table = np.concatenate([self._table, table])

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All ids in one array, with each text's start and length in it."""
        words = [WORDS.findall(text) if is_exact(text) else None for text in texts]
        exact = [w for w in words if w is not None]
        if len(self.index) > MAX_CACHED:
            self._clear()
        flat_words = np.fromiter(map(self.index.__getitem__, chain.from_iterable(exact)),
                                 dtype=np.int64)
        if self.index.new:
            self._learn(self.index.new)
            self.index.new = []
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
