"""Cleaning: each rule of summarizer/cleaning.py's docstring, on invented issue texts.

Real bodies are read from ../shared/data when it is there (never copied into the repository).
"""

from __future__ import annotations

import gzip
import json
import time
from itertools import islice

import pytest

from summarizer.cleaning import clean_body, clean_title

# --- line endings, invisible characters, whitespace --------------------------------------


def test_crlf_and_lone_cr_become_newlines():
    assert clean_body("first line\r\nsecond line\rthird line") == ("first line\nsecond line\nthird line")


def test_invisible_characters_are_removed():
    text = "zero\u200bwidth \ufeffbom nul\x00byte bell\x07 rtl\u200fmark"
    assert clean_body(text) == "zerowidth bom nulbyte bell rtlmark"
    assert clean_title("\ufeffCrash\u200b on start") == "Crash on start"


def test_unicode_is_nfc_normalized():
    assert clean_body("cafe\u0301 crashes") == "caf\u00e9 crashes"


def test_spacing_collapsed_and_at_most_one_blank_line():
    text = "  The   build\t\tfails  \n\n\n\n\nwhen   run twice.  \n \n\t\n  Really."
    assert clean_body(text) == "The build fails\n\nwhen run twice.\n\nReally."


def test_leading_and_trailing_blank_lines_are_dropped():
    assert clean_body("\n\n\n  Crash on start.  \n\n\n") == "Crash on start."


# --- HTML comments ----------------------------------------------------------------------


def test_closed_html_comment_removed_across_lines():
    text = "Before <!-- Please describe\nthe bug here. --> after.\nNext line."
    assert clean_body(text) == "Before after.\nNext line."


def test_several_html_comments_removed_text_between_kept():
    text = "<!-- one -->Keep this<!-- two\n -->\nand this<!---->."
    assert clean_body(text) == "Keep this\nand this."


def test_unclosed_html_comment_runs_to_end():
    text = "The widget flickers.\n<!-- Thanks for filing!\nThe rest of the template\nis hidden"
    assert clean_body(text) == "The widget flickers."


# --- fenced code ------------------------------------------------------------------------


def test_long_fenced_block_keeps_first_two_lines_ellipsis_and_last():
    text = (
        "Running this:\n```bash\n$ make build\ncc -O2 main.c\nline three\nline four\n"
        "error: undefined reference to `frobnicate'\n```\nthen it stops."
    )
    assert clean_body(text) == (
        "Running this:\n$ make build\ncc -O2 main.c\n…\n"
        "error: undefined reference to `frobnicate'\nthen it stops."
    )


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_short_fenced_block_kept_whole(count):
    code = [f"step_{i}()" for i in range(count)]
    text = "Code:\n```python\n" + "\n".join(code) + "\n```\nDone."
    assert clean_body(text) == "\n".join(["Code:", *code, "Done."])


def test_five_line_block_is_the_first_to_be_shortened():
    code = [f"step_{i}()" for i in range(5)]
    text = "```\n" + "\n".join(code) + "\n```"
    assert clean_body(text) == "step_0()\nstep_1()\n…\nstep_4()"


def test_tilde_fence_is_code_too():
    text = "Log:\n~~~\nalpha\nbeta\ngamma\ndelta\nepsilon\n~~~\nEnd of report."
    assert clean_body(text) == "Log:\nalpha\nbeta\n…\nepsilon\nEnd of report."


def test_backticks_do_not_close_a_tilde_fence():
    text = "~~~\nalpha\n```\nbeta\ngamma\ndelta\n~~~\nafter"
    assert clean_body(text) == "alpha\n```\n…\ndelta\nafter"


def test_unclosed_fence_runs_to_the_end_and_is_shortened():
    text = "It fails:\n```\nload()\nparse()\nmiddle one\nmiddle two\nboom: bad header"
    assert clean_body(text) == "It fails:\nload()\nparse()\n…\nboom: bad header"


def test_one_line_triple_backtick_span_is_not_a_fence():
    text = "Install with\n```pip install widgets```\nthen import fails.\nOn 3.12.\nNot 3.11.\nBye."
    assert clean_body(text) == text


def test_code_lines_cut_to_160_chars_and_blank_code_lines_dropped():
    long_line = "x = " + "1 + " * 100
    out = clean_body(f"```\n{long_line}\n\n\nprint(x)\n```")
    first, second = out.split("\n")
    assert first == long_line[:160].rstrip()  # cut, and no space left dangling at the cut
    assert second == "print(x)"


