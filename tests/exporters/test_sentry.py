"""The Sentry exporter: failures as events, calls as transactions, sanitized context only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest

from tests.conftest import http_server
from tests.exporters.helpers import receiver, sentry_items

pytest.importorskip("sentry_sdk")


def run_traffic(home: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[list[Any], bytes]:
    with receiver() as (base, got):
        monkeypatch.setenv("MCPLENS_EXPORTERS", "sentry")
        monkeypatch.setenv("MCPLENS_SENTRY_DSN", base.replace("http://", "http://publickey@") + "/1")
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        with http_server("tests.exporters.server", home) as url:

            async def main() -> None:
                async with mcp.Client(url, mode="legacy") as c:
                    await c.call_tool("add", {"a": 1, "b": 2})
                    await c.call_tool("lookup", {"payload": {"city": "weather-berlin", "password": "hunter2hunter2"}})
                    await c.call_tool("lookup", {"payload": {"email": "jane.doe@example.org"}, "fail": True})
                    await c.call_tool("fail", {"reason": "weather-paris"})

            anyio.run(main)
        # the server flushed Sentry on SIGTERM before it exited
        items = sentry_items(got)
        payloads = b"".join(json.dumps(p).encode() if not isinstance(p, bytes) else p for _, p in items)
        return items, payloads


def test_failures_are_events_calls_are_transactions_without_arguments(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items, payloads = run_traffic(home, monkeypatch)
    events = [p for h, p in items if h.get("type") == "event"]
    transactions = [p for h, p in items if h.get("type") == "transaction"]
    failed = {e["contexts"]["mcp"]["mcplens.target"] for e in events}
    assert failed == {"lookup", "fail"}
    fail = next(e for e in events if e["contexts"]["mcp"]["mcplens.target"] == "fail")
    assert fail["tags"]["mcplens.status"] == "tool_error" and fail["tags"]["error.type"] == "tool_error"
    assert fail["contexts"]["mcp"]["mcplens.error.category"] == "backend_timeout"
    assert fail["contexts"]["mcp"]["mcplens.request.args"] == {"reason": len('"weather-paris"')}  # sizes only
    assert {t["transaction"] for t in transactions} >= {"tools/call add", "tools/call lookup", "tools/call fail"}
    assert all(t["contexts"]["trace"]["op"] == "mcp.server" for t in transactions)  # one per call, ours
    # no argument values, no secrets, no ids
    for needle in (b"weather-berlin", b"weather-paris", b"hunter2", b"jane.doe", b"mcp.session.id",
                   b"mcplens.client.id", b"client.address"):
        assert needle not in payloads, needle
    assert all("user" not in e for e in events)


def test_arguments_when_allowed_are_the_redacted_ones(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    items, payloads = run_traffic(home, monkeypatch, MCPLENS_EXPORT_ARGUMENTS="1")
    assert b"weather-berlin" in payloads and b"[REDACTED:" in payloads
    assert b"hunter2" not in payloads and b"jane.doe" not in payloads and b"mcp.session.id" not in payloads


def test_guard_strips_what_an_application_setup_adds() -> None:
    from mcplens.exporters.sentry import make_guard
    from mcplens.privacy.redact import Redactor

    guard = make_guard(Redactor())
    event = {
        "user": {"id": "u-1", "ip_address": "203.0.113.9", "email": "jane.doe@example.org"},
        "request": {"url": "https://x/?token=abc", "headers": {"Authorization": "Bearer sk-live-aaaaaaaaaaaaaaaaaaaa"},
                    "cookies": "sid=123", "data": {"password": "hunter2hunter2"}, "method": "POST"},
        "message": "failed for jane.doe@example.org",
        "exception": {"values": [{
            "type": "ValueError", "value": "card 4111 1111 1111 1111 refused",
            "stacktrace": {"frames": [{"function": "f", "vars": {"password": "hunter2hunter2"}}]},
        }]},
        "breadcrumbs": {"values": [{"message": "GET https://api/?email=jane.doe@example.org",
                                    "data": {"url": "https://api/?email=jane.doe@example.org"}}]},
        "extra": {"api_key": "AKIAIOSFODNN7EXAMPLE", "note": "call +44 20 7946 0958"},
        "contexts": {"trace": {"trace_id": "0" * 32}, "custom": {"ssn": "123-45-6789"}},
    }
    out = json.dumps(guard(event, None))
    for secret in ("jane.doe", "203.0.113.9", "hunter2", "4111 1111", "AKIAIOSFODNN7", "7946 0958", "123-45-6789",
                   "sk-live", "sid=123"):
        assert secret not in out, secret
    assert '"method": "POST"' in out and "0" * 32 in out
