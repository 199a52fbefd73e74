"""Two servers in one process, one data directory, two privacy policies: each server's events
follow its own policy on disk.

``get_pipeline`` used to key only on the data directory: the second ``instrument(...,
privacy=Policy(...))`` had its policy validated and then silently ignored, its events cleaned
by the first server's policy.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import mcp
from mcp.server import MCPServer

import mcplens
from mcplens import Policy, ToolPolicy
from tests.conftest import all_bytes, read_events

SECRET_NOTE = "meeting notes for project bluebird"
SECRET_CODE = "zx-4471-kilo"


def server(name: str) -> MCPServer:
    s = MCPServer(name, version="1.0")

    @s.tool()
    def save(note: str, code: str) -> str:
        return "saved"

    return s


async def call(s: MCPServer) -> None:
    async with mcp.Client(s, mode="legacy") as client:
        await client.call_tool("save", {"note": SECRET_NOTE, "code": SECRET_CODE})


def test_each_server_keeps_its_own_policy_in_one_process(home: Path) -> None:
    loose, strict, deny = server("loose"), server("strict"), server("deny-code")
    mcplens.instrument(loose)  # the default policy: redacted argument values are kept
    mcplens.instrument(strict, privacy=Policy(no_arguments=True))
    mcplens.instrument(deny, privacy=Policy(tools={"save": ToolPolicy(deny=frozenset({"code"}))}))
    for s in (loose, strict, deny, loose):
        anyio.run(call, s)
    mcplens.flush()

    by_server: dict[str, list[dict]] = {}
    for e in read_events(home):
        if e.get("gen_ai.tool.name") == "save":
            by_server.setdefault(e["mcplens.server.name"], []).append(e)
    assert sorted((k, len(v)) for k, v in by_server.items()) == [("deny-code", 1), ("loose", 2), ("strict", 1)]
    for e in by_server["loose"]:
        assert e["mcplens.request.arguments"] == {"note": SECRET_NOTE, "code": SECRET_CODE}
    (e,) = by_server["strict"]
    assert "mcplens.request.arguments" not in e and set(e["mcplens.request.args"]) == {"note", "code"}
    (e,) = by_server["deny-code"]
    args = e["mcplens.request.arguments"]
    assert args["note"] == SECRET_NOTE and args["code"] != SECRET_CODE and SECRET_CODE not in str(args)
    # on disk, the values appear only as often as the loose server's two calls recorded them
    raw = all_bytes(home)
    assert raw.count(SECRET_CODE.encode()) == 2 and raw.count(SECRET_NOTE.encode()) == 3
