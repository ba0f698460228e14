"""Title quality scores: ROUGE-1/2/L F1 (`rouge-score`), corpus BLEU (`sacrebleu`), length."""

from __future__ import annotations

import logging
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
