"""`export`: turn a finished training run into a model bundle that says what it is.

The bundle holds the ONNX graphs serving runs (`encoder.onnx`, `decoder.onnx`, `scorer.onnx`),
`weights.bin` with every distinct tensor once (the graphs' and the Keras model's, found by
content), `keras_weights.json` (where each Keras variable lies in it, for fine-tuning and Keras
decoding), `tokenizer.json` and `manifest.json`: the architecture and its settings, max
lengths, special tokens, the commands and data fingerprint that made it, its scores next to the
baselines, training time and hardware, and the sha256 of every file (see `bundle`).

Exporting a bundle instead of a run re-packs it in this version's format, keeping what its
manifest says and recording the re-packing: how an older bundle is brought up to date.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import keras
import onnx
from onnx.external_data_helper import set_external_data

from summarizer import __version__, storage
from summarizer.bundle import FORMAT_VERSION, GRAPHS, KERAS_WEIGHTS, MANIFEST, WEIGHTS, verify
from summarizer.errors import UserError
from summarizer.models import HYPERPARAMETERS, ModelConfig, bundle_model, load_model
from summarizer.onnx_graphs import onnx_graphs
from summarizer.tokenization import SPECIAL_TOKENS

RUN_FILES = ("model.keras", "tokenizer.json", "config.json", "run.json")
ALIGNMENT = 64  # bytes: each tensor starts where vectorized loads want it


class _WeightFile:
    """The bytes of every distinct tensor once, keyed by their sha256: a tensor several graphs
    (or the Keras model) hold gets one place in the file."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._places: dict[bytes, tuple[int, int]] = {}

    def place(self, data: bytes) -> tuple[int, int]:
        """(offset, length) of `data` in the file, adding it if it is new."""
        key = hashlib.sha256(data).digest()
        if key not in self._places:
            padding = -self._size % ALIGNMENT
            self._parts += [bytes(padding), data]
            self._places[key] = (self._size + padding, len(data))
            self._size += padding + len(data)
        return self._places[key]

    def write(self, path: Path) -> None:
        with path.open("wb") as out:
            out.writelines(self._parts)


def _externalized(graph: onnx.ModelProto, weights: _WeightFile) -> onnx.ModelProto:
    """The graph with every initializer but its int64 ones moved into the weight file: those are
    shapes, axes and indices of a few bytes, which shape inference must read from the graph."""
    for tensor in graph.graph.initializer:
        if tensor.data_type == onnx.TensorProto.INT64:
            continue
        offset, length = weights.place(tensor.raw_data)
        set_external_data(tensor, WEIGHTS, offset, length)
        tensor.ClearField("raw_data")
    return graph


def _keras_index(model: keras.Model, weights: _WeightFile) -> dict:
    """Where each Keras variable lies in the weight file (see `models.bundle_model`)."""
    index = {}
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        offset, length = weights.place(value.tobytes())
        index[variable.path] = {"dtype": str(value.dtype), "shape": list(value.shape), "offset": offset,
                                "length": length}
    return {"vocab_size": model.output_shape[-1], "weights": index}


def _write_model(model: keras.Model, folder: Path) -> None:
    """The three graphs, the Keras index and the one weight file they share."""
    weights = _WeightFile()
    for name, graph in onnx_graphs(model).items():
        (folder / name).write_bytes(_externalized(graph, weights).SerializeToString())
    (folder / KERAS_WEIGHTS).write_text(json.dumps(_keras_index(model, weights), indent=1) + "\n")
    weights.write(folder / WEIGHTS)


def _evaluation(report_path: str, name: str) -> dict:
    try:
        report = json.loads(storage.read_bytes(report_path))
    except ValueError:  # not JSON, or not text at all
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("scores"), dict):
        raise UserError(f"{report_path}: not a report from issue-summarizer evaluate (no scores); pass "
                        "the .json that evaluate -o wrote")
    if name not in report["scores"]:
        raise UserError(f"{report_path} has no scores for {name!r} (it has {', '.join(report['scores'])}); "
                        "evaluate with --model pointing at this run")
    return {key: report.get(key) for key in ("dataset", "fingerprint", "split", "issues", "decoding",
                                            "scores", "references")} | {"model": name}


