from __future__ import annotations

import io
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
from mcplens import event as ev
from mcplens.cli import output
from mcplens.cli.insights import print_findings
from mcplens.store.local.reader import LocalStore
from tests.store.factory import health, request, write

NOW = time.time()


@pytest.fixture(autouse=True)
def _fresh_now() -> None:
    """Each test's "now": taken at import it went stale once the suite ran past four minutes,
    and ``--since 4m`` then missed events written "100 s ago"."""
    global NOW
    NOW = time.time()
MCPLENS = Path(sys.executable).parent / "mcplens"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def populate(home: Path) -> list[dict]:
    events = (
        [request(NOW - 600 + i, target="search_files", duration=0.010 + i / 1000, size=900 + i,
                 session="aaaa1111", status=ev.TOOL_ERROR if i % 10 == 0 else ev.OK) for i in range(40)]
        + [request(NOW - 300 + i, target="read_file", duration=0.250, size=48_000, session="bbbb2222",
                   client=("cursor", "0.9")) for i in range(5)]
        + [request(NOW - 100, method="tools/list", target=None, session="aaaa1111", size=3100)]
        + [request(NOW - 50, target="search_issues", server="github", session="cccc3333", duration=1.5)]
    )
    write(home, events)
    return events


def test_report_json_is_the_store_table(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(home)
    rc, out, err = run(capsys, "report", "--json")
    assert rc == 0 and err == ""
    rows = json.loads(out)
    assert rows == json.loads(json.dumps(LocalStore(home).tool_table()))
    assert [r["name"] for r in rows] == ["search_files", "read_file", "search_issues", "tools/list"]
    assert rows[0]["calls"] == 40 and rows[0]["errors"] == 4 and rows[0]["statuses"] == {"ok": 36, "tool_error": 4}


def test_report_sort_and_filters(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(home)
    by_p95 = json.loads(run(capsys, "report", "--json", "--sort", "p95")[1])
    assert [r["name"] for r in by_p95][:2] == ["search_issues", "read_file"]
    by_payload = json.loads(run(capsys, "report", "--json", "--sort", "payload")[1])
    assert by_payload[0]["name"] == "read_file" and by_payload[0]["payload_max_bytes"] == 48_000
    github = json.loads(run(capsys, "report", "--json", "--server", "github")[1])
    assert [(r["server"], r["name"]) for r in github] == [("github", "search_issues")]
    one = json.loads(run(capsys, "report", "--json", "--tool", "read_*")[1])
    assert [r["name"] for r in one] == ["read_file"]
    recent = json.loads(run(capsys, "report", "--json", "--since", "4m")[1])
    assert {r["name"] for r in recent} == {"tools/list", "search_issues"}
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(NOW - 400))
    early = json.loads(run(capsys, "report", "--json", "--until", iso)[1])
    assert [r["name"] for r in early] == ["search_files"]


def test_report_table_is_aligned_with_a_health_footer(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(home)
    write(home, [health("a1b2c3d4e5f60718", NOW, enqueued=50, written=47, dropped=3)], instance="h")
    rc, out, err = run(capsys, "report")
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["SERVER", "TOOL", "CALLS", "ERRORS"]  # two servers: a SERVER column
    read = next(line for line in lines if "read_file" in line)
    assert "250" in read and "46.9 KB" in read
    assert read.index("250") + 3 == lines[0].index("P50 ms") + len("P50 ms")  # numbers right-aligned
    assert "tools/list" in out and "tool_error 4" in out
    assert lines[-1].startswith("monitoring itself lost data: 3 dropped")


def test_report_has_no_footer_when_the_pipeline_lost_nothing(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(home, [request(NOW), health("a1b2c3d4e5f60718", NOW, enqueued=1, written=1)])
    out = run(capsys, "report")[1]
    assert "lost" not in out and "SERVER" not in out.splitlines()[0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["report", "--since", "yesterday"], "cannot read time 'yesterday'"),
        (["report", "--since", "1h", "--until", "2h"], "is not after --since"),
        (["sessions", "--until", "soon"], "cannot read time 'soon'"),
    ],
)
def test_bad_time_window_is_one_clear_line(home: Path, capsys: pytest.CaptureFixture[str], argv, message) -> None:
    populate(home)
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_empty_data_dir_is_a_note_not_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "report", "--json", "--home", str(tmp_path))
    assert rc == 0 and json.loads(out) == []
    assert "no events recorded yet under" in err and "instrument a server first" in err
    rc, out, err = run(capsys, "sessions", "--home", str(tmp_path))
    assert rc == 0 and out == "" and "no events recorded yet" in err


