"""The privacy stage: every event passes through it, on the writer thread, before any sink sees it.

A chain of small processors over one event dict, in the manner of structlog: each takes the
event and returns it (changed) or ``None`` to drop it. The built-in ones count prompt-injection
phrases, redact arguments, error text, resource URIs and client strings, and pseudonymise ids;
a user's own processors run after them, so they only ever see sanitized data. The stage then
stamps the event with the redactions that fired, by kind and count, never a value.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, unquote

from mcplens import _json
from mcplens import event as ev
from mcplens.capture.common import uri_shape
from mcplens.privacy import injection, new_counter
from mcplens.privacy.ids import Pseudonymizer
from mcplens.privacy.policy import Policy
from mcplens.privacy.redact import Redactor

Processor = Callable[[dict[str, Any]], "dict[str, Any] | None"]

#: id fields and the prefix of their pseudonym
_ID_FIELDS = ((ev.SESSION_ID, "s"), (ev.CLIENT_ID, "c"), (ev.CLIENT_ADDRESS, "ip"))
#: free text, and names a client chooses: an unknown tool or method can be called anything
_TEXT_FIELDS = (
    ev.ERROR_MESSAGE, ev.CLIENT_NAME, ev.CLIENT_VERSION, ev.METHOD, ev.TARGET, ev.TOOL_NAME, ev.PROMPT_NAME,
)

#: the clean-text cache: strings up to this long, at most this many (then no more are added)
_CACHE_CHARS = 256
_CACHE_ENTRIES = 4096
#: the clean-arguments cache: argument objects up to this many bytes of JSON, at most this many
#: (2 MB at most in all); then no more are added
_ARGS_BYTES = 1024
_ARGS_ENTRIES = 2048


def _arguments_size(raw: Any, shape: Any) -> int:
    """The arguments' JSON size, from the per-value sizes the event already carries when it can:
    the values are not encoded a second time (a 20 MB one took a tenth of a second per pass)."""
    if isinstance(raw, dict) and isinstance(shape, dict) and shape.keys() == raw.keys():
        values = sum(shape.values())
        if values >= 4096:  # below it, one C-level encode is cheaper than summing in Python
            return _json.keys_size(shape) + values
    return _json.size(raw)


class PrivacyStage:
    """Redact, pseudonymise, then the user's processors; count what fired."""

    def __init__(
        self, policy: Policy, ids: Callable[[], Pseudonymizer], processors: Sequence[Processor] = ()
    ) -> None:
        self.policy = policy
        self._ids = ids
        self._user = list(processors)
        self._redactors: dict[str | None, Redactor] = {}
        self._counts: Counter[str] = Counter()
        self._uri: tuple[str, str] | None = None  # (raw, mask) of the event's resource URI
        #: short texts the default redactor returned unchanged with nothing fired (method, tool and
        #: client names, argument names: the same few on every event). Redaction is a pure function
        #: of the string and the rules, so a string found here needs no second pass; only clean
        #: strings are remembered, never one that held anything to redact.
        self._clean: set[str] = set()
        #: (tool, compact JSON) of whole argument objects that came through the arguments step with
        #: nothing found, redacted or renamed (a polling call, a retried or repeated query: the same
        #: object call after call). Injection counting, redaction and the name check are pure
        #: functions of the object and the rules, so such an object is kept as it is without
        #: walking it again. Only clean objects are remembered; a redactor with a callback (which
        #: need not be pure) and a stage with user processors (which may change what they are
        #: handed) never use it.
        self._clean_args: set[tuple[str | None, bytes]] = set()

    @property
    def pure(self) -> bool:
        """Whether the output is a function of the event and the policy alone: not with a
        redaction callback or user processors, which need not be (event_templates relies on it)."""
        return self.policy.callback is None and not self._user

    def redactor(self, tool: str | None) -> Redactor:
        r = self._redactors.get(tool)
        if r is None:
            r = self._redactors[tool] = Redactor(self.policy.rules_for(tool))
        return r

    def __call__(self, e: dict[str, Any]) -> dict[str, Any] | None:
        self._counts = counts = new_counter()
        self._uri = None
        for step in (self.arguments, self.resource, self.texts, self.pseudonymise):
            step(e)
        if counts:
            e[ev.REDACTIONS] = dict(counts)
        for processor in self._user:
            out = processor(e)
            if out is None:
                return None
            e = out
        return e

    def stamped(self, e: dict[str, Any]) -> dict[str, Any]:
        """A copy of a template this stage cleaned (event_templates): all of it is clean but its
        raw session id, which gets its pseudonym as :meth:`pseudonymise` gives it."""
        raw = e.get(ev.SESSION_ID)
        if raw is not None:
            pseudonym = self._ids()("s", str(raw))
            if pseudonym is None:
                del e[ev.SESSION_ID]
            else:
                e[ev.SESSION_ID] = pseudonym
        return e

    # -- the built-in processors ----------------------------------------------------------------
    def arguments(self, e: dict[str, Any]) -> None:
        """Arguments, redacted; or none at all where the policy says so or they are too big."""
        raw = e.pop(ev.ARGUMENTS, None)
        if raw is None:
            return
        tool = e.get(ev.TARGET)
        memo_key = None
        request = e.get(ev.REQUEST_SIZE)  # the compact JSON size of the params that hold the arguments
        if type(raw) is dict and type(request) is int and request <= 2 * _ARGS_BYTES and not self._user:
            encoded = _json.dumps(raw)
            if len(encoded) <= _ARGS_BYTES:
                memo_key = (tool if isinstance(tool, str) else None, encoded)
                if memo_key in self._clean_args:  # kept, unchanged, by this stage's policy before
                    e[ev.ARGUMENTS] = raw
                    return
        # before redaction, whatever the policy keeps; it reads the first injection.MAX_SCAN
        # characters only, so a huge argument costs no more than a 64 KB one
        found = injection.count_in(raw)
        if found:
            self._counts.update(found)
        if not self.policy.keeps_arguments(tool):
            self._counts["ARGUMENTS_OMITTED"] += 1
            return
        limit = self.policy.max_arguments_bytes
        if not (type(request) is int and request <= limit) and _arguments_size(raw, e.get(ev.ARGS)) > limit:
            self._counts["ARGUMENTS_TOO_LARGE"] += 1
            return
        redactor = self.redactor(tool)
        clean, fired = redactor.value(raw)
        if fired:
            self._counts.update(fired)
        e[ev.ARGUMENTS] = clean
        self.argument_names(e)
        if (
            memo_key is not None and not self._counts and redactor.rules.callback is None
            and len(self._clean_args) < _ARGS_ENTRIES and clean == raw
        ):
            self._clean_args.add(memo_key)

    def argument_names(self, e: dict[str, Any]) -> None:
        """The argument shape keeps names and sizes; a client chooses the names, so they are text too."""
        shape = e.get(ev.ARGS)
        if not isinstance(shape, dict):
            return
        text = self._text
        e[ev.ARGS] = {text(str(name)): size for name, size in shape.items()}

    def texts(self, e: dict[str, Any]) -> None:
        text = self._text
        for key in _TEXT_FIELDS:
            value = e.get(key)
            if isinstance(value, str):
                if self._uri is not None and key == ev.ERROR_MESSAGE:
                    value = self._mask_uri_echo(value)
                e[key] = text(value)

    def _text(self, value: str) -> str:
        """``value`` through the default redactor, its redactions counted; clean short ones cached."""
        clean_set = self._clean
        if value in clean_set:
            return value
        clean, fired = self.redactor(None).text(value)
        if fired:
            self._counts.update(fired)
        elif clean == value and len(value) <= _CACHE_CHARS and len(clean_set) < _CACHE_ENTRIES:
            clean_set.add(value)
        return clean

    def resource(self, e: dict[str, Any]) -> None:
        """A resource URI becomes the server's own template it matched, else its bare shape.

        Its parts name people and records (``notes://note/alice-42``) in ways no pattern can
        tell from a harmless word, so nothing of the URI itself is kept; the redactor still
        reads it so that secrets in it are counted for the security signals.
        """
        template = e.pop(ev.URI_TEMPLATE_HINT, None)
        uri = e.get(ev.RESOURCE_URI)
        if not isinstance(uri, str):
            return
        _, fired = self.redactor(None).uri(uri)
        if fired:
            self._counts.update(fired)
        shape = template if isinstance(template, str) else uri_shape(uri)
        self._uri = (uri, shape or "[URI]")
        e[ev.RESOURCE_URI] = shape
        if e.get(ev.TARGET) == uri:
            e[ev.TARGET] = shape

    def _mask_uri_echo(self, text: str) -> str:
        """The URI's copies in an error text (``Unknown resource: db://prod/acme/...``), raw, quoted
        or unquoted, and any other URI of its scheme there, become the same mask as the URI."""
        uri, shape = self._uri or ("", "")
        for form in {uri, unquote(uri), quote(uri, safe=":/"), quote(unquote(uri), safe=":/?&=")}:
            if form and form in text:
                text = text.replace(form, shape)
                self._counts["RESOURCE_URI_ECHO"] += 1
        scheme, sep, _ = uri.partition("://")
        if sep and scheme:
            rx = re.compile(re.escape(scheme) + r"://[^\s'\"<>)\]]*", re.I)
            text, n = rx.subn(lambda m: uri_shape(m.group(0)) or "[URI]", text)
            if n:
                self._counts["RESOURCE_URI_ECHO"] += n
        return text

    def pseudonymise(self, e: dict[str, Any]) -> None:
        ids = self._ids()
        for key, prefix in _ID_FIELDS:
            raw = e.get(key)
            if raw is not None:
                pseudonym = ids(prefix, str(raw))
                if pseudonym is None:  # no strong key: no id at all rather than the raw or a weak one
                    del e[key]
                else:
                    e[key] = pseudonym
