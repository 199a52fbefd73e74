"""A lean HTTP/1.1 client for the HTTP proxy's upstream side: an asyncio Protocol and a keep-alive pool.

Why not ``httpx``: profiled under 20-50 concurrent MCP sessions, the general-purpose client stack
(request and URL models, a connection pool that re-checks every connection's socket on each
request, an ``h11`` state machine, the anyio socket wrappers) cost the proxy about as much CPU
per call as the upstream ``MCPServer`` spent answering it. The proxy needs much less: one origin,
a request whose target and headers it has already validated, and the reply's status, headers and
body bytes as they arrive (``Transfer-Encoding`` undone, ``Content-Encoding`` kept). This module
does exactly that and no more.

Why a Protocol, not asyncio streams: uvicorn sends each SSE reply as three segments (head, the
event's chunk, the final ``0`` chunk), and through a ``StreamReader`` every chunk cost three awaits
(size line, data, CRLF), each a coroutine round with its own future. Here the bytes land in one
buffer and :meth:`Response.body` decodes every complete piece in it at once, yielding what
arrived together as one chunk: one wake-up of the relay per segment, whatever its framing.

Framing follows RFC 9112 section 6.3: no body for ``HEAD`` or 1xx/204/304; ``chunked`` when it
is the final transfer coding; else ``Content-Length`` (conflicting values are an error, never a
guess); else the body runs to the close. A connection goes back to the pool only after a whole
body was read from an HTTP/1.1 reply without ``Connection: close``; anything else closes it.
"""

from __future__ import annotations

import asyncio
import collections
import ssl as _ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

#: read size for bodies: an SSE event is passed on as soon as it arrives, whatever this is
READ: Final = 65536
#: largest response head accepted (status line and headers)
MAX_HEAD: Final = 64 * 1024
_NO_BODY_STATUS: Final = frozenset({204, 304})


class UpstreamError(Exception):
    """The upstream broke the protocol or the connection. The subclasses carry the names events
    record as ``error.type`` (the ones ``httpx`` used: ``ConnectError``, ``ReadError``,
    ``RemoteProtocolError``), so the error categories stay what they were."""


class ConnectError(UpstreamError):
    """No connection to the upstream (refused, unreachable, timed out)."""


class ReadError(UpstreamError):
    """The connection broke while the answer was read."""


class RemoteProtocolError(UpstreamError):
    """The upstream's answer is not valid HTTP/1.1."""


class StaleConnection(UpstreamError):
    """A pooled connection was found closed before any byte of the answer: safe to retry once."""


#: bytes buffered from an upstream connection before reading from it pauses (a slow client)
HIGH_WATER: Final = 4 * READ


