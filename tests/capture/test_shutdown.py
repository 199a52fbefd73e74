"""Shutdown keeps every event: stdin EOF and SIGTERM flush; a hard kill loses at most one interval.

The flush interval is set to a minute for the clean cases, so only the shutdown flush can have
written what the test finds.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.conftest import RawStdioClient, read_events

MODULE = "tests.servers.sdk_server"
CALLS = 40


def drive(client: RawStdioClient) -> None:
    client.handshake()
    for i in range(CALLS):
        reply = client.ask("tools/call", {"name": "add", "arguments": {"a": i, "b": 1}})
        assert reply["result"]["structuredContent"] == {"result": i + 1}


def assert_all_recorded(home: Path) -> None:
    events = read_events(home)
    calls = [e for e in events if e["mcp.method.name"] == "tools/call"]
    assert sorted(int(e["jsonrpc.request.id"]) for e in calls) == list(range(2, CALLS + 2))
    assert [e["mcp.method.name"] for e in events].count("initialize") == 1
    assert all(e["network.transport"] == "pipe" for e in events)


def test_stdin_eof_flushes_everything(home: Path) -> None:
    client = RawStdioClient.module(MODULE, home, MCPLENS_FLUSH_INTERVAL="60")
    drive(client)
    client.close_stdin()
    assert client.wait() == 0
    assert_all_recorded(home)
    assert not list((home / "events" / "live").glob("*.jsonl")), "segment not closed on exit"


def test_sigterm_flushes_everything_and_still_terminates(home: Path) -> None:
    client = RawStdioClient.module(MODULE, home, MCPLENS_FLUSH_INTERVAL="60")
    drive(client)
    client.proc.send_signal(signal.SIGTERM)
    assert client.wait() == -signal.SIGTERM  # dies of SIGTERM as it would uninstrumented
    assert_all_recorded(home)


@pytest.mark.parametrize("interval", [0.25])
def test_hard_kill_loses_at_most_one_interval(home: Path, interval: float) -> None:
    client = RawStdioClient.module(MODULE, home, MCPLENS_FLUSH_INTERVAL=str(interval))
    drive(client)
    time.sleep(interval * 2 + 0.3)  # more than one interval after the last reply
    client.kill()
    client.wait()
    assert_all_recorded(home)
    # the killed process's segment stays in live/ for the reading side to pick up
    assert list((home / "events" / "live").glob("*.jsonl"))
