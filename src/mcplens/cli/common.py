"""What every reading command shares: the window from the command line, bad-file notes, usage errors."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mcplens import safetext
from mcplens.store.base import Store, TimeWindow


class UsageError(Exception):
    """A bad value on the command line that argparse cannot check by itself."""


def window_of(args: argparse.Namespace) -> TimeWindow | None:
    try:
        return TimeWindow.parse(args.since, args.until)
    except ValueError as e:
        raise UsageError(str(e)) from None


def health_footer(health: list[dict[str, Any]]) -> str | None:
    dropped = sum(h["dropped"] or 0 for h in health)
    faults = sum(h["faults"] or 0 for h in health)
    failed = sum(h["write_failures"] or 0 for h in health)
    if not (dropped or faults or failed):
        return None
    return (
        f"monitoring itself lost data: {dropped:,} dropped (queue full), {faults:,} faults, "
        f"{failed:,} write failures across {len(health)} instance(s); see `mcplens health`"
    )


def report_bad_files(store: Store) -> None:
    """Name each file the store left out as unreadable, once per file, on stderr."""
    bad = getattr(store, "bad", None)
    if not bad:
        return
    told = getattr(store, "_told", set())
    for path, why in bad.items():
        if path not in told:
            print(f"mcplens: skipped unreadable file {safetext.text(str(path))}: {safetext.text(why)} "
                  "(its events are left out; `mcplens check --fix` moves it aside)", file=sys.stderr)
            told.add(path)
    store._told = told  # type: ignore[attr-defined]
