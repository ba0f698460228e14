"""Self-supervised (source, target) pairs from issue bodies: every body, titled or not, can
teach the model to write a sentence about an issue before it learns titles from fewer pairs.

- Gap-sentence generation (PEGASUS): the body's most salient sentence, the one with the
  highest ROUGE-1 F1 against the rest of the body, is cut out and left as `MASK_SENTENCE`
  in the source; the sentence is the target. Like a title, it is what the rest is about.
- Span denoising (T5): random spans of words are each replaced by `MASK_SPAN`; the target
  lists the spans in order, each after its `MASK_SPAN`.

The masks are special tokens of the tokenizer, given their ids by `featurize`; a body that
holds their text (an issue about this very project) would be ambiguous and is skipped.
"""

from __future__ import annotations

import random
import re
from collections import Counter

from summarizer.tokenization import MASK_SENTENCE, MASK_SPAN, PRETRAINING_TOKENS

MIN_SENTENCE_WORDS = 3  # fewer words than this is a label or a fragment, not a sentence
# A sentence ends at . ! or ? and a space before a letter, a digit or an opening quote,
# bracket or backtick (lowercase too: Kaggle-form bodies have no capitals); "e.g. Linux" and
# "v1.2 is" do not end one.
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\betc\.)(?<!\bvs\.)"
                           r" +(?=[^\W_]|[\"'(\[`])")
_BULLET = re.compile(r"^(?:[-*+>]|\d{1,3}[.)]) +")
# A word of prose: letters (inner ' or -), maybe quoted or bracketed, maybe punctuated.
_PROSE_WORD = re.compile(r"[\"'(\[`]?[^\W\d_]+(?:['’-][^\W\d_]+)*[.,:;!?\"')\]`]*")
_ROUGE_WORDS = re.compile(r"[^\W_]+")  # lowercase letters and digits, as titles are scored


def has_mask_text(body: str) -> bool:
    """Whether a body spells out a mask token (it would read as the mask itself)."""
    return any(token in body for token in PRETRAINING_TOKENS)


def sentences(body: str) -> list[list[str]]:
    """A cleaned body's lines, each cut into sentences. Lines stay apart: cleaning leaves
    code lines, bullet items and headings on lines of their own, and none of them runs on
    into the next line's sentence."""
    return [_SENTENCE_END.split(line) if line else [] for line in body.split("\n")]


def _usable(sentence: str) -> bool:
    """Prose, not a code line: enough words of letters, and they are most of its words
    (`$ tool --input ./data.csv > out.json` is not; `ValueError: the header is empty` is)."""
    tokens = sentence.split()
    words = sum(1 for token in tokens if _PROSE_WORD.fullmatch(token))
    return words >= MIN_SENTENCE_WORDS and 2 * words >= len(tokens)


def _rouge1_f(sentence: Counter[str], size: int, rest: Counter[str], rest_size: int) -> float:
    overlap = sum(min(count, rest[word]) for word, count in sentence.items())
    if not overlap:
        return 0.0
    precision, recall = overlap / size, overlap / rest_size
    return 2 * precision * recall / (precision + recall)


def gap_sentence(body: str, max_words: int | None = None) -> tuple[str, str] | None:
    """(the body with its most salient sentence of at most `max_words` words replaced by
    MASK_SENTENCE, that sentence), or None when the body has fewer than two usable sentences
    (one left nothing to write it from) or none short enough (a target is a title's length:
    a cut one would teach the model to stop mid-sentence). Ties go to the earlier sentence;
    a bullet's marker is not part of the target."""
    lines = sentences(body)
    words = [[Counter(_ROUGE_WORDS.findall(s.lower())) for s in line] for line in lines]
    total: Counter[str] = Counter()
    for line in words:
        for count in line:
            total.update(count)
    size = sum(total.values())
    usable = [(li, si) for li, line in enumerate(lines) for si, text in enumerate(line)
              if _usable(text)]
    candidates = [(li, si) for li, si in usable
                  if max_words is None or len(lines[li][si].split()) <= max_words]
    if len(usable) < 2 or not candidates:
        return None

    def score(place: tuple[int, int]) -> float:
        count = words[place[0]][place[1]]
        own = sum(count.values())
        return _rouge1_f(count, own, total - count, size - own)

    best = max(candidates, key=score)  # max keeps the first of equal scores
    source = "\n".join(" ".join(MASK_SENTENCE if (li, si) == best else text
                                for si, text in enumerate(line))
                       for li, line in enumerate(lines))
    return source, _BULLET.sub("", lines[best[0]][best[1]], count=1)


def _partition(total: int, parts: int, rng: random.Random) -> list[int]:
    """`total` cut into `parts` positive whole numbers, uniformly among such cuts."""
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]


def span_denoise(body: str, rng: random.Random, ratio: float = 0.15, mean_span: float = 3.0,
                 max_masked: int | None = None) -> tuple[str, str] | None:
    """(the body with spans of words each replaced by MASK_SPAN, the spans in order, each after
    a MASK_SPAN), or None for a body of fewer than two words. About `ratio` of the words are
    masked (at most `max_masked`, so the target fits its length), in spans of `mean_span`
    words on average; masked spans never touch, and the first word is always kept (the
    model learns where a sentence starts). The same `rng` state gives the same spans."""
    parts = re.split(r"(\s+)", body.strip())  # words at even places, the spacing between
    words = parts[0::2]
    count = len(words)
    if count < 2:
        return None
    masked = min(max(1, round(ratio * count)), max_masked or count, count - 1)
    spans = min(max(1, round(masked / mean_span)), masked, count - masked)
    span_lengths = _partition(masked, spans, rng)
    # Kept runs before each span (at least one word) and after the last (possibly none).
    kept_lengths = _partition(count - masked + 1, spans + 1, rng)
    kept_lengths[-1] -= 1
    source: list[str] = []
    target: list[str] = []
    word = 0
    for kept, span in zip(kept_lengths, [*span_lengths, 0], strict=True):
        for _ in range(kept):
            source += [parts[2 * word - 1] if word else "", words[word]]
            word += 1
        if span:
            source += [parts[2 * word - 1], MASK_SPAN]  # the first word is always kept
            target.append(" ".join([MASK_SPAN, *words[word:word + span]]))
            word += span
    return "".join(source), " ".join(target)
