"""Alert rules: once per episode, cool-down, log and a real webhook on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from mcplens import cli
from mcplens.alerts import Watcher, load_config
from mcplens.store.local.reader import LocalStore
from tests.analysis import workload

T = workload.T0


class Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append({"ct": self.headers["Content-Type"], **json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Any:
    Hook.received = []
    srv = HTTPServer(("127.0.0.1", 0), Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook"
    srv.shutdown()
    srv.server_close()


def rules(tmp_path: Path, url: str) -> Path:
    p = tmp_path / "alerts.toml"
    p.write_text(f"""
[alerts]
interval = 1
webhook = "{url}"
cooldown = "10m"

[[alerts.rules]]
name = "errors"
detector = "error_rate"
threshold = 0.10

[[alerts.rules]]
name = "loops"
detector = "loop"
threshold = 4

[[alerts.rules]]
name = "slow search"
detector = "p99_latency"
tool = "search_*"
threshold = 500

[[alerts.rules]]
name = "security"
detector = "security"
""")
    return p


def minute(home: Path, t: float, *, errors: int, loop: bool = False, slow: bool = False) -> None:
    """SYNTHETIC: 100 calls in the minute before ``t``."""
    evs = []
    for i in range(100):
        status = "tool_error" if i < errors else "ok"
        session = "loopy" if loop and i < 5 else f"s{int(t)}-{i % 10}"
        evs.append(workload.call(t - 60 + i * 0.5, "search_docs", session=session, status=status,
                                 duration=2.0 if slow and i % 2 else 0.01,
                                 args={"q": "same"} if loop and i < 5 else None))
    workload.write(home, evs, instance=f"i{int(t) % 10**9:09d}")


def test_fires_once_per_episode_resolves_and_respects_cooldown(tmp_path: Path, webhook: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "h"
    cfg = load_config(rules(tmp_path, webhook))
    now = [T]
    w = Watcher(LocalStore(home), cfg, clock=lambda: now[0])
    caplog.set_level(logging.INFO, "mcplens.alerts")

    minute(home, T, errors=30, loop=True, slow=True)
    fired = w.evaluate()
    assert sorted((a.rule, a.state) for a in fired) == [("errors", "firing"), ("loops", "firing"),
                                                         ("slow search", "firing")]
    assert len(Hook.received) == 3 and Hook.received[0]["ct"] == "application/json"
    by = {h["alert"]: h for h in Hook.received}
    assert by["errors"]["detector"] == "error_rate" and by["errors"]["evidence"]["errors"] == 30
    assert by["slow search"]["evidence"]["p99_ms"] >= 500
    assert "mcplens alert firing [critical] errors" in caplog.text

    now[0] = T + 30  # still failing: the same episode, no new alert
    minute(home, T + 30, errors=30)
    assert [(a.rule, a.state) for a in w.evaluate()] == []

    now[0] = T + 2 * 3600  # recovered: resolved once
    minute(home, now[0], errors=0)
    assert sorted((a.rule, a.state) for a in w.evaluate()) == [
        ("errors", "resolved"), ("loops", "resolved"), ("slow search", "resolved")]
    assert len(Hook.received) == 6

    now[0] += 60  # fails again 2 h after it last fired: beyond the cool-down, a new episode fires
    minute(home, now[0], errors=40)
    assert [(a.rule, a.state) for a in w.evaluate()] == [("errors", "firing")]


def test_cooldown_suppresses_a_quick_relapse(tmp_path: Path, webhook: str) -> None:
    home = tmp_path / "h"
    cfg = load_config(rules(tmp_path, webhook))
    now = [T]
    w = Watcher(LocalStore(home), cfg, clock=lambda: now[0])
    minute(home, T, errors=30)
    assert [a.state for a in w.evaluate()] == ["firing"]
    now[0] = T + 3601 + 60  # out of the recent window: resolved
    minute(home, now[0], errors=0)
    assert [a.state for a in w.evaluate()] == ["resolved"]
    now[0] += 60  # relapses 62 min after firing: beyond the 10 min cool-down, fires again
    minute(home, now[0], errors=50)
    assert [a.state for a in w.evaluate()] == ["firing"]


def test_dead_webhook_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "h"
    cfg = load_config(rules(tmp_path, "http://127.0.0.1:9/nothing"))
    minute(home, T, errors=30)
    w = Watcher(LocalStore(home), cfg, clock=lambda: T)
    assert w.evaluate()
    assert "webhook" in caplog.text


def test_bad_rules_file(tmp_path: Path) -> None:
    p = tmp_path / "a.toml"
    p.write_text("[[alerts.rules]]\ndetector = 'nope'\n")
    with pytest.raises(ValueError, match="nope"):
        load_config(p)
    assert cli.main(["watch", "--home", str(tmp_path), "--config", str(p), "--once"]) in (0, 2)


def test_cli_watch_once(tmp_path: Path, webhook: str, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "h"
    import time

    minute(home, time.time(), errors=30)
    assert cli.main(["watch", "--home", str(home), "--config", str(rules(tmp_path, webhook)), "--once", "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {o["alert"] for o in out} >= {"errors"} and all(o["state"] == "firing" for o in out)
