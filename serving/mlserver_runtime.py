"""MLServer 1.7 custom runtime: the Open Inference (V2) protocol in front of the inference engine.

`mlserver start serving/mlserver` (from the repository root) loads `IssueSummarizerRuntime` for the
model `issue-summarizer`. A request carries one BYTES input, `body`, of shape [N] or [N, 1] (UTF-8
text; JSON strings over REST, bytes over gRPC) and optional decoding parameters; the response has
the BYTES output `title` [N] and, with `num_return` > 1 or when asked for in `outputs`, `candidates`
and `scores` [N, num_return]. Requests follow the rule of summarizer.budget, like the web app's
and the Seldon wrapper's: a bad request is refused with a 4xx (413 for a batch, body or cost
over the limit, 422 for a body with nothing to summarize) and a message saying what is wrong,
and a request that finds MAX_IN_FLIGHT others decoding gets a 503 with Retry-After; the server
goes on serving.

Settings come from the environment, with the names and defaults of the Seldon wrapper
(serving/README.md): MODEL_BUNDLE (else the model settings' `parameters.uri`), ENGINE_THREADS,
MAX_BATCH, MAX_BODY_CHARS and MAX_IN_FLIGHT.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any

from mlserver import MLModel
from mlserver.errors import MLServerError
from mlserver.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestInput,
    ResponseOutput,
)
from mlserver.utils import get_model_uri
from starlette.exceptions import HTTPException

from summarizer import budget
from summarizer.budget import Gate, check_request
from summarizer.decoding import MAX_BEAMS, MAX_SAMPLES, DecodeConfig
from summarizer.engine import Summarizer, Title
from summarizer.errors import Busy, RequestError

INPUT = "body"
OUTPUTS = ("title", "candidates", "scores")


class BadRequest(MLServerError):
    """A request the client must fix: MLServer answers with `status` and the message as `error`
    (over gRPC, 400 is INVALID_ARGUMENT; 413 has no mapping and arrives as UNKNOWN)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status_code=status)


class Overloaded(HTTPException, MLServerError):
    """Every slot is taken: 503 with Retry-After. MLServer's own error answer cannot carry a
    header, FastAPI's for an HTTPException can (so REST answers `{"detail": message}`); being
    an MLServerError too, gRPC answers it with the message (as UNKNOWN), not as an internal error."""

    def __init__(self, error: Busy) -> None:
        super().__init__(503, str(error), headers={"Retry-After": str(math.ceil(error.retry_after or 1))})


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name}={raw!r} must be a positive integer")
    return int(raw)


