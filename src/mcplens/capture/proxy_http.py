"""``mcplens proxy --upstream URL``: a recording reverse proxy for streamable-HTTP MCP servers.

:class:`HttpProxy`, served by :mod:`mcplens.capture.http_server` (llhttp, no ASGI), forwards
every request (POST, GET SSE streams, DELETE, and any other path such as OAuth metadata) to
the upstream with a lean asyncio HTTP/1.1 client and its keep-alive pool
(:mod:`mcplens.capture.upstream_http`: ``httpx`` cost as much CPU per call as the upstream
server itself). Request headers pass through except hop-by-hop ones and ``Host``:
the upstream gets its own Host, because the SDK answers a foreign one with 421.
``authorization`` and every MCP header (``mcp-session-id``, ``mcp-protocol-version``,
``mcp-method``, ``mcp-name``, ``last-event-id``) reach the upstream unchanged; none is recorded
except the session id and protocol version, which the privacy stage pseudonymises / keeps.

Replies stream back chunk by chunk as the upstream sends them (transfer coding undone, content coding kept, no
buffering), so an SSE stream stays live. The relay only enqueues ``(stream, chunk, clock)``;
:class:`HttpCapture` parses bodies and SSE frames and pairs messages on the writer thread.

Hostile traffic (the proxy may listen beyond loopback): the upstream URL is always the configured
origin plus the request's path and query passed byte for byte, never decoded, and a target that
is not a plain origin-form path (absolute-form, ``@``/authority tricks, ``#``, dot segments,
control bytes) is refused with 400 before anything reaches the upstream. Hop-by-hop headers
(RFC 9110 section 7.6.1, and every header ``Connection`` names) are dropped both ways. A body
over the limit is refused with 413 as soon as that is known, never read whole. Each session holds
a GET stream open, so the upstream pool has no connection cap; the proxy's own cap on requests
in flight answers 503 at once, with a log line, rather than a stall.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from mcplens import event as ev
from mcplens.capture.common import Exchange
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
from mcplens.capture.upstream_http import Upstream
from mcplens.config import Settings
from mcplens.pipeline import Pipeline

if TYPE_CHECKING:  # the server module needs httptools, checked for in serve()
    from mcplens.capture.http_server import Request, Response

#: never forwarded (RFC 9110 section 7.6.1, plus the legacy ``proxy-connection``); ``host`` and
#: ``content-length`` are the proxy's to set on the request side
HOP_BY_HOP: Final = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-connection", b"host", b"content-length",
})
_HOP_KEEP_LENGTH: Final = HOP_BY_HOP - {b"content-length"}
#: most conversations kept at once (sessions that never send DELETE are forgotten oldest first)
MAX_SESSIONS: Final = 10_000
MAX_CAPTURED_BODY: Final = 64 * 1024 * 1024
SWITCH_INTERVAL: Final = 0.0005
#: a refused version probe waits this long (seconds) for the same client's session to start
PROBE_WAIT: Final = 30.0
MAX_PROBES: Final = 1024
#: request bodies larger than this get 413 (an MCP message is small; uploads are not MCP)
DEFAULT_MAX_BODY: Final = 16 * 1024 * 1024
#: requests in flight at once (each open GET stream is one); past it, 503 at once
DEFAULT_MAX_IN_FLIGHT: Final = 4096
#: every this many requests the relay tells the capture which are in flight (see HttpCapture._on_live)
LIVE_EVERY: Final = 256
#: seconds between two log lines about the same trouble (upstream down, at capacity)
LOG_EVERY: Final = 10.0
#: an origin-form path (RFC 3986 pchars and "/", percent escapes well formed) and query
_PATH: Final = re.compile(rb"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
_QUERY: Final = re.compile(rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")
_DOT_SEGMENT: Final = re.compile(rb"(?:^|/)\.{1,2}(?:/|$)")

log = logging.getLogger("mcplens.proxy")


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
    #: client requests this POST carried (to pair an ``id: null`` error reply with its only request)
    requests: int = 0
    post: bool = False


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
        self.released_shed = 0  # streams released because the pipeline shed their end (see _on_live)
        self._offset = time.time() - perf_counter()
        #: refused server/discover probes, by client, until that client's session starts: the
        #: probe is recorded in the session it led to, not as a session of its own
        self._probes: collections.OrderedDict[tuple[Any, ...], list[tuple[float, Exchange]]] = (
            collections.OrderedDict())

    def _conversation(self, session: str | None) -> Conversation:
        """The session's conversation. One the proxy has not seen start is kept only once the
        upstream accepts a request in it (:meth:`_on_head`): a stream of requests with made-up
        session ids, all refused, must not fill the table."""
        if not session:
            return Conversation()
        conv = self._sessions.get(session)
        return conv if conv is not None else Conversation(session_raw=session)

    def _keep(self, session: str, conv: Conversation) -> None:
        self._sessions[session] = conv
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))

    def __call__(self, raw: tuple[Any, ...]) -> list[dict[str, Any]]:
        kind, sid, t = raw[0], raw[1], raw[2]
        handler = getattr(self, f"_on_{kind}")
        handler(sid, t, *raw[3:])
        self._expire_probes(t)
        return self.recorder.finish()

    # -- version probes -------------------------------------------------------------------------
    @staticmethod
    def _client_key(address: str | None, info: Any) -> tuple[Any, ...]:
        info = info if isinstance(info, dict) else {}
        return (address, str(info.get("name")), str(info.get("version")))

    def _hold_probe(self, x: Exchange, t: float) -> None:
        key = self._client_key(x.client_address, x.client_info)
        self._probes.setdefault(key, []).append((t, x))
        self._probes.move_to_end(key)
        while len(self._probes) > MAX_PROBES:
            for _, old in self._probes.popitem(last=False)[1]:
                self.recorder.add(old)

    def _release_probes(self, key: tuple[Any, ...], session: str | None) -> None:
        for _, x in self._probes.pop(key, ()):
            x.session_raw = session or x.session_raw
            self.recorder.add(x)

    def _expire_probes(self, t: float) -> None:
        while self._probes:
            key, held = next(iter(self._probes.items()))
            if t - held[0][0] < PROBE_WAIT:
                return
            self._release_probes(key, None)

    def _on_live(self, sid: int, t: float, live: frozenset[int]) -> None:
        """The relay's requests in flight when request ``sid`` began. A stream it no longer lists
        but that is still here lost its end to the pipeline's shedding (a starved writer drops what
        it cannot take, and counts it): released now, with its pending requests, so a shed item
        never leaves state behind for good."""
        for old in [k for k in self._streams if k <= sid and k not in live]:
            stream = self._streams.pop(old)
            self.pairer.unanswered(stream.conv, old, t)
            self.released_shed += 1

    def _on_flush(self, sid: int, t: float) -> None:
        """Shutdown: whatever is held is recorded as it is."""
        for key in list(self._probes):
            self._release_probes(key, None)

    def _add(self, stream: _Stream, x: Exchange, t: float) -> None:
        if x.extra.get(ev.EVENT_KIND) == ev.NEGOTIATION_KIND and not stream.conv.session_raw:
            self._hold_probe(x, t)
        else:
            self.recorder.add(x)

    # -- the relay's items ----------------------------------------------------------------------
    def _on_req(self, sid: int, t: float, method: str, body: bytes, session: str | None, version: str | None,
                address: str | None) -> None:
        if method == "DELETE" and session:
            self._sessions.pop(session, None)
            return
        stream = self._streams[sid] = _Stream(self._conversation(session), address, version, post=method == "POST")
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
            if "id" in msg and isinstance(msg.get("method"), str):
                stream.requests += 1
            x = self.pairer.client_message(
                stream.conv, msg, start=start, t=t, scope=sid, protocol_version=version, client_address=address)
            if x is not None and x.client_address is None:
                x.client_address = address  # a server request's reply: the client that answered it
            self.recorder.add(x)

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
            self._keep(session, stream.conv)
            self._release_probes(self._client_key(stream.client_address, stream.conv.client_info), session)
        elif stream.post and status < 400 and stream.conv.session_raw and stream.conv.session_raw not in self._sessions:
            self._keep(stream.conv.session_raw, stream.conv)  # a session begun before this proxy started

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
            if msg.get("id", 0) is None and "error" in msg and stream.requests == 1 and not batch:
                # an error the server could not tie to an id (a 400 to a request it refused to
                # read, such as an older server's answer to server/discover): the POST's only request
                msg = {**msg, "id": self.pairer.only_pending(stream.conv, sid)}
            x, matched = self.pairer.server_message(stream.conv, msg, start=start, t=t, scope=sid,
                                                    size=None if batch else len(payload))
            if not matched:
                self.recorder.protocol_error("unmatched_reply", len(payload), start, direction=SERVER_TO_CLIENT,
                                             session_raw=stream.conv.session_raw)
            if x is not None:
                self._http_outcome(x, stream.status)
                self._add(stream, x, t)

    def _on_end(self, sid: int, t: float, reason: str | None) -> None:
        stream = self._streams.pop(sid, None)
        if stream is None:
            return
        if stream.json and stream.buf and not stream.oversize:
            self._server_payload(sid, stream, bytes(stream.buf), t)
        for x in self.pairer.unanswered(stream.conv, sid, t):
            x.response_size = 0
            if self.pairer.probe_refused(x, http_status=stream.status):
                self._add(stream, x, t)
                continue
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

    def __init__(self, upstream: str, pipeline: Pipeline | None, settings: Settings, *,
                 max_body: int = DEFAULT_MAX_BODY, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--upstream must be an http(s) URL, got {upstream!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("--upstream must not carry credentials in the URL (send them as headers)")
        self.upstream = upstream
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._path = (parts.path or "/").encode("ascii", "strict")
        self._host = parts.netloc.encode()
        self.max_body = max_body
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.pipeline = pipeline
        self.capture = HttpCapture(pipeline, settings) if pipeline is not None else None
        self._ids = itertools.count(1)
        self._live: set[int] = set()  # requests in flight, told to the capture now and then (_on_live)
        self._last_sid = 0
        self._upstream: Upstream | None = None
        self._said: dict[str, list[float]] = {}  # trouble -> [last logged, occurrences since]
        self.listen: str | None = None  # where serve() listens, for the start-up line
        self._urls: dict[tuple[bytes, bytes], bytes] = {}

    # -- what may be forwarded ------------------------------------------------------------------
    def upstream_url(self, raw_path: bytes, query: bytes) -> bytes | None:
        """The request target sent upstream for a request target, or None to refuse it (400).

        Only origin-form is accepted: the path and query are checked byte for byte and passed on
        as they came (``%2F``, ``%3F``, ``%23``, ``%2e%2e`` stay escaped), after the configured
        origin. The proxy's own root ``/`` stands for the upstream's configured path. The upstream
        client writes these bytes on its request line as they are, to the configured origin only.
        """
        cached = self._urls.get((raw_path, query))
        if cached is not None:
            return cached
        if not _PATH.fullmatch(raw_path) or _DOT_SEGMENT.search(raw_path) or not _QUERY.fullmatch(query):
            return None
        path = self._path if raw_path == b"/" else raw_path
        target = path + (b"?" + query if query else b"")
        if len(self._urls) >= 1024:  # the checks cost a few µs; MCP traffic uses one or two paths
            self._urls.clear()
        self._urls[(raw_path, query)] = target
        return target

    @staticmethod
    def forwardable(headers: list[tuple[bytes, bytes]], *, keep_length: bool = False) -> list[tuple[bytes, bytes]]:
        """Headers minus the hop-by-hop ones, including every header ``Connection`` names."""
        drop = _HOP_KEEP_LENGTH if keep_length else HOP_BY_HOP
        out: list[tuple[bytes, bytes]] = []
        names: list[bytes] = []
        named: set[bytes] | None = None
        for k, v in headers:  # one pass, each name lowered once: this runs twice per proxied request
            lk = k.lower()
            if lk == b"connection":
                named = (named or set()) | {token.strip().lower() for token in v.split(b",")}
            elif lk not in drop:
                out.append((k, v))
                names.append(lk)
        if named:
            return [kv for kv, lk in zip(out, names, strict=True) if lk not in named]
        return out

    def _submit(self, *raw: Any) -> None:
        if self.pipeline is not None:
            self.pipeline.submit(self.capture, raw)  # type: ignore[arg-type]

    def say(self, trouble: str, message: str, *args: Any) -> None:
        """A warning on stderr at most every LOG_EVERY seconds per kind of trouble, with the count."""
        now = time.monotonic()
        last = self._said.setdefault(trouble, [-LOG_EVERY, 0])
        last[1] += 1
        if now - last[0] >= LOG_EVERY:
            log.warning(message + " (%d time(s) since the last such line)", *args, last[1])
            last[0], last[1] = now, 0

    def log_start(self) -> None:
        log.info("mcplens proxy: listening on %s, fronting %s (recording %s; bodies up to %d bytes; "
                 "at most %d requests in flight; event loop %s)", self.listen or "?",
                 self._origin + self._path.decode(),
                 "on" if self.pipeline is not None else "off", self.max_body, self.max_in_flight,
                 type(asyncio.get_running_loop()).__module__.split(".")[0])

    def close(self) -> None:
        """Shutdown: idle upstream connections closed, what the capture holds recorded."""
        if self._upstream is not None:
            self._upstream.close()
        self._submit("flush", 0, perf_counter())

    async def __call__(self, request: Request, resp: Response) -> None:
        """One request from :mod:`mcplens.capture.http_server` (already read whole, within the body limit)."""
        raw_path, _, query = request.target.partition(b"?")
        url = self.upstream_url(raw_path, query)
        if url is None:
            resp.plain(400, b"mcplens proxy: the request target must be a plain /path?query\n")
            return
        if self.in_flight >= self.max_in_flight:
            self.say("capacity", "mcplens proxy: %d requests in flight, the configured maximum; answering 503",
                     self.max_in_flight)
            resp.plain(503, b"mcplens proxy: too many requests in flight\n", (b"retry-after", b"1"))
            return
        self.in_flight += 1
        try:
            await self._exchange(request, resp, url)
        finally:
            self.in_flight -= 1

    async def _exchange(self, request: Request, resp: Response, url: bytes) -> None:
        method = request.method
        t0 = perf_counter()
        headers = self.forwardable(request.headers)
        headers.append((b"host", self._host))
        sid = self._last_sid = next(self._ids)
        outcome: list[str | None] = [None]
        if self.pipeline is not None:
            session = version = None
            for k, v in request.headers:
                lk = k.lower()
                if lk == b"mcp-session-id":
                    session = v.decode("latin-1")
                elif lk == b"mcp-protocol-version":
                    version = v.decode("latin-1")
            self._submit("req", sid, t0, method, request.body, session, version, request.client)
            self._live.add(sid)
            if sid % LIVE_EVERY == 0:
                self._submit("live", sid, t0, frozenset(self._live))
        try:  # whatever happens from here on, the capture hears of the end: nothing stays behind
            try:
                await self._relay(method, url, headers, request.body, sid, resp, outcome)
            except asyncio.CancelledError:
                if not resp.gone:
                    raise  # cancelled from outside (shutdown): not ours to swallow
                # the client left: the server cancelled this task; the relay closed its upstream side
                outcome[0] = outcome[0] or "client_disconnected"
        except Exception as exc:  # noqa: BLE001 - the proxy's own fault: recorded, never a traceback to the client
            outcome[0] = outcome[0] or type(exc).__name__
            log.debug("mcplens proxy: relay failed", exc_info=True)
        finally:
            live = self._live
            live.discard(sid)
            self._submit("end", sid, perf_counter(), outcome[0] if outcome[0] != "done" else None)
            if not live and self.pipeline is not None:  # idle: nothing may stay behind from a shed end
                self._submit("live", self._last_sid, perf_counter(), frozenset())

    def make_upstream(self) -> Upstream:
        """The upstream client: keep-alive connections to the configured origin, no cap on their
        number (open GET streams each hold one), idle ones kept 2 s, at most 256 of them."""
        parts = urlsplit(self.upstream)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return Upstream(parts.scheme, parts.hostname or "", port, max_idle=256, idle_expiry=2.0)

    async def _relay(self, method: str, url: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                     sid: int, resp: Response, outcome: list[str | None]) -> None:
        upstream = self._upstream
        if upstream is None:
            upstream = self._upstream = self.make_upstream()
        try:
            # a pooled connection the upstream had just closed (it answered nothing, so it never
            # read the request) is retried once on a fresh connection, as browsers do
            response = await upstream.request(method, url, headers, body)
        except Exception as exc:  # noqa: BLE001 - unreachable upstream: the client gets a 502
            outcome[0] = type(exc).__name__
            self.say("upstream", "mcplens proxy: upstream %s unreachable (%s on %s)", self._origin, type(exc).__name__,
                     method)
            log.debug("mcplens proxy: %s %s failed: %r", method, url, exc)
            resp.plain(502, f"mcplens proxy: upstream unreachable ({type(exc).__name__})\n".encode(), close=False)
            return
        try:
            out = self.forwardable(response.headers, keep_length=True)
            recording = self.pipeline is not None
            if recording:
                self._submit("head", sid, perf_counter(), response.status,
                             _text(response.header(b"content-type")) or "",
                             _text(response.header(b"content-encoding")), _text(response.header(b"mcp-session-id")))
            resp.start(response.status, out)
            if recording:
                def sink(chunk: bytes) -> None:
                    self._submit("chunk", sid, perf_counter(), chunk)
                    resp.write(chunk)
            else:
                sink = resp.write
            try:
                # straight from the upstream connection's callbacks to the client's: no task
                # wake-up per segment (see Response.pipe); reading pauses while the client is full
                await response.pipe(sink, lambda: resp.blocked)
            except Exception as exc:  # noqa: BLE001 - the upstream broke off mid-stream
                # so does the client's response: left unfinished, the server closes the
                # connection, as the upstream did, rather than end it cleanly
                outcome[0] = outcome[0] or type(exc).__name__
                return
            outcome[0] = outcome[0] or "done"
            resp.end()
        finally:
            response.close()  # a client that left (body not read whole) closes the upstream connection


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``PORT`` (on 127.0.0.1)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}") from None


def _log_to_stderr() -> None:
    """The proxy's own lines (start-up, upstream down, at capacity) go to stderr, never stdout."""
    import sys

    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def _more_descriptors() -> None:
    """Each session holds two sockets (client side, upstream side): lift the soft limit on open
    files to the hard one, so hundreds of sessions fit."""
    with contextlib.suppress(Exception):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


