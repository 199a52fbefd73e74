"""mcplens: privacy-safe monitoring for MCP servers.

``mcplens.instrument(server)`` is the whole integration. Importing this package stays cheap:
the standard library and orjson (imported by the writer), no framework, no DuckDB.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mcplens import event
from mcplens.config import Settings, disabled, from_env

if TYPE_CHECKING:
    from mcplens.privacy.policy import Policy, ToolPolicy


def __getattr__(name: str) -> Any:
    """``mcplens.Policy`` and ``mcplens.ToolPolicy`` without importing the privacy code up front."""
    if name in ("Policy", "ToolPolicy"):
        from mcplens.privacy import policy

        return getattr(policy, name)
    raise AttributeError(f"module 'mcplens' has no attribute {name!r}")

__version__ = "0.1.0"
__all__ = ["Instrumentation", "instrument", "flush", "stats", "event", "Settings", "Policy", "ToolPolicy"]

logger = logging.getLogger("mcplens")
_ATTR = "_mcplens_instrumentation"


@dataclass
class Instrumentation:
    """Handle returned by :func:`instrument`: flush, read the counters, or undo it."""

    server: Any
    active: bool
    reason: str = ""
    _lowlevel: Any = field(default=None, repr=False)
    _middleware: Any = field(default=None, repr=False)
    _limiter: Any = field(default=None, repr=False)
    #: the pipeline this server's events go through (None when not active)
    pipeline: Any = field(default=None, repr=False)

    def flush(self) -> None:
        flush()

    def stats(self) -> dict[str, int]:
        return stats()

    def uninstrument(self) -> None:
        """Take the middleware out again; the server keeps serving as if never instrumented."""
        if self._lowlevel is not None and self._middleware is not None:
            for m in (self._middleware, self._limiter):
                try:
                    if m is not None:
                        self._lowlevel.middleware.remove(m)
                except ValueError:
                    pass
            if getattr(self._lowlevel, _ATTR, None) is self:
                delattr(self._lowlevel, _ATTR)
        self.active = False


def _resolve(server: Any) -> tuple[Any, str, str | None, str | None]:
    """(SDK low-level Server, capture name, server name, version) for a supported server."""
    cls_names = {f"{c.__module__}.{c.__qualname__}" for c in type(server).__mro__}
    if any(n.startswith("fastmcp.") and n.endswith(".FastMCP") for n in cls_names):
        low = getattr(server, "_mcp_server", None)
        return low, "fastmcp", getattr(server, "name", None), getattr(server, "version", None)
    if "mcp.server.mcpserver.server.MCPServer" in cls_names:
        low = getattr(server, "_lowlevel_server", None)
        return low, "sdk", getattr(server, "name", None), getattr(server, "version", None)
    if "mcp.server.lowlevel.server.Server" in cls_names:
        return server, "sdk", getattr(server, "name", None), getattr(server, "version", None)
    raise TypeError(
        f"mcplens.instrument() supports an mcp SDK MCPServer or low-level Server (mcp 2.x) and a "
        f"FastMCP server (fastmcp 4.x); got {type(server).__module__}.{type(server).__qualname__}. "
        f"For any other server, run it under `mcplens proxy -- <command>`."
    )


_lock = threading.Lock()


def instrument(
    server: Any,
    *,
    home: str | os.PathLike[str] | None = None,
    mode: Literal["local", "packaged"] | None = None,
    opt_in_env: str | None = None,
    privacy: Policy | None = None,
    processors: Sequence[Callable[[dict[str, Any]], dict[str, Any] | None]] | None = None,
    config: str | os.PathLike[str] | None = None,
    rate_limit: str | None = None,
    exporters: Sequence[str] | str | None = None,
    log_file: str | os.PathLike[str] | None = None,
    prometheus_host: str | None = None,
    prometheus_port: int | None = None,
    sentry_dsn: str | None = None,
    export_arguments: bool | None = None,
    server_name: str | None = None,
    server_version: str | None = None,
    queue_size: int | None = None,
    queue_bytes: int | None = None,
    flush_interval: float | None = None,
    exporter_shutdown_timeout: float | None = None,
    exporter_queue_size: int | None = None,
    segment_max_bytes: int | None = None,
    segment_max_age: float | None = None,
    handle_sigterm: bool | None = None,
    store: str | None = None,
) -> Instrumentation:
    """Record every request ``server`` handles. One line, fail-open, idempotent.

    Every option is keyword-only and overrides its ``MCPLENS_*`` environment setting (None: the
    environment's, else the default; see :class:`mcplens.Settings`): ``home`` (the data
    directory), ``mode="packaged"`` (collect nothing until the end user opts in, also through
    ``opt_in_env``), ``privacy=Policy(...)``, ``processors=[...]`` (run after the built-in
    privacy processors), ``config`` (a TOML file with a [privacy] table), ``rate_limit="60/min"``
    (a per-client token bucket; refused calls get JSON-RPC error -32029 and are recorded as
    ``rate_limited``), ``exporters=["log", "otel", "prometheus", "sentry"]`` (opt-in, fed after the
    privacy stage) with ``log_file``, ``prometheus_host``/``prometheus_port``, ``sentry_dsn``,
    ``export_arguments``; ``server_name``/``server_version`` when the framework does not tell
    them; and the pipeline's limits (``queue_size``, ``queue_bytes``, ``flush_interval``,
    ``exporter_shutdown_timeout``, ``exporter_queue_size``, ``segment_max_bytes``,
    ``segment_max_age``, ``handle_sigterm``); ``store="postgresql://..."`` writes to a shared
    PostgreSQL database instead of the local files (the ``[postgres]`` extra; see store/postgres).

    Servers instrumented with the same data directory, policy, processors and exporters share
    one pipeline; a server with another policy gets its own, so each one's events follow its own.
    Raises ``TypeError`` for an object that is not a supported server or an unknown option, and
    ``ValueError`` for a bad value; a second call on the same server returns the first handle
    and changes nothing.
    """
    options: dict[str, Any] = {
        "home": home, "mode": mode, "opt_in_env": opt_in_env, "privacy": privacy, "processors": processors,
        "config": config, "rate_limit": rate_limit, "exporters": exporters, "log_file": log_file,
        "prometheus_host": prometheus_host, "prometheus_port": prometheus_port, "sentry_dsn": sentry_dsn,
        "export_arguments": export_arguments, "server_name": server_name, "server_version": server_version,
        "queue_size": queue_size, "queue_bytes": queue_bytes, "flush_interval": flush_interval,
        "exporter_shutdown_timeout": exporter_shutdown_timeout, "exporter_queue_size": exporter_queue_size,
        "segment_max_bytes": segment_max_bytes, "segment_max_age": segment_max_age,
        "handle_sigterm": handle_sigterm, "store": store,
    }
    settings = from_env().with_overrides(**options)  # bad options fail here, before any change
    low, capture, name, version = _resolve(server)
    if low is None or not isinstance(getattr(low, "middleware", None), list):
        raise TypeError(
            f"{type(server).__qualname__} has no SDK middleware list to hook (is the mcp SDK older than 2.x?)"
        )
    if disabled():
        return Instrumentation(server, active=False, reason="MCPLENS_DISABLED is set")
    allowed, why = settings.opted_in()
    if not allowed:  # packaged mode without opt-in: no file, no thread, no socket
        return Instrumentation(server, active=False, reason=why)
    settings.effective_policy()  # a malformed policy or config file fails here, before any change
    with _lock:
        existing = getattr(low, _ATTR, None)
        if isinstance(existing, Instrumentation) and existing.active:
            logger.info("mcplens: %r is already instrumented; the second instrument() is a no-op", name)
            return existing
        from mcplens.capture.sdk import EventBuilder, capture_middleware, hook_http
        from mcplens.pipeline import get_pipeline

        pipeline = get_pipeline(settings)
        server_name = settings.server_name or name
        server_version = settings.server_version or version
        pipeline.set_base(**{event.SERVER_NAME: server_name, event.SERVER_VERSION: server_version})
        build = EventBuilder(pipeline, server_name, server_version, capture)
        build.learn_resources(server)
        hook_http(server, pipeline, build)  # 401/403 from the HTTP auth layer never reach the middleware
        hooks: list[Any] = []
        if settings.exporters:  # opt-in exporters (log, otel, prometheus, sentry); none by default
            from mcplens.exporters import start as start_exporters

            started = start_exporters(pipeline, settings, service_name=server_name, service_version=server_version)
            for exporter in started.values():
                exporter.instrumenting(low, capture)
                hook = exporter.request_hook()
                if hook is not None:
                    hooks.append(hook)
        middleware = capture_middleware(pipeline, build, hooks)
        low.middleware.insert(0, middleware)
        limiter = None
        if settings.rate_limit:  # right after the capture, so refused calls are recorded as rate_limited
            from mcplens.capture.ratelimit import RateLimiter, RateLimitMiddleware

            limiter = RateLimitMiddleware(RateLimiter(settings.rate_limit))
            low.middleware.insert(1, limiter)
        handle = Instrumentation(server, active=True, _lowlevel=low, _middleware=middleware, _limiter=limiter,
                                 pipeline=pipeline)
        setattr(low, _ATTR, handle)
        return handle


def flush() -> None:
    """Write out every event captured so far (the writer does this on its own every interval)."""
    from mcplens.pipeline import pipelines

    for pipeline in pipelines():
        pipeline.flush()


def stats() -> dict[str, int]:
    """The pipeline's own counters: enqueued, written, dropped, faults, write_failures."""
    from mcplens.pipeline import pipelines

    totals: dict[str, int] = {}
    for pipeline in pipelines():
        for key, value in pipeline.counters.items():
            totals[key] = totals.get(key, 0) + value
    return totals