def test_markdown_inside_fenced_code_is_not_treated_as_template():
    text = "```\n### Describe the bug\n- [x] I have searched the issues\n```"
    assert clean_body(text) == "### Describe the bug\n- [x] I have searched the issues"


# --- stack traces -----------------------------------------------------------------------

PYTHON_TRACE = """\
Loading the model fails:
Traceback (most recent call last):
  File "/home/dev/app/main.py", line 12, in <module>
    run(config)
  File "/home/dev/app/runner.py", line 40, in run
    model = load_model(config.path)
  File "/usr/lib/python3.10/site-packages/loader.py", line 7, in load_model
    raise ValueError(f"bad checkpoint {path}")
ValueError: bad checkpoint /tmp/ckpt-3
Any idea?"""


def test_python_traceback_frames_dropped_exception_line_kept():
    assert clean_body(PYTHON_TRACE) == (
        "Loading the model fails:\nValueError: bad checkpoint /tmp/ckpt-3\nAny idea?"
    )


def test_python_traceback_inside_fence_keeps_only_exception_line():
    body = PYTHON_TRACE.split("\n")
    text = "\n".join([body[0], "```", *body[1:-1], "```", body[-1]])
    assert clean_body(text) == ("Loading the model fails:\nValueError: bad checkpoint /tmp/ckpt-3\nAny idea?")


def test_chained_python_exceptions_keep_both_exception_lines():
    text = (
        "Traceback (most recent call last):\n"
        '  File "a.py", line 3, in f\n'
        "    return table[key]\n"
        "KeyError: 'width'\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "a.py", line 9, in <module>\n'
        "    f()\n"
        "RuntimeError: layout failed"
    )
    out = clean_body(text)
    assert "KeyError: 'width'" in out
    assert "RuntimeError: layout failed" in out
    assert "During handling of the above exception" in out
    assert "File" not in out and "return table" not in out and "Traceback" not in out


def test_python311_tilde_markers_do_not_open_a_fence():
    text = (
        "Traceback (most recent call last):\n"
        '  File "calc.py", line 5, in ratio\n'
        "    return totals[key] / count\n"
        "           ~~~~~~~~~~~^~~~~~~\n"
        "ZeroDivisionError: division by zero\n"
        "\n"
        "This happens when the input file is empty.\n"
        "It worked in version 1.2.\n"
        "It broke in version 1.3.\n"
        "Thanks."
    )
    assert clean_body(text) == (
        "ZeroDivisionError: division by zero\n\n"
        "This happens when the input file is empty.\n"
        "It worked in version 1.2.\n"
        "It broke in version 1.3.\n"
        "Thanks."
    )


def test_python311_caret_lines_dropped():
    text = (
        "Traceback (most recent call last):\n"
        '  File "app.py", line 3, in <module>\n'
        "    start_server()\n"
        "    ^^^^^^^^^^^^^^\n"
        "NameError: name 'start_server' is not defined"
    )
    assert clean_body(text) == "NameError: name 'start_server' is not defined"


def test_indented_traceback_without_code_line_keeps_exception():
    text = (
        "    Traceback (most recent call last):\n"
        '      File "<stdin>", line 1, in <module>\n'
        "    NameError: name 'widget' is not defined\n"
        "\n"
        "That is all."
    )
    assert clean_body(text) == "NameError: name 'widget' is not defined\n\nThat is all."


def test_java_frames_and_more_dropped_caused_by_kept():
    text = (
        'Exception in thread "main" java.lang.IllegalStateException: queue closed\n'
        "\tat com.example.queue.Worker.poll(Worker.java:88)\n"
        "\tat java.base/java.lang.Thread.run(Thread.java:829)\n"
        "Caused by: java.io.IOException: broken pipe\n"
        "\tat com.example.net.Channel$Writer.flush(Channel.java:12)\n"
        "\t... 12 more\n"
        "Restarting the worker helps."
    )
    assert clean_body(text) == (
        'Exception in thread "main" java.lang.IllegalStateException: queue closed\n'
        "Caused by: java.io.IOException: broken pipe\n"
        "Restarting the worker helps."
    )


