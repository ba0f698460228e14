"""Title quality scores: ROUGE-1/2/L F1 (`rouge-score`), corpus BLEU (`sacrebleu`), length, and
identifiers a title has that its body does not."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import sacrebleu
from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs each scorer it builds
_SCORER = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def score(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean F1 of each ROUGE type and corpus BLEU, as percentages, plus mean title words."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return {"count": 0}
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references, strict=True):
        for name, value in _SCORER.score(reference, prediction).items():
            totals[name] += value.fmeasure
    n = len(predictions)
    return {
        "count": n,
        **{name: round(100 * total / n, 2) for name, total in totals.items()},
        "bleu": round(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score, 2),
        **title_stats(predictions),
    }


def title_stats(titles: Sequence[str]) -> dict[str, float]:
    """How titles read, whoever wrote them: real titles give the level to compare a model with
    (people repeat a word too: "Error in the docs of the API")."""
    n = max(len(titles), 1)
    return {
        "mean_words": round(sum(len(t.split()) for t in titles) / n, 2),
        "empty": round(100 * sum(not t.strip() for t in titles) / n, 2),
        "repeated_word": round(100 * sum(_repeats_word(t) for t in titles) / n, 2),
    }


def _repeats_word(title: str) -> bool:
    """A word (letters and digits, any case) said twice: how a looping decoder shows."""
    words = [w for w in (w.strip(".,:;!?()[]{}'\"`").lower() for w in title.split()) if w.isalnum()]
    return len(words) != len(set(words))


_EDGE_PUNCTUATION = "`'\"()[]{}<>*"
_TRAILING_PUNCTUATION = _EDGE_PUNCTUATION + ":,;.!?"
_IDENTIFIER_SHAPE = re.compile(
    r"\d|_|::"  # a digit (v2, 404, utf-8), snake_case, Rust or C++ paths
    r"|\w\.\w"  # a dot between word characters: os.path, v1.2, setup.py
    r"|[a-z][A-Z]|[A-Z]{2}[a-z]{2}")  # an inner capital: getValue, NullPointerException, OSError
_ABBREVIATION = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # e.g, i.e, U.S: dotted, not identifiers


def title_tokens(text: str) -> list[str]:
    """Words split on whitespace with quotes, backticks, brackets, `*` and trailing `:,;.!?`
    taken off, so `` `os.path`, `` and os.path are one token; bare punctuation is no token."""
    tokens = (word.lstrip(_EDGE_PUNCTUATION).rstrip(_TRAILING_PUNCTUATION) for word in text.split())
    return [token for token in tokens if token]


def looks_like_identifier(token: str) -> bool:
    """Code, versions and names a title should only take from the body: a digit, `_`, `::`, a
    dot between word characters, or an inner capital: after a lower-case letter (getValue,
    NullPointerException, iOS) or ending a run of capitals before two lower-case letters
    (HTTPError). A capitalized or all-caps word (Python, API, URLs) is not one, nor a dotted
    abbreviation (e.g., i.e.)."""
    return bool(_IDENTIFIER_SHAPE.search(token)) and not _ABBREVIATION.fullmatch(token)


def invented_identifiers(title: str, body: str) -> tuple[list[str], list[str]]:
    """The title's identifier-like tokens, and those of them the body does not have as a whole
    word (case-sensitive: `GetValue` is not `getValue`): what a model made up rather than
    copied, the hallucination a reader cannot tell from a real function or version."""
    identifiers = [token for token in title_tokens(title) if looks_like_identifier(token)]
    invented = [token for token in identifiers
                if not re.search(rf"(?<!\w){re.escape(token)}(?!\w)", body)]
    return identifiers, invented


def invention_stats(titles: Sequence[str], bodies: Sequence[str]) -> dict[str, float]:
    """Shares in [0, 1]: of all title tokens, those that are invented identifiers (long titles
    weigh more), and of titles, those with at least one (how often a reader meets one)."""
    if len(titles) != len(bodies):
        raise ValueError(f"{len(titles)} titles for {len(bodies)} bodies")
    tokens = inventing = invented_tokens = 0
    for title, body in zip(titles, bodies, strict=True):
        invented = invented_identifiers(title, body)[1]
        tokens += len(title_tokens(title))
        invented_tokens += len(invented)
        inventing += bool(invented)
    return {"invented_token_share": round(invented_tokens / max(tokens, 1), 4),
            "inventing_title_share": round(inventing / max(len(titles), 1), 4)}
