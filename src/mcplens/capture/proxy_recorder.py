"""The writer-thread side shared by both proxies: exchanges and protocol errors to events.

The relay path of a proxy only enqueues raw bytes with a timestamp (``Pipeline.submit``); the
builders it enqueues run here, on the writer thread. One raw item (a stdio line, an HTTP chunk)
can complete zero, one or several calls: a :class:`Recorder` collects the events it makes and
:meth:`Recorder.finish` returns them all, as the builder's result (never enqueued again).
"""

from __future__ import annotations

import random
from typing import Any

from mcplens import event as ev
from mcplens.capture.common import Exchange, build_event
from mcplens.capture.jsonrpc import (
    DIRECTION,
    MESSAGE_BYTES,
    PROTOCOL_ERROR,
    PROTOCOL_ERROR_KIND,
    PROTOCOL_ERRORS,
    Pairer,
)
from mcplens.pipeline import Pipeline


class Recorder:
    """Builds events from a proxy's exchanges; counts and records protocol errors."""

    def __init__(self, pipeline: Pipeline, pairer: Pairer) -> None:
        self.pipeline = pipeline
        self.pairer = pairer
        self._base = {ev.INSTANCE_ID: pipeline.instance_id, ev.PID: pipeline._base[ev.PID]}
        self._out: list[dict[str, Any]] = []
        self.protocol_errors = 0
        self._named: tuple[str | None, str | None] = (None, None)

    def add(self, x: Exchange | None) -> None:
        if x is not None:
            self._out.append(build_event(x, self._base))

    def protocol_error(self, reason: str, size: int, start: float, *, direction: str,
                       session_raw: str | None = None, client_address: str | None = None) -> None:
        """An unreadable or unmatched message: passed through untouched, counted and recorded."""
        self.protocol_errors += 1
        e: dict[str, Any] = dict(self._base)
        e[ev.EVENT_ID] = f"{random.getrandbits(128):032x}"
        e[ev.EVENT_KIND] = PROTOCOL_ERROR_KIND
        e[ev.SCHEMA] = ev.SCHEMA_VERSION
        e[ev.TIME] = start
        e[ev.CAPTURE] = "proxy"
        e[ev.TRANSPORT] = self.pairer.transport
        e[PROTOCOL_ERROR] = reason
        e[PROTOCOL_ERRORS] = self.protocol_errors
        e[MESSAGE_BYTES] = size
        e[DIRECTION] = direction
        if self.pairer.server_name is not None:
            e[ev.SERVER_NAME] = self.pairer.server_name
        if self.pairer.server_version is not None:
            e[ev.SERVER_VERSION] = self.pairer.server_version
        if session_raw:  # raw here: the pipeline's privacy stage pseudonymises ids before any sink
            e[ev.SESSION_ID] = session_raw
        if client_address:
            e[ev.CLIENT_ADDRESS] = client_address
        self._out.append(e)

    def finish(self) -> list[dict[str, Any]]:
        """The events this raw item made (none, one or several), for the builder to return."""
        self._stamp_server()
        out, self._out = self._out, []
        return out

    def _stamp_server(self) -> None:
        """Health records carry the server's name once the handshake told it."""
        named = (self.pairer.server_name, self.pairer.server_version)
        if named != self._named and named[0] is not None:
            self._named = named
            self.pipeline.set_base(**{ev.SERVER_NAME: named[0], ev.SERVER_VERSION: named[1]})
