"""The body's lead sentence as a title candidate.

Many people open an issue with its title's sentence ("The app crashes when I rotate the
screen."). The model cannot always say that as well in its own words, so decoding also weighs
the lead sentence by the model's own probability and keeps it when the model finds it about
as likely as its own title (see `decoding.DecodeConfig.lead_bonus`). Greetings and thanks
open many bodies without saying anything, so the lead is the first sentence after them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tokenizers import Encoding, Tokenizer

from summarizer.baselines import SENTENCE_END
from summarizer.decoding import DecodeConfig

LEAD_WORDS = 12  # tuned on dev with the bonus: longer leads win more but read less like titles
_MIN_WORDS = 3  # "Hi team", "Template:", "Version" say nothing of the issue
_MIN_CHARS_UNSPACED = 6  # Chinese or Japanese write a sentence without spaces
_GREETING = re.compile(
    r"(?:hi|hello|hey|dear|greetings)"
    r"(?:\s+(?:all|everyone|everybody|there|team|guys|folks|devs|developers|@[\w-]+))?[,!.:]*\s+",
    re.IGNORECASE)
_SMALL_TALK = re.compile(r"(?:thanks|thank you|first of all|hi|hello|hey)\b", re.IGNORECASE)


def lead_sentence(body: str, words: int = LEAD_WORDS) -> str:
    """The first sentence (or line) of a cleaned body that says something, cut to `words`
    words; "" when none does."""
    for part in SENTENCE_END.split(body):
        text = part.strip()
        greeting = _GREETING.match(text)
        if greeting:
            text = text[greeting.end():]
        if not text or _SMALL_TALK.match(text):
            continue
        kept = text.split()
        if len(kept) >= _MIN_WORDS or (not text.isascii() and len(text) >= _MIN_CHARS_UNSPACED):
            return " ".join(kept[:words]).rstrip(":,;")
    return ""


def lead_tokens(tokenizer: Tokenizer, bodies: Sequence[str], config: DecodeConfig) -> list[list[int]]:
    """Each cleaned body's lead sentence as title token ids ([] where there is none, and for
    every body when `config` weighs no leads), cut to the tokens a title may have before its
    end token: at the last word that fits, or mid-word where one word is longer (Chinese
    writes a sentence as one)."""
    if config.lead_bonus is None:
        return [[] for _ in bodies]
    max_tokens = config.max_length - 1
    leads = [lead_sentence(body) for body in bodies]
    encoded = iter(tokenizer.encode_batch([lead for lead in leads if lead], add_special_tokens=False))
    return [_fit(next(encoded), lead, max_tokens) if lead else [] for lead in leads]


def _fit(encoding: Encoding, text: str, max_tokens: int) -> list[int]:
    ids = encoding.ids
    if len(ids) <= max_tokens:
        return ids
    for cut in range(max_tokens, 0, -1):
        start = encoding.offsets[cut][0]
        if text[start - 1:start].isspace() or text[start:start + 1].isspace():
            return ids[:cut]
    return ids[:max_tokens]
