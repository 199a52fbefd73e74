"""Compact JSON, fast: the writer thread serialises every event and sizes every argument and reply.

orjson (a dependency: one compiled module, no dependencies of its own) encodes an event in about
a twentieth of the standard library's time; on this project's benchmark machine the stdlib encoder
alone cost more than the whole per-event budget. Whatever orjson refuses (an integer beyond 64
bits, a lone surrogate, a non-string key it cannot render), and any machine without it, goes
through the standard library's C encoder, whose output was the reference:
``json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)``. The two agree except
in corners no event depends on (orjson writes NaN as ``null``, ``1e-7`` for ``1e-07``).
"""

from __future__ import annotations

import json
import json.encoder
import os
import time
from collections.abc import Callable
from typing import Any

_make = getattr(json.encoder, "c_make_encoder", None)


def _fallback() -> Callable[[Any], str]:
    return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


_basestring = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring

if _make is not None:
    _encoder = _make(None, str, json.encoder.c_encode_basestring, None, ":", ",", False, False, True)

    def _std_compact(value: Any) -> str:
        if isinstance(value, str):
            return json.encoder.c_encode_basestring(value)  # type: ignore[no-any-return]
        return "".join(_encoder(value, 0))
else:  # pragma: no cover - CPython always has the C encoder
    _std_compact = _fallback()


def _std_bytes(value: Any) -> bytes:
    return _std_compact(value).encode("utf-8", "surrogatepass")


try:
    import orjson

    # dataclasses and datetimes as str(), as the standard library's default=str does
    _OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
    _orjson_dumps = orjson.dumps
    _orjson_error: type[Exception] = orjson.JSONEncodeError

    def dumps(value: Any) -> bytes:
        """``value`` as compact JSON in UTF-8."""
        try:
            return _orjson_dumps(value, default=str, option=_OPTIONS)
        except _orjson_error:
            return _std_bytes(value)

    def compact(value: Any) -> str:
        """``value`` as compact JSON text."""
        try:
            return _orjson_dumps(value, default=str, option=_OPTIONS).decode("utf-8")
        except _orjson_error:
            return _std_compact(value)
    _LINE_OPTIONS = _OPTIONS | orjson.OPT_APPEND_NEWLINE

    def dumps_line(value: Any) -> bytes:
        """``value`` as one line of compact JSON, its newline included."""
        try:
            return _orjson_dumps(value, default=str, option=_LINE_OPTIONS)
        except _orjson_error:
            return _std_bytes(value) + b"\n"

    def exact(value: Any) -> bytes | None:
        """``value`` as compact JSON when it is plain JSON data (no ``default=str`` stand-ins,
        which could make two different values encode alike), else None."""
        try:
            return _orjson_dumps(value)
        except _orjson_error:
            return None
except ImportError:  # pragma: no cover - a platform with no orjson wheel: the standard library
    dumps = _std_bytes
    compact = _std_compact

    def dumps_line(value: Any) -> bytes:
        return _std_bytes(value) + b"\n"

    def exact(value: Any) -> bytes | None:
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
        except (TypeError, ValueError):
            return None


def _sleep0() -> None:
    time.sleep(0)


#: release the GIL for a moment, so a thread waiting for it (the server's event loop) takes it now
#: instead of after the 5 ms switch interval. ``sched_yield`` costs ~1 µs; ``sleep(0)`` costs
#: the kernel's timer slack (~50-100 µs) on Linux, so it is only the fallback (Windows).
yield_gil = getattr(os, "sched_yield", None) or _sleep0

#: strings longer than this are sized a piece at a time (see :func:`size`)
CHUNK = 1 << 18


def size(value: Any) -> int:
    """UTF-8 bytes of ``value`` as compact JSON, the way the SDK and most peers put it on the wire.

    A long string is measured in pieces of ``CHUNK`` characters, offering the GIL to other threads
    between pieces: one C call over a 20 MB string would hold it for a tenth of a second, stalling
    the server's event loop meanwhile.
    """
    kind = type(value)
    if kind is str:
        if len(value) > CHUNK:
            return _str_size(value)
        text = _basestring(value)
        return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if kind is int:  # the common scalars without the encoder's list and join
        return len(int.__repr__(value))
    if value is None or value is True:
        return 4
    if value is False:
        return 5
    return len(dumps(value))


#: every byte JSON writes as itself (not ``"``, ``\\`` or a control character)
_PLAIN = bytes(i for i in range(256) if i >= 32 and i not in (34, 92))
_SHORT_ESCAPES = b'"\\\n\r\t\b\f'  # written as two characters; other control characters take six


def _str_size(value: str) -> int:
    """Exact, without building the encoded text when ``value`` is ASCII: its length, plus one
    byte per short escape and five per ``\\u00XX``, counted a piece at a time."""
    if not value.isascii():
        total = 2
        encode = json.encoder.c_encode_basestring if _make is not None else json.encoder.py_encode_basestring
        for i in range(0, len(value), CHUNK):
            text = encode(value[i : i + CHUNK])
            total += len(text.encode("utf-8", "surrogatepass")) - 2
            yield_gil()  # hand the GIL over now: a thread waiting for it would otherwise wait 5 ms
        return total
    total = len(value) + 2
    for i in range(0, len(value), CHUNK):
        special = value[i : i + CHUNK].encode("ascii").translate(None, _PLAIN)
        if special:
            short = sum(special.count(c) for c in _SHORT_ESCAPES)
            total += short + 5 * (len(special) - short)
        yield_gil()
    return total


def keys_size(keys: Any) -> int:
    """Bytes the keys of a JSON object take with their quotes and colons, plus braces and commas:
    ``size(obj) == keys_size(obj) + sum(size(v) for v in obj.values())`` for string keys."""
    n = 0
    total = 2
    for k in keys:
        total += size(k) + 1
        n += 1
    return total + max(0, n - 1)
