"""The title models: shapes, masks, the loss, the copy head, saving (also across backends) and
whether a tiny transformer can learn at all. Models are tiny and built once per module: tracing
dominates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from model_folders import VARIANTS

from summarizer.batches import TitleBatches
from summarizer.dataset import open_dataset
from summarizer.layers import to_vocabulary
from summarizer.models import ModelConfig, TitleLoss, build_model, load_model
from summarizer.train import compile_model
from summarizer.train_config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
VOCAB = 50
@pytest.fixture(scope="module")
def models() -> dict[str, keras.Model]:
    """One compiled tiny model per kind, every weight (batch-norm statistics too) moved away
    from its initial value so that saving or masking mistakes cannot hide behind zeros and ones."""
    rng = np.random.default_rng(0)
    built = {}
    for kind, config in VARIANTS.items():
        keras.utils.set_random_seed(1)
        model = build_model(config, VOCAB)
        model.set_weights([w * rng.uniform(0.5, 1.5, w.shape) + rng.uniform(0, 0.1, w.shape)
                           for w in model.get_weights()])
        compile_model(model, TrainConfig(dataset="unused", label_smoothing=0.1), total_steps=10)
        model.optimizer.build(model.trainable_variables)  # saved with its (untrained) state
        built[kind] = model
    return built


def ids(rng: np.random.Generator, rows: int, width: int, lengths: list[int] | None = None) -> np.ndarray:
    """Random token ids (never padding), then padding after each row's length."""
    out = rng.integers(1, VOCAB, (rows, width)).astype("int32")
    for row, length in enumerate(lengths or []):
        out[row, length:] = 0
    return out


def logits(model: keras.Model, body: np.ndarray, title: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model((body, title), training=False))


@pytest.mark.parametrize("kind", VARIANTS)
@pytest.mark.parametrize(("batch", "body_len", "title_len"), [(3, 16, 5), (2, 48, 11)])
def test_logits_have_one_row_per_title_position(models: dict[str, keras.Model], kind: str, batch: int,
                                                body_len: int, title_len: int) -> None:
    rng = np.random.default_rng(body_len)
    out = logits(models[kind], ids(rng, batch, body_len), ids(rng, batch, title_len))
    assert out.shape == (batch, title_len, VOCAB)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()


@pytest.mark.parametrize("kind", VARIANTS)
def test_extra_body_padding_changes_nothing(models: dict[str, keras.Model], kind: str) -> None:
    """Length buckets pad bodies to different widths: the logits must not depend on it."""
    rng = np.random.default_rng(1)
    body, title = ids(rng, 3, 16, lengths=[16, 9, 3]), ids(rng, 3, 6)
    before = logits(models[kind], body, title)
    after = logits(models[kind], np.pad(body, ((0, 0), (0, 16))), title)
    np.testing.assert_allclose(after, before, atol=1e-5)
    # The body is read at all: a real token changes the logits of its own row only.
    changed = body.copy()
    changed[1, 4] = changed[1, 4] % (VOCAB - 1) + 1
    moved = np.abs(logits(models[kind], changed, title) - before).max(axis=(1, 2))
    assert moved[1] > 1e-3 and moved[0] < 1e-6 and moved[2] < 1e-6


