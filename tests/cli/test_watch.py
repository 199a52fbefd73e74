"""``mcplens watch``: alert state kept in the data directory, a clear error for a missing rules
file, and a quiet exit on Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mcplens import cli
from mcplens.alerts import Watcher, load_config
from mcplens.store.local.reader import LocalStore
from tests.test_alerts import Hook, T, minute, rules, webhook  # noqa: F401 - webhook is a fixture

MCPLENS = Path(sys.executable).parent / "mcplens"


def test_watch_once_fires_an_episode_once_across_runs(tmp_path: Path, webhook: str,  # noqa: F811
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "h"
    minute(home, time.time(), errors=30)
    argv = ["watch", "--home", str(home), "--config", str(rules(tmp_path, webhook)), "--once", "--json"]
    assert cli.main(argv) == 0
    first = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o["alert"], o["state"]) for o in first] == [("errors", "firing")] and len(Hook.received) == 1
    assert (home / "alerts" / "state.json").is_file()
    for _ in range(2):  # cron runs it again: the same episode, nothing new
        assert cli.main(argv) == 0
        assert capsys.readouterr().out == "" and len(Hook.received) == 1


def test_a_restarted_watcher_resolves_and_keeps_the_cooldown(tmp_path: Path, webhook: str) -> None:  # noqa: F811
    home = tmp_path / "h"
    path = rules(tmp_path, webhook)
    path.write_text(path.read_text().replace('cooldown = "10m"', 'cooldown = "3h"'))
    cfg = load_config(path)
    state = home / "alerts" / "state.json"

    def watcher(at: float) -> Watcher:  # a new process each time: only the state file carries over
        return Watcher(LocalStore(home), cfg, clock=lambda: at, state_path=state)

    minute(home, T, errors=30)
    assert [(a.rule, a.state) for a in watcher(T).evaluate()] == [("errors", "firing")]
    later = T + 3661 + 60  # recovered, and the episode's finding is out of the recent window
    minute(home, later, errors=0)
    resolved = watcher(later).evaluate()
    assert [(a.rule, a.state) for a in resolved] == [("errors", "resolved")]
    assert resolved[0].finding.detector == "error_rate"  # the finding came back from the state file
    relapse = later + 60  # 62 min after it fired: inside the 3 h cool-down, so it stays quiet
    minute(home, relapse, errors=50)
    assert watcher(relapse).evaluate() == []
    assert [h["state"] for h in Hook.received] == ["firing", "resolved"]


def test_an_unreadable_state_file_is_logged_and_ignored(tmp_path: Path, webhook: str,  # noqa: F811
                                                         caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "h"
    minute(home, T, errors=30)
    state = home / "alerts" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text("{not json")
    w = Watcher(LocalStore(home), load_config(rules(tmp_path, webhook)), clock=lambda: T, state_path=state)
    assert [a.state for a in w.evaluate()] == ["firing"]
    assert "ignoring unreadable alert state" in caplog.text
    assert json.loads(state.read_text())["alerts"][0]["rule"] == "errors"


def test_a_missing_rules_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "h"
    minute(home, time.time(), errors=0)
    missing = tmp_path / "alerts-typo.toml"
    rc = cli.main(["watch", "--home", str(home), "--config", str(missing), "--once"])
    err = capsys.readouterr().err
    assert rc == 2 and f"config file {missing} does not exist" in err and "cannot read events" not in err


def test_ctrl_c_exits_quietly_with_130(tmp_path: Path, webhook: str) -> None:  # noqa: F811
    home = tmp_path / "h"
    minute(home, time.time(), errors=30)
    env = {**os.environ, "MCPLENS_HOME": str(home)}
    # --interval 0: it evaluates back to back, so the signal lands in the middle of a query
    proc = subprocess.Popen([str(MCPLENS), "watch", "--config", str(rules(tmp_path, webhook)), "--interval", "0",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        assert json.loads(lines.get(timeout=60))["state"] == "firing"  # it is running its queries
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "query error" not in err and "cannot read" not in err and "Traceback" not in err
    assert "INTERRUPT" not in err and "unreadable" not in err


def test_watch_output_and_log_lines_are_terminal_safe(tmp_path: Path) -> None:
    from tests.cli.test_cli import HOSTILE, _assert_terminal_safe
    from tests.store.factory import request, write

    home = tmp_path / "h"
    now = time.time()
    write(home, [request(now - 60 + i, target=HOSTILE, duration=2.0, session=f"s{i}") for i in range(20)])
    cfg = tmp_path / "slow.toml"
    cfg.write_text('[[alerts.rules]]\nname = "slow"\ndetector = "p99_latency"\ntool = "*"\nthreshold = 100\n')
    proc = subprocess.run([str(MCPLENS), "watch", "--home", str(home), "--config", str(cfg), "--once"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "MCPLENS_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    assert "firing" in proc.stdout and "\\x9b" in proc.stdout  # the title names the tool, escaped
    assert "mcplens alert firing" in proc.stderr and "\\x9b" in proc.stderr  # and so does the log line
    _assert_terminal_safe(proc.stdout + proc.stderr)
