"""REAL: the 2026-07-28 era (stateless HTTP, no session id) still shows loops, chains and read-then-send.

A real ``mcp.Client`` in ``auto`` mode talks to a real instrumented server over streamable HTTP on
127.0.0.1. Conversations are told apart by a ``_meta`` conversation id where the client sends one,
else by the client, its address and an idle gap; each event says which
(``mcplens.session.source``). Nothing here is synthetic.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import mcp
import mcp_types as types

from mcplens.analysis.core import insights
from mcplens.store.local.reader import LocalStore
from tests.conftest import http_server


def test_loops_and_read_then_send_are_seen_without_a_session_id(home: Path) -> None:
    async def main(url: str) -> None:
        info = types.Implementation(name="era-agent", version="3.0")
        async with mcp.Client(url, client_info=info, mode="auto") as c:
            for i in range(7):  # seven conversations of one client, each with its own id
                meta = {"com.example/conversationId": f"conv-{i}"}
                await c.call_tool("search_handbook", {"q": f"topic {i}"}, meta=meta)
                await c.call_tool("lookup_customer", {"ident": f"c-{i}"}, meta=meta)
                if i == 3:  # one of them sends what it read out
                    await c.call_tool("deliver_digest", {"to": "x@example.net", "body": "gold " * 300}, meta=meta)
        other = types.Implementation(name="looping-agent", version="1.0")
        async with mcp.Client(url, client_info=other, mode="auto") as c:  # no conversation id: stitched
            for _ in range(6):
                await c.call_tool("lookup_customer", {"ident": "same"})

    with http_server("tests.analysis.era_server", home) as url:
        anyio.run(main, url)
    store = LocalStore(home)
    calls = store.query("SELECT protocol_version, session_id, session_source, client_name FROM events "
                        "WHERE method = 'tools/call'")
    assert {r["protocol_version"] for r in calls} == {"2026-07-28"}
    by_source = {r["session_source"] for r in calls if r["client_name"] == "era-agent"}
    assert by_source == {"meta"}
    assert len({r["session_id"] for r in calls if r["client_name"] == "era-agent"}) == 7
    looping = [r for r in calls if r["client_name"] == "looping-agent"]
    assert {r["session_source"] for r in looping} == {"idle_gap"} and len({r["session_id"] for r in looping}) == 1
    assert all(r["session_id"].startswith("s_") for r in calls)  # pseudonymised like any session id

    findings = insights(store)
    exfils = {f.subject: f for f in findings if f.detector == "exfiltration"}
    assert set(exfils) == {"lookup_customer -> deliver_digest", "search_handbook -> deliver_digest"}
    handbook = exfils["search_handbook -> deliver_digest"]  # a public handbook search is not a sensitive read
    assert handbook.severity == "info" and handbook.evidence["read_sensitivity"] == "low"
    exfil = exfils["lookup_customer -> deliver_digest"]
    assert exfil.subject == "lookup_customer -> deliver_digest" and exfil.severity == "critical"
    assert exfil.evidence["sessions"] == 1 and exfil.evidence["read_sensitivity"] == "high"
    assert "customer" in exfil.evidence["sensitivity_reason"]
    [chain] = [f for f in findings if f.detector == "chain"]
    assert chain.subject == "search_handbook -> lookup_customer" and chain.evidence["sessions"] == 7
    [loop] = [f for f in findings if f.detector == "loop"]
    assert loop.subject == "lookup_customer" and loop.evidence["longest_run"] == 6
