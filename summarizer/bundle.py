"""The model bundle on disk: a folder (or `gs://` prefix) whose `manifest.json` records what
the model is and the sha256 of every other file, so a changed or incomplete bundle is refused
before anything in it is used. Nothing here imports Keras: serving reads bundles too.

Every weight is stored once, in `weights.bin`: the three ONNX graphs point into it (ONNX
external data, resolved by ONNX Runtime beside each graph) and `keras_weights.json` says where
each Keras variable lies in it, so neither the embedding the graphs share nor the Keras model
(for Keras decoding and re-packing) takes extra space: format 1 held four copies of every weight.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from summarizer import storage
from summarizer.errors import UserError

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
WEIGHTS = "weights.bin"  # every distinct tensor once, at 64-byte aligned offsets
KERAS_WEIGHTS = "keras_weights.json"  # each Keras variable's place in WEIGHTS
GRAPHS = ("encoder.onnx", "decoder.onnx", "scorer.onnx")
KERAS_FILES = (WEIGHTS, KERAS_WEIGHTS, "tokenizer.json")  # what Keras decoding reads (`titles`)
ENGINE_FILES = (*GRAPHS, WEIGHTS, "tokenizer.json")  # what serving reads


def _manifest(location: str, raw: bytes, formats: tuple[int, ...] = (FORMAT_VERSION,)) -> dict:
    try:
        manifest = json.loads(raw)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise UserError(f"{storage.join(location, MANIFEST)}: not a bundle manifest (no file list); "
                        "export the model again with 'issue-summarizer export'")
    if manifest.get("format_version") not in formats:
        raise UserError(f"{location}: bundle format {manifest.get('format_version')!r} is not "
                        f"{FORMAT_VERSION}, the one this version reads; export it again (a format 1 "
                        f"bundle is re-packed by 'issue-summarizer export {location} -o NEW_FOLDER')")
    return manifest


def verify(folder: Path, needs: tuple[str, ...] = (), formats: tuple[int, ...] = (FORMAT_VERSION,)) -> dict:
    """The manifest of a local bundle whose files all match their sha256 and include `needs`;
    `formats` other than this one only for re-packing an older bundle (see `export`)."""
    if not (folder / MANIFEST).exists():
        raise UserError(f"{folder}: not a model bundle (no {MANIFEST}); pass a folder written by "
                        "'issue-summarizer export'")
    manifest = _manifest(str(folder), (folder / MANIFEST).read_bytes(), formats)
    absent = [name for name in needs if name not in manifest["files"]]
    if absent:
        raise UserError(f"{folder}: the bundle has no {', '.join(absent)}; export it again with this "
                        "version of issue-summarizer")
    for name, digest in manifest["files"].items():
        if not (folder / name).exists():
            raise UserError(f"{folder}: {name} is missing; export the model again")
        if storage.sha256_file(folder / name) != digest:
            raise UserError(f"{folder}: {name} differs from the manifest (sha256); the bundle was "
                            "changed after export: export it again or restore the file")
    return manifest


def fetch(location: str, needs: tuple[str, ...] = ()) -> tuple[Path, dict]:
    """A verified local copy of a bundle: the folder itself, or for `gs://` a cache keyed by
    the manifest's hash (a new bundle at the same URL is downloaded again)."""
    if not storage.is_gcs(location):
        return Path(location), verify(Path(location), needs)
    raw = storage.read_bytes(storage.join(location, MANIFEST))
    manifest = _manifest(location, raw)
    folder = storage.cache_dir("bundles", hashlib.sha256(raw).hexdigest()[:16])
    for name in manifest["files"]:  # the cache is keyed by the manifest: a file there is this one
        if not (folder / name).exists():
            storage.download_file(storage.join(location, name), folder / name)
    (folder / MANIFEST).write_bytes(raw)
    return folder, verify(folder, needs)
