"""The DuckDB engine, loaded as cheaply as it can be.

mcplens uses only DuckDB's engine: connections, SQL, their results and errors. Those all live in the
C++ extension ``_duckdb`` (~0.02 s to load), which the ``duckdb`` package (2.x: ~0.12 s to import)
re-exports beside a Python layer mcplens never calls (the relational API, its expression builders,
the package's version read through ``importlib.metadata``). A one-shot ``mcplens insights`` takes
about a second, so importing the package alone was a tenth of it. Releases that do not ship the
extension as ``_duckdb`` (before 1.4) get the package.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_MODULE: ModuleType | None = None


def duckdb() -> ModuleType:
    """The DuckDB module to connect with: the engine's extension when it stands alone, else the package.

    Either has ``connect``, ``__version__`` and the exception classes (``Error`` ...) the package
    re-exports, the same objects."""
    global _MODULE
    if _MODULE is None:
        _MODULE = _load()
    return _MODULE


def _load() -> ModuleType:
    try:
        core = importlib.import_module("_duckdb")
    except ImportError:
        core = None
    if core is not None and all(hasattr(core, n) for n in ("connect", "Error", "__version__")):
        return core
    try:
        return importlib.import_module("duckdb")
    except ImportError:
        raise ImportError("the mcplens reading side needs DuckDB: pip install 'mcplens[cli]'") from None


def version() -> str:
    """DuckDB's version (what the rollups record their keys were hashed with)."""
    return str(duckdb().__version__)


#: what DuckDB's Python client raises (a RuntimeError) when a signal arrives while a statement runs in
#: the main thread: it has run Python's handler, whose KeyboardInterrupt it drops
SIGNALLED = "Query interrupted"


def interrupted(error: BaseException) -> bool:
    """Whether an error is Ctrl-C: a KeyboardInterrupt, DuckDB's InterruptException (a statement
    interrupted from another thread), or the client's RuntimeError for a signal during a statement."""
    return (isinstance(error, KeyboardInterrupt) or type(error).__name__ == "InterruptException"
            or (type(error) is RuntimeError and str(error) == SIGNALLED))
