"""The TFJob entry point: two real workers on loopback train one model together; a bad
TF_CONFIG is one clear line, before any wait for peers."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers import free_ports

from summarizer import storage
from summarizer.errors import UserError
from summarizer.ingest import ingest
from summarizer.prepare import PrepareConfig, prepare
from summarizer.splitting import SplitConfig
from summarizer.train_config import load_config
from training.cluster import Cluster, parse_tf_config
from training.distributed import train_multiworker

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples" / "issues"
LIMIT = 300  # seconds per worker; a worker whose peer died waits in a collective, deaf to SIGTERM
SETTINGS = ["body_len=64", "title_len=24", "batch_size=4", "steps_per_epoch=3", "warmup_steps=1",
            "dev_examples=8", "mixed_precision=off", "model.dim=16", "model.hidden=32", "model.heads=2",
            "model.encoder_layers=1", "model.decoder_layers=1", "model.max_positions=64"]
TINY = [*SETTINGS, "epochs=1", "output=run"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example issues prepared into two train shards: one per worker."""
    folder = tmp_path_factory.mktemp("multiworker-data")
    records = folder / "issues.jsonl.gz"
    ingest([str(EXAMPLES)], str(records), state_root=folder / "state")
    config = PrepareConfig(vocab_size=400, body_len=64, title_len=24, shards=2,
                           split=SplitConfig(dev_fraction=0.2, test_fraction=0.2, max_heldout_share=0.3))
    prepare([str(records)], str(folder / "dataset"), config, workers=1)
    return folder / "dataset"


def _start(args: list[str], tf_config: dict | str, cwd: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CONFIG": tf_config if isinstance(tf_config, str) else json.dumps(tf_config),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["timeout", "-k", "10", str(LIMIT), sys.executable, "-m", "training.train_multiworker", *args],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group, ended whole if its peer fails


def _wait_all(processes: list[subprocess.Popen]) -> list[int]:
    """Exit codes; once one worker fails, the others (stuck waiting for it) are ended."""
    deadline = time.monotonic() + LIMIT + 30
    while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
        if any(p.poll() not in (None, 0) for p in processes):
            for process in processes:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
        time.sleep(0.5)
    return [p.wait(timeout=15) for p in processes]


def _step_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("epoch 1 step ")]


def _run_cluster(args: list[str], folder: Path) -> tuple[list[Path], list[str]]:
    """Two workers (worker 0 the chief) on fresh loopback ports, each in its own folder under
    `folder`; their folders and what they logged, once both succeeded."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    folders = [folder / "chief", folder / "worker"]
    logs = [folder / "chief.log", folder / "worker.log"]
    processes = []
    for index, (cwd, log) in enumerate(zip(folders, logs, strict=True)):
        cwd.mkdir(parents=True)
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        processes.append(_start(args, tf_config, cwd, log))
    codes = _wait_all(processes)
    outputs = [log.read_text(errors="replace") for log in logs]
    assert codes == [0, 0], "\n\n".join(f"exit {code}:\n{output[-3000:]}"
                                          for code, output in zip(codes, outputs, strict=True))
    return folders, outputs


def test_two_workers_train_one_model(dataset: Path, tmp_path: Path) -> None:
    folders, outputs = _run_cluster([f"dataset={dataset}", *TINY], tmp_path)

    # Every worker ran the same steps and logged the same loss: the loss is all-reduced.
    assert _step_lines(outputs[0]) == _step_lines(outputs[1]) == [_step_lines(outputs[0])[0]]
    assert _step_lines(outputs[0])[0].startswith("epoch 1 step 3/3 loss ")
    assert list(folders[1].iterdir()) == [], "the non-chief worker wrote files"

    run = folders[0] / "run"
    info = json.loads((run / "run.json").read_text())
    manifest = json.loads((dataset / "dataset.json").read_text())
    assert info["workers"] == 2
    assert info["data_fingerprint"] == manifest["fingerprint"]
    assert info["metrics"]["epochs"] == 1
    assert json.loads((run / "config.json").read_text())["model"]["dim"] == 16
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1]
    assert math.isfinite(metrics[0]["train_loss"]) and math.isfinite(metrics[0]["dev_loss"])

    import keras
    import numpy as np

    import summarizer.models  # noqa: F401  (registers the custom layers for loading)

    model = keras.models.load_model(run / "model.keras")
    body = np.array([[5, 6, 7, 8, 0, 0], [9, 10, 11, 0, 0, 0]], dtype="int32")
    title_in = np.array([[2, 12, 13], [2, 14, 0]], dtype="int32")
    logits = np.asarray(model.predict((body, title_in), verbose=0))
    assert logits.shape == (2, 3, manifest["vocab_size"])
    assert np.isfinite(logits).all()


def test_a_restarted_job_resumes_from_its_checkpoint_on_cloud_storage(dataset: Path, tmp_path: Path,
                                                                     gcs_bucket: str) -> None:
    """The run on gs://, which every pod reaches: a second job asked for one more epoch loads
    the first job's checkpoint on both workers and trains only the new epoch."""
    output = f"{gcs_bucket}/runs/tiny"
    args = [f"dataset={dataset}", *SETTINGS, f"output={output}", "checkpoint_steps=2"]
    _, first = _run_cluster([*args, "epochs=1"], tmp_path / "first")
    first_metrics = storage.read_bytes(f"{output}/metrics.jsonl").decode().splitlines()
    _, second = _run_cluster([*args, "epochs=2"], tmp_path / "second")
    assert all("resuming at epoch 2, step 0" in output for output in second), second[1][-2000:]
    assert not any(_step_lines(output) for output in second)  # epoch 1 was not trained again
    assert all("epoch 2 step 3/3 loss " in output for output in second)
    metrics = storage.read_bytes(f"{output}/metrics.jsonl").decode().splitlines()
    assert len(first_metrics) == 1 and metrics[:1] == first_metrics and len(metrics) == 2
    info = json.loads(storage.read_bytes(f"{output}/run.json"))
    assert (info["workers"], info["metrics"]["epochs"], len(info["commands"])) == (2, 2, 2)
    state = json.loads(storage.read_bytes(f"{output}/checkpoint/state.json"))
    assert (state["epoch"], state["batch"]) == (2, 0)


