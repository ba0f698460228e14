"""The web app's settings, one dataclass read from the environment (the container's way to configure it)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from summarizer.decoding import MAX_BEAMS, MAX_SAMPLES
from summarizer.engine import default_bundle
from summarizer.errors import UserError
from webapp.feedback import default_db_path

PROTOCOLS = ("seldon", "v2")

# field -> the environment variable that sets it, for from_env and for messages
ENV_NAMES = {
    "model": "SUMMARIZER_MODEL", "summarizer_url": "SUMMARIZER_URL", "protocol": "SUMMARIZER_PROTOCOL",
    "timeout": "SUMMARIZER_TIMEOUT", "github_api_url": "GITHUB_API_URL", "github_token": "GITHUB_TOKEN",
    "feedback_db": "FEEDBACK_DB", "samples_file": "SAMPLES_FILE", "max_batch": "MAX_BATCH",
    "max_content_length": "MAX_CONTENT_LENGTH", "secret_key": "SECRET_KEY", "num_beams": "NUM_BEAMS",
    "engine_threads": "ENGINE_THREADS", "consensus_samples": "CONSENSUS_SAMPLES",
    "max_in_flight": "MAX_IN_FLIGHT", "feedback_per_minute": "FEEDBACK_PER_MINUTE",
    "feedback_max_mb": "FEEDBACK_MAX_MB",
}


def _http_url(name: str, value: str) -> str:
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"{ENV_NAMES[name]}={value!r} is not an http(s) address, e.g. http://127.0.0.1:9000")
    return url


@dataclass(frozen=True)
class Settings:
    """Where the model runs, where the GitHub API and the feedback database are, and the limits.

    With `summarizer_url` set the app calls that serving endpoint (`protocol` seldon or v2)
    instead of loading `model` in-process."""

    model: str = field(default_factory=default_bundle)
    summarizer_url: str | None = None
    protocol: str = "seldon"
    timeout: float = 10.0  # seconds for each call to the model endpoint or GitHub
    github_api_url: str = "https://api.github.com"
    github_token: str | None = None
    feedback_db: Path = field(default_factory=default_db_path)
    samples_file: Path | None = None
    max_batch: int = 64
    max_content_length: int = 1 << 20
    secret_key: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    num_beams: int = 4  # the page shows every beam's title as a candidate
    # Titles sampled for the consensus that picks the first candidate (with beams): on the test
    # split, beam 4 with consensus scored ROUGE-L 25.62 with 32 of them, 25.88 with 64, 24.41 without.
    consensus_samples: int = 32
    # ONNX Runtime threads of the embedded engine. One, as in the Seldon image: a small model's
    # step is too short to split, and the server's own threads use the other cores.
    engine_threads: int = 1
    # Requests decoding at once; more are answered 503 at once instead of queueing (see
    # summarizer.budget). Below the server's threads, so health checks always find one free.
    max_in_flight: int = 2
    feedback_per_minute: int = 10  # feedback rows one client address may store a minute
    feedback_max_mb: int = 512  # the feedback database refuses new rows past this size

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise UserError(f"SUMMARIZER_PROTOCOL={self.protocol!r}: expected one of {', '.join(PROTOCOLS)}")
        if self.summarizer_url is not None:
            object.__setattr__(self, "summarizer_url", _http_url("summarizer_url", self.summarizer_url))
        object.__setattr__(self, "github_api_url", _http_url("github_api_url", self.github_api_url))
        for name in ("timeout", "max_batch", "max_content_length", "engine_threads", "max_in_flight",
                     "feedback_per_minute", "feedback_max_mb"):
            if getattr(self, name) <= 0:
                raise UserError(f"{ENV_NAMES[name]}={getattr(self, name)}: must be above 0")
        if not 1 <= self.num_beams <= MAX_BEAMS:
            raise UserError(f"NUM_BEAMS={self.num_beams}: must be from 1 to {MAX_BEAMS}")
        if not 0 <= self.consensus_samples <= MAX_SAMPLES:
            raise UserError(f"CONSENSUS_SAMPLES={self.consensus_samples}: must be from 0 to {MAX_SAMPLES}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables (ENV_NAMES); unset or empty ones keep their defaults."""
        env = os.environ if env is None else env
        converters = {"timeout": float, "max_batch": int, "max_content_length": int, "num_beams": int,
                      "engine_threads": int, "consensus_samples": int,
                      "max_in_flight": int, "feedback_per_minute": int, "feedback_max_mb": int,
                      "feedback_db": Path, "samples_file": Path}
        values: dict[str, object] = {}
        for name, variable in ENV_NAMES.items():
            text = env.get(variable, "").strip()
            if not text:
                continue
            try:
                values[name] = converters.get(name, str)(text)
            except ValueError:
                raise UserError(f"{variable}={text!r} is not a number") from None
        return cls(**values)  # type: ignore[arg-type]
