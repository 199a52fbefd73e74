"""The HTTP proxy under hostile traffic: request-target smuggling, hop-by-hop headers, huge bodies,
too many requests, a dead upstream. The upstream is a raw recording server of our own on 127.0.0.1
(:class:`RawUpstream`) so each test sees the exact bytes the proxy sent; the proxy is the real CLI.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from tests.capture.proxy_helpers import ProxyProcess, RawUpstream, raw_http
from tests.conftest import free_port, poll, read_events

GET = b"GET %s HTTP/1.1\r\nHost: client.example\r\n\r\n"


@pytest.fixture
def upstreams():
    """The configured upstream, and another server the proxy must never reach (the SSRF target)."""
    up, other = RawUpstream(), RawUpstream()
    yield up, other
    up.close()
    other.close()


def test_the_upstream_sees_the_configured_origin_and_the_path_bytes_as_sent(upstreams, tmp_path: Path) -> None:
    up, other = upstreams
    with ProxyProcess(up.url, tmp_path / "home") as proxy:
        passed = [
            b"/mcp%3Fa=b", b"/a%2Fb", b"/x%23frag", b"/x/%2e%2e/y", b"/x/%2E%2E/%2e%2e/etc%2Fpasswd",
            b"/mcp?q=%2F&r=%3F&s=%23", b"/mcp?a=b?c", b"//127.0.0.1:%d/secret" % other.port,
            b"/@127.0.0.1:%d/secret" % other.port, b"/a%0d%0aX-Injected:%201", b"/mcp",
        ]
        for target in passed:
            status, _, _ = raw_http(proxy.port, GET % target)
            assert status == 200, target
            seen = up.requests[-1]
            assert seen["target"] == target  # byte for byte: nothing decoded, normalised or re-encoded
            assert seen["headers"][b"host"] == b"127.0.0.1:%d" % up.port  # the upstream's own Host
            assert b"x-injected" not in seen["headers"]
        # the proxy's root stands for the upstream's configured path
        assert raw_http(proxy.port, GET % b"/")[0] == 200 and up.requests[-1]["target"] == b"/mcp"
        forwarded = len(up.requests)
        refused = [
            b"@127.0.0.1:%d/secret" % other.port,  # userinfo trick: origin + target would be another host
            b"http://127.0.0.1:%d/secret" % other.port,  # absolute-form
            b"https://example.com/x",
            b"127.0.0.1:%d" % other.port,  # authority-form
            b"*",
            b"/x#frag",  # a fragment never belongs in a request target
            b"/x/../secret", b"/x/./y", b"/..",  # dot segments the upstream would resolve differently
            b"/a%zz", b"/a%", b"/a\\b", b"/a\"b", b"/a{b}",  # bad escapes, characters outside RFC 3986
        ]
        for target in refused:
            status, _, body = raw_http(proxy.port, GET % target)
            assert status == 400, (target, status, body)
            assert b"Traceback" not in body
        # CR/LF and spaces in the target end the request line early: refused, nothing smuggled
        for raw in (b"GET /a\r\nX-Injected: 1 HTTP/1.1\r\nHost: h\r\n\r\n",
                    b"GET /a HTTP/1.1 /b HTTP/1.1\r\nHost: h\r\n\r\n",
                    b"GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n"):
            assert raw_http(proxy.port, raw)[0] in (0, 400)
        # a body framed two ways (CL.TE): whatever the proxy makes of it, no second request reaches the upstream
        smuggle = (b"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n")
        raw_http(proxy.port, smuggle)
        assert poll(lambda: proxy.proc.poll() is None)  # still serving
        assert raw_http(proxy.port, GET % b"/after")[0] == 200
    # nothing refused reached the upstream, and the smuggled request was never parsed out
    assert [r["target"] for r in up.requests[forwarded:]] == [b"/after"]
    assert other.connections == 0  # the other host was never contacted


def test_hop_by_hop_headers_are_dropped_both_ways(tmp_path: Path) -> None:
    def answer(request):
        return 200, [b"connection: x-upstream-hop, keep-alive", b"x-upstream-hop: 1", b"keep-alive: timeout=5",
                     b"x-end-to-end: 2", b"proxy-authenticate: Basic"], b"{}"

    up = RawUpstream(answer)
    try:
        with ProxyProcess(up.url, tmp_path / "home") as proxy:
            status, headers, _ = raw_http(proxy.port, (
                b"POST /mcp HTTP/1.1\r\nHost: client.example\r\nContent-Type: application/json\r\n"
                b"Connection: keep-alive, X-Secret-Hop, x-other-HOP\r\nX-Secret-Hop: 1\r\nX-Other-Hop: 2\r\n"
                b"Keep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Authorization: Basic eA==\r\n"
                b"Proxy-Connection: keep-alive\r\nTrailer: x\r\nX-End-To-End: 1\r\nAuthorization: Bearer t\r\n"
                b"Mcp-Session-Id: s-1\r\nContent-Length: 2\r\n\r\n{}"))
            assert status == 200
    finally:
        up.close()
    seen = up.requests[-1]["headers"]
    for name in (b"x-secret-hop", b"x-other-hop", b"keep-alive", b"te", b"upgrade", b"proxy-authorization",
                 b"proxy-connection", b"trailer", b"transfer-encoding"):
        assert name not in seen, name
    assert seen.get(b"connection", b"keep-alive").lower() == b"keep-alive"  # the proxy's own, if any
    assert seen[b"x-end-to-end"] == b"1" and seen[b"authorization"] == b"Bearer t" and seen[b"mcp-session-id"] == b"s-1"
    assert seen[b"content-length"] == b"2" and up.requests[-1]["body"] == b"{}"
    for name in (b"x-upstream-hop", b"keep-alive", b"proxy-authenticate"):
        assert name not in headers, name
    assert headers[b"x-end-to-end"] == b"2"


def _send_body(port: int, head: bytes, total: int, chunked: bool) -> tuple[int, int]:
    """Stream ``total`` bytes of body after ``head`` while reading the reply; (status, bytes sent)."""
    sent = 0
    status: list[int] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)

        def read() -> None:
            buf = b""
            try:
                while b"\r\n" not in buf:
                    data = s.recv(4096)
                    if not data:
                        break
                    buf += data
            except OSError:
                pass
            status.append(int(buf.split()[1]) if buf.startswith(b"HTTP/1.1 ") else 0)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        block = b"x" * (1 << 20)
        try:
            while sent < total and not status:
                piece = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
                s.sendall(piece)
                sent += len(block)
        except OSError:  # the proxy closed the connection after its 413
            pass
        reader.join(timeout=30)
    return (status[0] if status else 0), sent


def test_a_256_mib_body_gets_413_without_the_proxy_holding_it(upstreams, tmp_path: Path) -> None:
    up, _ = upstreams
    size = 256 * 1024 * 1024
    with ProxyProcess(up.url, tmp_path / "home") as proxy:
        assert raw_http(proxy.port, GET % b"/warm")[0] == 200
        before = proxy.rss("VmHWM")
        head = b"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
        status, sent = _send_body(proxy.port, head + b"Content-Length: %d\r\n\r\n" % size, size, chunked=False)
        assert status == 413 and sent < size
        status, sent = _send_body(proxy.port, head + b"Transfer-Encoding: chunked\r\n\r\n", size, chunked=True)
        assert status == 413 and sent < size  # no length declared: refused once past the limit
        grown = proxy.rss("VmHWM") - before
        assert grown < 50 * 1024 * 1024, grown  # the peak, not just the end state
        assert raw_http(proxy.port, GET % b"/after")[0] == 200
    assert [r["target"] for r in up.requests] == [b"/warm", b"/after"]  # nothing of the big bodies went on


def test_body_limit_is_configurable_and_a_body_under_it_passes_whole(upstreams, tmp_path: Path) -> None:
    up, _ = upstreams
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"p" * 60_000 + b'"}}'
    post = b"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    with ProxyProcess(up.url, tmp_path / "home", "--max-body", "64KiB") as proxy:
        assert raw_http(proxy.port, post % (len(body), body))[0] == 200
        assert up.requests[-1]["body"] == body
        bigger = body + b" " * 10_000
        assert raw_http(proxy.port, post % (len(bigger), bigger))[0] == 413
    with ProxyProcess(up.url, tmp_path / "home2", MCPLENS_PROXY_MAX_BODY="1k") as proxy:
        assert raw_http(proxy.port, post % (len(body), body))[0] == 413
    assert len(up.requests) == 1


def test_past_the_in_flight_maximum_a_clear_503_and_a_log_line_never_a_stall(upstreams, tmp_path: Path) -> None:
    up, _ = upstreams
    with ProxyProcess(up.url, tmp_path / "home", "--max-in-flight", "3") as proxy:
        streams = []
        for _ in range(3):  # three sessions' GET streams, held open by the upstream
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=20)
            s.sendall(GET % b"/mcp/stream")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            streams.append(s)
        t0 = time.monotonic()
        status, headers, body = raw_http(proxy.port, GET % b"/mcp")
        assert status == 503 and headers[b"retry-after"] == b"1" and time.monotonic() - t0 < 5
        assert b"in flight" in body
        streams.pop().close()  # one stream ends: room again
        assert poll(lambda: raw_http(proxy.port, GET % b"/mcp")[0] == 200)
        for s in streams:
            s.close()
        assert poll(lambda: "3 requests in flight" in proxy.stderr())
    assert up.requests[-1]["target"] == b"/mcp"


def test_start_up_and_upstream_down_lines_on_stderr_rate_limited(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    home = tmp_path / "home"
    with ProxyProcess(dead, home) as proxy:
        assert poll(lambda: f"listening on http://127.0.0.1:{proxy.port}, fronting {dead}" in proxy.stderr())
        post = (b"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
                b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
        for _ in range(5):
            status, _, body = raw_http(proxy.port, post)
            assert status == 502 and b"upstream unreachable" in body
        assert poll(lambda: "unreachable" in proxy.stderr())
    lines = [ln for ln in proxy.stderr().splitlines() if "unreachable" in ln]
    assert len(lines) == 1 and dead.rsplit("/", 1)[0] in lines[0]  # five failures, one line (rate-limited)
    pings = [e for e in read_events(home) if e.get("mcp.method.name") == "ping"]
    assert len(pings) == 5 and all(e["mcplens.error.category"] == "connection_failure" for e in pings)


def test_start_up_line_leaves_out_the_upstream_query(tmp_path: Path) -> None:
    """The query of --upstream is not forwarded, and may hold a token: it is not logged either."""
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    with ProxyProcess(dead + "?access_token=tok-9d8c7b6a5f4e", tmp_path / "home") as proxy:
        assert poll(lambda: f"fronting {dead} " in proxy.stderr())
        assert "tok-9d8c" not in proxy.stderr()


@pytest.mark.parametrize("choice", ["default", "asyncio"])
def test_the_proxy_runs_on_uvloop_unless_told_otherwise(choice: str, tmp_path: Path) -> None:
    """uvloop (the [proxy] extra) roughly quarters the relay's CPU per call (bench/RESULTS.md);
    ``MCPLENS_PROXY_LOOP=asyncio`` keeps the standard loop. The start-up line says which runs."""
    pytest.importorskip("uvloop")
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    env = {"MCPLENS_PROXY_LOOP": "asyncio"} if choice == "asyncio" else {}
    with ProxyProcess(dead, tmp_path / "home", **env) as proxy:
        assert poll(lambda: "event loop " in proxy.stderr())
        want = "asyncio" if choice == "asyncio" else "uvloop"
        assert f"event loop {want})" in proxy.stderr()


def test_bytes_an_upstream_sends_past_its_reply_never_become_the_next_clients_answer(tmp_path: Path) -> None:
    """An upstream that sends more than its reply frames (a bug, or a response-splitting attempt)
    must not have the surplus read as the answer to the next request on that pooled connection,
    which may be another client's: such a connection is closed, never reused."""
    from tests.capture.proxy_helpers import RawUpstream

    def planted(conn: socket.socket, request: dict[str, object]) -> None:
        # the reply (2 bytes by its Content-Length) and, in the same write, a planted one
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
                     b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n"
                     b'"planted"')

    upstream = RawUpstream(raw=planted)
    try:
        with ProxyProcess(upstream.url, tmp_path / "home") as proxy:
            post = (b"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            answers = [raw_http(proxy.port, post) for _ in range(4)]  # one client connection each, in turn
    finally:
        upstream.close()
    assert [(status, body) for status, _, body in answers] == [(200, b"{}")] * 4
    assert upstream.connections == 4  # none of the tainted connections was reused


@pytest.mark.parametrize("trickle", [False, True], ids=["one-write", "byte-by-byte"])
def test_a_chunked_sse_reply_arrives_whole_however_the_upstream_splits_it(trickle: bool, tmp_path: Path) -> None:
    """The upstream client decodes chunked framing from whatever bytes have arrived (a size line,
    an extension, data and CRLF split anywhere, trailers): the client gets the event whole, and
    the connection, read to its end, serves the next request."""
    import http.client

    from tests.capture.proxy_helpers import RawUpstream

    event = b'event: message\r\ndata: {"jsonrpc":"2.0","id":1,"result":{"ok":true}}\r\n\r\n'
    reply = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
             b"7;ext=\"a\"\r\n" + event[:7] + b"\r\n" + b"%X\r\n" % (len(event) - 7) + event[7:] + b"\r\n"
             b"0\r\nx-trailer: t\r\n\r\n")

    def split(conn: socket.socket, request: dict[str, object]) -> None:
        if not trickle:
            conn.sendall(reply)
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(reply)):
            conn.sendall(reply[i:i + 1])
            time.sleep(0.001)  # pacing: a slow network, so the proxy sees many small reads

    upstream = RawUpstream(raw=split)
    try:
        with ProxyProcess(upstream.url, tmp_path / "home") as proxy:
            client = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
            bodies = []
            for i in (1, 2):
                client.request("POST", "/mcp", body=b'{"jsonrpc":"2.0","id":%d,"method":"ping"}' % i,
                               headers={"content-type": "application/json", "accept": "text/event-stream"})
                got = client.getresponse()
                bodies.append((got.status, got.read()))
            client.close()
    finally:
        upstream.close()
    assert bodies == [(200, event), (200, event)]
    assert upstream.connections == 1  # read to its end (trailers too), the upstream connection was reused


