"""`issue-summarizer summarize`: bodies from arguments, files, JSON lines and stdin, on the
shipped bundle, with titles equal to the engine's, and one-line errors for bad input."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_in_process import cli

from summarizer.decoding import DEFAULT_LEAD_BONUS
from summarizer.engine import SHIPPED, Summarizer

BODIES = ["The app crashes with a NullPointerException when I click save on an empty form.",
          "Dark mode: the text in the settings page is black on a dark grey background.",
          "Add an option to export the report as CSV"]


@pytest.fixture(scope="module")
def engine() -> Summarizer:
    return Summarizer.load(SHIPPED, threads=1)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli(["summarize", "-q", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_arguments_files_and_json_lines_in_order(engine: Summarizer, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    body_file = tmp_path / "issue.md"
    body_file.write_text(BODIES[1] + "\n\nSteps:\n1. open settings\n")
    lines = tmp_path / "issues.jsonl"
    lines.write_text("\n".join(json.dumps({"body": body, "id": i}) for i, body in enumerate(BODIES)) + "\n\n")
    code, out, err = run([BODIES[0], "--file", str(body_file), "--jsonl", str(lines)], capsys)
    assert code == 0, err
    expected = engine.summarize([BODIES[0], body_file.read_text(), *BODIES])
    assert out.splitlines() == expected


def test_json_output_has_ranked_candidates(engine: Summarizer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([*BODIES[:2], "--beams", "4", "--candidates", "3", "--json"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    found = engine.candidates(BODIES[:2], num_return=3, num_beams=4)
    assert [row["title"] for row in rows] == [titles[0].text for titles in found]
    assert [[c["title"] for c in row["candidates"]] for row in rows] == [[t.text for t in ts] for ts in found]
    assert all(row["score"] == row["candidates"][0]["score"] >= row["candidates"][-1]["score"]
               for row in rows)


def test_lead_bonus_setting(engine: Summarizer, capsys: pytest.CaptureFixture[str]) -> None:
    for flag, bonus in (["off"], None), (["0.5"], 0.5), ([], DEFAULT_LEAD_BONUS):
        code, out, err = run([*BODIES, *(["--lead-bonus", *flag] if flag else [])], capsys)
        assert code == 0, err
        assert out.splitlines() == engine.summarize(BODIES, lead_bonus=bonus)
    with pytest.raises(SystemExit) as usage:
        run(["body", "--lead-bonus", "high"], capsys)
    assert usage.value.code == 2
    assert "--lead-bonus: 'high' is not a number or 'off'" in capsys.readouterr().err


def test_sampled_consensus(engine: Summarizer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([*BODIES, "--consensus", "--samples", "6"], capsys)
    assert code == 0, err
    assert out.splitlines() == engine.summarize(BODIES, consensus=True, samples=6)
    code, _, err = run(["body", "--samples", "6"], capsys)
    assert code == 1 and "sampled titles only serve the consensus: turn consensus on" in err
    code, _, err = run(["body", "--consensus"], capsys)
    assert code == 1 and "consensus needs titles to choose among" in err


def test_stdin_is_one_body(engine: Summarizer, repo_root: Path) -> None:
    script = Path(sys.executable).with_name("issue-summarizer")
    result = subprocess.run([str(script), "summarize", "-q"], input=BODIES[0] + "\nmore lines\n", text=True,
                            capture_output=True, timeout=120, check=False, cwd=repo_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == engine.summarize([BODIES[0] + "\nmore lines\n"])


@pytest.mark.parametrize(("lines", "message"), [
    ('{"body": "fine"}\nnot json\n', r"issues.jsonl:2: not JSON: it is not valid JSON"),
    ('{"body": "fine"}\n' + "[" * 5000 + "\n", r"issues.jsonl:2: not JSON: it is nested too deeply"),
    ('{"body": "fine"}\n{"title": "no body"}\n', r"issues.jsonl:2: no \"body\" string"),
    ('{"body": "fine"}\n["a list"]\n', r"issues.jsonl:2: no \"body\" string"),
    ('{"body": "fine"}\n{"body": "<!-- only a comment -->"}\n', r"issues.jsonl:2: nothing to summarize"),
])
def test_a_bad_json_line_is_one_bad_record(engine: Summarizer, lines: str, message: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The line keeps its place with no title, the others get theirs, the run exits 1 saying why."""
    (tmp_path / "issues.jsonl").write_text(lines + '{"body": "' + BODIES[0] + '"}\n')
    code, out, err = run(["--jsonl", str(tmp_path / "issues.jsonl")], capsys)
    assert code == 1
    assert out.splitlines() == [*engine.summarize(["fine"]), "", *engine.summarize([BODIES[0]])]
    assert re.search("issue-summarizer: .*" + message, err.splitlines()[0]), err
    assert err.splitlines()[1] == \
        "issue-summarizer: error: 1 of 3 bodies got no title (the lines above say why)"
    code, out, err = run(["--jsonl", str(tmp_path / "issues.jsonl"), "--json"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and [sorted(row) for row in rows] == [["candidates", "score", "title"], ["error"],
                                                            ["candidates", "score", "title"]]
    assert "Traceback" not in err


@pytest.mark.parametrize("body", ["", "   ", "\u200b\u200b", "\x00\x00", "```\n```",
                                  "### Describe the bug\n"])
def test_a_body_with_nothing_to_summarize_exits_1(body: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([body], capsys)
    assert code == 1 and out == "\n"
    assert err.startswith("issue-summarizer: argument 1: nothing to summarize"), err


def test_decoding_beyond_the_bounds_is_refused_before_any_work(capsys: pytest.CaptureFixture[str]) -> None:
    for flags, message in ((["--beams", "100000"], "num_beams must be from 1 to 16"),
                           (["--consensus", "--beams", "2", "--samples", "1000"],
                            "samples must be from 0 to 64"),
                           (["--max-length", "100000"], "max_length must be from 1 to 64")):
        code, out, err = run(["x y z", *flags], capsys)
        assert code == 1 and out == "" and message in err, err


def test_missing_file_bad_model_and_bad_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(["--file", str(tmp_path / "absent.md")], capsys)
    assert code == 1 and "absent.md: cannot read it" in err
    code, _, err = run(["body", "--model", str(tmp_path)], capsys)
    assert code == 1 and "not a model bundle" in err
    code, _, err = run(["body", "--candidates", "3"], capsys)
    assert code == 1 and "--candidates 3 is more than --beams 1" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    code, _, err = run([], capsys)
    assert code == 1 and "no issue body given" in err


def test_model_from_the_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUMMARIZER_MODEL", str(tmp_path / "nowhere"))
    code, _, err = run(["body"], capsys)
    assert code == 1 and "nowhere: not a model bundle" in err
