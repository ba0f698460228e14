"""The web app's Prometheus metrics, kept in memory and written in the text exposition format
(a few counters and one histogram need no client library)."""

from __future__ import annotations

import bisect
import threading
from collections import Counter, defaultdict

PREFIX = "issue_summarizer_web"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # seconds
# Label values come from closed sets, since every new value is a new series kept in memory and
# sent on each scrape: a client chooses the method (any token is valid HTTP), so only the
# standard ones are kept; the route is the app's URL rule or "unmatched", never the path.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
OTHER = "other"


_Sample = tuple[str, dict[str, str], float]  # name suffix, labels, value


def _labels(values: dict[str, str]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    if not values:
        return ""
    return "{" + ",".join(f'{name}="{escape(value)}"' for name, value in values.items()) + "}"


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # per bucket, the last one above every bound
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds


class Metrics:
    """Request counts by route, method and status; latency by route; errors by cause; titles
    written; and which model answers. Safe to update from the server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str, str]] = Counter()
        self._latency: defaultdict[str, _Histogram] = defaultdict(_Histogram)
        self._errors: Counter[str] = Counter()
        self._titles = 0
        self._model: tuple[str, str] | None = None

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request: `route` is a URL rule or "unmatched"; an invented method or an
        impossible status is counted as "other"."""
        method = method if method in METHODS else OTHER
        status_label = str(status) if 100 <= status <= 599 else OTHER
        with self._lock:
            self._requests[(route, method, status_label)] += 1
            self._latency[route].observe(seconds)

    def error(self, kind: str) -> None:
        with self._lock:
            self._errors[kind] += 1

    def titles(self, count: int) -> None:
        with self._lock:
            self._titles += count

    def model(self, version: str, mode: str) -> None:
        with self._lock:
            self._model = (version, mode)

    def render(self) -> str:
        """The Prometheus text format (version 0.0.4)."""
        with self._lock:
            latency: list[_Sample] = []
            for route, histogram in sorted(self._latency.items()):
                cumulative = 0
                for bound, count in zip((*map(str, BUCKETS), "+Inf"), histogram.counts, strict=True):
                    cumulative += count
                    latency.append(("_bucket", {"route": route, "le": bound}, cumulative))
                latency.append(("_sum", {"route": route}, histogram.sum))
                latency.append(("_count", {"route": route}, cumulative))
            model = [("", {"version": self._model[0], "mode": self._model[1]}, 1)] if self._model else []
            lines = [
                *_family("requests_total", "counter", "HTTP requests answered, by route, method and status.",
                         [("", {"route": route, "method": method, "status": status}, count)
                          for (route, method, status), count in sorted(self._requests.items())]),
                *_family("request_seconds", "histogram", "Time to answer a request, by route.", latency),
                *_family("errors_total", "counter", "Requests answered with an error message, by cause.",
                         [("", {"kind": kind}, count) for kind, count in sorted(self._errors.items())]),
                *_family("titles_total", "counter", "Titles suggested.", [("", {}, self._titles)]),
                *_family("model_info", "gauge", "The model that answers: its version and where it runs.",
                         model),
            ]
        return "\n".join(lines) + "\n"


def _family(name: str, kind: str, help_text: str, samples: list[_Sample]) -> list[str]:
    full = f"{PREFIX}_{name}"
    lines = [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}"]
    for suffix, labels, value in samples:
        lines.append(f"{full}{suffix}{_labels(labels)} {value!r}")
    return lines
