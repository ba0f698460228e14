"""The serving engine: issue bodies in, titles out, on ONNX Runtime and numpy only.

It runs a bundle's encoder and decoder graphs (see `onnx_graphs`) under the same greedy and
beam search the Keras models use in `decoding`, so titles match training-time evaluation, and
its scorer graph to weigh each body's lead sentence (see `lead`). Importing it never imports
TensorFlow or Keras: the Seldon and MLServer images and the web app stay small.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from summarizer.budget import check_text
from summarizer.bundle import ENGINE_FILES, fetch
from summarizer.cleaning import has_words, model_text
from summarizer.decoding import (
    DEFAULT_END_PENALTY,
    DEFAULT_LEAD_BONUS,
    DEFAULT_NO_REPEAT_NGRAM,
    DEFAULT_REPEAT_PENALTY,
    Candidate,
    DecodeConfig,
    decode,
)
from summarizer.errors import NothingToSummarize, RequestError
from summarizer.featurize import pad_rows
from summarizer.lead import lead_tokens
from summarizer.tokenization import special_ids, title_text, title_words
from summarizer.word_cache import WordCache

BATCH = 64  # bodies run through the graphs together
# Beam rows decoded together: each holds its body's keys and values and a vocabulary's scores,
# so wide beams take fewer bodies at a time (64 bodies at beam 16 peaked at 1.5 GB at once).
BEAM_ROWS = 256
# Lead sentences scored together: each of their tokens holds a vocabulary's log-probabilities
# in the scorer. Two batches of 64 decoded at once peaked at 790 MiB scoring 64 at a time, 445
# MiB scoring 16 (358 MiB without leads), for 5% fewer issues a second.
SCORED_TOGETHER = 16
SHIPPED = Path(__file__).resolve().parent.parent / "models" / "default"


def default_bundle() -> str:
    """$SUMMARIZER_MODEL, else the model shipped in this checkout."""
    return os.environ.get("SUMMARIZER_MODEL") or str(SHIPPED)


def _digest(files: dict[str, str]) -> str:
    """12 hex digits that change when any file of the bundle does (the graphs alone keep theirs
    when only the weights they point to change)."""
    listed = "".join(f"{name} {digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(listed.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Title:
    text: str
    score: float  # log-probability per token (length-normalized as the search was asked)


class Summarizer:
    """A loaded bundle. Safe to share between threads: ONNX Runtime sessions are, each call
    keeps its own decoding state, and the word cache (which grows as it reads) is locked."""

    def __init__(self, folder: Path, manifest: dict, threads: int | None = None) -> None:
        self.manifest = manifest
        self.version = f"{manifest['architecture']}-{_digest(manifest['files'])}"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        self._encoder = ort.InferenceSession(str(folder / "encoder.onnx"), options, providers=providers)
        self._decoder = ort.InferenceSession(str(folder / "decoder.onnx"), options, providers=providers)
        self._scorer = ort.InferenceSession(str(folder / "scorer.onnx"), options, providers=providers)
        self._scorer_state = [given.name for given in self._scorer.get_inputs()
                              if given.name not in ("title", "target")]
        self._state_names = [output.name for output in self._encoder.get_outputs()]
        self._step_outputs = ["log_probs", *(output.name for output in self._decoder.get_outputs()
                                            if output.name.startswith("next_"))]
        self._updated = [name.removeprefix("next_") for name in self._step_outputs[1:]]  # state entries
        self._words = WordCache(Tokenizer.from_file(str(folder / "tokenizer.json")))
        self._words_lock = threading.Lock()
        self._tokenizer = self._words.tokenizer
        self._special = special_ids(self._tokenizer)
        settings = (manifest.get("data") or {}).get("settings") or {}
        self.body_tokens = manifest["max_lengths"]["body_tokens"]
        self.title_tokens = manifest["max_lengths"]["title_tokens"]
        self._max_raw_chars = settings.get("max_raw_chars", 50_000)
        self._body_len = settings.get("body_len", self.body_tokens)  # as `prepare` cut bodies

    @classmethod
    def load(cls, location: str | Path, threads: int | None = None) -> Summarizer:
        """Load a bundle folder or `gs://` prefix after checking every file's sha256."""
        folder, manifest = fetch(str(location), ENGINE_FILES)
        return cls(folder, manifest, threads)

    def cleaned(self, bodies: Sequence[str]) -> list[str]:
        """Raw bodies cleaned exactly as `prepare` did for training."""
        return [model_text(body, self._max_raw_chars, self._body_len) for body in bodies]

    def body_ids(self, texts: Sequence[str]) -> np.ndarray:
        """Cleaned bodies tokenized as `prepare` did for training."""
        with self._words_lock:
            flat = self._words.encode_flat(texts)
        ids, _ = pad_rows(*flat, self.body_tokens, None, self._special["pad"])
        return ids

    def _decode(self, ids: np.ndarray, leads: list[list[int]], config: DecodeConfig) -> list[list[Candidate]]:
        width = max(int((ids != 0).sum(axis=1).max()), 1)  # padding past the longest body is waste
        encoded = self._encoder.run(None, {"body": ids[:, :width].astype(np.int64)})
        state = dict(zip(self._state_names, encoded, strict=True))

        def step(tokens: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
            log_probs, *updated = self._decoder.run(self._step_outputs, {"token": tokens, **state})
            return log_probs, {**state, **dict(zip(self._updated, updated, strict=True))}

        def select(state: dict, rows: np.ndarray) -> dict:
            return {name: value[rows] for name, value in state.items()}

        def score(rows: np.ndarray, titles: np.ndarray, targets: np.ndarray) -> np.ndarray:
            parts = []
            for begin in range(0, len(rows), SCORED_TOGETHER):
                part = slice(begin, begin + SCORED_TOGETHER)
                given = {name: state[name][rows[part]] for name in self._scorer_state}
                parts.append(self._scorer.run(["target_log_probs"],
                                              {"title": titles[part], "target": targets[part], **given})[0])
            return np.concatenate(parts)

        special = self._special["start"], self._special["end"], self._special["pad"]
        words = partial(title_words, self._tokenizer)
        return decode(step, select, state, leads, score, special, words, config)

    def _config(self, num_beams: int, num_return: int, max_length: int | None, min_length: int,
                length_penalty: float, no_repeat_ngram: int, repeat_penalty: float,
                end_penalty: float, lead_bonus: float | None, consensus: bool, samples: int) -> DecodeConfig:
        try:
            return DecodeConfig(num_beams=num_beams, max_length=max_length or self.title_tokens - 2,
                                min_length=min_length, length_penalty=length_penalty,
                                no_repeat_ngram=no_repeat_ngram, repeat_penalty=repeat_penalty,
                                end_penalty=end_penalty, num_return=num_return, lead_bonus=lead_bonus,
                                consensus=consensus, samples=samples)
        except ValueError as error:
            raise RequestError(f"decoding settings: {error}") from None

    def candidates(self, bodies: Sequence[str], num_return: int | None = None, num_beams: int = 4,
                   max_length: int | None = None, min_length: int = 1, length_penalty: float = 1.0,
                   no_repeat_ngram: int = DEFAULT_NO_REPEAT_NGRAM,
                   repeat_penalty: float = DEFAULT_REPEAT_PENALTY,
                   end_penalty: float = DEFAULT_END_PENALTY,
                   lead_bonus: float | None = DEFAULT_LEAD_BONUS, consensus: bool = False,
                   samples: int = 0, cleaned: bool = False) -> list[list[Title]]:
        """The best `num_return` (default: all `num_beams`) titles per body, best first;
        `cleaned` bodies (a prepared dataset's text) are only tokenized."""
        check_text(bodies)
        config = self._config(num_beams, num_return or num_beams, max_length, min_length, length_penalty,
                              no_repeat_ngram, repeat_penalty, end_penalty, lead_bonus, consensus, samples)
        texts = list(bodies) if cleaned else self.cleaned(bodies)
        empty = [] if cleaned else [index for index, text in enumerate(texts) if not has_words(text)]
        if empty:  # any title would be made up (prepared text was checked by `prepare`)
            raise NothingToSummarize(empty)
        ids = self.body_ids(texts)
        leads = lead_tokens(self._tokenizer, texts, config)
        order = np.argsort((ids != 0).sum(axis=1), kind="stable")  # similar lengths share a batch
        results: list[list[Title]] = [[] for _ in bodies]
        together = min(BATCH, max(BEAM_ROWS // config.num_beams, 1))
        for begin in range(0, len(order), together):
            rows = order[begin:begin + together]
            for row, best in zip(rows, self._decode(ids[rows], [leads[row] for row in rows], config),
                                 strict=True):
                results[row] = [Title(title_text(self._tokenizer, c.tokens), c.score) for c in best]
        return results

    def summarize(self, bodies: Sequence[str], num_beams: int = 1, max_length: int | None = None,
                  min_length: int = 1, length_penalty: float = 1.0,
                  no_repeat_ngram: int = DEFAULT_NO_REPEAT_NGRAM,
                  repeat_penalty: float = DEFAULT_REPEAT_PENALTY,
                  end_penalty: float = DEFAULT_END_PENALTY,
                  lead_bonus: float | None = DEFAULT_LEAD_BONUS, consensus: bool = False,
                  samples: int = 0) -> list[str]:
        """One title per body."""
        found = self.candidates(bodies, 1, num_beams, max_length, min_length, length_penalty, no_repeat_ngram,
                                repeat_penalty, end_penalty, lead_bonus, consensus, samples)
        return [best[0].text for best in found]