def test_javascript_frames_dropped():
    text = (
        "TypeError: Cannot read properties of undefined (reading 'map')\n"
        "    at renderList (webpack:///src/List.js:14:22)\n"
        "    at Object.<anonymous> (/srv/app/index.js:10:5)\n"
        "    at /srv/app/node_modules/lib/util.js:3:4\n"
        "    at Module._compile (node:internal/modules/cjs/loader:1105:14)\n"
        "The list is empty on first load."
    )
    assert clean_body(text) == (
        "TypeError: Cannot read properties of undefined (reading 'map')\nThe list is empty on first load."
    )


def test_javascript_async_and_constructor_frames_dropped():
    text = (
        "Error: connect ECONNREFUSED 127.0.0.1:5432\n"
        "    at async Pool.connect (/srv/app/node_modules/pg/pool.js:45:11)\n"
        "    at new Client (/srv/app/db.js:7:3)\n"
        "The database is up."
    )
    assert clean_body(text) == "Error: connect ECONNREFUSED 127.0.0.1:5432\nThe database is up."


def test_rust_backtrace_frames_with_addresses_dropped():
    text = (
        "thread 'main' panicked at 'index out of bounds', src/grid.rs:41:9\n"
        "stack backtrace:\n"
        "   0:     0x55d4c1b2a3f0 - std::backtrace_rs::backtrace::trace\n"
        "                               at /rustc/1a2b3c/library/std/src/backtrace.rs:66:5\n"
        "   1:     0x55d4c1b2b000 - grid::Grid::cell\n"
        "                               at ./src/grid.rs:41:9\n"
        "Happens with an empty grid."
    )
    assert clean_body(text) == (
        "thread 'main' panicked at 'index out of bounds', src/grid.rs:41:9\n"
        "stack backtrace:\n"
        "Happens with an empty grid."
    )


def test_rust_short_backtrace_frames_dropped():
    text = (
        "thread 'main' panicked at src/grid.rs:41:9:\n"
        "index out of bounds\n"
        "stack backtrace:\n"
        "   0: rust_begin_unwind\n"
        "             at /rustc/1a2b3c/library/std/src/panicking.rs:645:5\n"
        "   1: grid::Grid::cell\n"
        "             at ./src/grid.rs:41:9\n"
        "   2: core::ops::function::FnOnce::call_once\n"
        "             at /rustc/1a2b3c/library/core/src/ops/function.rs:250:5\n"
        "Happens with an empty grid."
    )
    assert clean_body(text) == (
        "thread 'main' panicked at src/grid.rs:41:9:\n"
        "index out of bounds\n"
        "stack backtrace:\n"
        "Happens with an empty grid."
    )


def test_numbered_one_word_lines_outside_a_backtrace_are_kept():
    assert clean_body("Steps:\n1: build\n2: run") == "Steps:\n1: build\n2: run"


def test_gdb_frames_dropped():
    text = (
        "Segfault:\n"
        "#0  0x00007ffff7a5e1a0 in memcpy () from /lib/libc.so.6\n"
        "#1  0x0000555555554abc in copy_rows (n=3) at rows.c:20\n"
        "Only with -O2."
    )
    assert clean_body(text) == "Segfault:\nOnly with -O2."


def test_prose_starting_like_a_frame_is_kept():
    text = "at first it worked\n1: open the settings page\nFile names with spaces fail"
    assert clean_body(text) == text


# --- images, links, URLs ----------------------------------------------------------------


def test_markdown_images_removed():
    text = "The button is cut off ![screenshot](https://user-images.example.com/1/shot.png) here."
    assert clean_body(text) == "The button is cut off here."


def test_links_reduced_to_their_text():
    text = "See [the install guide](https://docs.example.org/install/linux) and [#12](../issues/12)."
    assert clean_body(text) == "See the install guide and #12."


def test_link_with_parentheses_in_target_reduced_to_text():
    text = "As in [the wiki page](https://en.example.org/wiki/Foo_(bar)) says."
    assert clean_body(text) == "As in the wiki page says."


def test_bare_url_shortened_to_host_ellipsis_last_segment():
    text = "Broken since https://github.com/acme/widgets/pull/4521 was merged."
    assert clean_body(text) == "Broken since github.com/…/4521 was merged."


def test_url_with_one_segment_has_no_ellipsis_and_drops_query_and_fragment():
    assert clean_body("Open https://example.com/dashboard?tab=2#top now") == (
        "Open example.com/dashboard now"
    )


def test_url_without_path_shortened_to_host():
    assert clean_body("Try https://example.com/ or http://localhost:8080") == (
        "Try example.com or localhost:8080"
    )


def test_url_www_dropped_and_host_lowercased():
    assert clean_body("at https://WWW.Example.COM/a/b/c.html") == "at example.com/…/c.html"


