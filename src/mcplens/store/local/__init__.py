"""The local store: per-process JSON-lines segments under the data directory, read by DuckDB.

* :mod:`.writer`: the segment writer the capture pipeline appends to (standard library only);
* :mod:`.reader`: :class:`LocalStore`, the reading side over segments and Parquet batches;
* :mod:`.compact`: folding closed segments into Parquet batches, with their rollups;
* :mod:`.rollup`: the per-batch rollup tables the insights read instead of scanning;
* :mod:`.source`: what the analysis reads (stored rollups when they answer the run);
* :mod:`.check`: ``mcplens check``, finding and moving aside unreadable files.

Importing this package is cheap (the capture side imports the writer through it): the reader is
loaded on first use of :class:`LocalStore`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LocalStore"]


def __getattr__(name: str) -> Any:
    if name == "LocalStore":
        from mcplens.store.local.reader import LocalStore

        return LocalStore
    raise AttributeError(name)
