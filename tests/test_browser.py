"""The web app in a real browser: Debian's Chromium (/usr/bin/chromium, which
scripts/setup-system.sh installs) driven by Playwright, against the app started as a user
starts it (`python -m webapp`, waitress) on the shipped model.

A person pastes an issue and sees the engine's title with the beam candidates, their scores,
the time and a copy button; Ctrl+Enter submits without a reload; a GitHub issue URL is fetched
from a local replay of the GitHub API; markup in a body stays text; a model endpoint that is
down gives a clear message; the same title comes through the real Seldon microservice; feedback
lands in the SQLite file; the page works without JavaScript, on a phone and in dark mode.
Screenshots go to test-artifacts/ (webapp.png: a real issue summarized).

Without Chromium these tests fail (not skip) with how to install it: a suite that passes
without ever opening the page says nothing about the page.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from github_replay import GitHubReplay
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from servers import build_serving_environment
from webapp_process import App, running_app

from serving.microservice import serve
from summarizer.engine import Summarizer, Title
from webapp.feedback import Feedback, FeedbackStore

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLE = REPO_ROOT / "models" / "default"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "browser"
REAL_ISSUES = REPO_ROOT.parent / "shared" / "data" / "github-issues.jsonl.gz"
NUM_BEAMS = 4
SAMPLES = 8  # titles sampled for the consensus (fewer than the app's default: quicker)
ISSUE_URL = "https://github.com/octo-org/widgets/issues/42"

BODY = ("Saving a project with a name that contains a colon fails with `OSError: [Errno 22] Invalid "
        "argument` on Windows. The save dialog closes and nothing is written.\n\nSteps:\n1. Create a "
        "project named `demo: first`\n2. Press Ctrl+S\n\nExpected: the colon is replaced or refused "
        "before saving.")
EXAMPLE_BODY = ("The CLI crashes with `KeyError: 'colour'` when the config file uses the British "
                "spelling. Running `widgets render --config site.toml` prints a traceback instead of "
                "telling me which key is unknown.")
# The path and the log line have no place to break: the phone layout must wrap them, not scroll.
LONG_BODY = ("Building fails on a path without spaces: /home/runner/work/widgets/widgets/packages/"
             "renderer-core/node_modules/.cache/babel-loader/8f1e9c2d4b6a7e3f5d1c9b8a7e6f5d4c3b2a1.json"
             "\n\nERROR_in_./src/components/WidgetRendererWithAVeryLongComponentNameThatNeverEnds.tsx:"
             "Module_not_found_cannot_resolve_widgets_renderer_core_dist_index_mjs\n\nIt started after "
             "updating the renderer to 3.0.")
CORRECTED = "CLI crashes on the British spelling of a config key"
XSS_BODY = ('The preview renders <script>alert(1)</script> and <img src=x onerror="alert(2)"> as '
            'markup instead of showing them as text, so a pasted snippet can run code in the page.')
XSS_TITLE = '<b>bold</b><script>alert(3)</script>'


def _background_luminance(page: Page) -> float:
    """Brightness (0 black .. 1 white) of the page's background: the body's, or the root's
    where the body's is transparent."""
    color = page.evaluate("""() => {
        const body = getComputedStyle(document.body).backgroundColor;
        const root = getComputedStyle(document.documentElement).backgroundColor;
        return body === 'rgba(0, 0, 0, 0)' ? root : body;
    }""")
    return _luminance(color)


def _text_luminance(page: Page) -> float:
    return _luminance(page.evaluate("() => getComputedStyle(document.body).color"))


