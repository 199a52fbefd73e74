"""In-process capture through the mcp SDK's server middleware (mcp 2.x).

``Server.middleware`` wraps every inbound message on every transport, ``initialize``,
unknown methods and validation failures included, and FastMCP 4.x serves through an SDK
``Server`` too (``FastMCP._mcp_server``), so one outermost middleware covers the low-level
``Server``, ``MCPServer`` and ``FastMCP`` in both protocol eras.

The middleware itself only reads a clock twice and enqueues references (``Pipeline.submit``,
the one enqueue of every capture path); :class:`EventBuilder` turns them into events later, on
the writer thread. An exporter that needs a part of the request path (the OTel SERVER span)
gives a :class:`RequestHook`, run by :class:`HookedCaptureMiddleware`.

Requests refused by the HTTP layer before they reach the SDK (bearer/JWT auth answering 401 or
403) never pass through that middleware; :func:`hook_http` adds an ASGI middleware to the HTTP
app the server builds, which records each such refusal as an ``unauthorized`` event. It never
reads the ``Authorization`` header: no token is kept anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any

from mcplens import _json
from mcplens import event as ev
from mcplens.capture import sessions
from mcplens.capture.common import (
    JSONRPC_INVALID_PARAMS,
    MODERN_CLIENT_INFO,
    MODERN_PROTOCOL,
    Exchange,
    UriTemplates,
    build_event,
    event_ids,
    parse_traceparent,
    reply_items,
)
from mcplens.event_templates import KEY_FIELD, MAX_PARAMS_BYTES, MAX_TEMPLATES, Sanitized, Template
from mcplens.pipeline import Builder, Pipeline

CallNext = Callable[[Any], Awaitable[Any]]


def _dump(value: Any) -> Any:
    """A handler's result as its wire dict (FastMCP may hand an outer middleware a model)."""
    if value is None or isinstance(value, dict):
        return value
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(by_alias=True, mode="json", exclude_none=True)
    return value