@pytest.mark.parametrize("command", ["report", "sessions", "tail", "health", "insights", "check"])
def test_a_home_that_does_not_exist_is_an_error_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    missing = tmp_path / "no-such-dir"
    argv = [command, "--home", str(missing)] + (["--once"] if command == "tail" else [])
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == "" and str(missing) in err and "does not exist" in err
    monkeypatch.setenv("MCPLENS_HOME", str(missing))
    rc, out, err = run(capsys, *argv[:1], *argv[3:])
    assert rc == 2 and str(missing) in err and "MCPLENS_HOME" in err


def test_sessions_list_and_one_session(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(home)
    rows = json.loads(run(capsys, "sessions", "--json")[1])
    assert [r["session_id"] for r in rows] == ["cccc3333", "aaaa1111", "bbbb2222"]
    a = rows[1]
    assert (a["calls"], a["errors"], a["tools"], a["client_name"]) == (41, 4, ["search_files"], "claude-code")

    rc, out, _ = run(capsys, "sessions", "aaaa", "--json")
    events = json.loads(out)
    assert rc == 0 and len(events) == 41 and {e["session_id"] for e in events} == {"aaaa1111"}
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    assert events[-1]["method"] == "tools/list"

    rc, out, _ = run(capsys, "sessions", "bbbb2222")
    assert rc == 0 and out.splitlines()[0] == "session bbbb2222: 5 events"
    assert out.splitlines()[1].split()[:5] == ["TIME", "DIR", "METHOD", "TARGET", "STATUS"]

    rc, out, _ = run(capsys, "sessions")
    assert rc == 0 and "cursor 0.9" in out and out.splitlines()[0].startswith("SESSION")


def test_session_prefix_must_be_unique_and_exist(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(home, [request(NOW, session="abc1"), request(NOW, session="abc2")])
    rc, _, err = run(capsys, "sessions", "abc")
    assert rc == 1 and "matches 2 sessions (abc1, abc2)" in err
    rc, _, err = run(capsys, "sessions", "zzz")
    assert rc == 1 and "no session matching 'zzz'" in err


def test_tail_once_prints_the_newest_events(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = populate(home)
    write(home, [health("x", NOW + 5)], instance="h")
    rc, out, _ = run(capsys, "tail", "--once", "-n", "3", "--json")
    got = [json.loads(line) for line in out.splitlines()]
    newest = sorted(events, key=lambda e: e[ev.TIME])[-3:]
    assert rc == 0 and [g["event_id"] for g in got] == [e[ev.EVENT_ID] for e in newest]
    rc, out, _ = run(capsys, "tail", "--once", "-n", "2")
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 2
    assert "github" in lines[1] and "search_issues" in lines[1] and "1,500 ms" in lines[1] and "cccc3333" in lines[1]


def test_tail_follows_new_events_and_exits_cleanly_on_ctrl_c(home: Path) -> None:
    write(home, [request(time.time() - 1, target="before")])
    env = {**os.environ, "MCPLENS_HOME": str(home)}
    proc = subprocess.Popen([str(MCPLENS), "tail", "--json", "-n", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()

    def next_line(timeout: float = 20) -> dict:
        return json.loads(lines.get(timeout=timeout))

    try:
        assert next_line()["target"] == "before"  # the initial listing is done
        new = [request(time.time() - 0.5, target=f"after{i}") for i in range(3)]
        write(home, new[:2], instance="w2")
        write(home, new[2:], instance="w3", close=False)  # a live segment of a running writer
        got = {next_line()["target"] for _ in range(3)}
        assert got == {"after0", "after1", "after2"}
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in err


def test_compact_then_report_is_unchanged(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(home)
    before = json.loads(run(capsys, "report", "--json")[1])
    rc, out, _ = run(capsys, "compact")
    assert rc == 0 and out.startswith("compacted 1 segment(s), 47 events, into ")
    after = json.loads(run(capsys, "report", "--json")[1])
    for a, b in zip(after, before, strict=True):
        for key in ("name", "calls", "errors", "statuses", "payload_max_bytes"):
            assert a[key] == b[key]
        assert a["p95_ms"] == pytest.approx(b["p95_ms"]) and a["mean_ms"] == pytest.approx(b["mean_ms"])
    assert run(capsys, "compact")[1].strip() == "nothing to compact"
    result = json.loads(run(capsys, "compact", "--json")[1])
    assert result["batches"] == [] and result["busy"] is False


def test_health_command(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(home, [health("inst-a", NOW - 5, enqueued=9, written=9), health("inst-a", NOW, enqueued=20, written=18,
                                                                       dropped=1, faults=1)])
    rows = json.loads(run(capsys, "health", "--json")[1])
    assert [(r["instance_id"], r["enqueued"], r["written"], r["dropped"], r["faults"]) for r in rows] == [
        ("inst-a", 20, 18, 1, 1)]
    out = run(capsys, "health")[1]
    assert out.splitlines()[0].split()[:3] == ["INSTANCE", "SERVER", "PID"]
    assert "1 dropped (queue full), 1 faults" in out


def test_console_script_report_json(home: Path) -> None:
    populate(home)
    proc = subprocess.run([str(MCPLENS), "report", "--json", "--home", str(home)], capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items() if k != "MCPLENS_HOME"})
    assert proc.returncode == 0, proc.stderr
    assert [r["calls"] for r in json.loads(proc.stdout)] == [40, 5, 1, 1]
    bad = subprocess.run([str(MCPLENS), "report", "--sort", "nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_help_and_usage_errors_return_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--help")[0] == 0
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys)[0] == 2


def test_spinner_only_on_a_terminal_and_only_when_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    with output.progress("reading", delay=0.05):
        time.sleep(0.3)
    assert "reading" in tty.getvalue() and tty.getvalue().endswith("\r\x1b[K")
    quick = Tty()
    monkeypatch.setattr(sys, "stderr", quick)
    with output.progress("reading", delay=5):
        pass
    assert quick.getvalue() == ""
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    with output.progress("reading", delay=0):
        time.sleep(0.2)
    assert plain.getvalue() == ""


def test_formatting() -> None:
    assert output.fmt_bytes(12.3 * 1024) == "12.3 KB"
    assert output.fmt_bytes(512) == "512 B"
    assert output.fmt_bytes(3 * 1024**3) == "3.0 GB"
    assert [output.fmt_ms(v) for v in (0.4567, 12.34, 1234.5, None)] == ["0.46", "12.3", "1,234", "-"]
    assert output.label({"method": "prompts/get", "target": "summarize"}) == "prompts/get summarize"
    assert output.label({"method": "tools/call", "target": "search"}) == "search"
    assert output.label({"method": "ping", "target": None}) == "ping"


# ---- issue 13: a CLI that tells the truth ----------------------------------------------------


def test_tail_once_filters_before_it_cuts(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the server asked for is quiet lately: its 5 events are older than 20 of another server's
    write(home, [request(NOW - 200 + i, target=f"old{i}", server="quiet") for i in range(5)]
          + [request(NOW - 100 + i, target=f"new{i}", server="busy") for i in range(20)])
    rc, out, _ = run(capsys, "tail", "--once", "-n", "3", "--server", "quiet", "--json")
    assert rc == 0 and [json.loads(line)["target"] for line in out.splitlines()] == ["old2", "old3", "old4"]
    rc, out, _ = run(capsys, "tail", "--once", "--lines", "2", "--server", "busy")  # the old spelling works
    assert rc == 0 and [line.split()[2] for line in out.splitlines()] == ["tools/call"] * 2
    assert "new18" in out and "new19" in out


def test_report_tool_filter_takes_a_method(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(home)
    calls = json.loads(run(capsys, "report", "--json", "--tool", "tools/call")[1])
    assert {r["name"] for r in calls} == {"search_files", "read_file", "search_issues"}
    lists = json.loads(run(capsys, "report", "--json", "--tool", "tools/list")[1])
    assert [r["name"] for r in lists] == ["tools/list"]
    top = json.loads(run(capsys, "report", "--json", "-n", "2")[1])
    assert [r["name"] for r in top] == ["search_files", "read_file"]
    assert json.loads(run(capsys, "report", "--json", "--limit", "1", "--sort", "p95")[1])[0]["name"] == "search_issues"


@pytest.mark.parametrize("argv", [["sessions", "-n", "-1"], ["tail", "--once", "-n", "-5"], ["report", "-n", "x"],
                                  ["insights", "--limit", "-2"]])
def test_a_bad_count_is_a_usage_error_of_that_command(home: Path, capsys: pytest.CaptureFixture[str],
                                                      argv: list[str]) -> None:
    populate(home)
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.startswith(f"usage: mcplens {argv[0]}") and "Binder" not in err and "Traceback" not in err
    assert "negative" in err or "whole number" in err


def test_an_unknown_flag_prints_the_subcommands_usage(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(home)
    for command in ("report", "sessions", "tail", "insights", "health", "check"):
        rc, _, err = run(capsys, command, "--frobnicate")
        assert rc == 2 and err.startswith(f"usage: mcplens {command}"), err
        assert "unrecognized arguments: --frobnicate" in err


def test_sessions_lists_sessions_not_instances(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(home, [
        request(NOW - 30, target="a", session="sess-one"),
        request(NOW - 20, target="b", session=None, instance="proxy0instance1"),  # a proxy's stray event
        request(NOW - 10, method="initialize", target=None, session=None, instance="proxy0instance1"),
        health("proxy0instance1", NOW),
    ])
    rows = json.loads(run(capsys, "sessions", "--json")[1])
    assert [r["session_id"] for r in rows] == ["sess-one"]
    out = run(capsys, "sessions")[1]
    assert "proxy0insta" not in out and "@" not in out


def test_session_timeline_marks_server_to_client_requests(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asked = request(NOW - 5, method="sampling/createMessage", target=None, session="s2c-session")
    asked[ev.PROXY_DIRECTION] = "server_to_client"
    write(home, [request(NOW - 6, target="summarize", session="s2c-session"), asked])
    lines = run(capsys, "sessions", "s2c")[1].splitlines()
    rows = {line.split()[2]: line.split()[1] for line in lines[2:4]}
    assert rows == {"tools/call": "->", "sampling/createMessage": "<-"}
    assert "one the server sent the client" in lines[-1]


def test_health_counts_recorded_events_not_relayed_messages(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a proxy's pipeline is handed every relayed message (request and reply: 2 per call) but
    # records one event per call
    write(home, [*(request(NOW - 10 + i, instance="proxy-inst") for i in range(4)),
                 health("proxy-inst", NOW, enqueued=8, written=4)], instance="proxy-inst")
    rows = json.loads(run(capsys, "health", "--json")[1])
    assert [(r["instance_id"], r["events"], r["enqueued"]) for r in rows] == [("proxy-inst", 4, 8)]
    out = run(capsys, "health")[1].splitlines()
    col = out[0].split().index("EVENTS")
    assert out[1].split()[col + 1] == "4"  # LAST REPORT is two words


HOSTILE = "evil\x1b]0;owned\x07\x1b[2J\x9b31m\u202egnp.exe\r\nFAKE LINE\x7f\x08"


def _assert_terminal_safe(text: str) -> None:
    bad = [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f
           or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u2028\u2029"]
    assert bad == [], f"raw control characters reached the terminal: {bad!r}"
    assert "FAKE LINE" not in [line.strip() for line in text.splitlines()]


def test_hostile_names_never_reach_the_terminal_raw(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evs = [request(NOW - 300 + i, target=HOSTILE, server=HOSTILE, session=HOSTILE, client=(HOSTILE, HOSTILE),
                   status=ev.TOOL_ERROR if i % 2 else ev.OK) for i in range(60)]
    write(home, [*evs, health(HOSTILE, NOW, server=HOSTILE, dropped=1)], instance=HOSTILE)
    outputs = {}
    for argv in (["tail", "--once"], ["report"], ["sessions"], ["sessions", "evil"], ["health"], ["insights"]):
        rc, out, err = run(capsys, *argv)
        assert rc == 0, (argv, err)
        _assert_terminal_safe(out + err)
        outputs[argv[0] + str(len(argv))] = out
    assert "evil\\e]0;owned\\x07\\e[2J\\x9b31m\\u202egnp.exe\\r\\nFAKE LINE\\x7f\\x08" in outputs["report1"]
    assert "\\x9b" in outputs["insights1"]  # the finding about the failing tool names it, escaped
    for argv in (["report", "--json"], ["sessions", "--json"], ["tail", "--once", "--json"], ["health", "--json"],
                 ["insights", "--json"]):
        rc, out, _ = run(capsys, *argv)
        assert rc == 0
        _assert_terminal_safe(out)
        assert "\\u009b" in out
        if argv[0] == "report":  # still the same JSON value
            assert json.loads(out)[0]["name"] == HOSTILE


def test_example_sessions_are_listed_once(capsys: pytest.CaptureFixture[str]) -> None:
    from mcplens.analysis.findings import Finding

    f = Finding("exfiltration", "warning", "read -> send", "read then send",
                {"example_sessions": ["s1", "s2", "s1", "s3", "s2"]})
    assert f.evidence["example_sessions"] == ["s1", "s2", "s3"]
    assert f.to_dict()["evidence"]["example_sessions"] == ["s1", "s2", "s3"]
    print_findings([f.to_dict()])
    assert 'example_sessions=["s1", "s2", "s3"]' in capsys.readouterr().out
