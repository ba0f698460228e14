"""Cleaning issue text down to what a title is made from.

Kept: the prose, headings' words, error messages and exception lines, the first and last
lines of code blocks, link texts. Shortened: code blocks (first two lines and the last one:
the command and the error usually sit there), URLs (to host and last path segment), stack
traces (frames dropped, the exception lines kept). Removed: HTML comments (issue templates
hide their instructions there), template headings and unanswered template fields, "I have
searched the issues" check boxes, images, HTML tags. Titles only get whitespace normalized.
"""

from __future__ import annotations

import re
import unicodedata

CODE_KEEP_HEAD, CODE_KEEP_TAIL, CODE_LINE_CHARS = 2, 1, 160
# Cleaned characters kept per body token: about 3.6 make a token here, so 6 almost always
# fill the body's tokens while sparing the tokenizer the rest.
CHARS_PER_TOKEN = 6

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_FRAME = re.compile(
    r"(?:at (?:async |new )?[\w$.<>\[\]/@-]+ ?\(.*\)"  # Java / JS: at pkg.Class.method(File.java:12)
    r"|at (?:async )?[\w$.<>/@:\\-]+:\d+:\d+\)?"  # JavaScript: at /path/file.js:1:2
    r"|File \".*\", line \d+.*"  # Python frame (its code line follows, indented)
    r"|\d+: +0x[0-9a-f]+.*|at [/\\\w.-]+\.rs:\d+(?::\d+)?"  # Rust backtrace
    r"|\d+: [\w$<>{}]+(?:::[\w$<>{}]+)+"  # Rust short backtrace: 3: core::panicking::panic
    r"|#\d+ +0x[0-9a-f]+ .*"  # gdb / C++ backtrace
    r"|\.\.\. \d+ more"  # Java: ... 12 more
    r"|Traceback \(most recent call last\):)$"
)
_FRAME_STARTS = ("at ", "File ", "#", "... ", "Traceback", *"0123456789")
_FRAME_FIRST = frozenset("aFT#.0123456789")
# First characters of code lines that a rule of _lines looks at: fences, frames, column
# markers, "stack backtrace:". Other code lines are kept as they are.
_CHECKED_IN_CODE = frozenset("`~^s") | _FRAME_FIRST
_RUST_SHORT_FRAME = re.compile(r"\d+: [\w$<>{}:]+")
_IMAGE = re.compile(r"!\[[^\]\n]*\]\([^)\n]*\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\((?:[^()\s]|\([^()\s]*\))+\)")
_URL = re.compile(r"https?://([^\s/<>()\[\]\"'`]+)([^\s<>()\[\]\"'`]*)")
_HTML_TAG = re.compile(  # lowercase only, so generics like Option<A> or <I: Iterator> survive
    r"</?(?:details|summary|br|p|div|img|a|sub|sup|b|i|em|strong|code|pre|kbd|span|table|"
    r"thead|tbody|tr|td|th|ul|ol|li|h[1-6]|hr|blockquote|center|font|picture|source|video)"
    r"\b[^>\n]{0,300}>"
)
_CHECKBOX_ACK = re.compile(
    r"\b(?:searched|read|agree|confirm|checked|code of conduct|latest version|duplicate|"
    r"guidelines|faq|documentation)\b"
)
_HINT = re.compile(
    r" ?\((?:[eE]\.g\.|[iI]\.e\.|[fF]or example|[iI]f |[uU]se command|[aA]s opposed)[^)\n]{0,200}\)")
_HEADING = re.compile(r"#{1,6}\s+(.*?)[\s#]*|\*\*(.+?)\*\*:?|__(.+?)__:?")
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2028\u2029\u2060\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ASCII_CONTROLS = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_PLACEHOLDERS = frozenset({"_no response_", "n/a", "na", "none", "no response", "-", "n/a."})

