"""Packing a dataset for a lent GPU machine: unpacked, training reads the same batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from summarizer.batches import TitleBatches
from summarizer.dataset import open_dataset
from training.carry import ARRAYS, main


def test_unpacked_dataset_gives_the_same_batches(tiny_dataset: Path, tmp_path: Path) -> None:
    assert main(["pack", str(tiny_dataset), str(tmp_path / "packed"), "--body-len", "32"]) == 0
    assert main(["unpack", str(tmp_path / "packed"), str(tmp_path / "dataset")]) == 0
    original, unpacked = open_dataset(str(tiny_dataset)), open_dataset(str(tmp_path / "dataset"))
    assert unpacked.manifest == original.manifest  # fingerprint and settings carried as they are
    assert (tmp_path / "dataset" / "tokenizer.json").read_bytes() == original.tokenizer_path.read_bytes()
    assert json.loads((tmp_path / "dataset" / "report.json").read_text()) == original.report
    for split in ("train", "dev"):
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
    assert packed_size < sum(p.stat().st_size for p in tiny_dataset.glob("*.npy")) / 2


def test_unfinished_dataset_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pack", str(tmp_path), str(tmp_path / "packed"), "--body-len", "32"]) == 1
    assert capsys.readouterr().err.startswith(f"carry: error: {tmp_path}: not a finished dataset")
