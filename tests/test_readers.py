"""Readers: every source layout becomes issue records; every bad input is counted, not fatal.

Fixtures under tests/fixtures/readers/ and the issues under examples/ are invented for the
project. Real GitHub objects are read from ../shared/data when it is there (never copied into
the repository): their expected values are taken from the raw files themselves.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import re
from dataclasses import asdict
from pathlib import Path

import pytest

from summarizer.errors import UserError
from summarizer.ingest import ingest
from summarizer.readers import file_format, read_file
from summarizer.records import Issue
from summarizer.skips import SkipCounter

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "readers"
EXAMPLES = REPO_ROOT / "examples" / "issues"
SQL = REPO_ROOT / "summarizer" / "sql" / "gharchive_opened_issues.sql"
SKIP_LOGGER = "summarizer.skips"


def read(path: Path | str, shown: int = 5) -> tuple[list[Issue], SkipCounter]:
    skips = SkipCounter(shown=shown)
    return list(read_file(str(path), skips)), skips


def by_url(issues: list[Issue]) -> dict[str, Issue]:
    return {issue.url: issue for issue in issues}


def skip_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == SKIP_LOGGER]


# ------------------------------------------------------------------ JSON layouts


def test_single_pretty_printed_rest_object() -> None:
    issues, skips = read(FIXTURES / "rest_single.json")
    assert skips.total() == 0
    assert [asdict(i) for i in issues] == [{
        "url": "https://github.com/acme/widgets/issues/17",
        "repo": "acme/widgets",
        "title": "Spinner keeps turning after the request fails",
        "body": "When the save request returns a 500, the spinner on the Save button never "
                "stops.\r\n\r\n```js\r\nawait save(form); // rejects, spinner stays\r\n```",
        "labels": ["bug", "ui"],
        "created_at": "2024-05-02T08:15:00Z",
        "id": 2001000017,
        "author": "rosa-alvarez",
    }]


def test_json_array_with_api_url_only_and_null_body() -> None:
    issues, skips = read(FIXTURES / "rest_array.json")
    assert skips.total() == 0
    assert [i.title for i in issues] == [
        "Add a dark theme", "Slider value jumps to 0 on touch devices",
        "Publish the changelog for 1.4",
    ]
    dark, slider, changelog = issues
    assert dark.labels == ["enhancement"] and dark.author == "li-wei"
    # No html_url: the API url becomes the canonical html url.
    assert slider.url == "https://github.com/acme/widgets/issues/22"
    assert slider.repo == "acme/widgets" and slider.labels == [] and slider.id == 2001000022
    assert changelog.body == "" and changelog.labels == ["documentation"]


def test_json_lines_with_a_blank_line() -> None:
    issues, skips = read(FIXTURES / "issues.jsonl")
    assert skips.total() == 0
    assert [(i.url, i.title, i.labels) for i in issues] == [
        ("https://github.com/acme/gears/issues/1", "Crash when the config file is empty", ["bug"]),
        ("https://github.com/acme/gears/issues/2", "Support YAML config files", []),
        ("https://github.com/acme/gears/issues/3", "Typo in the quick start", ["documentation"]),
    ]
    assert issues[2].body == '"recieve" should be "receive" in step 3.'
    assert {i.author for i in issues} == {"nina-petrova", "tariq-hassan"}


def test_arrays_written_back_to_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=SKIP_LOGGER)
    issues, skips = read(FIXTURES / "concatenated_pages.json")
    assert [i.title for i in issues] == [
        "Page 1, first issue", "Page 2, only issue", "Page 3, first issue", "Page 3, second issue",
    ]
    assert [i.url for i in issues] == [
        f"https://github.com/acme/pages/issues/{n}" for n in (9, 7, 6, 5)
    ]
    assert all(i.repo == "acme/pages" for i in issues)
    assert skips.as_dict() == {"pull_request": 1}
    assert any("concatenated_pages.json:1: pull_request" in m for m in skip_messages(caplog))


def test_backup_wrappers() -> None:
    issues, skips = read(FIXTURES / "backup_issue.json")
    assert skips.as_dict() == {"pull_request": 1}
    assert [asdict(i) for i in issues] == [
        {
            "url": "https://github.com/acme/vault/issues/3",
            "repo": "acme/vault",
            "title": "Restore fails for archives larger than 4 GB",
            "body": "`vault restore big.tar` stops with "
                    "`struct.error: 'I' format requires 0 <= number <= 4294967295`.",
            "labels": ["bug"],
            "created_at": "2023-11-20T16:40:00Z",
            "id": 5001000003,
            "author": "jonas-berg",
        },
        {
            "url": "https://github.com/acme/vault/issues/4",
            "repo": "acme/vault",
            "title": "Encrypt backups with age",
            "body": "Please support `age` recipients as an alternative to GPG.",
            "labels": [],
            "created_at": "2023-12-01T08:00:00Z",
            "id": 5001000004,
            "author": "mei-tanaka",
        },
    ]


def test_old_api_objects_keep_plain_issues_and_drop_pull_requests() -> None:
    issues, skips = read(FIXTURES / "old_api_2012.json")
    assert skips.as_dict() == {"pull_request": 1}
    assert [asdict(i) for i in issues] == [{
        "url": "https://github.com/acme/legacy/issues/41",
        "repo": "acme/legacy",
        "title": "Installer fails on Windows XP",
        "body": 'The installer stops with "This program cannot be run in DOS mode" on XP SP3.',
        "labels": ["windows"],
        "created_at": "2012-03-14T09:26:53Z",
        "id": 3641041,
        "author": "pieter-devries",
    }]


def test_project_records() -> None:
    issues, skips = read(FIXTURES / "records.jsonl")
    assert skips.total() == 0
    first, second, third = issues
    assert asdict(first) == {
        "url": "https://github.com/acme/records/issues/1",
        "repo": "acme/records",
        "title": "Export drops the last row",
        "body": "The CSV export is missing the final row when the table has exactly 1000 rows.",
        "labels": ["bug", "export"],
        "created_at": "2024-09-01T10:00:00Z",
        "id": 7001000001,
        "author": "sven-larsen",
    }
    # An API url is made canonical and gives the repo when the record has none.
    assert second.url == "https://github.com/acme/records/issues/2"
    assert second.repo == "acme/records" and second.id is None and second.author is None
    # Rows without url or repo (e.g. from a classification benchmark) are still issues.
    assert (third.url, third.repo, third.created_at) == (None, None, None)
    assert third.title == "app freezes when i paste a long text"


def test_bad_json_lines_are_counted_and_the_run_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=SKIP_LOGGER)
    issues, skips = read(FIXTURES / "bad_lines.jsonl")
    assert [i.title for i in issues] == [
        "Good issue before the bad lines", "Good issue after the bad lines",
    ]
    assert issues[1].labels == ["bug"] and issues[1].author == "amy-ng"
    assert issues[1].id == 6001000005
    assert skips.as_dict() == {"invalid_json": 1, "missing_field": 1, "wrong_type": 1}
    messages = skip_messages(caplog)
    for where in ("bad_lines.jsonl:2: invalid_json", "bad_lines.jsonl:3: wrong_type",
                  "bad_lines.jsonl:4: missing_field"):
        assert any(where in m for m in messages), (where, messages)


def test_only_the_first_skips_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=SKIP_LOGGER)
    good = json.dumps({"title": "kept", "body": "b"})
    path = tmp_path / "noisy.jsonl"
    path.write_text("\n".join([good] + ["{not json"] * 8 + [good]) + "\n")
    issues, skips = read(path, shown=3)
    assert len(issues) == 2
    assert skips.as_dict() == {"invalid_json": 8}
    messages = skip_messages(caplog)
    assert [m.split(": ")[0] for m in messages[:3]] == [
        f"skipped {path}:{n}" for n in (2, 3, 4)
    ]
    assert messages[3] == "(further skipped records are only counted)"
    assert len(messages) == 4


def test_line_numbers_of_later_documents(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=SKIP_LOGGER)
    pretty = json.dumps({"html_url": "https://github.com/o/r/issues/1", "title": "t", "body": "b"},
                        indent=2)  # 5 lines
    bad = json.dumps({"html_url": "https://github.com/o/r/issues/2", "title": 7}, indent=2)
    path = tmp_path / "objects.json"
    path.write_text(pretty + "\n" + pretty + "\n" + bad + "\n" + pretty + "\n")
    issues, skips = read(path)
    assert len(issues) == 3
    assert skips.as_dict() == {"wrong_type": 1}
    assert any(f"{path}:11: wrong_type" in m for m in skip_messages(caplog))


def test_json_with_a_byte_order_mark(tmp_path: Path) -> None:
    obj = {"html_url": "https://github.com/o/r/issues/1", "title": "BOM first", "body": "b"}
    pretty, lines = tmp_path / "bom.json", tmp_path / "bom.jsonl"
    pretty.write_bytes(b"\xef\xbb\xbf" + json.dumps(obj, indent=2).encode())
    lines.write_bytes(b"\xef\xbb\xbf" + (json.dumps(obj) + "\n").encode() * 2)
    for path, count in ((pretty, 1), (lines, 2)):
        issues, skips = read(path)
        assert [i.title for i in issues] == ["BOM first"] * count
        assert skips.total() == 0


def test_non_utf8_bytes_in_json_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        b'{"title": "Fran\xe7oise", "body": "latin-1 title"}\n'
        b'{"title": "ok", "body": "latin-1 label", "labels": ["caf\xe9"]}\n'
        b'{"title": "ok", "body": "clean", "labels": ["caf\xc3\xa9"]}\n'
    )
    issues, skips = read(path)
    assert [(i.body, i.labels) for i in issues] == [("clean", ["caf\u00e9"])]
    assert skips.as_dict() == {"non_utf8": 2}
    assert issues[0].to_json().encode("utf-8")  # every kept record can be written


# ------------------------------------------------------------------ GH Archive


def _gzip(src: Path, dest: Path) -> Path:
    dest.write_bytes(gzip.compress(src.read_bytes(), mtime=0))
    return dest


@pytest.mark.parametrize("gzipped", [False, True], ids=["jsonl", "json.gz"])
def test_gharchive_events(tmp_path: Path, gzipped: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=SKIP_LOGGER)
    path = FIXTURES / "gharchive_events.jsonl"
    if gzipped:
        path = _gzip(path, tmp_path / "2024-03-01-15.json.gz")
    issues, skips = read(path)
    assert [asdict(i) for i in issues] == [
        {
            "url": "https://github.com/acme/orbit/issues/11",
            "repo": "acme/orbit",
            "title": "Telemetry upload retries forever without backoff",
            "body": "When the server is down the client retries every 10 ms and fills the log.",
            "labels": ["bug"],
            "created_at": "2024-03-01T15:01:02Z",
            "id": 8001000011,
            "author": "ivo-marek",
        },
        {
            "url": "https://github.com/acme/Launchpad/issues/3",
            "repo": "acme/Launchpad",  # the event's repo name, casing kept
            "title": "Allow scheduling a launch in a different time zone",
            "body": "Our team is spread over three time zones; the launch form only uses the "
                    "browser's zone.",
            "labels": [],
            "created_at": "2024-03-01T15:06:30Z",
            "id": 8002000003,
            "author": "sara-lopez",
        },
    ]
    # closed and labeled IssuesEvents; PushEvent, WatchEvent and IssueCommentEvent
    assert skips.as_dict() == {"not_opened_event": 2, "other_event": 3}
    messages = skip_messages(caplog)
    assert any(f"{path}:2: other_event" in m for m in messages)
    assert any(f"{path}:3: not_opened_event" in m for m in messages)


def test_truncated_gzip_keeps_what_was_read(tmp_path: Path) -> None:
    template = json.loads((FIXTURES / "gharchive_events.jsonl").read_text().splitlines()[0])
    lines = []
    for n in range(1, 401):
        event = json.loads(json.dumps(template))
        issue = event["payload"]["issue"]
        issue["html_url"] = f"https://github.com/acme/orbit/issues/{n}"
        issue["title"] = f"Issue number {n}"
        issue["body"] = f"Body {n}: " + " ".join(f"w{n * k % 997}" for k in range(60))
        lines.append(json.dumps(event))
    data = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
    path = tmp_path / "cut.json.gz"
    path.write_bytes(data[: len(data) // 2])
    issues, skips = read(path)
    assert 0 < len(issues) < 400
    assert [i.title for i in issues] == [f"Issue number {n}" for n in range(1, len(issues) + 1)]
    assert skips.counts["unreadable_rest_of_file"] == 1
    # the last, partly decompressed line may also be counted as invalid JSON
    assert set(skips.counts) <= {"unreadable_rest_of_file", "invalid_json"}


# ------------------------------------------------------------------ CSV


def test_csv_with_a_malformed_row(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=SKIP_LOGGER)
    issues, skips = read(FIXTURES / "malformed.csv")
    assert skips.as_dict() == {"malformed_csv_row": 1}
    assert any("malformed.csv:3: malformed_csv_row" in m for m in skip_messages(caplog))
    assert [asdict(i) for i in issues] == [
        {
            "url": "https://github.com/acme/tables/issues/1",
            "repo": "acme/tables",
            "title": "Header row scrolls away",
            "body": "The sticky header stops sticking once the table is inside a scrolling "
                    "panel, see the demo page.",
            "labels": [], "created_at": None, "id": None, "author": None,
        },
        {
            "url": "https://github.com/acme/tables/issues/3",
            "repo": "acme/tables",
            "title": "Sorting, filtering and paging reset each other",
            "body": 'Steps:\n1. sort by name\n2. filter by "open"\n3. the sort is gone',
            "labels": [], "created_at": None, "id": None, "author": None,
        },
    ]


def test_csv_with_non_utf8_bytes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=SKIP_LOGGER)
    issues, skips = read(FIXTURES / "non_utf8.csv")
    assert skips.as_dict() == {"non_utf8": 1}
    assert any("non_utf8.csv:3: non_utf8" in m for m in skip_messages(caplog))
    assert [i.title for i in issues] == [
        "Import of UTF-8 names works", "Add an encoding option to the importer",
    ]
    assert issues[0].body == "Names like J\u00fcrgen and Fran\u00e7oise import correctly."


def test_csv_without_title_or_body_column_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no title or body column"):
        read(FIXTURES / "no_title_header.csv")


def test_format_comes_from_the_name() -> None:
    assert file_format("gs://b/export-000.csv") == "csv"
    assert file_format("x/2024-03-01-15.json.gz") == "json"
    assert file_format("records.JSONL") == "json"
    assert file_format("dump.txt", "csv") == "csv"
    with pytest.raises(UserError, match="cannot tell the format"):
        file_format("dump.txt")


# ------------------------------------------------------------------ BigQuery SQL


def _final_select_aliases(sql: str) -> list[str]:
    """Output column names of the last top-level SELECT (comments and strings ignored)."""
    sql = re.sub(r"--[^\n]*", " ", sql)
    sql = re.sub(r"'(?:[^'\\]|\\.)*'|`[^`]*`", "''", sql)
    tokens = re.findall(r"\w+|[(),]", sql)
    depth, selects = 0, []
    for index, token in enumerate(tokens):
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0 and token.upper() == "SELECT":
            selects.append(index)
    assert selects, "no top-level SELECT"
    items, current, depth = [], [], 0
    for token in tokens[selects[-1] + 1:]:
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        if depth == 0 and token.upper() == "FROM":
            break
        if depth == 0 and token == ",":
            items.append(current)
            current = []
        else:
            current.append(token)
    items.append(current)
    aliases = []
    for item in items:
        assert len(item) >= 2 and item[-2].upper() == "AS", f"column without an alias: {item}"
        aliases.append(item[-1])
    return aliases


def test_sql_outputs_the_columns_ingest_reads() -> None:
    sql = SQL.read_text()
    assert _final_select_aliases(sql) == [
        "issue_url", "issue_title", "body", "repo", "labels", "created_at", "id", "author",
    ]
    assert "githubarchive." in sql and "_TABLE_SUFFIX" in sql
    assert "'IssuesEvent'" in sql and "'opened'" in sql
    assert "LOWER(" not in sql.upper()
    assert "bq query --use_legacy_sql=false" in sql
    assert "issue-summarizer ingest gs://" in sql


def test_bigquery_export_csv_is_read(caplog: pytest.LogCaptureFixture) -> None:
    path = FIXTURES / "bigquery_export.csv"
    with path.open(newline="") as handle:
        header = next(csv.reader(handle))
    assert header == _final_select_aliases(SQL.read_text())
    issues, skips = read(path)
    assert skips.total() == 0
    assert [asdict(i) for i in issues] == [
        {
            "url": "https://github.com/acme/Compiler/issues/301",
            "repo": "acme/Compiler",
            "title": "Parser hangs on deeply nested generics",
            "body": "Compiling `Vec<Vec<Vec<...>>>` nested 40 levels deep never finishes.\n"
                    "The same file compiles in 0.3s with version 1.8.",
            # a JSON array string: names with ',' or ':' stay whole
            "labels": ["bug", "area: parser, lexer", "P1"],
            "created_at": "2024-03-01T15:10:00Z",
            "id": 8100000301,
            "author": "hana-sato",
        },
        {
            "url": "https://github.com/acme/Compiler/issues/302",
            "repo": "acme/Compiler",
            "title": "Document the --emit flag",
            "body": "",
            "labels": [],
            "created_at": "2024-03-01T15:20:00Z",
            "id": 8100000302,
            "author": "luis-moreno",
        },
        {
            "url": "https://github.com/acme/Compiler/issues/303",
            "repo": "acme/Compiler",
            "title": "Ship an LSP server",
            "body": "Editors would get diagnostics as you type, instead of after a build.",
            "labels": ["enhancement"],
            "created_at": "2024-03-01T15:30:00Z",
            "id": 8100000303,
            "author": "hana-sato",
        },
    ]


# ------------------------------------------------------------------ examples/


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w]+", " ", text.lower()).split()


def test_examples_read_cleanly() -> None:
    expected = {
        "kaggle-dump.csv": (13, {}),
        "rest-api-page.json": (11, {"pull_request": 1}),
        "gharchive-2024-03-01-15.json.gz": (10, {"not_opened_event": 2, "other_event": 2}),
    }
    expected.update({
        f"backup/{p.name}": (1, {}) for p in sorted((EXAMPLES / "backup").glob("*.json"))
    })
    assert len(expected) == 7
    found = sorted(str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*") if p.is_file())
    assert found == sorted(expected)
    everything: list[Issue] = []
    for name, (count, skipped) in expected.items():
        issues, skips = read(EXAMPLES / name)
        assert (len(issues), skips.as_dict()) == (count, skipped), name
        everything += issues
    assert len(everything) == 38
    for issue in everything:
        assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+/issues/\d+", issue.url)
        assert issue.url.startswith(f"https://github.com/{issue.repo}/issues/")
        assert issue.title.strip()
    assert len({i.url for i in everything}) == 38

    issues = by_url(everything)
    bot = issues["https://github.com/sundial-js/sundial/issues/341"]
    assert (bot.author, bot.title) == ("dependabot[bot]", "Bump lodash from 4.17.20 to 4.17.21")
    assert bot.labels == ["dependencies", "javascript"]
    assert issues["https://github.com/sundial-js/sundial/issues/339"].body == ""
    assert issues["https://github.com/pyrite-dev/pyrite-cli/issues/23"].body == "help"
    template = issues["https://github.com/sundial-js/sundial/issues/342"]
    assert template.body.startswith("<!--\r\n") and "- [x] I have searched" in template.body
    assert template.created_at == "2024-02-27T09:14:52Z"
    long_log = issues["https://github.com/oakridge-io/ledgerline/issues/73"]
    assert long_log.body.count("\n") > 150 and long_log.repo == "oakridge-io/ledgerline"
    assert "https://github.com/sundial-js/sundial/issues/340" not in issues  # the pull request
    backup = issues["https://github.com/quillstack/quill/issues/7"]
    assert backup.labels == ["bug"] and backup.author == "oskar-lind"
    for a, b in (("pyrite-dev/pyrite-cli/issues/30", "pyrite-dev/pyrite-cli/issues/31"),
                 ("sundial-js/sundial/issues/333", "sundial-js/sundial/issues/334")):
        first, second = (issues[f"https://github.com/{x}"] for x in (a, b))
        assert first.body != second.body and _words(first.body) == _words(second.body)


# ------------------------------------------------------------------ real data (../shared/data)


def _is_real_pull_request(raw: dict) -> bool:
    pr = raw.get("pull_request")
    return isinstance(pr, dict) and bool(pr.get("url"))


def test_real_rest_objects(shared_data: Path, tmp_path: Path) -> None:
    paths = sorted((shared_data / "formats").glob("*.json"))
    if not paths:
        pytest.skip(f"no REST samples in {shared_data / 'formats'}")
    raws = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    expected = [
        {
            "url": f"https://github.com/{raw['repository_url'].split('/repos/')[1]}/issues/"
                   f"{raw['number']}",
            "repo": raw["repository_url"].split("/repos/")[1],
            "title": raw["title"],
            "body": raw["body"] or "",
            "labels": [label["name"] for label in raw["labels"]],
            "created_at": raw["created_at"],
            "id": raw["id"],
            "author": raw["user"]["login"],
        }
        for raw in raws if not _is_real_pull_request(raw)
    ]
    pulls = sum(map(_is_real_pull_request, raws))
    assert expected and pulls  # the samples hold plain issues and a pull request

    got = []
    for path, raw in zip(paths, raws, strict=True):  # one pretty-printed object per file
        issues, skips = read(path)
        got += [asdict(i) for i in issues]
        if _is_real_pull_request(raw):
            assert (issues, skips.as_dict()) == ([], {"pull_request": 1}), path.name
        else:
            assert (len(issues), skips.total()) == (1, 0), path.name
    assert got == expected

    # The same objects in the other layouts: an array, JSON lines, pages back to back.
    layouts = {
        "array.json": json.dumps(raws, indent=2),
        "lines.jsonl": "".join(json.dumps(raw) + "\n" for raw in raws),
        "pages.json": "".join(json.dumps([raw]) for raw in raws),
    }
    for name, text in layouts.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        issues, skips = read(path)
        assert [asdict(i) for i in issues] == expected, name
        assert skips.as_dict() == {"pull_request": pulls}, name


def test_real_kaggle_rows(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "kaggle-format-sample.csv"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    with source.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows)
        head = [row for _, row in zip(range(300), rows, strict=False)]
    assert header == ["issue_url", "issue_title", "body"]
    path = tmp_path / "head.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *head])
    issues, skips = read(path)
    assert skips.total() == 0
    assert [(i.title, i.body) for i in issues] == [(row[1], row[2]) for row in head]
    for issue, (url, _, _) in zip(issues, head, strict=True):
        owner, name, number = re.match(
            r"https://github\.com/([^/]+)/([^/]+)/issues/(\d+)", url).groups()
        assert issue.url == f"https://github.com/{owner}/{name}/issues/{number}"
        assert issue.repo == f"{owner}/{name}"


# ------------------------------------------------------------------ broken CSV quoting

URL_TOKEN = re.compile(r"https?://\S+")
KAGGLE_HEADER = "issue_url,issue_title,body"


def _row(n: int, body: str | None = None) -> str:
    """One issue as csv.writer writes it (the body quoted when it needs to be)."""
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(
        [f"https://github.com/acme/quotes/issues/{n}", f"Issue {n}",
         body if body is not None else f'Body of {n}, with a comma and "quotes".'])
    return line.getvalue()


def _write(tmp_path: Path, *lines: str, header: str = KAGGLE_HEADER) -> Path:
    path = tmp_path / "dump.csv"
    path.write_text(header + "\n" + "".join(lines), encoding="utf-8")
    return path


def _numbers(issues: list[Issue]) -> list[int]:
    for issue in issues:
        assert URL_TOKEN.fullmatch(issue.url), issue.url  # never a sentence from a body
    return [int(issue.url.rsplit("/", 1)[1]) for issue in issues]


def test_csv_quote_that_never_closes_costs_one_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=SKIP_LOGGER)
    broken = 'https://github.com/acme/quotes/issues/3,Issue 3,"He said ""hi\nand went on\n'
    path = _write(tmp_path, _row(1), _row(2), broken, _row(4), _row(5, "two\nlines"), _row(6))
    issues, skips = read(path)
    assert _numbers(issues) == [1, 2, 4, 5, 6]
    assert [i.title for i in issues] == ["Issue 1", "Issue 2", "Issue 4", "Issue 5", "Issue 6"]
    assert issues[2].body == 'Body of 4, with a comma and "quotes".'
    assert issues[3].body == "two\nlines"
    assert skips.as_dict() == {"malformed_csv_row": 1}
    # lines: header 1, issues 2 and 3, the broken issue 4 and its body's second line 5
    assert [m for m in skip_messages(caplog) if "malformed_csv_row" in m] == [
        f"skipped {path}:4: malformed_csv_row "
        "(not valid CSV: ',' expected after '\"'; lines 4-5 skipped)"]


def test_csv_row_swallowing_the_rest_unquoted(tmp_path: Path) -> None:
    """No later quote ends the open one: the reader reaches the end of the file in it."""
    plain = [f"https://github.com/acme/quotes/issues/{n},Issue {n},plain body {n}\n"
             for n in (3, 4, 5)]
    path = _write(tmp_path, _row(1), 'https://github.com/acme/quotes/issues/2,Issue 2,"open\n',
                  *plain)
    issues, skips = read(path)
    assert _numbers(issues) == [1, 3, 4, 5]
    assert issues[-1].body == "plain body 5"
    assert skips.as_dict() == {"malformed_csv_row": 1}


def test_csv_broken_row_at_the_end(tmp_path: Path) -> None:
    path = _write(tmp_path, _row(1), _row(2),
                  'https://github.com/acme/quotes/issues/3,Issue 3,"never closed\nat all\n')
    issues, skips = read(path)
    assert _numbers(issues) == [1, 2]
    assert skips.as_dict() == {"malformed_csv_row": 1}


def test_csv_two_broken_rows_in_a_row(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=SKIP_LOGGER)
    path = _write(tmp_path, _row(1),
                  'https://github.com/acme/quotes/issues/2,Issue 2,"open\ncontinued\n',
                  'https://github.com/acme/quotes/issues/3,"Issue "3",body\n',
                  _row(4), _row(5))
    issues, skips = read(path)
    assert _numbers(issues) == [1, 4, 5]
    assert skips.as_dict() == {"malformed_csv_row": 2}
    wheres = [m.split(": ")[0] for m in skip_messages(caplog)]
    assert wheres == [f"skipped {path}:3", f"skipped {path}:5"]


def test_csv_url_at_a_line_start_inside_a_quoted_body_stays_in_the_body(tmp_path: Path) -> None:
    body = ("See the earlier report:\nhttps://github.com/acme/quotes/issues/9\n"
            "https://github.com/acme/quotes/issues/9,Looks like a row,but is body text")
    path = _write(tmp_path, _row(1), _row(2, body), _row(3))
    issues, skips = read(path)
    assert skips.total() == 0
    assert _numbers(issues) == [1, 2, 3]
    assert issues[1].body == body


def test_csv_row_whose_url_field_is_not_a_url(tmp_path: Path) -> None:
    path = _write(tmp_path, _row(1), "see the log below,Issue 2,body\n", _row(3),
                  "https://github.com/acme/quotes/issues/4 again,Issue 4,body\n", _row(5))
    issues, skips = read(path)
    assert _numbers(issues) == [1, 3, 5]
    assert skips.as_dict() == {"malformed_csv_row": 2}


def test_bigquery_export_with_a_broken_row(tmp_path: Path) -> None:
    header = "issue_url,issue_title,body,repo,labels,created_at,id,author"

    def row(n: int, body: str) -> str:
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow(
            [f"https://github.com/acme/big/issues/{n}", f"Issue {n}", body, "acme/big",
             '["bug", "area: x, y"]', "2024-03-01T15:10:00Z", str(9000 + n), "ana"])
        return line.getvalue()

    broken = ('https://github.com/acme/big/issues/2,Issue 2,"a quote left open ""here\n'
              'second line,acme/big,[],2024-03-01T15:10:00Z,9002,ana\n')
    path = _write(tmp_path, row(1, "one\ntwo"), broken, row(3, "three\nfour"), header=header)
    issues, skips = read(path)
    assert _numbers(issues) == [1, 3]
    assert skips.as_dict() == {"malformed_csv_row": 1}
    assert issues[1].body == "three\nfour" and issues[1].id == 9003
    assert issues[1].labels == ["bug", "area: x, y"]


def test_csv_without_a_url_column_counts_rows_as_before(tmp_path: Path) -> None:
    """No URL tells a row's start there: a bad row is counted and the next line read on."""
    path = _write(tmp_path, "First,body one\n", "Second,body,extra\n", 'Third,"a ""b"" c"\n',
                  header="issue_title,body")
    issues, skips = read(path)
    assert [(i.url, i.title, i.body) for i in issues] == [
        (None, "First", "body one"), (None, "Third", 'a "b" c')]
    assert skips.as_dict() == {"malformed_csv_row": 1}


