"""The word cache must give exactly the tokenizer's ids: on tricky strings, on the example
issues, and on real bodies from ../shared/data when it is there."""

from __future__ import annotations

import gzip
import json
from itertools import islice
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from summarizer import word_cache
from summarizer.cleaning import clean_body
from summarizer.tokenization import train_tokenizer
from summarizer.word_cache import WordCache, is_exact

REPO_ROOT = Path(__file__).resolve().parent.parent
TRICKY = [
    "it's here, don't panic; THEY'LL see it'd work 're 've 'm",
    "two  spaces, three   spaces and a trailing run   ",
    "tabs\tand\t\tmore\n\nblank lines\n\n\nthree\n",
    "   leading spaces and \n   indented lines",
    "numbers 12345 v2.3.4 0x1F -42 3.14e-10",
    "symbols <s> </s> <pad> <unk> {}[]()!?@#$%^&*_+=|\\/~`",
    "typographic … ’quotes’ “double” – dash — em • bullet → arrow 🎉 emoji",
    "accents: café naïve résumé",  # letters outside ASCII: the tokenizer's own path
    "CJK 中文 issue 标题 and Cyrillic ошибка",
    "superscript x² and a no\u00a0break space",
    "",
    " ",
    "\n",
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    texts = [line for path in sorted((REPO_ROOT / "examples" / "issues").rglob("*.csv"))
             for line in path.read_text(encoding="utf-8").splitlines()]
    return train_tokenizer([*texts, *TRICKY] * 3, vocab_size=600)


def reference(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    tokenizer.encode_special_tokens = True
    return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def test_is_exact_only_for_ascii_letters_digits_and_spaces() -> None:
    assert is_exact("plain ASCII text, with punctuation!\n\tand tabs")
    assert is_exact("typographic … ’quotes’ — and 🎉")  # punctuation and symbols anywhere
    for text in ("café", "中文", "x²", "a\u00a0b", "bad\x1cseparator", "e\u0301"):
        assert not is_exact(text), text


def test_tricky_strings_match_the_tokenizer(tokenizer: Tokenizer) -> None:
    assert WordCache(tokenizer).encode(TRICKY) == reference(tokenizer, TRICKY)


def test_cached_words_are_reused_and_still_exact(tokenizer: Tokenizer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cache = WordCache(tokenizer)
    first = cache.encode(TRICKY)
    assert cache.index, "exact texts put their words in the cache"
    assert cache.encode(TRICKY) == first
    monkeypatch.setattr(word_cache, "MAX_CACHED", 3)  # the cache starts over when full
    assert cache.encode(TRICKY[::-1]) == reference(tokenizer, TRICKY[::-1])
    assert cache.encode(TRICKY[:5]) == reference(tokenizer, TRICKY[:5])
    assert len(cache.index) < 200


def test_new_words_encoded_in_several_joined_texts(tokenizer: Tokenizer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(word_cache, "_JOINED_WORDS", 3)  # new words go in many short texts
    assert WordCache(tokenizer).encode(TRICKY) == reference(tokenizer, TRICKY)


def test_example_bodies_match_the_tokenizer(tokenizer: Tokenizer) -> None:
    rows = json.loads((REPO_ROOT / "examples" / "issues" / "rest-api-page.json").read_text())
    texts = [clean_body(r["body"] or "") for r in rows] + [r["body"] or "" for r in rows]
    assert WordCache(tokenizer).encode(texts) == reference(tokenizer, texts)


def test_real_bodies_match_the_tokenizer(tokenizer: Tokenizer, shared_data: Path) -> None:
    with gzip.open(shared_data / "github-issues.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in islice(handle, 3000)]
    texts = [clean_body(r["body"] or "")[:1536] for r in rows] + [r["title"] for r in rows]
    assert sum(map(is_exact, texts)) > 0.9 * len(texts)
    assert WordCache(tokenizer).encode(texts) == reference(tokenizer, texts)
