"""Greedy and beam search over any step function, in numpy.

One decoder serves every engine (a Keras model while training and evaluating, ONNX Runtime
when serving), so the same inputs give the same titles everywhere. An engine supplies:

- `step(tokens, state) -> (log_probs, state)`: the next-token log-probabilities `[rows, vocab]`
  (float32) for the last token of each row `[rows]`, and the state carried to the next step;
  the ONNX decoder computes them in its graph, faster than numpy here;
- `select(state, rows) -> state`: the state of the given rows, in that order (beam search
  reorders and repeats rows; a GRU state or a key/value cache is indexed along its rows).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

Step = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]
Select = Callable[[Any, np.ndarray], Any]
NEG_INF = -1e9
# What serving decodes with unless asked otherwise (evaluation's defaults are all off):
DEFAULT_NO_REPEAT_NGRAM = 2  # a title rarely says the same two words twice
# The penalties and the lead bonus were tuned together for the shipped model on 2,000 dev
# issues (ROUGE-L): end penalty 0.5 / 1.0 / 1.5 gave 22.37 / 22.62 / 22.35 without leads, and
# with an end penalty of 1.0, a lead bonus of 0 / 0.25 gave 22.88 / 22.72 (1.5 had given 20.8).
DEFAULT_REPEAT_PENALTY = 2.0  # nor one word twice (1.0: 22.81, more repeating titles); see `_ban`
DEFAULT_END_PENALTY = 1.0  # greedy titles end early otherwise
# The lead sentence wins only where the model finds it at least as likely as its own title.
DEFAULT_LEAD_BONUS = 0.0
# A sampled title's tokens are drawn from those at least this likely: rarer ones are mostly the
# model's noise. On 1,000 dev issues, consensus over 4 beams, the greedy title, the lead and 12
# samples gave ROUGE-L 25.09 with a floor of 0.02 (T 0.7 with no floor: 24.83); without samples, 23.64.
SAMPLE_FLOOR = 0.02
SAMPLED_TOGETHER = 256  # sampled rows decoded at once: each holds its body's keys and values
# Bounds every entry point shares: each beam and each sample costs about one greedy title, and
# a title past 64 tokens is no title (the shipped model writes at most 22).
MAX_BEAMS = 16
MAX_SAMPLES = 64
MAX_LENGTH = 64


@dataclass(frozen=True)
class DecodeConfig:
    num_beams: int = 1
    max_length: int = 22  # generated tokens, the end token included
    min_length: int = 1  # generated tokens before the end token is allowed
    length_penalty: float = 1.0  # beam scores are log-probability / length ** length_penalty
    no_repeat_ngram: int = 0  # 0: off; n: no n-gram appears twice in a title
    repeat_penalty: float = 0.0  # taken off the log-probability of each token already in the title
    end_penalty: float = 0.0  # taken off the end token's log-probability: longer titles
    num_return: int = 1  # candidates returned per input (at most num_beams)
    # None: off. Else the body's lead sentence (see `lead`) comes first when its mean
    # log-probability per token plus this bonus beats the best title's (penalties left out).
    lead_bonus: float | None = None
    # Pick among the beams, the greedy title, the lead (when on) and `samples` sampled titles
    # the one most like the others (see `consensus`), instead of the likeliest.
    consensus: bool = False
    samples: int = 0  # titles drawn from the model (see `sample`) for the consensus to weigh

    def __post_init__(self) -> None:
        if not 1 <= self.num_beams <= MAX_BEAMS:
            raise ValueError(f"num_beams must be from 1 to {MAX_BEAMS}")
        if not 1 <= self.max_length <= MAX_LENGTH or not 0 <= self.min_length <= self.max_length:
            raise ValueError(f"max_length must be from 1 to {MAX_LENGTH}, min_length from 0 to max_length")
        if not all(map(math.isfinite, (self.length_penalty, self.repeat_penalty, self.end_penalty))):
            raise ValueError("length_penalty, repeat_penalty and end_penalty must be finite numbers")
        if self.repeat_penalty < 0 or self.end_penalty < 0:
            raise ValueError("repeat_penalty and end_penalty must be at least 0")
        if self.lead_bonus is not None and not math.isfinite(self.lead_bonus):
            raise ValueError("lead_bonus must be a finite number (or None: off)")
        if not 1 <= self.num_return <= self.num_beams:
            raise ValueError("num_return must be between 1 and num_beams")
        if not 0 <= self.samples <= MAX_SAMPLES:
            raise ValueError(f"samples must be from 0 to {MAX_SAMPLES}")
        if self.samples and not self.consensus:
            raise ValueError("sampled titles only serve the consensus: turn consensus on, or samples to 0")
        if self.consensus and self.num_beams < 2 and self.samples < 2:
            raise ValueError("consensus needs titles to choose among: num_beams or samples at least 2")


SERVING_DECODING = DecodeConfig(no_repeat_ngram=DEFAULT_NO_REPEAT_NGRAM,
                                repeat_penalty=DEFAULT_REPEAT_PENALTY, end_penalty=DEFAULT_END_PENALTY,
                                lead_bonus=DEFAULT_LEAD_BONUS)


@dataclass(frozen=True)
class Candidate:
    tokens: list[int]  # generated tokens, without start and end
    # log-probability (less any penalties) / length ** length_penalty; a lead's: likelihood + bonus
    score: float
    likelihood: float  # mean log-probability per token (end included), without penalties


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """In float32: exact enough to rank tokens, and half the work of float64 over a vocabulary."""
    logits = np.asarray(logits, dtype=np.float32)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _ban(log_probs: np.ndarray, history: list[list[int]], length: int, end_id: int,
         config: DecodeConfig) -> np.ndarray:
    """Rule out an early end and repeated n-grams, and make a token said before less likely, row
    by row. The penalty, unlike a ban, still lets a version's second "." through when the model
    is sure; a copying model otherwise loops on a body's token ("0.0.0.0"). The end penalty,
    unlike a minimum length, still ends a title the model is sure is done."""
    if length < config.min_length:
        log_probs[:, end_id] = NEG_INF
    else:
        log_probs[:, end_id] -= config.end_penalty
    n = config.no_repeat_ngram
    if n and length >= n - 1:
        for row, tokens in enumerate(history):
            prefix = tuple(tokens[len(tokens) - n + 1:]) if n > 1 else ()
            banned = [tokens[i + n - 1] for i in range(len(tokens) - n + 1)
                      if tuple(tokens[i:i + n - 1]) == prefix]
            log_probs[row, banned] = NEG_INF
    if config.repeat_penalty:
        for row, tokens in enumerate(history):
            log_probs[row, tokens] -= config.repeat_penalty  # once per token, however often said
    return log_probs


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the `k` largest values, largest first (ties: lower index first);
    a partition then a sort of only those, since a full sort of beams x vocabulary is slow."""
    k = min(k, values.shape[-1])
    top = np.argpartition(-values, k - 1, axis=-1)[:, :k]
    top.sort(axis=-1)  # equal values then keep index order through the stable sort below
    picked = np.take_along_axis(values, top, axis=-1)
    return np.take_along_axis(top, np.argsort(-picked, axis=-1, kind="stable"), axis=-1)