def test_csv_hostile_labels_and_ids(tmp_path: Path) -> None:
    """Labels are parsed as JSON and ids as integers: neither may abort the file."""
    header = "issue_url,issue_title,body,labels,id"
    rows = [
        "https://github.com/acme/ids/issues/1,Deep labels,b," + "[" * 5000 + ",7\n",
        "https://github.com/acme/ids/issues/2,Huge label number,b,[1" + "0" * 5000 + "],8\n",
        "https://github.com/acme/ids/issues/3,Superscript id,b,,\u00b2\n",
        "https://github.com/acme/ids/issues/4,Huge id,b,," + "9" * 5000 + "\n",
        "https://github.com/acme/ids/issues/5,Fine,b,\"[\"\"bug\"\"]\",42\n",
    ]
    issues, skips = read(_write(tmp_path, *rows, header=header))
    assert skips.total() == 0
    assert [(i.title, i.id) for i in issues] == [
        ("Deep labels", 7), ("Huge label number", 8), ("Superscript id", None),
        ("Huge id", None), ("Fine", 42)]
    assert issues[0].labels == ["[" * 5000] and issues[4].labels == ["bug"]


def test_csv_header_that_is_not_csv_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "huge-header.csv"
    path.write_text('"' + "x" * (1 << 24 | 1) + '"\n')  # past csv's field size limit
    with pytest.raises(UserError) as caught:
        read(path)
    message = str(caught.value)
    assert len(message) < 300 and "header row is not valid CSV" in message, message[:300]


