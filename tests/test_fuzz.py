"""Fuzz tier: properties of cleaning and of the readers on generated and arbitrary input.

Hypothesis generates the inputs; each test's docstring names the property it guards. The
example counts keep the whole file within a minute on two cores.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import BinaryIO

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from summarizer.cleaning import CHARS_PER_TOKEN, clean_body, clean_title, model_text
from summarizer.errors import UserError
from summarizer.readers.csv_dump import read_csv
from summarizer.readers.json_objects import read_json
from summarizer.records import Issue
from summarizer.skips import SkipCounter

Reader = Callable[[BinaryIO, str, SkipCounter], Iterator[Issue]]
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
URL_TOKEN = re.compile(r"https?://\S+")
# What cleaning promises to remove (cleaning._INVISIBLE): C0 controls but the newline, DEL,
# zero-width spaces and joiners, direction marks, line and paragraph separators, BOM.
INVISIBLE = set(map(chr, [*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F,
                          *range(0x200B, 0x2010), 0x2028, 0x2029, 0x2060, 0xFEFF]))

# Pieces of issue markdown that each trigger a cleaning rule, plus characters it removes.
MARKDOWN = [
    "```", "```python", "~~~", "<!--", "-->", "https://github.com/a/b/issues/1",
    "http://x.y/a/b?c#d", "[link](http://x.y/z)", "![img](http://x/y.png)", "<details>", "<br>",
    "Traceback (most recent call last):", '  File "x.py", line 3, in f', "    x = 1", "    ^^^^",
    "## Describe the bug", "**Expected behavior**", "- [x] I have searched", "N/A",
    "at foo.Bar(Baz.java:12)", "stack backtrace:", "   0: main", "#3 0x00ff in f ()",
    "(e.g. foo)", "> quote", "_No response_", "\r\n", "\r", "\t", "\n", "\n\n", " ", "\u200b",
    "\ufeff", "\x00", "\x7f", "é", "e\u0301",
]
markdown = st.lists(st.sampled_from(MARKDOWN) | st.text(max_size=20), max_size=40).map("".join)
# Lone surrogates included: bodies read with "surrogateescape" may hold them.
texts = st.text(st.characters(exclude_categories=())) | markdown


def _invisible(text: str) -> set[str]:
    return set(text) & INVISIBLE


# ------------------------------------------------------------------ cleaning


@FAST
@given(texts, st.none() | st.integers(0, 400))
def test_clean_body_cut_is_the_cut_of_the_clean_text(text: str, limit: int | None) -> None:
    """clean_body(x, limit) equals cleaning all of x and cutting after (its docstring's
    promise, which lets prepare stop early), so it is never longer than `limit`."""
    whole = clean_body(text)
    cut = clean_body(text, limit)
    assert cut == whole[:limit]
    assert limit is None or len(cut) <= limit


@FAST
@given(texts)
def test_clean_body_leaves_no_invisible_characters(text: str) -> None:
    """Cleaned bodies hold no control or zero-width characters, no CR and no tab: lines are
    split on newlines only and spacing is collapsed."""
    cleaned = clean_body(text)
    assert not _invisible(cleaned)
    assert cleaned == cleaned.strip()


@FAST
@given(texts, st.integers(0, 2000), st.integers(0, 80))
def test_model_text_is_a_cut_of_the_cleaned_start(text: str, raw: int, tokens: int) -> None:
    """model_text is the cleaned first `raw` characters cut to what `tokens` tokens need."""
    kept = model_text(text, raw, tokens)
    assert kept == clean_body(text[:raw])[:tokens * CHARS_PER_TOKEN]


@FAST
@given(texts)
def test_clean_title_is_normalized_and_stable(text: str) -> None:
    """A cleaned title has single spaces only, no invisible characters, is NFC, and cleaning
    it again changes nothing."""
    title = clean_title(text)
    assert not _invisible(title)
    assert title == " ".join(title.split())
    assert title == unicodedata.normalize("NFC", title)
    assert clean_title(title) == title


# ------------------------------------------------------------------ readers, any bytes


def _read(reader: Reader, data: bytes) -> tuple[list[Issue], SkipCounter]:
    skips = SkipCounter(shown=0)
    return list(reader(io.BytesIO(data), "fuzz", skips)), skips


def _check_record(issue: Issue) -> None:
    assert isinstance(issue.title, str) and isinstance(issue.body, str)
    assert all(isinstance(label, str) for label in issue.labels)
    issue.to_json().encode("utf-8")  # every kept record can be written as UTF-8


CSV_HEADERS = [b"issue_url,issue_title,body\n", b"title,body\n",
               b"issue_url,issue_title,body,repo,labels,created_at,id,author\n"]


@FAST
@given(st.sampled_from([b"", *CSV_HEADERS]), st.binary(max_size=400))
def test_read_csv_survives_any_bytes(header: bytes, data: bytes) -> None:
    """Any bytes as CSV: at most a UserError about the header, never another exception; a
    record's URL is a single URL token."""
    try:
        issues, _ = _read(read_csv, header + data)
    except UserError as error:
        assert not header and "header" in str(error)
        return
    for issue in issues:
        _check_record(issue)
        assert issue.url is None or URL_TOKEN.fullmatch(issue.url)


