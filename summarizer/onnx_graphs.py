"""A trained Keras title model written out as the three ONNX graphs the serving engine runs:

- encoder: `body [B, S] int64 -> the decoding state` (every output is a state entry);
- decoder: `token [B] int64 + every state entry -> log_probs [B, V] + next_<entry> for each
  entry that changes` (the log-softmax runs in the graph, vectorized and threaded);
- scorer: `title [B, T] int64 (start token first) + target [B, T] int64 (the title shifted by
  one, end token last) + the state entries it reads -> target_log_probs [B, T]`: every
  position of a given title at once, for weighing a title the search did not write (the
  body's lead sentence, see `lead`) in one call instead of one per token.

The Transformer's state is the body mask, each decoder layer's cross-attention keys and
values (computed once per body) and its self-attention key/value cache, which grows by one
position per step: a step costs one token's work instead of rerunning the whole prefix as the
Keras decoder does. Keys are stored transposed (`[B, heads, head_dim, T]`) so no step
transposes them. With the copy head the state also holds the body's ids and the head's keys
(`[B, dim, S]`), and the step scatters the copy attention onto the vocabulary's probabilities.
The GRU's state is its hidden vector.

The graphs are written op by op from the layers' weights rather than by a converter: every
weight is reachable (see `layers`), the cache is ours to shape, and opset 17 with IR 9 loads
on the ONNX Runtime versions serving pins.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from summarizer.layers import CopyHead, DecoderBlock, EncoderBlock
from summarizer.models import copy_head

OPSET = 17
IR_VERSION = 9
_INT64 = TensorProto.INT64
_FLOAT = TensorProto.FLOAT


class _Graph:
    """Nodes, weights and names for one ONNX graph."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._count = 0

    def _fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: np.ndarray | float | list, name: str = "c") -> str:
        array = np.asarray(value)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        tensor_name = self._fresh(name)
        self.weights.append(numpy_helper.from_array(array, tensor_name))
        return tensor_name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, name: str | None = None,
           **attributes: object) -> str | list[str]:
        names = [name] if name and outputs == 1 else [self._fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attributes))
        return names[0] if outputs == 1 else names

    def input(self, name: str, dtype: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, dtype, shape))
        return name

    def output(self, value: str, name: str, dtype: int, shape: list) -> None:
        self.op("Identity", value, name=name)
        self.outputs.append(helper.make_tensor_value_info(name, dtype, shape))

    def log_probs(self, logits: str, vocab: int) -> None:
        self.output(self.op("LogSoftmax", logits, axis=-1), "log_probs", _FLOAT, ["batch", vocab])

    def targets(self) -> tuple[str, str, str]:
        """The scorer's `target` input [B, T], where its real tokens (not padding) are [N, 2], and
        those tokens [N]: only they go through the vocabulary, as rows."""
        target = self.input("target", _INT64, ["batch", "title_length"])
        real = self.op("Not", self.op("Equal", target, self.const(np.array(0, np.int64))))
        where = self.op("Transpose", self.op("NonZero", real), perm=[1, 0])
        return target, where, self.op("GatherND", target, where)

    def target_log_probs(self, logits: str, target: str) -> str:
        """Each row's target log-probability [N] from its logits [N, V] (LogSoftmax's kernel is
        several times faster than ReduceLogSumExp's here)."""
        axis = self.const(np.array([1], np.int64))
        log_probs = self.op("LogSoftmax", logits, axis=-1)
        picked = self.op("GatherElements", log_probs, self.op("Unsqueeze", target, axis), axis=1)
        return self.op("Squeeze", picked, axis)

    def scorer_output(self, target: str, where: str, log_probs: str) -> None:
        """`target_log_probs` [B, T]: the rows' log-probabilities in place, 0 at padding."""
        zeros = self.op("ConstantOfShape", self.op("Shape", target),
                        value=numpy_helper.from_array(np.zeros(1, np.float32)))
        self.output(self.op("ScatterND", zeros, where, log_probs), "target_log_probs", _FLOAT,
                    ["batch", "title_length"])

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="issue-summarizer")
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model

    # Keras layers as ops

    def dense(self, x: str, layer: keras.layers.Dense) -> str:
        kernel, bias = layer.get_weights()
        return self.op("Add", self.op("MatMul", x, self.const(kernel, f"{layer.name}_kernel")),
                       self.const(bias, f"{layer.name}_bias"))

    def gemm(self, x: str, layer: keras.layers.Dense, scale: float = 1.0) -> str:
        """A Dense layer on rows [B, in] as one op; `scale` multiplies its output (folded in)."""
        kernel, bias = layer.get_weights()
        return self.op("Gemm", x, self.const(kernel * np.float32(scale), f"{layer.name}_kernel"),
                       self.const(bias * np.float32(scale), f"{layer.name}_bias"))

    def layer_norm(self, x: str, layer: keras.layers.LayerNormalization) -> str:
        gamma, beta = layer.get_weights()
        return self.op("LayerNormalization", x, self.const(gamma, f"{layer.name}_gamma"),
                       self.const(beta, f"{layer.name}_beta"), axis=-1, epsilon=float(layer.epsilon))

    def batch_norm(self, x: str, layer: keras.layers.BatchNormalization) -> str:
        """Inference-mode batch norm folded into one scale and shift."""
        gamma, beta, mean, variance = (w.astype(np.float64) for w in layer.get_weights())
        scale = gamma / np.sqrt(variance + layer.epsilon)
        return self.op("Add", self.op("Mul", x, self.const(scale, f"{layer.name}_scale")),
                       self.const(beta - mean * scale, f"{layer.name}_shift"))

    def gelu(self, x: str) -> str:
        """The exact (erf) GELU Keras's `"gelu"` activation computes, written in the op order
        ONNX Runtime fuses into one Gelu kernel."""
        erf = self.op("Erf", self.op("Div", x, self.const(np.float32(math.sqrt(2)))))
        return self.op("Mul", self.op("Mul", x, self.op("Add", erf, self.const(np.float32(1.0)))),
                       self.const(np.float32(0.5)))