class _ClaimWatch(dict[Any, Any]):
    """Stands in for the SDK's registry of claimed stdio descriptors and notes when fd 0 is served.

    The SDK's ``stdio_server()`` registers fd 0 here for as long as it serves; the writer thread
    builds events later, possibly after the server stopped, so it needs the times, not the state.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.claimed_at: float | None = perf_counter() if 0 in self else None
        self.released_at: float | None = None

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        if key == 0:
            self.claimed_at, self.released_at = perf_counter(), None

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        if key == 0:
            self.released_at = perf_counter()

    def served_stdio_at(self, t: float) -> bool:
        return self.claimed_at is not None and self.claimed_at <= t and (
            self.released_at is None or t <= self.released_at
        )


def _watch_stdio() -> _ClaimWatch | None:
    """Install the watch over ``mcp.server.stdio._claims`` once; None if this SDK has no registry."""
    try:
        from mcp.server import stdio
    except Exception:  # noqa: BLE001
        return None
    claims = getattr(stdio, "_claims", None)
    if isinstance(claims, _ClaimWatch):
        return claims
    if not isinstance(claims, dict):
        return None
    lock = getattr(stdio, "_claims_lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        watch = _ClaimWatch(claims)
        stdio._claims = watch
    return watch


class RequestHook:
    """An exporter's part of the in-process request path (the OTel SERVER span); fail-open.

    ``enter(ctx)`` runs before the handler and returns a token; ``exit(token)`` runs after it,
    still on the request path, and returns what travels with the raw capture to the writer
    thread; ``attach(event, carried)`` runs there once the capture is built (``event`` is its
    event, or None when it made none or was dropped at the queue), before the privacy stage
    and the processors. A hook that raises costs its own work only: the call goes on untouched.
    """

    def enter(self, ctx: Any) -> Any:
        return None

    def exit(self, token: Any) -> Any:
        return token

    def attach(self, event: dict[str, Any] | None, carried: Any) -> None:
        return None


class CaptureMiddleware:
    """The outermost SDK middleware. Hot path: two clock reads, a tuple, one ``Pipeline.submit``.

    It keeps what the event needs, not the request context: holding every context (and its
    per-request session) until the writer drains them kept enough objects alive to double the
    garbage collector's work (bench/RESULTS.md).
    """

    __slots__ = ("_submit", "_build", "__weakref__")

    def __init__(self, pipeline: Pipeline, build: Builder) -> None:
        self._submit = pipeline.submit
        self._build = build

    async def __call__(self, ctx: Any, call_next: CallNext) -> Any:
        t0 = perf_counter()
        error: BaseException | None
        try:
            result = await call_next(ctx)
        except BaseException as exc:
            result, error = None, exc
        else:
            error = None
        try:
            self._submit(self._build, (
                ctx.method, ctx.params, ctx.request_id, ctx.meta, ctx.protocol_version,
                getattr(ctx.session, "_connection", None), ctx.request, t0, perf_counter(), result, error,
            ))
        except Exception:  # noqa: BLE001 - fail open: the caller's outcome is untouched
            pass
        if error is not None:
            raise error
        return result


class HookedCaptureMiddleware(CaptureMiddleware):
    """:class:`CaptureMiddleware` with exporters' request hooks around the handler (a separate
    class, so the plain one pays nothing for hooks it does not have)."""

    __slots__ = ("_hook",)

    def __init__(self, pipeline: Pipeline, build: Builder, hook: RequestHook) -> None:
        super().__init__(pipeline, HookedBuilder(build, hook))
        self._hook = hook

    async def __call__(self, ctx: Any, call_next: CallNext) -> Any:
        t0 = perf_counter()
        hook = self._hook
        try:
            token = hook.enter(ctx)
        except Exception:  # noqa: BLE001 - fail open: no span, the call goes on
            token = None
        error: BaseException | None
        try:
            result = await call_next(ctx)
        except BaseException as exc:
            result, error = None, exc
        else:
            error = None
        carried = None
        try:
            carried = hook.exit(token)
            raw = (ctx.method, ctx.params, ctx.request_id, ctx.meta, ctx.protocol_version,
                   getattr(ctx.session, "_connection", None), ctx.request, t0, perf_counter(), result, error)
            if not self._submit(self._build, (raw, carried)):
                hook.attach(None, carried)  # dropped at the queue: the hook lets go of what it holds
        except Exception:  # noqa: BLE001
            pass
        if error is not None:
            raise error
        return result


class HookedBuilder:
    """The builder of a hooked capture: builds as usual, then gives the hook what it carried."""

    __slots__ = ("_build", "_hook")

    def __init__(self, build: Builder, hook: RequestHook) -> None:
        self._build = build
        self._hook = hook

    def __call__(self, item: tuple[Any, Any]) -> Sequence[dict[str, Any]]:
        raw, carried = item
        try:
            events = self._build(raw)
        except BaseException:
            self._hook.attach(None, carried)
            raise
        self._hook.attach(events[0] if events else None, carried)
        return events


class Hooks(RequestHook):
    """Several exporters' request hooks as one (in the order given)."""

    __slots__ = ("_hooks",)

    def __init__(self, hooks: Sequence[RequestHook]) -> None:
        self._hooks = tuple(hooks)

    def enter(self, ctx: Any) -> Any:
        tokens = []
        for h in self._hooks:
            try:
                tokens.append(h.enter(ctx))
            except Exception:  # noqa: BLE001
                tokens.append(None)
        return tokens

    def exit(self, token: Any) -> Any:
        out = []
        for h, t in zip(self._hooks, token or [None] * len(self._hooks), strict=True):
            try:
                out.append(h.exit(t))
            except Exception:  # noqa: BLE001
                out.append(None)
        return out

    def attach(self, event: dict[str, Any] | None, carried: Any) -> None:
        for h, c in zip(self._hooks, carried or [None] * len(self._hooks), strict=True):
            try:
                h.attach(event, c)
            except Exception:  # noqa: BLE001
                pass


