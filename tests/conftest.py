"""Shared fixtures: the repository root, the shared data folder, a tiny dataset and a tiny
training run made from it, and a Cloud Storage emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))

from servers import end_group, free_ports  # noqa: E402

from summarizer import storage  # noqa: E402
from summarizer.ingest import ingest  # noqa: E402
from summarizer.prepare import PrepareConfig, prepare  # noqa: E402
from summarizer.splitting import SplitConfig  # noqa: E402

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data is absent: {SHARED_DATA} is not a directory")
    return SHARED_DATA


def _tiny(folder: Path, pretraining: bool) -> Path:
    records = folder / "issues.jsonl.gz"
    ingest([str(REPO_ROOT / "examples" / "issues")], str(records), state_root=folder / "state")
    config = PrepareConfig(vocab_size=400, body_len=64, title_len=24, shards=1, pretraining=pretraining,
                           split=SplitConfig(dev_fraction=0.2, test_fraction=0.2, max_heldout_share=0.3))
    prepare([str(records)], str(folder / "dataset"), config, workers=1)
    return folder / "dataset"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example issues prepared once for the session (27 train, 3 dev issues; bodies of 64
    and titles of 24 tokens): enough to train a tiny model for a few steps."""
    return _tiny(tmp_path_factory.mktemp("tiny"), pretraining=False)


@pytest.fixture(scope="session")
def tiny_pretraining_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same issues prepared with a pretrain split (`prepare --pretraining`)."""
    return _tiny(tmp_path_factory.mktemp("tiny-pretraining"), pretraining=True)


# A tiny deterministic transformer (no dropout), one short epoch: enough to decode and export.
TINY_RUN_CONFIG = """\
body_len = 64
title_len = 24
batch_size = 4
epochs = 1
steps_per_epoch = 4
learning_rate = 0.01
warmup_steps = 1
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


@dataclass(frozen=True)
class TinyRun:
    folder: Path  # the finished run directory
    command: str  # the train command line that made it, as run.json records it


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """One finished training run on `tiny_dataset`, trained by the console script (as a user
    runs it) once for the session: decoding, evaluation and export tests all read it."""
    folder = tmp_path_factory.mktemp("runs")
    config = folder / "tiny.toml"
    config.write_text(TINY_RUN_CONFIG)
    output = folder / "tiny-transformer"
    script = Path(sys.executable).with_name("issue-summarizer")
    args = ["train", "--config", str(config), f"dataset={tiny_dataset}", f"output={output}"]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=400,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return TinyRun(output, " ".join([script.name, *args]))


def _wait_until_up(host: str, process: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{host}/storage/v1/b?project=test", timeout=1).close()
            return True
        except urllib.error.HTTPError:
            return True  # it answered
        except OSError:
            time.sleep(0.1)
    return False


@dataclass(frozen=True)
class GcsEmulator:
    host: str  # e.g. http://127.0.0.1:PORT, the value of STORAGE_EMULATOR_HOST

    def new_bucket(self) -> str:
        """Create a uniquely named, empty bucket and return its name."""
        name = f"test-{uuid.uuid4().hex[:16]}"
        storage._client().create_bucket(name)
        return name


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """A real gcp-storage-emulator, in memory, that storage.py talks to for the session."""
    script = Path(sys.executable).with_name("gcp-storage-emulator")
    if not script.exists():
        pytest.fail(f"{script} is missing: install the test extras (pip install -e '.[test]')")
    (port,) = free_ports(1)
    host = f"http://127.0.0.1:{port}"
    # Output goes to a file, not a pipe: a full pipe would block the emulator.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [str(script), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed whole at the end
        )
        try:
            if not _wait_until_up(host, process, timeout=30):
                end_group(process, grace=5)
                log.seek(0)
                output = log.read().decode(errors="replace")[-2000:]
                pytest.fail(f"gcp-storage-emulator did not start on {host}:\n{output}")
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("STORAGE_EMULATOR_HOST", host)
                patch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
                storage._client.cache_clear()
                try:
                    yield GcsEmulator(host)
                finally:
                    storage._client.cache_clear()
        finally:
            end_group(process, grace=5)


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator) -> str:
    """A fresh, empty bucket on the emulator, as "gs://BUCKET"."""
    return f"gs://{gcs_emulator.new_bucket()}"