Choose = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # (log_probs, inputs, length) -> tokens


def greedy(step: Step, select: Select, state: Any, batch: int, start_id: int, end_id: int,
           config: DecodeConfig) -> list[Candidate]:
    """The most likely next token at every step, for each of `batch` inputs."""
    return _one_each(step, select, state, batch, start_id, end_id, config,
                     lambda log_probs, inputs, length: log_probs.argmax(axis=-1))


def sample(step: Step, select: Select, state: Any, batch: int, start_id: int, end_id: int,
           config: DecodeConfig, uniforms: np.ndarray) -> list[Candidate]:
    """A title drawn from the model for each of `batch` inputs: each token from those at least
    `SAMPLE_FLOOR` likely after the penalties, in proportion to that. `uniforms` `[batch, max_length]`
    in [0, 1) decide each draw, so a caller that seeds them per input gets the same titles for
    an input whatever else shares its batch."""
    def draw(log_probs: np.ndarray, inputs: np.ndarray, length: int) -> np.ndarray:
        # The steps give normalized log-probabilities, which the penalties only lower: so only a
        # few tokens (at most 1 / SAMPLE_FLOOR a row) are above the floor; the likeliest always is.
        top = log_probs.max(axis=-1)
        rows, tokens = np.nonzero(log_probs >= np.minimum(math.log(SAMPLE_FLOOR), top)[:, None])
        cumulative = np.cumsum(np.exp(log_probs[rows, tokens], dtype=np.float64))
        starts = np.searchsorted(rows, np.arange(len(log_probs)))  # each row's first kept token
        before = np.r_[0.0, cumulative][starts]
        last = np.r_[starts[1:], len(rows)] - 1
        row_sums = cumulative[last] - before
        targets = before + uniforms[inputs, length] * row_sums
        picked = np.minimum(np.searchsorted(cumulative, targets, side="right"), last)
        return tokens[picked]

    return _one_each(step, select, state, batch, start_id, end_id, config, draw)


