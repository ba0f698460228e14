"""The README's two commands stay true: CI runs the test command, and the demo command opens
the web app on the shipped model; the pipeline demo runs end to end on the example issues."""

from __future__ import annotations

import subprocess
from pathlib import Path

import requests
from webapp_process import running_app

from summarizer.engine import SHIPPED, Summarizer

REPO_ROOT = Path(__file__).resolve().parent.parent
BODY = "Clicking Save on the settings page does nothing: no request is sent and no error is shown."


def test_readme_names_both_commands_and_ci_runs_the_test_one() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "bash scripts/demo.sh" in readme and "bash scripts/test.sh" in readme
    assert "bash scripts/test.sh" in (REPO_ROOT / ".ci" / "run").read_text()


def test_demo_command_opens_the_web_app_on_the_shipped_model(tmp_path: Path) -> None:
    settings = {"PORT": "0", "FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")}
    with running_app(settings, start_timeout=600, command=["bash", "scripts/demo.sh"]) as app:
        page = requests.get(f"{app.url}/", timeout=30)
        answer = requests.post(f"{app.url}/api/summarize", json={"body": BODY}, timeout=30)
        output = app.output()
    assert page.status_code == 200 and 'id="summarize-form"' in page.text
    assert answer.status_code == 200, answer.text
    engine = Summarizer.load(SHIPPED, threads=1)  # decoding as the app does by default
    expected = engine.candidates([BODY], num_beams=4, consensus=True, samples=32)[0][0].text
    assert answer.json()["title"] == expected
    assert "Traceback" not in output and "issue-summarizer web app: http://127.0.0.1:" in output


def test_pipeline_demo_runs_the_pipeline_and_shows_it() -> None:
    run = subprocess.run(["bash", "scripts/pipeline-demo.sh"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "wrote 38 issues" in run.stderr
    for line in ("read 38 issues, kept 33", "train ", "dev ", "test ", "title: ", "| default |"):
        assert line in run.stdout, line
    assert "Traceback" not in run.stderr
    assert (REPO_ROOT / "build" / "demo" / "dataset" / "dataset.json").exists()
