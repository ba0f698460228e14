"""A local stand-in for the GitHub REST API that replays recorded responses.

Responses (status, headers, JSON body) are keyed by request path + query, compared without
regard to the order of query parameters. Each key holds a list served in turn whose last
entry repeats, so "rate limited once, then the page" is `[rate_limited, page]`. In header
values `{base}` becomes this server's address (so Link headers lead back here), `{now+N}`
the current epoch second plus N (so rate-limit resets lie just ahead) and `{date+N}` that
time as an HTTP date (Retry-After's other form). Every request is recorded, headers
included, for tests to assert on.

A response can also misbehave as a slow or hostile server would: `delay` (seconds before
the answer starts), `drip` (the body sent a byte at a time, this many seconds apart),
`size` (the body is an issue padded to this many bytes, made while it is sent, so a 50 MB
answer is never held in memory), `chunked` (no Content-Length: chunked transfer
encoding) and `cut` (for a body with a Content-Length: the connection closed after this
many of its bytes, as by a server that died). Answers the client hung up on before their
end are listed in `hung_up`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

_NOW = re.compile(r"\{now\+(\d+)\}")
_DATE = re.compile(r"\{date\+(\d+)\}")
_PIECE = 64 * 1024
NOT_FOUND = {
    "status": 404,
    "headers": {"Content-Type": "application/json; charset=utf-8"},
    "body": {"message": "Not Found", "documentation_url": "https://docs.github.com/rest",
             "status": "404"},
}


def route_key(path_query: str) -> str:
    """Path plus query with its parameters sorted and decoded: one key per request."""
    parts = urlsplit(path_query)
    return f"{parts.path}?{urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))}"


@dataclass(frozen=True)
class Request:
    """One request the server received; `headers` has lower-case names."""

    method: str
    key: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass(frozen=True)
class HangUp:
    """An answer the client closed the connection on: `sent` of its body's `size` bytes went out."""

    key: str
    sent: int
    size: int


def _padded_issue(size: int) -> Iterator[bytes]:
    """An issue object `size` bytes long as JSON, in pieces, its body a run of one letter."""
    head, tail = b'{"title": "A very large issue", "body": "', b'"}'
    left = size - len(head) - len(tail)
    yield head
    while left > 0:
        yield b"a" * min(left, _PIECE)
        left -= _PIECE
    yield tail


def _dripped(pieces: Iterator[bytes], pause: float) -> Iterator[bytes]:
    for piece in pieces:
        for byte in piece:
            time.sleep(pause)
            yield bytes([byte])


class GitHubReplay:
    """Serve recorded GitHub API responses on 127.0.0.1 (a free port) in a thread."""

    def __init__(
        self, routes: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        responses: Mapping[str, Mapping[str, Any]] | None = None,
        fixtures: Path | None = None,
    ) -> None:
        self.fixtures = fixtures
        self.named: dict[str, Mapping[str, Any]] = dict(responses or {})
        self.requests: list[Request] = []
        self.hung_up: list[HangUp] = []
        self._routes: dict[str, list[Mapping[str, Any]]] = {}
        self._lock = threading.Lock()
        for key, served in (routes or {}).items():
            self.set(key, *served)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @classmethod
    def from_manifest(cls, path: Path) -> GitHubReplay:
        """Routes and named responses from a `responses.json` manifest; bodies beside it."""
        manifest = json.loads(path.read_text(encoding="utf-8"))
        return cls(manifest.get("routes"), manifest.get("responses"), path.parent)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set(self, path_query: str, *responses: Mapping[str, Any]) -> None:
        """Replace what `path_query` serves."""
        with self._lock:
            self._routes[route_key(path_query)] = list(responses)

    def queue(self, path_query: str, *responses: Mapping[str, Any]) -> None:
        """Serve `responses` first, then what `path_query` served before."""
        key = route_key(path_query)
        with self._lock:
            self._routes[key] = [*responses, *self._routes.get(key, [])]

    def fetched(self) -> list[str]:
        """The keys of the requests received so far, in order."""
        return [request.key for request in self.requests]

    def start(self) -> GitHubReplay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> GitHubReplay:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _next_response(self, key: str) -> Mapping[str, Any]:
        with self._lock:
            served = self._routes.get(key)
            if not served:
                return NOT_FOUND
            return served.pop(0) if len(served) > 1 else served[0]

    def _render(self, response: Mapping[str, Any]) -> tuple[int, dict[str, str], int, Iterator[bytes]]:
        """Status, headers, body size and the body in the pieces it is to be sent in."""
        now = int(time.time())

        def fill(value: str) -> str:
            value = value.replace("{base}", self.base_url)
            value = _DATE.sub(lambda m: formatdate(now + int(m.group(1)), usegmt=True), value)
            return _NOW.sub(lambda m: str(now + int(m.group(1))), value)

        headers = {name: fill(str(value)) for name, value in response.get("headers", {}).items()}
        if "size" in response:
            size, pieces = int(response["size"]), _padded_issue(int(response["size"]))
        else:
            body = self._body(response)
            size, pieces = len(body), iter([body])
        if "drip" in response:
            pieces = _dripped(pieces, float(response["drip"]))
        return int(response["status"]), headers, size, pieces

    def _body(self, response: Mapping[str, Any]) -> bytes:
        if "body_file" in response:
            assert self.fixtures is not None, "body_file needs a fixtures folder"
            return (self.fixtures / response["body_file"]).read_bytes()
        if "body" in response:
            return json.dumps(response["body"]).encode()
        return str(response.get("text", "")).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                key = route_key(self.path)
                replay.requests.append(Request(
                    method="GET", key=key, query=dict(parse_qsl(urlsplit(self.path).query)),
                    headers={name.lower(): value for name, value in self.headers.items()},
                ))
                response = replay._next_response(key)
                status, headers, size, pieces = replay._render(response)
                time.sleep(float(response.get("delay", 0)))
                chunked = bool(response.get("chunked"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(size))
                self.end_headers()
                if "cut" in response:
                    self.close_connection = True
                    pieces = iter([b"".join(pieces)[:int(response["cut"])]])
                self._send(key, size, pieces, chunked)

            def _send(self, key: str, size: int, pieces: Iterator[bytes], chunked: bool) -> None:
                sent = 0
                try:
                    for piece in pieces:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                        sent += len(piece)
                    if chunked:
                        self.wfile.write(b"0\r\n\r\n")
                except OSError:  # the client hung up (a reset or a broken pipe)
                    replay.hung_up.append(HangUp(key, sent, size))
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep test output quiet

        return Handler
