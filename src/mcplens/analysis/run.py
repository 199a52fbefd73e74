"""One insights run: every area's detectors over a store's window.

Apart from :mod:`.core` (thresholds, one run's state, shared helpers), which the area modules
import, so the arrows run area -> core and run -> area, never back.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from mcplens.analysis import health, performance, security, usage
from mcplens.analysis.core import Analysis, Options
from mcplens.analysis.findings import Finding, sort_findings
from mcplens.store.base import Store, TimeWindow
from mcplens.store.source import AnalysisSource

#: the areas, in the order their detectors run
AREAS = (usage, performance, health, security)
Detector = Callable[[Analysis], None]
#: the detectors that read the recent requests (:meth:`Analysis.req_from`), run after the others
READ_RECENT: frozenset[Detector] = frozenset({usage.client_spikes, usage.tool_spikes, health.error_rate})


def analyze(source: AnalysisSource, options: Options | None = None) -> list[Finding]:
    """Every detector over the source's window and server; findings most severe first."""
    opts = options or Options()
    a = Analysis(source, opts)
    if a.n == 0:
        return []
    # the detectors are independent (each reads what Analysis made): two run at once where the source
    # can fork; each adds to its own list, and the lists join in the detectors' order, as one by one.
    # First the copy of the recent requests some of them read, then the others, then those (which wait
    # for the copy): a source does not sit waiting while another detector could run
    detectors: list[Detector] = [d for area in AREAS for d in area.DETECTORS]
    order = sorted(range(len(detectors)), key=lambda i: detectors[i] in READ_RECENT)
    found = source.each([functools.partial(_detect, a, d) for d in [_copy_recent, *(detectors[i] for i in order)]])
    parts: list[list[Finding]] = [[]] * len(detectors)
    for i, part in zip(order, found[1:], strict=True):
        parts[i] = part
    return sort_findings([f for part in parts for f in part])


def _copy_recent(a: Analysis) -> None:
    a.copy_recent()


def _detect(a: Analysis, detector: Detector, source: AnalysisSource) -> list[Finding]:
    """One detector's findings, its queries run on ``source``."""
    part = a.on(source)
    detector(part)
    return part.findings


def insights(
    store: Store,
    options: Options | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    server: str | None = None,
    attempts: int = 5,
) -> list[Finding]:
    """:func:`analyze` over ``[since, until)`` of a :class:`~mcplens.store.base.Store`, retried if a
    compaction races it."""
    window = None if since is None and until is None else TimeWindow(since, until)
    for attempt in range(attempts):
        try:
            with store.analysis_source(window, server) as source:
                return analyze(source, options)
        except Exception as e:  # noqa: BLE001
            if attempt + 1 >= attempts or type(e).__module__.split(".")[0] not in ("duckdb", "_duckdb"):
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")
