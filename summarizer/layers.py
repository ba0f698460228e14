"""Keras 3 layers of the Transformer, written with `keras.ops` only so TensorFlow and JAX run
the same code, and with explicit projections so an exporter can reach every weight.

Masks travel as plain tensors (`True` = a real token) rather than Keras's implicit masking:
what a layer attends to is then visible in its call, on every backend and in ONNX.
"""

from __future__ import annotations

import math
import warnings

import keras
from keras import ops

PACKAGE = "summarizer"
# Decoding one token at a time attends over a single key at the first step; Keras warns about
# a softmax over one element there, which is exactly what is meant.
warnings.filterwarnings("ignore", message="You are using a softmax over axis -1")


@keras.saving.register_keras_serializable(PACKAGE)
class NotPad(keras.layers.Layer):
    """Token ids in, `True` where the id is not padding (0)."""

    def call(self, ids):
        return ops.not_equal(ids, 0)

    def compute_output_spec(self, ids):
        return keras.KerasTensor(ids.shape, dtype="bool")


@keras.saving.register_keras_serializable(PACKAGE)
class SharedEmbedding(keras.layers.Layer):
    """Token embeddings whose transpose is also the output projection: one matrix serves the
    body, the title and the softmax, which saves a third of a small model's parameters."""

    def __init__(self, vocab_size: int, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.vocab_size, self.dim = vocab_size, dim

    def build(self, input_shape) -> None:
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.vocab_size, self.dim),
            initializer=keras.initializers.RandomNormal(stddev=self.dim ** -0.5))

    def call(self, inputs, mode: str = "embed"):
        if mode == "embed":
            # Scaled by sqrt(dim) so token and position signals start at the same size.
            return ops.take(ops.cast(self.embeddings, self.compute_dtype), ops.cast(inputs, "int32"),
                            axis=0) * math.sqrt(self.dim)
        # Logits are computed in float32 even under mixed precision: softmax needs the range.
        return ops.matmul(ops.cast(inputs, "float32"),
                          ops.transpose(ops.cast(self.embeddings, "float32")))

    def compute_output_spec(self, inputs, mode: str = "embed"):
        if mode == "embed":
            return keras.KerasTensor((*inputs.shape, self.dim), dtype=self.compute_dtype)
        return keras.KerasTensor((*inputs.shape[:-1], self.vocab_size), dtype="float32")

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size, "dim": self.dim}


@keras.saving.register_keras_serializable(PACKAGE)
class SinusoidalPosition(keras.layers.Layer):
    """Adds fixed sine/cosine positions: no weights, and any length up to `max_length` works."""

    def __init__(self, max_length: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length

    def call(self, x):
        dim = x.shape[-1]
        positions = ops.cast(ops.arange(ops.shape(x)[1]), "float32")[:, None]
        rates = ops.exp(ops.arange(0, dim, 2, dtype="float32") * (-math.log(10000.0) / dim))
        angles = positions * rates[None, :]
        table = ops.reshape(ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1), (-1, dim))
        return x + ops.cast(table[None], x.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "max_length": self.max_length}


