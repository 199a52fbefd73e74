"""What a CLI command loads before it runs: a one-shot `mcplens insights` is about a second, and every
module loaded that the command does not use is paid for on each run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import subprocess_env


def test_the_cli_loads_neither_the_duckdb_package_nor_the_dashboards_server() -> None:
    code = (
        "import sys\n"
        "from mcplens.cli import build_parser\n"
        "build_parser()\n"  # registers every command, the dashboard's included
        "print(sorted(m for m in ('duckdb', 'socket', 'secrets', 'starlette', 'uvicorn') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"



def test_a_command_builds_only_its_own_parser() -> None:
    """``mcplens insights ...`` parses with the insights parser alone: the proxy's, PostgreSQL's and
    the dashboard's modules stay unloaded; ``mcplens --help`` and an unknown command still know every
    command."""
    code = (
        "import sys, contextlib, io\n"
        "from mcplens.cli import main\n"
        "err = io.StringIO()\n"
        "with contextlib.redirect_stderr(err):\n"
        "    rc = main(['insights', '--bogus'])\n"
        "print(rc, 'mcplens insights: error: unrecognized arguments: --bogus' in err.getvalue())\n"
        "print(sorted(m for m in ('mcplens.proxy', 'mcplens.dashboard', 'mcplens.store.postgres.admin') "
        "if m in sys.modules))\n"
        "with contextlib.redirect_stderr(err):\n"
        "    rc = main(['insigths'])\n"
        "print(rc, \"invalid choice: 'insigths'\" in err.getvalue(), \"'dashboard'\" in err.getvalue())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.splitlines() == ["2 True", "[]", "2 True True"]

def test_insights_finds_secrets_without_compiling_the_privacy_patterns(home: Path) -> None:
    """Which redaction kinds are credentials is known without the privacy stage's ~80 regular
    expressions (compiling them was ~50 ms of every ``insights`` run); the finding is unchanged. Nor
    does reading load the event writer (its encoders: ~7 ms), only the log's layout."""
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
        "loaded = [m for m in ('mcplens.privacy.patterns', 'mcplens.store.local.writer') if m in sys.modules]\n"
        "print(json.dumps([rc, loaded, [f['evidence']['kinds'] for f in found]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout) == [0, [], [{"AWS_ACCESS_KEY": 1, "REDACTED:PASSWORD": 1}]]


_ENDING = """
import atexit, pathlib, sys
from mcplens.cli import run

class Held:  # a module global: freed by the interpreter's teardown, if there is one
    def __del__(self):
        sys.stderr.write("torn down\\n")

held = Held()
marker = pathlib.Path(sys.argv.pop())
atexit.register(lambda: marker.write_text("atexit ran"))
sys.argv = ["mcplens", *sys.argv[1:]]
run()
"""


def _ending(home: Path, marker: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _ENDING, *args, str(marker)], capture_output=True, text=True,
                          timeout=120, check=False, env=subprocess_env(home))


def test_a_read_and_print_command_ends_its_process_without_the_teardown(home: Path, tmp_path: Path) -> None:
    """``mcplens insights`` prints all, runs the atexit handlers and keeps its exit code, but the
    interpreter's teardown (every object freed, DuckDB's database closed: ~50 ms) is skipped."""
    from tests.analysis.test_scenarios import calls, sessions, start

    server, _ = start()
    sessions(server, calls(("search_docs", {"q": "use key AKIAIOSFODNN7EXAMPLE please"})))
    marker = tmp_path / "marker"
    out = _ending(home, marker, "insights", "--home", str(home), "--json")
    assert out.returncode == 0, out.stderr
    assert [f["detector"] for f in json.loads(out.stdout) if f["detector"] == "secrets_in_arguments"] == [
        "secrets_in_arguments"]
    assert marker.read_text() == "atexit ran"
    assert "torn down" not in out.stderr
    # an error's exit code is kept
    missing = _ending(home, marker, "insights", "--home", str(tmp_path / "missing"), "--json")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_other_commands_end_as_usual(home: Path, tmp_path: Path) -> None:
    """A command that writes (here ``compact``) ends with the interpreter's teardown, as any Python
    program: whatever it left to be flushed or closed at exit is."""
    home.mkdir(parents=True, exist_ok=True)
    marker = tmp_path / "marker"
    out = _ending(home, marker, "compact", "--home", str(home))
    assert out.returncode == 0, out.stderr
    assert marker.read_text() == "atexit ran"
    assert "torn down" in out.stderr