TEMPLATE_HEADINGS = frozenset(
    """describe the bug|bug description|description|to reproduce|steps to reproduce|
    reproduction steps|steps to reproduce the behavior|expected behavior|expected behaviour|
    expected result|expected results|actual behavior|actual behaviour|actual result|
    actual results|current behavior|current behaviour|screenshots|screenshot|environment|
    system information|system info|additional context|additional information|other info|
    other info logs|context|possible solution|version|versions|os|browser|desktop|smartphone|
    reproduction|minimal reproduction|what happened|what did you expect to happen|
    code of conduct|checklist|prerequisites|summary|problem|motivation|proposal|
    feature request|is your feature request related to a problem please describe|
    describe the solution youd like|describe alternatives youve considered|
    relevant log output|logs|log output|standalone code to reproduce the issue|
    describe the problem|describe the current behavior|describe the expected behavior|
    issue type|source|tensorflow version|custom code|os platform and distribution|
    python version|bazel version|gcc compiler version|cuda cudnn version|gpu model and memory|
    mobile device|current behavior|details|question|your environment|platform|notes|
    affected versions|related issues|meta|steps|example|code|error|error message""".replace(
        "\n", ""
    ).replace("    ", "").split("|")
)


def _has_control(ascii_text: str) -> bool:
    """Control characters in ASCII text, found by bytes.translate (far cheaper than a scan
    with the _INVISIBLE pattern, and most issues have none)."""
    raw = ascii_text.encode("ascii")
    return len(raw.translate(None, _ASCII_CONTROLS)) != len(raw)


