"""A local stand-in for the GitHub REST API that replays recorded responses.

Responses (status, headers, JSON body) are keyed by request path + query, compared without
regard to the order of query parameters. Each key holds a list served in turn whose last
entry repeats, so "rate limited once, then the page" is `[rate_limited, page]`. In header
values `{base}` becomes this server's address (so Link headers lead back here) and `{now+N}`
the current epoch second plus N (so rate-limit resets lie just ahead). Every request is
recorded, headers included, for tests to assert on.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

_NOW = re.compile(r"\{now\+(\d+)\}")
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

    def _render(self, response: Mapping[str, Any]) -> tuple[int, dict[str, str], bytes]:
        now = int(time.time())

        def fill(value: str) -> str:
            value = value.replace("{base}", self.base_url)
            return _NOW.sub(lambda m: str(now + int(m.group(1))), value)

        headers = {name: fill(str(value)) for name, value in response.get("headers", {}).items()}
        if "body_file" in response:
            assert self.fixtures is not None, "body_file needs a fixtures folder"
            body = (self.fixtures / response["body_file"]).read_bytes()
        elif "body" in response:
            body = json.dumps(response["body"]).encode()
        else:
            body = str(response.get("text", "")).encode()
        return int(response["status"]), headers, body

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
                status, headers, body = replay._render(replay._next_response(key))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep test output quiet

        return Handler
