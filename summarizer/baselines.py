"""Titles without a model: what any model must beat to be worth serving."""

from __future__ import annotations

import re
from collections.abc import Callable

SENTENCE_END = re.compile(r"(?<=[.!?])\s|\n")


def first_words(body: str, words: int = 8) -> str:
    """The first `words` words of the body."""
    return " ".join(body.split()[:words])


def first_sentence(body: str, words: int = 12) -> str:
    """The first sentence (or line) of the body, cut to `words` words."""
    sentence = next((part for part in SENTENCE_END.split(body) if part.strip()), "")
    return " ".join(sentence.split()[:words])


BASELINES: dict[str, Callable[[str], str]] = {
    "first-sentence": first_sentence,
    "first-8-words": first_words,
}
