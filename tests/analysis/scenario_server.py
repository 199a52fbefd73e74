"""A real low-level SDK server whose tools can be made slow, bloated, failing or redefined at runtime."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server


@dataclass
class Knobs:
    db_down: set[str] = field(default_factory=set)  # tools whose shared database refuses connections
    slow: dict[str, float] = field(default_factory=dict)  # next calls' sleep by argument value "slow"
    descriptions: dict[str, str] = field(default_factory=dict)


TOOLS: dict[str, dict[str, Any]] = {
    "query_database": {"readOnlyHint": True},
    "lookup_customer": {"readOnlyHint": True},
    "get_orders": {"readOnlyHint": True},
    "get_report": {"readOnlyHint": True},
    "search_docs": {"readOnlyHint": True},
    "fetch_page": {"readOnlyHint": True},
    "send_email": {"openWorldHint": True},
    "admin_action": {"destructiveHint": True},
    "never_used": {},
}


def build(knobs: Knobs) -> Server:
    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=n, description=knobs.descriptions.get(n, f"The {n} tool."),
                       inputSchema={"type": "object"},
                       annotations=types.ToolAnnotations(
                           read_only_hint=a.get("readOnlyHint"), open_world_hint=a.get("openWorldHint"),
                           destructive_hint=a.get("destructiveHint")))
            for n, a in TOOLS.items()])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        name, args = params.name, params.arguments or {}
        if name in knobs.db_down:
            raise ConnectionRefusedError("db:5432 connection refused")
        if name == "admin_action":
            raise PermissionError("invalid api key for admin service")
        if "sleep" in args:
            await asyncio.sleep(float(args["sleep"]))
        text = "x" * 12_000 if name == "fetch_page" else f"{name} ok"
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    return Server("scenario", version="1.0", on_list_tools=list_tools, on_call_tool=call_tool)