def test_ingest_reports_the_broken_csv_row(tmp_path: Path) -> None:
    path = _write(tmp_path, _row(1), 'https://github.com/acme/quotes/issues/2,Issue 2,"open\n',
                  _row(3))
    out = tmp_path / "issues.jsonl"
    report = ingest([str(path)], str(out), state_root=tmp_path / "state")
    assert report["skipped"] == {"malformed_csv_row": 1}
    assert report["written"] == 2
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["url"] for r in written] == [
        f"https://github.com/acme/quotes/issues/{n}" for n in (1, 3)]


# ------------------------------------------------------------------ hostile JSON


def _issue_line(title: str) -> str:
    return json.dumps({"title": title, "body": "b"})


def _deep_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m for m in skip_messages(caplog) if "nested too deeply" in m]


def test_deeply_nested_json_lines_are_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=SKIP_LOGGER)
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join([
        _issue_line("before"), "[" * 5000, '{"a":' * 3000, "[" * 1000 + "]" * 1000,
        _issue_line("after")]) + "\n")
    issues, skips = read(path)
    assert [i.title for i in issues] == ["before", "after"]
    # the closed array is deep enough for the standard parser only: orjson reads it
    assert skips.as_dict() == {"invalid_json": 2, "wrong_type": 1}
    assert [m.split(": ")[0] for m in _deep_messages(caplog)] == [
        f"skipped {path}:{n}" for n in (2, 3)]


