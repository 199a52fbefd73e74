"""Text output shared by the commands: number formats, aligned tables, JSON, a progress spinner.

Nothing here reads the store. Every string that came from an event goes through
:mod:`mcplens.safetext` before a command prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from mcplens import safetext


@contextlib.contextmanager
def progress(label: str, *, delay: float = 1.0) -> Iterator[None]:
    """A spinner on stderr for slow work, only on a terminal and only once it has taken ``delay`` s."""
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        yield
        return
    done = threading.Event()
    start = time.monotonic()

    def spin() -> None:
        if done.wait(delay):
            return
        for ch in itertools.cycle("|/-\\"):
            sys.stderr.write(f"\r{ch} {label} {time.monotonic() - start:.1f}s")
            sys.stderr.flush()
            if done.wait(0.1):
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()
                return

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join()


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def fmt_bytes(v: float | None) -> str:
    if v is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(v) < 1024 or unit == "GB":
            return f"{v:.0f} B" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    raise AssertionError("unreachable")


def fmt_int(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def fmt_time(ts: float | None, *, millis: bool = False) -> str:
    if ts is None:
        return "-"
    text = time.strftime("%Y-%m-%d %H:%M:%S" if not millis else "%H:%M:%S", time.localtime(ts))
    return f"{text}.{int(ts * 1000) % 1000:03d}" if millis else text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """Aligned plain-text columns; ``right`` holds the indexes of numeric columns."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def label(row: dict[str, Any]) -> str:
    """A tool call shows as the tool; anything else as ``method target``, like the OTel span name."""
    if row.get("target") is None:
        return row.get("method") or "?"
    return row["target"] if row.get("method") == "tools/call" else f"{row['method']} {row['target']}"


def trim(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def emit_json(obj: Any) -> None:
    print(safetext.dumps(obj, indent=1))


def listing(rows: list[dict[str, Any]], as_json: bool, empty: str) -> list[dict[str, Any]] | None:
    """A listing command's rows: printed as JSON (then None), else escaped for the terminal; ``empty``
    is said instead of an empty table (then None)."""
    if as_json:
        emit_json(rows)
        return None
    if not rows:
        print(empty)
        return None
    return safetext.safe(rows)


def count_arg(text: str) -> int:
    """``-n``: a count, zero or more (argparse reports a bad one with the subcommand's usage)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} is negative; give 0 or more")
    return n


class SafeFormatter(logging.Formatter):
    """Log lines carry finding titles (tool and client names): escaped like everything printed."""

    def format(self, record: Any) -> str:
        return "\n".join(safetext.text(line) for line in super().format(record).split("\n"))
