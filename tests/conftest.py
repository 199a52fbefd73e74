"""Shared fixtures: a private data directory per test, real servers in subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh MCPLENS_HOME for this test (in-process pipelines are keyed by it)."""
    path = tmp_path / "mcplens-home"
    monkeypatch.setenv("MCPLENS_HOME", str(path))
    return path


def read_events(home: Path, *, health: bool = False) -> list[dict[str, Any]]:
    """Every event line under ``home`` (live and closed segments), in file then line order."""
    out: list[dict[str, Any]] = []
    for sub in ("live", "closed"):
        folder = Path(home) / "events" / sub
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                e = json.loads(line)
                if health or e.get("event.kind") != "mcplens.health":
                    out.append(e)
    return out


def poll(condition: Callable[[], T], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Call ``condition()`` until it returns something truthy (returned) or ``timeout`` seconds
    pass (then the last value is returned, for the caller's assertion to show): the one way tests
    wait for something to happen, never a bare ``time.sleep``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def all_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in Path(home).rglob("*") if p.is_file())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MCPLENS_HOME"] = str(home)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0) -> None:
    """Until something listens on 127.0.0.1:``port``; fail early if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited early: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {port}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM a test's server process and wait for it; SIGKILL it if it does not go."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


@contextlib.contextmanager
def http_server(module: str, home: Path, timeout: float = 30.0) -> Iterator[str]:
    """Start ``python -m module --http PORT`` on 127.0.0.1; SIGTERM it on the way out."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--http", str(port)],
        cwd=REPO, env=subprocess_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, proc, timeout)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(proc)


class RawStdioClient:
    """THE raw newline-delimited JSON-RPC client of the tests, over a process's stdin/stdout.

    Lets a test see the exact bytes a stdio server (or the proxy) sent, write any bytes at all,
    and control how the pipe ends (stdin EOF, SIGTERM, SIGKILL), which the SDK clients hide. A
    reader thread owns stdout so a test never blocks past its timeout, whatever the peer does.
    """

    def __init__(self, command: list[str], env: dict[str, str], *, stderr: Any = subprocess.DEVNULL) -> None:
        self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=stderr)
        self._lines: queue.Queue[bytes] = queue.Queue()
        self.raw = bytearray()  # every stdout byte, in order
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next = 0
        #: request id -> bytes of its reply line (without the newline)
        self.reply_sizes: dict[int, int] = {}

    @classmethod
    def module(cls, module: str, home: Path, **env: str) -> RawStdioClient:
        """``python -m module`` with ``MCPLENS_HOME=home`` and ``env``."""
        return cls([sys.executable, "-m", module], subprocess_env(home, **env))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        buf = b""
        while True:
            try:
                chunk = self.proc.stdout.read1(1 << 16)
            except ValueError:  # the test closed stdout itself
                chunk = b""
            if not chunk:
                if buf:
                    self._lines.put(buf)
                self._lines.put(b"")
                return
            self.raw += chunk
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                self._lines.put(line + b"\n")

    def send(self, data: bytes | dict[str, Any] | list[Any]) -> None:
        assert self.proc.stdin is not None
        if not isinstance(data, bytes):
            data = json.dumps(data, separators=(",", ":")).encode() + b"\n"
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def line(self, timeout: float = 20.0) -> bytes:
        """The next stdout line (with its newline); b"" at EOF."""
        return self._lines.get(timeout=timeout)

    def request(self, method: str, params: dict[str, Any] | None = None, timeout: float = 20.0) -> bytes:
        """Send a request and return the raw reply line, skipping anything else the server sent."""
        self._next += 1
        rid = self._next
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(max(0.1, deadline - time.monotonic()))
            if not line:
                raise EOFError(f"EOF while {method} #{rid} was pending")
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("id") == rid and "method" not in obj:
                self.reply_sizes[rid] = len(line.rstrip(b"\r\n"))
                return line

    def ask(self, method: str, params: dict[str, Any] | None = None, timeout: float = 20.0) -> dict[str, Any]:
        """:meth:`request`, its reply parsed."""
        reply: dict[str, Any] = json.loads(self.request(method, params, timeout))
        return reply

    def handshake(self, client: str = "raw-agent", capabilities: dict[str, Any] | None = None,
                  version: str = "2025-11-25", timeout: float = 90.0) -> bytes:
        """initialize and notifications/initialized; the deadline covers the server's start-up (several
        servers starting at once on a busy machine take a while to import)."""
        reply = self.request("initialize", {"protocolVersion": version, "capabilities": capabilities or {},
                                            "clientInfo": {"name": client, "version": "1.0"}}, timeout)
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return reply

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._reader.join(timeout=5)

    def close(self, timeout: float = 20.0) -> int:
        """Close stdin and wait for the exit code."""
        self.close_stdin()
        return self.wait(timeout)

    def stop(self, grace: float = 5.0) -> int:
        """Close stdin; a server that does not exit on EOF (server-everything) gets SIGTERM."""
        self.close_stdin()
        try:
            return self.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            return self.wait(20)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
