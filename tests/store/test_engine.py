"""The DuckDB engine as mcplens loads it: the extension alone, and Ctrl-C during a statement."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from mcplens.store import engine
from mcplens.store.local.files import Reader


def test_reading_loads_the_engine_without_the_python_package() -> None:
    """``import duckdb`` (2.x) is ~0.1 s of a one-shot CLI run that uses none of its Python layer."""
    code = (
        "import sys\n"
        "from mcplens.store import engine\n"
        "con = engine.duckdb().connect()\n"
        "assert con.execute('SELECT 41 + 1').fetchall() == [(42,)]\n"
        "assert isinstance(engine.version(), str) and engine.version()\n"
        "print('duckdb' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_its_errors_are_the_packages() -> None:
    import duckdb

    con = engine.duckdb().connect()
    with pytest.raises(duckdb.Error):
        con.execute("SELECT * FROM no_such_table")



def test_without_the_extension_alone_the_package_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB before 1.4 ships its extension inside the package (duckdb.duckdb): then the package."""
    import importlib

    import duckdb

    real = importlib.import_module

    def older(name: str, package: str | None = None) -> object:
        if name == "_duckdb":
            raise ImportError("No module named '_duckdb'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", older)
    assert engine._load() is duckdb

    def none(name: str, package: str | None = None) -> object:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", none)
    with pytest.raises(ImportError, match=r"pip install 'mcplens\[cli\]'"):
        engine._load()

def test_ctrl_c_during_a_statement_is_a_keyboard_interrupt() -> None:
    """DuckDB's client runs Python's SIGINT handler inside a statement and raises a RuntimeError instead of
    the KeyboardInterrupt: a reader gives the KeyboardInterrupt back, so every caller stops (an insights
    run's other statements, the CLI with 130) instead of reporting a data error."""
    run = Reader(engine.duckdb().connect())
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run("SELECT count(*) FROM range(100000000000) a")  # minutes: only the signal ends it
    finally:
        timer.cancel()
    assert engine.interrupted(RuntimeError(engine.SIGNALLED))
    assert not engine.interrupted(RuntimeError("cannot open file"))
    assert not engine.interrupted(ValueError(engine.SIGNALLED))