def _one_each(step: Step, select: Select, state: Any, batch: int, start_id: int, end_id: int,
              config: DecodeConfig, choose: Choose) -> list[Candidate]:
    """One title per input, `choose` picking each next token. Finished inputs leave the batch,
    so a long title does not keep every other row decoding; they leave a few at a time, since
    each leaving copies the whole state (the body's keys and values)."""
    history: list[list[int]] = [[] for _ in range(batch)]
    scores, raw_scores = np.zeros(batch), np.zeros(batch)
    ended = np.zeros(batch, dtype=bool)
    rows = np.arange(batch)  # the input of each state row
    tokens = np.full(batch, start_id, dtype=np.int64)
    for length in range(config.max_length):
        raw, state = step(tokens, state)
        live = np.flatnonzero(~ended[rows])  # state rows still decoding
        raw = np.asarray(raw, dtype=np.float32)
        # Indexing copies the rows, so the penalties leave `raw` as the model gave it.
        log_probs = _ban(raw[live], [history[row] for row in rows[live]], length, end_id, config)
        chosen = choose(log_probs, rows[live], length)
        scores[rows[live]] += log_probs[np.arange(len(live)), chosen]
        raw_scores[rows[live]] += raw[live, chosen]
        stops = chosen == end_id
        for row, token in zip(rows[live[~stops]], chosen[~stops], strict=True):
            history[row].append(int(token))
        ended[rows[live[stops]]] = True
        if stops.all():
            break
        tokens = np.full(len(rows), end_id, dtype=np.int64)  # finished rows idle on the end token
        tokens[live] = chosen
        if ended[rows].sum() * 4 >= len(rows):
            keep = np.flatnonzero(~ended[rows])
            state, rows, tokens = select(state, keep), rows[keep], tokens[keep]
    return [Candidate(history[row], float(scores[row] / _length(history[row], ended[row], config)),
                      _mean(raw_scores[row], history[row], ended[row])) for row in range(batch)]


def _mean(total: float, tokens: list[int], ended: bool) -> float:
    return float(total / max(len(tokens) + int(ended), 1))


def _length(tokens: list[int], ended: bool, config: DecodeConfig) -> float:
    return (len(tokens) + int(ended)) ** config.length_penalty


def beam_search(step: Step, select: Select, state: Any, batch: int, start_id: int, end_id: int,
                config: DecodeConfig) -> list[list[Candidate]]:
    """The `num_return` best titles per input, best first, keeping `num_beams` alive."""
    beams = config.num_beams
    state = select(state, np.repeat(np.arange(batch), beams))
    history: list[list[int]] = [[] for _ in range(batch * beams)]
    # Only the first beam of each input is live at the start, so beams do not start as copies.
    scores = np.tile(np.r_[0.0, np.full(beams - 1, NEG_INF)], batch)
    raw_scores = np.zeros(batch * beams)
    finished: list[list[Candidate]] = [[] for _ in range(batch)]
    open_inputs = np.ones(batch, dtype=bool)
    tokens = np.full(batch * beams, start_id, dtype=np.int64)
    for length in range(config.max_length):
        raw, state = step(tokens, state)
        raw = np.asarray(raw, dtype=np.float32)
        log_probs = _ban(raw.copy(), history, length, end_id, config)
        vocab = log_probs.shape[-1]
        totals = (scores[:, None] + log_probs).reshape(batch, beams * vocab)
        order = _top(totals, 2 * beams)  # enough to refill every beam even if half the best end
        rows, next_tokens, next_scores, next_raw, next_history = [], [], [], [], []
        for item in range(batch):
            chosen = 0
            if not open_inputs[item]:
                order[item] = 0  # a finished input only keeps its rows alive
                totals[item] = NEG_INF
            for flat in order[item]:
                total = totals[item, flat]
                if total <= NEG_INF / 2 or chosen == beams:
                    break
                row, token = item * beams + flat // vocab, int(flat % vocab)
                raw_total = raw_scores[row] + raw[row, token]
                last = length == config.max_length - 1
                if token == end_id or last:
                    ended = token == end_id
                    tokens_so_far = history[row] + ([] if ended else [token])
                    finished[item].append(Candidate(
                        tokens_so_far, float(total / _length(tokens_so_far, ended, config)),
                        _mean(raw_total, tokens_so_far, ended)))
                    chosen += last  # at the last step every candidate takes a beam's place
                    continue
                rows.append(row)
                next_tokens.append(token)
                next_scores.append(total)
                next_raw.append(raw_total)
                next_history.append(history[row] + [token])
                chosen += 1
            while chosen < beams:  # pad with dead beams so every input keeps its rows
                rows.append(item * beams)
                next_tokens.append(end_id)
                next_scores.append(NEG_INF)
                next_raw.append(0.0)
                next_history.append(list(history[item * beams]))
                chosen += 1
            # Early stopping: an input is done once it has `num_beams` finished titles. With
            # one beam this is exactly greedy search.
            open_inputs[item] = len(finished[item]) < beams
        if not open_inputs.any():
            break
        state = select(state, np.asarray(rows))
        tokens = np.asarray(next_tokens, dtype=np.int64)
        scores = np.where(np.repeat(open_inputs, beams), np.asarray(next_scores), NEG_INF)
        raw_scores = np.asarray(next_raw)
        history = next_history
    return [sorted(found, key=lambda c: -c.score)[: config.num_return] for found in finished]


