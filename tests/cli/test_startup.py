"""What a CLI command loads before it runs: a one-shot `mcplens insights` is about a second, and every
module loaded that the command does not use is paid for on each run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_cli_loads_neither_the_duckdb_package_nor_the_dashboards_server() -> None:
    code = (
        "import sys\n"
        "from mcplens.cli import build_parser\n"
        "build_parser()\n"  # registers every command, the dashboard's included
        "print(sorted(m for m in ('duckdb', 'socket', 'secrets', 'starlette', 'uvicorn') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_insights_finds_secrets_without_compiling_the_privacy_patterns(home: Path) -> None:
    """Which redaction kinds are credentials is known without the privacy stage's ~80 regular
    expressions (compiling them was ~50 ms of every ``insights`` run); the finding is unchanged."""
    from tests.analysis.test_scenarios import calls, sessions, start

    server, _ = start()
    sessions(server, calls(("search_docs", {"q": "use key AKIAIOSFODNN7EXAMPLE please", "password": "hunter22"})))
    code = (
        "import json, sys, contextlib, io\n"
        "from mcplens.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    rc = main(['insights', '--home', {str(home)!r}, '--json'])\n"
        "found = [f for f in json.loads(out.getvalue()) if f['detector'] == 'secrets_in_arguments']\n"
        "print(json.dumps([rc, 'mcplens.privacy.patterns' in sys.modules, [f['evidence']['kinds'] for f in found]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout) == [0, False, [{"AWS_ACCESS_KEY": 1, "REDACTED:PASSWORD": 1}]]
