"""The local store's :class:`~mcplens.store.source.AnalysisSource`: stored rollups when they answer the run.

A run over the whole store (no window) reads the rollup tables compaction stored beside each batch,
plus a delta for the events not compacted yet, when they were made with the run's settings
(:func:`rollup.applies`); otherwise, and for a window, it computes them from the events like any
DuckDB source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcplens.store import rollup
from mcplens.store.rollup import BUCKET
from mcplens.store.source import DuckDBSource, RollupInfo, Split
from mcplens.store.sql import lit

if TYPE_CHECKING:
    from mcplens.store.base import TimeWindow
    from mcplens.store.local.files import Reader


class LocalSource(DuckDBSource):
    def __init__(self, reader: Reader, window: TimeWindow | None, server: str | None) -> None:
        super().__init__(reader, window, server)
        #: each batch's rollup settings and files, when every batch has them (else None)
        self.rollups = reader.rollups
        self.has_segments = reader.has_segments

    def rollup_tables(self, split: Split, *, exfil_window: float, bucket: float, requests: int) -> RollupInfo:
        stored = self.rollups if self.since is None and self.until is None else None
        if stored:
            files = [m["files"]["buckets"] for m in stored]
            tools = self(
                "SELECT DISTINCT tool FROM read_parquet(?) WHERE method = 'tools/call' UNION "
                "SELECT DISTINCT target FROM segment_events WHERE kind = 'request' AND method = 'tools/call'",
                [files],
            )
            reads, sends = split([r["tool"] for r in tools])
            if all(rollup.applies(m, reads=reads, sends=sends, exfil_window=exfil_window, bucket=bucket)
                   for m in stored):
                self._stored_tables(stored, reads, sends, exfil_window)
                return RollupInfo(BUCKET, reads, sends, stored=True)
        return super().rollup_tables(split, exfil_window=exfil_window, bucket=bucket, requests=requests)

    def _stored_tables(self, stored: list[dict[str, Any]], reads: list[str], sends: list[str],
                       exfil_window: float) -> None:
        if self.has_segments:  # events not compacted yet: their delta over the compacted history
            rollup.compute(self, "segment_events", "batch_events", reads=reads, sends=sends,
                           exfil_window=exfil_window, bucket=BUCKET, prefix="rd_")
        server = "" if self.server is None else f" WHERE server IS NOT DISTINCT FROM {lit(self.server)}"
        for t in rollup.TABLES:
            files = ", ".join(lit(m["files"][t]) for m in stored)
            delta = f" UNION ALL BY NAME SELECT * FROM rd_{t}" if self.has_segments else ""
            src = f"(SELECT * FROM read_parquet([{files}]){delta}){server}"
            self(f"CREATE OR REPLACE TEMP TABLE ru_{t} AS {rollup.MERGE[t].format(src=src)}")
