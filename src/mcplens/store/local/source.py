"""The local store's :class:`~mcplens.store.source.AnalysisSource`: stored rollups when they answer the run.

When every batch has rollups made with the run's settings (:func:`rollup.applies`), the rollup
tables of any window are the stored rows of its whole hours (``hour``, store/rollup.py; for chains and
perf, the day rows of its whole UTC days and the hour rows around them) plus two
small computations from the events, each with its sessions' history (their earlier calls, found
from the stored ``spans`` so only the batches that hold them, from their first call on, are read):

* the partial first hour ``[since, first whole hour)``;
* the partial last hour ``[last whole hour, until)`` of the compacted batches, and the events not
  compacted yet (the tail).

So a week over ten million events reads some thousands of rollup rows and at most two hours of
events. Otherwise (a batch without rollups, another classification) it computes them from the
window's events like any DuckDB source.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcplens.store import rollup
from mcplens.store.local.files import events_view_sql, span_overlaps
from mcplens.store.rollup import BUCKET, HOUR_S
from mcplens.store.source import AnalysisSource, DuckDBSource, RollupInfo, Split, hour_of, hours, in_hours, whole_days
from mcplens.store.sql import SESSION_KEY, lit

if TYPE_CHECKING:
    from mcplens.store.base import TimeWindow
    from mcplens.store.local.files import Reader


class LocalSource(DuckDBSource):
    def __init__(self, reader: Reader, window: TimeWindow | None, server: str | None) -> None:
        super().__init__(reader, window, server)
        #: each batch's rollup settings and files, when every batch has them (else None)
        self.rollups = reader.rollups
        self.has_segments = reader.has_segments
        self.schemas = reader.schemas
        if self.rollups is not None and self.has_segments:
            # the tail is JSON: parse it once for every query of the run, not once per query
            self("CREATE OR REPLACE TEMP TABLE tail_events AS SELECT * FROM segment_events")
            self("CREATE OR REPLACE TEMP VIEW events AS SELECT * FROM batch_events UNION ALL SELECT * FROM tail_events")

    def marks(self) -> None:
        if not self.rollups or not all(rollup.complete(m) for m in self.rollups):
            return super().marks()
        files = ", ".join(lit(m["files"]["marks"]) for m in self.rollups)
        where = self.where_literal()
        tail = (f" UNION ALL BY NAME SELECT * FROM tail_events WHERE {rollup.MARKS}{where}"
                if self.has_segments else "")
        by_name = "" if rollup.marks_columns(self.rollups) else ", union_by_name=true"
        self(f"CREATE OR REPLACE TEMP VIEW marks AS SELECT * FROM read_parquet([{files}]{by_name}) "
             f"WHERE true{where}{tail}")
        return None

    def events_from(self, since: float) -> str:
        """The batches whose events' time span meets ``[since, until)`` and the tail: a recent span's
        events from one or two batches, whose files alone are opened (their footers, when no other
        query of the process read them: ~5 ms each for a 1M-event batch)."""
        lo = since if self.since is None else max(since, self.since)
        within = None if self.rollups is None else _overlapping(self.rollups, lo, self.until)
        if within is None:
            return "events"
        name = f"events_from_{abs(hash((lo, self.until))):x}"
        self(events_view_sql(name, within, [], self.schemas))
        tail = " UNION ALL SELECT * FROM tail_events" if self.has_segments else ""
        return f"(SELECT * FROM {name}{tail})"

    def rollup_tables(self, split: Split, *, exfil_window: float, bucket: float, requests: int,
                      min_loop: int = 2, examples: int = rollup.LOOP_EXAMPLES) -> RollupInfo:
        stored = self.rollups
        if stored:
            # every tool any batch saw called, and the tail's: a superset of the window's, which changes
            # nothing (pairs of tools not called in the window have no rows)
            tools = {t for m in stored for t in m.get("tools") or ()}
            if self.has_segments:
                tools |= {r["t"] for r in self("SELECT DISTINCT target AS t FROM tail_events WHERE kind = 'request' "
                                               "AND method = 'tools/call' AND target IS NOT NULL")}
            reads, sends = split(sorted(tools))
            if all(rollup.applies(m, reads=reads, sends=sends, exfil_window=exfil_window, bucket=bucket)
                   for m in stored):
                self._stored_tables(stored, reads, sends, exfil_window, min_loop, examples)
                return RollupInfo(BUCKET, reads, sends, stored=True)
        return super().rollup_tables(split, exfil_window=exfil_window, bucket=bucket, requests=requests,
                                     min_loop=min_loop, examples=examples)

    def _stored_tables(self, stored: list[dict[str, Any]], reads: list[str], sends: list[str],
                       exfil_window: float, min_loop: int, examples: int) -> None:
        lo, hi = hours(self.window)
        core = lo is None or hi is None or lo < hi
        batch_of = {m["files"]["spans"]: m.get("batch") for m in stored}  # a spans file's batch
        # (new events, the batches' history before, the tail's history before, whether the new events come
        # from the batches): history precedes them
        regions: list[tuple[str, float | None, float | None, bool]] = []
        s, u = self.since, self.until
        upto = "" if u is None else f" AND time < {lit(u)}"
        if s is not None:  # the partial first hour (the whole window when it has no whole hour)
            end = lo * HOUR_S if core and lo is not None else u
            first = f"time >= {lit(s)}" + ("" if end is None else f" AND time < {lit(end)}")
            within = _overlapping(stored, s, end)
            if within is None:
                regions.append((f"SELECT * FROM events WHERE {first}", s, s, True))
            else:  # only the batches whose events span the partial hour: a week's start lies in one of them
                self(events_view_sql("first_hour_batches", within, [], self.schemas))
                tail = f" UNION ALL SELECT * FROM tail_events WHERE {first}" if self.has_segments else ""
                regions.append((f"SELECT * FROM first_hour_batches WHERE {first}{tail}", s, s, True))
        if core:  # the partial last hour of the batches, and the tail
            parts = []
            last_from_batches = u is not None and hi is not None
            if last_from_batches:
                parts.append(f"SELECT * FROM batch_events WHERE time >= {lit(hi * HOUR_S)}{upto}")
            if self.has_segments:
                start = "" if lo is None else f" AND time >= {lit(lo * HOUR_S)}"
                parts.append(f"SELECT * FROM tail_events WHERE true{start}{upto}")
            if parts:
                regions.append((" UNION ALL ".join(parts), None if u is None or hi is None else hi * HOUR_S,
                                -float("inf") if lo is None else lo * HOUR_S, last_from_batches))
        has_segments = self.has_segments
        made = [threading.Event() for _ in regions]  # each region's rg<i>_new made (or failed)
        with_calls = [t for t in rollup.WINDOWED if t in rollup.FROM_CALLS]
        alone = [t for t in rollup.WINDOWED if t not in rollup.FROM_CALLS]

        def region(src: AnalysisSource, i: int) -> str:
            new, batch_before, tail_before, from_batches = regions[i]
            # a table when it reads the batches: the roll-up reads it a dozen times, and each read of a
            # view over them would open every Parquet file again (~0.1 s each over 10M events); the
            # tail is a table already, which a view reads column by column without a copy
            kind = "TABLE" if from_batches else "VIEW"
            cols = ", ".join(f'"{c}"' for c in rollup.COMPUTE_COLUMNS)
            try:
                src(f"CREATE OR REPLACE TEMP {kind} rg{i}_new AS SELECT {cols} FROM ({new})")
            finally:
                made[i].set()
            # the sessions' history starts at their first call, and lies in the batches whose spans
            # name them (a batch's spans list every session with a tool call in it): read only those,
            # from there on. Only a batch with events from before the new ones can hold any: a window
            # that starts a week ago looks them up in the first batch or two, not in every one
            holders = [m for m in stored if span_overlaps(m.get("time"), None, batch_before)]
            spans = ", ".join(lit(m["files"]["spans"]) for m in holders)
            found = src(
                f"SELECT filename AS f, min(first) AS t FROM read_parquet([{spans}], filename=true) WHERE sk IN ("
                f"SELECT hash({SESSION_KEY}) FROM rg{i}_new WHERE kind = 'request' AND method = 'tools/call') "
                "GROUP BY 1") if holders else []
            start = min((r["t"] for r in found if r["t"] is not None), default=None)
            batches = {batch_of.get(r["f"]) for r in found}
            past = "batch_events"  # all of them, unless each spans file found names its batch
            if start is not None and batches and None not in batches:
                past = f"rg{i}_past"
                src(events_view_sql(past, [Path(b) for b in sorted(b for b in batches if b)], [], self.schemas))
            hist = [f"SELECT * FROM {past} WHERE "
                    + (f"time >= {lit(start)}" if start is not None else "false")
                    + ("" if batch_before is None else f" AND time < {lit(batch_before)}")]
            if has_segments and tail_before is not None and tail_before != -float("inf"):
                hist.append(f"SELECT * FROM tail_events WHERE time < {lit(tail_before)}")
            src(f"CREATE OR REPLACE TEMP VIEW rg{i}_hist AS " + " UNION ALL ".join(f"({h})" for h in hist))
            rollup.compute(src, f"rg{i}_new", f"rg{i}_hist", reads=reads, sends=sends, exfil_window=exfil_window,
                           bucket=BUCKET, prefix=f"rg{i}_", tables=with_calls, sort=False)
            return f"rg{i}_"

        def counts(src: AnalysisSource, i: int) -> None:
            """The region's tables that count its new events alone: whichever source is free first
            makes them (the first region, with its history, is the longer: ~0.26 against ~0.2 s)."""
            made[i].wait()
            rollup.compute(src, f"rg{i}_new", None, reads=reads, sends=sends, exfil_window=exfil_window,
                           bucket=BUCKET, prefix=f"rg{i}_", tables=alone, sort=False)

        # the two regions, then the tables, each independent of the others: on two cores, two at once.
        # A region's counts wait only for its new events, which its first task makes first of all
        n = len(regions)
        tasks = [functools.partial(region, i=i) for i in range(n)] + [functools.partial(counts, i=i) for i in range(n)]
        computed = self.each(tasks)[:n]
        server = "" if self.server is None else f" AND server IS NOT DISTINCT FROM {lit(self.server)}"
        d0, d1 = whole_days(lo, hi)
        daily = core and (d0 is None or d1 is None or d0 < d1)

        def union(t: str, computed_sql: str = "SELECT * FROM {p}{t}", keep: str = "") -> str:
            """The stored rows of ``t`` for the window's whole hours and the regions' rows, of its server."""
            files = ", ".join(lit(m["files"][t]) for m in stored)
            if daily and t in rollup.DAILY:  # the whole days' day rows, the whole hours around them
                days = ", ".join(lit(m["files"][f"{t}_d"]) for m in stored)
                parts = [f"SELECT * FROM read_parquet([{days}]) WHERE {in_hours('hour', d0, d1)}"]
                parts += [f"SELECT * FROM read_parquet([{files}]) WHERE {in_hours('hour', a, b)}"
                          for a, b in ((lo, d0), (d1, hi)) if a is not None and b is not None and a < b]
            else:
                parts = [f"SELECT * FROM read_parquet([{files}]) WHERE "
                         f"{in_hours(hour_of(t), lo, hi) if core else 'false'}{keep}"]
            parts += [computed_sql.format(p=p, t=t) for p in computed]
            return "(" + " UNION ALL BY NAME ".join(f"({x})" for x in parts) + f") WHERE true{server}{keep}"

        def merged(src: AnalysisSource, t: str) -> None:
            if t == "errmin":  # the minutes each tool failed in: read twice, by a rule that needs no sums
                src(f"CREATE OR REPLACE TEMP VIEW ru_errmin AS SELECT server, tool, minute, errors FROM {union(t)}")
                return
            if t != "loops":
                parts = union(t)
                src(f"CREATE OR REPLACE TEMP TABLE ru_{t} AS {rollup.MERGE[t].format(src=parts)}")
                if t == "buckets":
                    src(rollup.BUCKET_ERRORS.format(src=parts))
                return
            keep = f" AND n >= {int(min_loop)}"
            rows = union("loops", keep=keep)
            if examples > rollup.LOOP_EXAMPLES:  # more examples than the counts keep: from every key's rows
                src(f"CREATE OR REPLACE TEMP TABLE ru_loops AS {rollup.loop_levels_sql(rows, examples)}")
                return
            region_rows = "(SELECT * FROM {p}loops WHERE n >= " + str(int(min_loop)) + ")"  # {p}: union()'s
            counts = union("loopn", rollup.loop_counts_sql(region_rows, rollup.LOOP_EXAMPLES), keep)
            # a row named by another lies in the set when it is from the first whole hour (lo) on; before
            # it only region 0 (the partial first hour, or the whole window when it has no whole hour) may hold it
            rollup.loop_levels_from_counts(src, rows, counts, examples=examples, min_loop=min_loop, first_hour=lo)

        self.each([functools.partial(merged, t=t) for t in rollup.WINDOWED])  # what the analysis reads


def _overlapping(stored: list[dict[str, Any]], lo: float, hi: float | None) -> list[Path] | None:
    """The batches whose events' time span ([first, last] in their rollups) may hold events in
    ``[lo, hi)``; None when some batch's path or span is not known (then all are read)."""
    out = []
    for m in stored:
        batch, span = m.get("batch"), m.get("time")
        if not batch or not span or len(span) != 2:
            return None
        if span_overlaps(span, lo, hi):  # a batch without events ([None, None]) never does
            out.append(Path(batch))
    return out