@pytest.mark.parametrize("kind", ["transformer", "copy"])
def test_transformer_decoder_is_causal(models: dict[str, keras.Model], kind: str) -> None:
    """A title position sees only the tokens before it: what decoding one step at a time needs."""
    rng = np.random.default_rng(2)
    body, title = ids(rng, 2, 16, lengths=[16, 7]), ids(rng, 2, 8)
    before = logits(models[kind], body, title)
    changed = title.copy()
    changed[:, 5] = changed[:, 5] % (VOCAB - 1) + 1
    after = logits(models[kind], body, changed)
    np.testing.assert_allclose(after[:, :5], before[:, :5], atol=1e-6)
    assert np.abs(after[:, 5:] - before[:, 5:]).max(axis=(1, 2)).min() > 1e-3


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_title_loss_is_the_mean_over_real_tokens(smoothing: float) -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(2, 3, 5)).astype("float32")
    targets = np.array([[1, 4, 0], [2, 0, 0]])
    # By hand: the smoothed target spreads `smoothing` over the 5 tokens.
    wanted = (1 - smoothing) * np.eye(5)[targets] + smoothing / 5
    per_token = -(wanted * _log_softmax(scores.astype("float64"))).sum(axis=-1)
    expected = per_token[targets != 0].mean()
    loss = TitleLoss(smoothing)
    assert float(loss(targets, scores)) == pytest.approx(expected, rel=1e-5)
    # Whatever the model says at padded positions does not count.
    noisy = scores.copy()
    noisy[targets == 0] = rng.normal(scale=10, size=noisy[targets == 0].shape)
    assert float(loss(targets, noisy)) == pytest.approx(expected, rel=1e-5)


def test_title_loss_hand_example() -> None:
    """Uniform logits over 4 tokens: -log(1/4) per real token, whatever the smoothing."""
    targets = np.array([[2, 3, 0, 0]])
    assert float(TitleLoss(0.0)(targets, np.zeros((1, 4, 4), "float32"))) == pytest.approx(np.log(4))
    assert float(TitleLoss(0.3)(targets, np.zeros((1, 4, 4), "float32"))) == pytest.approx(np.log(4))


@pytest.mark.parametrize("kind", VARIANTS)
def test_saved_model_loads_with_identical_outputs(models: dict[str, keras.Model], kind: str,
                                                  tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    body, title = ids(rng, 2, 32, lengths=[32, 10]), ids(rng, 2, 7)
    models[kind].save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(logits(loaded, body, title), logits(models[kind], body, title))
    assert isinstance(loaded.loss, TitleLoss) and loaded.loss.label_smoothing == 0.1


def test_model_saved_on_one_backend_loads_on_the_other(models: dict[str, keras.Model],
                                                       tmp_path: Path) -> None:
    """The backend is fixed per process, so the other one loads the files in a subprocess."""
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    rng = np.random.default_rng(5)
    body, title = ids(rng, 3, 32, lengths=[32, 20, 5]), ids(rng, 3, 9)
    np.savez(tmp_path / "inputs.npz", body=body, title=title)
    for kind in VARIANTS:
        models[kind].save(tmp_path / f"{kind}.keras")
    script = (
        "import sys, keras, numpy as np\n"
        "from pathlib import Path\n"
        "from summarizer.models import load_model\n"
        "folder = Path(sys.argv[1])\n"
        "inputs = np.load(folder / 'inputs.npz')\n"
        "for kind in sys.argv[2:]:\n"
        "    model = load_model(folder / f'{kind}.keras')\n"
        "    out = model((inputs['body'], inputs['title']), training=False)\n"
        "    np.save(folder / f'{kind}-{keras.backend.backend()}.npy', keras.ops.convert_to_numpy(out))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": other, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path), *VARIANTS], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    for kind in VARIANTS:
        np.testing.assert_allclose(np.load(tmp_path / f"{kind}-{other}.npy"),
                                   logits(models[kind], body, title), atol=1e-5, err_msg=kind)


def test_tiny_transformer_learns_sixteen_issues(tiny_dataset: Path) -> None:
    """16 real issues (bodies cut to 16 tokens, titles to 8) learned almost by heart in 100
    steps: the model, the loss and the optimizer settings can fit data at all."""
    batches = TitleBatches(open_dataset(str(tiny_dataset)).arrays("train"), body_len=16, title_len=8,
                           batch_size=16, seed=1, limit=16)
    (body, title_in), title_out = batches.batch(np.arange(16))
    steps = 100
    config = TrainConfig(dataset="unused", learning_rate=0.02, warmup_steps=10, weight_decay=0.0,
                         label_smoothing=0.0, model=ModelConfig(dim=32, hidden=64, heads=2, encoder_layers=1,
                                                                decoder_layers=1, dropout=0.0))
    keras.utils.set_random_seed(1)
    model = build_model(config.model, 400)
    compile_model(model, config, steps)
    loss = TitleLoss(0.0)
    assert float(loss(title_out, model((body, title_in), training=False))) > 3
    # One epoch of `steps` identical batches: one fit call, so one trace.
    body_x, title_in_x, title_out_x = (np.tile(a, (steps, 1)) for a in (body, title_in, title_out))
    model.fit((body_x, title_in_x), title_out_x, batch_size=16, shuffle=False, verbose=0)
    assert float(loss(title_out, model((body, title_in), training=False))) < 0.1


