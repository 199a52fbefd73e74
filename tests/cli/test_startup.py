"""What a CLI command loads before it runs: a one-shot `mcplens insights` is about a second, and every
module loaded that the command does not use is paid for on each run."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_loads_neither_the_duckdb_package_nor_the_dashboards_server() -> None:
    code = (
        "import sys\n"
        "from mcplens.cli import build_parser\n"
        "build_parser()\n"  # registers every command, the dashboard's included
        "print(sorted(m for m in ('duckdb', 'socket', 'secrets', 'starlette', 'uvicorn') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
