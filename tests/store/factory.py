"""Test events written through the real writer (EventLogSink), so the store reads what capture writes."""

from __future__ import annotations

import itertools
import math
import os
import uuid
from pathlib import Path
from typing import Any

from mcplens import event as ev
from mcplens.store.local.writer import EventLogSink, health_record

_REQ = itertools.count(1)
_ERRORS = {
    ev.TOOL_ERROR: ("tool_error", ev.CAT_INTERNAL),
    ev.JSONRPC_ERROR: ("-32602", ev.CAT_INVALID_PARAMS),
    ev.EXCEPTION: ("ConnectionError", ev.CAT_CONNECTION),
    ev.TIMEOUT: ("TimeoutError", ev.CAT_TIMEOUT),
    ev.UNAUTHORIZED: ("-32001", ev.CAT_AUTH),
    ev.RATE_LIMITED: ("-32029", ev.CAT_INTERNAL),
    ev.CANCELLED: ("CancelledError", None),
    ev.UNSUPPORTED: ("-32601", ev.CAT_NOT_FOUND),
}


def request(
    t: float,
    *,
    method: str = "tools/call",
    target: str | None = "search_files",
    status: str = ev.OK,
    duration: float = 0.012,
    size: int = 812,
    server: str = "files",
    session: str | None = "5f0c3a1be2d94c7a",
    instance: str = "a1b2c3d4e5f60718",
    client: tuple[str, str] = ("claude-code", "1.2.0"),
    kind: str = "request",
) -> dict[str, Any]:
    """One realistic audit event, as the capture side would produce it."""
    e: dict[str, Any] = {
        ev.EVENT_ID: uuid.uuid4().hex,
        ev.EVENT_KIND: kind,
        ev.SCHEMA: ev.SCHEMA_VERSION,
        ev.TIME: t,
        ev.DURATION: duration,
        ev.METHOD: method,
        ev.REQUEST_ID: str(next(_REQ)),
        ev.REQUEST_SIZE: 96,
        ev.STATUS: status,
        ev.RESPONSE_SIZE: size,
        ev.RESPONSE_TOKENS: math.ceil(size / 4),
        ev.RESPONSE_ITEMS: 1,
        ev.RESPONSE_TYPES: ["text"],
        ev.CLIENT_NAME: client[0],
        ev.CLIENT_VERSION: client[1],
        ev.CLIENT_ID: "c-7d1e0f",
        ev.TRANSPORT: "tcp" if session else "pipe",
        ev.PROTOCOL_VERSION: "2025-11-25",
        ev.SERVER_NAME: server,
        ev.SERVER_VERSION: "0.4.2",
        ev.INSTANCE_ID: instance,
        ev.CAPTURE: "sdk",
        ev.PID: os.getpid(),
    }
    if session:
        e[ev.SESSION_ID] = session
    if target is not None:
        e[ev.TARGET] = target
    if method == "tools/call":
        e[ev.TOOL_NAME] = target
        e[ev.OPERATION] = "execute_tool"
        e[ev.ARGS] = {"path": 18, "pattern": 7}
    elif method == "prompts/get":
        e[ev.PROMPT_NAME] = target
    elif method == "resources/read":
        e[ev.RESOURCE_URI] = target
    if status != ev.OK:
        e[ev.ERROR_TYPE], e[ev.ERROR_CATEGORY] = _ERRORS[status]
        if e[ev.ERROR_TYPE].lstrip("-").isdigit():
            e[ev.RPC_CODE] = e[ev.ERROR_TYPE]
    return e


def health(instance: str, t: float, *, server: str = "files", **counters: int) -> dict[str, Any]:
    rec = health_record(instance, counters, {ev.SERVER_NAME: server, ev.INSTANCE_ID: instance, ev.PID: 4242})
    rec[ev.TIME] = t
    return rec


def write(home: Path, events: list[dict[str, Any]], *, instance: str = "a1b2c3d4e5f60718", close: bool = True,
          batch: int = 100) -> Path:
    """Writes through EventLogSink; ``close=False`` leaves the segment in live/ as a running process would."""
    sink = EventLogSink(home, instance, max_bytes=1 << 30, max_age=1e9)
    for i in range(0, len(events), batch):
        sink.write_batch(events[i : i + batch])
    path = sink.path
    assert path is not None
    if close:
        sink.close()
        return path.parent.parent / "closed" / path.name
    return path


def qcont(xs: list[float], q: float) -> float:
    """quantile_cont by hand: linear interpolation between the closest ranks (numpy's default, R type 7)."""
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
