"""Greedy and beam search on toy step functions whose best answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from summarizer.decoding import (
    Candidate,
    DecodeConfig,
    beam_search,
    consensus,
    decode,
    greedy,
    log_softmax,
    sample,
    search,
    with_leads,
)

START, END, A, B, C = 2, 3, 4, 5, 6
VOCAB = 7


def table_model(tables: np.ndarray):
    """A bigram model per input: log-probabilities = tables[input, last token]. The state is each row's
    input number, so a wrong `select` shows up as another input's answers."""

    def step(tokens: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return tables[state, tokens], state

    def select(state: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return state[rows]

    return step, select


def probabilities(rows: dict[int, dict[int, float]]) -> np.ndarray:
    """Normalized next-token log-probabilities; unlisted tokens share what is left over."""
    table = np.zeros((VOCAB, VOCAB))
    for last in range(VOCAB):
        listed = rows.get(last, {})
        rest = (1 - sum(listed.values())) / (VOCAB - len(listed))
        table[last] = max(rest, 1e-9)
        for token, p in listed.items():
            table[last, token] = p
    return np.log(table)


def run_beam(tables: np.ndarray, config: DecodeConfig) -> list[list[Candidate]]:
    step, select = table_model(tables)
    return beam_search(step, select, np.arange(len(tables)), len(tables), START, END, config)


def run_greedy(tables: np.ndarray, config: DecodeConfig) -> list[Candidate]:
    step, select = table_model(tables)
    return greedy(step, select, np.arange(len(tables)), len(tables), START, END, config)


# Greedy takes A (0.6) and then can only end weakly; B (0.4) then END (0.99) is more likely.
GARDEN_PATH = probabilities({START: {A: 0.6, B: 0.4}, A: {END: 0.3, A: 0.35, C: 0.35},
                             B: {END: 0.99}, C: {END: 0.3, A: 0.35, C: 0.35}})


def test_log_softmax_rows_sum_to_one() -> None:
    out = log_softmax(np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 0.0]]))
    np.testing.assert_allclose(np.exp(out).sum(axis=-1), 1.0)
    assert np.isfinite(out).all()


def test_greedy_follows_the_most_likely_token() -> None:
    tables = probabilities({START: {A: 0.9}, A: {B: 0.8}, B: {END: 0.7}})[None]
    (found,) = run_greedy(tables, DecodeConfig(max_length=10))
    assert found.tokens == [A, B]
    assert found.score == pytest.approx((np.log(0.9) + np.log(0.8) + np.log(0.7)) / 3)


def test_beam_search_beats_greedy_on_a_garden_path() -> None:
    config = DecodeConfig(max_length=6, length_penalty=0.0)
    assert run_greedy(GARDEN_PATH[None], config)[0].tokens[:1] == [A]
    best = run_beam(GARDEN_PATH[None], DecodeConfig(num_beams=3, max_length=6, length_penalty=0.0))
    assert best[0][0].tokens == [B]
    assert best[0][0].score == pytest.approx(np.log(0.4) + np.log(0.99))


@pytest.mark.parametrize("config", [
    DecodeConfig(max_length=8),
    DecodeConfig(max_length=5, min_length=3),
    DecodeConfig(max_length=12, no_repeat_ngram=2, length_penalty=0.6),
    DecodeConfig(max_length=3, length_penalty=0.0),
])
def test_one_beam_is_greedy(config: DecodeConfig) -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        tables = rng.normal(size=(3, VOCAB, VOCAB)) * 3
        beams = run_beam(tables, config)
        assert [b[0] for b in beams] == run_greedy(tables, config)


