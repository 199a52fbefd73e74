"""Sentry: failed calls as Sentry events, every call as a transaction (extra ``[sentry]``).

Fed from sanitized events only: the tool, the status, the error type and category, the redacted
error message, sizes, and the redacted arguments only with ``export_arguments=True``. No id
reaches Sentry (not even the pseudonymous ones) and the Sentry user is never set.

:func:`guard` is installed as ``before_send`` and ``before_send_transaction`` (chained after the
application's own hooks when it initialised Sentry itself): whatever the application's Sentry
setup adds — request bodies, headers, cookies, the user, local variables of stack frames,
breadcrumb data — is dropped or passed through the same redactor as the privacy stage.

If the application has not initialised sentry-sdk, mcplens does so with ``sentry_dsn`` /
``MCPLENS_SENTRY_DSN`` (``send_default_pii=False``, ``traces_sample_rate`` from
``SENTRY_TRACES_SAMPLE_RATE`` or 1.0, no auto-enabled framework integrations, so one transaction per
call). Without either, the exporter stays idle.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import sentry_sdk

from mcplens import event as ev
from mcplens.exporters.base import Exporter, ExporterContext

logger = logging.getLogger("mcplens")

#: statuses reported as Sentry events (a cancelled or rate-limited call is not a failure of the server)
FAILURES = (ev.TOOL_ERROR, ev.JSONRPC_ERROR, ev.EXCEPTION, ev.TIMEOUT)
_CONTEXT_FIELDS = (
    ev.METHOD, ev.TARGET, ev.TOOL_NAME, ev.PROMPT_NAME, ev.RESOURCE_URI, ev.STATUS, ev.ERROR_TYPE, ev.RPC_CODE,
    ev.ERROR_CATEGORY, ev.ERROR_MESSAGE, ev.DURATION, ev.REQUEST_SIZE, ev.RESPONSE_SIZE, ev.TRANSPORT,
    ev.PROTOCOL_VERSION, ev.CLIENT_NAME, ev.CLIENT_VERSION, ev.SERVER_NAME, ev.SERVER_VERSION, ev.REDACTIONS,
)
_TAG_FIELDS = (ev.METHOD, ev.TARGET, ev.STATUS, ev.ERROR_TYPE, ev.ERROR_CATEGORY, ev.TRANSPORT)
#: what a transaction carries besides its tags (the failure events carry the whole context)
_TX_DATA = (ev.ERROR_CATEGORY, ev.REQUEST_SIZE, ev.RESPONSE_SIZE, ev.ARGS, ev.ARGUMENTS)
_DROP_REQUEST = ("data", "cookies", "headers", "query_string", "env", "url")


def make_guard(redactor: Any) -> Callable[[dict[str, Any], Any], dict[str, Any] | None]:
    """A ``before_send`` that strips what the privacy stage would strip."""

    def text(s: Any) -> Any:
        return redactor.text(s)[0] if isinstance(s, str) else s

    def value(v: Any) -> Any:
        return redactor.value(v)[0]

    def guard(event: dict[str, Any], hint: Any = None) -> dict[str, Any] | None:
        event.pop("user", None)
        request = event.get("request")
        if isinstance(request, dict):
            for key in _DROP_REQUEST:
                request.pop(key, None)
        for key in ("message",):
            if key in event:
                event[key] = text(event[key])
        logentry = event.get("logentry")
        if isinstance(logentry, dict):
            logentry["message"] = text(logentry.get("message"))
            logentry.pop("params", None)
            if "formatted" in logentry:
                logentry["formatted"] = text(logentry["formatted"])
        for values_key in ("exception", "threads"):
            block = event.get(values_key)
            for item in (block.get("values") or []) if isinstance(block, dict) else []:
                if not isinstance(item, dict):
                    continue
                if "value" in item:
                    item["value"] = text(item["value"])
                frames = (item.get("stacktrace") or {}).get("frames") or []
                for frame in frames:
                    if isinstance(frame, dict):
                        frame.pop("vars", None)
        crumbs = event.get("breadcrumbs")
        for crumb in (crumbs.get("values") or []) if isinstance(crumbs, dict) else []:
            if isinstance(crumb, dict):
                crumb.pop("data", None)
                if "message" in crumb:
                    crumb["message"] = text(crumb["message"])
        for key in ("extra", "tags"):
            if isinstance(event.get(key), dict):
                event[key] = value(event[key])
        contexts = event.get("contexts")
        if isinstance(contexts, dict):
            for name, ctx in list(contexts.items()):
                if name not in ("trace", "runtime", "os", "device", "app") and isinstance(ctx, dict):
                    contexts[name] = value(ctx)
        for span in event.get("spans") or []:
            if isinstance(span, dict):
                if isinstance(span.get("data"), dict):
                    span["data"] = value(span["data"])
                if "description" in span:
                    span["description"] = text(span["description"])
        if "transaction" in event:
            event["transaction"] = text(event["transaction"])
        return event

    return guard


def _chain(first: Callable[..., Any] | None, guard: Callable[..., Any]) -> Callable[..., Any]:
    if first is None or getattr(first, "_mcplens_guard", False):
        chained = guard
    else:
        def chained(event: dict[str, Any], hint: Any) -> dict[str, Any] | None:
            out = first(event, hint)
            return None if out is None else guard(out, hint)
    chained._mcplens_guard = True  # type: ignore[attr-defined]
    return chained


def ensure_client(dsn: str | None, guard: Callable[..., Any]) -> bool:
    """Initialise sentry-sdk with ``dsn`` unless the application did; install the guard. Active?"""
    client = sentry_sdk.get_client()
    if not client.is_active():
        if not dsn:
            return False
        rate = os.environ.get("SENTRY_TRACES_SAMPLE_RATE")
        sentry_sdk.init(
            dsn=dsn, send_default_pii=False, traces_sample_rate=float(rate) if rate else 1.0,
            before_send=guard, before_send_transaction=guard, include_local_variables=False,
            auto_enabling_integrations=False,  # no second transaction per request from Starlette & co
        )
        return True
    options = client.options
    options["before_send"] = _chain(options.get("before_send"), guard)
    options["before_send_transaction"] = _chain(options.get("before_send_transaction"), guard)
    options["send_default_pii"] = False
    return True


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)  # noqa: UP017 - explicit for readers


class SentryExporter(Exporter):
    """Failed calls as Sentry events, every call as a transaction; Sentry's own additions guarded."""

    name = "sentry"

    def __init__(self, redactor: Any = None, *, dsn: str | None = None, export_arguments: bool = False) -> None:
        self.redactor = redactor
        self.dsn = dsn
        self.export_arguments = export_arguments
        self.active = False

    @classmethod
    def from_settings(cls, settings: Any) -> SentryExporter:
        return cls(dsn=settings.sentry_dsn, export_arguments=settings.export_arguments)

    def setup(self, ctx: ExporterContext | None = None) -> None:
        """Install the guard (with the privacy stage's redactor) and initialise Sentry if the app did not."""
        if self.redactor is None:
            if ctx is None or ctx.redactor is None:
                raise ValueError("the sentry exporter needs the privacy stage's redactor")
            self.redactor = ctx.redactor
        self.guard = make_guard(self.redactor)
        self.active = ensure_client(self.dsn, self.guard)
        if not self.active:
            logger.warning("mcplens: the sentry exporter is on but Sentry is not initialised and no "
                           "sentry_dsn / MCPLENS_SENTRY_DSN is set; nothing is sent")

    def context(self, e: Mapping[str, Any]) -> dict[str, Any]:
        ctx = {k: e[k] for k in _CONTEXT_FIELDS if e.get(k) is not None}
        if self.export_arguments and e.get(ev.ARGUMENTS) is not None:
            ctx[ev.ARGUMENTS] = e[ev.ARGUMENTS]
        elif e.get(ev.ARGS) is not None:
            ctx[ev.ARGS] = e[ev.ARGS]  # names and sizes only
        return ctx

    def export(self, events: Sequence[Mapping[str, Any]]) -> None:
        if not self.active:
            return
        for e in events:
            if e.get(ev.EVENT_KIND) != "request":
                continue
            ctx = self.context(e)
            tags = {k: str(e[k]) for k in _TAG_FIELDS if e.get(k) is not None}
            name = " ".join(str(x) for x in (e.get(ev.METHOD), e.get(ev.TOOL_NAME) or e.get(ev.PROMPT_NAME)) if x)
            status = e.get(ev.STATUS)
            if status in FAILURES:
                sentry_sdk.capture_event({
                    "message": f"{name}: {status} ({e.get(ev.ERROR_TYPE)})",
                    "level": "error",
                    "logger": "mcplens",
                    "tags": tags,
                    "contexts": {"mcp": ctx},
                    "fingerprint": ["mcplens", str(e.get(ev.METHOD)), str(e.get(ev.TARGET)), str(e.get(ev.ERROR_TYPE))],
                    "timestamp": e.get(ev.TIME),
                })
            self._transaction(e, name, ctx, tags)

    def _transaction(self, e: Mapping[str, Any], name: str, ctx: dict[str, Any], tags: dict[str, str]) -> None:
        start = e.get(ev.TIME)
        if not isinstance(start, int | float):
            return
        duration = e.get(ev.DURATION)
        kwargs: dict[str, Any] = {"name": name or "mcp", "op": "mcp.server", "start_timestamp": _ts(start)}
        if isinstance(e.get(ev.TRACE_ID), str) and len(e[ev.TRACE_ID]) == 32:
            kwargs["trace_id"] = e[ev.TRACE_ID]
        tx = sentry_sdk.start_transaction(**kwargs)
        for k, v in tags.items():
            tx.set_tag(k, v)
        for k in _TX_DATA:  # sentry-sdk serialises every node (~15 µs each): keep transactions lean
            if k in ctx:
                tx.set_data(k, ctx[k])
        status = e.get(ev.STATUS)
        tx.set_status("ok" if status == ev.OK else "cancelled" if status == ev.CANCELLED else "internal_error")
        tx.finish(end_timestamp=_ts(start + (duration if isinstance(duration, int | float) else 0.0)))

    def flush(self) -> None:
        if self.active:
            client = sentry_sdk.get_client()
            try:
                client.flush(timeout=2.0)
            except Exception:  # noqa: BLE001
                pass
