"""The Seldon Core model class: issue bodies in, titles out, through the ONNX engine.

`seldon-core-microservice IssueSummarization` (run from this folder) serves it; Seldon's file
and class names must match, hence the CamelCase module. Settings come from the environment
(serving/README.md lists them) and are checked when the class is made, so a bad value stops
the server at start instead of failing every request. Requests follow the rule of
summarizer.budget, like the web app's: limits checked first, then at most MAX_IN_FLIGHT decode
at once per server process; every refusal is a 4xx (503 when busy) with a one-line message.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import flask
import numpy as np
from flask.json.provider import DefaultJSONProvider
from seldon_core.flask_utils import SeldonMicroserviceException
from seldon_core.user_model import SeldonNotImplementedError

from summarizer import budget
from summarizer.budget import Gate, check_request
from summarizer.decoding import (
    DEFAULT_END_PENALTY,
    DEFAULT_LEAD_BONUS,
    DEFAULT_NO_REPEAT_NGRAM,
    DEFAULT_REPEAT_PENALTY,
    MAX_BEAMS,
    MAX_LENGTH,
    MAX_SAMPLES,
    DecodeConfig,
)
from summarizer.engine import Summarizer
from summarizer.errors import RequestError, UserError
from summarizer.json_text import BadJSON, parse_json

# In a checkout and in the image alike, the shipped bundle sits beside this folder.
DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "models" / "default"
USAGE = 'send {"data": {"ndarray": [["<issue body>"], ...]}} or {"strData": "<issue body>"}'
HEALTH_BODY = "The health check asks for a title for this body to prove the model answers."
WORKER_BOOT_ERROR = 3  # gunicorn's: its master stops on this instead of starting the worker again
log = logging.getLogger(__name__)


def _bad(message: str, status: int = 400) -> SeldonMicroserviceException:
    """Seldon answers this exception with `status` and the message as JSON, not a traceback."""
    return SeldonMicroserviceException(message, status_code=status)


def _refused(error: RequestError) -> SeldonMicroserviceException:
    """The request's refusal as Seldon's error. Seldon's error handler sets no headers, so a
    Retry-After (Busy) is added by Flask's after-this-request hook: `predict` runs inside the
    request, and the hook also applies to the error response."""
    if error.retry_after is not None and flask.has_request_context():
        seconds = str(math.ceil(error.retry_after))

        @flask.after_this_request
        def retry_after(response: flask.Response) -> flask.Response:
            response.headers["Retry-After"] = seconds
            return response
    return _bad(str(error), error.status)


def _parse(text: str | bytes, what: str) -> Any:
    """JSON from a request, or a 400 saying what is wrong with it (summarizer.json_text)."""
    try:
        return parse_json(text)
    except BadJSON as error:
        raise _bad(f"{what} cannot be read: {error}") from None


class _StrictJSON(DefaultJSONProvider):
    """Flask's JSON parser lets RecursionError out of `request.get_json()` (deep nesting), which
    Seldon answers with a 500, accepts NaN, and has Seldon call any other bad JSON "Can't find
    JSON in data". This one refuses each with a 400 that says what is wrong."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return _parse(s, "the request body")


def _json_fields() -> list[str]:
    """What Seldon's `get_request` also parses as JSON, with the standard parser: the `json`
    form field or query argument, or each multipart field but strData."""
    request = flask.request
    if "multipart/form-data" in (request.content_type or ""):
        return [value for name, value in request.form.items() if name != "strData"]
    field = request.form.get("json") or request.args.get("json")
    return [field] if field else []


# Seldon registers a model's `model_error_handler` blueprint on the Flask app it builds (before
# `load`, in the main process): the one way into that app. Its JSON parser becomes the strict
# one, and the fields Seldon parses itself are checked strictly first; no other app changes.
SELDON_APP = flask.Blueprint("issue_summarizer", __name__)


@SELDON_APP.record_once
def _use_strict_json(state: Any) -> None:
    state.app.json = _StrictJSON(state.app)


@SELDON_APP.before_app_request
def _check_json_fields() -> None:
    for field in _json_fields():
        _parse(field, "the request's JSON field")


def _stop(error: Exception) -> NoReturn:
    """End the process with one line saying what is wrong, not a traceback, with gunicorn's
    status for a worker that cannot boot, so its master stops too. os._exit: a gunicorn worker
    inherits Seldon's multiprocessing exit hook, which would print a traceback of its own."""
    log.error("issue-summarizer: error: %s", error)
    logging.shutdown()  # flushes every handler
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(WORKER_BOOT_ERROR)


def _setting(env: Mapping[str, str], name: str, default: float | None, kind: type = int,
             minimum: float = 1, maximum: float = math.inf) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}={raw!r} is not a finite number")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def _switch(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip() or "off"
    if raw not in ("on", "off"):
        raise ValueError(f"{name}={raw!r} must be 'on' or 'off'")
    return raw == "on"