def test_min_and_max_length() -> None:
    ends_at_once = probabilities({START: {END: 0.9, A: 0.1}, A: {END: 0.9, A: 0.1}})[None]
    for kind in ("greedy", "beam"):
        config = DecodeConfig(num_beams=1 if kind == "greedy" else 3, min_length=3, max_length=5)
        found = (run_greedy(ends_at_once, config)[0] if kind == "greedy"
                 else run_beam(ends_at_once, config)[0][0])
        assert len(found.tokens) >= 3
    never_ends = probabilities({START: {A: 0.9}, A: {A: 0.9}})[None]
    assert len(run_beam(never_ends, DecodeConfig(num_beams=2, max_length=4))[0][0].tokens) == 4
    assert len(run_greedy(never_ends, DecodeConfig(max_length=4))[0].tokens) == 4


def test_no_repeat_ngram() -> None:
    cycling = probabilities({START: {A: 0.9}, A: {B: 0.9}, B: {A: 0.9}, C: {END: 0.9}})[None]
    for config in (DecodeConfig(max_length=8, no_repeat_ngram=2),
                   DecodeConfig(num_beams=3, max_length=8, no_repeat_ngram=2)):
        found = (run_beam(cycling, config)[0][0] if config.num_beams > 1
                 else run_greedy(cycling, config)[0])
        pairs = list(zip(found.tokens, found.tokens[1:], strict=False))
        assert len(pairs) == len(set(pairs)), found.tokens
    free = run_greedy(cycling, DecodeConfig(max_length=8))[0].tokens
    assert free[:4] == [A, B, A, B]  # without the rule the model repeats itself


def test_repeat_penalty_lowers_a_token_said_before_without_banning_it() -> None:
    """A loves to follow A (0.6); penalized by 1 (a factor e) it falls to 0.22, under END's
    0.25, so the title ends; a sure repeat (0.97, penalized 0.36) still wins."""
    looping = probabilities({START: {A: 0.9}, A: {A: 0.6, END: 0.25, C: 0.1}, C: {END: 0.9}})[None]
    assert run_greedy(looping, DecodeConfig(max_length=4))[0].tokens == [A, A, A, A]
    found = run_greedy(looping, DecodeConfig(max_length=4, repeat_penalty=1.0))[0]
    assert found.tokens == [A]  # 0.6 / e = 0.22 < END's 0.25
    score = (np.log(0.9) + np.log(0.25)) / 2  # END was never said: no penalty on it
    assert found.score == pytest.approx(score)
    sure = probabilities({START: {A: 0.9}, A: {A: 0.97}})[None]
    assert run_greedy(sure, DecodeConfig(max_length=3, repeat_penalty=1.0))[0].tokens == [A, A, A]
    beam = run_beam(looping, DecodeConfig(num_beams=3, max_length=4, repeat_penalty=1.0))[0][0]
    assert beam.tokens == [A]


def test_end_penalty_lengthens_a_title_without_forbidding_a_sure_end() -> None:
    """After A, END (0.4) beats B (0.35); an end penalty of 0.5 (a factor 0.61) puts END at
    0.24, under B, so the title goes on to B and its sure end (0.9, penalized 0.55)."""
    table = probabilities({START: {A: 0.9}, A: {END: 0.4, B: 0.35}, B: {END: 0.9}})[None]
    assert run_greedy(table, DecodeConfig(max_length=6))[0].tokens == [A]
    found = run_greedy(table, DecodeConfig(max_length=6, end_penalty=0.5))[0]
    assert found.tokens == [A, B]
    assert found.score == pytest.approx((np.log(0.9) + np.log(0.35) + np.log(0.9) - 0.5) / 3)


def test_length_penalty_trades_length_for_probability() -> None:
    # Ending now (0.5) against two more likely steps that end later (0.45 * 0.95 * 0.95).
    table = probabilities({START: {END: 0.5, A: 0.45}, A: {B: 0.95}, B: {END: 0.95}})[None]
    short = run_beam(table, DecodeConfig(num_beams=2, max_length=6, min_length=0,
                                         length_penalty=0.0))
    long = run_beam(table, DecodeConfig(num_beams=2, max_length=6, min_length=0,
                                        length_penalty=2.0))
    assert short[0][0].tokens == []
    assert long[0][0].tokens == [A, B]


