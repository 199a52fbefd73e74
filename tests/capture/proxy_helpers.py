"""Helpers for the proxy tests: raw byte pipes with deadlines, the proxy command line."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, free_port, stop, subprocess_env, wait_port

NODE_BIN = REPO / "node_modules" / ".bin"
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (the npm peers need it)")


def npm_peer(name: str) -> Path:
    """A binary from the repo's node_modules (installed by `make test` from package.json)."""
    path = NODE_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `npm install --no-audit --no-fund` at the repo root (make test does)")
    return path


def proxy_cmd(home: Path, *command: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "mcplens.cli", "proxy", "--home", str(home), *extra, "--", *command]


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = subprocess_env(home, **extra)
    env.setdefault("MCPLENS_FLUSH_INTERVAL", "0.05")
    return env


# ---- HTTP: a raw recording upstream, the proxy as a real process, raw requests ----------------------


class RawUpstream:
    """An HTTP/1.1 server of our own on 127.0.0.1 that records every request exactly as it came
    off the socket (request line and headers as bytes), so a test sees what the proxy really sent.

    It answers ``200 {}`` as JSON, ``/stream`` GETs with an SSE stream held open until the client
    leaves, and replies per ``answer(request) -> (status, headers, body)`` when one is given. A test
    of the framing itself gives ``raw(conn, request)`` instead, which writes whatever bytes it likes
    on the socket (an ``OSError`` from it ends the connection).
    """

    def __init__(self, answer: Any = None, *, record: bool = True, raw: Any = None) -> None:
        import socket

        self.requests: list[dict[str, Any]] = []
        self.record = record  # off: only count (a leak test must not measure its own upstream)
        self.count = 0
        self.connections = 0
        self.answer = answer
        self.raw = raw
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1024)
        self.port: int = self._sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Any) -> None:
        buf = b""
        with conn:
            while True:
                try:
                    message = read_message(conn, buf)
                except OSError:
                    return
                if message is None:
                    return
                line, header_lines, names, body, buf = message
                method, target, _ = line.split(b" ", 2)
                request = {"line": line, "method": method, "target": target, "headers": names,
                           "raw_headers": header_lines, "body": body}
                self.count += 1
                if self.record:
                    self.requests.append(request)
                if self.raw is not None:
                    try:
                        self.raw(conn, request)
                    except OSError:
                        return
                    continue
                if target.endswith(b"/stream") and method == b"GET":
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                 b"transfer-encoding: chunked\r\n\r\n")
                    with contextlib.suppress(OSError):
                        while conn.recv(65536):
                            pass
                    return
                status, extra, out = self.answer(request) if self.answer else (200, [], b"{}")
                if status is None:  # drop the connection without an answer
                    return
                head_out = [f"HTTP/1.1 {status} X".encode(), b"content-type: application/json",
                            b"content-length: " + str(len(out)).encode(), *extra]
                try:
                    conn.sendall(b"\r\n".join(head_out) + b"\r\n\r\n" + out)
                except OSError:
                    return

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()


class ProxyProcess:
    """``mcplens proxy --upstream URL --listen 127.0.0.1:PORT`` as a real process; stderr kept."""

    def __init__(self, upstream: str, home: Path, *args: str, **env: str) -> None:
        from tests.conftest import free_port

        self.port = free_port()
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self._err = home.parent / f"proxy-{self.port}.stderr"
        self._out = home.parent / f"proxy-{self.port}.stdout"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcplens.cli", "proxy", "--home", str(home), "--upstream", upstream,
             "--listen", f"127.0.0.1:{self.port}", *args],
            cwd=REPO, env=env_for(home, **env), stdout=self._out.open("wb"), stderr=self._err.open("wb"),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def __enter__(self) -> ProxyProcess:
        from tests.conftest import wait_port

        wait_port(self.port, self.proc)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        assert self._out.read_bytes() == b""  # the proxy never writes to stdout
        return code

    def stderr(self) -> str:
        return self._err.read_text(errors="replace")

    def rss(self, field: str = "VmRSS") -> int:
        """Bytes of the proxy's resident memory (``VmHWM``: the peak so far)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise LookupError(field)


def raw_http(port: int, data: bytes, timeout: float = 20.0) -> tuple[int, dict[bytes, bytes], bytes]:
    """Send raw bytes to 127.0.0.1:port; (status, headers, body) of the first response (status 0:
    the connection closed without one)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        message = read_message(s, partial=True)
        if message is None:
            return 0, {}, b""
        line, _, headers, body, _ = message
        return int(line.split()[1]), headers, body


def read_message(
    sock: Any, buf: bytes = b"", *, partial: bool = False,
) -> tuple[bytes, list[bytes], dict[bytes, bytes], bytes, bytes] | None:
    """One HTTP/1.1 message from ``sock`` after ``buf``: (start line, header lines, headers by
    lower-case name, body by Content-Length, the bytes after it); None if the peer closed before
    its end (``partial``: a body cut short is returned as it is)."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    head, buf = buf.split(b"\r\n\r\n", 1)
    line, *header_lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(b":", 1) for h in header_lines)}
    length = int(headers.get(b"content-length", b"0"))
    while len(buf) < length:
        data = sock.recv(65536)
        if not data:
            if partial:
                break
            return None
        buf += data
    return line, header_lines, headers, buf[:length], buf[length:]


@contextlib.contextmanager
def everything_http(tmp_path: Path) -> Iterator[str]:
    """npm server-everything over streamable HTTP on 127.0.0.1 (not instrumented): its URL."""
    port = free_port()
    proc = subprocess.Popen([str(npm_peer("mcp-server-everything")), "streamableHttp"], cwd=tmp_path,
                            env=dict(os.environ, PORT=str(port)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(proc)
