"""`export`: turn a finished training run into a model folder that says what it is.

The folder holds `model.keras`, `tokenizer.json` and `manifest.json`: the architecture and its
settings, max lengths, special tokens, the commands and data fingerprint that made it, its
scores next to the baselines, training time and hardware, and the sha256 of every file, so a
changed or incomplete folder is caught on load.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from summarizer import __version__, storage
from summarizer.errors import UserError
from summarizer.models import HYPERPARAMETERS
from summarizer.tokenization import SPECIAL_TOKENS

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILES = ("model.keras", "tokenizer.json")


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
                                            "scores")} | {"model": name}


def _dataset_settings(dataset: str) -> dict | None:
    """How the training data was prepared, when the dataset is still where training read it."""
    path = storage.join(dataset, "dataset.json")
    return json.loads(storage.read_bytes(path))["settings"] if storage.exists(path) else None


def verify(folder: Path) -> dict:
    """The manifest of an exported folder whose files all match their recorded sha256."""
    manifest = json.loads((folder / MANIFEST).read_text())
    for name, digest in manifest["files"].items():
        if not (folder / name).exists():
            raise UserError(f"{folder}: {name} is missing; export the model again")
        if storage.sha256_file(folder / name) != digest:
            raise UserError(f"{folder}: {name} differs from the manifest (sha256); the folder was "
                            "changed after export: export it again or restore the file")
    return manifest


def export(run_dir: str, output: str, report: str | None = None) -> dict:
    """Copy the run's best model and tokenizer into `output` and write its manifest last."""
    run = Path(run_dir)
    missing = [name for name in (*FILES, "config.json", "run.json") if not (run / name).exists()]
    if missing:
        raise UserError(f"{run_dir}: not a finished training run (missing {', '.join(missing)})")
    # The output folder is replaced whole, so it must neither be the run nor hold it.
    if not storage.is_gcs(output) and run.resolve().is_relative_to(Path(output).resolve()):
        raise UserError(f"{output}: exporting there would replace the run {run_dir}; choose another "
                        "output folder")
    config = json.loads((run / "config.json").read_text())
    info = json.loads((run / "run.json").read_text())
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_by": f"issue-summarizer {__version__}",
        "architecture": config["model"]["kind"],
        "hyperparameters": {key: config["model"][key] for key in HYPERPARAMETERS[config["model"]["kind"]]},
        "max_lengths": {"body_tokens": config["body_len"], "title_tokens": config["title_len"]},
        "special_tokens": dict(zip(("pad", "unk", "start", "end"), SPECIAL_TOKENS, strict=True)),
        "data_fingerprint": info["data_fingerprint"],
        "data": {"dataset": config["dataset"], "settings": _dataset_settings(config["dataset"])},
        "training": {key: info.get(key) for key in ("command", "commands", "package_version", "keras_version",
                                                   "backend", "precision", "hardware", "metrics")},
        "config": config,
        "evaluation": _evaluation(report, run.name) if report else None,
    }
    with storage.staged_directory(output, MANIFEST) as folder:
        for name in FILES:
            shutil.copyfile(run / name, folder / name)
        manifest["files"] = {name: storage.sha256_file(folder / name) for name in FILES}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