def test_candidates_are_sorted_distinct_and_per_input() -> None:
    rng = np.random.default_rng(3)
    tables = rng.normal(size=(4, VOCAB, VOCAB)) * 2
    config = DecodeConfig(num_beams=4, num_return=3, max_length=6)
    together = run_beam(tables, config)
    for index, candidates in enumerate(together):
        assert len(candidates) == 3
        scores = [c.score for c in candidates]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(c.tokens) for c in candidates}) == 3
        assert candidates == run_beam(tables[index:index + 1], config)[0]  # rows stay apart


def test_bad_configs_are_rejected() -> None:
    with pytest.raises(ValueError):
        DecodeConfig(num_beams=0)
    with pytest.raises(ValueError):
        DecodeConfig(num_beams=2, num_return=3)
    with pytest.raises(ValueError):
        DecodeConfig(repeat_penalty=-1.0)
    with pytest.raises(ValueError):
        DecodeConfig(end_penalty=-0.5)
    with pytest.raises(ValueError, match="lead_bonus"):
        DecodeConfig(lead_bonus=float("nan"))
    with pytest.raises(ValueError, match="consensus needs titles to choose among"):
        DecodeConfig(consensus=True)
    with pytest.raises(ValueError, match="consensus needs titles to choose among"):
        DecodeConfig(consensus=True, samples=1)
    with pytest.raises(ValueError, match="turn consensus on"):
        DecodeConfig(num_beams=4, samples=8)
    with pytest.raises(ValueError, match="samples must be from 0 to 64"):
        DecodeConfig(num_beams=4, consensus=True, samples=-1)
    DecodeConfig(consensus=True, samples=2)  # sampled titles alone are enough to choose among


def candidate(*tokens: int) -> Candidate:
    return Candidate(list(tokens), 0.0, 0.0)


def words(tokens: list[int]) -> list[str]:
    """Each token a word of its own."""
    return [str(token) for token in tokens]


def test_consensus_puts_the_title_the_others_agree_with_first() -> None:
    """The likeliest title (first) is an outlier; [1, 2, 3] shares most with the others
    (ROUGE-L F1 on tokens: 6/7 with [1, 2, 3, 4], 4/6 with [1, 2, 5])."""
    pool = [candidate(7, 8), candidate(1, 2, 3), candidate(1, 2, 3, 4), candidate(1, 2, 5)]
    assert [c.tokens for c in consensus(pool, 4, words)] == [[1, 2, 3], [7, 8], [1, 2, 3, 4], [1, 2, 5]]
    assert [c.tokens for c in consensus(pool, 2, words)] == [[1, 2, 3], [7, 8]]


def test_consensus_counts_a_repeated_title_twice_and_returns_it_once() -> None:
    """Greedy search and the first beam often agree: that agreement is a vote."""
    pool = [candidate(1, 2), candidate(5, 6, 7), candidate(5, 6, 7), candidate(1, 2, 9)]
    assert [c.tokens for c in consensus(pool, 4, words)] == [[5, 6, 7], [1, 2], [1, 2, 9]]


def test_consensus_compares_the_words_it_is_given() -> None:
    """Different tokens that spell the same word agree (a word split in pieces two ways)."""
    pool = [candidate(1), candidate(2), candidate(3)]
    assert consensus(pool, 1, words)[0].tokens == [1]  # no agreement: the likeliest stays first
    spelled = {1: ["other"], 2: ["same"], 3: ["same"]}
    assert consensus(pool, 1, lambda tokens: spelled[tokens[0]])[0].tokens == [2]


