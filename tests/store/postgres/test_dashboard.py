"""The dashboard over PostgreSQL: a real ``mcplens dashboard --store postgresql://...`` process as the
reader role answers its API with the rows ``mcplens ... --json --store`` prints, from the rollup
job's batches and the tail."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from mcplens.cli import main
from tests.analysis import workload
from tests.store import factory
from tests.store.postgres.conftest import READER_PW, Database
from tests.store.postgres.test_same_results import cli, load_both

REPO = Path(__file__).resolve().parents[3]


def test_dashboard_reads_postgresql(pg: Database, tmp_path: Path, capsys: Any) -> None:
    events = workload.normal(1_500, days=1.0, seed=3)
    events.append(factory.health("a1b2c3d4e5f60718", workload.T0 + workload.DAY - 60, enqueued=1_500, written=1_500))
    load_both(pg, tmp_path / "local", events)
    assert main(["db", "rollup", "--store", pg.admin]) == 0
    env = {**os.environ, "MCPLENS_STORE": pg.reader}  # as deploy/ configures it: the variable, no flag
    env.pop("MCPLENS_HOME", None)
    proc = subprocess.Popen([sys.executable, "-m", "mcplens.cli", "dashboard", "--host", "127.0.0.1", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        m = re.search(r"(http://\S+/)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        assert READER_PW not in line and "postgresql://fleet_reader:***@" in line, line  # masked
        since = "2026-09-21T00:00Z"
        for api, argv in ((f"api/tools?since={since}", ("report", "--json", "--since", since)),
                          (f"api/sessions?since={since}", ("sessions", "--json", "--since", since)),
                          (f"api/health?since={since}", ("health", "--json", "--since", since))):
            with urllib.request.urlopen(m.group(1) + api, timeout=60) as r:
                got = json.loads(r.read())
            assert got, api
            assert got == cli(capsys, *argv, "--store", pg.reader), api
    finally:
        proc.terminate()
        proc.wait(10)