def _luminance(css_color: str) -> float:
    """Rec. 709 weights on the sRGB values of an `rgb(...)`: enough to tell dark from light."""
    red, green, blue = (int(value) / 255 for value in re.findall(r"\d+(?:\.\d+)?", css_color)[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


# --- the browser, the engine, the servers -----------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/setup-system.sh` (as root, or with sudo) or "
                    "`sudo apt-get install chromium`, or set CHROMIUM to a Chromium binary")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Pages in fresh browser contexts (`new_context` options: viewport, color_scheme, ...).
    Script errors and CSP violations on any of them fail the test."""
    contexts = []
    problems: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        # A 4xx/5xx answer to fetch is logged as "Failed to load resource"; the page reports it itself.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    def new(**options: Any) -> Page:
        context = browser.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("console", watch)
        page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
        return page

    yield new
    for context in contexts:
        context.close()
    assert not problems, f"the page logged errors: {problems}"


@pytest.fixture(scope="module")
def engine() -> Summarizer:
    return Summarizer.load(BUNDLE, threads=1)


@pytest.fixture(scope="module")
def expected(engine: Summarizer) -> Callable[[str], list[Title]]:
    """The engine's candidates for a body, best first, decoded as the app decodes."""
    return lambda body: engine.candidates([body], num_beams=NUM_BEAMS, consensus=True, samples=SAMPLES)[0]


@pytest.fixture(scope="module")
def github() -> Iterator[GitHubReplay]:
    with GitHubReplay.from_manifest(FIXTURES / "responses.json") as replay:
        yield replay


@pytest.fixture(scope="module")
def feedback_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feedback") / "feedback.sqlite3"


def _settings(**extra: str) -> dict[str, str]:
    return {"SUMMARIZER_MODEL": str(BUNDLE), "NUM_BEAMS": str(NUM_BEAMS), "CONSENSUS_SAMPLES": str(SAMPLES),
            "SECRET_KEY": "browser-tests", **extra}


@pytest.fixture(scope="module")
def app(github: GitHubReplay, feedback_db: Path) -> Iterator[App]:
    """The app on the shipped model in-process, GitHub replayed, feedback in a fresh file."""
    with running_app(_settings(GITHUB_API_URL=github.base_url, FEEDBACK_DB=str(feedback_db))) as running:
        yield running


@pytest.fixture(scope="module")
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening, held for the module."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


@pytest.fixture(scope="module")
def app_with_endpoint_down(refused_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    folder = tmp_path_factory.mktemp("down")
    settings = _settings(SUMMARIZER_URL=f"http://127.0.0.1:{refused_port}", SUMMARIZER_PROTOCOL="seldon",
                         SUMMARIZER_TIMEOUT="5", FEEDBACK_DB=str(folder / "feedback.sqlite3"))
    with running_app(settings) as running:
        yield running


@pytest.fixture(scope="module")
def app_on_seldon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The app calling the real Seldon microservice on the shipped model, in .venvs/seldon as
    the script users run builds it (a no-op once built)."""
    build_serving_environment("seldon")
    folder = tmp_path_factory.mktemp("seldon")
    # as the page decodes in-process
    seldon_env = {"NUM_BEAMS": str(NUM_BEAMS), "CONSENSUS": "on", "SAMPLES": str(SAMPLES)}
    with serve(BUNDLE, env=seldon_env) as service, running_app(_settings(
            SUMMARIZER_URL=service.url, SUMMARIZER_PROTOCOL="seldon",
            FEEDBACK_DB=str(folder / "feedback.sqlite3"))) as running:
        yield running


@pytest.fixture(scope="module")
def real_issue() -> dict[str, str]:
    """A real issue for the screenshot, from ../shared/data when it is there (the first of the
    benchmarks' even spread with a body of a screenful), else an example issue of this project."""
    if not REAL_ISSUES.exists():
        return {"title": CORRECTED, "body": EXAMPLE_BODY}
    with gzip.open(REAL_ISSUES, "rt") as lines:
        for line in itertools.islice(lines, 0, None, 97):
            issue = json.loads(line)
            if 300 <= len(issue.get("body") or "") <= 1200:
                return {"title": issue["title"], "body": issue["body"]}
    raise AssertionError(f"{REAL_ISSUES} has no issue with a body of 300 to 1,200 characters")


def _summarize(page: Page, body: str, title: str = "") -> None:
    page.fill("#body", body)
    if title:
        page.fill("#current-title", title)
    page.click("#submit")


def _stored_rows(db: Path, count: int) -> list[Feedback]:
    """The feedback rows once there are `count` of them (the page may say thanks a moment early)."""
    deadline = time.monotonic() + 10
    while len(rows := FeedbackStore(db).entries()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(rows) == count, f"{len(rows)} feedback rows stored, expected {count}"
    return rows


def _expect_title(page: Page, candidates: list[Title]) -> None:
    expect(page.locator("#suggested-title")).to_have_text(candidates[0].text, timeout=30_000)


# --- with JavaScript ------------------------------------------------------------------------


def test_paste_an_issue_and_see_its_title_candidates_and_time(
        app: App, open_page: Callable[..., Page], expected: Callable[[str], list[Title]],
        real_issue: dict[str, str]) -> None:
    page = open_page(viewport={"width": 1280, "height": 900},
                     permissions=["clipboard-read", "clipboard-write"])
    page.goto(app.url + "/")
    page.evaluate("window.stillTheSamePage = true")
    body = real_issue["body"]
    candidates = expected(body)
    _summarize(page, body, real_issue["title"])
    _expect_title(page, candidates)

    items = page.locator("#candidates li")
    expect(items).to_have_count(len(candidates))
    for item, candidate in zip(items.all(), candidates, strict=True):
        expect(item).to_contain_text(candidate.text)
        score = item.locator(".score").inner_text()
        assert re.search(r"-?\d+(\.\d+)?", score), f"no score in {score!r}"
    expect(page.locator("#elapsed")).to_have_text(re.compile(r"\d"))
    assert page.evaluate("window.stillTheSamePage") is True, "the page reloaded"
    assert page.input_value("#body") == body

    page.click("#copy")
    assert page.evaluate("navigator.clipboard.readText()") == candidates[0].text
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webapp.png"), full_page=True)


def test_ctrl_enter_submits_without_a_reload(app: App, open_page: Callable[..., Page],
                                             expected: Callable[[str], list[Title]]) -> None:
    page = open_page()
    page.goto(app.url + "/")
    page.evaluate("window.stillTheSamePage = true")
    page.fill("#body", BODY)
    page.press("#body", "Control+Enter")
    _expect_title(page, expected(BODY))
    assert page.evaluate("window.stillTheSamePage") is True, "Ctrl+Enter reloaded the page"


def test_a_sample_issue_fills_the_body(app: App, open_page: Callable[..., Page],
                                       expected: Callable[[str], list[Title]]) -> None:
    page = open_page()
    page.goto(app.url + "/")
    page.click("#sample")
    expect(page.locator("#body")).not_to_have_value("")
    body = page.input_value("#body")
    page.click("#submit")
    _expect_title(page, expected(body))


def test_a_github_issue_url_is_fetched_and_summarized(
        app: App, github: GitHubReplay, open_page: Callable[..., Page],
        expected: Callable[[str], list[Title]]) -> None:
    issue = json.loads((FIXTURES / "widgets_issue_42.json").read_text(encoding="utf-8"))
    page = open_page()
    page.goto(app.url + "/")
    page.fill("#issue-url", ISSUE_URL)
    page.click("#submit")
    _expect_title(page, expected(issue["body"]))
    assert "/repos/octo-org/widgets/issues/42?" in github.fetched()
    expect(page.locator("#error")).to_be_hidden()


def test_an_issue_github_does_not_have_gets_a_clear_message(
        app: App, open_page: Callable[..., Page]) -> None:
    page = open_page()
    page.goto(app.url + "/")
    page.fill("#issue-url", "https://github.com/octo-org/widgets/issues/4242")
    page.click("#submit")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("GitHub has no issue")
    expect(page.locator("#suggested-title")).to_have_text("")


def test_markup_in_a_body_stays_text(app: App, open_page: Callable[..., Page],
                                     expected: Callable[[str], list[Title]]) -> None:
    page = open_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(app.url + "/")
    _summarize(page, XSS_BODY, XSS_TITLE)
    _expect_title(page, expected(XSS_BODY))
    _assert_markup_is_text(page)
    assert dialogs == []


def _assert_markup_is_text(page: Page) -> None:
    assert page.input_value("#body") == XSS_BODY
    assert page.input_value("#current-title") == XSS_TITLE
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("b", has_text="bold").count() == 0
    assert not page.evaluate("[...document.scripts].some(script => script.textContent.includes('alert('))")


def test_an_endpoint_that_is_down_gets_a_clear_message(
        app_with_endpoint_down: App, refused_port: int, open_page: Callable[..., Page]) -> None:
    page = open_page()
    page.goto(app_with_endpoint_down.url + "/")
    _summarize(page, BODY)
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text(f"endpoint at http://127.0.0.1:{refused_port} is down")
    assert "Traceback" not in error.inner_text()
    expect(page.locator("#suggested-title")).to_have_text("")


def test_the_real_seldon_microservice_gives_the_same_title(
        app_on_seldon: App, open_page: Callable[..., Page], engine: Summarizer) -> None:
    page = open_page()
    page.goto(app_on_seldon.url + "/")
    _summarize(page, BODY)
    expected = engine.summarize([BODY], num_beams=NUM_BEAMS, consensus=True, samples=SAMPLES)[0]
    expect(page.locator("#suggested-title")).to_have_text(expected)
    expect(page.locator("#error")).to_be_hidden()


def test_feedback_good_and_corrected_is_stored(
        app: App, feedback_db: Path, open_page: Callable[..., Page], engine: Summarizer,
        expected: Callable[[str], list[Title]]) -> None:
    before = len(FeedbackStore(feedback_db).entries())
    page = open_page()
    page.goto(app.url + "/")
    suggested = expected(BODY)[0].text
    _summarize(page, BODY)
    _expect_title(page, expected(BODY))
    page.click("#feedback-good")
    expect(page.locator("#feedback-status")).not_to_have_text("")
    _stored_rows(feedback_db, before + 1)

    _summarize(page, EXAMPLE_BODY)
    _expect_title(page, expected(EXAMPLE_BODY))
    page.fill("#corrected-title", CORRECTED)
    page.click("#feedback-bad")
    expect(page.locator("#feedback-status")).not_to_have_text("")

    stored = _stored_rows(feedback_db, before + 2)[before:]
    assert [(row.body, row.suggested, row.verdict, row.corrected) for row in stored] == [
        (BODY, suggested, "good", None),
        (EXAMPLE_BODY, expected(EXAMPLE_BODY)[0].text, "bad", CORRECTED),
    ]
    assert {row.model_version for row in stored} == {engine.version}


# --- without JavaScript, on a phone, in the dark --------------------------------------------


def test_without_javascript_the_form_posts(app: App, open_page: Callable[..., Page], feedback_db: Path,
                                          expected: Callable[[str], list[Title]]) -> None:
    page = open_page(java_script_enabled=False)
    page.goto(app.url + "/")
    _summarize(page, XSS_BODY, XSS_TITLE)
    candidates = expected(XSS_BODY)
    _expect_title(page, candidates)  # a new page, rendered by the server
    expect(page.locator("#candidates li")).to_have_count(len(candidates))
    _assert_markup_is_text(page)  # echoed back into the form, escaped

    before = len(FeedbackStore(feedback_db).entries())
    page.click("#feedback-good")
    expect(page.locator("#feedback-status")).not_to_have_text("")
    stored = _stored_rows(feedback_db, before + 1)[before:]
    assert [(row.body, row.suggested, row.verdict) for row in stored] == [
        (XSS_BODY, candidates[0].text, "good")]


def test_a_phone_has_no_sideways_scrolling(app: App, open_page: Callable[..., Page],
                                           expected: Callable[[str], list[Title]]) -> None:
    page = open_page(viewport={"width": 390, "height": 844}, device_scale_factor=3, is_mobile=True,
                     has_touch=True)
    page.goto(app.url + "/")
    _summarize(page, LONG_BODY)
    _expect_title(page, expected(LONG_BODY))
    width = page.evaluate("() => ({inner: window.innerWidth, scroll: document.documentElement.scrollWidth})")
    assert width["inner"] == 390, "the page does not set a device-width viewport"
    assert width["scroll"] <= width["inner"], f"the page is {width['scroll']}px wide on a 390px phone"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webapp-phone.png"), full_page=True)


def test_dark_mode_has_a_dark_background(app: App, open_page: Callable[..., Page],
                                         expected: Callable[[str], list[Title]]) -> None:
    light = open_page(color_scheme="light")
    light.goto(app.url + "/")
    assert _background_luminance(light) > 0.7

    dark = open_page(color_scheme="dark", viewport={"width": 1280, "height": 900})
    dark.goto(app.url + "/")
    _summarize(dark, BODY)
    _expect_title(dark, expected(BODY))
    assert _background_luminance(dark) < 0.25
    assert _text_luminance(dark) > 0.6, "dark text on the dark background"
    ARTIFACTS.mkdir(exist_ok=True)
    dark.screenshot(path=str(ARTIFACTS / "webapp-dark.png"), full_page=True)
