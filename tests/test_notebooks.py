"""The notebooks run top to bottom on the example issues, as CI runs them, and are committed
without outputs.

Each notebook is executed by nbclient in a python3 kernel started in notebooks/, as Jupyter
runs it. Its `parameters` cell gets small settings and a temporary WORK_DIR appended (so its
defaults run first and are then overridden, as papermill does), and the test adds a last cell
that prints, as JSON, the kernel's values it checks against the library: the issues read, the
scores of the trained model, the titles the engine and the two model servers (really started
on loopback) gave.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from servers import build_serving_environment, mlserver

from serving.microservice import serve
from summarizer.engine import Summarizer
from summarizer.ingest import ingest

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"
NAMES = ["01-explore.ipynb", "02-train-evaluate.ipynb", "03-serve-query.ipynb"]
EXAMPLES = REPO_ROOT / "examples" / "issues"
BUNDLE = REPO_ROOT / "models" / "default"
# A tiny deterministic transformer, three epochs of three batches: seconds on a CPU.
TINY_TRAINING = {
    "HELDOUT_FRACTION": 0.2, "MAX_HELDOUT_SHARE": 0.3, "VOCAB_SIZE": 400, "BODY_LEN": 64, "TITLE_LEN": 24,
    "BATCH_SIZE": 4, "EPOCHS": 3, "STEPS_PER_EPOCH": 3,
    "MODEL": {"kind": "transformer", "dim": 16, "hidden": 32, "heads": 2, "encoder_layers": 1,
              "decoder_layers": 1, "dropout": 0.0},
}


def execute(name: str, parameters: dict[str, Any], probe: str) -> tuple[nbformat.NotebookNode, Any]:
    """Run notebook `name` with `parameters`; return it executed and the JSON value of `probe`
    (a Python expression evaluated in the kernel after the last cell)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\n\n# set by tests/test_notebooks.py\n" + "\n".join(
        f"{key} = {value!r}" for key, value in parameters.items())
    notebook.cells.append(nbformat.v4.new_code_cell(f"import json\nprint(json.dumps({probe}))"))
    NotebookClient(notebook, kernel_name="python3", timeout=300,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    printed = "".join(output.get("text", "") for output in notebook.cells[-1].outputs)
    return notebook, json.loads(printed)


def text(cell: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "") for output in cell.outputs if output.get("name") == "stdout")


def assert_every_plot_drawn(notebook: nbformat.NotebookNode) -> None:
    for cell in notebook.cells:
        if cell.cell_type == "code" and "plt.show()" in cell.source:
            assert any("image/png" in output.get("data", {}) for output in cell.outputs), cell.source


@pytest.fixture(autouse=True)
def kernel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel inherits these: Keras on TensorFlow whatever ~/.keras says, quiet TensorFlow."""
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")


# --- committed notebooks ----------------------------------------------------------------------


def test_every_notebook_is_tested() -> None:
    assert sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell must be tagged parameters"
    dirty = [cell.id for cell in code if cell.outputs or cell.execution_count is not None]
    assert not dirty, (f"{name}: cells {dirty} hold outputs or execution counts; strip them with "
                       f"`jupyter nbconvert --clear-output --inplace notebooks/{name}`")


# --- executed notebooks -----------------------------------------------------------------------


def test_explore(tmp_path: Path) -> None:
    notebook, seen = execute(
        "01-explore.ipynb", {"DATA": str(EXAMPLES), "LIMIT": 20},
        '{"read": len(read), "skipped": skips.as_dict(), "looked_at": len(issues), '
        '"raw_chars": int(raw_chars.sum()), "clean_chars": int(clean_chars.sum())}')
    ingested = ingest([str(EXAMPLES)], str(tmp_path / "issues.jsonl.gz"), state_root=tmp_path / "state")
    assert seen["read"] == ingested["written"]  # the notebook reads what `ingest` writes
    assert seen["skipped"] == ingested["skipped"]
    assert seen["looked_at"] == 20
    assert 0 < seen["clean_chars"] < seen["raw_chars"]
    assert_every_plot_drawn(notebook)


def test_train_evaluate(tmp_path: Path) -> None:
    notebook, seen = execute(
        "02-train-evaluate.ipynb", {"DATA": str(EXAMPLES), "WORK_DIR": str(tmp_path), **TINY_TRAINING},
        '{"scores": report["scores"], "issues": report["issues"], "epochs": len(epochs), '
        '"test": prepared["splits"]["test"]["issues"], "bundle": str(BUNDLE.resolve())}')
    assert list(seen["scores"]) == ["first-sentence", "first-8-words", "notebook", "default"]
    assert all(0 <= scores["rougeL"] <= 100 for scores in seen["scores"].values())
    assert seen["issues"] == seen["test"] > 0
    lines = (tmp_path / "notebook" / "metrics.jsonl").read_text().splitlines()
    assert seen["epochs"] == len(lines) == TINY_TRAINING["EPOCHS"]
    tables = [cell for cell in notebook.cells if cell.get("id") in ("evaluate", "rows")]
    assert all(any("text/markdown" in output.get("data", {}) for output in cell.outputs) for cell in tables)
    assert_every_plot_drawn(notebook)

    bundle = Summarizer.load(seen["bundle"])  # the exported bundle serves, and says how it scored
    assert isinstance(bundle.summarize(["The app crashes when I open a file with no header row"])[0], str)
    assert bundle.manifest["evaluation"]["scores"] == seen["scores"]
    assert bundle.manifest["evaluation"]["model"] == "notebook"


@pytest.fixture(scope="module")
def serving_environments() -> None:
    for name in ("seldon", "mlserver"):
        build_serving_environment(name)


@pytest.fixture
def seldon_url(serving_environments: None) -> Iterator[str]:
    with serve(BUNDLE) as service:
        yield service.url


@pytest.fixture
def v2_url(serving_environments: None, tmp_path: Path) -> Iterator[str]:
    with mlserver(tmp_path / "mlserver.log") as url:
        yield url


def test_serve_query(seldon_url: str, v2_url: str) -> None:
    notebook, seen = execute(
        "03-serve-query.ipynb", {"BUNDLE": str(BUNDLE), "SELDON_URL": seldon_url, "V2_URL": v2_url},
        '{"bodies": BODIES, "titles": titles, "beam_titles": beam_titles, '
        '"seldon_titles": seldon_titles, "v2_titles": v2_titles}')
    engine = Summarizer.load(BUNDLE)
    assert seen["titles"] == engine.summarize(seen["bodies"])
    assert seen["beam_titles"] == engine.summarize(seen["bodies"], num_beams=4)
    assert seen["seldon_titles"] == seen["v2_titles"] == seen["titles"]
    cells = {cell.get("id"): cell for cell in notebook.cells}
    assert all(f"greedy: {title}\n" in text(cells["summarize"]) for title in seen["titles"])
    for name in ("seldon", "v2"):
        assert "same titles as the engine here: True" in text(cells[name])
