"""Packing a dataset for a lent GPU machine: unpacked, training reads the same batches; what
the machine sends back becomes a run folder here (scripts/gpu-fetch.sh)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import TinyRun

from summarizer.batches import TitleBatches
from summarizer.dataset import open_dataset
from training.carry import ARRAYS, main

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["tiny_dataset", "tiny_pretraining_dataset"])
def test_unpacked_dataset_gives_the_same_batches(name: str, request: pytest.FixtureRequest,
                                                 tmp_path: Path) -> None:
    """Every split the manifest lists travels, the pretrain split of `prepare --pretraining` too."""
    folder = request.getfixturevalue(name)
    assert main(["pack", str(folder), str(tmp_path / "packed"), "--body-len", "32"]) == 0
    assert main(["unpack", str(tmp_path / "packed"), str(tmp_path / "dataset")]) == 0
    original, unpacked = open_dataset(str(folder)), open_dataset(str(tmp_path / "dataset"))
    assert unpacked.manifest == original.manifest  # fingerprint and settings carried as they are
    assert (tmp_path / "dataset" / "tokenizer.json").read_bytes() == original.tokenizer_path.read_bytes()
    assert json.loads((tmp_path / "dataset" / "report.json").read_text()) == original.report
    splits = ["train", "dev", "test", *(["pretrain"] if name == "tiny_pretraining_dataset" else [])]
    assert list(original.manifest["splits"]) == splits
    for split in splits:
        assert original.arrays(split)
        for (body, title), (new_body, new_title) in zip(original.arrays(split), unpacked.arrays(split),
                                                      strict=True):
            assert new_body.dtype == np.int32 and new_body.shape == (len(body), 32)
            np.testing.assert_array_equal(new_body, body[:, :32])
            np.testing.assert_array_equal(new_title, title)
        batches = [TitleBatches(data.arrays(split), 32, 24, 4, seed=3) for data in (original, unpacked)]
        for ((a_in, a_title), a_out), ((b_in, b_title), b_out) in zip(
                batches[0].epoch(1), batches[1].epoch(1), strict=True):
            for a, b in ((a_in, b_in), (a_title, b_title), (a_out, b_out)):
                np.testing.assert_array_equal(a, b)
    packed_size = (tmp_path / "packed" / ARRAYS).stat().st_size
    assert packed_size < sum(p.stat().st_size for p in folder.glob("*.npy")) / 2


def test_unfinished_dataset_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pack", str(tmp_path), str(tmp_path / "packed"), "--body-len", "32"]) == 1
    assert capsys.readouterr().err.startswith(f"carry: error: {tmp_path}: not a finished dataset")


def _device_output(run: Path, files: Path) -> None:
    """What scripts/gpu-train.sh leaves in $OUT, from a finished run: the model in parts and
    the run's files, as the device's module call recorded them."""
    files.mkdir()
    for name in ("metrics.jsonl", "tokenizer.json"):
        shutil.copyfile(run / name, files / name)
    config = json.loads((run / "config.json").read_text())
    (files / "config.json").write_text(json.dumps({**config, "dataset": "/tmp/dataset"}))
    info = json.loads((run / "run.json").read_text())
    command = "cli.py train --config configs/transformer-gpu.toml dataset=/tmp/dataset output=/tmp/runs/x"
    (files / "run.json").write_text(json.dumps({**info, "dataset": "/tmp/dataset", "command": command}))
    model = (run / "model.keras").read_bytes()
    half = len(model) // 2
    (files / "model.keras.part-00").write_bytes(model[:half])
    (files / "model.keras.part-01").write_bytes(model[half:])


def _fetch(files: Path, run: Path, dataset: Path) -> subprocess.CompletedProcess[str]:
    script = REPO / "scripts" / "gpu-fetch.sh"
    return subprocess.run(["bash", str(script), str(files), str(run), str(dataset)], capture_output=True,
                          text=True, timeout=120, check=False)


def test_gpu_fetch_makes_the_device_output_a_run_folder(tiny_run: TinyRun, tiny_dataset: Path,
                                                        tmp_path: Path) -> None:
    _device_output(tiny_run.folder, tmp_path / "files")
    result = _fetch(tmp_path / "files", tmp_path / "run", tiny_dataset)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    assert (run / "model.keras").read_bytes() == (tiny_run.folder / "model.keras").read_bytes()
    assert json.loads((run / "config.json").read_text())["dataset"] == str(tiny_dataset)
    info = json.loads((run / "run.json").read_text())
    command = (f"bash scripts/gpu-train.sh configs/transformer-gpu.toml "
               f"(scripts/gpu-carry.sh {tiny_dataset} first)")
    assert info["command"] == command and info["commands"] == [command]
    assert info["dataset"] == str(tiny_dataset)


def test_gpu_fetch_refuses_other_data(tiny_run: TinyRun, tmp_path: Path) -> None:
    _device_output(tiny_run.folder, tmp_path / "files")
    other = tmp_path / "other"
    other.mkdir()
    (other / "dataset.json").write_text(json.dumps({"fingerprint": "0" * 64}))
    result = _fetch(tmp_path / "files", tmp_path / "run", other)
    assert result.returncode != 0
    assert f"{other} is not the data this run trained on (fingerprint 000000000000" in result.stderr
