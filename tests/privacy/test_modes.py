"""Packaged mode collects nothing until the end user opts in; no mode ever opens a socket."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest

import mcplens
from tests.conftest import read_events
from tests.servers import sdk_server


@pytest.fixture
def sockets(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every network (IPv4/IPv6) socket created in this process while the test runs.

    The in-memory client needs none; the event loop's own AF_UNIX self-pipe is not egress.
    """
    made: list[tuple[Any, ...]] = []
    real = socket.socket.__init__

    def spy(self: socket.socket, family: Any = -1, *args: Any, **kwargs: Any) -> None:
        real(self, family, *args, **kwargs)
        if self.family in (socket.AF_INET, socket.AF_INET6):
            made.append((self.family, *args))

    monkeypatch.setattr(socket.socket, "__init__", spy)
    return made


async def use(server: Any) -> None:
    async with mcp.Client(server, mode="legacy") as c:
        assert (await c.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}
        await c.call_tool("boom", {"reason": "x"})


def writer_threads() -> int:
    return sum(t.name == "mcplens-writer" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("blocker", [{}, {"DO_NOT_TRACK": "1", "MCPLENS_ENABLED": "1"}])
def test_packaged_mode_without_opt_in_creates_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch, sockets: list[Any], blocker: dict[str, str]
) -> None:
    for k, v in blocker.items():
        monkeypatch.setenv(k, v)
    threads_before = writer_threads()
    server = sdk_server.build()
    handle = mcplens.instrument(server, mode="packaged", opt_in_env="ACME_TELEMETRY")
    assert not handle.active
    assert ("DO_NOT_TRACK" in handle.reason) if blocker else ("ACME_TELEMETRY=1" in handle.reason)
    anyio.run(use, server)
    mcplens.flush()
    assert not home.exists(), "packaged mode wrote to disk before opt-in"
    assert sockets == []
    assert writer_threads() == threads_before


@pytest.mark.parametrize("variable", ["MCPLENS_ENABLED", "ACME_TELEMETRY"])
def test_packaged_mode_collects_after_opt_in(
    home: Path, monkeypatch: pytest.MonkeyPatch, sockets: list[Any], variable: str
) -> None:
    monkeypatch.setenv(variable, "1")
    server = sdk_server.build()
    assert mcplens.instrument(server, mode="packaged", opt_in_env="ACME_TELEMETRY").active
    anyio.run(use, server)
    mcplens.flush()
    calls = [e for e in read_events(home) if e["mcp.method.name"] == "tools/call"]
    assert [e["mcplens.target"] for e in calls] == ["add", "boom"]
    assert sockets == [], "local collection must not open a socket"


def test_mode_from_environment_and_bad_mode(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPLENS_MODE", "packaged")
    assert not mcplens.instrument(sdk_server.build()).active
    with pytest.raises(ValueError, match="mode must be one of"):
        mcplens.instrument(sdk_server.build(), mode="sometimes")
    assert not home.exists()