# Transformer


def _positions(length: int, dim: int) -> np.ndarray:
    """The table `SinusoidalPosition` computes, interleaved sine/cosine per frequency."""
    positions = np.arange(length, dtype=np.float32)[:, None]
    rates = np.exp(np.arange(0, dim, 2, dtype=np.float32) * np.float32(-math.log(10000.0) / dim))
    angles = positions * rates[None, :]
    return np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(length, dim)


class _Transformer:
    def __init__(self, model: keras.Model) -> None:
        self.model = model
        embedding = model.get_layer("embedding")
        self.table = embedding.get_weights()[0]
        self.dim = embedding.dim
        self.positions = _positions(model.get_layer("position").max_length, self.dim)
        self.encoders = [layer for layer in model.layers if isinstance(layer, EncoderBlock)]
        self.decoders = [layer for layer in model.layers if isinstance(layer, DecoderBlock)]
        self.heads = self.encoders[0].heads if self.encoders else self.decoders[0].heads
        self.head_dim = self.dim // self.heads
        self.copy = copy_head(model)

    def _embed(self, g: _Graph, ids: str, table: str) -> str:
        return g.op("Mul", g.op("Gather", table, ids), g.const(np.float32(math.sqrt(self.dim))))

    def _heads(self, g: _Graph, x: str, transpose_keys: bool = False) -> str:
        """[B, T, dim] -> [B, heads, T, head_dim], or [B, heads, head_dim, T] for keys."""
        split = g.op("Reshape", x, g.const(np.array([0, 0, self.heads, self.head_dim], np.int64)))
        return g.op("Transpose", split, perm=[0, 2, 3, 1] if transpose_keys else [0, 2, 1, 3])

    @staticmethod
    def _read(g: _Graph, query: str, keys: str, values: str, mask: str | None) -> str:
        """What each query head reads, [B, heads, T, head_dim], from transposed keys and values
        split in heads; `mask` [B, 1, 1, S] bool, or None where every key is visible."""
        scores = g.op("MatMul", query, keys)
        if mask is not None:
            scores = g.op("Where", mask, scores, g.const(np.float32(-1e9)))
        weights = g.op("Softmax", scores, axis=-1)
        if mask is not None:  # an empty body reads nothing, as in `layers.Attention`
            weights = g.op("Mul", weights, g.op("Cast", mask, to=_FLOAT))
        return g.op("MatMul", weights, values)

    def _attend(self, g: _Graph, x: str, attention: keras.layers.Layer, keys: str, values: str,
                mask: str) -> str:
        """Attention of `x` [B, T, dim] over the body."""
        query = g.op("Mul", self._heads(g, g.dense(x, attention.query)),
                     g.const(np.float32(self.head_dim ** -0.5)))
        heads = g.op("Transpose", self._read(g, query, keys, values, mask), perm=[0, 2, 1, 3])
        merged = g.op("Reshape", heads, g.const(np.array([0, 0, self.dim], np.int64)))
        return g.dense(merged, attention.output_projection)

    def _feed_forward(self, g: _Graph, x: str, block: keras.layers.Layer) -> str:
        inner = g.gelu(g.dense(g.layer_norm(x, block.ffn_norm), block.ffn.inner))
        return g.op("Add", x, g.dense(inner, block.ffn.outer))

    def encoder(self) -> onnx.ModelProto:
        g = _Graph("transformer_encoder")
        body = g.input("body", _INT64, ["batch", "body_length"])
        mask = g.op("Not", g.op("Equal", body, g.const(np.array(0, np.int64))))
        length = g.op("Slice", g.op("Shape", body), g.const(np.array([1], np.int64)),
                      g.const(np.array([2], np.int64)))
        positions = g.op("Slice", g.const(self.positions, "positions"), g.const(np.array([0], np.int64)),
                         length)
        x = g.op("Add", self._embed(g, body, g.const(self.table, "embedding")), positions)
        mask4 = g.op("Unsqueeze", mask, g.const(np.array([1, 2], np.int64)))
        for block in self.encoders:
            h = g.layer_norm(x, block.attention_norm)
            keys = self._heads(g, g.dense(h, block.attention.key), transpose_keys=True)
            values = self._heads(g, g.dense(h, block.attention.value))
            x = g.op("Add", x, self._attend(g, h, block.attention, keys, values, mask4))
            x = self._feed_forward(g, x, block)
        memory = g.layer_norm(x, self.model.get_layer("encoder_norm"))
        g.output(mask, "body_mask", TensorProto.BOOL, ["batch", "body_length"])
        batch = g.op("Slice", g.op("Shape", body), g.const(np.array([0], np.int64)),
                     g.const(np.array([1], np.int64)))
        empty_shape = g.op("Concat", batch, g.const(np.array([self.heads, self.head_dim, 0], np.int64)),
                           axis=0)
        empty = g.op("ConstantOfShape", empty_shape, value=numpy_helper.from_array(np.zeros(1, np.float32)))
        for i, block in enumerate(self.decoders):
            cross = block.cross_attention
            g.output(self._heads(g, g.dense(memory, cross.key), transpose_keys=True), f"cross_keys_{i}",
                     _FLOAT, ["batch", self.heads, self.head_dim, "body_length"])
            g.output(self._heads(g, g.dense(memory, cross.value)), f"cross_values_{i}", _FLOAT,
                     ["batch", self.heads, "body_length", self.head_dim])
            g.output(empty, f"self_keys_{i}", _FLOAT, ["batch", self.heads, self.head_dim, 0])
            g.output(g.op("Transpose", empty, perm=[0, 1, 3, 2]), f"self_values_{i}", _FLOAT,
                     ["batch", self.heads, 0, self.head_dim])
        if self.copy is not None:
            g.output(body, "body_ids", _INT64, ["batch", "body_length"])
            g.output(g.op("Transpose", g.dense(memory, self.copy.key), perm=[0, 2, 1]), "copy_keys", _FLOAT,
                     ["batch", self.dim, "body_length"])
        return g.model()

    def _step_attend(self, g: _Graph, x: str, attention: keras.layers.Layer, keys: str, values: str,
                     mask: str | None) -> str:
        """One position's attention, on rows [B, dim]: with a single query, the head split and
        merge are plain reshapes (no transposes), and the query scale is folded into its weights."""
        query = g.op("Reshape", g.gemm(x, attention.query, self.head_dim ** -0.5),
                     g.const(np.array([0, self.heads, 1, self.head_dim], np.int64)))
        merged = g.op("Reshape", self._read(g, query, keys, values, mask),
                      g.const(np.array([0, self.dim], np.int64)))
        return g.gemm(merged, attention.output_projection)

    def decoder(self) -> onnx.ModelProto:
        """One step for every row at once, on rows [B, dim] so that each Dense layer is one Gemm
        and no op reshapes a sequence axis: a step is dozens of small ops, each with a fixed cost."""
        g = _Graph("transformer_decoder")
        token = g.input("token", _INT64, ["batch"])
        mask = g.input("body_mask", TensorProto.BOOL, ["batch", "body_length"])
        mask4 = g.op("Unsqueeze", mask, g.const(np.array([1, 2], np.int64)))
        cache_inputs = []
        for i in range(len(self.decoders)):
            cache_inputs.append((
                g.input(f"cross_keys_{i}", _FLOAT, ["batch", self.heads, self.head_dim, "body_length"]),
                g.input(f"cross_values_{i}", _FLOAT, ["batch", self.heads, "body_length", self.head_dim]),
                g.input(f"self_keys_{i}", _FLOAT, ["batch", self.heads, self.head_dim, "past"]),
                g.input(f"self_values_{i}", _FLOAT, ["batch", self.heads, "past", self.head_dim])))
        # The step's position is the cache length: every row decodes in lockstep.
        step = g.op("Slice", g.op("Shape", cache_inputs[0][2]), g.const(np.array([3], np.int64)),
                    g.const(np.array([4], np.int64)))
        position = g.op("Gather", g.const(self.positions, "positions"), step)  # [1, dim]
        table = g.const(self.table, "embedding")
        y = g.op("Add", self._embed(g, token, table), position)  # [B, dim]
        key_shape = g.const(np.array([0, self.heads, self.head_dim, 1], np.int64))
        value_shape = g.const(np.array([0, self.heads, 1, self.head_dim], np.int64))
        for i, (block, (cross_keys, cross_values, past_keys, past_values)) in enumerate(
                zip(self.decoders, cache_inputs, strict=True)):
            h = g.layer_norm(y, block.self_norm)
            attention = block.self_attention
            keys = g.op("Concat", past_keys, g.op("Reshape", g.gemm(h, attention.key), key_shape), axis=3)
            values = g.op("Concat", past_values, g.op("Reshape", g.gemm(h, attention.value), value_shape),
                          axis=2)
            y = g.op("Add", y, self._step_attend(g, h, attention, keys, values, None))
            h = g.layer_norm(y, block.cross_norm)
            cross = self._step_attend(g, h, block.cross_attention, cross_keys, cross_values, mask4)
            y = g.op("Add", y, cross)
            h = g.layer_norm(y, block.ffn_norm)
            y = g.op("Add", y, g.gemm(g.gelu(g.gemm(h, block.ffn.inner)), block.ffn.outer))
            g.output(keys, f"next_self_keys_{i}", _FLOAT, ["batch", self.heads, self.head_dim, "next"])
            g.output(values, f"next_self_values_{i}", _FLOAT, ["batch", self.heads, "next", self.head_dim])
        y = g.layer_norm(y, self.model.get_layer("decoder_norm"))
        logits = g.op("Gemm", y, table, transB=1)
        if self.copy is None:
            g.log_probs(logits, len(self.table))
        else:
            g.output(self._copy(g, y, logits, mask), "log_probs", _FLOAT, ["batch", len(self.table)])
        return g.model()

    def scorer(self) -> onnx.ModelProto:
        """Every position of the given titles at once, as training runs the decoder: causal
        self-attention instead of the step's cache."""
        g = _Graph("transformer_scorer")
        title = g.input("title", _INT64, ["batch", "title_length"])
        mask = g.input("body_mask", TensorProto.BOOL, ["batch", "body_length"])
        mask4 = g.op("Unsqueeze", mask, g.const(np.array([1, 2], np.int64)))
        length = g.op("Slice", g.op("Shape", title), g.const(np.array([1], np.int64)),
                      g.const(np.array([2], np.int64)))
        zero = g.const(np.array([0], np.int64))
        positions = g.op("Slice", g.const(self.positions, "positions"), zero, length)
        table = g.const(self.table, "embedding")
        y = g.op("Add", self._embed(g, title, table), positions)  # [B, T, dim]
        earlier = np.tril(np.ones((len(self.positions),) * 2, dtype=bool))  # what each position sees
        causal = g.op("Slice", g.const(earlier, "causal"), g.const(np.array([0, 0], np.int64)),
                      g.op("Concat", length, length, axis=0))
        causal = g.op("Unsqueeze", causal, g.const(np.array([0, 1], np.int64)))  # [1, 1, T, T]
        for i, block in enumerate(self.decoders):
            cross_keys = g.input(f"cross_keys_{i}", _FLOAT,
                                 ["batch", self.heads, self.head_dim, "body_length"])
            cross_values = g.input(f"cross_values_{i}", _FLOAT,
                                   ["batch", self.heads, "body_length", self.head_dim])
            h = g.layer_norm(y, block.self_norm)
            attention = block.self_attention
            keys = self._heads(g, g.dense(h, attention.key), transpose_keys=True)
            values = self._heads(g, g.dense(h, attention.value))
            y = g.op("Add", y, self._attend(g, h, attention, keys, values, causal))
            h = g.layer_norm(y, block.cross_norm)
            y = g.op("Add", y, self._attend(g, h, block.cross_attention, cross_keys, cross_values, mask4))
            y = self._feed_forward(g, y, block)
        y = g.layer_norm(y, self.model.get_layer("decoder_norm"))
        target, where, real_targets = g.targets()
        logits = g.op("Gemm", g.op("GatherND", y, where), table, transB=1)  # [N, V]
        log_probs = g.target_log_probs(logits, real_targets)
        if self.copy is not None:
            log_probs = self._copied(g, y, mask, target, where, log_probs)
        g.scorer_output(target, where, log_probs)
        return g.model()

    def _copied(self, g: _Graph, y: str, mask: str, target: str, where: str, log_generated: str) -> str:
        """`CopyHead` for the targets: the generator's probability of each target mixed with the
        copy attention's weight on the body positions holding it (log-probabilities [N])."""
        body = g.input("body_ids", _INT64, ["batch", "body_length"])
        keys = g.input("copy_keys", _FLOAT, ["batch", self.dim, "body_length"])
        query = g.op("Mul", g.dense(y, self.copy.query), g.const(np.float32(self.dim ** -0.5)))
        scores = g.op("MatMul", query, keys)  # [B, T, S]
        body_mask = g.op("Unsqueeze", mask, g.const(np.array([1], np.int64)))  # [B, 1, S]
        real = g.op("Cast", body_mask, to=_FLOAT)
        weights = g.op("Softmax", g.op("Where", body_mask, scores, g.const(np.float32(-1e9))), axis=-1)
        weights = g.op("Mul", weights, real)
        holds = g.op("Cast", g.op("Equal", g.op("Unsqueeze", body, g.const(np.array([1], np.int64))),
                                  g.op("Unsqueeze", target, g.const(np.array([2], np.int64)))), to=_FLOAT)
        copied = g.op("ReduceSum", g.op("Mul", weights, holds), g.const(np.array([2], np.int64)), keepdims=0)
        has_body = g.op("ReduceMax", real, axes=[2], keepdims=0)  # [B, 1]: an empty body copies nothing
        unit = g.const(np.float32(1.0))
        gate = g.op("Squeeze", g.op("Sigmoid", g.dense(y, self.copy.gate)), g.const(np.array([2], np.int64)))
        share = g.op("GatherND", g.op("Mul", g.op("Sub", unit, gate), has_body), where)  # the copy's share
        mixed = g.op("Add", g.op("Mul", g.op("Sub", unit, share), g.op("Exp", log_generated)),
                     g.op("Mul", share, g.op("GatherND", copied, where)))
        return g.op("Log", g.op("Add", mixed, g.const(np.float32(CopyHead.EPSILON))))

    def _copy(self, g: _Graph, y: str, logits: str, mask: str) -> str:
        """`CopyHead` for one position: the gate's share of the vocabulary softmax, with the
        rest of the probability scattered onto the body's token ids."""
        body = g.input("body_ids", _INT64, ["batch", "body_length"])
        keys = g.input("copy_keys", _FLOAT, ["batch", self.dim, "body_length"])
        one = g.const(np.array([1], np.int64))
        query = g.op("Unsqueeze", g.gemm(y, self.copy.query, self.dim ** -0.5), one)
        scores = g.op("Squeeze", g.op("MatMul", query, keys), one)  # [B, S]
        weights = g.op("Softmax", g.op("Where", mask, scores, g.const(np.float32(-1e9))), axis=-1)
        real = g.op("Cast", mask, to=_FLOAT)
        weights = g.op("Mul", weights, real)
        has_body = g.op("ReduceMax", real, axes=[1], keepdims=1)  # [B, 1]
        unit = g.const(np.float32(1.0))
        share = g.op("Mul", g.op("Sub", unit, g.op("Sigmoid", g.gemm(y, self.copy.gate))),
                     has_body)  # the copy's share of the probability
        generated = g.op("Mul", g.op("Softmax", logits, axis=-1), g.op("Sub", unit, share))
        mixed = g.op("ScatterElements", generated, body, g.op("Mul", weights, share), axis=1, reduction="add")
        return g.op("Log", g.op("Add", mixed, g.const(np.float32(CopyHead.EPSILON))))


