"""The demo end to end, at a tenth of its traffic: real stdio and HTTP servers, the real report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = ("search_docs", "query_database", "fetch_url", "read_file", "send_message")

pytest.importorskip("mcp")


def test_quick_demo_records_both_transports(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "MCPLENS_HOME": str(home), "MCPLENS_DEMO_SCALE": "0.1"}
    env.pop("MCPLENS_DISABLED", None)
    proc = subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for tool in TOOLS:
        assert tool in proc.stdout, f"{tool} missing from the report:\n{proc.stdout}"

    events = []
    for path in sorted((home / "events").rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                events.append(json.loads(line))
    requests = [e for e in events if e.get("event.kind") == "request"]
    assert len(requests) >= 150

    transports = {e.get("network.transport") for e in requests}
    assert {"pipe", "tcp"} <= transports, transports
    clients = {e.get("mcplens.client.name") for e in requests}
    assert len(clients - {None}) >= 4, clients
    statuses = {e.get("mcplens.status") for e in requests}
    assert {"ok", "tool_error"} <= statuses, statuses
    assert {e.get("gen_ai.tool.name") for e in requests} >= set(TOOLS)
    # a stdio client owns its server process: one session each, in both protocol eras
    for client in {e.get("mcplens.client.name") for e in requests if e.get("network.transport") == "pipe"}:
        sessions = {e.get("mcp.session.id") for e in requests if e.get("mcplens.client.name") == client}
        assert len(sessions) == 1 and None not in sessions, (client, sessions)
    # arguments are kept redacted: the SQL stays, the e-mail addresses agents sent never reach disk
    raw = json.dumps(events)
    assert "SELECT" in raw
    assert "@example.com" not in raw and "@example.org" not in raw
    assert any((e.get("mcplens.redactions") or {}).get("EMAIL") for e in events)
