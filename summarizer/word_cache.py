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
    """Encodes texts like `tokenizer.encode_batch(texts, add_special_tokens=False)`."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.tokenizer.encode_special_tokens = True  # "<s>" typed in an issue is text
        self.ids: dict[str, list[int]] = {}

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if len(self.ids) > MAX_CACHED:
            self.ids.clear()
        words = [WORDS.findall(text) if is_exact(text) else None for text in texts]
        new = list({w for text_words in words if text_words for w in text_words} - self.ids.keys())
        self.ids.update(zip(new, self._encode(new), strict=True))
        others = [text for text, text_words in zip(texts, words, strict=True) if text_words is None]
        encoded_others = iter(self._encode(others))
        lookup = self.ids.__getitem__
        return [list(chain.from_iterable(map(lookup, text_words))) if text_words is not None
                else next(encoded_others) for text_words in words]
