"""The lead sentence a title may be taken from: what counts as saying something, and how it is
cut to a title's tokens."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from summarizer.decoding import DecodeConfig
from summarizer.engine import SHIPPED
from summarizer.lead import LEAD_WORDS, lead_sentence, lead_tokens
from summarizer.tokenization import title_text


@pytest.mark.parametrize(("body", "lead"), [
    ("The app crashes if I rotate the screen. It worked in 1.2.", "The app crashes if I rotate the screen."),
    ("Hi, the build fails on Windows:\n```\nerror\n```", "the build fails on Windows"),
    ("Hello everyone! Sync stops after an hour", "Sync stops after an hour"),
    ("Hey @octocat, docs link is broken", "docs link is broken"),
    ("Thanks for this great library. Export drops the last row", "Export drops the last row"),
    ("Hi\nTemplate\nVersion 2\nLogin fails with SSO enabled", "Login fails with SSO enabled"),
    ("系统：\n使用if对input进行隐藏时候导致app闪退", "使用if对input进行隐藏时候导致app闪退"),
    ("Hi\nThanks!", ""),
    ("", ""),
])
def test_the_lead_is_the_first_sentence_that_says_something(body: str, lead: str) -> None:
    assert lead_sentence(body) == lead


def test_the_lead_is_cut_to_a_titles_words() -> None:
    body = " ".join(f"word{i}" for i in range(30)) + "."
    assert lead_sentence(body).split() == [f"word{i}" for i in range(LEAD_WORDS)]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(SHIPPED / "tokenizer.json"))


def test_lead_tokens_cut_at_the_last_word_that_fits(tokenizer: Tokenizer) -> None:
    bodies = ["Login fails with SSO enabled", "Hi!",
              "java.lang.OutOfMemoryError: Failed to allocate a 202481348 byte allocation with 6668266 free",
              "定义一个元素的线性渐变属性然后通过api设置线性渐变也无效无法设置元素的线性背景"]
    found = lead_tokens(tokenizer, bodies, DecodeConfig(max_length=13, lead_bonus=0.0))  # 12 before the end
    assert title_text(tokenizer, found[0]) == "Login fails with SSO enabled"
    assert found[1] == []  # no lead: nothing to weigh
    assert all(len(ids) <= 12 for ids in found)
    cut = title_text(tokenizer, found[2])
    assert bodies[2].startswith(cut) and bodies[2][len(cut)] == " "  # whole words only
    assert len(found[3]) == 12 and bodies[3].startswith(title_text(tokenizer, found[3]))