def test_a_client_that_does_not_read_holds_back_the_upstream_and_then_gets_every_byte(tmp_path: Path) -> None:
    """The reply is relayed from the upstream connection's callbacks: while the client's socket is
    full, reading from the upstream pauses (the upstream's send blocks), so the proxy never buffers
    a big reply in memory; once the client reads, every byte arrives, in order."""
    import contextlib
    import hashlib

    total = 96 * 1024 * 1024
    piece = bytes(range(256)) * 256  # 64 KiB
    sent = [0]
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve() -> None:
        from tests.capture.proxy_helpers import read_message

        conn, _ = srv.accept()
        with conn:
            if read_message(conn) is None:
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                         b"content-length: %d\r\n\r\n" % total)
            with contextlib.suppress(OSError):
                while sent[0] < total:
                    conn.sendall(piece)
                    sent[0] += len(piece)

    threading.Thread(target=serve, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.getsockname()[1]}/mcp"
        with ProxyProcess(url, tmp_path / "home") as proxy, \
                socket.create_connection(("127.0.0.1", proxy.port), timeout=60) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            client.sendall(b"GET /mcp HTTP/1.1\r\nHost: h\r\n\r\n")
            assert poll(lambda: sent[0] > 0)
            # the upstream stalls well before the end while the client reads nothing (the
            # window over which it is watched, not synchronisation)
            time.sleep(2.0)
            assert sent[0] < total // 2, (sent[0], total)
            got, digest, head = 0, hashlib.sha256(), b""
            while b"\r\n\r\n" not in head:
                head += client.recv(65536)
            head, rest = head.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200")
            digest.update(rest)
            got += len(rest)
            while got < total:
                data = client.recv(1 << 20)
                assert data, got
                digest.update(data)
                got += len(data)
    finally:
        srv.close()
    want = hashlib.sha256()
    for _ in range(total // len(piece)):
        want.update(piece)
    assert got == total and digest.digest() == want.digest()