def test_attention_lands_on_the_body_tokens_ids() -> None:
    """Two positions holding the same id add up; padding (id 0) gets no weight at all."""
    weights = np.array([[[0.5, 0.2, 0.3, 0.0], [0.1, 0.1, 0.8, 0.0]]], "float32")  # [1, 2 steps, 4]
    body = np.array([[7, 3, 7, 0]], "int32")
    out = keras.ops.convert_to_numpy(to_vocabulary(weights, body, 10))
    expected = np.zeros((1, 2, 10), "float32")
    expected[0, 0, [7, 3]] = [0.8, 0.2]
    expected[0, 1, [7, 3]] = [0.9, 0.1]
    np.testing.assert_allclose(out, expected, atol=1e-7)


def test_copy_head_gives_a_distribution(models: dict[str, keras.Model]) -> None:
    """The mixture of the vocabulary softmax and the copy attention sums to one for every title
    position (an empty body's too), and the copy attention's share concentrates probability on
    the body's tokens."""
    rng = np.random.default_rng(6)
    body, title = ids(rng, 3, 12, lengths=[12, 5, 0]), ids(rng, 3, 6)
    probs = np.exp(logits(models["copy"], body, title).astype(np.float64))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    absent = np.setdiff1d(np.arange(1, VOCAB), body[1])
    present = np.unique(body[1, :5])
    assert probs[1][:, present].mean() > 2 * probs[1][:, absent].mean()


def _copy_task(rng: np.random.Generator, rows: int, vocab: int) -> tuple[tuple, np.ndarray]:
    """Bodies of random tokens whose title is their first two tokens: learnable only by
    reading ids from the body, never by remembering titles."""
    body = rng.integers(4, vocab, (rows, 10)).astype("int32")
    title = np.concatenate([np.full((rows, 1), 2), body[:, :2], np.full((rows, 1), 3)], axis=1)
    title = title.astype("int32")
    return (body, title[:, :-1]), title[:, 1:]


@pytest.mark.parametrize(("copy", "accuracy"), [(True, (0.9, 1.0)), (False, (0.0, 0.5))])
def test_copy_head_copies_tokens_never_seen_in_a_title(copy: bool, accuracy: tuple[float, float]) -> None:
    """On bodies it never saw, a model with the copy head learns within 300 steps to put their
    tokens in the title; the same model without it stays far from that in the same steps."""
    vocab, steps = 2000, 300
    rng = np.random.default_rng(7)
    (body, title_in), title_out = _copy_task(rng, 32 * steps, vocab)
    config = TrainConfig(dataset="unused", learning_rate=5e-3, warmup_steps=20, label_smoothing=0.0,
                         model=ModelConfig(dim=32, hidden=64, heads=2, encoder_layers=1, decoder_layers=1,
                                           dropout=0.0, copy=copy))
    keras.utils.set_random_seed(1)
    model = build_model(config.model, vocab)
    compile_model(model, config, steps)
    model.fit((body, title_in), title_out, batch_size=32, shuffle=False, verbose=0)
    (new_body, new_in), new_out = _copy_task(np.random.default_rng(8), 256, vocab)
    predicted = logits(model, new_body, new_in).argmax(axis=-1)
    share = float((predicted[:, :2] == new_out[:, :2]).mean())
    assert accuracy[0] <= share <= accuracy[1], share
