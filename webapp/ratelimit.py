"""A per-client token bucket, so that one address cannot flood the feedback store (every stored
row becomes training data). In memory and per process: a limit that several processes share
would need a shared store, and a reverse proxy in front is the place for that."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict

MAX_CLIENTS = 10_000  # buckets remembered; about 100 bytes each, so about 1 MB at most


def client_key(address: str | None) -> str:
    """The key a client's requests are counted under: its IPv4 address, or its IPv6 /64 (one
    host is given a whole /64 and can pick any address in it, so counting single IPv6 addresses
    would give it 2**64 buckets)."""
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP address (a Unix socket, a test client): counted as given
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:  # an IPv4 client of a dual-stack socket
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class RateLimiter:
    """`per_minute` actions per client, in bursts of at most `per_minute`: each client has a
    bucket of that many tokens that refills evenly over a minute, and each action takes one.

    Memory is bounded: at most `max_clients` buckets are kept, the least recently seen one
    forgotten first. A forgotten client starts again with a full bucket, so the cap must be far
    above the number of clients active within a minute (an attacker who cycles through more
    addresses than that is beyond what a per-address limit can stop anyway). Thread-safe."""

    def __init__(self, per_minute: int, max_clients: int = MAX_CLIENTS) -> None:
        if per_minute <= 0 or max_clients <= 0:
            raise ValueError("per_minute and max_clients must be above 0")
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._rate = per_minute / 60.0  # tokens a second
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> tokens, when

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 when there was one, else the seconds until there is one
        (nothing is taken then, so a client that keeps trying is not punished further)."""
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.pop(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - then) * self._rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._rate
            self._buckets[key] = (tokens if wait else tokens - 1.0, now)  # now the most recent
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        """Clients remembered now."""
        with self._lock:
            return len(self._buckets)
