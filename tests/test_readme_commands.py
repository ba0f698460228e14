"""The README's two commands stay true: CI runs the test command, and the demo command runs
the pipeline end to end on the example issues."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_readme_names_both_commands_and_ci_runs_the_test_one() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "bash scripts/demo.sh" in readme and "bash scripts/test.sh" in readme
    assert "bash scripts/test.sh" in (REPO_ROOT / ".ci" / "run").read_text()


def test_demo_command_runs_the_pipeline_and_shows_it() -> None:
    run = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "wrote 38 issues" in run.stderr
    for line in ("read 38 issues, kept 33", "train ", "dev ", "test ", "title: ", "| default |"):
        assert line in run.stdout, line
    assert "Traceback" not in run.stderr
    assert (REPO_ROOT / "build" / "demo" / "dataset" / "dataset.json").exists()
