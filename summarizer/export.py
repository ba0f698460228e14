"""`export`: turn a finished training run into a model bundle that says what it is.

The bundle holds the ONNX graphs serving runs (`encoder.onnx`, `decoder.onnx`, `scorer.onnx`),
`model.keras` for fine-tuning, `tokenizer.json` and `manifest.json`: the architecture and its
settings, max lengths, special tokens, the commands and data fingerprint that made it, its
scores next to the baselines, training time and hardware, and the sha256 of every file (see
`bundle`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx

from summarizer import __version__, storage
from summarizer.bundle import FORMAT_VERSION, KERAS_FILES, MANIFEST
from summarizer.errors import UserError
from summarizer.models import HYPERPARAMETERS, ModelConfig, load_model
from summarizer.onnx_graphs import onnx_graphs
from summarizer.tokenization import SPECIAL_TOKENS


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


def export(run_dir: str, output: str, report: str | None = None) -> dict:
    """Copy the run's best model and tokenizer into `output` and write its manifest last."""
    run = Path(run_dir)
    missing = [name for name in (*KERAS_FILES, "config.json", "run.json") if not (run / name).exists()]
    if missing:
        raise UserError(f"{run_dir}: not a finished training run (missing {', '.join(missing)})")
    # The output folder is replaced whole, so it must neither be the run nor hold it.
    if not storage.is_gcs(output) and run.resolve().is_relative_to(Path(output).resolve()):
        raise UserError(f"{output}: exporting there would replace the run {run_dir}; choose another "
                        "output folder")
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
    graphs = onnx_graphs(load_model(run / "model.keras"))
    with storage.staged_directory(output, MANIFEST) as folder:
        for name in KERAS_FILES:
            shutil.copyfile(run / name, folder / name)
        for name, graph in graphs.items():
            onnx.save_model(graph, folder / name)
        names = (*KERAS_FILES, *graphs)
        manifest["files"] = {name: storage.sha256_file(folder / name) for name in names}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
