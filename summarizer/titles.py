"""Titles from a trained Keras model, through the shared numpy decoder in `decoding`.

This is how training and evaluation read a model (the serving engine runs the same search over
ONNX graphs). A model folder is a training run directory (`model.keras`, `tokenizer.json` and
`config.json`) or an exported bundle (its Keras weights and a manifest carrying that config).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property, partial
from pathlib import Path

import keras
import numpy as np
from tokenizers import Tokenizer

from summarizer import storage
from summarizer.bundle import KERAS_FILES, MANIFEST, verify
from summarizer.decoding import DecodeConfig, Scorer, Select, Step, decode, log_softmax
from summarizer.engine import Summarizer
from summarizer.errors import UserError
from summarizer.featurize import encode_bodies
from summarizer.lead import lead_tokens
from summarizer.models import bundle_model, copy_head, inference_models, load_model
from summarizer.progress import progress
from summarizer.tokenization import special_ids, title_text, title_words

BATCH = 128  # bodies decoded together
CHUNK = 1024  # bodies per engine call, between progress lines


def _steps(model: keras.Model) -> tuple[Callable, Step, Select]:
    """encode(body ids) -> state, and the step/select pair `decoding` drives."""
    encoder, decoder = inference_models(model)
    if model.name == "gru":
        def step(tokens: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            logits, state = decoder.predict_on_batch([tokens[:, None].astype(np.int32), state])
            return log_softmax(logits), state

        return encoder.predict_on_batch, step, lambda state, rows: state[rows]

    copies = copy_head(model) is not None  # its decoder reads the body's ids

    def encode(body: np.ndarray) -> tuple:
        memory, mask = encoder.predict_on_batch(body)
        # The tokens decoded so far are part of the state: this decoder reruns them each step.
        return memory, mask, np.zeros((len(body), 0), dtype=np.int32), *([body] if copies else [])

    def step(tokens: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
        memory, mask, prefix, *body = state
        prefix = np.concatenate([prefix, tokens[:, None].astype(np.int32)], axis=1)
        log_probs = log_softmax(decoder.predict_on_batch([prefix, memory, mask, *body]))
        return log_probs, (memory, mask, prefix, *body)

    return encode, step, lambda state, rows: tuple(part[rows] for part in state)


@dataclass
class KerasTitler:
    """A Keras title model with its tokenizer: bodies in, titles out."""

    model: keras.Model
    tokenizer: Tokenizer
    body_len: int
    name: str

    @classmethod
    def load(cls, folder: str) -> KerasTitler:
        """A training run (its model.keras) or a bundle (its Keras weights, hashes checked)."""
        path = Path(folder)
        if (path / MANIFEST).exists():
            manifest = verify(path, KERAS_FILES)
            model, config = bundle_model(path, manifest), manifest["config"]
        elif all((path / name).exists() for name in ("model.keras", "tokenizer.json", "config.json")):
            model, config = load_model(path / "model.keras"), json.loads((path / "config.json").read_text())
        else:
            raise UserError(f"{folder}: not a model folder (needs model.keras, tokenizer.json and "
                            "config.json or manifest.json; a finished training run or an exported "
                            "model has them)")
        return cls(model, Tokenizer.from_file(str(path / "tokenizer.json")), config["body_len"],
                   config["model"]["kind"])

    @cached_property
    def _steps(self) -> tuple[Callable, Step, Select]:
        return _steps(self.model)  # built once: each build compiles its functions anew

    def candidates(self, bodies: list[str], config: DecodeConfig) -> list[list[tuple[str, float]]]:
        """The best `config.num_return` titles per body with their scores, best first."""
        encode, step, select = self._steps
        ids, _ = encode_bodies(self.tokenizer, bodies, self.body_len)
        special = special_ids(self.tokenizer)
        leads = lead_tokens(self.tokenizer, bodies, config)
        # Similar lengths together: padding is wasted work.
        order = np.argsort((ids != 0).sum(axis=1), kind="stable")
        found: list[list[tuple[str, float]]] = [[] for _ in bodies]
        batches = range(0, len(order), BATCH)
        for start in progress(batches, "decoding", total=len(batches), unit="batches"):
            rows = order[start:start + BATCH]
            width = max(int((ids[rows] != 0).sum(axis=1).max()), 1)
            body = ids[rows, :width]
            results = decode(step, select, encode(body), [leads[row] for row in rows], self._scorer(body),
                             (special["start"], special["end"], special["pad"]),
                             partial(title_words, self.tokenizer), config)
            for row, result in zip(rows, results, strict=True):
                found[row] = [(title_text(self.tokenizer, c.tokens), c.score) for c in result]
        return found

    def _scorer(self, body: np.ndarray) -> Scorer:
        """Titles scored by the whole model, every position at once, as in training."""
        def score(rows: np.ndarray, titles: np.ndarray, targets: np.ndarray) -> np.ndarray:
            log_probs = log_softmax(self.model.predict_on_batch([body[rows], titles.astype(np.int32)]))
            return np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]

        return score

    def titles(self, bodies: list[str], config: DecodeConfig) -> list[str]:
        return [best[0][0] for best in self.candidates(bodies, config)]


def title_predictor(folder: str, config: DecodeConfig) -> Callable[[Sequence[str]], list[str]]:
    """Titles for cleaned bodies (what `evaluate` scores) from a model folder: a bundle runs on
    the ONNX engine, as serving does and several times faster; a training run on its Keras
    model. Both decode with `decoding`, so a run and its bundle score the same."""
    if not (storage.is_gcs(folder) or (Path(folder) / MANIFEST).exists()):
        titler = KerasTitler.load(folder)
        return lambda bodies: titler.titles(list(bodies), config)
    engine = Summarizer.load(folder)
    options = asdict(config) | {"num_return": 1}  # the engine takes DecodeConfig's fields

    def titles(bodies: Sequence[str]) -> list[str]:
        chunks = [bodies[start:start + CHUNK] for start in range(0, len(bodies), CHUNK)]
        return [best[0].text for chunk in progress(chunks, "decoding", total=len(chunks), unit="chunks")
                for best in engine.candidates(list(chunk), cleaned=True, **options)]

    return titles
