"""``mcplens proxy --upstream URL``: a recording reverse proxy for streamable-HTTP MCP servers.

A plain ASGI app (served by uvicorn) forwards every request (POST, GET SSE streams, DELETE, and
any other path such as OAuth metadata) to the upstream with an ``httpx``-compatible async client
(``httpx2``, which the mcp SDK ships). Request headers pass through except hop-by-hop ones and
``Host``: the upstream gets its own Host, because the SDK answers a foreign one with 421.
``authorization`` and every MCP header (``mcp-session-id``, ``mcp-protocol-version``,
``mcp-method``, ``mcp-name``, ``last-event-id``) reach the upstream unchanged; none is recorded
except the session id and protocol version, which the privacy stage pseudonymises / keeps.

Replies stream back chunk by chunk as the upstream sends them (``aiter_raw``: no decoding, no
buffering), so an SSE stream stays live. The relay only enqueues ``(stream, chunk, clock)``;
:class:`HttpCapture` parses bodies and SSE frames and pairs messages on the writer thread.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import time
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Final
from urllib.parse import urlsplit

from mcplens import event as ev
from mcplens.capture.jsonrpc import (
    CLIENT_TO_SERVER,
    HTTP_STATUS,
    SERVER_TO_CLIENT,
    Conversation,
    Pairer,
    is_message,
    parse,
)
from mcplens.capture.proxy_recorder import Recorder
from mcplens.config import Settings
from mcplens.pipeline import Pipeline

HOP_BY_HOP: Final = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"host", b"content-length",
})
#: most conversations kept at once (sessions that never send DELETE are forgotten oldest first)
MAX_SESSIONS: Final = 10_000
MAX_CAPTURED_BODY: Final = 64 * 1024 * 1024


@dataclass
class _Stream:
    """One HTTP exchange as the writer thread reconstructs it."""

    conv: Conversation
    client_address: str | None
    protocol_version: str | None
    status: int = 0
    sse: bool = False
    json: bool = False
    encoded: bool = False
    buf: bytearray = field(default_factory=bytearray)
    oversize: bool = False


class HttpCapture:
    """Writer-thread builder for the HTTP proxy: requests, response heads, chunks and ends in,
    events out. Conversations are keyed by ``mcp-session-id``; without one (the stateless 2026
    era) each POST is its own conversation, and a client request pairs only with a reply in the
    response to the POST that carried it."""

    def __init__(self, pipeline: Pipeline, settings: Settings) -> None:
        self.pairer = Pairer(transport="tcp", server_name=settings.server_name,
                             server_version=settings.server_version, name_fixed=settings.server_name is not None)
        self.recorder = Recorder(pipeline, self.pairer)
        self._sessions: dict[str, Conversation] = {}
        self._streams: dict[int, _Stream] = {}
        self._offset = time.time() - perf_counter()

    def _conversation(self, session: str | None) -> Conversation:
        if not session:
            return Conversation()
        conv = self._sessions.get(session)
        if conv is None:
            conv = self._sessions[session] = Conversation(session_raw=session)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
        return conv

    def __call__(self, raw: tuple[Any, ...]) -> dict[str, Any] | None:
        kind, sid, t = raw[0], raw[1], raw[2]
        handler = getattr(self, f"_on_{kind}")
        handler(sid, t, *raw[3:])
        return self.recorder.finish()

    # -- the relay's items ----------------------------------------------------------------------
    def _on_req(self, sid: int, t: float, method: str, body: bytes, session: str | None, version: str | None,
                address: str | None) -> None:
        if method == "DELETE" and session:
            self._sessions.pop(session, None)
            return
        stream = self._streams[sid] = _Stream(self._conversation(session), address, version)
        if method != "POST" or not body:
            return
        obj, reason = parse(body)
        start = t + self._offset
        if reason is not None:
            self.recorder.protocol_error(reason, len(body), start, direction=CLIENT_TO_SERVER,
                                         session_raw=session, client_address=address)
            return
        for msg in obj if isinstance(obj, list) else [obj]:
            if not is_message(msg):
                self.recorder.protocol_error("not_jsonrpc", len(body), start, direction=CLIENT_TO_SERVER,
                                             session_raw=session, client_address=address)
                continue
            self.recorder.add(self.pairer.client_message(
                stream.conv, msg, start=start, t=t, scope=sid, protocol_version=version, client_address=address))

    def _on_head(self, sid: int, t: float, status: int, content_type: str, encoding: str | None,
                 session: str | None) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            return
        stream.status = status
        stream.sse = content_type.startswith("text/event-stream")
        stream.json = content_type.startswith("application/json")
        stream.encoded = bool(encoding) and encoding != "identity"
        if session and stream.conv.session_raw is None:  # initialize: the session starts with this reply
            stream.conv.session_raw = session
            self._sessions[session] = stream.conv

    def _on_chunk(self, sid: int, t: float, chunk: bytes) -> None:
        stream = self._streams.get(sid)
        if stream is None or stream.encoded or not (stream.sse or stream.json) or stream.oversize:
            return
        stream.buf += chunk
        if len(stream.buf) > MAX_CAPTURED_BODY:
            stream.oversize, stream.buf = True, bytearray()
            self.recorder.protocol_error("too_large", MAX_CAPTURED_BODY, t + self._offset, direction=SERVER_TO_CLIENT,
                                         session_raw=stream.conv.session_raw, client_address=stream.client_address)
            return
        if stream.sse:
            self._sse_frames(sid, stream, t)

    def _sse_frames(self, sid: int, stream: _Stream, t: float) -> None:
        """Complete SSE events out of the buffer; each ``data:`` payload is one JSON-RPC message."""
        buf = stream.buf
        while True:
            end, sep = _frame_end(buf)
            if end < 0:
                return
            frame, stream.buf = bytes(buf[:end]), buf[end + sep:]
            buf = stream.buf
            data = [line[5:].removeprefix(b" ") for line in frame.replace(b"\r\n", b"\n").split(b"\n")
                    if line.startswith(b"data:")]
            if data:
                self._server_payload(sid, stream, b"\n".join(data), t)

    def _server_payload(self, sid: int, stream: _Stream, payload: bytes, t: float) -> None:
        if not payload.strip():
            return
        start = t + self._offset
        obj, reason = parse(payload)
        if reason is not None:
            self.recorder.protocol_error(reason, len(payload), start, direction=SERVER_TO_CLIENT,
                                         session_raw=stream.conv.session_raw, client_address=stream.client_address)
            return
        batch = isinstance(obj, list)
        for msg in obj if batch else [obj]:
            if not is_message(msg):
                self.recorder.protocol_error("not_jsonrpc", len(payload), start, direction=SERVER_TO_CLIENT,
                                             session_raw=stream.conv.session_raw)
                continue
            x, matched = self.pairer.server_message(stream.conv, msg, start=start, t=t, scope=sid,
                                                    size=None if batch else len(payload))
            if not matched:
                self.recorder.protocol_error("unmatched_reply", len(payload), start, direction=SERVER_TO_CLIENT,
                                             session_raw=stream.conv.session_raw)
            if x is not None:
                self._http_outcome(x, stream.status)
                self.recorder.add(x)

    def _on_end(self, sid: int, t: float, reason: str | None) -> None:
        stream = self._streams.pop(sid, None)
        if stream is None:
            return
        if stream.json and stream.buf and not stream.oversize:
            self._server_payload(sid, stream, bytes(stream.buf), t)
        for x in self.pairer.unanswered(stream.conv, sid, t):
            x.response_size = 0
            if reason == "client_disconnected":
                x.status_override, x.exception_type = ev.CANCELLED, "ClientDisconnected"
            elif reason is not None:  # the upstream could not be reached or broke off
                x.status_override, x.exception_type = ev.EXCEPTION, reason
                x.error_message = f"connection closed by the upstream ({reason})"
            elif stream.status >= 400:
                x.status_override, x.exception_type = ev.EXCEPTION, f"HTTP{stream.status}"
                x.error_message = f"upstream returned {stream.status}"
            else:
                x.status_override, x.exception_type = ev.EXCEPTION, "NoReply"
                x.error_message = "the upstream ended the response without a reply"
            self._http_outcome(x, stream.status, replied=False)
            self.recorder.add(x)

    @staticmethod
    def _http_outcome(x: Any, status: int, *, replied: bool = True) -> None:
        """401/403 is the proxy's ``unauthorized``. The HTTP status is kept when it says more than
        the JSON-RPC reply does: for 401/403, and when no reply came at all. (A JSON-RPC error on
        a 400, as the 2026 era sends it, is recorded exactly as in-process capture records it.)"""
        if status in (401, 403):
            x.status_override = ev.UNAUTHORIZED
            x.extra[HTTP_STATUS] = status
        elif status >= 400 and not replied:
            x.extra[HTTP_STATUS] = status


def _frame_end(buf: bytearray) -> tuple[int, int]:
    """Index and length of the first blank-line separator of an SSE frame, or (-1, 0)."""
    candidates = [(buf.find(sep), len(sep)) for sep in (b"\n\n", b"\r\n\r\n", b"\r\r")]
    found = [c for c in candidates if c[0] >= 0]
    return min(found) if found else (-1, 0)


class HttpProxy:
    """The ASGI app: forwards each request to the upstream and streams the reply back."""

    def __init__(self, upstream: str, pipeline: Pipeline | None, settings: Settings) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"--upstream must be an http(s) URL, got {upstream!r}")
        self.upstream = upstream
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._path = parts.path or "/"
        self._host = parts.netloc.rsplit("@", 1)[-1].encode()
        self.pipeline = pipeline
        self.capture = HttpCapture(pipeline, settings) if pipeline is not None else None
        self._ids = itertools.count(1)
        self._client: Any = None

    def _target(self, path: str, query: bytes) -> str:
        url = self.upstream if path in ("/", self._path) else self._origin + path
        return url + ("?" + query.decode("latin-1") if query else "")

    def _submit(self, *raw: Any) -> None:
        if self.pipeline is not None:
            self.pipeline.submit(self.capture, raw)  # type: ignore[arg-type]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        import httpx2

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._client = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=None), follow_redirects=False,
                                                  trust_env=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        import anyio

        method: str = scope["method"]
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        t0 = perf_counter()
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        headers.append((b"host", self._host))
        sid = next(self._ids)
        if self.pipeline is not None:
            names = {k.lower(): v for k, v in scope["headers"] if k.lower() in (b"mcp-session-id",
                                                                              b"mcp-protocol-version")}
            session = names.get(b"mcp-session-id")
            version = names.get(b"mcp-protocol-version")
            client = scope.get("client")
            self._submit("req", sid, t0, method, bytes(body), session.decode("latin-1") if session else None,
                         version.decode("latin-1") if version else None, client[0] if client else None)
        outcome: list[str | None] = [None]
        async with anyio.create_task_group() as tg:

            async def watch_disconnect() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        outcome[0] = outcome[0] or "client_disconnected"
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch_disconnect)
            try:
                await self._relay(method, scope, headers, bytes(body), sid, send, outcome)
            finally:
                if outcome[0] != "client_disconnected":
                    tg.cancel_scope.cancel()
        self._submit("end", sid, perf_counter(), outcome[0] if outcome[0] != "done" else None)

    async def _relay(self, method: str, scope: dict[str, Any], headers: list[tuple[bytes, bytes]], body: bytes,
                     sid: int, send: Any, outcome: list[str | None]) -> None:
        client = self._client
        request = client.build_request(method, self._target(scope["path"], scope.get("query_string", b"")),
                                       headers=headers, content=body or None)
        try:
            response = await client.send(request, stream=True)
        except Exception as exc:  # noqa: BLE001 - unreachable upstream: the client gets a 502
            outcome[0] = type(exc).__name__
            message = f"mcplens proxy: upstream unreachable ({type(exc).__name__})".encode()
            await send({"type": "http.response.start", "status": 502,
                        "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(message)).encode())]})
            await send({"type": "http.response.body", "body": message})
            return
        try:
            out = [(k, v) for k, v in response.headers.raw
                   if k.lower() not in HOP_BY_HOP or k.lower() == b"content-length"]
            self._submit("head", sid, perf_counter(), response.status_code,
                         response.headers.get("content-type", ""), response.headers.get("content-encoding"),
                         response.headers.get("mcp-session-id"))
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            try:
                async for chunk in response.aiter_raw():
                    self._submit("chunk", sid, perf_counter(), chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except Exception as exc:  # noqa: BLE001 - the upstream broke off mid-stream
                # so does the client's response: returning without the last body message makes
                # the server drop the connection, as the upstream did, rather than end it cleanly
                outcome[0] = outcome[0] or type(exc).__name__
                return
            outcome[0] = outcome[0] or "done"  # before the last send: after it the client may leave
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            import anyio

            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await response.aclose()  # a client that left closes the upstream stream too


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``PORT`` (on 127.0.0.1)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}") from None


def serve(upstream: str, listen: str, settings: Settings, *, record: bool = True) -> int:
    """Run the HTTP proxy until SIGINT/SIGTERM; flush the events on the way out."""
    import sys

    try:
        import uvicorn
    except ImportError:
        print("mcplens proxy --upstream needs uvicorn and httpx2: pip install 'mcplens[proxy]'", file=sys.stderr)
        return 1
    try:
        host, port = parse_listen(listen)
        pipeline = None
        if record:
            from mcplens.pipeline import pipeline_with_exporters

            pipeline = pipeline_with_exporters(settings)
        app = HttpProxy(upstream, pipeline, settings)
    except ValueError as e:
        print(f"mcplens proxy: {e}", file=sys.stderr)
        return 2
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again for the handler
    # found before it started: make that one end run() normally so the events are flushed below
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, _stop)
    try:
        server.run()
    except _Stopped:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pipeline is not None:
            pipeline.close()
    return 0 if server.started else 1


class _Stopped(Exception):
    """Raised by the re-raised shutdown signal once uvicorn has finished."""


def _stop(signum: int, frame: Any) -> None:
    raise _Stopped()