# GRU


def _gru_weights(g: _Graph, layer: keras.layers.GRU) -> tuple[str, str, str]:
    """Keras GRU weights as ONNX's W, R, B: the same z, r, h gate order; Keras's
    `reset_after` is ONNX's `linear_before_reset`."""
    kernel, recurrent, bias = layer.get_weights()
    return (g.const(kernel.T[None], f"{layer.name}_W"), g.const(recurrent.T[None], f"{layer.name}_R"),
            g.const(bias.reshape(1, -1), f"{layer.name}_B"))


def _gru_encoder(model: keras.Model) -> onnx.ModelProto:
    g = _Graph("gru_encoder")
    body = g.input("body", _INT64, ["batch", "body_length"])
    layer = model.get_layer
    real = g.op("Cast", g.op("Not", g.op("Equal", body, g.const(np.array(0, np.int64)))),
                to=TensorProto.INT32)
    lengths = g.op("ReduceSum", real, g.const(np.array([1], np.int64)), keepdims=0)
    x = g.batch_norm(g.op("Gather", g.const(layer("body_embedding").get_weights()[0], "body_embedding"),
                          body), layer("body_norm"))
    gru = layer("encoder_gru")
    # Bodies are padded at the end and the GRU stops at each body's length, as Keras's mask
    # does; an empty body keeps the zero start state, so it runs one step and is zeroed after.
    steps = g.op("Max", lengths, g.const(np.array([1], np.int32)))
    _, last = g.op("GRU", g.op("Transpose", x, perm=[1, 0, 2]), *_gru_weights(g, gru), steps, outputs=2,
                   hidden_size=gru.units, linear_before_reset=1)
    state = g.op("Mul", g.op("Squeeze", last, g.const(np.array([0], np.int64))),
                 g.op("Unsqueeze", g.op("Cast", g.op("Greater", lengths, g.const(np.array(0, np.int32))),
                                        to=_FLOAT), g.const(np.array([1], np.int64))))
    g.output(state, "state", _FLOAT, ["batch", gru.units])
    return g.model()


