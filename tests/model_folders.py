"""Tiny models with spread-out random weights, saved as a training run leaves them: fast
stand-ins for trained models wherever only the arithmetic has to agree."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from summarizer.models import ModelConfig, build_model
from summarizer.train import save_inference_model
from summarizer.train_config import TrainConfig

TINY = ModelConfig(dim=16, hidden=32, heads=2, encoder_layers=1, decoder_layers=1, dropout=0.0,
                   embedding_dim=16, units=16)
# Every model the product builds: each kind, and the transformer with its copy head.
VARIANTS = {"gru": replace(TINY, kind="gru"), "transformer": replace(TINY, kind="transformer"),
            "copy": replace(TINY, kind="transformer", copy=True)}


def randomized(variant: str, vocab: int) -> keras.Model:
    """A tiny model whose every weight (batch-norm statistics too) is moved off its initial
    value, so logits spread widely and a 1e-4 tolerance means something."""
    keras.utils.set_random_seed(1)
    model = build_model(VARIANTS[variant], vocab)
    rng = np.random.default_rng(0)
    model.set_weights([w * rng.uniform(0.5, 1.5, w.shape) + rng.uniform(0, 0.1, w.shape)
                       for w in model.get_weights()])
    return model


def write_model_folder(model: keras.Model, config: TrainConfig, tokenizer: Path, folder: Path) -> Path:
    """A model folder as a finished training run leaves one (model.keras, tokenizer.json,
    config.json, run.json), without the training."""
    folder.mkdir(parents=True)
    save_inference_model(model, folder / "model.keras")
    shutil.copyfile(tokenizer, folder / "tokenizer.json")
    (folder / "config.json").write_text(json.dumps(config.as_dict(), indent=2))
    (folder / "run.json").write_text(json.dumps({"data_fingerprint": "random-weights"}))
    return folder