@dataclass(frozen=True)
class Settings:
    """What the environment sets; the decoding fields are `Summarizer.summarize` arguments."""

    bundle: str
    threads: int
    max_batch: int
    max_body_chars: int
    max_in_flight: int  # requests decoding at once in one server process
    num_beams: int
    max_length: int | None  # None: the model's title length
    min_length: int
    length_penalty: float
    no_repeat_ngram: int
    repeat_penalty: float
    end_penalty: float
    lead_bonus: float | None  # None: titles are the model's own
    consensus: bool  # of the beams, greedy title, lead and samples: the one the others agree with
    samples: int  # titles sampled for the consensus

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        settings = cls(
            bundle=env.get("MODEL_BUNDLE", "").strip() or str(DEFAULT_BUNDLE),
            threads=_setting(env, "ENGINE_THREADS", 1),
            max_batch=_setting(env, "MAX_BATCH", budget.MAX_BATCH),
            max_body_chars=_setting(env, "MAX_BODY_CHARS", budget.MAX_BODY_CHARS),
            max_in_flight=_setting(env, "MAX_IN_FLIGHT", budget.MAX_IN_FLIGHT),
            num_beams=_setting(env, "NUM_BEAMS", 1, maximum=MAX_BEAMS),
            max_length=_setting(env, "MAX_LENGTH", None, maximum=MAX_LENGTH),
            min_length=_setting(env, "MIN_LENGTH", 1, minimum=0),
            length_penalty=_setting(env, "LENGTH_PENALTY", 1.0, float, minimum=0),
            no_repeat_ngram=_setting(env, "NO_REPEAT_NGRAM", DEFAULT_NO_REPEAT_NGRAM, minimum=0),
            repeat_penalty=_setting(env, "REPEAT_PENALTY", DEFAULT_REPEAT_PENALTY, float, minimum=0),
            end_penalty=_setting(env, "END_PENALTY", DEFAULT_END_PENALTY, float, minimum=0),
            lead_bonus=(None if env.get("LEAD_BONUS", "").strip() == "off"
                        else _setting(env, "LEAD_BONUS", DEFAULT_LEAD_BONUS, float, minimum=-math.inf)),
            consensus=_switch(env, "CONSENSUS"),
            samples=_setting(env, "SAMPLES", 0, minimum=0, maximum=MAX_SAMPLES),
        )
        if settings.samples and not settings.consensus:
            raise ValueError("SAMPLES only serve the consensus: set CONSENSUS=on, or SAMPLES=0")
        if settings.consensus and settings.num_beams < 2 and settings.samples < 2:
            raise ValueError("CONSENSUS=on needs titles to choose among: NUM_BEAMS or SAMPLES of 2 or more")
        return settings

    def decoding(self) -> dict[str, Any]:
        return {"num_beams": self.num_beams, "max_length": self.max_length, "min_length": self.min_length,
                "length_penalty": self.length_penalty, "no_repeat_ngram": self.no_repeat_ngram,
                "repeat_penalty": self.repeat_penalty, "end_penalty": self.end_penalty,
                "lead_bonus": self.lead_bonus, "consensus": self.consensus, "samples": self.samples}

    def cost_config(self) -> DecodeConfig:
        """The settings that make a body's cost (budget.cost): beams, samples, the consensus."""
        return DecodeConfig(num_beams=self.num_beams, consensus=self.consensus, samples=self.samples)


def _json_bodies(request: dict) -> list[str]:
    """The bodies of a REST payload, each checked to be a string."""
    if "strData" in request:
        body = request["strData"]
        if not isinstance(body, str):
            raise _bad(f"strData must be a string (the issue body), got {type(body).__name__}")
        return [body]
    data = request.get("data")
    if not isinstance(data, dict) or "ndarray" not in data:
        raise _bad(f"no issue bodies found: {USAGE}")
    rows = data["ndarray"]
    if not isinstance(rows, list):
        raise _bad(f"data.ndarray must be a list of [body] rows, got {type(rows).__name__}")
    flat = bool(rows) and isinstance(rows[0], str)  # a plain list of bodies is accepted too
    bodies = []
    for index, row in enumerate(rows):
        body = row if flat else row[0] if isinstance(row, list) and len(row) == 1 else None
        if not isinstance(body, str):
            wanted = "a string, as the first row is" if flat else '["<issue body>"], a row of one string'
            raise _bad(f"data.ndarray[{index}] must be {wanted}; got {json.dumps(row)[:80]}")
        bodies.append(body)
    return bodies