def _dataset_settings(dataset: str) -> dict | None:
    """How the training data was prepared, when the dataset is still where training read it."""
    path = storage.join(dataset, "dataset.json")
    return json.loads(storage.read_bytes(path))["settings"] if storage.exists(path) else None


def _started_from(init_from: str) -> dict | None:
    """The trained run a run started from (`init_from`): its commands and scores belong to the
    bundle's history too, since its weights are where this model began."""
    if not init_from:
        return None
    path = Path(init_from)
    run_file = (path if path.is_dir() else path.parent) / "run.json"
    info = json.loads(run_file.read_text()) if run_file.exists() else {}
    kept = ("data_fingerprint", "backend", "hardware", "metrics")
    commands = info.get("commands") or ([info["command"]] if "command" in info else None)  # older runs: one
    return {"init_from": init_from, "commands": commands} | {key: info.get(key) for key in kept}


def _check_output(source: Path, output: str) -> None:
    """The output folder is replaced whole, so it must neither be the source nor hold it."""
    if not storage.is_gcs(output) and source.resolve().is_relative_to(Path(output).resolve()):
        raise UserError(f"{output}: exporting there would replace {source}; choose another output folder")


def _from_run(run: Path, report: str | None) -> tuple[keras.Model, dict]:
    """The run's best model and its manifest, less the file list."""
    missing = [name for name in RUN_FILES if not (run / name).exists()]
    if missing:
        raise UserError(f"{run}: not a finished training run (missing {', '.join(missing)})")
    config = json.loads((run / "config.json").read_text())
    info = json.loads((run / "run.json").read_text())
    model = ModelConfig(**config["model"])  # a run from before a setting existed has its default
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_by": f"issue-summarizer {__version__}",
        "architecture": config["model"]["kind"],
        "hyperparameters": {key: getattr(model, key) for key in HYPERPARAMETERS[model.kind]},
        "max_lengths": {"body_tokens": config["body_len"], "title_tokens": config["title_len"]},
        "special_tokens": dict(zip(("pad", "unk", "start", "end"), SPECIAL_TOKENS, strict=True)),
        "data_fingerprint": info["data_fingerprint"],
        "data": {"dataset": config["dataset"], "settings": _dataset_settings(config["dataset"])},
        "training": {key: info.get(key) for key in ("command", "commands", "package_version", "keras_version",
                                                   "backend", "precision", "hardware", "metrics")}
        | {"started_from": _started_from(config.get("init_from", ""))},
        "config": config,
        "evaluation": _evaluation(report, run.name) if report else None,
    }
    return load_model(run / "model.keras"), manifest


def _from_bundle(folder: Path, report: str | None) -> tuple[keras.Model, dict]:
    """A bundle's model (format 1 kept it as model.keras) and its manifest in this format, with
    the re-packing added to its history."""
    old = verify(folder, formats=(1, FORMAT_VERSION))
    model = load_model(folder / "model.keras") if old["format_version"] == 1 else bundle_model(folder, old)
    repacked = {"manifest_sha256": storage.sha256_file(folder / MANIFEST),
                "format_version": old["format_version"], "created_by": old["created_by"],
                "by": f"issue-summarizer {__version__}"}
    manifest = {key: value for key, value in old.items() if key != "files"} | {
        "format_version": FORMAT_VERSION, "created_by": f"issue-summarizer {__version__}",
        "repacked": [*old.get("repacked", []), repacked]}
    if report:
        manifest["evaluation"] = _evaluation(report, folder.name)
    return model, manifest


def export(source: str, output: str, report: str | None = None) -> dict:
    """Write the bundle of a training run (or re-pack a bundle) into `output`, manifest last."""
    path = Path(source)
    _check_output(path, output)
    model, manifest = _from_bundle(path, report) if (path / MANIFEST).exists() else _from_run(path, report)
    with storage.staged_directory(output, MANIFEST) as folder:
        shutil.copyfile(path / "tokenizer.json", folder / "tokenizer.json")
        _write_model(model, folder)
        names = (*GRAPHS, WEIGHTS, KERAS_WEIGHTS, "tokenizer.json")
        manifest["files"] = {name: storage.sha256_file(folder / name) for name in names}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
