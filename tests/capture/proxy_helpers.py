"""Helpers for the proxy tests: raw byte pipes with deadlines, the proxy command line."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, subprocess_env

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


class RawPipe:
    """A process driven through raw pipes: write bytes, read lines with a deadline.

    A reader thread owns stdout so a test never blocks past its timeout, whatever the peer does.
    """

    def __init__(self, command: list[str], env: dict[str, str], *, stderr: Any = subprocess.DEVNULL) -> None:
        self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=stderr)
        self._lines: queue.Queue[bytes] = queue.Queue()
        self.raw = bytearray()  # every stdout byte, in order
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next = 0

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
                return line

    def handshake(self, client: str = "raw-agent", capabilities: dict[str, Any] | None = None,
                  version: str = "2025-11-25") -> bytes:
        reply = self.request("initialize", {"protocolVersion": version, "capabilities": capabilities or {},
                                            "clientInfo": {"name": client, "version": "1.0"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return reply

    def close(self, timeout: float = 20.0) -> int:
        """Close stdin and wait for the exit code."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._reader.join(timeout=5)

    def stop(self, grace: float = 5.0) -> int:
        """Close stdin; a server that does not exit on EOF (server-everything) gets SIGTERM."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            return self.proc.wait(timeout=20)
        finally:
            self._reader.join(timeout=5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = subprocess_env(home, **extra)
    env.setdefault("MCPLENS_FLUSH_INTERVAL", "0.05")
    return env
