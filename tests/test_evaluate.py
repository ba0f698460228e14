"""Evaluation: metrics on known strings, invented identifiers, the two baselines, and `evaluate`
on a prepared dataset of the example issues (report, per-source breakdown, files, CLI) and with
the session's tiny model."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_in_process import cli
from conftest import TinyRun

from summarizer.baselines import BASELINES, first_sentence, first_words
from summarizer.errors import UserError
from summarizer.evaluate import evaluate, markdown, text_format, write_report
from summarizer.ingest import ingest
from summarizer.metrics import (
    invented_identifiers,
    invention_stats,
    looks_like_identifier,
    score,
    title_tokens,
)
from summarizer.prepare import PrepareConfig, prepare
from summarizer.splitting import SplitConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).with_name("issue-summarizer")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("evaluate")
    records = folder / "issues.jsonl.gz"
    ingest([str(REPO_ROOT / "examples" / "issues")], str(records), state_root=folder / "state")
    config = PrepareConfig(vocab_size=400, body_len=64, title_len=32, shards=1,
                           split=SplitConfig(dev_fraction=0.2, test_fraction=0.3, seed="h"))
    prepare([str(records)], str(folder / "dataset"), config, workers=1)
    return folder / "dataset"


def test_identical_titles_score_100_and_disjoint_ones_0() -> None:
    same = score(["Crash when saving a file"], ["Crash when saving a file"])
    assert same["rouge1"] == same["rouge2"] == same["rougeL"] == same["bleu"] == 100.0
    apart = score(["totally unrelated words"], ["Crash when saving"])
    assert apart["rouge1"] == apart["rougeL"] == apart["bleu"] == 0.0
    assert apart["mean_words"] == 3.0 and apart["count"] == 1


def test_partial_overlap_matches_hand_computed_rouge() -> None:
    # 2 of 3 unigrams shared each way: P = R = F1 = 2/3; one shared bigram of two: 1/2.
    result = score(["the cache grows"], ["the cache leaks"])
    assert result["rouge1"] == pytest.approx(66.67, abs=0.01)
    assert result["rouge2"] == pytest.approx(50.0, abs=0.01)
    assert result["rougeL"] == pytest.approx(66.67, abs=0.01)


def test_bleu_matches_hand_computed_value() -> None:
    # 4 of 5 unigrams, 2 of 4 bigrams, 1 of 3 trigrams, 0 of 2 4-grams match; sacrebleu's
    # default "exp" smoothing puts 1/2 in for the zero count; no brevity penalty (5 vs 5 words).
    result = score(["a crash when saving files"], ["a crash when opening files"])
    expected = 100 * (4 / 5 * 2 / 4 * 1 / 3 * (1 / 2) / 2) ** 0.25
    assert result["bleu"] == pytest.approx(expected, abs=0.01)


def test_empty_and_repeating_titles_are_counted() -> None:
    result = score(["", "Crash crash on start", "Crash on start"], ["a", "b", "c"])
    assert result["empty"] == pytest.approx(33.33, abs=0.01)
    assert result["repeated_word"] == pytest.approx(33.33, abs=0.01)


def test_score_rejects_mismatched_lists_and_handles_none() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        score(["a", "b"], ["a"])
    assert score([], []) == {"count": 0}


@pytest.mark.parametrize("token", [
    "getValue", "NullPointerException", "HTTPError", "OSError", "iOS",  # inner capitals
    "os.path", "v1.2", "setup.py", "3.11",  # a dot between word characters
    "foo_bar", "__init__", "std::vector", "404", "utf-8", "Python3",  # digit, _ or ::
])
def test_identifier_shapes_are_recognized(token: str) -> None:
    assert looks_like_identifier(token)


@pytest.mark.parametrize("token", [
    "Python", "Crash", "crash", "API", "URLs", "JSON",  # one leading capital, or all capitals
    "e.g", "i.e", "U.S", "don't", "pre-commit", "and/or", "...",
])
def test_ordinary_words_are_not_identifiers(token: str) -> None:
    assert not looks_like_identifier(token)


def test_title_tokens_lose_surrounding_punctuation_only() -> None:
    assert title_tokens('Fix `os.path.join()`, "getValue" (v1.2): crash! ...') == [
        "Fix", "os.path.join", "getValue", "v1.2", "crash"]
    assert title_tokens("  ") == []


def test_invented_identifiers_are_those_not_in_the_body() -> None:
    body = "Calling getValue() from os.path.join fails on v1.2 with a KeyError."
    assert invented_identifiers("getValue fails on v1.3", body) == (["getValue", "v1.3"], ["v1.3"])
    # Case-sensitive, and a whole word: neither is the one the body has.
    assert invented_identifiers("GetValue and KeyErr fail", body) == (["GetValue", "KeyErr"],
                                                                       ["GetValue", "KeyErr"])
    assert invented_identifiers("KeyError in os.path", body) == (["KeyError", "os.path"], [])
    assert invented_identifiers("Python crashes", "It crashes") == ([], [])


def test_invention_stats_count_tokens_and_titles() -> None:
    titles = ["getValue returns None", "Crash in parse_args", "Docs are wrong", "Typo"]
    bodies = ["getValue returns None.", "It crashes.", "The docs are wrong.", "A typo."]
    # 10 title tokens, one invented identifier (parse_args), in one title of four.
    assert invention_stats(titles, bodies) == {"invented_token_share": 0.1,
                                               "inventing_title_share": 0.25}
    assert invention_stats([], []) == {"invented_token_share": 0.0, "inventing_title_share": 0.0}
    with pytest.raises(ValueError, match="2 titles for 1 bodies"):
        invention_stats(["a", "b"], ["a"])


def test_baselines_invent_no_identifiers_on_the_tiny_dataset(tiny_dataset: Path) -> None:
    rows = []
    for path in sorted(tiny_dataset.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            rows += [json.loads(line) for line in handle]
    bodies = [row["body"] for row in rows]
    for baseline in BASELINES.values():
        titles = [baseline(body) for body in bodies]
        found = [invented_identifiers(title, body) for title, body in zip(titles, bodies, strict=True)]
        assert sum(len(identifiers) for identifiers, _ in found) > 5  # there was something to miss
        assert [invented for _, invented in found if invented] == []
        assert invention_stats(titles, bodies) == {"invented_token_share": 0.0,
                                                   "inventing_title_share": 0.0}


def test_baselines_cut_where_they_say() -> None:
    body = "The export button does nothing. I click it and wait. Nothing happens at all."
    assert first_sentence(body) == "The export button does nothing."
    long_sentence = " ".join(f"w{i}" for i in range(30)) + "."
    assert first_sentence(long_sentence) == " ".join(f"w{i}" for i in range(12))
    assert first_sentence("\n\nFirst line without a stop\nsecond line") == "First line without a stop"
    assert first_words(body) == "The export button does nothing. I click it"
    assert first_sentence("") == first_words("") == ""


def test_evaluate_reports_baselines_sources_and_examples(dataset: Path) -> None:
    report = evaluate(str(dataset), "test", examples=3)
    assert report["issues"] > 0
    assert set(report["scores"]) == {"first-sentence", "first-8-words"}
    for scores in report["scores"].values():
        assert scores["count"] == report["issues"]
        assert 0 <= scores["rougeL"] <= 100
    assert report["scores"]["first-8-words"]["mean_words"] <= 8
    for per in (report["scores"], *report["by_source"].values()):  # copied words invent nothing
        assert all(s["invented_token_share"] == s["inventing_title_share"] == 0.0 for s in per.values())
    # The examples were ingested into one file, which is the source of every row.
    assert set(report["by_source"]["first-sentence"]) == {"issues.jsonl.gz"}
    assert len(report["examples"]) == 3
    assert all({"reference", "first-sentence", "first-8-words"} <= set(e) for e in report["examples"])


def test_a_perfect_predictor_scores_100(dataset: Path) -> None:
    with gzip.open(dataset / "test.jsonl.gz", "rt", encoding="utf-8") as handle:
        truth = {json.loads(line)["body"]: json.loads(line)["title"] for line in handle}
    report = evaluate(str(dataset), "test", {"oracle": lambda bodies: [truth[b] for b in bodies]})
    assert report["scores"]["oracle"]["rougeL"] == 100.0
    assert report["scores"]["oracle"]["rougeL"] > report["scores"]["first-sentence"]["rougeL"]
    # Real titles' own length and repeats: what the oracle, which writes them, shows too.
    assert report["references"] == {name: report["scores"]["oracle"][name] for name in (
        "mean_words", "empty", "repeated_word", "invented_token_share", "inventing_title_share")}
    assert report["references"]["mean_words"] > 0


def test_write_report_and_markdown(dataset: Path, tmp_path: Path) -> None:
    report = evaluate(str(dataset), "test", examples=2)
    write_report(report, str(tmp_path / "out" / "test"))
    assert json.loads((tmp_path / "out" / "test.json").read_text()) == report
    text = (tmp_path / "out" / "test.md").read_text()
    assert "| predictor | ROUGE-1 | ROUGE-2 | ROUGE-L | BLEU | mean words |" in text
    assert "| % invented identifiers (of tokens / of titles) |" in text
    assert f"| {report['scores']['first-sentence']['repeated_word']} | 0.0 / 0.0 |" in text
    assert f"| first-sentence | {report['scores']['first-sentence']['rouge1']} |" in text
    assert f"| *real titles* | – | – | – | – | {report['references']['mean_words']} |" in text
    assert text == markdown(report)


def test_empty_split_is_a_clear_error(tmp_path: Path) -> None:
    records = tmp_path / "issues.jsonl.gz"
    ingest([str(REPO_ROOT / "examples" / "issues")], str(records), state_root=tmp_path / "state")
    config = PrepareConfig(vocab_size=300, body_len=32, title_len=16, shards=1,
                           split=SplitConfig(dev_fraction=0.0, test_fraction=0.0))
    prepare([str(records)], str(tmp_path / "ds"), config, workers=1)
    with pytest.raises(UserError, match="test split .* is empty"):
        evaluate(str(tmp_path / "ds"), "test")


def test_evaluate_cli(dataset: Path, tmp_path: Path) -> None:
    run = subprocess.run([str(CLI), "evaluate", str(dataset), "-o", str(tmp_path / "r"),
                          "--examples", "2"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "# Evaluation: test split" in run.stdout
    assert "| first-sentence |" in run.stdout
    assert (tmp_path / "r.json").exists() and (tmp_path / "r.md").exists()
    missing = subprocess.run([str(CLI), "evaluate", str(tmp_path / "nowhere")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no such file or directory" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize(("body", "form"), [
    ("when xdg_config_home is set pyrite still looks for ~/.config/pyrite/config.toml and ignores it",
     "kaggle"),
    ("When XDG_CONFIG_HOME is set pyrite still looks for ~/.config/pyrite/config.toml and ignores it",
     "github"),
    ("when i run the `build` command the output folder is empty and no error is printed at all", "github"),
    ("the export fails\nwith a key error when the file name has a slash in it somewhere", "github"),
    ("help me please", "github"),
])
def test_text_format_tells_the_kaggle_dumps_form(body: str, form: str) -> None:
    assert text_format(body) == form


def test_any_issue_source_can_be_evaluated_without_preparing_it(tmp_path: Path) -> None:
    report = evaluate(str(REPO_ROOT / "examples" / "issues"), examples=2)
    # 38 issues in the examples; one has an empty body and cannot be scored.
    assert report["issues"] == 37 and report["split"] is None
    assert set(report["by_source"]["first-sentence"]) == {
        "kaggle-dump.csv", "rest-api-page.json", "gharchive-2024-03-01-15.json.gz",
        "issue-7.json", "issue-12.json", "issue-19.json", "issue-23.json"}
    assert markdown(report).startswith("# Evaluation: all issues (37)")
    formats = {group: stats["count"] for group, stats in report["by_format"]["first-sentence"].items()}
    assert formats == {"github": 36, "kaggle": 1}  # one row of kaggle-dump.csv is written that way
    assert "## ROUGE-L by text format" in markdown(report)
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"title": "No body here", "body": ""}\n{"title": "", "body": "text"}\n')
    with pytest.raises(UserError, match="no issue with both a title and a body"):
        evaluate(str(empty))


def test_evaluate_reports_the_tiny_models_invented_identifiers(tiny_run: TinyRun, tiny_dataset: Path,
                                                               tmp_path: Path) -> None:
    assert cli(["evaluate", str(tiny_dataset), "--split", "dev", "--model", str(tiny_run.folder),
                "--max-length", "6", "-o", str(tmp_path / "r"), "-q"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    name = tiny_run.folder.name
    everything = [*report["scores"].values(), report["references"],
                  *(stats for per in report["by_source"].values() for stats in per.values())]
    assert name in report["scores"] and name in report["by_source"]
    for stats in everything:
        assert 0 <= stats["invented_token_share"] <= 1 and 0 <= stats["inventing_title_share"] <= 1
    # Every dev issue is an example here: the model's shares are its titles' against those bodies.
    with gzip.open(tiny_dataset / "dev.jsonl.gz", "rt", encoding="utf-8") as handle:
        bodies = [json.loads(line)["body"] for line in handle]
    titles = [example[name] for example in report["examples"]]
    assert len(titles) == len(bodies) == report["issues"]
    assert invention_stats(titles, bodies).items() <= report["scores"][name].items()
    assert f" | {round(100 * report['scores'][name]['invented_token_share'], 2)} / " in (
        tmp_path / "r.md").read_text()
