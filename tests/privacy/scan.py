"""What a leak scan reads: the bytes mcplens wrote, without the numbers mcplens made itself.

A scan looks for every 8-character fragment of every corpus item. A German IBAN or a card number
has ~15 all-digit fragments, so the corpus holds a few hundred, and one run writes thousands of
measured floats (``duration_s`` 0.0006018590065650642, ``time``, CPU seconds) whose random
digits hold any 8-digit run now and then: ``ES11 3660 6191 5816 2685 2985`` once "leaked" as
``91581626`` in CI. Those figures are mcplens's own measurements, not anything a client or server
sent, so a scan drops them; every value nested in arguments, errors or URIs stays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import all_bytes


def unmeasured(row: Any) -> Any:
    """A row (an event dict or a result tuple) without its top-level floats."""
    if isinstance(row, dict):
        return {k: v for k, v in row.items() if not isinstance(v, float)}
    return tuple(v for v in row if not isinstance(v, float))


def unmeasured_lines(text: str) -> str:
    """``text`` with each JSON-object line rewritten without its top-level floats; other lines as they are."""
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        out.append(json.dumps(unmeasured(obj), ensure_ascii=False) if isinstance(obj, dict) else line)
    return "\n".join(out)


def files_text(home: Path) -> str:
    """Every file under ``home``; event lines without their measured top-level floats."""
    return unmeasured_lines(all_bytes(home).decode("utf-8", "replace"))
