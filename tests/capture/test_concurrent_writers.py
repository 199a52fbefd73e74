"""Four stdio server processes write one data directory at once: every event exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from tests.conftest import RawStdioClient, read_events

PROCESSES = 4
CALLS_EACH = 2_600  # 10,400 tool calls in all


def test_four_processes_ten_thousand_calls_each_event_once(home: Path) -> None:
    # small segments so every process also rotates several times while the others write
    clients = [
        RawStdioClient.module("tests.servers.sdk_server", home, MCPLENS_SEGMENT_MAX_BYTES="300000")
        for _ in range(PROCESSES)
    ]
    errors: list[BaseException] = []

    def drive(client: RawStdioClient, n: int) -> None:
        try:
            client.handshake(client=f"agent-{n}")
            for i in range(CALLS_EACH):
                reply = client.ask("tools/call", {"name": "add", "arguments": {"a": i, "b": n}})
                assert reply["result"]["isError"] is False
            client.close_stdin()
            assert client.wait(timeout=60) == 0
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            client.kill()

    threads = [threading.Thread(target=drive, args=(c, n)) for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors

    events = read_events(home)
    calls = [e for e in events if e["mcp.method.name"] == "tools/call"]
    assert len(calls) == PROCESSES * CALLS_EACH
    assert len({e["event.id"] for e in events}) == len(events)
    per_process = Counter(e["mcplens.instance.id"] for e in calls)
    assert sorted(per_process.values()) == [CALLS_EACH] * PROCESSES
    for instance in per_process:
        ids = sorted(int(e["jsonrpc.request.id"]) for e in calls if e["mcplens.instance.id"] == instance)
        assert ids == list(range(2, CALLS_EACH + 2)), "a call is missing or recorded twice"
    clients_seen = {e["mcplens.client.name"] for e in calls}
    assert clients_seen == {f"agent-{n}" for n in range(PROCESSES)}
    closed = list((home / "events" / "closed").glob("*.jsonl"))
    assert len(closed) > PROCESSES, "expected rotation into several segments per process"
    assert not list((home / "events" / "live").glob("*.jsonl"))
