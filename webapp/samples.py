"""Sample issues for the page's "Try a sample" button: the project's own examples
(webapp/examples.jsonl, written for this app) or a file the operator configures (SAMPLES_FILE)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from summarizer.errors import UserError

EXAMPLES = Path(__file__).with_name("examples.jsonl")


@dataclass(frozen=True)
class Sample:
    body: str
    title: str | None = None  # the title its author gave it, shown for comparison


def load_samples(path: Path | None = None) -> list[Sample]:
    """Every sample in a JSON-lines file of {"body": ..., "title": ...} objects (title optional)."""
    path = path or EXAMPLES
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"SAMPLES_FILE {path}: cannot read it ({error})") from None
    samples = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if not isinstance(item, dict) or not isinstance(item.get("body"), str) or not item["body"].strip() \
                or not isinstance(item.get("title"), str | None):
            raise UserError(f"SAMPLES_FILE {path}, line {number}: expected "
                            '{"body": "<issue text>", "title": "<optional title>"}')
        samples.append(Sample(item["body"], item.get("title")))
    if not samples:
        raise UserError(f"SAMPLES_FILE {path} holds no samples")
    return samples


def pick(samples: list[Sample]) -> Sample:
    return random.choice(samples)