def capture_middleware(pipeline: Pipeline, build: Builder, hooks: Sequence[RequestHook] = ()) -> CaptureMiddleware:
    """The middleware ``instrument()`` inserts: plain, or with the exporters' request hooks."""
    if not hooks:
        return CaptureMiddleware(pipeline, build)
    return HookedCaptureMiddleware(pipeline, build, hooks[0] if len(hooks) == 1 else Hooks(hooks))


#: what the middleware queues: method, params, request id, _meta, protocol version, connection,
#: HTTP request, start, end (perf_counter), result, exception
Raw = tuple[str, Any, Any, Any, Any, Any, Any, float, float, Any, "BaseException | None"]


class EventBuilder:
    """Turns a :data:`Raw` capture into an event, on the writer thread."""

    def __init__(
        self, pipeline: Pipeline, server_name: str | None, server_version: str | None, capture: str,
    ) -> None:
        self._server_name = server_name
        self._server_version = server_version
        self._capture = capture
        self._base = {ev.INSTANCE_ID: pipeline.instance_id, ev.PID: pipeline._base[ev.PID]}
        self._templates = pipeline.templates
        #: how the session of a request without one is found, by (params JSON, where): see _derive
        self._derived: dict[tuple[bytes, tuple[Any, ...]], Session | None] = {}
        self._connections: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._pipe_session = f"pipe:{pipeline.instance_id}"
        self._stdio = _watch_stdio()
        self.uris = UriTemplates()
        self._server: Callable[[], Any] | None = None

    def learn_resources(self, server: Any) -> None:
        """Templates the server registered, so reads are named by them before any templates/list.

        ``MCPServer`` keeps them in its resource manager, FastMCP 4.x in its providers' component
        registries. Kept weakly, and read again on a read no known template matches: a template
        registered after ``instrument()`` is found too.
        """
        with contextlib.suppress(TypeError):
            self._server = weakref.ref(server)
        self._learn_registered(server)

    def _learn_registered(self, server: Any) -> None:
        try:
            manager = getattr(server, "_resource_manager", None)
            for template in list(getattr(manager, "_templates", None) or ()):
                if isinstance(template, str):
                    self.uris.learn_template(template)
            for uri in list(getattr(manager, "_resources", None) or ()):
                if isinstance(uri, str):
                    self.uris.learn_uri(uri)
            providers = list(getattr(server, "providers", None) or ())
            local = getattr(server, "_local_provider", None)
            for provider in [*providers, *([local] if local is not None and local not in providers else [])]:
                for component in list((getattr(provider, "_components", None) or {}).values()):
                    template = getattr(component, "uri_template", None)
                    if isinstance(template, str):
                        self.uris.learn_template(template)
                    else:
                        uri = getattr(component, "uri", None)
                        if uri is not None and not callable(uri) and "://" in str(uri):
                            self.uris.learn_uri(str(uri))
        except Exception:  # noqa: BLE001 - a framework's internals changed: fall back to the shape
            pass

    def _template_for(self, uri: str) -> str | None:
        found = self.uris.match(uri)
        if found is None and self._server is not None:
            server = self._server()
            if server is not None:
                self._learn_registered(server)
                found = self.uris.match(uri)
        return found

    def __call__(self, raw: Raw) -> list[dict[str, Any]]:
        method, params, request_id, meta, protocol_version, connection, request, t0, t1, result, exc = raw
        if _internal_dispatch(method, request):
            return []
        key = None
        if exc is None:
            result = _dump(result)
            found = self._template_key(method, params, request_id, meta, protocol_version, connection, request, t0,
                                       result)
            if found is not None:
                key, session, size = found  # the session as (raw id, source, stitching key)
                template = self._templates.get(key)
                if template is not None:
                    self.uris.learn_result(method, result)
                    return [_stamp(template, method, params, request_id, session, size, t0, t1, result)]
        if method == "initialize" and isinstance(params, dict):
            requested = params.get("protocolVersion")
            protocol_version = requested if isinstance(requested, str) else None
        x = Exchange(
            method=method,
            params=params,
            request_id=request_id,
            start=t0 + time.time() - perf_counter(),
            duration=t1 - t0,
            is_notification=request_id is None,
            server_name=self._server_name,
            server_version=self._server_version,
            capture=self._capture,
            protocol_version=protocol_version,
        )
        if exc is None:
            x.result = result
            self.uris.learn_result(method, x.result)
        else:
            _describe_exception(x, exc)
        if method == "resources/read" and isinstance(params, dict) and isinstance(params.get("uri"), str):
            x.uri_template = self._template_for(params["uri"])
        self._where(connection, request, meta, x, t0)
        e = build_event(x, self._base)
        if key is not None and e.get(ev.SESSION_SOURCE) == session[1] and (
            session[2] is not None or e.get(ev.SESSION_ID) == session[0]
        ):
            e[KEY_FIELD] = key
        return [e]

    def _template_key(
        self, method: str, params: Any, request_id: Any, meta: Any, protocol_version: Any, connection: Any,
        request: Any, t0: float, result: Any,
    ) -> tuple[tuple[Any, ...], Session, int] | None:
        """What an ``ok`` call's event is made of besides its per-call fields (event_templates), and
        how its session is found, and the params' size; None when that cannot be told cheaply and
        exactly (then the event is built from scratch). What a client sends afresh with every
        request in ``_meta`` (a W3C trace context, a progress token) is left out of the key.

        It mirrors :meth:`__call__`, :meth:`_where`, ``build_event`` and ``sessions.derive``: every
        input they read is here, but the reply (only sizes and counts come from it, per call), the
        clocks and the session (a 2026-era client has no session: one is stitched per call).
        """
        if (
            request_id is None or type(params) is not dict or method in _UNTEMPLATED
            or type(result) is not dict or (method == "tools/call" and result.get("isError") is True)
        ):
            return None
        blob = _json.exact(params)
        if blob is None or len(blob) > MAX_PARAMS_BYTES:
            return None
        size = len(blob)  # the request's size, as build_event measures params this small
        client_meta = params.get("_meta")
        if type(client_meta) is dict and not _PER_REQUEST_META.isdisjoint(client_meta):
            kept = {k: v for k, v in client_meta.items() if k not in _PER_REQUEST_META}
            blob = _json.exact({**params, "_meta": kept})
            if blob is None:
                return None
        template = None
        if method == "resources/read" and isinstance(params.get("uri"), str):
            template = self._template_for(params["uri"])
        if request is not None:
            client = getattr(request, "client", None)
            session = getattr(connection, "session_id", None) or request.headers.get("mcp-session-id")
            where: tuple[Any, ...] = ("tcp", getattr(client, "host", None))
        elif self._stdio is not None and self._stdio.served_stdio_at(t0):
            session, where = self._pipe_session, ("pipe",)
        else:
            session = self._connection_id(connection) if connection is not None and not _stateless(meta) else None
            where = ("inproc",)
        spec: Session | None
        if isinstance(session, str) and session:
            spec = (session, sessions.source_of(session), None)
        else:  # a function of the params (their _meta) and the address: found once per pair
            spec = self._derived.get((blob, where), _UNKNOWN)
            if spec is _UNKNOWN:
                spec = self._derive(params.get("_meta"), where)
                if len(self._derived) >= MAX_TEMPLATES:
                    self._derived.clear()
                self._derived[(blob, where)] = spec
            if spec is None:
                return None
        # the client as _where names it: from the SDK's own view of _meta, else from the record of
        # initialize (the same object for as long as the connection lives); build_event reads the
        # rest of _meta from params, which the key holds
        named = meta.get(MODERN_CLIENT_INFO) if isinstance(meta, dict) else None
        info: Any
        if isinstance(named, dict):
            info = _json.exact(named) or id(named)
        elif connection is not None:
            client_params = getattr(connection, "client_params", None)
            info = (id(connection), id(getattr(client_params, "client_info", None)))
        else:
            info = None
        return (method, blob, protocol_version, template, where, info, _stateless(meta)), spec, size

    def _derive(self, client_meta: Any, where: tuple[Any, ...]) -> Session | None:
        """How ``sessions.derive`` finds the session of a request with no session id: a conversation
        id the client sent, else stitched by client and idle gap; None when the client is named
        elsewhere than in the request (its connection's initialize): then it is built from scratch."""
        conversation = sessions.conversation_id(client_meta)
        if conversation is not None:
            return (f"meta:{self._server_name or ''}:{conversation}", sessions.META, None)
        named = client_meta.get(MODERN_CLIENT_INFO) if isinstance(client_meta, dict) else None
        if not isinstance(named, dict):
            return None
        name, version = named.get("name"), named.get("version")
        address = where[1] if where[0] == "tcp" else None
        client_key = "|".join([str(name) if name is not None else "",
                               str(version) if version is not None else "", address or ""])
        if not client_key.strip("|") and not address:
            return (None, None, None)
        return (None, sessions.IDLE, (self._base[ev.INSTANCE_ID], client_key, address or ""))

    def _where(self, connection: Any, request: Any, meta: Any, x: Exchange, t0: float) -> None:
        """Transport, session and client, from whatever this transport carries."""
        if request is not None:
            x.transport = "tcp"
            client = getattr(request, "client", None)
            x.client_address = getattr(client, "host", None)
            x.session_raw = getattr(connection, "session_id", None) or request.headers.get("mcp-session-id")
        elif self._stdio is not None and self._stdio.served_stdio_at(t0):
            x.transport = "pipe"
            x.session_raw = self._pipe_session  # one client per stdio process: the pipe is the session
        else:
            x.transport = "inproc"
            if connection is not None and not _stateless(meta):  # a 2026-era request's connection is its own
                x.session_raw = self._connection_id(connection)
        info = meta.get(MODERN_CLIENT_INFO) if isinstance(meta, dict) else None
        if not isinstance(info, dict) and connection is not None:
            params = getattr(connection, "client_params", None)
            implementation = getattr(params, "client_info", None)
            if implementation is not None:
                info = _dump(implementation)
        if isinstance(info, dict):
            x.client_info = info

    def _connection_id(self, connection: Any) -> str:
        try:
            cid = self._connections.get(connection)
            if cid is None:
                cid = self._connections[connection] = f"conn:{id(connection):x}:{time.time_ns()}"
            return cid
        except TypeError:
            return f"conn:{id(connection):x}"


