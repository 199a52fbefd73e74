"""`mcplens disclose` writes the README section from the effective configuration."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mcplens.cli import main


def test_packaged_disclosure_names_the_opt_in(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["disclose", "--mode", "packaged", "--opt-in-env", "ACME_TELEMETRY", "--server-name", "acme"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("## Telemetry and privacy")
    assert "**off by default**" in text and "`ACME_TELEMETRY=1`" in text and "`MCPLENS_ENABLED=1`" in text
    assert "DO_NOT_TRACK=1" in text and "acme uses" in text
    assert "Never collected" in text and "Nothing is sent over the network" in text
    assert str(home) not in text and str(Path.home()) not in text, "the operator's own path is not for end users"
    assert "`MCPLENS_HOME`" in text
    assert not home.exists(), "disclose must not create the data directory"


@pytest.mark.skipif(sys.platform != "linux", reason="the Linux default directory is the one spelled out here")
def test_disclosure_names_the_default_directory_portably(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MCPLENS_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert main(["disclose"]) == 0
    text = capsys.readouterr().out
    assert "`~/.local/share/mcplens`" in text
    assert str(Path.home()) not in text


def test_exporters_are_listed_and_no_promise_of_no_network(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MCPLENS_EXPORTERS", "otel,prometheus,sentry,log")
    monkeypatch.setenv("MCPLENS_LOG_FILE", str(home.parent / "events.log"))
    assert main(["disclose"]) == 0
    text = capsys.readouterr().out
    assert "Nothing is sent over the network" not in text
    for name in ("**OpenTelemetry**", "**Prometheus**", "**Sentry**", "**Log lines**"):
        assert name in text
    assert "events.log" not in text and str(home.parent) not in text
    monkeypatch.setenv("MCPLENS_EXPORTERS", "prometheus")
    assert main(["disclose"]) == 0
    text = capsys.readouterr().out
    assert "Nothing is sent over the network" not in text and "**Prometheus**" in text
    assert "**Sentry**" not in text


def test_local_disclosure_follows_the_policy_file(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[privacy]\nmax_string = 64\n[privacy.tools.search]\nallow = ["query"]\n'
                      '[privacy.tools.send]\nno_arguments = true\n')
    assert main(["disclose", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "Monitoring is on" in text and "MCPLENS_DISABLED=1" in text
    assert "longer than 64 characters" in text
    assert "`search`: kept verbatim: `query`." in text
    assert "`send`: no argument values." in text


def test_disclose_with_a_broken_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[privacy]\nmystery = 1\n")
    assert main(["disclose", "--config", str(bad)]) == 2
    assert "unknown key(s) mystery" in capsys.readouterr().err