def _heading_key(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", text.lower().replace("/", " ")).strip()


def _shorten_code(lines: list[str]) -> list[str]:
    """The kept lines of a code block (none empty), spacing collapsed and cut."""
    if len(lines) > CODE_KEEP_HEAD + CODE_KEEP_TAIL + 1:
        lines = [*lines[:CODE_KEEP_HEAD], "…", *lines[-CODE_KEEP_TAIL:]]
    return [" ".join(line.split())[:CODE_LINE_CHARS].rstrip() for line in lines]


def _shorten_url(match: re.Match[str]) -> str:
    host = match.group(1).lower().removeprefix("www.")
    segments = [s for s in match.group(2).split("?")[0].split("#")[0].split("/") if s]
    if not segments:
        return host
    last = segments[-1]
    if len(last) > 40:
        last = last[:40] + "…"
    return f"{host}/{last}" if len(segments) == 1 else f"{host}/…/{last}"


def _is_boilerplate(line: str) -> bool:
    """Template lines that say nothing about this issue: headings, acks, empty fields."""
    first = line[0]
    if first in "#*_":
        match = _HEADING.fullmatch(line)
        if match:
            text = next(group for group in match.groups() if group is not None)
            return _heading_key(text) in TEMPLATE_HEADINGS
    if first in "-*" and line[1:2] == " ":
        if line[2:4] == "[ " or line[2:5] in ("[x]", "[X]"):
            return bool(_CHECKBOX_ACK.search(line.lower()))
        if line.endswith(":"):
            return True
    return len(line) < 16 and line.lower().strip("> ") in _PLACEHOLDERS


def _opens_fence(raw: str, line: str) -> bool:
    """A CommonMark fence: ``` or ~~~ indented under 4 spaces; a backtick fence's info string
    holds no backtick (```x``` on one line is inline code), a tilde fence's no caret (Python
    3.11 column markers like ~~~~^^~~ are not fences)."""
    if not line.startswith(("```", "~~~")) or len(raw) - len(raw.lstrip()) > 3:
        return False
    rest = line.lstrip(line[0])
    return "`" not in rest if line[0] == "`" else "^" not in rest


def _prose(line: str) -> str:
    """A line outside code: template fields lose their hints, bold markers go."""
    if "(" in line:
        line = _HINT.sub("", line).strip()
        if not line:
            return ""
    if (line[0] in "#*_-" or len(line) < 16) and _is_boilerplate(line):
        return ""
    return line.replace("**", "").strip() if "**" in line else line


def _lines(text: str, limit: int | None) -> list[str]:
    """One pass over the lines: collapse spacing, shorten code and traces, drop boilerplate.

    Most lines are plain prose, so every check looks at the first character before doing
    anything costlier: this loop is the hot path of `prepare`. It stops once the output
    joined by newlines is longer than `limit`: lines are only ever appended, so the rest
    could not change the first `limit` characters (long logs cost nothing past them).
    """
    out: list[str] = []
    size = -1  # length of "\n".join(out)
    code: list[str] = []
    fence: str | None = None
    frame_indent = -1  # indentation of the last Python frame: its code line sits deeper
    rust_trace = False  # inside a Rust backtrace
    for raw in text.split("\n"):
        if fence is not None and frame_indent < 0:
            stripped = raw.strip()  # cheaper than collapsing the spacing of every code line
            if stripped and stripped[0] not in _CHECKED_IN_CODE:
                code.append(stripped)  # no rule below applies to it; spacing collapsed if kept
                rust_trace = False
                continue
        line = " ".join(raw.split())
        if not line:
            frame_indent = -1
            if fence is None and out and out[-1]:
                out.append("")
                size += 1
            continue
        first = line[0]
        if first in "`~":
            if fence is None and _opens_fence(raw, line):
                fence = line[0] * 3
                continue
            if fence is not None and first == fence[0] and not line.strip(first):
                shortened = _shorten_code(code)
                out.extend(shortened)
                size += sum(len(kept) + 1 for kept in shortened)
                fence, code = None, []
                continue
        if frame_indent >= 0:
            if len(raw) - len(raw.lstrip()) > frame_indent:
                continue  # a frame's code line, or its ^^^ markers
            frame_indent = -1
        if first in _FRAME_FIRST and line.startswith(_FRAME_STARTS) and (
                _FRAME.fullmatch(line) or (rust_trace and _RUST_SHORT_FRAME.fullmatch(line))):
            if first == "F":
                frame_indent = len(raw) - len(raw.lstrip())
            continue
        rust_trace = line == "stack backtrace:"  # its frames may be bare names: 0: main
        if first in "^~" and not line.strip("^~ "):
            continue  # Python 3.11+ column markers
        if fence is not None:
            code.append(line)
            continue
        line = _prose(line)
        if line:
            out.append(line)
            size += len(line) + 1
            if limit is not None and size > limit:
                return out
    out.extend(_shorten_code(code))  # an unclosed fence runs to the end
    return out


def clean_body(text: str, limit: int | None = None) -> str:
    """Body markdown to the plain text the tokenizer sees (see the module docstring), cut
    to `limit` characters: the same as cutting the whole cleaned text, only cheaper."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        text = _INVISIBLE.sub("", unicodedata.normalize("NFC", text))
    elif _has_control(text):  # ASCII is already NFC; only control characters can go
        text = _INVISIBLE.sub("", text)
    if "<!--" in text:
        text = _COMMENT.sub("", text)
    if "](" in text:
        text = _LINK.sub(r"\1", _IMAGE.sub("", text))
    if "://" in text:
        text = _URL.sub(_shorten_url, text)
    if "<" in text:
        text = _HTML_TAG.sub(" ", text)  # a space: `10<br>Chrome` must not become `10Chrome`
    return "\n".join(_lines(text, limit)).strip()[:limit]


def model_text(body: str, max_raw_chars: int, body_len: int) -> str:
    """A raw body as training saw it: cut, cleaned, then cut to what `body_len` tokens need."""
    return clean_body(body[:max_raw_chars], body_len * CHARS_PER_TOKEN)


def has_words(text: str) -> bool:
    """Whether cleaned text holds anything to make a title from: a letter or a digit."""
    return any(character.isalnum() for character in text)


def clean_title(text: str) -> str:
    """Titles are kept as written: only invisible characters and spacing are normalized."""
    return " ".join(unicodedata.normalize("NFC", _INVISIBLE.sub("", text)).split())
