"""`issue-summarizer export`: the session's tiny training run turned into a model folder whose
manifest says what it is and which stores each weight once, loading it back (a changed byte is
caught), re-packing a format 1 bundle, refusals, and gs://."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import onnx
import pytest
from cli_in_process import cli
from conftest import TinyRun

from summarizer import __version__, storage
from summarizer.bundle import FORMAT_VERSION
from summarizer.decoding import DecodeConfig
from summarizer.engine import Summarizer
from summarizer.errors import UserError
from summarizer.export import ALIGNMENT, export
from summarizer.models import HYPERPARAMETERS, load_model
from summarizer.onnx_graphs import onnx_graphs
from summarizer.titles import KerasTitler
from summarizer.train_config import load_config

BASELINES = {"first-sentence", "first-8-words"}
GRAPHS = ("encoder.onnx", "decoder.onnx", "scorer.onnx")
FILES = {*GRAPHS, "weights.bin", "keras_weights.json", "tokenizer.json", "manifest.json"}


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("issue-summarizer: error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def report(tiny_run: TinyRun, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """evaluate's JSON report scoring the run (on one dev issue, short titles: it only has to exist)."""
    output = tmp_path_factory.mktemp("reports") / "dev"
    assert cli(["evaluate", str(tiny_dataset), "--split", "dev", "--model", str(tiny_run.folder),
                "--limit", "1", "--max-length", "3", "-o", str(output), "-q"]) == 0
    return output.with_suffix(".json")