def test_url_long_last_segment_cut_to_40_chars():
    segment = "a" * 30 + "b" * 30
    out = clean_body(f"see https://example.com/files/{segment} please")
    assert out == f"see example.com/…/{segment[:40]}… please"


# --- HTML tags --------------------------------------------------------------------------


def test_known_html_tags_stripped_generics_kept():
    text = (
        "<details><summary>Full log</summary>\n\nThe <b>parse</b> step returns "
        "Vec<String> and HashMap<K, V>.<br/>\n</details>"
    )
    assert clean_body(text) == "Full log\n\nThe parse step returns Vec<String> and HashMap<K, V>."


def test_html_tag_with_attributes_stripped():
    text = '<img width="300" alt="shot" src="x.png"> <p align="center">Centered text</p>'
    assert clean_body(text) == "Centered text"


def test_stripped_line_break_tags_keep_words_apart():
    out = clean_body("Windows 10<br>Chrome 120<br/>Firefox 121")
    assert "10Chrome" not in out and "120Firefox" not in out
    assert out.split() == ["Windows", "10", "Chrome", "120", "Firefox", "121"]


def test_single_letter_generics_kept():
    text = "fn first<I: Iterator>(it: I) -> Option<A> and Box<P>"
    assert clean_body(text) == text


# --- check boxes, template headings and fields -------------------------------------------


def test_ack_checkboxes_removed_task_checkbox_kept():
    text = (
        "- [x] I have searched the existing issues\n"
        "- [X] I agree to follow this project's Code of Conduct\n"
        "* [ ] I have read the FAQ\n"
        "- [ ] migrate the parser\n"
        "- [x] port the lexer"
    )
    assert clean_body(text) == "- [ ] migrate the parser\n- [x] port the lexer"


def test_template_headings_removed_other_headings_words_kept():
    text = (
        "### Describe the bug\n"
        "The parser crashes.\n"
        "**To Reproduce**\n"
        "Run it on an empty file.\n"
        "## Expected behavior:\n"
        "An empty tree.\n"
        "__Additional context__\n"
        "### Parser crashes on empty input\n"
        "**Workaround**: add a newline."
    )
    out = clean_body(text)
    for gone in ("Describe the bug", "To Reproduce", "Expected behavior", "Additional context"):
        assert gone not in out
    assert "Parser crashes on empty input" in out
    assert "Workaround: add a newline." in out
    assert "The parser crashes." in out and "An empty tree." in out
    assert "**" not in out


def test_empty_template_fields_removed_answered_ones_kept():
    text = "- OS: Ubuntu 22.04\n- CUDA/cuDNN version:\n* GPU model and memory:\n- Python version: 3.11"
    assert clean_body(text) == "- OS: Ubuntu 22.04\n- Python version: 3.11"


def test_example_hints_removed():
    text = (
        "OS Platform and Distribution (e.g., Linux Ubuntu 16.04): Fedora 39\n"
        "Bazel version (if compiling from source): 6.1\n"
        "Model (for example ResNet): mine"
    )
    assert clean_body(text) == ("OS Platform and Distribution: Fedora 39\nBazel version: 6.1\nModel: mine")


def test_parentheses_that_are_not_hints_kept():
    assert clean_body("It hangs (only on macOS) at exit.") == "It hangs (only on macOS) at exit."


def test_placeholder_lines_removed():
    text = (
        "Crash on resize.\n\n### Relevant log output\n\n_No response_\n\n"
        "### Workaround\n\nN/A\n\nNone\n\n> n/a\n\n-\n\nEnd."
    )
    assert clean_body(text) == "Crash on resize.\n\n### Workaround\n\nEnd."


def test_placeholder_words_inside_a_sentence_kept():
    assert clean_body("None of the buttons respond.") == "None of the buttons respond."


# --- titles ------------------------------------------------------------------------------


def test_clean_title_only_normalizes_spacing():
    title = "  **Crash** in  `Vec<String>`\n parser  <b>x</b> [docs](https://x.example/y) (e.g. foo) "
    assert clean_title(title) == (
        "**Crash** in `Vec<String>` parser <b>x</b> [docs](https://x.example/y) (e.g. foo)"
    )


def test_clean_title_keeps_html_comment_and_traceback_text():
    title = '<!-- x --> File "a.py", line 3'
    assert clean_title(title) == title


# --- whole bodies -----------------------------------------------------------------------