@keras.saving.register_keras_serializable(PACKAGE)
class Attention(keras.layers.Layer):
    """Multi-head dot-product attention with separate query/key/value/output projections."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if dim % heads:
            raise ValueError(f"model dimension {dim} is not divisible by {heads} heads")
        self.dim, self.heads, self.dropout = dim, heads, dropout
        # Sub-layers compute in this layer's precision, not the global one: a model trained in
        # mixed bfloat16 then loads where the global policy is float32 (TensorFlow refuses to
        # add bfloat16 to float32 where JAX promotes).
        dtype = self.dtype_policy
        self.query, self.key, self.value, self.output_projection = (
            keras.layers.Dense(dim, name=name, dtype=dtype) for name in ("query", "key", "value", "output"))
        self.drop = keras.layers.Dropout(dropout, dtype=dtype)

    def build(self, query_shape, memory_shape=None, mask_shape=None) -> None:
        for layer in (self.query, self.key, self.value, self.output_projection):
            layer.build(query_shape)

    def _split(self, x):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        return ops.transpose(ops.reshape(x, (batch, length, self.heads, self.dim // self.heads)),
                             (0, 2, 1, 3))

    def call(self, x, memory, mask, training=None):
        """`mask` [batch, query or 1, keys]: True where a query may look at a key."""
        q = self._split(self.query(x)) * (self.dim // self.heads) ** -0.5
        k, v = self._split(self.key(memory)), self._split(self.value(memory))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
        scores = ops.where(mask[:, None], scores, ops.cast(-1e9 if scores.dtype == "float32" else -3e4,
                                                           scores.dtype))
        # Zeroing the masked keys again matters only for a query with no key at all (an empty
        # body): it then reads nothing, instead of an average over however much padding its
        # batch happens to have.
        weights = ops.softmax(scores, axis=-1) * ops.cast(mask[:, None], scores.dtype)
        weights = self.drop(weights, training=training)
        heads = ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        return self.output_projection(ops.reshape(heads, (batch, length, self.dim)))

    def get_config(self) -> dict:
        return {**super().get_config(), "dim": self.dim, "heads": self.heads, "dropout": self.dropout}


@keras.saving.register_keras_serializable(PACKAGE)
class FeedForward(keras.layers.Layer):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dim, self.hidden, self.dropout = dim, hidden, dropout
        dtype = self.dtype_policy  # see Attention
        self.inner = keras.layers.Dense(hidden, activation="gelu", name="inner", dtype=dtype)
        self.outer = keras.layers.Dense(dim, name="outer", dtype=dtype)
        self.drop = keras.layers.Dropout(dropout, dtype=dtype)

    def build(self, input_shape) -> None:
        self.inner.build(input_shape)
        self.outer.build((*input_shape[:-1], self.hidden))

    def call(self, x, training=None):
        return self.outer(self.drop(self.inner(x), training=training))

    def get_config(self) -> dict:
        return {**super().get_config(), "dim": self.dim, "hidden": self.hidden, "dropout": self.dropout}


class _Block(keras.layers.Layer):
    """What encoder and decoder blocks share: sizes, the closing feed-forward, dropout."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dim, self.heads, self.hidden, self.dropout = dim, heads, hidden, dropout
        dtype = self.dtype_policy  # see Attention
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="ffn_norm", dtype=dtype)
        self.ffn = FeedForward(dim, hidden, dropout, name="ffn", dtype=dtype)
        self.drop = keras.layers.Dropout(dropout, dtype=dtype)

    def _feed_forward(self, x, training=None):
        return x + self.drop(self.ffn(self.ffn_norm(x), training=training), training=training)

    def get_config(self) -> dict:
        return {**super().get_config(), "dim": self.dim, "heads": self.heads, "hidden": self.hidden,
                "dropout": self.dropout}


@keras.saving.register_keras_serializable(PACKAGE)
class EncoderBlock(_Block):
    """Pre-layer-norm block: x + attention(norm(x)), then x + feed-forward(norm(x)); the
    residual path stays an identity, which keeps small models stable without warmup tricks."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float = 0.1, **kwargs) -> None:
        super().__init__(dim, heads, hidden, dropout, **kwargs)
        dtype = self.dtype_policy  # see Attention
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm",
                                                              dtype=dtype)
        self.attention = Attention(dim, heads, dropout, name="attention", dtype=dtype)

    def build(self, x_shape, body_mask_shape=None) -> None:
        for layer in (self.attention_norm, self.attention, self.ffn_norm, self.ffn):
            layer.build(x_shape)

    def call(self, x, body_mask, training=None):
        h = self.attention_norm(x)
        x = x + self.drop(self.attention(h, h, body_mask[:, None, :], training=training), training=training)
        return self._feed_forward(x, training=training)


def causal_mask(length):
    """[1, length, length]: position i sees positions 0..i."""
    return (ops.arange(length)[None, :] <= ops.arange(length)[:, None])[None]


@keras.saving.register_keras_serializable(PACKAGE)
class DecoderBlock(_Block):
    """Pre-layer-norm block: causal self-attention, attention over the body, feed-forward."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float = 0.1, **kwargs) -> None:
        super().__init__(dim, heads, hidden, dropout, **kwargs)
        dtype = self.dtype_policy  # see Attention
        self.self_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="self_norm", dtype=dtype)
        self.self_attention = Attention(dim, heads, dropout, name="self_attention", dtype=dtype)
        self.cross_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="cross_norm", dtype=dtype)
        self.cross_attention = Attention(dim, heads, dropout, name="cross_attention", dtype=dtype)

    def build(self, y_shape, memory_shape=None, body_mask_shape=None) -> None:
        for layer in (self.self_norm, self.self_attention, self.cross_norm, self.cross_attention,
                      self.ffn_norm, self.ffn):
            layer.build(y_shape)

    def call(self, y, memory, body_mask, training=None):
        length = ops.shape(y)[1]
        h = self.self_norm(y)
        y = y + self.drop(self.self_attention(h, h, causal_mask(length), training=training),
                          training=training)
        h = self.cross_norm(y)
        y = y + self.drop(self.cross_attention(h, memory, body_mask[:, None, :], training=training),
                          training=training)
        return self._feed_forward(y, training=training)


