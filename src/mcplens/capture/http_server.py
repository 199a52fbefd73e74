"""The HTTP proxy's server side: HTTP/1.1 off the socket with ``httptools`` (llhttp), no ASGI.

Why not uvicorn: profiled, its ``h11`` server side was about a quarter of the relay's CPU and the
ASGI layer (an event dict per message, a receive queue, a task per request and one more to watch
for the client leaving) another share; on one call in flight that CPU *is* the added latency.
Here an :class:`asyncio.Protocol` feeds llhttp (the Node.js parser, strict by default) and hands
each complete request to the handler as one object; the response goes onto the transport in as
few sends as the upstream allows (what the relay writes before it next waits leaves together). A
client that leaves cancels its request's task (no watcher task); a paused transport is the only
thing a write waits for. A keep-alive connection idle 5 s after a response is closed.

What the parser refuses is answered 400 and the connection closed: a malformed request line or
header, CR/LF where they do not belong, ``Content-Length`` with ``Transfer-Encoding``, two
different ``Content-Length`` values, a transfer coding other than a final ``chunked``. The
request target is handed over byte for byte as it came (``on_url``: nothing decoded, the
absolute-form not parsed, a ``#`` kept), for the handler to check. A declared body over the limit
is refused with 413 before a byte of it is read; an undeclared one once past the limit.
Pipelined requests are answered in order, one at a time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import httptools

log = logging.getLogger("mcplens.proxy")

#: largest request head (target and headers) accepted; past it, 431
MAX_HEAD: Final = 64 * 1024
#: parsed requests waiting behind the one in flight before the connection stops being read
MAX_QUEUED: Final = 16
#: an idle keep-alive connection is closed after this many seconds (uvicorn's default too)
KEEP_ALIVE: Final = 5.0
#: a request whose head or body stops arriving for this long is dropped (slow-client bound)
STALLED: Final = 60.0
#: queued response bytes past which they are sent at once
FLUSH_AT: Final = 64 * 1024
_REASONS: Final = {s.value: s.phrase.encode() for s in http.HTTPStatus}
_NO_BODY: Final = frozenset({204, 304})


class Request:
    """One complete request: the target's bytes as sent, the headers as sent (raw name case)."""

    __slots__ = ("method", "target", "headers", "body", "client", "keep_alive", "http10")

    def __init__(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                 client: str | None, keep_alive: bool, http10: bool) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.client = client
        self.keep_alive = keep_alive
        self.http10 = http10


class Response:
    """Writes one response onto the connection: :meth:`start`, :meth:`write` chunks, :meth:`end`.

    The body is framed by the ``Content-Length`` given in the headers when there is one, else
    chunked (HTTP/1.1) or by closing the connection (HTTP/1.0)."""

    __slots__ = ("_conn", "_head_only", "keep_alive", "_chunked", "started", "finished")

    def __init__(self, conn: _Connection, request: Request) -> None:
        self._conn = conn
        self._head_only = request.method == "HEAD"
        self.keep_alive = request.keep_alive
        self._chunked = False
        self.started = False
        self.finished = False

    @property
    def gone(self) -> bool:
        """The client closed its connection."""
        return self._conn.gone

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """The status line and headers (hop-by-hop ones already removed by the caller)."""
        self.started = True
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
        length = False
        for k, v in headers:
            if k.lower() == b"content-length":
                length = True
            parts += (k, b": ", v, b"\r\n")
        if self._head_only or status in _NO_BODY or status < 200:
            pass
        elif not length:
            if self._conn.request_http10:
                self.keep_alive = False  # the body runs to the close
            else:
                self._chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        self._conn.write(b"".join(parts))

    def write(self, chunk: bytes) -> None:
        if not chunk or self._head_only:
            return
        if self._chunked:
            self._conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            self._conn.write(chunk)

    async def drain(self) -> None:
        """Wait while the client's socket buffer is full (never when it is not)."""
        if self._conn._pending_size >= FLUSH_AT:
            self._conn.flush()
        waiter = self._conn.drain_waiter
        if waiter is not None:
            await waiter

    @property
    def blocked(self) -> asyncio.Future[None] | None:
        """While the client's socket buffer is full, a future done once it has room (else None):
        for writers called from a protocol callback, which cannot await :meth:`drain`."""
        return self._conn.drain_waiter

    def end(self) -> None:
        """The whole response was written: the connection may serve the next request."""
        if self.finished:
            return
        self.finished = True
        if self._chunked:
            self._conn.write(b"0\r\n\r\n")

    def plain(self, status: int, message: bytes, *extra: tuple[bytes, bytes], close: bool = True) -> None:
        """A short text answer of the server's own; by default the connection closes after it
        (the client may still be sending a body that will not be read)."""
        if close:
            self.keep_alive = False
        self.start(status, [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(message)), *extra])
        self.write(message)
        self.end()


