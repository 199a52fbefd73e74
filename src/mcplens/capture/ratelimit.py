"""An optional per-client token-bucket rate limiter.

:class:`RateLimiter` is plain standard-library code with no SDK dependency, so any way in (the
SDK middleware below, the proxies) can use it: ``limiter.allow(client_key)`` answers whether one
more call may pass. :class:`RateLimitMiddleware` is the thin SDK adapter that
``instrument(server, rate_limit="60/min")`` inserts right after mcplens's own capture middleware,
so every refused call is still recorded — with status ``rate_limited`` (the capture maps the
limiter's JSON-RPC code :data:`RATE_LIMITED_CODE`, -32029, to it). The refused calls are the
count of hits, per client and tool, in the store.

The answer a refused client gets is a JSON-RPC error: code -32029, message
``"Rate limit exceeded: 60/min per client; retry in 0.8 s"``, data ``{"retryAfter": 0.8}``.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final

from mcplens.capture.common import MODERN_CLIENT_INFO, RATE_LIMITED_CODE

__all__ = ["RATE_LIMITED_CODE", "RateLimiter", "RateLimitMiddleware", "parse_rate"]

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d*\.?\d*)\s*(s|sec|second|m|min|minute|h|hour)\s*$", re.I)
_UNITS: Final = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
                 "h": 3600.0, "hour": 3600.0}
#: only tool calls, prompts and resource reads are limited: the handshake, lists and pings always pass
LIMITED_METHODS: Final = frozenset({"tools/call", "prompts/get", "resources/read"})


def parse_rate(text: str) -> tuple[float, float]:
    """``"60/min"``, ``"5/s"``, ``"1000/h"``, ``"10/30s"`` -> (calls, per seconds)."""
    m = _RATE.match(str(text))
    if not m:
        raise ValueError(f"cannot read rate limit {text!r}: use calls/period like 60/min, 5/s, 1000/h or 10/30s")
    calls = float(m.group(1))
    period = float(m.group(2) or 1) * _UNITS[m.group(3).lower()]
    if calls <= 0 or period <= 0:
        raise ValueError(f"rate limit {text!r} must allow a positive number of calls per positive period")
    return calls, period


class RateLimiter:
    """Token buckets per client key: ``calls`` per ``period`` seconds, bursts up to ``burst``.

    Thread-safe; keeps at most ``max_clients`` buckets (least recently seen dropped first).
    """

    def __init__(self, rate: str | tuple[float, float], *, burst: float | None = None, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.calls, self.period = parse_rate(rate) if isinstance(rate, str) else (float(rate[0]), float(rate[1]))
        self.spec = rate if isinstance(rate, str) else f"{self.calls:g}/{self.period:g}s"
        self.refill = self.calls / self.period  # tokens per second
        self.capacity = float(burst if burst is not None else self.calls)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, last)
        self._max = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self.hits = 0

    def allow(self, key: str) -> bool:
        return self.acquire(key) == 0.0

    def acquire(self, key: str) -> float:
        """0.0 when the call may pass (a token is taken), else the seconds until one is available."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.refill)
            if tokens >= 1.0:
                wait = 0.0
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.refill
                self.hits += 1
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            return wait

    def message(self, wait: float) -> str:
        return f"Rate limit exceeded: {self.spec} per client; retry in {wait:.1f} s"


def client_key(ctx: Any) -> str:
    """Who is calling, as the SDK request context tells it: HTTP session or address, else clientInfo.

    Only used as a bucket key in memory, never recorded.
    """
    request = getattr(ctx, "request", None)
    if request is not None:
        sid = request.headers.get("mcp-session-id")
        if sid:
            return "s:" + sid
        host = getattr(getattr(request, "client", None), "host", None)
        if host:
            return "a:" + str(host)
    meta = getattr(ctx, "meta", None)
    info = meta.get(MODERN_CLIENT_INFO) if isinstance(meta, dict) else None
    if isinstance(info, dict) and info.get("name"):
        return "n:" + str(info.get("name"))
    connection = getattr(getattr(ctx, "session", None), "_connection", None)
    if connection is not None:
        return f"c:{id(connection):x}"
    return "default"


class RateLimitMiddleware:
    """SDK middleware: refuse a call over the client's rate with JSON-RPC error -32029."""

    def __init__(self, limiter: RateLimiter, key: Callable[[Any], str] = client_key) -> None:
        self.limiter = limiter
        self._key = key

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.method in LIMITED_METHODS:
            try:
                wait = self.limiter.acquire(self._key(ctx))
            except Exception:  # noqa: BLE001 - fail open: a limiter bug must not refuse calls
                wait = 0.0
            if wait > 0.0:
                from mcp.shared.exceptions import MCPError

                raise MCPError(RATE_LIMITED_CODE, self.limiter.message(wait), {"retryAfter": round(wait, 3)})
        return await call_next(ctx)
