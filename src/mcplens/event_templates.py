"""Cleaned events to stamp out again: the writer's fast lane for a call it has seen before.

A server answers the same kind of call from the same session over and over (a polling agent,
a retried query, a tool called with the same arguments). Building such an event from the raw
capture and passing it through the privacy stage cost ~20 µs per call, four fifths of the
writer's work, to produce the same dict as last time but for a handful of per-call fields.

So a builder gives each capture it can describe completely a **key**: everything the event is
made of except the :data:`PER_CALL` fields (method, the request's params as compact JSON,
session, client, transport...). The first event of a key is built and cleaned as usual; the
pipeline then keeps what the privacy stage returned, without the per-call fields, as the key's
**template**. The next capture with that key is a copy of the template: a :class:`Sanitized`
holding its own per-call fields and a reference to the template, so the pipeline does not clean it
twice; of its per-call fields only the raw session id goes through the privacy stage (its
pseudonym, ``PrivacyStage.stamped``). The event log writes the copy's line as the template's line,
encoded once, followed by the per-call fields (:class:`Template`); other sinks get it whole.

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

from mcplens import _json
from mcplens import event as ev

#: the fields that differ between two calls with the same key; a template holds all the others
PER_CALL = frozenset({
    ev.EVENT_ID, ev.TIME, ev.DURATION, ev.REQUEST_ID, ev.REQUEST_SIZE, ev.RESPONSE_SIZE, ev.RESPONSE_TOKENS,
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


class Template:
    """A cleaned event without its per-call fields, and the start of its JSON line.

    ``prefix`` is the template's compact JSON without its closing brace, followed by a comma: a
    copy's line is the prefix and its per-call fields' JSON without their opening brace. That is
    byte for byte the line of the whole event (the template's fields first, then the per-call
    ones, as :meth:`Sanitized.whole` orders them), while the copy's encoding costs only the
    per-call fields, a fifth of the line, and no copy of the template is made.
    """

    __slots__ = ("fields", "prefix")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.prefix = _json.dumps(fields)[:-1] + b"," if fields else b"{"


class Sanitized(dict[str, Any]):
    """A copy of a template the privacy stage returned: it is not cleaned again.

    It holds only the call's per-call fields, and refers to its :class:`Template` for the rest:
    the event log encodes it as one line with :meth:`line`; any other sink is handed
    :meth:`whole`.
    """

    __slots__ = ("template",)

    def __init__(self, template: Template) -> None:
        super().__init__()
        self.template = template

    def whole(self) -> dict[str, Any]:
        """The whole event as a plain dict: the template's fields, then the per-call ones."""
        return {**self.template.fields, **self}

    def line(self) -> bytes:
        """The whole event's JSON line, as ``_json.dumps_line(self.whole())`` gives it."""
        if not self:
            return _json.dumps_line(self.template.fields)
        return self.template.prefix + _json.dumps_line(self)[1:]


class Templates:
    """Cleaned events by key, bounded in count (and, through the keys' limit, in bytes)."""

    __slots__ = ("_by_key", "hits")

    def __init__(self) -> None:
        self._by_key: dict[Hashable, Template] = {}
        self.hits = 0

    def get(self, key: Hashable) -> Template | None:
        return self._by_key.get(key)

    def put(self, key: Hashable, cleaned: dict[str, Any]) -> None:
        """Keep ``cleaned`` (what the privacy stage returned for the event of ``key``) as its template."""
        by_key = self._by_key
        if len(by_key) >= MAX_TEMPLATES:
            by_key.clear()
        by_key[key] = Template({k: v for k, v in cleaned.items() if k not in PER_CALL})

    def __len__(self) -> int:
        return len(self._by_key)
