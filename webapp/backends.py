"""Where titles come from: the engine loaded in this process, or a serving endpoint (the Seldon
wrapper or the V2 runtime) called over HTTP with a timeout. Either way a request gets the same
Suggestions, and a failure is a WebError whose message a person can act on ("the endpoint at ...
is down")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import requests

from summarizer.engine import Summarizer
from summarizer.errors import RequestError
from webapp.errors import WebError
from webapp.settings import Settings

V2_MODEL = "issue-summarizer"  # the model name in serving/mlserver/issue-summarizer/model-settings.json
HEALTH_BODY = "The app crashes when I press save."


@dataclass(frozen=True)
class Candidate:
    title: str
    score: float | None  # log-probability per token; None where the endpoint gives no scores (Seldon)


@dataclass(frozen=True)
class Suggestions:
    candidates: list[list[Candidate]]  # per body, best first
    model_version: str


def web_error(error: RequestError) -> WebError:
    """The engine's or the budget's refusal as the app answers it (busy: 503 with Retry-After)."""
    kinds = {413: "too_large", 422: "nothing_to_summarize", 503: "busy"}
    return WebError(str(error), error.status, kinds.get(error.status, "input"), error.retry_after)


def consensus_options(num_beams: int, samples: int) -> dict[str, bool | int]:
    """How the app decodes: with beams, the consensus of the beams and `samples` sampled titles
    picks the first candidate; greedy search stays plain (and fast)."""
    return {"consensus": num_beams > 1, "samples": samples if num_beams > 1 else 0}


class Backend(Protocol):
    mode: str  # embedded, seldon or v2

    def suggest(self, bodies: list[str], num_beams: int, num_return: int) -> Suggestions:
        """Titles for `bodies`, up to `num_return` each from a beam search `num_beams` wide
        (the title the beams and the sampled titles agree on first: `DecodeConfig.consensus`)."""
        ...

    def health(self) -> str:
        """The model version, once the model has proved it answers; a WebError otherwise."""
        ...


class EmbeddedBackend:
    """The ONNX engine in this process (the default: nothing else to run)."""

    mode = "embedded"

    def __init__(self, engine: Summarizer, samples: int) -> None:
        self.engine = engine
        self.samples = samples  # titles sampled for the consensus of a beam search

    def suggest(self, bodies: list[str], num_beams: int, num_return: int) -> Suggestions:
        try:
            found = self.engine.candidates(bodies, num_return=num_return, num_beams=num_beams,
                                           **consensus_options(num_beams, self.samples))
        except RequestError as error:
            raise web_error(error) from None
        return Suggestions([[Candidate(title.text, title.score) for title in best] for best in found],
                           self.engine.version)

    def health(self) -> str:
        return self.engine.version


class _Endpoint:
    """HTTP calls to a serving endpoint, every failure turned into a WebError."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._session = requests.Session()  # keeps connections open between requests

    def call(self, method: str, path: str, payload: dict | None = None) -> Any:
        try:
            response = self._session.request(method, f"{self.url}{path}", json=payload, timeout=self.timeout)
        except requests.Timeout:
            raise WebError(f"the summarizer endpoint at {self.url} did not answer within {self.timeout:g} s; "
                           "try again, or raise SUMMARIZER_TIMEOUT", 504, "backend") from None
        except requests.RequestException:
            raise WebError(f"the summarizer endpoint at {self.url} is down (no connection); start it, or "
                           "check SUMMARIZER_URL", 502, "backend") from None
        if response.status_code in (400, 413, 422):  # it refused what was sent: the sender can fix it
            raise web_error(RequestError(f"the model refused the request: {_error_message(response)}",
                                         response.status_code))
        if response.status_code == 503:  # busy: the client is told to come back, as the endpoint says
            raise web_error(RequestError(f"the model is busy: {_error_message(response)}", 503,
                                         _retry_after(response)))
        if response.status_code != 200:
            raise WebError(f"the summarizer endpoint at {self.url} failed ({response.status_code}: "
                           f"{_error_message(response)}); check SUMMARIZER_URL and SUMMARIZER_PROTOCOL",
                           502, "backend")
        try:
            return response.json()
        except ValueError:
            raise WebError(f"the summarizer endpoint at {self.url} answered with something other than "
                           "JSON; check SUMMARIZER_PROTOCOL", 502, "backend") from None

    def unexpected(self) -> WebError:
        return WebError(f"the summarizer endpoint at {self.url} gave an answer this app does not "
                        "understand; check SUMMARIZER_PROTOCOL", 502, "backend")


