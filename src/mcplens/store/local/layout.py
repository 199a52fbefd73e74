"""Where the local event log keeps its files under ``<home>/events/``::

    live/<stamp>-<pid>-<instance>-<seq>.jsonl     being written by a running process
    closed/<same name>                            finished: rotated, or the process exited
    parquet/<batch>.parquet + <batch>.manifest.json   compacted by the reading side

Names only, in a module of their own: the reading side (every ``mcplens`` command) needs them, not
the writer's encoders (~7 ms of imports at each start)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

LIVE: Final = "live"
CLOSED: Final = "closed"
PARQUET: Final = "parquet"


def events_dir(home: Path) -> Path:
    return Path(home) / "events"
