"""What one request may ask of the model, and how many requests may decode at once.

Every entry point (the web app, the Seldon wrapper, the V2 runtime) applies the same rule
before any decoding: bodies per request, characters per body, and the request's cost, counted
in titles decoded (each beam, each sample and the consensus's greedy title is about one). A
request over the budget is refused with a message saying what to send instead; a request that
finds every slot taken is told to come back (503 with Retry-After) at once, since a queue that
grows without end only turns overload into timeouts for everyone, health checks included.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from summarizer.cleaning import clean_body, has_words
from summarizer.decoding import DecodeConfig
from summarizer.errors import Busy, NothingToSummarize, RequestError
from summarizer.records import UNDECODABLE

MAX_BATCH = 64
MAX_BODY_CHARS = 100_000  # the model reads only the start of a body (see cleaning.model_text)
# Titles decoded per request. Here (one core) a title costs about 10 ms, so a request holds a
# core for about 5 s at most: 64 bodies at beam 8, or 13 at the web page's setting (beam 4,
# the greedy title and 32 samples). 64 bodies at beam 16 (1,024) took 14 s and 1.5 GB.
MAX_COST = 512
MAX_IN_FLIGHT = 2  # per process: below its server threads, so health checks find one free


def cost(bodies: int, config: DecodeConfig) -> int:
    """Titles decoded for `bodies` bodies under `config` (the consensus adds the greedy title)."""
    return bodies * (config.num_beams + config.samples + int(config.consensus))


def check_text(bodies: Sequence[str]) -> None:
    """Bodies must be text the tokenizer can take: a lone surrogate (a broken \\u escape in
    JSON) cannot be encoded and would fail deep inside it."""
    if isinstance(bodies, str) or not all(isinstance(body, str) for body in bodies):
        raise RequestError("bodies must be a list of strings")
    for index, body in enumerate(bodies):
        if not body.isascii() and UNDECODABLE.search(body):
            raise RequestError(f"body {index} holds characters that are not valid Unicode text (a lone "
                               "surrogate, e.g. from a broken \\u escape); send UTF-8 text")


def check_request(bodies: Sequence[str], config: DecodeConfig, max_batch: int = MAX_BATCH,
                  max_body_chars: int = MAX_BODY_CHARS, max_cost: int = MAX_COST) -> None:
    """Refuse a request over the limits (413), naming the limit and what to send instead, or
    with a body that has nothing to summarize (422)."""
    if not bodies:
        raise RequestError("no issue bodies in the request: send at least one")
    check_text(bodies)
    if len(bodies) > max_batch:
        raise RequestError(f"{len(bodies)} bodies in one request; the limit is MAX_BATCH={max_batch}: "
                           "send them in smaller batches", 413)
    for index, body in enumerate(bodies):
        if len(body) > max_body_chars:
            raise RequestError(f"body {index} has {len(body):,} characters; the limit is "
                               f"MAX_BODY_CHARS={max_body_chars:,}", 413)
    # The engine refuses these too; found here, they are answered without waiting for a slot.
    empty = [index for index, body in enumerate(bodies) if not has_words(clean_body(body))]
    if empty:
        raise NothingToSummarize(empty)
    asked = cost(len(bodies), config)
    if asked > max_cost:
        per_body = asked // len(bodies)
        raise RequestError(f"this request asks for {asked:,} titles decoded ({len(bodies)} bodies x "
                           f"{per_body} each: beams, samples and the consensus's greedy title); the limit "
                           f"is {max_cost:,}: send at most {max(max_cost // per_body, 1)} bodies at a time, "
                           "or ask for fewer beams or samples", 413)


class Gate:
    """At most `slots` requests decode at once in this process; one more is refused with Busy
    at once. Busy's Retry-After is the recent time a request took, which is when a slot is
    likely free again."""

    def __init__(self, slots: int = MAX_IN_FLIGHT) -> None:
        if slots < 1:
            raise ValueError("a gate needs at least one slot")
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._recent = 1.0  # seconds, a moving average of the requests that got through

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._free.acquire(blocking=False):
            wait = max(math.ceil(self._recent), 1)
            raise Busy(f"the server is busy with {self.slots} requests already; try again in {wait} s",
                       retry_after=wait)
        started = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._recent = 0.8 * self._recent + 0.2 * (time.monotonic() - started)
            self._free.release()
