"""The two title models as Keras 3 functional models: `(body ids, title ids in) -> logits`.

- `gru`: the original example, kept as the reference to beat: embeddings, batch norm, a GRU
  encoder whose final state starts a GRU decoder, batch norm, a projection to the vocabulary.
- `transformer`: a pre-layer-norm encoder-decoder with one embedding matrix shared by the
  body, the title and the output projection, and sinusoidal positions; with `copy`, a
  pointer-generator head lets it copy body tokens into the title (see `layers.CopyHead`).

Both return logits (the softmax lives in the loss and in decoding, where it is computed in
float32); the copy head returns log-probabilities, which a log-softmax leaves unchanged.
Padding is id 0; titles are `<s> title </s>` and are fed shifted by one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
from keras import ops

from summarizer.bundle import KERAS_WEIGHTS, WEIGHTS
from summarizer.errors import UserError
from summarizer.layers import (
    PACKAGE,
    CopyHead,
    DecoderBlock,
    EncoderBlock,
    NotPad,
    SharedEmbedding,
    SinusoidalPosition,
)

KINDS = ("gru", "transformer")
HYPERPARAMETERS = {  # the ModelConfig fields each kind reads
    "gru": ("embedding_dim", "units"),
    "transformer": ("dim", "heads", "hidden", "encoder_layers", "decoder_layers", "dropout", "max_positions",
                    "copy"),
}


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "transformer"
    # gru (the original example's sizes)
    embedding_dim: int = 300
    units: int = 300
    # transformer
    dim: int = 256
    heads: int = 4
    hidden: int = 1024
    encoder_layers: int = 3
    decoder_layers: int = 2
    dropout: float = 0.1
    max_positions: int = 512
    copy: bool = False  # the pointer-generator head

    def as_dict(self) -> dict:
        return asdict(self)


def build_model(config: ModelConfig, vocab_size: int) -> keras.Model:
    if config.kind == "gru":
        return _gru(config, vocab_size)
    if config.kind == "transformer":
        return _transformer(config, vocab_size)
    raise ValueError(f"unknown model kind {config.kind!r}; choose one of {', '.join(KINDS)}")


def _inputs() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    return (keras.Input((None,), dtype="int32", name="body"),
            keras.Input((None,), dtype="int32", name="title_in"))


def _gru(config: ModelConfig, vocab_size: int) -> keras.Model:
    body, title = _inputs()
    x = keras.layers.Embedding(vocab_size, config.embedding_dim, mask_zero=True, name="body_embedding")(body)
    x = keras.layers.BatchNormalization(name="body_norm")(x)
    _, state = keras.layers.GRU(config.units, return_state=True, name="encoder_gru")(x)
    y = keras.layers.Embedding(vocab_size, config.embedding_dim, name="title_embedding")(title)
    y = keras.layers.BatchNormalization(name="title_norm")(y)
    y, _ = keras.layers.GRU(config.units, return_sequences=True, return_state=True,
                            name="decoder_gru")(y, initial_state=state)
    y = keras.layers.BatchNormalization(name="output_norm")(y)
    logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")(y)
    return keras.Model([body, title], logits, name="gru")


def _transformer(config: ModelConfig, vocab_size: int) -> keras.Model:
    body, title = _inputs()
    embed = SharedEmbedding(vocab_size, config.dim, name="embedding")
    position = SinusoidalPosition(config.max_positions, name="position")
    body_mask = NotPad(name="body_mask")(body)
    x = keras.layers.Dropout(config.dropout, name="body_dropout")(position(embed(body)))
    for i in range(config.encoder_layers):
        x = EncoderBlock(config.dim, config.heads, config.hidden, config.dropout,
                         name=f"encoder_{i}")(x, body_mask)
    memory = keras.layers.LayerNormalization(epsilon=1e-6, name="encoder_norm")(x)
    y = keras.layers.Dropout(config.dropout, name="title_dropout")(position(embed(title)))
    for i in range(config.decoder_layers):
        y = DecoderBlock(config.dim, config.heads, config.hidden, config.dropout,
                         name=f"decoder_{i}")(y, memory, body_mask)
    y = keras.layers.LayerNormalization(epsilon=1e-6, name="decoder_norm")(y)
    logits = embed(y, mode="logits")
    if config.copy:
        logits = CopyHead(config.dim, vocab_size, name="copy")(y, memory, body, body_mask, logits)
    return keras.Model([body, title], logits, name="transformer")


@keras.saving.register_keras_serializable(PACKAGE)
class TitleLoss(keras.losses.Loss):
    """Cross-entropy over title tokens, padding ignored, with label smoothing (every token
    gets s / vocabulary, the true one 1 - s more): the mean is over real tokens, not padded
    positions."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "title_loss", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        targets = ops.cast(y_true, "int32")
        true = -ops.squeeze(ops.take_along_axis(log_probs, targets[..., None], axis=-1), -1)
        losses = (1.0 - self.label_smoothing) * true - self.label_smoothing * ops.mean(log_probs, axis=-1)
        real = ops.cast(ops.not_equal(targets, 0), "float32")
        # The reduction averages over every position; dividing by the share of real tokens
        # turns that into the average over real tokens.
        return losses * real / ops.maximum(ops.mean(real), 1e-9)

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def copy_head(model: keras.Model) -> CopyHead | None:
    """The model's copy head, if it has one: its decoder then also reads the body's ids."""
    return next((layer for layer in model.layers if isinstance(layer, CopyHead)), None)


