"""Training: the batches, the config checks, and `issue-summarizer train` run as a user runs it
(a subprocess) on the tiny dataset: run folder, resuming after SIGKILL, refusals, JAX.

The two TensorFlow runs share one config and differ only in output folder and checkpoint
interval, so the run that was killed and resumed must end with the weights of the one that was not.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_in_process import cli
from conftest import TinyRun

from summarizer import __version__, storage
from summarizer.batches import BUCKET, TitleBatches
from summarizer.dataset import open_dataset
from summarizer.errors import UserError
from summarizer.models import ModelConfig, TitleLoss, build_model, load_model
from summarizer.train import SYNCED, fit_data, train, warm_start
from summarizer.train_config import load_config

SCRIPT = Path(sys.executable).with_name("issue-summarizer")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "summarizer.cli"]
END = 3
EPOCHS, STEPS = 2, 7  # 27 train issues in batches of 4
# Tiny and deterministic (no dropout); a strong weight decay so that a resumed run decaying
# other weights than the uninterrupted one shows in the comparison.
CONFIG = """\
body_len = 64
title_len = 24
batch_size = 4
epochs = 2
learning_rate = 0.01
warmup_steps = 2
weight_decay = 0.5
patience = 5
dev_examples = 8
checkpoint_steps = 100

[model]
kind = "transformer"
dim = 16
hidden = 32
heads = 2
encoder_layers = 1
decoder_layers = 1
dropout = 0.0
"""


# --- batches -------------------------------------------------------------------------------


def synthetic_shards(rows: int = 103) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two shards of rows with random lengths; a body's first token is its row's id (1000 + row)."""
    rng = np.random.default_rng(0)
    bodies, titles = np.zeros((rows, 100), np.int32), np.zeros((rows, 20), np.int32)
    for row in range(rows):
        length = rng.integers(1, 101)
        bodies[row, :length] = rng.integers(4, 1000, length)
        bodies[row, 0] = 1000 + row
        length = rng.integers(3, 21)
        titles[row, :length] = [2, *rng.integers(4, 1000, length - 2), END]
    return [(bodies[:60], titles[:60]), (bodies[60:], titles[60:])]


def row_ids(batches: list) -> list[int]:
    return [int(i) - 1000 for (body, _), _ in batches for i in body[:, 0]]


@pytest.fixture(scope="module")
def shards() -> list[tuple[np.ndarray, np.ndarray]]:
    return synthetic_shards()


def batches_of(shards: list[tuple[np.ndarray, np.ndarray]], seed: int = 5) -> TitleBatches:
    return TitleBatches(shards, body_len=40, title_len=10, batch_size=8, seed=seed)


def test_an_epoch_covers_every_row_once(shards: list[tuple[np.ndarray, np.ndarray]]) -> None:
    batches = batches_of(shards)
    for epoch in (0, 1):
        rows = list(batches.epoch(epoch))
        assert len(rows) == len(batches) == 13
        assert sorted(row_ids(rows)) == list(range(103))


def test_order_depends_only_on_seed_and_epoch(shards: list[tuple[np.ndarray, np.ndarray]]) -> None:
    first, again = batches_of(shards), batches_of(shards)
    orders = {epoch: row_ids(list(first.epoch(epoch))) for epoch in (0, 1)}
    assert orders[0] != orders[1]
    for epoch in (1, 0):  # asked in another order, from another instance
        assert row_ids(list(again.epoch(epoch))) == orders[epoch]
    assert row_ids(list(batches_of(shards, seed=6).epoch(0))) != orders[0]


def test_skip_drops_exactly_the_first_batches(shards: list[tuple[np.ndarray, np.ndarray]]) -> None:
    batches = batches_of(shards)
    whole, rest = list(batches.epoch(1)), list(batches.epoch(1, skip=3))
    assert len(rest) == len(whole) - 3
    for ((body, title_in), title_out), ((body2, title_in2), title_out2) in zip(whole[3:], rest, strict=True):
        np.testing.assert_array_equal(body, body2)
        np.testing.assert_array_equal(title_in, title_in2)
        np.testing.assert_array_equal(title_out, title_out2)


