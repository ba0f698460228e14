"""A training run described by one TOML file plus `key=value` overrides, checked before any
work starts: an unknown key, a wrong type or a missing dataset is one clear error."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields

from summarizer import storage
from summarizer.bundle import MANIFEST as BUNDLE_MANIFEST
from summarizer.errors import UserError
from summarizer.models import KINDS, ModelConfig
from summarizer.prepare import MANIFEST


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = ""  # a folder or gs:// prefix written by `prepare`
    output: str = "runs/default"  # the run directory: config, checkpoints, model, logs, metrics
    body_len: int = 128  # body tokens the model reads (at most the dataset's)
    title_len: int = 24  # title tokens with <s> and </s> (at most the dataset's)
    batch_size: int = 64
    epochs: int = 10  # epochs on titles, after the pretraining ones
    # Epochs on the pretrain split (prepare --pretraining) before those on titles: their dev
    # loss is logged, but picks no model and counts for no patience.
    pretrain_epochs: int = 0
    # >= 2: the final model.keras is the mean of the last this many title epochs' weights,
    # kept where its dev loss is no worse than the best single epoch's (0: off).
    average_last: int = 0
    steps_per_epoch: int = 0  # 0: one pass over the train split
    learning_rate: float = 1e-3  # the peak, reached after warmup, then cosine decay
    min_learning_rate_ratio: float = 0.05
    warmup_steps: int = 500
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    patience: int = 2  # epochs without a better dev loss before stopping
    max_minutes: float = 0.0  # no epoch starts after this much training time (0: no limit)
    dev_examples: int = 4000  # dev issues scored after every epoch
    checkpoint_steps: int = 500  # also saved at every epoch end and on interruption
    fixed_shapes: bool = False  # pad batches to body_len/title_len: one compile (accelerators)
    mixed_precision: str = "auto"  # auto: bfloat16 where a GPU has it; "off"; "bfloat16"
    seed: int = 1
    init_from: str = ""  # a model.keras or run folder whose layers (same name and shape) start a new run
    model: ModelConfig = field(default_factory=ModelConfig)

    def as_dict(self) -> dict:
        return asdict(self)


def _typed(name: str, value: object, kind: type) -> object:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UserError(f"config key {name!r} must be {kind.__name__}, not {type(value).__name__} "
                        f"({value!r})")
    return value


def _section(cls: type, values: dict, prefix: str = "") -> dict:
    known = {f.name: f for f in fields(cls)}
    checked = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise UserError(f"unknown config key {name!r}; known keys: "
                            f"{', '.join(prefix + k for k in known)}")
        kind = known[key].type
        if kind == "ModelConfig":
            if not isinstance(value, dict):
                raise UserError(f"config key {name!r} must be a table of model settings")
            checked[key] = ModelConfig(**_section(ModelConfig, value, f"{name}."))
        else:
            checked[key] = _typed(name, value, {"int": int, "float": float, "str": str, "bool": bool}[kind])
    return checked


def _parse_override(text: str) -> tuple[list[str], object]:
    if "=" not in text:
        raise UserError(f"override {text!r} is not KEY=VALUE (e.g. epochs=3 or model.dim=128)")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string such as a path
    return key.strip().split("."), value


def load_config(path: str | None, overrides: list[str] = ()) -> TrainConfig:
    """The config file (if any), then overrides like `epochs=3` or `model.kind=gru`."""
    values: dict = {}
    if path:
        try:
            values = tomllib.loads(storage.read_bytes(path).decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise UserError(f"{path}: not valid TOML ({error})") from None
    for override in overrides:
        keys, value = _parse_override(override)
        target = values
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise UserError(f"override {override!r}: {key!r} is not a table")
        target[keys[-1]] = value
    config = TrainConfig(**_section(TrainConfig, values))
    _check(config)
    _check_phases(config)
    return config


def _bundle_without_keras_file(path: str) -> bool:
    """A bundle keeps its Keras weights in weights.bin, which warm starting does not read."""
    return (storage.exists(storage.join(path, BUNDLE_MANIFEST))
            and not storage.exists(storage.join(path, "model.keras")))


def _check(config: TrainConfig) -> None:
    if not config.dataset:
        raise UserError("no dataset: set dataset = \"path\" in the config or pass dataset=PATH")
    if not storage.exists(storage.join(config.dataset, MANIFEST)):
        raise UserError(f"dataset {config.dataset!r} is missing or unfinished (no {MANIFEST}); "
                        "run 'issue-summarizer prepare' first")
    if config.init_from and not storage.exists(config.init_from):
        raise UserError(f"init_from {config.init_from!r} does not exist; pass a trained run folder or "
                        "its model.keras")
    if config.init_from and _bundle_without_keras_file(config.init_from):
        raise UserError(f"init_from {config.init_from!r} is a model bundle, which keeps its Keras weights "
                        "in weights.bin, not model.keras: pass the training run it was exported from, or a "
                        f".keras file saved by KerasTitler.load({config.init_from!r}).model.save(PATH)")
    if config.model.kind not in KINDS:
        raise UserError(f"model.kind {config.model.kind!r} is not one of {', '.join(KINDS)}")
    if config.mixed_precision not in ("auto", "off", "bfloat16"):
        raise UserError("mixed_precision must be auto, off or bfloat16")
    positive = ("body_len", "title_len", "batch_size", "epochs", "patience", "dev_examples",
                "checkpoint_steps")
    for name in positive:
        if getattr(config, name) < 1:
            raise UserError(f"config key {name!r} must be at least 1")
    for name in ("steps_per_epoch", "warmup_steps", "max_minutes"):
        if getattr(config, name) < 0:
            raise UserError(f"config key {name!r} must be at least 0")
    if config.title_len < 3:
        raise UserError("title_len must be at least 3 (<s>, one token, </s>)")
    _check_model(config.model)


def _check_phases(config: TrainConfig) -> None:
    if config.pretrain_epochs < 0:
        raise UserError("config key 'pretrain_epochs' must be at least 0")
    if config.average_last < 0 or config.average_last == 1:
        raise UserError("config key 'average_last' must be 0 (off) or at least 2 (one epoch's weights "
                        "are that epoch's model)")


def _check_model(model: ModelConfig) -> None:
    """Sizes the layers would otherwise reject with a traceback after the data is loaded."""
    for name in ("embedding_dim", "units", "dim", "heads", "hidden", "max_positions"):
        if getattr(model, name) < 1:
            raise UserError(f"config key 'model.{name}' must be at least 1")
    if model.dim % model.heads or model.dim % 2:
        raise UserError(f"model.dim {model.dim} must be even and divisible by model.heads {model.heads}")
    if not 0 <= model.dropout < 1:
        raise UserError(f"model.dropout {model.dropout} must be in [0, 1)")


