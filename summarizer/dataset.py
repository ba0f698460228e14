"""Opening a prepared dataset for training: finished-ness and hashes checked, shards split
between workers, arrays memory-mapped so a worker streams them without loading them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from summarizer import storage
from summarizer.errors import UserError
from summarizer.prepare import MANIFEST, REPORT


@dataclass(frozen=True)
class Dataset:
    folder: Path
    manifest: dict

    @property
    def report(self) -> dict:
        return json.loads((self.folder / REPORT).read_text())

    @property
    def tokenizer_path(self) -> Path:
        return self.folder / self.manifest["tokenizer"]

    def shards(self, split: str, worker: int = 0, workers: int = 1) -> list[dict]:
        """This worker's shards: every `workers`-th one, so workers read disjoint data."""
        if not 0 <= worker < workers:
            raise ValueError(f"worker {worker} is not in 0..{workers - 1}")
        return self.manifest["splits"][split]["shards"][worker::workers]

    def arrays(self, split: str, worker: int = 0, workers: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
        """(body, title) int32 arrays of this worker's shards, memory-mapped."""
        return [(np.load(self.folder / s["body"], mmap_mode="r"),
                 np.load(self.folder / s["title"], mmap_mode="r"))
                for s in self.shards(split, worker, workers)]


def open_dataset(path: str, verify: bool = False) -> Dataset:
    """Open a local or gs:// dataset; a gs:// one is downloaded once into a local cache."""
    manifest_path = storage.join(path, MANIFEST)
    if not storage.exists(manifest_path):
        raise UserError(f"{path}: not a finished dataset (no {MANIFEST}); run "
                        "'issue-summarizer prepare' to make one, or let an interrupted run finish")
    raw_manifest = storage.read_bytes(manifest_path)
    manifest = json.loads(raw_manifest)
    if storage.is_gcs(path):
        folder = storage.cache_dir("datasets", manifest["fingerprint"])
        for name, digest in manifest["files"].items():
            local = folder / name
            if not local.exists() or storage.sha256_file(local) != digest:
                storage.download_file(storage.join(path, name), local)
        (folder / MANIFEST).write_bytes(raw_manifest)  # the cache is a dataset of its own
        verify = True
    else:
        folder = Path(path)
    if verify:
        for name, digest in manifest["files"].items():
            if not (folder / name).exists() or storage.sha256_file(folder / name) != digest:
                raise UserError(f"{storage.join(path, name)}: missing or changed since prepare "
                                "wrote it (sha256 differs); prepare the dataset again")
    return Dataset(folder, manifest)
