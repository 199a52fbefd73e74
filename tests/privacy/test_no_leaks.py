"""The whole corpus of secrets and personal data, sent through instrumented servers over real
transports, in arguments (nested and inside JSON strings), error messages, resource URIs and
client info. Then every byte mcplens wrote (store and its own log lines) is scanned: no item,
and no 8-character fragment of one, may appear.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import mcp
import mcp_types
import pytest
from mcp import StdioServerParameters

import mcplens
from tests.conftest import REPO, http_server, read_events, subprocess_env
from tests.privacy.corpus import ARGS, CLIENT_INFO, ERROR, JSON_STRING, SECRETS, URI, Item
from tests.privacy.scan import files_text, unmeasured_lines
from tests.servers import sdk_server

BATCH = 25


def fragments(secret: str) -> set[str]:
    if len(secret) < 8:
        return {secret}
    return {secret[i : i + 8] for i in range(len(secret) - 7)}


def entry(item: Item) -> dict[str, Any]:
    return {item.key or "note": item.value}


def batches(place: str) -> list[list[Item]]:
    items = [i for i in SECRETS if place in i.places]
    return [items[k : k + BATCH] for k in range(0, len(items), BATCH)]


async def send_corpus(client: mcp.Client) -> Counter[str]:
    """Every placement; returns how many items went where."""
    sent: Counter[str] = Counter()
    for batch in batches(ARGS):
        payload = {"level1": {"items": [entry(i) for i in batch], "meta": {"page": 1}}}
        assert (await client.call_tool("lookup", {"payload": payload})).is_error is False
        sent[ARGS] += len(batch)
    for batch in batches(JSON_STRING):
        payload = {"blob": json.dumps({"records": [entry(i) for i in batch]})}
        await client.call_tool("lookup", {"payload": payload})
        sent[JSON_STRING] += len(batch)
    for batch in batches(ERROR):
        payload = {"rows": [entry(i) for i in batch]}
        assert (await client.call_tool("lookup", {"payload": payload, "fail": True})).is_error is True
        sent[ERROR] += len(batch)
    for item in (i for i in SECRETS if URI in i.places):
        with contextlib.suppress(Exception):  # the server may reject the odd URI; the request is recorded
            await client.read_resource(f"user://{quote(str(item.value), safe='')}/profile")
        sent[URI] += 1
    return sent


def client_info_items() -> list[Item]:
    """Items a client could put in its name. Key-based kinds (a bare person's name) are only
    recognisable under their key, and mcplens records no clientInfo field but name and version."""
    return [i for i in SECRETS if CLIENT_INFO in i.places and i.key is None]


def assert_nothing_leaked(home: Path, extra: bytes = b"") -> None:
    text = files_text(home) + "\n" + unmeasured_lines(extra.decode("utf-8", errors="replace"))
    assert text.strip(), "nothing was written at all"
    leaks = [(i.kind, f) for i in SECRETS for f in fragments(i.secret) if f in text]
    assert not leaks, f"{len(leaks)} fragments leaked, e.g. {leaks[:5]}"


def assert_redactions_counted(home: Path, sent: Counter[str]) -> None:
    events = read_events(home)
    fired: Counter[str] = Counter()
    for e in events:
        fired.update(e.get("mcplens.redactions") or {})
    assert sum(fired.values()) >= sent[ARGS] + sent[ERROR]
    kinds = {i.kind.removeprefix("REDACTED:") for i in SECRETS if ARGS in i.places}
    seen = {k.removeprefix("REDACTED:") for k in fired}
    assert len(kinds & seen) >= 20, f"only {sorted(kinds & seen)} of {sorted(kinds)} counted"


def test_corpus_is_large_and_varied() -> None:
    assert len(SECRETS) >= 200
    assert len({i.kind for i in SECRETS}) >= 20


def test_in_memory_nothing_leaks(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mcplens")

    async def main() -> Counter[str]:
        server = sdk_server.build()
        mcplens.instrument(server)
        async with mcp.Client(server, mode="legacy") as c:
            sent = await send_corpus(c)
        for item in client_info_items():  # one connection per client-info item
            info = mcp_types.Implementation(name=str(item.value), version="1.0")
            async with mcp.Client(server, mode="legacy", client_info=info) as c:
                await c.call_tool("add", {"a": 1, "b": 2})
        return sent

    sent = anyio.run(main)
    mcplens.flush()
    log_text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("mcplens")).encode()
    assert_nothing_leaked(home, log_text)
    assert_redactions_counted(home, sent)


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_over_real_transports_nothing_leaks(home: Path, transport: str) -> None:
    async def main(target: Any) -> Counter[str]:
        async with mcp.Client(target, mode="legacy") as c:
            return await send_corpus(c)

    if transport == "stdio":
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "tests.servers.sdk_server"], cwd=str(REPO), env=subprocess_env(home)
        )
        sent = anyio.run(main, params)
    else:
        with http_server("tests.servers.sdk_server", home) as url:
            sent = anyio.run(main, url)
    assert_nothing_leaked(home)
    assert_redactions_counted(home, sent)