Handler = Callable[[Request, Response], Awaitable[None]]


class _Refused(Exception):
    """Raised from a parser callback to stop parsing: the request is answered with ``status``."""

    def __init__(self, status: int, message: bytes) -> None:
        self.status = status
        self.message = message


class _Connection(asyncio.Protocol):
    """One client connection: parses requests as bytes arrive, runs them in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.client: str | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[Request | _Refused] = collections.deque()
        self.task: asyncio.Task[None] | None = None
        self.gone = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.reading = True
        self.request_http10 = False
        self.last = self.loop.time()
        self.partial = False  # a request's head or body is arriving
        self.served = 0  # responses completed on this connection
        self._pending: list[bytes] = []
        self._pending_size = 0
        self.upgraded = False  # the parser stopped at an Upgrade/CONNECT: serve what came, then close
        self._url = bytearray()
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._body = bytearray()
        self._in_body = False

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if isinstance(peer, tuple) and peer else None
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.server.connections.discard(self)
        self.queue.clear()
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("client left"))
            waiter.exception()  # retrieved: nobody may be waiting
        if self.task is not None:
            self.task.cancel()  # the relay ends at its pending await and closes its upstream side

    def pause_writing(self) -> None:
        if self.drain_waiter is None:
            self.drain_waiter = self.loop.create_future()

    def resume_writing(self) -> None:
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.last = self.loop.time()
        if self.upgraded:
            return  # not HTTP/1.1 any more: ignored until the connection closes
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.upgraded = True  # the request itself was complete (on_message_complete ran)
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            self._fail(refused if isinstance(refused, _Refused) else _Refused(400, b"bad request\n"))
        except httptools.HttpParserError:
            self._fail(_Refused(400, b"malformed HTTP/1.1 request\n"))
        self._next()

    def eof_received(self) -> bool | None:
        # the client closed its side: taken as leaving (as uvicorn and nginx do), so an open
        # stream's relay ends now rather than when the upstream next writes
        return False

    # -- the parser's callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.partial = True
        self._url = bytearray()
        self._headers = []
        self._head_size = 0
        self._body = bytearray()
        self._in_body = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > MAX_HEAD:
            raise _Refused(414, b"request target too long\n")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_body:  # a chunked body's trailer field: dropped, never promoted to a header
            return
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD:
            raise _Refused(431, b"request headers too large\n")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.parser.get_http_version() not in ("1.1", "1.0"):
            # llhttp takes a request line without a version as HTTP/0.9: "GET /a\r\nX-Injected: 1
            # HTTP/1.1" would become a request with an injected header
            raise _Refused(400, b"HTTP/1.0 or HTTP/1.1 only\n")
        self._in_body = True
        length = chunked = None
        for k, v in self._headers:
            lk = k.lower()
            if lk == b"content-length":
                length = v
            elif lk == b"transfer-encoding":
                chunked = v
        if length is not None and chunked is not None:  # RFC 9112 section 6.3: a smuggling attempt
            raise _Refused(400, b"Content-Length and Transfer-Encoding together\n")
        if length is not None and (not length.strip().isdigit() or int(length) > self.server.max_body):
            raise _Refused(413 if length.strip().isdigit() else 400, b"request body too large\n")

    def on_body(self, body: bytes) -> None:
        self._body += body
        if len(self._body) > self.server.max_body:  # chunked, with no length declared
            raise _Refused(413, b"request body too large\n")

    def on_message_complete(self) -> None:
        self.partial = False
        parser = self.parser
        self.queue.append(Request(parser.get_method().decode("ascii"), bytes(self._url), self._headers,
                                  bytes(self._body), self.client, parser.should_keep_alive(),
                                  parser.get_http_version() == "1.0"))
        self._body = bytearray()
        if len(self.queue) > MAX_QUEUED and self.reading and self.transport is not None:
            self.reading = False
            self.transport.pause_reading()

    # -- running requests -----------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Queued, sent once the running task yields to the loop (or past 64 KiB): a response
        whose head, body and end arrive from the upstream together leaves in one send, not three."""
        if self.gone or self.transport is None:
            return
        if not self._pending:
            self.loop.call_soon(self.flush)
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
            if not self.gone and self.transport is not None:
                self.transport.write(data)

    def _fail(self, refused: _Refused) -> None:
        """Stop reading; the refusal is answered in turn, after the requests before it."""
        self.upgraded = True  # nothing more is parsed on this connection
        self.queue.append(refused)

    def _next(self) -> None:
        if self.task is not None or self.gone:
            return
        if not self.queue:
            if self.upgraded:
                self._close()
            return
        item = self.queue.popleft()
        if isinstance(item, _Refused):
            resp = Response(self, Request("GET", b"", [], b"", self.client, False, False))
            resp.plain(item.status, b"mcplens proxy: " + item.message)
            self._close()
            return
        self.request_http10 = item.http10
        self.task = self.loop.create_task(self._run(item))
        if not self.reading and len(self.queue) <= MAX_QUEUED // 2 and self.transport is not None:
            self.reading = True
            self.transport.resume_reading()

    async def _run(self, request: Request) -> None:
        resp = Response(self, request)
        try:
            await self.server.handler(request, resp)
        except asyncio.CancelledError:
            if not self.gone:
                self._close()
                raise
        except Exception:  # noqa: BLE001 - the handler's own fault: a 500, never a traceback to the client
            log.debug("mcplens proxy: handler failed", exc_info=True)
            if not resp.started:
                resp.plain(500, b"mcplens proxy: internal error\n")
        finally:
            self.task = None
            self.served += 1
            self.last = self.loop.time()
        if not resp.finished or not resp.keep_alive or self.upgraded and not self.queue:
            self._close()  # a response cut short must not look complete to the client
        else:
            self._next()

    def _close(self) -> None:
        self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def idle_for(self, now: float) -> float:
        """Seconds with nothing in flight (0 while a request is being answered)."""
        return 0.0 if self.task is not None or self.queue else now - self.last


class HttpServer:
    """Listens, keeps the connections, closes idle keep-alive ones and stalled ones."""

    def __init__(self, handler: Handler, *, max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body
        self.loop = asyncio.get_running_loop()
        self.connections: set[_Connection] = set()
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, *, backlog: int = 4096) -> None:
        self._server = await self.loop.create_server(lambda: _Connection(self), host, port, backlog=backlog,
                                                     reuse_address=True)
        self._sweeper = self.loop.create_task(self._sweep())

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = self.loop.time()
            for conn in list(self.connections):
                idle = conn.idle_for(now)
                # the keep-alive timeout runs from the end of a response; a connection that has
                # not sent its first request yet (a busy client connects, then writes) or is
                # part-way through one gets the longer stall bound
                if idle > (KEEP_ALIVE if conn.served and not conn.partial else STALLED):
                    conn._close()

    async def close(self, grace: float = 5.0) -> None:
        """Stop listening, close idle connections, cancel what is still in flight (open streams)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        tasks = [c.task for c in self.connections if c.task is not None]
        for conn in list(self.connections):
            if conn.task is None:
                conn._close()
        for task in tasks:
            task.cancel()
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(tasks, timeout=grace)
        for conn in list(self.connections):
            conn._close()