def _gru_decoder(model: keras.Model) -> onnx.ModelProto:
    g = _Graph("gru_decoder")
    layer = model.get_layer
    gru = layer("decoder_gru")
    token = g.input("token", _INT64, ["batch"])
    state = g.input("state", _FLOAT, ["batch", gru.units])
    y = g.batch_norm(g.op("Gather", g.const(layer("title_embedding").get_weights()[0], "title_embedding"),
                          token), layer("title_norm"))
    _, next_state = g.op("GRU", g.op("Unsqueeze", y, g.const(np.array([0], np.int64))), *_gru_weights(g, gru),
                         "", g.op("Unsqueeze", state, g.const(np.array([0], np.int64))), outputs=2,
                         hidden_size=gru.units, linear_before_reset=1)
    next_state = g.op("Squeeze", next_state, g.const(np.array([0], np.int64)))
    g.output(next_state, "next_state", _FLOAT, ["batch", gru.units])
    y = g.batch_norm(next_state, layer("output_norm"))
    g.log_probs(g.dense(y, layer("logits")), layer("logits").units)
    return g.model()


def _gru_scorer(model: keras.Model) -> onnx.ModelProto:
    g = _Graph("gru_scorer")
    layer = model.get_layer
    gru = layer("decoder_gru")
    title = g.input("title", _INT64, ["batch", "title_length"])
    state = g.input("state", _FLOAT, ["batch", gru.units])
    y = g.batch_norm(g.op("Gather", g.const(layer("title_embedding").get_weights()[0], "title_embedding"),
                          title), layer("title_norm"))
    outputs, _ = g.op("GRU", g.op("Transpose", y, perm=[1, 0, 2]), *_gru_weights(g, gru), "",
                      g.op("Unsqueeze", state, g.const(np.array([0], np.int64))), outputs=2,
                      hidden_size=gru.units, linear_before_reset=1)  # [T, 1, B, units]
    y = g.op("Transpose", g.op("Squeeze", outputs, g.const(np.array([1], np.int64))), perm=[1, 0, 2])
    target, where, real_targets = g.targets()
    logits = g.dense(g.batch_norm(g.op("GatherND", y, where), layer("output_norm")), layer("logits"))
    g.scorer_output(target, where, g.target_log_probs(logits, real_targets))
    return g.model()


def onnx_graphs(model: keras.Model) -> dict[str, onnx.ModelProto]:
    """`{"encoder.onnx": ..., "decoder.onnx": ..., "scorer.onnx": ...}` for a trained `gru` or
    `transformer`."""
    if model.name == "gru":
        return {"encoder.onnx": _gru_encoder(model), "decoder.onnx": _gru_decoder(model),
                "scorer.onnx": _gru_scorer(model)}
    transformer = _Transformer(model)
    return {"encoder.onnx": transformer.encoder(), "decoder.onnx": transformer.decoder(),
            "scorer.onnx": transformer.scorer()}
