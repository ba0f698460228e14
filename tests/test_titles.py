"""Decoding with Keras models: the step-wise inference models against the full model, titles
from a model folder (`KerasTitler`), and `issue-summarizer evaluate --model`.

Models are tiny: a transformer trained for a few steps (the session's `tiny_run`) and a GRU
with random weights, saved the way training saves one. Decoding is kept short (`MAX_LENGTH`):
each new title length costs the transformer's step model a trace.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import keras
import numpy as np
import pytest
from cli_in_process import cli
from conftest import TinyRun
from model_folders import VARIANTS, randomized, write_model_folder

from summarizer.decoding import Candidate, DecodeConfig, beam_search, greedy, log_softmax
from summarizer.errors import UserError
from summarizer.evaluate import markdown
from summarizer.featurize import encode_bodies
from summarizer.models import inference_models
from summarizer.titles import KerasTitler
from summarizer.tokenization import special_ids, title_text
from summarizer.train_config import TrainConfig

VOCAB = 50
MAX_LENGTH = 6
BODIES = [
    "The export button does nothing. I click it and wait, and no file is written anywhere.",
    "Crash on startup",
    "After upgrading to 2.3 the settings page shows a blank screen in Firefox but works in Chrome. "
    "The console says TypeError: cannot read properties of undefined (reading 'theme').",
]


@pytest.mark.parametrize("kind", VARIANTS)
def test_step_models_give_the_full_models_logits(kind: str) -> None:
    """Feeding a title one token at a time through the encoder and step decoder reproduces the
    teacher-forced logits at every position: what makes step-wise decoding correct."""
    model = randomized(kind, VOCAB)
    rng = np.random.default_rng(1)
    body = rng.integers(1, VOCAB, (3, 12)).astype("int32")
    body[1, 7:] = 0  # bodies of different lengths: padding must be ignored in both
    body[2, 3:] = 0
    title = rng.integers(4, VOCAB, (3, 7)).astype("int32")
    title[:, 0] = 2
    full = keras.ops.convert_to_numpy(model((body, title), training=False))
    encoder, decoder = inference_models(model)
    steps = []
    if kind == "gru":
        state = encoder.predict_on_batch(body)
        for position in range(title.shape[1]):
            logits, state = decoder.predict_on_batch([title[:, position:position + 1], state])
            steps.append(logits)
    else:
        memory, mask = encoder.predict_on_batch(body)
        copied = [body] if kind == "copy" else []  # the copy head reads the body's ids
        steps = [decoder.predict_on_batch([title[:, :position + 1], memory, mask, *copied])
                 for position in range(title.shape[1])]
    stepped = np.stack(steps, axis=1)
    assert stepped.shape == full.shape == (3, 7, VOCAB)
    assert np.ptp(full, axis=-1).min() > 0.1  # logits that differ well beyond the tolerance
    np.testing.assert_allclose(stepped, full, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def titlers(tiny_run: TinyRun, tiny_dataset: Path,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, KerasTitler]:
    """A titler per model variant: the trained tiny transformer run, and random-weight folders
    for the others."""
    vocab = json.loads((tiny_dataset / "dataset.json").read_text())["vocab_size"]
    found = {"transformer": KerasTitler.load(str(tiny_run.folder))}
    for variant in ("gru", "copy"):
        config = TrainConfig(dataset=str(tiny_dataset), body_len=64, title_len=24, model=VARIANTS[variant])
        folder = write_model_folder(randomized(variant, vocab), config, tiny_dataset / "tokenizer.json",
                                    tmp_path_factory.mktemp(variant) / "folder")
        found[variant] = KerasTitler.load(str(folder))
    return found


def search(titler: KerasTitler, bodies: list[str], config: DecodeConfig, beam: bool) -> list[list[Candidate]]:
    """Token-level candidates from the titler's own step functions, greedy or beam search,
    one list per body in the given order."""
    encode, step, select = titler._steps
    ids, _ = encode_bodies(titler.tokenizer, bodies, titler.body_len)
    special = special_ids(titler.tokenizer)
    state = encode(ids)
    if beam:
        return beam_search(step, select, state, len(bodies), special["start"], special["end"], config)
    return [[c] for c in greedy(step, select, state, len(bodies), special["start"], special["end"], config)]


def teacher_forced_score(titler: KerasTitler, body: str, candidate: Candidate, config: DecodeConfig) -> float:
    """A candidate's score computed from the full model: its tokens' log-probabilities (the end
    token's too when it ended) over its length ** length_penalty."""
    special = special_ids(titler.tokenizer)
    ended = len(candidate.tokens) < config.max_length
    targets = [*candidate.tokens, *([special["end"]] if ended else [])]
    title_in = np.array([[special["start"], *targets[:-1]]], dtype="int32")
    ids, _ = encode_bodies(titler.tokenizer, [body], titler.body_len)
    logits = keras.ops.convert_to_numpy(titler.model((ids, title_in), training=False))[0]
    log_probs = log_softmax(logits.astype(np.float64))
    total = sum(log_probs[i, token] for i, token in enumerate(targets))
    return total / len(targets) ** config.length_penalty


@pytest.mark.parametrize("kind", VARIANTS)
def test_greedy_titles_are_one_beam_search(titlers: dict[str, KerasTitler], kind: str) -> None:
    titler = titlers[kind]
    config = DecodeConfig(max_length=MAX_LENGTH)
    greedy_found = search(titler, BODIES, config, beam=False)
    assert search(titler, BODIES, config, beam=True) == greedy_found
    titles = titler.titles([*BODIES, ""], config)
    assert all(isinstance(title, str) for title in titles)  # an empty body gets one too
    assert titles[:-1] == [title_text(titler.tokenizer, found[0].tokens) for found in greedy_found]
    # Bodies are decoded in batches sorted by length: each title still lands on its own body.
    assert [titler.titles([body], config)[0] for body in BODIES] == titles[:-1]


def test_an_empty_bodys_title_does_not_depend_on_its_batch(titlers: dict[str, KerasTitler]) -> None:
    """An empty body attends to nothing, however wide its batch is padded."""
    config = DecodeConfig(max_length=MAX_LENGTH)
    [(alone, alone_score)] = titlers["transformer"].candidates([""], config)[0]
    [(batched, batched_score)] = titlers["transformer"].candidates([*BODIES, ""], config)[-1]
    assert batched == alone
    assert batched_score == pytest.approx(alone_score, abs=1e-5)


@pytest.mark.parametrize("kind", VARIANTS)
def test_beam_candidates_are_sorted_and_scored_by_the_model(titlers: dict[str, KerasTitler],
                                                            kind: str) -> None:
    """Each candidate's score is what the full model gives its tokens: beams kept their own
    state through every reordering."""
    titler = titlers[kind]
    config = DecodeConfig(num_beams=3, num_return=3, max_length=MAX_LENGTH, length_penalty=0.6)
    candidates = titler.candidates(BODIES, config)
    found = search(titler, BODIES, config, beam=True)
    assert len(candidates) == len(BODIES)
    for body, texts, tokens in zip(BODIES, candidates, found, strict=True):
        assert len(texts) == len(tokens) == 3
        scores = [score for _, score in texts]
        assert scores == sorted(scores, reverse=True)
        assert all(isinstance(text, str) for text, _ in texts)
        assert len({tuple(c.tokens) for c in tokens}) == 3
        for (text, score), candidate in zip(texts, tokens, strict=True):
            assert text == title_text(titler.tokenizer, candidate.tokens)
            assert score == pytest.approx(candidate.score, abs=1e-4)
            assert score == pytest.approx(teacher_forced_score(titler, body, candidate, config), abs=1e-4)


@pytest.mark.parametrize("kind", VARIANTS)
def test_no_repeat_unigrams_means_no_token_twice(titlers: dict[str, KerasTitler], kind: str) -> None:
    """Titles run to MAX_LENGTH (no end before it), so the rule has room to act."""
    titler = titlers[kind]
    beams = DecodeConfig(num_beams=2, num_return=2, max_length=MAX_LENGTH, min_length=MAX_LENGTH)
    free = [c.tokens for found in search(titler, BODIES, beams, beam=True) for c in found]
    assert any(len(set(tokens)) < len(tokens) for tokens in free)  # the model repeats itself
    for config in (replace(beams, num_beams=1, num_return=1, no_repeat_ngram=1),
                   replace(beams, no_repeat_ngram=1)):
        found = search(titler, BODIES, config, beam=config.num_beams > 1)
        for candidate in (c for per_body in found for c in per_body):
            assert len(candidate.tokens) == MAX_LENGTH
            assert len(set(candidate.tokens)) == MAX_LENGTH, candidate.tokens
        # These are the titles the titler itself gives.
        texts = [[text for text, _ in per_body] for per_body in titler.candidates(BODIES, config)]
        assert texts == [[title_text(titler.tokenizer, c.tokens) for c in per_body] for per_body in found]


@pytest.mark.parametrize("missing", ["model.keras", "tokenizer.json", "config.json"])
def test_incomplete_model_folder_is_a_user_error(tiny_run: TinyRun, tmp_path: Path,
                                                 missing: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in {"model.keras", "tokenizer.json", "config.json"} - {missing}:
        shutil.copyfile(tiny_run.folder / name, folder / name)
    with pytest.raises(UserError, match=rf"^{re.escape(str(folder))}: not a model folder \(needs "):
        KerasTitler.load(str(folder))


# --- evaluate --model ----------------------------------------------------------------------



def dev_rows(dataset: Path) -> list[dict]:
    with gzip.open(dataset / "dev.jsonl.gz", "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_evaluate_scores_the_model_next_to_the_baselines(
        tiny_run: TinyRun, tiny_dataset: Path, titlers: dict[str, KerasTitler], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "reports" / "dev"
    assert cli(["evaluate", str(tiny_dataset), "--split", "dev", "--model", str(tiny_run.folder),
                "--beams", "2", "--max-length", str(MAX_LENGTH), "-o", str(output)]) == 0
    report = json.loads(output.with_suffix(".json").read_text())
    name = tiny_run.folder.name
    rows = dev_rows(tiny_dataset)
    assert report["issues"] == len(rows) and report["split"] == "dev"
    assert set(report["scores"]) == {"first-sentence", "first-8-words", name}
    assert all(scores["count"] == len(rows) for scores in report["scores"].values())
    decoding = DecodeConfig(num_beams=2, max_length=MAX_LENGTH)
    assert report["decoding"] == asdict(decoding)
    # The titles shown are the model's, decoded with the options given on the command line.
    expected = titlers["transformer"].titles([row["body"] for row in rows], decoding)
    assert [example[name] for example in report["examples"]] == expected
    text = output.with_suffix(".md").read_text()
    assert text == markdown(report)
    assert f"| {name} | {report['scores'][name]['rouge1']} |" in text
    assert text in capsys.readouterr().out


def test_evaluate_limit_scores_that_many_issues(tiny_run: TinyRun, tiny_dataset: Path,
                                                tmp_path: Path) -> None:
    assert cli(["evaluate", str(tiny_dataset), "--split", "dev", "--model", str(tiny_run.folder),
                "--limit", "2", "--max-length", "3", "-o", str(tmp_path / "r"), "-q"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["issues"] == 2
    assert {name: scores["count"] for name, scores in report["scores"].items()} == {
        "first-sentence": 2, "first-8-words": 2, tiny_run.folder.name: 2}
    assert len(report["examples"]) == 2


def test_evaluate_with_a_bad_model_folder_is_one_line(tiny_dataset: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["evaluate", str(tiny_dataset), "--model", str(tmp_path / "nowhere")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"issue-summarizer: error: {tmp_path / 'nowhere'}: not a model folder (needs "
                     "model.keras, tokenizer.json and config.json or manifest.json; a finished "
                     "training run or an exported model has them)"]


def test_evaluate_refuses_two_models_with_one_name(tiny_run: TinyRun, tiny_dataset: Path,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Scores are keyed by folder name: a second folder of the same name would replace the first."""
    twin = tmp_path / "elsewhere" / tiny_run.folder.name
    shutil.copytree(tiny_run.folder, twin)
    assert cli(["evaluate", str(tiny_dataset), "--model", str(tiny_run.folder), "--model", f"{twin}/"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "issue-summarizer: error: several --model folders are named 'tiny-transformer'; a report names "
        "each model by its folder, so give them distinct names"]
