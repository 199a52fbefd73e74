"""The HTTP proxy's server side (httptools/llhttp from an asyncio.Protocol) in front of a raw
recording upstream: pipelining, chunked and trickled request bodies, body limits, ambiguous
framing, HTTP/1.0 and HEAD, slow and idle clients. The proxy runs in this process on a loop in a
thread (fast, and the test can shorten its timers); responses are read with ``h11``, an
independent parser, so a framing mistake of the server cannot hide behind a matching one here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import pytest

from mcplens.capture import http_server
from mcplens.capture.http_server import HttpServer
from mcplens.capture.proxy_http import HttpProxy
from mcplens.config import Settings
from tests.capture.proxy_helpers import RawUpstream
from tests.conftest import poll


def echo(request: dict[str, Any]) -> tuple[int, list[bytes], bytes]:
    """The upstream answers with what it saw: target, body length and body."""
    return 200, [b"x-target: " + request["target"]], b"%d:" % len(request["body"]) + request["body"]


@contextlib.contextmanager
def proxy(upstream: str, tmp: Path, *, max_body: int = 1 << 20) -> Iterator[int]:
    """A relay-only proxy (no pipeline) served on 127.0.0.1: its port."""
    app = HttpProxy(upstream, None, Settings(home=tmp, handle_sigterm=False), max_body=max_body)
    loop = asyncio.new_event_loop()
    holder: list[HttpServer] = []

    async def start() -> None:
        server = HttpServer(app, max_body=max_body)
        await server.start("127.0.0.1", 0)
        holder.append(server)

    async def shut() -> None:
        await holder[0].close()
        app.close()

    loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield holder[0].port
    finally:
        asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=20)
        loop.close()


@pytest.fixture
def up() -> Iterator[RawUpstream]:
    server = RawUpstream(echo)
    yield server
    server.close()


def responses(sock: socket.socket, n: int, *,
              methods: list[bytes] | None = None) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """``n`` responses read off ``sock`` with h11: (status, headers, body), in order."""
    conn = h11.Connection(h11.CLIENT)
    out = []
    for k in range(n):
        # h11 needs to know what each response answers (HEAD has no body)
        conn.send(h11.Request(method=(methods or [b"GET"] * n)[k], target=b"/", headers=[(b"host", b"h")]))
        conn.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
                continue
            if isinstance(event, h11.Response):
                status, headers = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        out.append((status, headers, body))
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            break
        conn.start_next_cycle()
    return out


def closed(sock: socket.socket) -> bool:
    """The server closed the connection (a read returns end of file or a reset)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_pipelined_requests_are_answered_in_order_each_with_its_own_body(up: RawUpstream, tmp_path: Path) -> None:
    with proxy(up.url, tmp_path) as port, socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        batch = b""
        for i in range(6):
            body = b"body-%d" % i * (i + 1)
            batch += (b"POST /mcp/%d HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (i, len(body), body)
                      if i % 2 else b"GET /mcp/%d?q=%d HTTP/1.1\r\nHost: h\r\n\r\n" % (i, i))
        s.sendall(batch)  # all six in one packet
        got = responses(s, 6)
    assert [r[0] for r in got] == [200] * 6
    assert [r[1][b"x-target"] for r in got] == [b"/mcp/%d" % i if i % 2 else b"/mcp/%d?q=%d" % (i, i) for i in range(6)]
    for i, (_, _, body) in enumerate(got):
        sent = b"body-%d" % i * (i + 1) if i % 2 else b""
        assert body == b"%d:%s" % (len(sent), sent)
    assert up.connections >= 1 and [r["target"] for r in up.requests] == [r[1][b"x-target"] for r in got]


def test_a_chunked_body_over_many_packets_reaches_the_upstream_whole_with_a_length(up: RawUpstream,
                                                                                  tmp_path: Path) -> None:
    payload = b'{"jsonrpc":"2.0","id":7,"method":"ping","params":{"pad":"' + b"z" * 3000 + b'"}}'
    chunks = [payload[i:i + 700] for i in range(0, len(payload), 700)]
    wire = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nX-Trailer: t\r\n\r\n"
    head = b"POST /mcp HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    with proxy(up.url, tmp_path) as port, socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        data = head + wire
        for i in range(0, len(data), 97):  # the head and the chunk framing cut at every odd place
            s.sendall(data[i:i + 97])
            time.sleep(0.001)  # pacing the client (separate packets), not synchronisation
        (status, _, body), = responses(s, 1)
    assert status == 200 and body == b"%d:%s" % (len(payload), payload)
    seen = up.requests[-1]
    assert seen["body"] == payload and seen["headers"][b"content-length"] == b"%d" % len(payload)
    assert b"transfer-encoding" not in seen["headers"] and b"x-trailer" not in seen["headers"]


