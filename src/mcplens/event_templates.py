"""Cleaned events to stamp out again: the writer's fast lane for a call it has seen before.

A server answers the same kind of call from the same session over and over (a polling agent,
a retried query, a tool called with the same arguments). Building such an event from the raw
capture and passing it through the privacy stage cost ~20 µs per call, four fifths of the
writer's work, to produce the same dict as last time but for a handful of per-call fields.

So a builder gives each capture it can describe completely a **key**: everything the event is
made of except the :data:`PER_CALL` fields (method, the request's params as compact JSON,
session, client, transport...). The first event of a key is built and cleaned as usual; the
pipeline then keeps what the privacy stage returned, without the per-call fields, as the key's
**template**. The next capture with that key is a copy of the template with its own per-call
fields set, marked :class:`Sanitized` so the pipeline does not clean it twice; of its per-call fields only
the raw session id goes through the privacy stage (its pseudonym, ``PrivacyStage.stamped``).

This is sound because the privacy stage is a pure function of the event and the policy: the
same input gives the same output, redactions and counts included. It is not when the user's
redaction callback or processors run (they need not be pure, and processors may keep what they
are handed), so then :meth:`Templates.put` is never called and every event is built and
cleaned. The other per-call fields never go through the stage: they are ids, times, sizes and
counts that mcplens computes itself, never text from the call.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from mcplens import event as ev

#: the fields that differ between two calls with the same key; a template holds all the others
PER_CALL = frozenset({
    ev.EVENT_ID, ev.TIME, ev.DURATION, ev.REQUEST_ID, ev.RESPONSE_SIZE, ev.RESPONSE_TOKENS,
    ev.RESPONSE_ITEMS, ev.RESPONSE_TYPES, ev.TRACE_ID, ev.SPAN_ID, ev.PARENT_SPAN_ID,
    ev.SESSION_ID, ev.SESSION_SOURCE,
})
#: the raw event's field that carries its key from the builder to the pipeline (popped there,
#: before the privacy stage: it never reaches a sink)
KEY_FIELD = "mcplens.internal.template_key"
#: templates kept at most; when full they are all let go and learnt again (sessions come and go,
#: so an old session's templates would otherwise fill it for good)
MAX_TEMPLATES = 512
#: keys are only made for requests whose params encode to at most this many bytes, which bounds
#: a template's size too (its arguments are those params, redacted): 5.7 KB each for 300-byte
#: arguments (tracemalloc, bench/instructions.py --vary), so ~3 MB in all, ~6 MB at this bound
MAX_PARAMS_BYTES = 2048


class Sanitized(dict[str, Any]):
    """An event copied from a template the privacy stage returned: it is not cleaned again."""

    __slots__ = ()


class Templates:
    """Cleaned events by key, bounded in count (and, through the keys' limit, in bytes)."""

    __slots__ = ("_by_key", "hits")

    def __init__(self) -> None:
        self._by_key: dict[Hashable, dict[str, Any]] = {}
        self.hits = 0

    def get(self, key: Hashable) -> dict[str, Any] | None:
        return self._by_key.get(key)

    def put(self, key: Hashable, cleaned: dict[str, Any]) -> None:
        """Keep ``cleaned`` (what the privacy stage returned for the event of ``key``) as its template."""
        by_key = self._by_key
        if len(by_key) >= MAX_TEMPLATES:
            by_key.clear()
        by_key[key] = {k: v for k, v in cleaned.items() if k not in PER_CALL}

    def __len__(self) -> int:
        return len(self._by_key)
