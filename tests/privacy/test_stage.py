"""The privacy stage as a user meets it: policy in code, environment and config file; own processors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import mcp
import mcp_types
import pytest

import mcplens
from mcplens import Policy, ToolPolicy
from mcplens.privacy.policy import from_mapping
from tests.conftest import read_events
from tests.servers import sdk_server

PAYLOAD = {
    "query": "status of order ORD-2024-000123",
    "owner_email": "kim.lee@example.com",
    "ticket": "TCK-99",
    "api_key": "not-even-a-key-format",
    "notes": "x" * 600,
}


async def call_lookup(server: Any, payload: dict[str, Any] = PAYLOAD) -> None:
    async with mcp.Client(server, mode="legacy") as c:
        await c.call_tool("lookup", {"payload": payload})
        await c.call_tool("add", {"a": 4, "b": 5})


def lookup_event(home: Path) -> dict[str, Any]:
    return next(e for e in read_events(home) if e.get("mcplens.target") == "lookup")


def run(home: Path, **options: Any) -> dict[str, Any]:
    server = sdk_server.build()
    mcplens.instrument(server, **options)
    anyio.run(call_lookup, server)
    mcplens.flush()
    return lookup_event(home)


def test_default_redacts_by_key_and_pattern_and_truncates(home: Path) -> None:
    e = run(home)
    kept = e["mcplens.request.arguments"]["payload"]
    assert kept["query"] == PAYLOAD["query"] and kept["ticket"] == "TCK-99"
    assert "kim.lee" not in str(kept) and kept["api_key"].startswith("[REDACTED:")
    assert len(kept["notes"]) < 300 and "+" in kept["notes"]  # truncated, with what was cut
    assert e["mcplens.request.args"] == {"payload": len(mcplens._json.compact(PAYLOAD).encode())}
    assert e["mcplens.redactions"]["REDACTED:API_KEY"] == 1
    assert sum(v for k, v in e["mcplens.redactions"].items() if "EMAIL" in k) == 1


def test_per_tool_allow_deny_and_custom_pattern_in_code(home: Path) -> None:
    policy = Policy(
        tools={"lookup": ToolPolicy(allow=frozenset({"owner_email"}), deny=frozenset({"ticket"}))},
        patterns={"ORDER_ID": r"ORD-\d{4}-\d{6}"},
    )
    kept = run(home, privacy=policy)["mcplens.request.arguments"]["payload"]
    assert kept["owner_email"] == "kim.lee@example.com"  # the owner said so, for this tool only
    assert kept["ticket"] == "[REDACTED:TICKET]"
    assert kept["query"] == "status of order [ORDER_ID]"


def test_no_arguments_per_tool_keeps_shape_only(home: Path) -> None:
    e = run(home, privacy=Policy(tools={"lookup": ToolPolicy(no_arguments=True)}))
    assert "mcplens.request.arguments" not in e and e["mcplens.request.args"]
    add = next(x for x in read_events(home) if x.get("mcplens.target") == "add")
    assert add["mcplens.request.arguments"] == {"a": 4, "b": 5}


def test_too_large_arguments_are_not_kept(home: Path) -> None:
    e = run(home, privacy=Policy(max_arguments_bytes=100))
    assert "mcplens.request.arguments" not in e
    assert e["mcplens.redactions"]["ARGUMENTS_TOO_LARGE"] == 1


def test_callback_has_the_last_word(home: Path) -> None:
    def no_tickets(tool: str | None, path: tuple[str, ...], value: Any) -> Any:
        return "[TICKET]" if path and path[-1] == "ticket" else value

    kept = run(home, privacy=Policy(callback=no_tickets))["mcplens.request.arguments"]["payload"]
    assert kept["ticket"] == "[TICKET]" and kept["query"] == PAYLOAD["query"]


def test_config_file_and_environment(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "mcplens.toml"
    config.write_text(
        '[privacy]\nmax_string = 40\ndeny_keys = ["query"]\n[privacy.tools.add]\nno_arguments = true\n'
    )
    monkeypatch.setenv("MCPLENS_CONFIG", str(config))
    monkeypatch.setenv("MCPLENS_DENY_KEYS", "ticket")
    e = run(home)
    kept = e["mcplens.request.arguments"]["payload"]
    assert kept["query"] == "[REDACTED:QUERY]" and kept["ticket"] == "[REDACTED:TICKET]"
    assert len(kept["notes"]) < 60
    add = next(x for x in read_events(home) if x.get("mcplens.target") == "add")
    assert "mcplens.request.arguments" not in add


def test_config_file_errors_are_clear(tmp_path: Path, home: Path) -> None:
    with pytest.raises(ValueError, match="unknown key"):
        from_mapping({"max_strng": 3})
    with pytest.raises(ValueError, match="not a regular expression"):
        from_mapping({"patterns": {"X": "("}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[privacy\n")
    server = sdk_server.build()
    before = list(server._lowlevel_server.middleware)
    with pytest.raises(ValueError, match="bad.toml"):
        mcplens.instrument(server, config=bad)
    assert server._lowlevel_server.middleware == before


def test_user_processors_run_after_redaction_and_can_drop(home: Path) -> None:
    seen: list[dict[str, Any]] = []

    def spy(e: dict[str, Any]) -> dict[str, Any] | None:
        seen.append(dict(e))
        if e.get("mcplens.target") == "add":
            return None  # drop
        e["team"] = "payments"
        return e

    run(home, processors=[spy])
    assert seen and all("kim.lee" not in str(e) for e in seen)  # it only ever saw sanitized events
    events = read_events(home)
    assert not any(e.get("mcplens.target") == "add" for e in events)
    assert lookup_event(home)["team"] == "payments"


def test_error_messages_and_client_strings_are_redacted(home: Path) -> None:
    server = sdk_server.build()
    mcplens.instrument(server)

    async def main() -> None:
        info = mcp_types.Implementation(name="agent for ops@example.com", version="1.0")
        async with mcp.Client(server, mode="legacy", client_info=info) as c:
            await c.call_tool("lookup", {"payload": {"note": "+44 20 7946 0958"}, "fail": True})

    anyio.run(main)
    mcplens.flush()
    e = lookup_event(home)
    assert "7946" not in e["mcplens.error.message"] and "[PHONE]" in e["mcplens.error.message"]
    assert e["mcplens.client.name"] == "agent for [EMAIL]"
    assert e["mcplens.redactions"]["EMAIL"] >= 1


def test_names_a_client_chooses_are_redacted_too(home: Path) -> None:
    """An unknown tool or method is named by the client: it may carry personal data."""
    server = sdk_server.build()
    mcplens.instrument(server)

    async def main() -> None:
        async with mcp.Client(server, mode="legacy") as c:
            await c.call_tool("notify-kim.lee@example.com", {})
            await c.read_resource("user://kim.lee@example.com/profile")

    anyio.run(main)
    mcplens.flush()
    events = read_events(home)
    unknown = next(e for e in events if e.get("mcplens.status") == "tool_error")
    assert unknown["mcplens.target"] == unknown["gen_ai.tool.name"] == "[EMAIL]"
    read = next(e for e in events if e["mcp.method.name"] == "resources/read")
    assert read["mcplens.target"] == "user://{ident}/profile"
    assert b"kim.lee" not in b"".join(p.read_bytes() for p in home.rglob("*.jsonl"))