def inference_models(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """The trained model cut in two for decoding one token at a time, sharing its weights:

    - gru: encoder `body -> state`; decoder `(last token [B, 1], state) -> (logits [B, V], state)`
    - transformer: encoder `body -> (memory, body mask)`; decoder `(tokens so far [B, T],
      memory, body mask[, body ids with the copy head]) -> logits of the last position [B, V]`
    """
    layer = model.get_layer
    body = keras.Input((None,), dtype="int32", name="body")
    if model.name == "gru":
        x = layer("body_norm")(layer("body_embedding")(body))
        _, state = layer("encoder_gru")(x)
        token = keras.Input((1,), dtype="int32", name="token")
        state_in = keras.Input((layer("encoder_gru").units,), name="state")
        y = layer("title_norm")(layer("title_embedding")(token))
        y, state_out = layer("decoder_gru")(y, initial_state=state_in)
        logits = layer("logits")(layer("output_norm")(y))[:, -1]
        return (keras.Model(body, state, name="gru_encoder"),
                keras.Model([token, state_in], [logits, state_out], name="gru_decoder"))
    embed, position = layer("embedding"), layer("position")
    blocks = [x for x in model.layers if isinstance(x, EncoderBlock | DecoderBlock)]
    mask = layer("body_mask")(body)
    x = position(embed(body))
    for block in blocks:
        if isinstance(block, EncoderBlock):
            x = block(x, mask)
    memory = layer("encoder_norm")(x)
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    memory_in = keras.Input((None, embed.dim), name="memory")
    mask_in = keras.Input((None,), dtype="bool", name="body_mask")
    y = position(embed(tokens))
    for block in blocks:
        if isinstance(block, DecoderBlock):
            y = block(y, memory_in, mask_in)
    y = layer("decoder_norm")(y[:, -1:])
    logits = embed(y, mode="logits")
    inputs = [tokens, memory_in, mask_in]
    copy = copy_head(model)
    if copy is not None:
        inputs.append(keras.Input((None,), dtype="int32", name="body_ids"))
        logits = copy(y, memory_in, inputs[-1], mask_in, logits)
    return (keras.Model(body, [memory, mask], name="transformer_encoder"),
            keras.Model(inputs, logits[:, 0], name="transformer_decoder"))


def load_model(path: object) -> keras.Model:
    """A saved `.keras` model; loading through this module registers the custom layers."""
    return keras.models.load_model(path)


def bundle_model(folder: Path, manifest: dict) -> keras.Model:
    """A verified bundle's Keras model: built from its config, each variable read from where
    `keras_weights.json` puts it in `weights.bin` (the bundle keeps no `.keras` copy)."""
    index = json.loads((folder / KERAS_WEIGHTS).read_text())
    model = build_model(ModelConfig(**manifest["config"]["model"]), index["vocab_size"])
    stored = index["weights"]
    if sorted(stored) != sorted(variable.path for variable in model.weights):
        raise UserError(f"{folder}: its Keras weights do not fit the model its manifest describes; "
                        "export it again with this version of issue-summarizer")
    data = np.memmap(folder / WEIGHTS, dtype=np.uint8, mode="r")
    for variable in model.weights:
        place = stored[variable.path]
        raw = data[place["offset"]:place["offset"] + place["length"]]
        variable.assign(np.array(raw.view(place["dtype"]).reshape(place["shape"])))
    return model