Scorer = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
Words = Callable[[list[int]], list[str]]  # a title's tokens -> its words, as ROUGE splits them


def with_leads(found: list[list[Candidate]], leads: Sequence[Sequence[int]], score: Scorer, start_id: int,
               end_id: int, pad_id: int, config: DecodeConfig) -> list[list[Candidate]]:
    """Each input's lead (its lead sentence as tokens, [] for none) first where it wins: where
    its mean log-probability per token plus `config.lead_bonus` beats the best title's; the
    titles after it move down one place. An engine supplies `score(rows, titles, targets)`: for
    those input rows, each `targets` token's log-probability after `titles` up to it, `[R, T]`,
    every position at once as in training (teacher forcing)."""
    if config.lead_bonus is None:
        return found
    return _leads_first(found, _scored_leads(leads, score, start_id, end_id, pad_id, config), config)


def _leads_first(found: list[list[Candidate]], scored: list[Candidate | None],
                 config: DecodeConfig) -> list[list[Candidate]]:
    chosen = []
    for titles_found, lead in zip(found, scored, strict=True):
        if lead is not None and lead.likelihood + config.lead_bonus > titles_found[0].likelihood:
            titles_found = [lead, *(t for t in titles_found if t.tokens != lead.tokens)][:config.num_return]
        chosen.append(titles_found)
    return chosen


def _scored_leads(leads: Sequence[Sequence[int]], score: Scorer, start_id: int, end_id: int, pad_id: int,
                  config: DecodeConfig) -> list[Candidate | None]:
    """Each lead as a candidate (None for none), scored likelihood + bonus: a lead that wins
    ranks above the titles it beat (they score at most their likelihood: penalties only take off)."""
    rows = np.flatnonzero([len(lead) > 0 for lead in leads])
    scored: list[Candidate | None] = [None] * len(leads)
    if not len(rows):
        return scored
    width = max(len(leads[row]) for row in rows) + 1
    titles = np.full((len(rows), width), pad_id, dtype=np.int64)
    targets = np.full((len(rows), width), pad_id, dtype=np.int64)
    for i, row in enumerate(rows):
        titles[i, :len(leads[row]) + 1] = [start_id, *leads[row]]
        targets[i, :len(leads[row]) + 1] = [*leads[row], end_id]
    real = targets != pad_id
    likelihood = (np.where(real, score(rows, titles, targets), 0.0)).sum(axis=1) / real.sum(axis=1)
    for row, value in zip(rows, likelihood, strict=True):
        scored[row] = Candidate(list(leads[row]), float(value + config.lead_bonus), float(value))
    return scored