def _array_bodies(X: Any) -> list[str]:
    """The bodies of what Seldon hands `predict`: a string, or rows of one string."""
    if isinstance(X, str):
        return [X]
    if not isinstance(X, np.ndarray):
        raise _bad(f"expected issue bodies, got {type(X).__name__}: {USAGE}")
    if X.ndim not in (1, 2) or (X.ndim == 2 and X.shape[1] != 1):
        raise _bad(f"expected rows of one issue body each, got an array of shape {list(X.shape)}")
    bodies = X.reshape(-1).tolist()
    bad = next((index for index, body in enumerate(bodies) if not isinstance(body, str)), None)
    if bad is not None:
        raise _bad(f"body {bad} is not a string: {str(bodies[bad])[:80]}")
    return bodies


class IssueSummarization:
    """Seldon's Python-wrapper model. REST payloads are checked before Seldon turns them into
    numpy arrays (`predict_raw`), then titled by `predict`."""

    model_error_handler = SELDON_APP

    def __init__(self) -> None:
        try:
            self.settings = Settings.from_env(os.environ)
        except ValueError as error:
            _stop(error)
        self.engine: Summarizer | None = None
        self.gate: Gate | None = None
        self._request = threading.local()  # titles and engine time of this thread's last request

    def load(self) -> None:
        """Seldon calls this in each server process after it forks: ONNX Runtime's thread pools do
        not survive a fork, and each process has its own slots. One warm-up title also rejects
        bad decoding settings at start. A bad bundle ends the process with its one-line reason."""
        try:
            self.engine = Summarizer.load(self.settings.bundle, threads=self.settings.threads)
            self.engine.summarize([HEALTH_BODY], **self.settings.decoding())
        except UserError as error:
            _stop(error)
        self.gate = Gate(self.settings.max_in_flight)

    def check(self, bodies: Sequence[str]) -> None:
        """Refuse what the engine should not spend time on, with a message saying why: a blank
        body, then budget.check_request (batch, body length, nothing to summarize, titles decoded)."""
        blank = next((index for index, body in enumerate(bodies) if not body.strip()), None)
        if blank is not None:
            raise RequestError(f"body {blank} is empty: a title needs the issue's text")
        settings = self.settings
        check_request(bodies, settings.cost_config(), max_batch=settings.max_batch,
                      max_body_chars=settings.max_body_chars)

    def predict_raw(self, request: Any) -> Any:
        """Check a REST payload before Seldon converts it: numpy would turn numbers into text and
        size every row for the longest body. Raising SeldonNotImplementedError is how Seldon is
        told to go on with its own conversion and `predict`."""
        if isinstance(request, dict):  # gRPC's SeldonMessage arrives typed already
            bodies = _json_bodies(request)
            try:
                self.check(bodies)
            except RequestError as error:
                raise _refused(error) from None
        raise SeldonNotImplementedError("checked; Seldon goes on to predict")

    def predict(self, X: Any, features_names: Sequence[str] | None = None) -> np.ndarray | str:
        """One title per body, in the request's shape: strData gives strData, rows give rows.
        A refusal (limits, a busy server, the engine's: nothing to summarize, invalid text) is
        answered with its status, never a 500."""
        bodies = _array_bodies(X)
        try:
            self.check(bodies)
            with self.gate.slot():
                started = time.perf_counter()
                titles = self.engine.summarize(bodies, **self.settings.decoding())
        except RequestError as error:
            raise _refused(error) from None
        self._request.done = (len(titles), (time.perf_counter() - started) * 1000)
        if isinstance(X, str):
            return titles[0]
        return np.array(titles, dtype=object).reshape(X.shape)

    def class_names(self) -> list[str]:
        return ["title"]

    def metrics(self) -> list[dict]:
        """Seldon calls this after every predict and health check and adds the values to /metrics
        on the metrics port: titles written (counter) and engine time per request (timer, ms)."""
        done = getattr(self._request, "done", None)
        self._request.done = None
        if done is None:
            return []
        titles, milliseconds = done
        return [{"type": "COUNTER", "key": "issue_summarizer_titles", "value": titles},
                {"type": "TIMER", "key": "issue_summarizer_engine_seconds", "value": milliseconds}]

    def tags(self) -> dict[str, str]:
        """Every response names the model that wrote it."""
        return {"model_version": self.engine.version}

    def health_status(self) -> dict[str, str]:
        """A short title for a fixed body: proves the engine answers, not only the web server."""
        title = self.engine.summarize([HEALTH_BODY], max_length=4)[0]
        return {"status": "ok", "model_version": self.engine.version, "title": title}

    def init_metadata(self) -> dict:
        """Served at /api/v1.0/metadata; made before `load`, so it names no model version."""
        return {
            "name": "issue-summarizer",
            "platform": "onnxruntime",
            "inputs": [{"messagetype": "ndarray", "schema": {"names": ["body"], "shape": [1]}}],
            "outputs": [{"messagetype": "ndarray", "schema": {"names": ["title"], "shape": [1]}}],
            "custom": {"max_batch": str(self.settings.max_batch),
                       "max_body_chars": str(self.settings.max_body_chars)},
        }
