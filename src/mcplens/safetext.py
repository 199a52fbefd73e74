"""Make strings that came from events safe to print.

Tool, client and server names, error types and session ids are chosen by whoever runs the peer:
untrusted. Printed raw they can drive the terminal (ESC, the C1 CSI U+009B, BEL), fake or hide
lines (CR, LF, backspace) or reorder what is shown (bidi overrides). Every CLI command passes what
it prints through :func:`safe` (text) or :func:`dumps` (JSON), so none of that reaches a terminal.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Final

#: C0 (incl. TAB, LF, CR, ESC, BEL), DEL, C1 (incl. U+009B CSI), the bidi embeddings, overrides
#: and isolates, the implicit marks, and the Unicode line/paragraph separators
_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: what JSON itself leaves raw (json.dumps escapes C0 already)
_UNSAFE_IN_JSON: Final = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\x1b": "\\e"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    if c in _SHORT:
        return _SHORT[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def text(s: str) -> str:
    """One string, with every control character shown as an escape (``\\e``, ``\\x9b``, ``\\u202e``)."""
    return _UNSAFE.sub(_escape, s)


def safe(obj: Any) -> Any:
    """``obj`` with every string in it (dict keys and values, lists, dataclass fields) made safe."""
    if isinstance(obj, str):
        return text(obj)
    if isinstance(obj, dict):
        return {safe(k): safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(safe(v) for v in obj) if isinstance(obj, list) else tuple(safe(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: safe(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                                           if f.init})
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` whose output is safe on a terminal: C1, DEL and bidi controls as ``\\uXXXX``
    (still the same JSON value: inside a JSON string any character may be written escaped)."""
    out = json.dumps(obj, default=str, ensure_ascii=False, **kwargs)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", out)
