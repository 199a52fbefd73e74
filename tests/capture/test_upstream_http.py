"""The HTTP proxy's upstream client against a real socket server speaking raw HTTP/1.1.

Each case is a server that answers with exact bytes (framing variants, broken answers, closed
keep-alive connections), on 127.0.0.1; the client must hand back exactly the body bytes, reuse a
connection only when the answer allows it, and fail (never hang, never guess) on a broken one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from mcplens.capture.upstream_http import ConnectError, ReadError, RemoteProtocolError, Upstream

Answer = Callable[[bytes], bytes | None]  # request head -> raw answer (None: close without answering)


async def _serve(answer: Answer, connections: list[int]) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                raw = answer(head)
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
                if b"connection: close" in raw.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _run(answer: Answer, scenario: Callable[[Upstream], object]) -> tuple[object, int]:
    async def main() -> tuple[object, int]:
        connections: list[int] = []
        server = await _serve(answer, connections)
        port = server.sockets[0].getsockname()[1]
        up = Upstream("http", "127.0.0.1", port)
        try:
            return await asyncio.wait_for(scenario(up), 20), len(connections)  # type: ignore[arg-type]
        finally:
            up.close()
            server.close()

    return asyncio.run(main())


#: how the body is read: the pull iterator (``body``) or the push relay the proxy uses (``pipe``)
_READER = ["body"]


@pytest.fixture(autouse=True, params=["body", "pipe"])
def reader(request: pytest.FixtureRequest) -> str:
    """Every case runs with both ways of reading the body: they must give the same bytes and errors."""
    _READER[0] = request.param
    return request.param


async def _get(up: Upstream, method: str = "POST", body: bytes = b"{}") -> tuple[int, bytes]:
    response = await up.request(method, b"/mcp?x=%2F", [(b"host", b"h"), (b"accept", b"*/*")], body)
    try:
        if _READER[0] == "body":
            data = b"".join([chunk async for chunk in response.body()])
        else:
            pieces: list[bytes] = []
            await response.pipe(pieces.append, lambda: None)
            data = b"".join(pieces)
    finally:
        response.close()
    return response.status, data


@pytest.mark.parametrize(("raw", "body"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-T: 1\r\n\r\n",
     b"hello"),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", b"ok"),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
])
def test_framings_give_the_exact_body_and_keep_the_connection(raw: bytes, body: bytes) -> None:
    async def scenario(up: Upstream) -> list[tuple[int, bytes]]:
        return [await _get(up) for _ in range(3)]

    results, connections = _run(lambda head: raw, scenario)
    assert [b for _, b in results] == [body] * 3  # type: ignore[union-attr]
    assert connections == 1  # one keep-alive connection served all three


def test_a_body_that_runs_to_the_close_is_read_whole_and_the_connection_not_reused() -> None:
    async def scenario(up: Upstream) -> list[tuple[int, bytes]]:
        return [await _get(up) for _ in range(2)]

    results, connections = _run(lambda head: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", scenario)
    assert results == [(200, b"all of it")] * 2
    assert connections == 2


def test_the_request_goes_out_as_given() -> None:
    seen: list[bytes] = []

    def answer(head: bytes) -> bytes:
        seen.append(head)
        return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    _run(answer, lambda up: _get(up, body=b'{"a":1}'))
    assert seen[0].startswith(b"POST /mcp?x=%2F HTTP/1.1\r\nhost: h\r\naccept: */*\r\ncontent-length: 7\r\n")


def test_a_pooled_connection_the_upstream_closed_is_retried_once_on_a_new_one() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n"
    answers = iter([ok + b"a", None, ok + b"b"])

    async def scenario(up: Upstream) -> list[tuple[int, bytes]]:
        return [await _get(up), await _get(up)]

    results, connections = _run(lambda head: next(answers), scenario)
    assert results == [(200, b"a"), (200, b"b")] and connections == 2


@pytest.mark.parametrize(("raw", "error"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort", ReadError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", RemoteProtocolError),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", RemoteProtocolError),
    (b"SPDY/9 200 OK\r\n\r\n", RemoteProtocolError),
    (b"HTTP/1.1 200 OK\r\n folded: header\r\n\r\n", RemoteProtocolError),
])
def test_a_broken_answer_is_an_error_not_a_guess(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        _run(lambda head: raw, _get)


def test_nothing_listening_is_a_connect_error() -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        await _get(Upstream("http", "127.0.0.1", port))

    with pytest.raises(ConnectError):
        asyncio.run(main())


def test_a_header_with_a_line_break_is_refused_before_sending() -> None:
    async def scenario(up: Upstream) -> None:
        await up.request("GET", b"/", [(b"host", b"h"), (b"x-a", b"1\r\nx-injected: 2")], b"")

    with pytest.raises(Exception, match="line break"):
        _run(lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", scenario)