def test_a_checkpoint_of_another_cluster_size_is_refused(dataset: Path, tmp_path: Path,
                                                         gcs_bucket: str) -> None:
    output = f"{gcs_bucket}/runs/solo"
    args = [f"dataset={dataset}", *SETTINGS, f"output={output}", "epochs=1"]
    _run_cluster(args, tmp_path / "pair")
    (port,) = free_ports(1)
    solo = {"cluster": {"worker": [f"127.0.0.1:{port}"]}, "task": {"type": "worker", "index": 0}}
    process = _start([*args[:-1], "epochs=2"], solo, tmp_path, tmp_path / "solo.log")
    assert process.wait(timeout=LIMIT + 15) == 1
    assert "holds a checkpoint of a run on 2 workers, not on 1; resume it on as many" in \
        (tmp_path / "solo.log").read_text()
    assert json.loads(storage.read_bytes(f"{output}/config.json"))["epochs"] == 1  # the run is untouched


@pytest.mark.parametrize(("tf_config", "message"), [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
     "TF_CONFIG task index 1 is out of range: the cluster has 1 worker task(s)"),
])
def test_bad_tf_config_is_one_clear_line(tf_config: str, message: str, dataset: Path, tmp_path: Path) -> None:
    process = _start([f"dataset={dataset}", *TINY], tf_config, tmp_path, tmp_path / "log")
    assert process.wait(timeout=LIMIT + 15) == 1
    lines = (tmp_path / "log").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"train_multiworker: error: {message}"), lines


@pytest.mark.parametrize("setting", ["pretrain_epochs=1", "average_last=2"])
def test_pretraining_and_averaging_are_refused_on_a_cluster(setting: str, dataset: Path,
                                                          tmp_path: Path) -> None:
    """Both are features of the one-machine trainer; a cluster run says so before it waits for peers."""
    config = load_config(None, [f"dataset={dataset}", *SETTINGS, f"output={tmp_path / 'run'}", setting])
    with pytest.raises(UserError, match="are for issue-summarizer train \\(one machine\\)"):
        train_multiworker(config, Cluster(index=0, workers=1))
    assert not (tmp_path / "run").exists()


def test_parse_tf_config_counts_the_chief_as_worker_zero() -> None:
    cluster = {"chief": ["c:1"], "worker": ["w:1", "w:2"]}
    chief = parse_tf_config(json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    worker = parse_tf_config(json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert (chief, chief.is_chief) == (Cluster(index=0, workers=3), True)
    assert (worker, worker.is_chief) == (Cluster(index=2, workers=3), False)
    # Without a chief task, worker 0 is the chief.
    assert parse_tf_config('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker"}}').is_chief


@pytest.mark.parametrize("text", [
    "[]",
    '{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}',
    '{"cluster": {"worker": ["a:1"], "ps": ["p:1"]}, "task": {"type": "worker", "index": 0}}',
    '{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}',
    '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}',
    '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": -1}}',
])
def test_parse_tf_config_rejects_what_the_strategy_cannot_run(text: str) -> None:
    with pytest.raises(UserError, match="TF_CONFIG"):
        parse_tf_config(text)