def test_batch_contents(shards: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Bodies cut to body_len and padded to a multiple of BUCKET; titles cut to title_len still
    end with </s>; title_out is title_in shifted by one."""
    bodies, titles = np.concatenate([b for b, _ in shards]), np.concatenate([t for _, t in shards])
    cut = 0
    for (body, title_in), title_out in batches_of(shards).epoch(0):
        rows = body[:, 0] - 1000
        lengths = (bodies[rows, :40] != 0).sum(axis=1)
        assert body.shape[1] % BUCKET == 0 and lengths.max() <= body.shape[1] < lengths.max() + BUCKET
        expected = np.pad(bodies[rows, :40], ((0, 0), (0, max(body.shape[1] - 40, 0))))[:, :body.shape[1]]
        np.testing.assert_array_equal(body, expected)
        np.testing.assert_array_equal(title_in[:, 1:], title_out[:, :-1])
        assert title_in.shape[1] <= 9
        for title, row in zip(np.concatenate([title_in[:, :1], title_out], axis=1), rows, strict=True):
            original = titles[row][titles[row] != 0]
            real = title[title != 0]
            if len(original) > 10:
                cut += 1
                np.testing.assert_array_equal(real, [*original[:9], END])
            else:
                np.testing.assert_array_equal(real, original)
            assert real[-1] == END and (title[len(real):] == 0).all()
    assert cut > 20  # the cut case was exercised


def test_fixed_shapes_pad_every_batch_to_full_length(shards: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """One shape for an accelerator to compile, holding the same rows as the bucketed batches."""
    bucketed = list(batches_of(shards).epoch(0))
    fixed = list(TitleBatches(shards, body_len=40, title_len=10, batch_size=8, seed=5,
                              fixed_shapes=True).epoch(0))
    shapes = {(body.shape[1], title_in.shape[1], title_out.shape[1]) for (body, title_in), title_out in fixed}
    assert shapes == {(40, 9, 9)}
    assert len({body.shape[1] for (body, _), _ in bucketed}) > 1
    for ((body, title_in), title_out), ((body2, title_in2), title_out2) in zip(bucketed, fixed, strict=True):
        width = min(body.shape[1], 40)  # a bucket may pad past body_len
        np.testing.assert_array_equal(body2[:, :width], body[:, :width])
        assert not body2[:, width:].any() and not body[:, width:].any()
        np.testing.assert_array_equal(title_in2[:, :title_in.shape[1]], title_in)
        np.testing.assert_array_equal(title_out2[:, :title_out.shape[1]], title_out)
        assert not title_out2[:, title_out.shape[1]:].any()


# --- config checks -------------------------------------------------------------------------



@pytest.mark.parametrize(("content", "overrides", "message"), [
    ("", ["epoch=3"], r"unknown config key 'epoch'; known keys: dataset, "),
    ("", ["model.foo=1"], r"unknown config key 'model\.foo'"),
    ('epochs = "three"\n', [], r"config key 'epochs' must be int, not str \('three'\)"),
    ("", ["dataset=/nonexistent/dataset"], r"dataset '/nonexistent/dataset' is missing or unfinished"),
    ("epochs = = 3\n", [], r"config\.toml: not valid TOML"),
    (b"\x80\x81\xfe binary", [], r"config\.toml: not valid TOML"),
    (None, [], r"missing\.toml: no such file or directory"),
    ("", ["epochs"], r"override 'epochs' is not KEY=VALUE"),
    ("", ["model=3"], r"config key 'model' must be a table"),
    ("", ["model.heads=3"], r"model\.dim 256 must be even and divisible by model\.heads 3"),
    ("", ["patience=0"], r"config key 'patience' must be at least 1"),
    ("", ["body_len=65"], r"body_len 65 / title_len 24 exceed the dataset's 64 / 24"),
    ("[model]\ncopy = 1\n", [], r"config key 'model\.copy' must be bool, not int \(1\)"),
    ("", ["init_from=/nonexistent/run"], r"init_from '/nonexistent/run' does not exist"),
    ("body_len = 64\n", ["pretrain_epochs=1"],
     r"has no pretrain split for pretrain_epochs = 1: prepare the dataset with --pretraining, or set "
     r"pretrain_epochs=0$"),
    ("", ["pretrain_epochs=-1"], r"config key 'pretrain_epochs' must be at least 0"),
    ("", ["average_last=1"], r"config key 'average_last' must be 0 \(off\) or at least 2"),
])
def test_bad_configs_are_one_clear_error(content: str | bytes | None, overrides: list[str], message: str,
                                         tiny_dataset: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / ("missing.toml" if content is None else "config.toml")
    if content is not None:
        config.write_bytes(content.encode() if isinstance(content, str) else content)
    output = tmp_path / "run"
    args = [f"dataset={tiny_dataset}", f"output={output}", *overrides]
    assert cli(["train", "--config", str(config), *args]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("issue-summarizer: error: "), lines
    assert re.search(message, lines[0]), lines[0]
    with pytest.raises(UserError, match=message):
        train(load_config(str(config), args))
    assert not output.exists()  # nothing that a corrected rerun would trip over


# --- the command ---------------------------------------------------------------------------


def command(dataset: Path, config: Path, output: Path | str, *overrides: str) -> list[str]:
    return [*COMMAND, "train", "--config", str(config), f"dataset={dataset}", f"output={output}", *overrides]


def environment(backend: str = "tensorflow") -> dict[str, str]:
    return {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}


def run(args: list[str], backend: str = "tensorflow") -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=environment(backend), capture_output=True, text=True, timeout=400,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def finished(tiny_dataset: Path, config_file: Path,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One uninterrupted 2-epoch run: (its folder, the finished process)."""
    output = tmp_path_factory.mktemp("finished") / "run"
    return output, run(command(tiny_dataset, config_file, output))


def test_run_folder(finished: tuple[Path, subprocess.CompletedProcess[str]], tiny_dataset: Path) -> None:
    output, result = finished
    config = json.loads((output / "config.json").read_text())
    assert config["epochs"] == EPOCHS and config["model"]["dim"] == 16
    assert config["dataset"] == str(tiny_dataset)
    info = json.loads((output / "run.json").read_text())
    manifest = json.loads((tiny_dataset / "dataset.json").read_text())
    assert info["data_fingerprint"] == manifest["fingerprint"]
    assert info["package_version"] == __version__ and info["backend"] == "tensorflow"
    lines = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    metrics = info["metrics"]
    assert json.loads(result.stdout) == metrics  # what the command prints
    assert metrics["epochs"] == EPOCHS and metrics["stopped_early"] is False
    assert metrics["best_dev_loss"] == min(line["dev_loss"] for line in lines)
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    model = load_model(output / "model.keras")
    assert metrics["parameters"] == model.count_params()
    with zipfile.ZipFile(output / "model.keras") as saved, \
            h5py.File(io.BytesIO(saved.read("model.weights.h5"))) as weights:
        assert "optimizer" not in weights  # the best model ships weights alone
    out = model((np.ones((2, 16), "int32"), np.full((2, 5), 2, "int32")), training=False)
    assert tuple(out.shape) == (2, 5, 400)
    assert json.loads((output / "checkpoint" / "state.json").read_text())["epoch"] == EPOCHS


def test_rerun_with_another_config_is_refused(finished: tuple[Path, subprocess.CompletedProcess[str]],
                                              tiny_dataset: Path, config_file: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    output, _ = finished
    saved = (output / "config.json").read_text()
    for change, changed in (("model.dim=32", "model"), ("epochs=1", "epochs")):
        assert cli(command(tiny_dataset, config_file, output, change)[len(COMMAND):]) == 1
        error = capsys.readouterr().err.strip()
        assert error == (f"issue-summarizer: error: {output} holds a run with a different config "
                         f"({changed}); pass a new output folder, or the same config to resume it (only "
                         "epochs, patience and max_minutes may change)")
    assert (output / "config.json").read_text() == saved


def test_a_finished_run_moved_and_given_more_epochs_continues(
        finished: tuple[Path, subprocess.CompletedProcess[str]], tiny_dataset: Path, config_file: Path,
        tmp_path: Path) -> None:
    """A run folder carried elsewhere (another machine, another session) trains on from its
    checkpoint when asked for more epochs, keeping the epochs it has."""
    moved = tmp_path / "moved"
    shutil.copytree(finished[0], moved)
    # As a run made before the keys for pretraining and averaging existed saved its config.
    saved = json.loads((moved / "config.json").read_text())
    del saved["pretrain_epochs"], saved["average_last"]
    (moved / "config.json").write_text(json.dumps(saved))
    before = (moved / "metrics.jsonl").read_text().splitlines()
    result = run(command(tiny_dataset, config_file, moved, f"epochs={EPOCHS + 1}"))
    assert f"resuming {moved} at epoch {EPOCHS + 1}, batch 0" in result.stderr
    assert f"epochs {EPOCHS} -> {EPOCHS + 1}" in result.stderr
    lines = (moved / "metrics.jsonl").read_text().splitlines()
    assert lines[:EPOCHS] == before and json.loads(lines[-1])["epoch"] == EPOCHS + 1
    info = json.loads((moved / "run.json").read_text())
    assert info["metrics"]["epochs"] == EPOCHS + 1 and len(info["commands"]) == 2


def test_a_spent_time_budget_starts_no_epoch(
        finished: tuple[Path, subprocess.CompletedProcess[str]], tiny_dataset: Path, config_file: Path,
        tmp_path: Path) -> None:
    """max_minutes (a lent machine's budget) is checked between epochs: a run that has
    trained that long ends with the model it has, however many epochs are left."""
    moved = tmp_path / "budget"
    shutil.copytree(finished[0], moved)
    result = run(command(tiny_dataset, config_file, moved, f"epochs={EPOCHS + 3}", "max_minutes=0.00001"))
    assert "max_minutes 0.0 -> 1e-05" in result.stderr
    info = json.loads((moved / "run.json").read_text())
    assert info["metrics"]["epochs"] == EPOCHS and info["metrics"]["out_of_time"] is True
    assert len((moved / "metrics.jsonl").read_text().splitlines()) == EPOCHS


def test_a_run_on_cloud_storage_continues_on_another_machine(
        tiny_dataset: Path, config_file: Path, gcs_bucket: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """output=gs://...: the files are uploaded as they change, and a rerun elsewhere (here: an
    empty local cache) downloads them and continues the run."""
    output = f"{gcs_bucket}/runs/tiny"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "first-machine"))
    run(command(tiny_dataset, config_file, output, "epochs=1", "average_last=2"))
    averaging = ["averaging/best.npz", "averaging/epoch-0001.npz"]
    assert storage.list_files(output) == sorted(storage.join(output, name) for name in [*SYNCED, *averaging])
    before = storage.read_bytes(f"{output}/metrics.jsonl").decode().splitlines()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "second-machine"))
    # Averaging epochs 1 and 2 reads epoch 1's weights, which only the first machine wrote.
    result = run(command(tiny_dataset, config_file, output, "epochs=2", "average_last=2"))
    assert f"resuming {output} at epoch 2, batch 0" in result.stderr
    lines = storage.read_bytes(f"{output}/metrics.jsonl").decode().splitlines()
    assert len(before) == 1 and lines[:1] == before and json.loads(lines[1])["epoch"] == 2
    info = json.loads(storage.read_bytes(f"{output}/run.json"))
    assert info["metrics"]["epochs"] == 2 and len(info["commands"]) == 2
    assert info["metrics"]["average"]["epochs"] == [1, 2]
    assert json.loads(storage.read_bytes(f"{output}/checkpoint/state.json"))["epoch"] == 2