def test_a_slow_client_trickling_head_and_body_byte_by_byte_is_served(up: RawUpstream, tmp_path: Path) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    data = b"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\nX-Long-Header-Name: v\r\n\r\n%s" % (len(body), body)
    with proxy(up.url, tmp_path) as port, socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in data:
            s.sendall(bytes([b]))
            time.sleep(0.0005)  # pacing: one byte per packet
        (status, _, got), = responses(s, 1)
    assert status == 200 and got == b"%d:%s" % (len(body), body)
    assert up.requests[-1]["headers"][b"x-long-header-name"] == b"v"


def test_bodies_over_the_limit_get_413_declared_or_chunked_and_nothing_goes_upstream(up: RawUpstream,
                                                                                     tmp_path: Path) -> None:
    with proxy(up.url, tmp_path, max_body=4096) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(b"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: 4097\r\n\r\n")  # no body byte sent
            (status, headers, _), = responses(s, 1)
            assert status == 413 and headers[b"connection"] == b"close"
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(b"POST /mcp HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
            with contextlib.suppress(OSError):
                for _ in range(5):  # 1 KiB chunks, each its own packet: past the limit at the fifth
                    s.sendall(b"400\r\n" + b"a" * 1024 + b"\r\n")
            (status, _, _), = responses(s, 1)
            assert status == 413
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:  # exactly the limit passes
            s.sendall(b"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: 4096\r\n\r\n" + b"b" * 4096)
            (status, _, body), = responses(s, 1)
            assert status == 200 and body.startswith(b"4096:")
    assert [len(r["body"]) for r in up.requests] == [4096]


@pytest.mark.parametrize("raw", [
    b"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc",
    b"POST /mcp HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    b"POST /mcp HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"GET /mcp HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n",  # obs-fold
    b"GET /mcp HTTP/1.1\r\nHost : h\r\n\r\n",  # space before the colon
    b"GET /mcp HTTP/1.1\nHost: h\n\n",  # bare LF
    b"GET /mcp\r\nX-Injected: 1 HTTP/1.1\r\nHost: h\r\n\r\n",  # no version: HTTP/0.9 to llhttp
    b"GET /mcp HTTP/2.0\r\nHost: h\r\n\r\n",
    b"GET /mcp HTTP/1.1\r\nHost: h\r\nX-Big: " + b"v" * 70_000 + b"\r\n\r\n",  # head over 64 KiB: 431
])
def test_ambiguous_or_malformed_requests_are_refused_and_the_connection_closed(raw: bytes, up: RawUpstream,
                                                                               tmp_path: Path) -> None:
    with proxy(up.url, tmp_path) as port, socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(raw + b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n")
        got = responses(s, 2)
        assert len(got) == 1 and got[0][0] in (400, 431), got  # one refusal, then the close
        assert b"Traceback" not in got[0][2]
        assert poll(lambda: closed(s))
    assert up.requests == []  # neither the request nor what followed it reached the upstream


def test_http10_connection_close_and_head_framing(tmp_path: Path) -> None:
    def answer(request: dict[str, Any]) -> tuple[int, list[bytes], bytes]:
        return 200, [], b"0123456789"

    upstream = RawUpstream(answer)
    try:
        with proxy(upstream.url, tmp_path) as port:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as s:  # HTTP/1.0: answered, then closed
                s.sendall(b"GET /mcp HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\n0123456789")
            with socket.create_connection(("127.0.0.1", port), timeout=20) as s:  # Connection: close is honoured
                s.sendall(b"GET /mcp HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                (status, headers, _), = responses(s, 1)
                assert status == 200 and headers[b"connection"] == b"close" and poll(lambda: closed(s))
            # HEAD: headers only (last: this upstream wrongly sends a body to HEAD too, which
            # would spoil its pooled connection for what came next)
            with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
                s.sendall(b"HEAD /mcp HTTP/1.1\r\nHost: h\r\n\r\n")
                (status, headers, body), = responses(s, 1, methods=[b"HEAD"])
                assert status == 200 and headers[b"content-length"] == b"10" and body == b""
    finally:
        upstream.close()


def test_an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not(up: RawUpstream, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_server, "KEEP_ALIVE", 0.3)
    with proxy(up.url, tmp_path) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as fresh, \
                socket.create_connection(("127.0.0.1", port), timeout=20) as idle, \
                socket.create_connection(("127.0.0.1", port), timeout=20) as stream:
            idle.sendall(b"GET /mcp HTTP/1.1\r\nHost: h\r\n\r\n")
            assert responses(idle, 1)[0][0] == 200
            stream.sendall(b"GET /mcp/stream HTTP/1.1\r\nHost: h\r\n\r\n")  # held open by the upstream
            assert stream.recv(4096).startswith(b"HTTP/1.1 200")
            assert poll(lambda: closed(idle), timeout=10)  # the sweep runs every second
            stream.settimeout(0.2)
            with pytest.raises(TimeoutError):  # a response in flight is never idle, however quiet
                stream.recv(1)
            # a connection whose first request comes late (a busy client connects, then writes) is
            # not an idle keep-alive one: it is still served
            fresh.sendall(b"GET /mcp HTTP/1.1\r\nHost: h\r\n\r\n")
            assert responses(fresh, 1)[0][0] == 200
