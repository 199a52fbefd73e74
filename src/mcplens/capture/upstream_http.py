"""A lean HTTP/1.1 client for the HTTP proxy's upstream side: asyncio streams and a keep-alive pool.

Why not ``httpx``: profiled under 20-50 concurrent MCP sessions, the general-purpose client stack
(request and URL models, a connection pool that re-checks every connection's socket on each
request, an ``h11`` state machine, the anyio socket wrappers) cost the proxy about as much CPU
per call as the upstream ``MCPServer`` spent answering it. The proxy needs much less: one origin,
a request whose target and headers it has already validated, and the reply's status, headers and
body bytes as they arrive (``Transfer-Encoding`` undone, ``Content-Encoding`` kept). This module
does exactly that and no more.

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
from collections.abc import AsyncIterator
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


class _Conn:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001,S110 - already gone
            pass


class Response:
    """Status, headers (raw byte pairs, as sent) and the body as an async iterator of chunks."""

    __slots__ = ("status", "headers", "_conn", "_pool", "_mode", "_left", "_done", "_keep")

    def __init__(self, pool: Upstream, conn: _Conn, status: int, headers: list[tuple[bytes, bytes]],
                 mode: str, length: int, keep: bool) -> None:
        self.status = status
        self.headers = headers
        self._pool = pool
        self._conn: _Conn | None = conn
        self._mode = mode  # "none", "length", "chunked", "close"
        self._left = length
        self._done = mode == "none"
        self._keep = keep

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (``name`` in lower case)."""
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    async def body(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises :class:`UpstreamError` when the upstream breaks off."""
        conn = self._conn
        if conn is None or self._done:
            return
        reader = conn.reader
        mode = self._mode
        if mode == "length":
            while self._left > 0:
                chunk = await reader.read(min(self._left, READ))
                if not chunk:
                    raise ReadError("body shorter than Content-Length")
                self._left -= len(chunk)
                yield chunk
        elif mode == "chunked":
            while True:
                line = await _line(reader)
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise RemoteProtocolError("bad chunk size") from None
                if size < 0 or len(size_text) > 16:
                    raise RemoteProtocolError("bad chunk size")
                if size == 0:
                    while await _line(reader):  # trailers: read and dropped
                        pass
                    break
                while size > 0:
                    chunk = await reader.read(min(size, READ))
                    if not chunk:
                        raise ReadError("chunk cut short")
                    size -= len(chunk)
                    yield chunk
                if await _line(reader):
                    raise RemoteProtocolError("no CRLF after a chunk")
        else:  # "close": until the upstream closes
            while True:
                chunk = await reader.read(READ)
                if not chunk:
                    break
                yield chunk
            self._keep = False
        self._done = True

    def close(self) -> None:
        """Back to the pool when the body was read whole and the connection may be reused; else closed."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._keep:
            self._pool._release(conn)
        else:
            conn.close()


async def _line(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        raise ReadError("connection closed mid-body") from None
    except asyncio.LimitOverrunError:
        raise RemoteProtocolError("line too long") from None
    return line.rstrip(b"\r\n")


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
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self._ssl, limit=MAX_HEAD,
                                        server_hostname=self.host if self._ssl is not None else None),
                self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectError(f"{type(exc).__name__}: {exc}") from None
        return _Conn(reader, writer)

    def _take(self) -> _Conn | None:
        """The most recently used idle connection still open (newest first: least likely closed)."""
        idle = self._idle
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < self.idle_expiry and not conn.reader.at_eof() and not conn.writer.is_closing():
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

    async def _exchange(self, conn: _Conn, method: str, head: bytes, body: bytes, *, reused: bool) -> Response:
        try:
            writer = conn.writer
            writer.write(head + body if len(body) < READ else head)
            if len(body) >= READ:
                writer.write(body)
            if writer.transport.get_write_buffer_size():
                await asyncio.wait_for(writer.drain(), self.write_timeout)
            while True:
                try:
                    raw = await conn.reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    if reused and not exc.partial:
                        raise StaleConnection("closed before answering") from None
                    raise ReadError("connection closed before the response head") from None
                except asyncio.LimitOverrunError:
                    raise RemoteProtocolError("response head too large") from None
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
