"""One log-bucketed histogram for every store, so rollups merge exactly across engines and replicas.

Percentiles over days of events cannot re-read every event, and a fleet's replicas cannot merge
percentiles; they can merge counts per bucket. Every value (a duration in microseconds, a size in
bytes, a token estimate) falls in bucket ``index(v)``; a rollup keeps ``(index, count)`` pairs per
group, merging is ``SUM(count) GROUP BY index``, and a quantile is read back from the cumulative
counts. Buckets are a fixed geometric grid (``SUB`` per power of two), so the same value lands in the
same bucket in Python, DuckDB and PostgreSQL: ``index_sql`` is the one SQL spelling, valid in both.

Stated error: a quantile read back is the bucket's geometric midpoint, within ``REL_ERROR`` (about
4.4%) of the exact value of the event at that rank; values below 1 share bucket 0 (read back as 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

#: buckets per power of two
SUB: Final = 8
#: largest relative distance between a value and its bucket's representative value
REL_ERROR: Final = 2 ** (1 / (2 * SUB)) - 1
_LN2: Final = math.log(2.0)

#: what each measured column is kept in, so the grid's resolution is meaningful for it
UNITS: Final[dict[str, str]] = {"duration": "us", "request_size": "bytes", "response_size": "bytes",
                                "response_tokens": "tokens"}


def index(value: float | None) -> int | None:
    """Bucket of ``value``; ``None`` for a missing value (not counted), 0 for anything below 1."""
    if value is None or value != value:  # NaN
        return None
    if value < 1:
        return 0
    # ln(v)/ln(2) rather than log2: the spelling both SQL engines have, so all three agree bit for bit
    return 1 + math.floor(math.log(value) / _LN2 * SUB)


def index_sql(column: str) -> str:
    """SQL for ``index(column)`` that DuckDB and PostgreSQL both run (NULL stays NULL)."""
    return (f"(CASE WHEN {column} IS NULL THEN NULL WHEN {column} < 1 THEN 0 "
            f"ELSE 1 + CAST(floor(ln({column}) / ln(2.0) * {SUB}) AS INTEGER) END)")


def value(i: int) -> float:
    """The representative (geometric midpoint) of bucket ``i``."""
    if i <= 0:
        return 0.0
    return 2.0 ** ((i - 0.5) / SUB)


def bounds(i: int) -> tuple[float, float]:
    """``[lower, upper)`` of bucket ``i``."""
    if i <= 0:
        return (0.0, 1.0)
    return (2.0 ** ((i - 1) / SUB), 2.0 ** (i / SUB))


def merge(parts: Iterable[Mapping[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for part in parts:
        for i, n in part.items():
            out[i] = out.get(i, 0) + n
    return out


def quantile(counts: Mapping[int, int], q: float) -> float | None:
    """The value at rank ``ceil(q * total)`` (nearest-rank), as its bucket's representative value;
    ``None`` for an empty histogram."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} is not in [0, 1]")
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i in sorted(counts):
        seen += counts[i]
        if seen >= rank:
            return value(i)
    return value(max(counts))  # pragma: no cover - unreachable: seen reaches total