def _retry_after(response: requests.Response) -> float:
    """The endpoint's Retry-After in seconds (1 when it gives none a client could use)."""
    given = response.headers.get("Retry-After", "").strip()
    return float(min(int(given), 3600)) if given.isdigit() else 1.0


def _error_message(response: requests.Response) -> str:
    """Seldon's status.info, V2's error (or FastAPI's detail), else the start of the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason
    if isinstance(body, dict):
        status = body.get("status")
        if isinstance(status, dict) and status.get("info"):
            return str(status["info"])
        for key in ("error", "detail"):
            if body.get(key):
                return str(body[key])[:300]
    return str(body)[:200]


class SeldonBackend:
    """The Seldon Core wrapper's REST API. It decodes as its own settings say (NUM_BEAMS) and
    returns one title per body, without scores."""

    mode = "seldon"

    def __init__(self, url: str, timeout: float) -> None:
        self.endpoint = _Endpoint(url, timeout)

    def suggest(self, bodies: list[str], num_beams: int, num_return: int) -> Suggestions:
        answer = self.endpoint.call("POST", "/api/v1.0/predictions",
                                    {"data": {"ndarray": [[body] for body in bodies]}})
        try:
            rows = answer["data"]["ndarray"]
            titles = [row[0] if isinstance(row, list) else row for row in rows]
            version = (answer.get("meta") or {}).get("tags", {}).get("model_version", "unknown")
        except (KeyError, TypeError, IndexError, AttributeError):
            raise self.endpoint.unexpected() from None
        if len(titles) != len(bodies) or not all(isinstance(title, str) for title in titles):
            raise self.endpoint.unexpected()
        return Suggestions([[Candidate(title, None)] for title in titles], str(version))

    def health(self) -> str:
        answer = self.endpoint.call("GET", "/health/status")  # writes a title: the model answers
        try:
            return str(answer["jsonData"]["model_version"])
        except (KeyError, TypeError):
            raise self.endpoint.unexpected() from None


class V2Backend:
    """The Open Inference (V2) protocol of the MLServer runtime: beam candidates with scores."""

    mode = "v2"

    def __init__(self, url: str, timeout: float, samples: int) -> None:
        self.endpoint = _Endpoint(url, timeout)
        self.samples = samples  # titles sampled for the consensus of a beam search

    def _infer(self, bodies: list[str], parameters: dict[str, bool | int], outputs: list[str]) -> dict:
        return self.endpoint.call("POST", f"/v2/models/{V2_MODEL}/infer", {
            "inputs": [{"name": "body", "datatype": "BYTES", "shape": [len(bodies)], "data": bodies}],
            "parameters": parameters, "outputs": [{"name": name} for name in outputs]})

    def suggest(self, bodies: list[str], num_beams: int, num_return: int) -> Suggestions:
        parameters = {"num_beams": num_beams, "num_return": num_return,
                      **consensus_options(num_beams, self.samples)}
        answer = self._infer(bodies, parameters, ["candidates", "scores"])  # [N, num_return] each, best first
        try:
            outputs = {output["name"]: output["data"] for output in answer["outputs"]}
            texts, scores = outputs["candidates"], outputs["scores"]
            if len(texts) != len(bodies) * num_return or len(scores) != len(texts):
                raise self.endpoint.unexpected()
            rows = [[Candidate(str(texts[i * num_return + k]), float(scores[i * num_return + k]))
                     for k in range(num_return)] for i in range(len(bodies))]
            version = str(answer.get("model_version") or "unknown")
        except (KeyError, TypeError, ValueError):
            raise self.endpoint.unexpected() from None
        return Suggestions(rows, version)

    def health(self) -> str:
        answer = self._infer([HEALTH_BODY], {"num_beams": 1, "max_length": 2}, ["title"])  # the model answers
        if not isinstance(answer, dict) or not answer.get("model_version"):
            raise self.endpoint.unexpected()
        return str(answer["model_version"])


def make_backend(settings: Settings) -> Backend:
    """The backend the settings name; the embedded engine is loaded (and its bundle checked) now."""
    if settings.summarizer_url is None:
        return EmbeddedBackend(Summarizer.load(settings.model, threads=settings.engine_threads),
                               settings.consensus_samples)
    if settings.protocol == "v2":
        return V2Backend(settings.summarizer_url, settings.timeout, settings.consensus_samples)
    return SeldonBackend(settings.summarizer_url, settings.timeout)
