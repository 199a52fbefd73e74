"""The DuckDB engine as mcplens loads it: the extension alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mcplens.store import engine


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

