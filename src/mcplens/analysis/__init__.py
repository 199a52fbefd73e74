"""Insights over the store: usage patterns, performance outliers, server health, security signals.

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
        from mcplens.analysis import engine

        return getattr(engine, name)
    raise AttributeError(name)