def _state(output: Path) -> dict | None:
    """The checkpoint's position, or None while there is none (or it is being replaced)."""
    try:
        return json.loads((output / "checkpoint" / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _kill_when(args: list[str], output: Path, log_file: Path, stop: Callable[[dict], bool]) -> dict:
    """Runs the train command until its checkpoint satisfies `stop`, then SIGKILLs it; returns the
    checkpoint's state it left."""
    with open(log_file, "w") as log:
        process = subprocess.Popen(args, env=environment(), stdout=log, stderr=log, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while process.poll() is None and time.monotonic() < deadline:
                state = _state(output)
                if state and stop(state):
                    break
                time.sleep(0.02)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL, log_file.read_text()[-3000:]
    if _state(output) is None:  # killed between the renames of a checkpoint save
        (output / ".old-checkpoint").rename(output / "checkpoint")
    return _state(output)


def test_resume_after_sigkill_continues_where_it_stopped(
        finished: tuple[Path, subprocess.CompletedProcess[str]], tiny_dataset: Path, config_file: Path,
        tmp_path: Path) -> None:
    output = tmp_path / "run"
    args = command(tiny_dataset, config_file, output, "checkpoint_steps=2")
    state = _kill_when(args, output, tmp_path / "first.log", lambda state: state["batch"] > 0)
    assert state["epoch"] < EPOCHS and state["batch"] > 0, state  # stopped mid-epoch
    assert (output / "metrics.jsonl").read_text().count("\n") == state["epoch"]
    # What a kill during an epoch-end save may leave: a line for an epoch the checkpoint lacks.
    with open(output / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"epoch": state["epoch"] + 1, "stale": True}) + "\n")

    result = run(args)
    assert f"resuming {output} at epoch {state['epoch'] + 1}, batch {state['batch']}" in result.stderr
    lines = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2] and not any("stale" in line for line in lines)
    assert json.loads(result.stdout)["epochs"] == EPOCHS
    # Every batch trained exactly once, with the same optimizer settings: the same model as the
    # run that was never stopped.
    resumed, uninterrupted = (load_model(folder / "checkpoint" / "model.keras")
                              for folder in (output, finished[0]))
    assert int(resumed.optimizer.iterations) == int(uninterrupted.optimizer.iterations) == EPOCHS * STEPS
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_jax_backend_trains(tiny_dataset: Path, config_file: Path, tmp_path: Path) -> None:
    """With the copy head, as the GPU config trains on a lent machine."""
    output = tmp_path / "run"
    run(command(tiny_dataset, config_file, output, "epochs=1", "steps_per_epoch=3", "checkpoint_steps=2",
                "model.copy=true"), backend="jax")
    assert json.loads((output / "run.json").read_text())["backend"] == "jax"
    assert (output / "metrics.jsonl").read_text().count("\n") == 1
    model = load_model(output / "model.keras")  # saved under JAX, loaded here under TensorFlow
    assert tuple(model((np.ones((1, 16), "int32"), np.full((1, 3), 2, "int32"))).shape) == (1, 3, 400)