@pytest.fixture(scope="module")
def exported(tiny_run: TinyRun, report: Path,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(the exported folder, what the command printed)."""
    output = tmp_path_factory.mktemp("models") / "tiny"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli(["export", str(tiny_run.folder), "-o", str(output), "--report", str(report), "-q"]) == 0
    return output, printed.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_says_what_the_model_is(exported: tuple[Path, str], tiny_run: TinyRun,
                                         tiny_dataset: Path, report: Path) -> None:
    folder, printed = exported
    assert {p.name for p in folder.iterdir()} == FILES  # nothing staged is left over
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"] == {name: sha256(folder / name) for name in FILES - {"manifest.json"}}
    assert json.loads(printed) == {"output": str(folder), "files": manifest["files"]}
    config = json.loads((tiny_run.folder / "config.json").read_text())
    assert manifest["config"] == config
    assert manifest["format_version"] == FORMAT_VERSION == 2
    assert manifest["created_by"] == f"issue-summarizer {__version__}" and "repacked" not in manifest
    assert manifest["architecture"] == "transformer"
    kind_keys = HYPERPARAMETERS["transformer"]
    assert manifest["hyperparameters"] == {key: config["model"][key] for key in kind_keys}
    assert manifest["hyperparameters"]["dim"] == 16 and "units" not in manifest["hyperparameters"]
    assert manifest["max_lengths"] == {"body_tokens": 64, "title_tokens": 24}
    assert manifest["special_tokens"] == {"pad": "<pad>", "unk": "<unk>", "start": "<s>", "end": "</s>"}
    dataset = json.loads((tiny_dataset / "dataset.json").read_text())
    assert manifest["data_fingerprint"] == dataset["fingerprint"]
    assert manifest["data"] == {"dataset": str(tiny_dataset), "settings": dataset["settings"]}
    training = manifest["training"]
    assert training["command"] == tiny_run.command
    assert training["metrics"]["epochs"] == 1 and training["backend"] == "tensorflow"
    evaluation, scored = manifest["evaluation"], json.loads(report.read_text())
    assert evaluation["model"] == tiny_run.folder.name
    assert set(evaluation["scores"]) == BASELINES | {tiny_run.folder.name}
    assert evaluation["scores"] == scored["scores"]
    assert evaluation["decoding"]["max_length"] == 3 and evaluation["issues"] == 1


def test_a_run_started_from_another_records_where_it_began(tiny_run: TinyRun, tmp_path: Path) -> None:
    """A run with init_from: the manifest also holds the commands and scores of the run whose
    weights it started from. A config from before the copy setting existed still exports."""
    run = tmp_path / "grown"
    shutil.copytree(tiny_run.folder, run)
    config = json.loads((run / "config.json").read_text())
    config["init_from"] = str(tiny_run.folder)
    del config["model"]["copy"]
    (run / "config.json").write_text(json.dumps(config))
    manifest = export(str(run), str(tmp_path / "bundle"))
    donor = json.loads((tiny_run.folder / "run.json").read_text())
    started = manifest["training"]["started_from"]
    assert started["init_from"] == str(tiny_run.folder)
    assert started["commands"] == donor["commands"] == [tiny_run.command]
    assert started["metrics"] == donor["metrics"] and started["data_fingerprint"] == donor["data_fingerprint"]
    assert manifest["hyperparameters"]["copy"] is False
    older = tmp_path / "older"  # a run from before run.json listed every command
    shutil.copytree(tiny_run.folder, older)
    (older / "run.json").write_text(json.dumps({key: donor[key] for key in donor if key != "commands"}))
    config["init_from"] = str(older)
    (run / "config.json").write_text(json.dumps(config))
    again = export(str(run), str(tmp_path / "again"))
    assert again["training"]["started_from"]["commands"] == [tiny_run.command]


def test_exported_folder_loads_and_decodes(exported: tuple[Path, str], tiny_run: TinyRun) -> None:
    """No config.json or model.keras there: the manifest's config builds the model and every
    variable is read from the weight file, equal to the run's bit for bit."""
    loaded = KerasTitler.load(str(exported[0]))
    assert (loaded.name, loaded.body_len) == ("transformer", 64)
    trained = load_model(tiny_run.folder / "model.keras")
    assert [v.path for v in loaded.model.weights] == [v.path for v in trained.weights]
    for found, saved in zip(loaded.model.weights, trained.weights, strict=True):
        assert np.array_equal(*map(keras.ops.convert_to_numpy, (found, saved))), found.path
    titles = loaded.titles(["Crash on startup after upgrading", "The export button does nothing."],
                           DecodeConfig(max_length=3))
    assert len(titles) == 2 and all(isinstance(title, str) for title in titles)


def test_a_bundle_scores_as_its_run(exported: tuple[Path, str], tiny_run: TinyRun, tiny_dataset: Path,
                                    tmp_path: Path) -> None:
    """evaluate decodes a bundle on the ONNX engine and a run on Keras: the same titles, so the
    same scores, greedy and beam."""
    folder = tmp_path / tiny_run.folder.name  # the same name: scores are keyed by folder name
    shutil.copytree(exported[0], folder)
    for beams in ("1", "3"):
        reports = []
        for model in (tiny_run.folder, folder):
            output = tmp_path / f"report-{beams}-{model == folder}"
            assert cli(["evaluate", str(tiny_dataset), "--split", "dev", "--model", str(model),
                        "--beams", beams, "--max-length", "6", "--no-repeat-ngram", "2", "-o", str(output),
                        "-q"]) == 0
            reports.append(json.loads(output.with_suffix(".json").read_text()))
        assert reports[0]["scores"] == reports[1]["scores"]
        assert reports[0]["examples"] == reports[1]["examples"]


@pytest.mark.parametrize("name", ["weights.bin", "keras_weights.json", "tokenizer.json"])
def test_a_changed_byte_is_caught_on_load(exported: tuple[Path, str], tmp_path: Path, tiny_dataset: Path,
                                          name: str, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "tampered"
    shutil.copytree(exported[0], folder)
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 1
    (folder / name).write_bytes(bytes(data))
    message = rf"{name} differs from the manifest \(sha256\)"
    with pytest.raises(UserError, match=message):
        KerasTitler.load(str(folder))
    assert cli(["evaluate", str(tiny_dataset), "--split", "dev", "--model", str(folder)]) == 1
    assert message.replace("\\", "") in one_error_line(capsys)


def test_export_refuses_an_unfinished_run(tiny_run: TinyRun, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A run stopped before its first epoch ended has no model.keras yet."""
    run = tmp_path / "stopped"
    run.mkdir()
    for name in ("config.json", "run.json", "tokenizer.json"):
        shutil.copyfile(tiny_run.folder / name, run / name)
    output = tmp_path / "out"
    with pytest.raises(UserError, match=r"stopped: not a finished training run \(missing model\.keras\)"):
        export(str(run), str(output))
    assert cli(["export", str(run), "-o", str(output)]) == 1
    assert one_error_line(capsys) == (f"issue-summarizer: error: {run}: not a finished training run "
                                      "(missing model.keras)")
    assert cli(["export", str(tmp_path / "nowhere"), "-o", str(output)]) == 1
    assert "missing model.keras, tokenizer.json, config.json, run.json" in one_error_line(capsys)
    assert not output.exists()


def test_a_report_without_this_model_is_refused(tiny_run: TinyRun, tiny_dataset: Path,
                                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baselines_only = tmp_path / "baselines"
    assert cli(["evaluate", str(tiny_dataset), "--split", "dev", "-o", str(baselines_only), "-q"]) == 0
    capsys.readouterr()
    output = tmp_path / "out"
    assert cli(["export", str(tiny_run.folder), "-o", str(output), "--report", f"{baselines_only}.json"]) == 1
    assert one_error_line(capsys) == (
        f"issue-summarizer: error: {baselines_only}.json has no scores for 'tiny-transformer' (it has "
        "first-sentence, first-8-words); evaluate with --model pointing at this run")
    # prepare's report.json is easy to pass by mistake: it is no evaluate report at all.
    assert cli(["export", str(tiny_run.folder), "-o", str(output),
                "--report", str(tiny_dataset / "report.json")]) == 1
    assert "not a report from issue-summarizer evaluate" in one_error_line(capsys)
    assert not output.exists()


def test_export_never_replaces_its_own_run(tiny_run: TinyRun, tmp_path: Path) -> None:
    """The output folder is replaced whole: the run (or a folder holding it) must not be it."""
    run = tmp_path / "runs" / "copy"
    shutil.copytree(tiny_run.folder, run)
    for output in (run, run.parent):
        with pytest.raises(UserError, match="would replace"):
            export(str(run), str(output))
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in tiny_run.folder.iterdir())


def test_export_to_cloud_storage(tiny_run: TinyRun, report: Path, gcs_bucket: str) -> None:
    destination = f"{gcs_bucket}/models/tiny"
    manifest = export(str(tiny_run.folder), destination, str(report))
    assert storage.list_files(destination) == sorted(f"{destination}/{name}" for name in FILES)
    assert json.loads(storage.read_bytes(f"{destination}/manifest.json")) == manifest
    weights = storage.read_bytes(f"{destination}/weights.bin")
    assert hashlib.sha256(weights).hexdigest() == manifest["files"]["weights.bin"]


def external_places(folder: Path) -> dict[str, list[tuple[str, int, int, bytes]]]:
    """Each graph's initializers as (name, offset, length, content read from weights.bin),
    checking that every one but the int64 shape constants lies in weights.bin."""
    weights = (folder / "weights.bin").read_bytes()
    places = {}
    for name in GRAPHS:
        graph = onnx.load(folder / name, load_external_data=False)
        places[name] = []
        for tensor in graph.graph.initializer:
            if tensor.data_type == onnx.TensorProto.INT64:  # shapes and axes shape inference reads
                assert tensor.data_location == onnx.TensorProto.DEFAULT and len(tensor.raw_data) <= 64
                continue
            assert tensor.data_location == onnx.TensorProto.EXTERNAL and not tensor.raw_data, tensor.name
            info = {entry.key: entry.value for entry in tensor.external_data}
            offset, length = int(info["offset"]), int(info["length"])
            assert info["location"] == "weights.bin" and offset % ALIGNMENT == 0
            places[name].append((tensor.name, offset, length, weights[offset:offset + length]))
    return places


def test_each_weight_is_stored_once(exported: tuple[Path, str]) -> None:
    """The graphs are small protos pointing into one weight file; equal tensors (the embedding
    all three graphs use, the Keras variables) share one place, and the file holds nothing else."""
    folder = exported[0]
    places = external_places(folder)
    keras_index = json.loads((folder / "keras_weights.json").read_text())["weights"]
    weights = (folder / "weights.bin").read_bytes()
    stored = [entry[1:] for entries in places.values() for entry in entries]
    stored += [(place["offset"], place["length"], weights[place["offset"]:place["offset"] + place["length"]])
               for place in keras_index.values()]
    by_content: dict[bytes, set[tuple[int, int]]] = {}
    for offset, length, content in stored:
        by_content.setdefault(content, set()).add((offset, length))
    assert all(len(where) == 1 for where in by_content.values())  # identical tensors coincide
    end = 0  # the places do not overlap, and only alignment padding lies between them
    for offset, length in sorted(place for where in by_content.values() for place in where):
        assert end <= offset < end + ALIGNMENT
        end = offset + length
    assert len(weights) == end
    embedding = {(offset, length) for entries in places.values() for name, offset, length, _ in entries
                 if name.startswith("embedding_")}
    place = keras_index["embedding/embeddings"]
    assert embedding == {(place["offset"], place["length"])}  # one table for three graphs and Keras
    assert all((folder / name).stat().st_size < 64_000 for name in GRAPHS)


def format_1_bundle(run: Path, folder: Path) -> Path:
    """A bundle as format 1 wrote one: each graph holding its own weights, and model.keras."""
    folder.mkdir()
    for name in ("model.keras", "tokenizer.json"):
        shutil.copyfile(run / name, folder / name)
    for name, graph in onnx_graphs(load_model(run / "model.keras")).items():
        onnx.save_model(graph, folder / name)
    manifest = {"format_version": 1, "created_by": "issue-summarizer 0.0.1", "architecture": "transformer",
                "config": json.loads((run / "config.json").read_text()),
                "max_lengths": {"body_tokens": 64, "title_tokens": 24}, "evaluation": {"scores": {}},
                "files": {name: sha256(folder / name) for name in (*GRAPHS, "model.keras", "tokenizer.json")}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_format_1_bundle_is_repacked_as_a_fresh_export(exported: tuple[Path, str], tiny_run: TinyRun,
                                                        tmp_path: Path) -> None:
    """The engine refuses the old format, saying how to re-pack it; re-packed, its files are the
    ones exporting the run writes, byte for byte, smaller in all than its old graphs alone, and
    its manifest keeps what the old one said, recording the re-packing."""
    old = format_1_bundle(tiny_run.folder, tmp_path / "old")
    with pytest.raises(UserError, match=rf"format 1 is not 2.*'issue-summarizer export {old} -o NEW_FOLDER'"):
        Summarizer.load(old)
    new = tmp_path / "new"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli(["export", str(old), "-o", str(new), "-q"]) == 0
    manifest = json.loads((new / "manifest.json").read_text())
    assert manifest["files"] == json.loads((exported[0] / "manifest.json").read_text())["files"]
    before = json.loads((old / "manifest.json").read_text())
    assert {key: manifest[key] for key in before if key not in ("files", "format_version", "created_by")} == {
        key: value for key, value in before.items() if key not in ("files", "format_version", "created_by")}
    assert manifest["repacked"] == [{"manifest_sha256": sha256(old / "manifest.json"), "format_version": 1,
                                     "created_by": "issue-summarizer 0.0.1",
                                     "by": f"issue-summarizer {__version__}"}]
    bundle_size = sum(path.stat().st_size for path in new.iterdir())
    assert bundle_size < sum((old / name).stat().st_size for name in GRAPHS)
    again = tmp_path / "again"  # a current bundle re-packs to the same files
    assert export(str(new), str(again))["files"] == manifest["files"]
    assert len(json.loads((again / "manifest.json").read_text())["repacked"]) == 2


def test_a_bundle_cannot_start_a_training_run(exported: tuple[Path, str], tiny_dataset: Path) -> None:
    """Warm starting reads model.keras, which a bundle does not keep: refused before training."""
    with pytest.raises(UserError, match=r"is a model bundle, which keeps its Keras weights in weights.bin"):
        load_config(None, [f"dataset={tiny_dataset}", f"init_from={exported[0]}"])