def serve(upstream: str, listen: str, settings: Settings, *,
          open_pipeline: Callable[[Settings], Pipeline] | None = None, max_body: int = DEFAULT_MAX_BODY,
          max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> int:
    """Run the HTTP proxy until SIGINT/SIGTERM; flush the events on the way out.

    ``open_pipeline`` gives the pipeline to record into (the caller wires the exporters);
    None relays without recording."""
    import sys

    try:
        import httptools  # noqa: F401
    except ImportError:
        print("mcplens proxy --upstream needs httptools: pip install 'mcplens[proxy]'", file=sys.stderr)
        return 1
    _log_to_stderr()
    _more_descriptors()
    # the event loop waits for the GIL whenever the writer thread builds events: the default 5 ms
    # switch interval would be added to a reply's latency (the process is ours: the loop and the writer)
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        host, port = parse_listen(listen)
        pipeline = open_pipeline(settings) if open_pipeline is not None else None
        app = HttpProxy(upstream, pipeline, settings, max_body=max_body, max_in_flight=max_in_flight)
        app.listen = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    except ValueError as e:
        print(f"mcplens proxy: {e}", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_run(app, host, port))
    finally:
        if pipeline is not None:
            pipeline.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (the ``[proxy]`` extra brings it), else asyncio's.

    Why: the relay is a few hundred lines of Python between two sockets; what it costs per call is
    mostly the event loop's (selector wake-ups, transport writes, handles). libuv's loop does that
    work in C: measured in bench/RESULTS.md. ``MCPLENS_PROXY_LOOP=asyncio`` keeps the standard loop.
    """
    import os

    if os.environ.get("MCPLENS_PROXY_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _run(app: HttpProxy, host: str, port: int) -> int:
    from mcplens.capture.http_server import HttpServer

    server = HttpServer(app, max_body=app.max_body)
    try:
        await server.start(host, port)
    except OSError as exc:
        log.error("mcplens proxy: cannot listen on %s (%s)", app.listen, exc)
        app.close()
        return 1
    app.log_start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await server.close()
        app.close()
    return 0