# --- pretraining, then titles; the last epochs averaged -------------------------------------

PRETRAIN_EPOCHS, PRETRAIN_STEPS = 3, 13  # 52 pretrain pairs in batches of 4: 39 steps in all
PHASES = ["pretrain"] * PRETRAIN_EPOCHS + ["titles"] * EPOCHS


def pretraining_command(dataset: Path, config: Path, output: Path, *overrides: str) -> list[str]:
    return command(dataset, config, output, f"pretrain_epochs={PRETRAIN_EPOCHS}", "average_last=2",
                   *overrides)


@pytest.fixture(scope="module")
def pretrained(tiny_pretraining_dataset: Path, config_file: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run: 3 epochs on the pretrain split, 2 on titles, those 2 averaged."""
    output = tmp_path_factory.mktemp("pretrained") / "run"
    run(pretraining_command(tiny_pretraining_dataset, config_file, output))
    return output


def _metrics(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def _npz(path: Path) -> list[np.ndarray]:
    with np.load(path) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


def test_pretraining_epochs_come_first_and_pick_no_model(pretrained: Path) -> None:
    lines = _metrics(pretrained)
    assert [line["phase"] for line in lines] == PHASES
    assert [line["epoch"] for line in lines] == list(range(1, len(PHASES) + 1))
    pretraining, titles = lines[:PRETRAIN_EPOCHS], lines[PRETRAIN_EPOCHS:]
    # The loss on the pretrain pairs goes down over its 39 steps.
    assert pretraining[-1]["train_loss"] < 0.9 * pretraining[0]["train_loss"]
    # Their dev loss is logged, but no pretraining epoch is the best model, however low its loss.
    assert not any(line["improved"] for line in pretraining) and titles[0]["improved"]
    metrics = json.loads((pretrained / "run.json").read_text())["metrics"]
    assert metrics["best_dev_loss"] == min(line["dev_loss"] for line in titles)
    assert (metrics["epochs"], metrics["pretrain_epochs"]) == (len(PHASES), PRETRAIN_EPOCHS)
    # The pretrain split's batches, then the train split's, under one learning-rate schedule.
    optimizer = load_model(pretrained / "checkpoint" / "model.keras").optimizer
    steps = PRETRAIN_EPOCHS * PRETRAIN_STEPS + EPOCHS * STEPS
    assert int(optimizer.iterations) == steps
    schedule = optimizer.get_config()["learning_rate"]["config"]
    assert schedule["warmup_steps"] + schedule["decay_steps"] == steps


def test_the_last_epochs_are_averaged(pretrained: Path, tiny_pretraining_dataset: Path) -> None:
    """model.keras is the mean of the last two epochs' weights where its dev loss is no worse than
    the best epoch's, else the best epoch's weights; run.json records both dev losses."""
    metrics = json.loads((pretrained / "run.json").read_text())["metrics"]
    average = metrics["average"]
    assert average["epochs"] == [4, 5]
    folder = pretrained / "averaging"
    assert sorted(path.name for path in folder.iterdir()) == ["best.npz", "epoch-0004.npz", "epoch-0005.npz"]
    last = load_model(pretrained / "checkpoint" / "model.keras").get_weights()
    for kept, final in zip(_npz(folder / "epoch-0005.npz"), last, strict=True):
        np.testing.assert_array_equal(kept, final)  # an epoch's file holds that epoch's state
    mean = [(a + b) / 2 for a, b in zip(_npz(folder / "epoch-0004.npz"), last, strict=True)]
    model = load_model(pretrained / "model.keras")
    model.compile(loss=TitleLoss(0.1))
    dev = TitleBatches(open_dataset(str(tiny_pretraining_dataset)).arrays("dev"), 64, 24, 4, seed=1, limit=8)
    best_epoch = max(line["epoch"] for line in _metrics(pretrained) if line["improved"])
    if average["kept"]:
        expected = mean
        assert average["dev_loss"] <= metrics["best_dev_loss"]
    else:
        expected = _npz(folder / f"epoch-{best_epoch:04d}.npz")
        assert average["dev_loss"] > metrics["best_dev_loss"]
        model.set_weights(mean)
    for saved, weights in zip(load_model(pretrained / "model.keras").get_weights(), expected, strict=True):
        np.testing.assert_allclose(saved, weights, rtol=1e-6, atol=1e-7)
    dev_loss = float(model.evaluate(fit_data(dev.epoch(0)), steps=len(dev), verbose=0))
    assert dev_loss == pytest.approx(average["dev_loss"], rel=1e-4)  # the mean's, as recorded


def test_a_run_killed_in_either_phase_continues_in_it(pretrained: Path, tiny_pretraining_dataset: Path,
                                                      config_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    args = pretraining_command(tiny_pretraining_dataset, config_file, output, "checkpoint_steps=2")
    first = _kill_when(args, output, tmp_path / "first.log", lambda state: state["batch"] > 0)
    assert first["epoch"] < PRETRAIN_EPOCHS, first
    state = _kill_when(args, output, tmp_path / "second.log",
                       lambda state: state["epoch"] >= PRETRAIN_EPOCHS and state["batch"] > 0)
    assert PRETRAIN_EPOCHS <= state["epoch"] < len(PHASES), state
    resumed = f"at epoch {first['epoch'] + 1}, batch {first['batch']} (pretrain)"
    assert resumed in (tmp_path / "second.log").read_text()
    result = run(args)
    assert f"at epoch {state['epoch'] + 1}, batch {state['batch']} (titles)" in result.stderr
    assert [line["phase"] for line in _metrics(output)] == PHASES
    # Every batch of both phases trained once: the uninterrupted run's weights and average.
    for name in ("checkpoint/model.keras", "model.keras"):
        for a, b in zip(load_model(output / name).get_weights(), load_model(pretrained / name).get_weights(),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    resumed, uninterrupted = (json.loads((folder / "run.json").read_text())["metrics"]["average"]
                              for folder in (output, pretrained))
    assert resumed["epochs"] == uninterrupted["epochs"] and resumed["kept"] == uninterrupted["kept"]


def test_the_deep_gpu_config_trains_on_tiny_data(tiny_pretraining_dataset: Path, repo_root: Path,
                                                 tmp_path: Path) -> None:
    """configs/transformer-deep-gpu.toml as the lent GPU runs it (JAX, bfloat16, both phases,
    averaging), only shrunk to the tiny data and a few steps."""
    output = tmp_path / "run"
    run(command(tiny_pretraining_dataset, repo_root / "configs" / "transformer-deep-gpu.toml", output,
                "body_len=64", "batch_size=4", "steps_per_epoch=3", "pretrain_epochs=1", "epochs=2",
                "dev_examples=8", "average_last=2", "model.dim=16", "model.hidden=32", "model.heads=2",
                "model.encoder_layers=2", "model.decoder_layers=1"), backend="jax")
    info = json.loads((output / "run.json").read_text())
    assert (info["backend"], info["precision"]) == ("jax", "mixed_bfloat16")
    assert [line["phase"] for line in _metrics(output)] == ["pretrain", "titles", "titles"]
    assert info["metrics"]["average"]["epochs"] == [2, 3]
    # Saved in mixed bfloat16 under JAX, loaded here under TensorFlow in float32 (for export).
    model = load_model(output / "model.keras")
    assert tuple(model((np.ones((1, 16), "int32"), np.full((1, 3), 2, "int32"))).shape) == (1, 3, 400)


# --- starting from a trained model ----------------------------------------------------------


def test_a_model_with_a_copy_head_starts_from_a_trained_run(tiny_run: TinyRun) -> None:
    """Every layer the trained run has takes its weights; the new copy head starts fresh."""
    saved = json.loads((tiny_run.folder / "config.json").read_text())["model"]
    model = build_model(ModelConfig(**{**saved, "copy": True}), 400)
    fresh = model.get_layer("copy").get_weights()
    warm_start(model, str(tiny_run.folder))
    donor = load_model(tiny_run.folder / "model.keras")
    for layer in donor.layers:
        for mine, theirs in zip(model.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs, err_msg=layer.name)
    for before, after in zip(fresh, model.get_layer("copy").get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_starting_from_another_kind_of_model_is_refused(tiny_run: TinyRun) -> None:
    model = build_model(ModelConfig(kind="gru", embedding_dim=8, units=8), 400)
    with pytest.raises(UserError, match="no layer matches this model by name and shape"):
        warm_start(model, str(tiny_run.folder / "model.keras"))