def to_vocabulary(weights, body, vocab_size: int):
    """Attention over body positions [B, T, S] summed into the vocabulary [B, T, V]: each
    weight goes to its token id's slot of its own row. One flat segment sum: a one-hot
    [B, S, V] would not fit, and summing per (batch, position) row needs no transposes of the
    [B, T, V] result (half the time, forward and backward)."""
    batch, length, source = ops.shape(weights)[0], ops.shape(weights)[1], ops.shape(weights)[2]
    offsets = ops.arange(batch * length, dtype="int32")[:, None] * vocab_size  # [B*T, 1]
    ids = ops.repeat(ops.cast(body, "int32")[:, None, :], length, axis=1)  # [B, T, S]
    ids = ops.reshape(ids, (batch * length, source))
    summed = ops.segment_sum(ops.reshape(weights, (-1,)), ops.reshape(offsets + ids, (-1,)),
                             num_segments=batch * length * vocab_size)
    return ops.reshape(summed, (batch, length, vocab_size))


@keras.saving.register_keras_serializable(PACKAGE)
class CopyHead(keras.layers.Layer):
    """The pointer-generator output (See et al., 2017): a gate mixes the vocabulary softmax
    with one attention over the body's own tokens, so a title can copy the names, errors and
    versions that make it specific and that a small model rarely learns to spell from the
    vocabulary. Returns log-probabilities [B, T, V] in float32: a log-softmax (the loss's,
    decoding's) leaves them as they are."""

    EPSILON = 1e-9  # keeps the log finite where neither side gives a token any probability

    def __init__(self, dim: int, vocab_size: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dim, self.vocab_size = dim, vocab_size
        dtype = self.dtype_policy  # see Attention
        self.query = keras.layers.Dense(dim, name="query", dtype=dtype)
        self.key = keras.layers.Dense(dim, name="key", dtype=dtype)
        self.gate = keras.layers.Dense(1, name="gate", dtype=dtype)

    def build(self, y_shape, memory_shape=None, body_shape=None, body_mask_shape=None,
              logits_shape=None) -> None:
        for layer in (self.query, self.key, self.gate):
            layer.build(y_shape)

    def call(self, y, memory, body, body_mask, logits):
        """`y` the decoder's output [B, T, dim], `memory` the encoder's [B, S, dim], `body` its
        ids and `body_mask` [B, S], `logits` the vocabulary's [B, T, V]."""
        scores = ops.matmul(self.query(y), ops.transpose(self.key(memory), (0, 2, 1)))
        scores = ops.cast(scores, "float32") * self.dim ** -0.5
        mask = body_mask[:, None, :]
        weights = ops.softmax(ops.where(mask, scores, -1e9), axis=-1) * ops.cast(mask, "float32")
        # The generator's share [B, T, 1]; all of it for an empty body, which has nothing to copy.
        has_body = ops.cast(ops.any(body_mask, axis=-1), "float32")[:, None, None]
        copied = (1.0 - ops.sigmoid(ops.cast(self.gate(y), "float32"))) * has_body
        mixed = ((1.0 - copied) * ops.softmax(ops.cast(logits, "float32"), axis=-1)
                 + copied * to_vocabulary(weights, body, self.vocab_size))
        return ops.log(mixed + self.EPSILON)

    def compute_output_spec(self, y, memory, body, body_mask, logits):
        return keras.KerasTensor(logits.shape, dtype="float32")

    def get_config(self) -> dict:
        return {**super().get_config(), "dim": self.dim, "vocab_size": self.vocab_size}