def _overlap(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L's F1: 2 x longest common subsequence / total length."""
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return 2 * previous[-1] / (len(a) + len(b))


def consensus(pool: list[Candidate], num_return: int, words: Words) -> list[Candidate]:
    """Minimum Bayes risk: the candidate whose words overlap most with all the others' comes
    first (a title that several searches agree on), then the rest in their order, one per
    distinct wording. Repeats vote twice. Words, not tokens: a long word split in pieces would
    weigh more."""
    split = [tuple(words(candidate.tokens)) for candidate in pool]
    distinct = list(dict.fromkeys(split))  # samples often repeat: each pair is compared once
    votes = np.array([split.count(title) for title in distinct], dtype=np.float64)
    overlaps = np.zeros((len(distinct), len(distinct)))
    for i, j in zip(*np.triu_indices(len(distinct), 1), strict=True):
        overlaps[i, j] = overlaps[j, i] = _overlap(distinct[i], distinct[j])
    nonempty = np.array([len(title) > 0 for title in distinct])
    agreement = overlaps @ votes + (votes - 1) * nonempty  # each repeat of a title agrees with it fully
    # Then the others in pool order, one per distinct wording: titles that differ only by a
    # quote, a full stop or case are one choice to a reader. Only when the wordings run out do
    # such variants fill the places asked for (servers answer num_return titles a body).
    first = int(np.argmax(agreement))
    ordered = [pool[split.index(distinct[first])]]
    ordered += [pool[split.index(title)] for index, title in enumerate(distinct) if index != first]
    seen = {tuple(candidate.tokens) for candidate in ordered}
    for candidate in pool:
        if len(ordered) >= num_return:
            break
        if tuple(candidate.tokens) not in seen:
            seen.add(tuple(candidate.tokens))
            ordered.append(candidate)
    return ordered[:num_return]


def decode(step: Step, select: Select, state: Any, leads: Sequence[Sequence[int]], score: Scorer,
           special: tuple[int, int, int], words: Words, config: DecodeConfig) -> list[list[Candidate]]:
    """Titles for a batch of inputs (`special`: start, end and pad ids): search, then the leads
    weighed (`with_leads`), or with `config.consensus` the consensus of the beams, the greedy
    title (weighed against the lead), the lead and the sampled titles."""
    start_id, end_id, pad_id = special
    if not config.consensus:
        found = search(step, select, state, len(leads), start_id, end_id, config)
        return with_leads(found, leads, score, start_id, end_id, pad_id, config)
    batch = len(leads)
    alone = replace(config, num_beams=1, num_return=1, consensus=False, samples=0)
    greedy_found = search(step, select, state, batch, start_id, end_id, alone)
    beams: list[list[Candidate]] = [[] for _ in range(batch)]
    if config.num_beams > 1:
        beams = search(step, select, state, batch, start_id, end_id,
                       replace(config, num_return=config.num_beams))
    # Seeded by each input's greedy title: the same body gets the same samples in any batch.
    drawn = _samples(step, select, state, [best.tokens for [best] in greedy_found], start_id, end_id, config)
    scored: list[Candidate | None] = [None] * batch
    if config.lead_bonus is not None:  # each lead scored once: weighed against greedy, then in the pool
        scored = _scored_leads(leads, score, start_id, end_id, pad_id, config)
        greedy_found = _leads_first(greedy_found, scored, alone)
    return [consensus([*found, *best, *([lead] if lead else []), *extra], config.num_return, words)
            for found, best, lead, extra in zip(beams, greedy_found, scored, drawn, strict=True)]


def _samples(step: Step, select: Select, state: Any, seeds: list[list[int]], start_id: int, end_id: int,
             config: DecodeConfig) -> list[list[Candidate]]:
    """`config.samples` sampled titles per input, a few inputs at a time (each sample holds a
    copy of its body's state), each input's draws seeded by the tokens in `seeds`."""
    drawn: list[list[Candidate]] = [[] for _ in seeds]
    if not config.samples:
        return drawn
    together = max(SAMPLED_TOGETHER // config.samples, 1)
    for begin in range(0, len(seeds), together):
        inputs = np.arange(begin, min(begin + together, len(seeds)))
        uniforms = np.concatenate([
            np.random.default_rng(zlib.crc32(np.asarray(seeds[i], dtype=np.int64).tobytes()))
            .random((config.samples, config.max_length)) for i in inputs])
        found = sample(step, select, select(state, np.repeat(inputs, config.samples)),
                       len(inputs) * config.samples, start_id, end_id, config, uniforms)
        for k, i in enumerate(inputs):
            drawn[i] = found[k * config.samples:(k + 1) * config.samples]
    return drawn


def search(step: Step, select: Select, state: Any, batch: int, start_id: int, end_id: int,
           config: DecodeConfig) -> list[list[Candidate]]:
    """Greedy search for one beam, beam search otherwise: `num_return` candidates per input."""
    if config.num_beams == 1:
        return [[found] for found in greedy(step, select, state, batch, start_id, end_id, config)]
    return beam_search(step, select, state, batch, start_id, end_id, config)
