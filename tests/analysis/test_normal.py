"""A normal workload (100k calls over 7.5 days) raises nothing above info; the CLI prints and exports the findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcplens import cli
from mcplens.analysis.core import Options, Thresholds, insights
from mcplens.store.local.reader import LocalStore
from tests.analysis import workload


@pytest.fixture(scope="module")
def normal_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("normal")
    workload.write(home, workload.normal(100_000, days=7.5))  # SYNTHETIC, through the real writer: 7.5 days
    return home


def test_100k_normal_calls_raise_nothing_above_info(normal_home: Path) -> None:
    store = LocalStore(normal_home)
    assert store.count() == 100_000
    findings = insights(store)
    loud = [f for f in findings if f.severity != "info"]
    assert not loud, workload.dumps(loud)
    detectors = {f.detector for f in findings}
    assert {"volume", "slowest_tools", "unused_tool"} <= detectors  # the info that is there
    [unused] = [f for f in findings if f.detector == "unused_tool"]
    assert unused.subject == "files/legacy_export"


def test_normal_after_compaction_is_the_same(normal_home: Path, tmp_path: Path) -> None:
    import shutil

    home = tmp_path / "copy"
    shutil.copytree(normal_home, home)
    before = {(f.key, f.severity) for f in insights(LocalStore(home))}
    LocalStore(home).compact()
    assert {(f.key, f.severity) for f in insights(LocalStore(home))} == before


def test_thresholds_come_from_the_config_file(normal_home: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[insights]\npayload_p95_bytes = 2000\n[insights.tools]\ndata_access = ['summarize']\n")
    from mcplens.analysis.core import load_options

    opts = load_options(cfg)
    assert opts.thresholds.payload_p95_bytes == 2000 and opts.classes.data_access == ("summarize",)
    bloat = [f for f in insights(LocalStore(normal_home), opts) if f.detector == "payload_bloat"]
    assert len(bloat) == len(workload.TOOLS)
    cfg.write_text("[insights]\nno_such = 1\n")
    with pytest.raises(ValueError, match="no_such"):
        load_options(cfg)
    assert Options().thresholds == Thresholds()


def test_cli_insights_text_and_json(normal_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["insights", "--home", str(normal_home)]) == 0
    out = capsys.readouterr().out
    assert "info  [usage/unused_tool] legacy_export is listed by files but was never called" in out
    assert "action:" in out and "finding(s):" in out
    assert cli.main(["insights", "--home", str(normal_home), "--json", "--min-severity", "warning"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cli.main(["insights", "--home", str(normal_home), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"area", "detector", "severity", "subject", "title", "evidence", "action"} <= set(rows[0])


def test_cli_insights_without_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["insights", "--home", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
