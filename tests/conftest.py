"""Shared fixtures: a private data directory per test, real servers in subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


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
    """A bare newline-delimited JSON-RPC client over a server subprocess's stdin/stdout.

    Lets a test see the exact bytes a stdio server sent, and control how the pipe ends
    (stdin EOF, SIGTERM, SIGKILL), which the SDK clients hide.
    """

    def __init__(self, module: str, home: Path, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module], cwd=REPO, env=subprocess_env(home, **env),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self._next = 0
        self.reply_sizes: dict[int, int] = {}

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next += 1
        rid = self._next
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise EOFError(f"server closed stdout while {method} #{rid} was pending")
            reply = json.loads(line)
            if reply.get("id") == rid:
                self.reply_sizes[rid] = len(line.rstrip(b"\r\n"))
                return reply

    def handshake(self, client: str = "raw-agent") -> dict[str, Any]:
        reply = self.request("initialize", {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": client, "version": "1.0"},
        })
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return reply

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.stdout:
                self.proc.stdout.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