def test_deeply_nested_json_document_is_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=SKIP_LOGGER)
    path = tmp_path / "deep.json"
    path.write_text("[" * 5000 + "\n" + json.dumps([{"title": "after", "body": "b"}]) + "\n"
                    + "{" + '"a":{' * 3000 + "\n" + _issue_line("last") + "\n")
    issues, skips = read(path)
    assert [i.title for i in issues] == ["after", "last"]
    assert skips.as_dict() == {"invalid_json": 2}
    assert len(_deep_messages(caplog)) == 2


def test_deeply_nested_first_line_is_counted(tmp_path: Path) -> None:
    """The first line decides between JSON lines and a document: a deep one must not abort."""
    path = tmp_path / "deep-first.jsonl"
    path.write_text("\n".join(['{"a":' * 3000, _issue_line("second"), _issue_line("third")]))
    issues, skips = read(path)
    assert [i.title for i in issues] == ["second", "third"]
    assert skips.as_dict() == {"invalid_json": 1}


def test_json_numbers_too_long_for_an_integer_are_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=SKIP_LOGGER)
    huge = "1" + "0" * 5000
    lines, document = tmp_path / "huge.jsonl", tmp_path / "huge.json"
    lines.write_text("\n".join([
        _issue_line("before"), '{"title": "t", "body": "b", "id": ' + huge + "}",
        _issue_line("after")]) + "\n")
    document.write_text(json.dumps({"title": "before", "body": "b"}, indent=2) + "\n"
                        + "[" + huge + "]\n" + _issue_line("after") + "\n")
    for path in (lines, document):
        issues, skips = read(path)
        assert [i.title for i in issues] == ["before", "after"], path.name
        assert skips.as_dict() == {"invalid_json": 1}, path.name
    assert sum("4300 digits" in m for m in skip_messages(caplog)) == 2


def test_deep_values_inside_an_object_are_counted(tmp_path: Path) -> None:
    """orjson reads values nested up to 1024 deep, deeper than repr() can print them."""
    deep = "[" * 1000 + "]" * 1000
    path = tmp_path / "deep-fields.jsonl"
    path.write_text("\n".join([
        _issue_line("first"),
        '{"html_url": ' + deep + ', "title": "deep url"}',
        '{"type": "IssuesEvent", "payload": {"action": ' + deep + "}}",
        _issue_line("last")]) + "\n")
    issues, skips = read(path)
    assert [i.title for i in issues] == ["first", "last"]
    assert skips.as_dict() == {"wrong_type": 1, "not_opened_event": 1}