#: methods whose event is made of the reply beyond its sizes (tool definitions, the negotiated
#: version): always built from scratch
_UNTEMPLATED = frozenset({"initialize", "tools/list"})
#: ``_meta`` keys a client sends afresh with each request, none of which the event keeps but as
#: per-call fields (the trace and parent span ids; the request's size)
_PER_REQUEST_META = frozenset({"traceparent", "tracestate", "progressToken"})
#: bytes of a JSON-RPC result envelope around its id and result
_ENVELOPE_BYTES = len('{"jsonrpc":"2.0","id":,"result":}')


def _stateless(meta: Any) -> bool:
    """A 2026-07-28 era request: no session, whatever connection object carried it."""
    return isinstance(meta, dict) and MODERN_PROTOCOL in meta


_UNKNOWN: Any = object()
#: how a templated call's session is found: (raw session id, its source, the key to stitch by
#: idle gaps when it has no id of its own); (None, None, None) when it has none
Session = tuple["str | None", "str | None", "tuple[Any, ...] | None"]


def _stamp(
    template: Template, method: str, params: dict[str, Any], request_id: Any, session: Session, size: int,
    t0: float, t1: float, result: dict[str, Any],
) -> Sanitized:
    """A template's copy with this call's :data:`~mcplens.event_templates.PER_CALL` fields, each set
    as ``build_event`` sets it for an ``ok`` request (the session id raw: the pipeline has the privacy
    stage pseudonymise it)."""
    e = Sanitized(template)
    ids = event_ids()
    e[ev.EVENT_ID] = ids[:32]
    e[ev.TIME] = start = t0 + time.time() - perf_counter()
    raw, source, stitch = session
    if stitch is not None:
        raw = sessions.stitched(stitch, start)
    if raw is not None:
        e[ev.SESSION_ID] = raw
        e[ev.SESSION_SOURCE] = source
    e[ev.DURATION] = t1 - t0
    e[ev.REQUEST_ID] = str(request_id)
    e[ev.REQUEST_SIZE] = size
    # as reply_size() measures it: {"jsonrpc":"2.0","id":<id>,"result":<result>}
    size = _ENVELOPE_BYTES + _json.size(request_id) + len(_json.dumps(result))
    e[ev.RESPONSE_SIZE] = size
    e[ev.RESPONSE_TOKENS] = -(-size // 4)
    items, kinds = reply_items(method, result)
    if items is not None:
        e[ev.RESPONSE_ITEMS] = items
    if kinds:
        e[ev.RESPONSE_TYPES] = kinds
    meta = params.get("_meta")
    trace_id, parent = parse_traceparent(meta if isinstance(meta, dict) else None)
    e[ev.TRACE_ID] = trace_id or ids[32:64]
    e[ev.SPAN_ID] = ids[64:]
    if parent:
        e[ev.PARENT_SPAN_ID] = parent
    return e


def _internal_dispatch(method: str, request: Any) -> bool:
    """A request the SDK dispatched to itself, not one a client sent.

    On the 2026-07-28 HTTP path the SDK runs the server's own ``tools/list`` to validate a
    ``tools/call``'s ``Mcp-Param-*`` headers; that listing passes through the middleware with
    the HTTP request of the call, whose ``mcp-method`` header names the method actually sent.
    """
    if request is None:
        return False
    sent = request.headers.get("mcp-method")
    return sent is not None and sent != method


def _describe_exception(x: Exchange, exc: BaseException) -> None:
    """Map an exception to what the client got on the wire (see the SDK's dispatcher)."""
    error = getattr(exc, "error", None)
    kind = type(exc).__name__
    if error is not None and hasattr(error, "code") and hasattr(error, "message"):  # MCPError
        x.error_code = int(error.code)
        x.error_message = str(error.message)
        x.error_data = getattr(error, "data", None)
        return
    if kind == "ValidationError" and type(exc).__module__.startswith("pydantic"):
        x.error_code = JSONRPC_INVALID_PARAMS
        x.error_message = "Invalid request parameters"
        return
    if isinstance(exc, asyncio.CancelledError) or kind == "Cancelled":
        x.status_override = ev.CANCELLED
        x.exception_type = kind
        x.response_size = 0
        return
    x.exception_type = type(exc).__qualname__
    x.error_code = 0  # what the SDK's dispatcher answers for an unmapped exception
    x.error_message = str(exc)
    if isinstance(exc, TimeoutError):
        x.status_override = ev.TIMEOUT


# ---- refusals before the SDK: an ASGI hook on the HTTP app ----------------------------------

#: the most of a refused request's body read to name its method; a larger one is recorded unnamed
MAX_REFUSED_BODY = 256 * 1024
REFUSED = (401, 403)
#: HTTP app factories of FastMCP (``http_app``) and the SDK (``streamable_http_app``)
_APP_FACTORIES = ("http_app", "streamable_http_app")
_HOOKED = "_mcplens_auth_hook"


def hook_http(server: Any, pipeline: Pipeline, build: EventBuilder) -> None:
    """Make every HTTP app the server builds record the requests its auth layer refuses.

    The factory is wrapped on this server object only; the app it returns gets
    :class:`RefusalRecorder` as its outermost middleware. Fail-open: anything unexpected leaves
    the server exactly as it was.
    """
    for attr in _APP_FACTORIES:
        factory = getattr(server, attr, None)
        if factory is None or not callable(factory) or getattr(factory, _HOOKED, False):
            continue

        @functools.wraps(factory)
        def wrapped(*args: Any, _factory: Any = factory, **kwargs: Any) -> Any:
            app = _factory(*args, **kwargs)
            with contextlib.suppress(Exception):
                if not getattr(app, _HOOKED, False) and hasattr(app, "add_middleware"):
                    app.add_middleware(RefusalRecorder, pipeline=pipeline, build=build)
                    setattr(app, _HOOKED, True)
            return app

        setattr(wrapped, _HOOKED, True)
        with contextlib.suppress(Exception):
            setattr(server, attr, wrapped)


class RefusalRecorder:
    """ASGI middleware: a 401/403 answered to an MCP request becomes an ``unauthorized`` event.

    On every other response it only passes messages through. On a refusal it reads the part of
    the body the app did not (auth rejects before reading it) to name the JSON-RPC method and
    target, then lets the response go out. Headers are read for the session id, protocol version
    and client address only; ``Authorization`` is never looked at.
    """

    def __init__(self, app: Any, pipeline: Pipeline, build: EventBuilder) -> None:
        self.app = app
        self.pipeline = pipeline
        self.build = build

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") not in ("POST", "GET", "DELETE"):
            await self.app(scope, receive, send)
            return
        t0 = perf_counter()
        state = {"consumed": False}

        async def tracked_receive() -> Any:
            msg = await receive()
            if msg.get("type") == "http.request" and not msg.get("more_body", False):
                state["consumed"] = True
            return msg

        async def watched_send(msg: Any) -> None:
            if msg.get("type") == "http.response.start" and msg.get("status") in REFUSED:
                try:
                    body = b"" if state["consumed"] else await _read_body(receive)
                    self.pipeline.submit(self._event, (scope, body, int(msg["status"]), t0, perf_counter()))
                except Exception:  # noqa: BLE001 - fail open: the refusal goes out regardless
                    self.pipeline.counters["faults"] = self.pipeline.counters.get("faults", 0) + 1
            await send(msg)

        await self.app(scope, tracked_receive, watched_send)

    def _event(self, raw: tuple[dict[str, Any], bytes, int, float, float]) -> list[dict[str, Any]]:
        """On the writer thread: the refused request as an event (its first message, for a batch)."""
        scope, body, status, t0, t1 = raw
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or ()}
        msg: Any = None
        if body and len(body) <= MAX_REFUSED_BODY:
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                msg = json.loads(body)
        if isinstance(msg, list):
            msg = next((m for m in msg if isinstance(m, dict)), None)
        msg = msg if isinstance(msg, dict) else {}
        method = msg.get("method") if isinstance(msg.get("method"), str) else headers.get("mcp-method")
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        if not params and headers.get("mcp-name") and method in ("tools/call", "prompts/get"):
            params = {"name": headers["mcp-name"]}
        x = Exchange(
            method=method or f"HTTP {scope.get('method')}",
            params=params,
            request_id=msg.get("id"),
            start=t0 + time.time() - perf_counter(),
            duration=t1 - t0,
            is_notification=bool(msg) and "id" not in msg,
            server_name=self.build._server_name,
            server_version=self.build._server_version,
            capture=self.build._capture,
            protocol_version=headers.get("mcp-protocol-version"),
            transport="tcp",
            session_raw=headers.get("mcp-session-id"),
            status_override=ev.UNAUTHORIZED,
            response_size=0,
        )
        client = scope.get("client")
        if client:
            x.client_address = client[0]
        meta = params.get("_meta")
        info = meta.get(MODERN_CLIENT_INFO) if isinstance(meta, dict) else None
        if isinstance(info, dict):
            x.client_info = info
        elif msg.get("method") == "initialize" and isinstance(params.get("clientInfo"), dict):
            x.client_info = params["clientInfo"]
        x.extra[ev.PROXY_HTTP_STATUS] = status
        return [build_event(x, self.build._base)]


async def _read_body(receive: Any) -> bytes:
    """The rest of a request body, up to :data:`MAX_REFUSED_BODY` (then what was read so far)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg.get("type") != "http.request":
            break
        chunk = msg.get("body", b"") or b""
        size += len(chunk)
        if size > MAX_REFUSED_BODY:
            return b""
        chunks.append(chunk)
        if not msg.get("more_body", False):
            break
    return b"".join(chunks)
