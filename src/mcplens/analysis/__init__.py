"""Insights over the store: usage patterns, performance outliers, server health, security signals.

One module per area (usage, performance, health, security) holds its detectors; :mod:`.core` holds
the thresholds, the shared state of one run and :func:`insights`. The analysis reads the store only
through :meth:`mcplens.store.base.Store.analysis_source`.

``mcplens insights`` prints them; :func:`insights` returns them as :class:`Finding` objects. Each
detector is one rule over the stored events with its thresholds in :class:`Thresholds`
(overridable from the ``[insights]`` table of a TOML file). DuckDB is needed (the reading side);
The injection-phrase detector the security signals read lives on the capture side, in
:mod:`mcplens.privacy.injection`.
"""

from mcplens.analysis.findings import CRITICAL, INFO, SEVERITIES, WARNING, Finding

__all__ = [
    "CRITICAL",
    "INFO",
    "SEVERITIES",
    "WARNING",
    "Finding",
    "Options",
    "Thresholds",
    "analyze",
    "insights",
    "load_options",
]


def __getattr__(name: str):  # noqa: ANN202 - lazy: the engine imports nothing heavy, but keep the package light
    if name in ("Options", "Thresholds", "analyze", "insights", "load_options"):
        from mcplens.analysis import core

        return getattr(core, name)
    raise AttributeError(name)
