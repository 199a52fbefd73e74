"""Synthetic workloads written through the real segment writer (tests/store/factory.py).

``normal()`` is a healthy server: 20 clients, sessions of 3-25 tool calls, a diurnal rhythm,
lognormal latencies (p99 a few times the mean), 0.5-3 KB replies, ~2% errors of mixed
categories, random arguments, a stable tools/list. No injected problem.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

from mcplens import event as ev
from mcplens.capture.common import tool_hash
from tests.store import factory

TOOLS = ("search_docs", "query_orders", "summarize", "create_ticket", "translate", "post_comment")
LISTED = (*TOOLS, "legacy_export")
DAY = 86400.0
T0 = 1_790_000_000.0  # a fixed start (2026-09-21) so runs are reproducible


def tools_list_event(
    t: float,
    *,
    server: str = "files",
    session: str | None = None,
    instance: str = "a1b2c3d4e5f60718",
    descriptions: dict[str, str] | None = None,
    hints: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    e = factory.request(
        t, method="tools/list", target=None, size=2048, server=server, session=session, instance=instance
    )
    tools = [
        {"name": n, "description": (descriptions or {}).get(n, f"{n} tool"), "inputSchema": {"type": "object"}}
        for n in LISTED
    ]
    e[ev.RESPONSE_TOOL_NAMES] = [t["name"] for t in tools]
    e[ev.RESPONSE_TOOL_HASHES] = {t["name"]: tool_hash(t) for t in tools}
    e[ev.RESPONSE_TOOL_HINTS] = hints or {}
    return e


def call(
    t: float,
    tool: str,
    *,
    session: str,
    client: str = "c-1",
    client_name: str = "agent",
    status: str = ev.OK,
    duration: float = 0.05,
    size: int = 1200,
    args: Any = None,
    server: str = "files",
    instance: str = "a1b2c3d4e5f60718",
    category: str | None = None,
    redactions: dict[str, int] | None = None,
    request_size: int | None = None,
) -> dict[str, Any]:
    e = factory.request(
        t,
        target=tool,
        status=status,
        duration=duration,
        size=size,
        session=session,
        server=server,
        instance=instance,
        client=(client_name, "1.0"),
    )
    e[ev.CLIENT_ID] = client
    e[ev.ARGUMENTS] = args if args is not None else {"q": f"x{random.getrandbits(40)}"}
    if category is not None:
        e[ev.ERROR_CATEGORY] = category
    if redactions:
        e[ev.REDACTIONS] = redactions
    if request_size is not None:
        e[ev.REQUEST_SIZE] = request_size
    return e


def normal(
    n_calls: int, *, start: float = T0, days: float = 3.0, seed: int = 7, clients: int = 20
) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    random.seed(seed)
    out: list[dict[str, Any]] = []
    end = start + days * DAY
    for i in range(clients):
        out.append(tools_list_event(start + i, session=f"init{i}"))
    s = 0
    while len(out) < n_calls:
        t = rnd.uniform(start, end)
        hour = (t % DAY) / 3600
        if rnd.random() > 0.4 + 0.6 * math.sin(math.pi * hour / 24) ** 2:  # busier by day
            continue
        s += 1
        c = rnd.randrange(clients)
        session = f"s{s:07d}"
        for _ in range(rnd.randint(3, 25)):
            t += rnd.expovariate(1 / 20)
            if t >= end:
                break
            tool = rnd.choice(TOOLS)
            status, cat = ev.OK, None
            if rnd.random() < 0.02:
                status, cat = rnd.choice(
                    [
                        (ev.TOOL_ERROR, ev.CAT_INTERNAL),
                        (ev.JSONRPC_ERROR, ev.CAT_INVALID_PARAMS),
                        (ev.TIMEOUT, ev.CAT_TIMEOUT),
                        (ev.EXCEPTION, ev.CAT_NOT_FOUND),
                    ]
                )
            out.append(
                call(
                    t,
                    tool,
                    session=session,
                    client=f"c-{c:02d}",
                    client_name=f"agent-{c:02d}",
                    status=status,
                    category=cat,
                    duration=rnd.lognormvariate(math.log(0.05), 0.6),
                    size=int(rnd.uniform(500, 3000)),
                )
            )
    out.sort(key=lambda e: e[ev.TIME])
    return out[:n_calls]


def write(home: Path, events: list[dict[str, Any]], **kw: Any) -> None:
    factory.write(home, events, batch=5000, **kw)


def dumps(findings: list[Any]) -> str:
    return json.dumps([f.to_dict() for f in findings], indent=1, default=str)