def test_candidates_differ_by_a_word() -> None:
    """Titles that differ only by punctuation or case (the same words) are offered once, the
    first of them in pool order; a distinct wording further down takes the freed place."""
    spelled = {1: ["crash", "on", "save"], 2: ["crash", "on", "save"], 3: ["crash", "when", "saving"],
               4: ["crash", "on", "save"], 5: ["save", "fails"]}
    pool = [candidate(token) for token in (1, 2, 3, 4, 5)]
    chosen = consensus(pool, 3, lambda tokens: spelled[tokens[0]])
    assert [c.tokens for c in chosen] == [[1], [3], [5]]
    assert len({tuple(spelled[c.tokens[0]]) for c in chosen}) == len(chosen)
    # Asked for more than there are wordings, the variants fill the places in pool order.
    every = consensus(pool, 5, lambda tokens: spelled[tokens[0]])
    assert [c.tokens for c in every] == [[1], [3], [5], [2], [4]]


def test_titles_are_never_empty_by_default() -> None:
    wants_to_end = probabilities({START: {END: 0.99}})[None]
    assert run_greedy(wants_to_end, DecodeConfig())[0].tokens != []
    assert all(c.tokens for c in run_beam(wants_to_end, DecodeConfig(num_beams=3, num_return=3))[0])


