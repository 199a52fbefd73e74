"""Prompt-injection phrases in tool arguments, counted by kind as ``INJECTION:<KIND>`` redactions.

The privacy stage calls :func:`count_in` on every event's arguments *before* redaction (so an
instruction hidden in a long base64 run is still seen) and adds the counts to
``mcplens.redactions``: ``{"INJECTION:IGNORE_INSTRUCTIONS": 1}``. ``mcplens insights`` reports
them as the ``prompt_injection`` signal. The phrase itself is kept only as far as the redacted
arguments keep it; a user who wants the matching strings gone adds ``make_processor()`` to
``instrument(processors=[...])``, which replaces each by ``[INJECTION:<KIND>]``. Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

from mcplens import event as ev
from mcplens.privacy import new_counter

PATTERNS: Final[dict[str, re.Pattern[str]]] = {
    "IGNORE_INSTRUCTIONS": re.compile(
        r"\b(ignore|disregard|forget|override)\s+(all\s+|any\s+|the\s+|your\s+)?(previous|prior|above|earlier|"
        r"preceding)\s+(instructions?|prompts?|rules|directions|context)",
        re.I,
    ),
    "SYSTEM_PROMPT": re.compile(
        r"\b(reveal|print|show|repeat|output|leak|dump)\b.{0,40}\bsystem\s+prompt\b|"
        r"\bsystem\s+prompt\b.{0,20}\b(is|reads|says)\b|<\s*/?\s*system\s*>",
        re.I,
    ),
    "ROLE_OVERRIDE": re.compile(
        r"\byou\s+are\s+now\b|\bfrom\s+now\s+on\s+you\b|\bact\s+as\s+(an?\s+)?"
        r"(unrestricted|jailbroken|dan)\b|\bdeveloper\s+mode\b",
        re.I,
    ),
    "EXFILTRATE": re.compile(
        r"\bexfiltrat|\bsend\s+(all|the|every)\b.{0,40}\b(to|at)\s+(https?://|\S+@)|"
        r"\bupload\b.{0,40}\b(secrets?|credentials?|keys?|passwords?)\b",
        re.I,
    ),
    "HIDDEN_INSTRUCTION": re.compile(
        r"\b(do\s+not|don'?t)\s+(tell|inform|mention\s+this\s+to)\s+the\s+user\b|"
        r"\bsecretly\b|\bwithout\s+(the\s+)?user'?s?\s+(knowledge|consent)",
        re.I,
    ),
}
_B64 = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")
MAX_SCAN: Final = 65536  # characters scanned per event
#: what every phrase above must contain, lower-cased ASCII: a string without any of it (nearly every
#: argument value) costs one search instead of five backtracking patterns
_WORDS = re.compile(
    r"ignor|disregard|forget|overrid|system|you\s+are\s+now|from\s+now|act\s+as|developer\s+mode|exfiltrat|"
    r"send|upload|(?:do\s+not|don'?t)\s+(?:tell|inform|mention)|secretly|without\s+(?:the\s+)?user"
)
#: a literal every match of _WORDS contains (a cheaper superset test: ``in`` beats the alternation)
_NEEDLES: Final = ("ignor", "disregard", "forget", "overrid", "system", "now", "act", "developer", "exfiltrat",
                   "send", "upload", "tell", "inform", "mention", "secretly", "without")
#: the characters of a _B64 run as ``a``, everything else as a space: a run is ``_B64_RUN`` in the result
_B64_MAP: Final = bytes(
    ord("a") if chr(i).isascii() and (chr(i).isalnum() or chr(i) in "+/") else ord(" ") for i in range(256)
)
_B64_RUN: Final = b"a" * 24
#: no phrase above is shorter than this
_SHORTEST = 8


def _kinds(text: str) -> list[str]:
    """Kinds found in ``text`` (a kind once per string); an empty list, not a Counter, when clean."""
    if len(text) < _SHORTEST:
        return []
    found = []
    # the prefilter reads lower-cased ASCII; other text (where re.I folds more than lower() does,
    # like a long s for an s) goes straight to the patterns
    if not text.isascii() or _WORDS.search(text.lower()):
        found = [kind for kind, pattern in PATTERNS.items() if pattern.search(text)]
    if len(text) >= 24:
        for m in _B64.finditer(text):
            try:
                decoded = base64.b64decode(m.group(0) + "=" * (-len(m.group(0)) % 4), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
            if (not decoded.isascii() or _WORDS.search(decoded.lower())) and any(
                p.search(decoded) for p in PATTERNS.values()
            ):
                found.append("BASE64_INSTRUCTIONS")
    return found


def scan(text: str) -> Counter[str]:
    """Kinds of injection phrase found in ``text``, including inside base64-encoded runs."""
    return Counter(_kinds(text))


def _strings(value: Any, out: list[str], budget: list[int]) -> None:
    """Strings in ``value``, cut so that together they hold at most ``budget`` characters: a
    20 MB argument costs a 64 KB scan, not a multi-second one with the GIL held."""
    if budget[0] <= 0:
        return
    if isinstance(value, str):
        out.append(value if len(value) <= budget[0] else value[: budget[0]])
        budget[0] -= len(value)
        return
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return
    for v in items:  # plain strings and scalars inline: a call per value cost more than the scan
        t = type(v)
        if t is str:
            left = budget[0]
            if left <= 0:
                return
            out.append(v if len(v) <= left else v[:left])
            budget[0] = left - len(v)
        elif t is int or t is float or t is bool or v is None:
            continue
        else:
            _strings(v, out, budget)


def _replace(value: Any, kinds: Callable[[str], Counter[str]]) -> Any:
    if isinstance(value, str):
        found = kinds(value)
        return f"[INJECTION:{sorted(found)[0]}]" if found else value
    if isinstance(value, dict):
        return {k: _replace(v, kinds) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, kinds) for v in value]
    return value


#: short strings known to hold no injection phrase on their own (enum-like argument values and
#: repeated queries come back call after call): skipped by :func:`count_in`. A string is added only
#: once the scan found nothing in it; its verdict depends on nothing else, so it is never stale.
_CLEAN: set[str] = set()
_CLEAN_CHARS: Final = 256
_CLEAN_ENTRIES: Final = 8192


def _remember(texts: list[str]) -> None:
    clean = _CLEAN
    for t in texts:
        if len(t) <= _CLEAN_CHARS and len(clean) < _CLEAN_ENTRIES:
            clean.add(t)


def count_in(value: Any) -> Counter[str]:
    """``INJECTION:<KIND>`` counts for every string in ``value`` (nested), over the first MAX_SCAN
    characters in all: what lies beyond is not scanned (a phrase past 64 KB of arguments is missed)."""
    texts: list[str] = []
    _strings(value, texts, [MAX_SCAN])
    total: Counter[str] = new_counter()
    if texts:
        clean = _CLEAN
        texts = [t for t in texts if t not in clean]
    if not texts:
        return total
    # one prefilter over all the strings at once: every string :func:`_kinds` would look into has
    # its trigger word (or non-ASCII text, or a base64 run) in the joined text too, so when the
    # joined text has none, no string has any (a word across two strings only costs the slow path)
    joined = "\n".join(texts)
    if joined.isascii():
        low = joined.lower()
        for needle in _NEEDLES:
            if needle in low:
                break
        else:
            if len(joined) < 24 or _B64_RUN not in joined.encode("ascii").translate(_B64_MAP):
                _remember(texts)  # nothing in the joined text: nothing in any of them alone either
                return total
    for t in texts:
        found = _kinds(t)
        for kind in found:
            total[f"INJECTION:{kind}"] += 1
        if not found:
            _remember([t])
    return total


def make_processor() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A privacy-stage processor that replaces each argument string holding an injection phrase."""

    def processor(e: dict[str, Any]) -> dict[str, Any]:
        args = e.get(ev.ARGUMENTS)
        if args is not None:
            e[ev.ARGUMENTS] = _replace(args, scan)
        return e

    return processor
