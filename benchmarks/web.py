"""What a person waits for in a real browser: from submitting the form to the title on the page,
p50/p95 over real issues sent one at a time, for the web app with the model in-process (the
embedded default, the baseline) and for the app calling the real Seldon microservice (the remote
configuration), in one run on the same issues:

    .venv/bin/python benchmarks/web.py [--model models/default] [--issues 50] [--beams 4] [--samples 32]

Chromium (/usr/bin/chromium; `bash scripts/setup-system.sh` installs it) runs headless with
JavaScript on. The time is taken inside the page, from the form's submit event to the moment
#suggested-title shows the engine's title for that body: it holds the request, the model and the
rendering, but not Playwright's own round trips. Both configurations decode as the page does by
default (beam 4, consensus over 32 sampled titles too), so the difference is what the hop to the
model server costs. Issues are real bodies from
../shared/data/github-issues.jsonl.gz (the even spread benchmarks/serve.py reads).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from serve import ISSUES, percentiles, real_bodies

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

# Installed once per page: stamps the submit and the first change of the title to the one expected.
WATCH = """() => {
    const title = document.getElementById('suggested-title');
    window.bench = {submitted: 0, shown: 0, expected: null};
    document.getElementById('summarize-form').addEventListener('submit', () => {
        window.bench.submitted = performance.now();
        window.bench.shown = 0;
    }, true);
    new MutationObserver(() => {
        const bench = window.bench;
        if (bench.submitted && !bench.shown && title.textContent.trim() === bench.expected) {
            bench.shown = performance.now();
        }
    }).observe(title, {childList: true, characterData: true, subtree: true});
}"""


def submit_to_title(page: Page, url: str, bodies: list[str], titles: list[str]) -> np.ndarray:
    """Seconds from submit to the expected title for each body, after one untimed warm-up."""
    page.goto(url + "/")
    page.evaluate(WATCH)
    times = []
    for index, (body, title) in enumerate(zip([bodies[0], *bodies], [titles[0], *titles], strict=True)):
        page.fill("#body", body)
        page.evaluate("expected => { window.bench.expected = expected; }", title)
        page.click("#submit")
        try:
            page.wait_for_function("() => window.bench.shown > 0", timeout=60_000)
        except PlaywrightTimeout:
            shown = page.locator("#suggested-title").inner_text()
            error = page.locator("#error").inner_text()
            sys.exit(f"{url}: issue {index} showed title {shown!r} (error {error!r}), expected {title!r}")
        if index:
            times.append(page.evaluate("() => window.bench.shown - window.bench.submitted") / 1e3)
    return np.array(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "default")
    parser.add_argument("--issues", type=int, default=50)
    parser.add_argument("--beams", type=int, default=4, help="NUM_BEAMS of the app and the microservice")
    parser.add_argument("--samples", type=int, default=32,
                        help="titles sampled for the consensus (with beams): the app's CONSENSUS_SAMPLES")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: run `bash scripts/setup-system.sh`, or set CHROMIUM")
    sys.path[:0] = [str(REPO / "tests"), str(REPO / "serving")]
    from microservice import serve
    from webapp_process import running_app

    from summarizer.engine import Summarizer
    from webapp.backends import consensus_options

    bodies = real_bodies(args.issues)
    options = consensus_options(args.beams, args.samples)  # as the app decodes
    titles = Summarizer.load(args.model).summarize(bodies, num_beams=args.beams, **options)
    settings = {"SUMMARIZER_MODEL": str(args.model), "NUM_BEAMS": str(args.beams),
                "CONSENSUS_SAMPLES": str(args.samples)}
    seldon = {"NUM_BEAMS": str(args.beams), "CONSENSUS": "on" if options["consensus"] else "off",
              "SAMPLES": str(options["samples"])}
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder, sync_playwright() as playwright:
        settings["FEEDBACK_DB"] = str(Path(folder) / "feedback.sqlite3")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        print(f"model {args.model}, {len(bodies)} real issues from {ISSUES.name}, beam {args.beams}, "
              f"{options['samples']} samples, "
              f"Chromium {browser.version} headless, {os.cpu_count()} CPUs")
        with running_app(settings) as app:
            embedded = submit_to_title(browser.new_page(), app.url, bodies, titles)
        print(f"embedded model (baseline)            {percentiles(embedded)}")
        with serve(args.model, env=seldon) as service:
            remote_settings = {**settings, "SUMMARIZER_URL": service.url, "SUMMARIZER_PROTOCOL": "seldon"}
            with running_app(remote_settings) as app:
                remote = submit_to_title(browser.new_page(), app.url, bodies, titles)
        browser.close()
    extra = (np.percentile(remote, 50) - np.percentile(embedded, 50)) * 1e3
    ratio = np.percentile(remote, 50) / np.percentile(embedded, 50)
    print(f"remote Seldon microservice           {percentiles(remote)}   "
          f"({extra:+.1f} ms, {ratio:.2f}x the embedded baseline at p50)")


if __name__ == "__main__":
    main()