def test_beam_state_follows_its_beam() -> None:
    """A trigram model keeps the token before last in its state: if beams were reordered
    without their state, the scores found would not be the candidates' real scores."""
    rng = np.random.default_rng(11)
    trigram = log_softmax(rng.normal(size=(VOCAB, VOCAB, VOCAB)) * 3)

    def step(tokens: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return trigram[previous, tokens], tokens

    def select(previous: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return previous[rows]

    config = DecodeConfig(num_beams=5, num_return=5, max_length=5, length_penalty=0.0)
    for candidate in beam_search(step, select, np.full(2, START), 2, START, END, config)[0]:
        path = [START, START, *candidate.tokens]
        ended = len(candidate.tokens) < config.max_length
        path += [END] if ended else []
        true = sum(trigram[a, b, c] for a, b, c in zip(path, path[1:], path[2:], strict=False))
        assert candidate.score == pytest.approx(true)


def table_scorer(tables: np.ndarray):
    """Teacher forcing on `table_model`: each target's log-probability after the title token before it."""
    def score(rows: np.ndarray, titles: np.ndarray, targets: np.ndarray) -> np.ndarray:
        return tables[rows[:, None], titles, targets]

    return score


LEAD_TABLE = probabilities({START: {A: 0.9}, A: {END: 0.9}, B: {C: 0.5}, C: {END: 0.9}})
PAD = 0


@pytest.mark.parametrize("beams", [1, 2])
def test_the_lead_replaces_the_title_only_when_its_bonus_makes_it_likelier(beams: int) -> None:
    tables = np.stack([LEAD_TABLE, LEAD_TABLE])
    step, select = table_model(tables)

    def best(bonus: float | None, lead: list[int], num_return: int = 1) -> list[list[int]]:
        config = DecodeConfig(num_beams=beams, num_return=num_return, max_length=5, lead_bonus=bonus)
        found = search(step, select, np.arange(2), 2, START, END, config)
        found = with_leads(found, [[], lead], table_scorer(tables), START, END, PAD, config)
        assert [c.tokens for c in found[0]][:1] == [[A]]  # the first input has no lead
        return [candidate.tokens for candidate in found[1]]

    # The model's own title [A] has mean log-probability log(0.9 * 0.9) / 2; the lead [B, C] less.
    lead_mean = (LEAD_TABLE[START, B] + LEAD_TABLE[B, C] + LEAD_TABLE[C, END]) / 3
    gap = np.log(0.81) / 2 - lead_mean
    assert best(None, [B, C]) == [[A]]
    assert best(gap - 0.01, [B, C]) == [[A]]
    assert best(gap + 0.01, [B, C]) == [[B, C]]
    if beams == 2:
        assert best(gap + 0.01, [B, C], num_return=2)[:2] == [[B, C], [A]]  # the model's best moves down


def test_likelihood_leaves_the_penalties_out() -> None:
    tables = probabilities({START: {A: 0.6}, A: {A: 0.5, END: 0.45}})[None]
    (found,) = run_greedy(tables, DecodeConfig(max_length=3, end_penalty=1.0, repeat_penalty=0.1))
    assert found.tokens == [A, A, A]  # the end penalty kept it going to the most tokens
    assert found.likelihood == pytest.approx(np.log(0.6 * 0.5 * 0.5) / 3)
    assert found.score < found.likelihood


# After START: A 0.5, B 0.3, C 0.19, the rest (0.01) spread below the sampling floor.
SAMPLED = probabilities({START: {A: 0.5, B: 0.3, C: 0.19}, A: {END: 1.0}, B: {END: 1.0}, C: {END: 1.0}})


def test_samples_follow_the_model_and_skip_the_unlikely_tokens() -> None:
    """Evenly spread uniforms draw each token as often as the model says, renormalized over
    the tokens above the floor; the near-certain end follows."""
    rows = 1000
    step, select = table_model(np.stack([SAMPLED] * rows))
    uniforms = np.tile(((np.arange(rows) + 0.5) / rows)[:, None], (1, 3))
    found = sample(step, select, np.arange(rows), rows, START, END, DecodeConfig(max_length=3), uniforms)
    firsts = [candidate.tokens[0] for candidate in found]
    assert all(len(candidate.tokens) == 1 for candidate in found)
    kept = 0.5 + 0.3 + 0.19
    assert firsts.count(A) == pytest.approx(1000 * 0.5 / kept, abs=2)
    assert firsts.count(B) == pytest.approx(1000 * 0.3 / kept, abs=2)
    assert firsts.count(C) == pytest.approx(1000 * 0.19 / kept, abs=2)
    assert found[0].likelihood == pytest.approx(np.log(0.5) / 2)  # the token and the end, per token


def test_samples_obey_the_penalties() -> None:
    """Sampled titles are banned the same repeats as searched ones."""
    loops = probabilities({START: {A: 0.99}, A: {A: 0.99}})[None]
    step, select = table_model(np.repeat(loops, 50, axis=0))
    uniforms = np.random.default_rng(3).random((50, 4))
    config = DecodeConfig(max_length=4, no_repeat_ngram=1)
    for candidate in sample(step, select, np.arange(50), 50, START, END, config, uniforms):
        assert len(set(candidate.tokens)) == len(candidate.tokens)


def run_decode(tables: np.ndarray, config: DecodeConfig) -> list[list[Candidate]]:
    step, select = table_model(tables)
    leads: list[list[int]] = [[] for _ in tables]
    return decode(step, select, np.arange(len(tables)), leads, table_scorer(tables), (START, END, PAD),
                  words, config)


def test_consensus_weighs_sampled_titles() -> None:
    """Greedy takes A; about two thirds of the titles drawn start with B or C, then share D E:
    such a title agrees with more of the pool than the likeliest does."""
    D, E = 0, 1  # noqa: N806 (the table's free token ids)
    tables = probabilities({START: {A: 0.36, B: 0.32, C: 0.32}, A: {END: 1.0}, B: {D: 1.0}, C: {D: 1.0},
                            D: {E: 1.0}, E: {END: 1.0}})[None]
    assert run_greedy(tables, DecodeConfig(max_length=5))[0].tokens == [A]
    (chosen,) = run_decode(tables, DecodeConfig(consensus=True, samples=32, max_length=5))
    assert chosen[0].tokens in ([B, D, E], [C, D, E])


def test_samples_are_the_same_whatever_shares_the_batch() -> None:
    """Draws are seeded per input (by its greedy title), so a body's title does not depend on
    the other bodies decoded with it."""
    rng = np.random.default_rng(5)
    tables = log_softmax(rng.normal(size=(6, VOCAB, VOCAB)) * 2)
    config = DecodeConfig(consensus=True, samples=8, num_return=1, max_length=6)
    together = [found[0].tokens for found in run_decode(tables, config)]
    assert together == [run_decode(tables[i:i + 1], config)[0][0].tokens for i in range(6)]
    assert together == [found[0].tokens for found in run_decode(tables, config)]
