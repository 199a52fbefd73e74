"""Sessions where the transport has none: the 2026-07-28 protocol era is stateless, no session id.

Chains, loops and read-then-send are per session, so every request being its own session (or one
client being one session for a process's whole life) hides them. This module derives a session for
a request that came without one, without touching the request's tool schemas:

1. a conversation id the client sent: a ``_meta`` key named like ``conversationId``/``sessionId``/
   ``threadId`` (any vendor prefix), or one in W3C ``baggage`` (``session.id=...``);
2. else the client (name, version) and its address, split by an idle gap: a new session after
   :data:`IDLE_GAP` seconds without a request from that client.

The event records how its session was derived (``mcplens.session.source``). Runs on the writer
thread (events are built in arrival order there); the state is bounded.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any, Final

from mcplens import event as ev

#: seconds without a request from a client after which its next request starts a new session
IDLE_GAP: Final = 900.0
MAX_CLIENTS: Final = 4096

TRANSPORT: Final = "transport"
PIPE: Final = "pipe"
CONNECTION: Final = "connection"
META, IDLE = ev.DERIVED_SESSION_SOURCES

_CONVERSATION_KEY = re.compile(r"(^|[/.:_-])(conversation|session|thread|chat)[_.-]?id$", re.I)
_BAGGAGE_KEYS = ("session.id", "conversation.id", "gen_ai.conversation.id", "thread.id")


def source_of(session_raw: str) -> str:
    """How a capture path's own session id was derived, from the shape it gives it."""
    if session_raw.startswith("pipe:"):
        return PIPE
    if session_raw.startswith("conn:"):
        return CONNECTION
    return TRANSPORT


#: whether a ``_meta`` key names a conversation, by key: a client sends the same few keys on every
#: request, and the pattern (case-insensitive, searched) cost more than the rest of a copied event
_KEY_NAMES_CONVERSATION: dict[str, bool] = {}


def _names_conversation(key: str) -> bool:
    found = _KEY_NAMES_CONVERSATION.get(key)
    if found is None:
        found = _CONVERSATION_KEY.search(key) is not None
        if len(_KEY_NAMES_CONVERSATION) < 4096:
            _KEY_NAMES_CONVERSATION[key] = found
    return found


def conversation_id(meta: Any) -> str | None:
    """A conversation id the client sent in ``_meta`` (a key or W3C baggage), if any."""
    if not isinstance(meta, dict):
        return None
    for key, value in meta.items():
        if isinstance(key, str) and _names_conversation(key) and isinstance(value, str | int) and str(value):
            return f"{key}={value}"
    baggage = meta.get("baggage")
    if isinstance(baggage, str):
        for item in baggage.split(","):
            k, _, v = item.partition("=")
            v = v.split(";", 1)[0].strip()
            if k.strip() in _BAGGAGE_KEYS and v:
                return f"baggage:{k.strip()}={v}"
    return None


class Stitcher:
    """Idle-gap sessions per (server instance, client, address)."""

    def __init__(self, idle_gap: float = IDLE_GAP, max_clients: int = MAX_CLIENTS) -> None:
        self.idle_gap = idle_gap
        self.max_clients = max_clients
        self._last: OrderedDict[tuple[Any, ...], tuple[float, float, str]] = OrderedDict()
        self._lock = threading.Lock()  # more than one writer thread when a process has several data dirs

    def session(self, key: tuple[Any, ...], t: float) -> str:
        """The session of a request from ``key`` at ``t``: the current one, or a new one after a gap."""
        with self._lock:
            last = self._last.pop(key, None)  # (last request time, session start, its id)
            if last is None or t - last[0] > self.idle_gap:
                last = (t, t, "stitch:" + ":".join(str(k) for k in key) + f":{t:.6f}")
            elif t > last[0]:
                last = (t, last[1], last[2])
            self._last[key] = last
            while len(self._last) > self.max_clients:
                self._last.popitem(last=False)
        return last[2]


_STITCHER = Stitcher()


def stitched(key: tuple[Any, ...], t: float) -> str:
    """The idle-gap session of a request from ``key`` (instance, client key, address) at ``t``."""
    return _STITCHER.session(key, t)


def derive(e: dict[str, Any], session_raw: str | None, meta: Any, client_key: str, address: str | None) -> None:
    """Fill the event's session id (raw: the privacy stage pseudonymises it) and its source."""
    if session_raw:
        e[ev.SESSION_ID] = session_raw
        e[ev.SESSION_SOURCE] = source_of(session_raw)
        return
    conv = conversation_id(meta)
    if conv is not None:
        e[ev.SESSION_ID] = f"meta:{e.get(ev.SERVER_NAME) or ''}:{conv}"
        e[ev.SESSION_SOURCE] = META
        return
    if not client_key.strip("|") and not address:
        return  # nothing to stitch by: the analysis falls back to the server instance
    key = (e.get(ev.INSTANCE_ID), client_key, address or "")
    e[ev.SESSION_ID] = stitched(key, float(e.get(ev.TIME) or 0.0))
    e[ev.SESSION_SOURCE] = IDLE