json_bytes = st.binary(max_size=400) | st.lists(
    st.sampled_from([b"{", b"}", b"[", b"]", b'"title"', b'"body"', b":", b",", b'"x"', b"1",
                     b"1" + b"0" * 5000, b"[" * 1100, b"\n", b"null", b"\xff", b"\\u", b'"']),
    max_size=60).map(b"".join)


@FAST
@given(json_bytes)
def test_read_json_survives_any_bytes(data: bytes) -> None:
    """Any bytes as JSON, deep nesting and huge numbers included: counted, never raised."""
    issues, _ = _read(read_json, data)
    for issue in issues:
        _check_record(issue)


# ------------------------------------------------------------------ readers, near-valid input

# Field values as a dump has them: quotes, commas, blank lines, and lines that start with an
# issue URL (in a quoted field they are body text, not rows).
URL_LINES = ["https://github.com/o/r/issues/9", "https://github.com/o/r/issues/9,a,b", '"', ","]
field = st.lists(st.sampled_from(URL_LINES) | st.text(max_size=15), max_size=5).map("\n".join)


def _csv_line(values: list[str]) -> str:
    """A row as csv.writer writes it by default: a "\n" terminator would leave a lone "\r"
    in a value unquoted, which every reader takes for a line break."""
    line = io.StringIO()
    csv.writer(line).writerow(values)
    return line.getvalue()


def _url(n: int) -> str:
    return f"https://github.com/acme/fuzz/issues/{n}"


@FAST
@given(st.lists(st.tuples(field, field), max_size=8))
def test_csv_written_by_csv_writer_reads_back(rows: list[tuple[str, str]]) -> None:
    """Valid CSV comes back row for row, whatever the titles and bodies hold."""
    data = "issue_url,issue_title,body\n" + "".join(
        _csv_line([_url(n), title, body]) for n, (title, body) in enumerate(rows))
    issues, skips = _read(read_csv, data.encode("utf-8"))
    assert skips.total() == 0
    assert [(i.url, i.title, i.body) for i in issues] == [
        (_url(n), title, body) for n, (title, body) in enumerate(rows)]


# A field that opens with a delimiter, quote or line break can close a quote left open
# earlier without an error; any other first character makes csv (strict) report it.
safe_field = field.filter(lambda value: value[:1] not in ('"', ",", "\r", "\n"))
no_quote = st.text(st.characters(exclude_categories=["Cs"], exclude_characters='"\r\n'),
                   max_size=30)


@FAST
@given(st.lists(st.tuples(safe_field, safe_field), min_size=1, max_size=8), st.data())
def test_csv_quote_left_open_costs_exactly_its_row(
    rows: list[tuple[str, str]], data: st.DataObject,
) -> None:
    """One row whose body opens a quote that never closes is skipped and counted once; every
    other row survives unchanged, before and after it (the reader re-reads the lines the
    broken row swallowed)."""
    broken = data.draw(st.integers(0, len(rows) - 1))
    broken_title, text = data.draw(no_quote), data.draw(no_quote)
    lines = [_csv_line([_url(n), title, body]) for n, (title, body) in enumerate(rows)]
    # one physical line: a later line of the broken row could itself look like a row's start
    lines[broken] = _csv_line([_url(broken), broken_title]).rstrip("\r\n") + f',"{text}\r\n'
    issues, skips = _read(read_csv, ("issue_url,issue_title,body\n" + "".join(lines)).encode())
    assert skips.as_dict() == {"malformed_csv_row": 1}
    assert [(i.url, i.title, i.body) for i in issues] == [
        (_url(n), title, body) for n, (title, body) in enumerate(rows) if n != broken]


issue_objects = st.fixed_dictionaries({"title": st.text(max_size=20), "body": st.text(max_size=40)})


def _bad_line(kind: str, good: str, size: int) -> str:
    """A line no parser accepts: cut short, nested too deeply, or with a 5,000-digit number."""
    if kind == "cut":
        return good[:max(1, size % len(good))]
    if kind == "deep":
        return "[" * (1025 + size)
    return good[:-1] + ', "id": 1' + "0" * 5000 + "}"


@FAST
@given(st.lists(issue_objects, min_size=1, max_size=8),
       st.lists(st.tuples(st.integers(0, 8), st.sampled_from(["cut", "deep", "huge"]),
                          st.integers(0, 500)), max_size=4),
       st.booleans())
def test_json_lines_bad_lines_cost_only_themselves(
    objects: list[dict], bad: list[tuple[int, str, int]], bad_first: bool,
) -> None:
    """Every line no parser accepts is counted once as invalid_json and every good line is
    kept, whether the file streams as JSON lines (good first line) or is read as a document
    (bad first line)."""
    lines = [json.dumps(obj, ensure_ascii=False) for obj in objects]
    good = lines[0]
    for position, kind, size in sorted(bad, reverse=True):
        lines.insert(min(position, len(lines)), _bad_line(kind, good, size))
    if bad_first:
        lines.insert(0, _bad_line("cut", good, 7))
    issues, skips = _read(read_json, ("\n".join(lines) + "\n").encode("utf-8"))
    assert [(i.title, i.body) for i in issues] == [(o["title"], o["body"]) for o in objects]
    assert skips.counts["invalid_json"] == len(bad) + bad_first
    assert skips.total() == len(bad) + bad_first