class _Conn(asyncio.Protocol):
    """One upstream connection: what it receives is buffered, and the one task reading it is woken."""

    __slots__ = ("transport", "buf", "eof", "exc", "idle_since", "pump", "_waiter", "_drain", "_paused_reading")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.eof = False
        self.exc: BaseException | None = None
        self.idle_since = 0.0
        #: set while :meth:`Response.pipe` relays the body: called for every arrival instead of a wake-up
        self.pump: Callable[[], None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused_reading = False

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > HIGH_WATER and not self._paused_reading and self.transport is not None:
            self.hold()
        self._arrived()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._arrived()
        return False  # close the transport: HTTP/1.1 has no half-closed use here

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if exc is not None:
            self.exc = exc
        self._arrived()
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- the reading task's side ---------------------------------------------------------------------
    def _arrived(self) -> None:
        pump = self.pump
        if pump is not None:
            pump()
        else:
            self._wake()

    def hold(self) -> None:
        """Stop reading from the socket (the buffer is full, or the client cannot take more)."""
        if not self._paused_reading and self.transport is not None:
            self._paused_reading = True
            self.transport.pause_reading()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until more bytes, the end, or an error arrive (raises the connection's error)."""
        if self.exc is not None:
            raise self.exc
        if self.eof:
            return
        if self._paused_reading and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        if self.exc is not None:
            raise self.exc

    def consumed(self) -> None:
        """The reader took bytes out of the buffer: reading resumes once it has room again."""
        if self._paused_reading and len(self.buf) <= HIGH_WATER and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()

    async def drain(self, timeout: float) -> None:
        drain = self._drain
        if drain is not None:
            await asyncio.wait_for(asyncio.shield(drain), timeout)

    @property
    def usable(self) -> bool:
        """Open, nothing unread: safe to send the next request on."""
        return (self.transport is not None and not self.eof and self.exc is None and not self.buf
                and not self.transport.is_closing())

    def close(self) -> None:
        transport = self.transport
        if transport is not None:
            try:
                transport.close()
            except Exception:  # noqa: BLE001,S110 - already gone
                pass


class Response:
    """Status, headers (raw byte pairs, as sent) and the body as an async iterator of chunks."""

    __slots__ = ("status", "headers", "_conn", "_pool", "_mode", "_left", "_done", "_keep", "_state")

    def __init__(self, pool: Upstream, conn: _Conn, status: int, headers: list[tuple[bytes, bytes]],
                 mode: str, length: int, keep: bool) -> None:
        self.status = status
        self.headers = headers
        self._pool = pool
        self._conn: _Conn | None = conn
        self._mode = mode  # "none", "length", "chunked", "close"
        self._left = length  # "length": bytes to come; "chunked": bytes left of the current chunk
        self._done = mode == "none"
        self._keep = keep
        self._state = 0  # chunked: 0 size line, 1 chunk data, 2 CRLF after a chunk, 3 trailers

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (``name`` in lower case)."""
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    async def body(self) -> AsyncIterator[bytes]:
        """The body as it arrives, everything that arrived together as one chunk; raises
        :class:`UpstreamError` when the upstream breaks off (or the connection's own error)."""
        conn = self._conn
        if conn is None or self._done:
            return
        decode = self._decode_chunked if self._mode == "chunked" else self._decode_plain
        while True:
            pieces = decode(conn)
            if pieces:
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if self._done:
                return
            # the decoder took every complete piece: what is left needs more bytes
            if conn.eof and conn.exc is None:
                self._ended_early()
                if self._done:
                    return
            await conn.wait()

    async def pipe(self, sink: Callable[[bytes], None], blocked: Callable[[], asyncio.Future[None] | None]) -> None:
        """The body handed to ``sink`` straight from the connection's ``data_received``, everything
        that arrived together as one piece: no task wake-up per segment, only at the end, on an
        error, or when ``blocked()`` (the consumer's buffer is full) returns a future to wait on,
        during which reading from the upstream pauses. Raises as :meth:`body` does."""
        conn = self._conn
        if conn is None or self._done:
            return
        decode = self._decode_chunked if self._mode == "chunked" else self._decode_plain
        loop = asyncio.get_running_loop()
        waiter: list[asyncio.Future[None] | None] = [None]
        failed: list[BaseException] = []

        def wake() -> None:
            w, waiter[0] = waiter[0], None
            if w is not None and not w.done():
                w.set_result(None)

        def pump() -> None:
            try:
                pieces = decode(conn)
                if pieces:
                    sink(pieces[0] if len(pieces) == 1 else b"".join(pieces))
                if not self._done and conn.eof:
                    if conn.exc is not None:
                        raise conn.exc
                    self._ended_early()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting task, which raises it
                failed.append(exc)
                conn.pump = None
                wake()
                return
            if self._done:
                conn.pump = None
                wake()
            elif blocked() is not None:
                conn.hold()
                wake()

        conn.pump = pump
        try:
            pump()  # what is buffered already
            while not self._done:
                if failed:
                    raise failed[0]
                full = blocked()
                if full is not None:
                    conn.hold()
                    await full
                    conn.pump = pump
                    pump()
                    if not failed and not self._done:
                        conn.consumed()  # reading resumes
                    continue
                # the client may have drained between pump() holding the upstream and this task
                # running: then nothing else resumes reading, and the reply would stall for good
                conn.consumed()
                w = waiter[0] = loop.create_future()
                await w
            if failed:
                raise failed[0]
        finally:
            conn.pump = None

    def _ended_early(self) -> None:
        mode = self._mode
        if mode == "close":
            self._done, self._keep = True, False
            return
        if mode == "length":
            raise ReadError("body shorter than Content-Length")
        if self._state == 1:
            raise ReadError("chunk cut short")
        raise ReadError("connection closed mid-body")

    def _decode_plain(self, conn: _Conn) -> list[bytes]:
        buf = conn.buf
        if not buf:
            if conn.eof and self._mode == "close":
                self._done, self._keep = True, False
            return []
        if self._mode == "length":
            take = min(self._left, len(buf))
            piece = bytes(buf[:take])
            del buf[:take]
            self._left -= take
            if self._left <= 0:
                self._done = True
        else:
            piece = bytes(buf)
            buf.clear()
        conn.consumed()
        return [piece]

    def _decode_chunked(self, conn: _Conn) -> list[bytes]:
        """Every complete piece of chunked framing in the buffer, decoded (the rest waits for more bytes)."""
        buf = conn.buf
        pieces: list[bytes] = []
        pos = 0
        n = len(buf)
        try:
            while not self._done:
                state = self._state
                if state == 1:
                    if pos >= n:
                        break
                    take = min(self._left, n - pos)
                    pieces.append(bytes(buf[pos:pos + take]))
                    pos += take
                    self._left -= take
                    if self._left == 0:
                        self._state = 2
                    continue
                end = buf.find(b"\n", pos)
                if end < 0:
                    if n - pos > MAX_HEAD:
                        raise RemoteProtocolError("line too long")
                    break
                line = bytes(buf[pos:end]).rstrip(b"\r\n")
                pos = end + 1
                if state == 0:
                    size_text = line.split(b";", 1)[0].strip()
                    try:
                        size = int(size_text, 16)
                    except ValueError:
                        raise RemoteProtocolError("bad chunk size") from None
                    if size < 0 or len(size_text) > 16:
                        raise RemoteProtocolError("bad chunk size")
                    if size == 0:
                        self._state = 3
                    else:
                        self._left, self._state = size, 1
                elif state == 2:
                    if line:
                        raise RemoteProtocolError("no CRLF after a chunk")
                    self._state = 0
                elif not line:  # state 3: trailers, read and dropped, until the empty line
                    self._done = True
        finally:
            if pos:
                del buf[:pos]
                conn.consumed()
        return pieces

    def close(self) -> None:
        """Back to the pool when the body was read whole and the connection may be reused; else closed."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._keep and not conn.buf:
            self._pool._release(conn)
        else:
            conn.close()


class Upstream:
    """One origin (``http``/``https``, host, port) and its idle keep-alive connections."""

    def __init__(self, scheme: str, host: str, port: int, *, max_idle: int = 256, idle_expiry: float = 2.0,
                 connect_timeout: float = 30.0, write_timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self._ssl: _ssl.SSLContext | None = _ssl.create_default_context() if scheme == "https" else None
        self._idle: collections.deque[_Conn] = collections.deque()
        self.max_idle = max_idle
        self.idle_expiry = idle_expiry
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Conn, self.host, self.port, ssl=self._ssl,
                                       server_hostname=self.host if self._ssl is not None else None),
                self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectError(f"{type(exc).__name__}: {exc}") from None
        return conn

    def _take(self) -> _Conn | None:
        """The most recently used idle connection still open (newest first: least likely closed)."""
        idle = self._idle
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < self.idle_expiry and conn.usable:
                return conn
            conn.close()
        return None

    def _release(self, conn: _Conn) -> None:
        idle = self._idle
        now = time.monotonic()
        conn.idle_since = now
        while idle and (len(idle) >= self.max_idle or now - idle[0].idle_since >= self.idle_expiry):
            idle.popleft().close()  # the oldest first: over the cap or expired
        if self.max_idle > 0:
            idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def request(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> Response:
        """Send one request; the answer's head is read, its body is left to :meth:`Response.body`.

        ``target`` and ``headers`` have been validated by the caller (origin-form target, no
        hop-by-hop headers, a ``host`` header present); CR/LF are refused here again all the same.
        A pooled connection that turns out closed before the head arrives is retried once on a new one.
        """
        parts = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
        for k, v in headers:
            if b"\n" in v or b"\r" in v or b"\n" in k or b"\r" in k or b":" in k:
                raise UpstreamError("header with a line break")
            parts += (k, b": ", v, b"\r\n")
        if body or method in ("POST", "PUT", "PATCH"):
            parts += (b"content-length: ", str(len(body)).encode(), b"\r\n")
        parts.append(b"\r\n")
        if b"\n" in target or b"\r" in target or b" " in target:
            raise UpstreamError("bad request target")
        head = b"".join(parts)
        conn = self._take()
        if conn is not None:
            try:
                return await self._exchange(conn, method, head, body, reused=True)
            except StaleConnection:
                pass
        return await self._exchange(await self._connect(), method, head, body, reused=False)

    async def _read_head(self, conn: _Conn, *, reused: bool) -> bytes:
        searched = 0
        while True:
            buf = conn.buf
            end = buf.find(b"\r\n\r\n", max(0, searched - 3))
            if end >= 0:
                raw = bytes(buf[:end + 4])
                del buf[:end + 4]
                conn.consumed()
                return raw
            searched = len(buf)
            if searched > MAX_HEAD:
                raise RemoteProtocolError("response head too large")
            if conn.eof and conn.exc is None:
                if reused and not buf:
                    raise StaleConnection("closed before answering")
                raise ReadError("connection closed before the response head")
            await conn.wait()

    async def _exchange(self, conn: _Conn, method: str, head: bytes, body: bytes, *, reused: bool) -> Response:
        try:
            transport = conn.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("connection closed")
            transport.write(head + body if len(body) < READ else head)
            if len(body) >= READ:
                transport.write(body)
            await conn.drain(self.write_timeout)
            while True:
                raw = await self._read_head(conn, reused=reused)
                status, headers, version = _parse_head(raw)
                if 100 <= status < 200 and status != 101:
                    continue  # interim (100 Continue, 103 Early Hints): the final answer follows
                break
        except (ConnectionError, OSError) as exc:
            conn.close()
            if reused:
                raise StaleConnection(repr(exc)) from None
            raise ReadError(f"{type(exc).__name__}: {exc}") from None
        except BaseException:
            conn.close()
            raise
        keep = version == b"HTTP/1.1"
        chunked = False
        lengths: set[bytes] = set()
        for k, v in headers:
            lk = k.lower()
            if lk == b"connection" and b"close" in v.lower():
                keep = False
            elif lk == b"transfer-encoding":
                chunked = v.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
                if not chunked:
                    keep = False  # some other final coding: the body runs to the close
            elif lk == b"content-length":
                lengths.update(x.strip() for x in v.split(b","))
        length = 0
        if method == "HEAD" or status in _NO_BODY_STATUS or status == 101:
            mode = "none"
        elif chunked:
            mode = "chunked"
        elif any(k.lower() == b"transfer-encoding" for k, _ in headers):
            mode = "close"
        elif lengths:
            if len(lengths) != 1 or not next(iter(lengths)).isdigit():
                conn.close()
                raise RemoteProtocolError("bad Content-Length")
            length = int(next(iter(lengths)))
            mode = "length" if length else "none"
        else:
            mode, keep = "close", False
        return Response(self, conn, status, headers, mode, length, keep)


def _parse_head(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    lines = raw[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise RemoteProtocolError("bad status line")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or line[:1] in (b" ", b"\t") or b"\n" in line:
            raise RemoteProtocolError("bad header line")
        headers.append((name, value.strip(b" \t")))
    return int(code), headers, version