REALISTIC_BODY = """\
<!--
Thanks for reporting! Please fill in the template below.
-->

### Describe the bug

Exporting a report as CSV hangs when the date range spans a DST change.
See [the export docs](https://docs.example.org/export/csv) and https://github.com/acme/reports/issues/812.

**To Reproduce**
Steps to reproduce the behavior:
1. Go to *Reports*
2. Pick 2023-03-25 .. 2023-03-27
3. Click **Export**

```python
from reports import export
export.csv(start="2023-03-25", end="2023-03-27")
rows = list(reader)
print(len(rows))
Traceback (most recent call last):
  File "export.py", line 88, in csv
    for day in days(start, end):
RuntimeError: day sequence did not advance
```

![screenshot](https://user-images.example.com/77/shot.png)

### Expected behavior

A CSV with three days.

### Environment
- OS (e.g. Ubuntu 20.04): Debian 12
- Browser:
- Version: 4.2.1

### Additional context

_No response_

- [x] I have searched the existing issues
- [ ] check the timezone handling in <code>days()</code>
"""


def test_realistic_body():
    assert clean_body(REALISTIC_BODY) == (
        "Exporting a report as CSV hangs when the date range spans a DST change.\n"
        "See the export docs and github.com/…/812.\n"
        "\n"
        "Steps to reproduce the behavior:\n"
        "1. Go to *Reports*\n"
        "2. Pick 2023-03-25 .. 2023-03-27\n"
        "3. Click Export\n"
        "\n"
        "from reports import export\n"
        'export.csv(start="2023-03-25", end="2023-03-27")\n'
        "…\n"
        "RuntimeError: day sequence did not advance\n"
        "\n"
        "A CSV with three days.\n"
        "\n"
        "- OS: Debian 12\n"
        "- Version: 4.2.1\n"
        "\n"
        "- [ ] check the timezone handling in days()"
    )


def test_idempotent_on_realistic_body():
    once = clean_body(REALISTIC_BODY)
    assert clean_body(once) == once


@pytest.mark.parametrize(
    "text",
    ["```\n" + "word " * 40 + "\nsecond line\n```", "** Update **\nmore text"],
    ids=["code-cut-at-space", "spaced-bold-line"],
)
def test_no_output_line_has_outer_whitespace(text):
    out = clean_body(text)
    assert all(line == line.strip() for line in out.split("\n"))


def test_empty_and_whitespace_only_bodies():
    assert clean_body("") == ""
    assert clean_body(" \n\t\r\n \u200b ") == ""


def test_megabyte_body_cleaned_quickly():
    block = REALISTIC_BODY + "\n" + "INFO 2024-01-01 worker started, queue=12 " * 30 + "\n"
    text = (block * (1_000_000 // len(block) + 1))[:1_000_000]
    start = time.perf_counter()
    out = clean_body(text)
    assert time.perf_counter() - start < 5.0
    assert 0 < len(out) < len(text)


LIMITED_TEXTS = [
    REALISTIC_BODY,
    "```\n" + "\n".join(f"line {i}" for i in range(30)) + "\n```\nafter the code",  # cut in a fence
    "Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n    x()\n"
    "ValueError: bad\n\n\nmore prose here",
    "short",
    "",
    "word " * 500,
    "a\n\n\nb\n\n\n" * 50,
]


@pytest.mark.parametrize("text", LIMITED_TEXTS, ids=range(len(LIMITED_TEXTS)))
def test_a_limit_gives_the_start_of_the_whole_cleaned_text(text):
    whole = clean_body(text)
    for limit in (0, 1, 2, 5, 17, 40, 64, 100, 333, len(whole) - 1, len(whole), len(whole) + 5):
        if limit >= 0:
            assert clean_body(text, limit) == whole[:limit], limit


def test_shared_data_bodies(shared_data):
    path = shared_data / "github-issues.jsonl.gz"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        bodies = [json.loads(line).get("body") or "" for line in islice(lines, 2000)]
    assert len(bodies) == 2000
    with_comments = 0
    for index, body in enumerate(bodies):
        out = clean_body(body)
        assert clean_body(body, 300) == out[:300], f"row {index}: the limit changed the text"
        with_comments += "<!--" in body
        out_lines = out.count("\n") + 1 if out else 0
        assert out_lines <= len(body.splitlines()), f"row {index} gained lines"
        assert "<!--" not in out, f"row {index} kept an HTML comment"
    assert with_comments > 0  # the check above was exercised