class IssueSummarizerRuntime(MLModel):
    """Serves one model bundle (a folder or gs:// prefix). MODEL_BUNDLE wins over the settings'
    uri so that a container is configured without editing its settings files."""

    async def load(self) -> bool:
        self._max_batch = _env_int("MAX_BATCH", budget.MAX_BATCH)
        self._max_body_chars = _env_int("MAX_BODY_CHARS", budget.MAX_BODY_CHARS)
        self._gate = Gate(_env_int("MAX_IN_FLIGHT", budget.MAX_IN_FLIGHT))
        threads = _env_int("ENGINE_THREADS", 1)
        uri = os.environ.get("MODEL_BUNDLE", "").strip() or await get_model_uri(self.settings)
        # Loading hashes every file: off the event loop, like inference. A bad bundle or setting
        # raises here with its reason, which MLServer logs before it stops.
        self._summarizer = await asyncio.to_thread(Summarizer.load, uri, threads=threads)
        self._max_title_tokens = int(self._summarizer.manifest["max_lengths"]["title_tokens"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        bodies = self._bodies(payload.inputs)
        options = self._options(payload.parameters)
        num_return = options.pop("num_return")
        wanted = self._wanted_outputs(payload, num_return)
        cost = DecodeConfig(num_beams=options["num_beams"], num_return=num_return,
                            consensus=options.get("consensus", False), samples=options.get("samples", 0))
        try:
            check_request(bodies, cost, max_batch=self._max_batch, max_body_chars=self._max_body_chars)
            with self._gate.slot():
                outputs = await self._decode(bodies, options, num_return, wanted)
        except Busy as error:
            raise Overloaded(error) from None
        except RequestError as error:  # the limits', or the engine's: nothing to summarize, bad text
            raise BadRequest(str(error), error.status) from None
        return InferenceResponse(model_name=self.name, model_version=self._summarizer.version,
                                 outputs=outputs)

    async def _decode(self, bodies: list[str], options: dict[str, Any], num_return: int,
                      wanted: list[str]) -> list[ResponseOutput]:
        """The outputs `wanted`. ONNX Runtime releases the GIL: decoding in a thread keeps health
        checks answering."""
        if wanted == ["title"]:
            titles = await asyncio.to_thread(self._summarizer.summarize, bodies, **options)
            return [_text_output("title", titles, [len(titles)])]
        found = await asyncio.to_thread(self._summarizer.candidates, bodies, num_return=num_return, **options)
        return _candidate_outputs(found, wanted)

    def _bodies(self, inputs: list[RequestInput]) -> list[str]:
        """The issue bodies of the request's one BYTES input, each text (the limits are
        `check_request`'s)."""
        if not inputs:
            raise BadRequest(f"the request has no inputs: send one BYTES input named {INPUT!r}")
        named = [item for item in inputs if item.name == INPUT]
        if len(inputs) > 1 and not named:
            raise BadRequest(f"the request has {len(inputs)} inputs and none is named {INPUT!r}")
        tensor = named[0] if named else inputs[0]
        datatype = Datatype(tensor.datatype).value  # the types keep enum values as plain strings
        if datatype != Datatype.BYTES.value:
            raise BadRequest(f"input {tensor.name!r} has datatype {datatype}: "
                             "issue bodies are text, send datatype BYTES")
        content_type = tensor.parameters.content_type if tensor.parameters else None
        if content_type not in (None, "str"):
            raise BadRequest(f"input {tensor.name!r} has content type {content_type!r}: "
                             "send plain UTF-8 text (content type 'str')")
        items = _flatten(tensor.data.root)
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise BadRequest(f"input {tensor.name!r} has shape {tensor.shape}: send [N] or [N, 1]")
        if tensor.shape[0] != len(items):
            raise BadRequest(f"input {tensor.name!r} has shape {tensor.shape} but {len(items)} items")
        if not items:
            raise BadRequest(f"input {tensor.name!r} holds no issue bodies")
        return [self._body(index, item) for index, item in enumerate(items)]

    @staticmethod
    def _body(index: int, item: Any) -> str:
        """One body as text (JSON brings strings, gRPC bytes), not blank."""
        if not isinstance(item, str | bytes):
            raise BadRequest(f"body {index} is not text (got {type(item).__name__})")
        try:  # REST's JSON parser has already refused invalid text (a lone surrogate)
            text = item.decode("utf-8") if isinstance(item, bytes) else item
        except UnicodeDecodeError as error:
            raise BadRequest(f"body {index} is not UTF-8 text: {error}") from error
        if not text.strip():
            raise BadRequest(f"body {index} is empty: a title needs the issue's text")
        return text

    def _options(self, parameters: Parameters | None) -> dict[str, Any]:
        """Decoding options from the request parameters, each checked against its range."""
        given = (parameters.model_extra if parameters else None) or {}
        limits: dict[str, tuple[type, float, float]] = {
            "num_beams": (int, 1, MAX_BEAMS),
            "num_return": (int, 1, MAX_BEAMS),
            "max_length": (int, 1, self._max_title_tokens),
            "min_length": (int, 0, self._max_title_tokens),
            "length_penalty": (float, 0.0, 5.0),
            "no_repeat_ngram": (int, 0, self._max_title_tokens),
            "repeat_penalty": (float, 0.0, 10.0),
            "end_penalty": (float, 0.0, 10.0),
            "lead_bonus": (float, -10.0, 10.0),
            "samples": (int, 0, MAX_SAMPLES),
        }
        options: dict[str, Any] = {}
        if "consensus" in given:
            if not isinstance(given["consensus"], bool):
                raise BadRequest(f"parameter 'consensus' must be true or false, not {given['consensus']!r}")
            options["consensus"] = given["consensus"]
        for name, (kind, low, high) in limits.items():
            if name not in given:
                continue
            value = given[name]
            if name == "lead_bonus" and value is None:  # null: titles are the model's own
                options[name] = None
                continue
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or (kind is int and not float(value).is_integer()) or not math.isfinite(value):
                raise BadRequest(f"parameter {name!r} must be {'an integer' if kind is int else 'a number'}, "
                                 f"not {value!r}")
            if not low <= value <= high:
                raise BadRequest(f"parameter {name!r} is {value}: it must be between {low} and {high}")
            options[name] = kind(value)
        num_return = options.setdefault("num_return", 1)
        options.setdefault("num_beams", num_return)
        if num_return > options["num_beams"]:
            raise BadRequest(f"num_return ({num_return}) cannot exceed num_beams ({options['num_beams']})")
        if options.get("samples") and not options.get("consensus"):
            raise BadRequest("sampled titles only serve the consensus: set consensus true, or samples 0")
        if options.get("consensus") and options["num_beams"] < 2 and options.get("samples", 0) < 2:
            raise BadRequest("consensus needs titles to choose among: set num_beams or samples to 2 or more")
        if "max_length" in options and options.get("min_length", 0) > options["max_length"]:
            raise BadRequest("min_length cannot exceed max_length")
        return options

    @staticmethod
    def _wanted_outputs(payload: InferenceRequest, num_return: int) -> list[str]:
        """The outputs the request names, or `title` (with candidates and scores when it asks
        for more than one title)."""
        if payload.outputs:
            names = [output.name for output in payload.outputs]
            unknown = sorted(set(names) - set(OUTPUTS))
            if unknown:
                raise BadRequest(f"unknown output {unknown[0]!r}: this model has {', '.join(OUTPUTS)}")
            return [name for name in OUTPUTS if name in names]
        return list(OUTPUTS) if num_return > 1 else ["title"]


def _flatten(data: Any) -> list[Any]:
    """The items of V2 tensor data, which may be nested row by row or be a single item."""
    if not isinstance(data, list):
        return [data]
    return [leaf for item in data for leaf in _flatten(item)]


def _text_output(name: str, texts: list[str], shape: list[int]) -> ResponseOutput:
    return ResponseOutput(name=name, datatype=Datatype.BYTES, shape=shape,
                          data=[text.encode("utf-8") for text in texts],
                          parameters=Parameters(content_type="str"))


def _candidate_outputs(found: list[list[Title]], wanted: list[str]) -> list[ResponseOutput]:
    rows, width = len(found), len(found[0])
    made = {
        "title": lambda: _text_output("title", [row[0].text for row in found], [rows]),
        "candidates": lambda: _text_output("candidates", [title.text for row in found for title in row],
                                           [rows, width]),
        "scores": lambda: ResponseOutput(name="scores", datatype=Datatype.FP32, shape=[rows, width],
                                         data=[float(title.score) for row in found for title in row]),
    }
    return [made[name]() for name in wanted]
