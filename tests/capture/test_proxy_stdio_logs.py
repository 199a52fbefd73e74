"""The stdio proxy says on stderr what it runs and when that server dies; never its arguments (they
may carry tokens), never on stdout (the protocol's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SECRET_ARG = "--api-key=sk-live-4f9a8b7c6d5e4f3a2b1c"


def _proxy(tmp_path: Path, script: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "MCPLENS_HOME": str(tmp_path / "home")}
    return subprocess.run(
        [str(Path(sys.executable).with_name("mcplens")), "proxy", "--", sys.executable, "-c", script, SECRET_ARG],
        input=stdin, capture_output=True, env=env, timeout=60,
    )


def test_start_line_names_the_program_not_its_arguments(tmp_path: Path) -> None:
    out = _proxy(tmp_path, "import sys; sys.stdout.write(sys.stdin.read())", b'{"jsonrpc":"2.0","method":"x"}\n')
    assert out.returncode == 0
    assert out.stdout == b'{"jsonrpc":"2.0","method":"x"}\n'  # stdout is the relay's, byte for byte
    err = out.stderr.decode()
    started = [line for line in err.splitlines() if "mcplens proxy: started" in line]
    assert len(started) == 1, err
    assert os.path.basename(sys.executable) in started[0]
    assert "recording on" in started[0]
    assert "sk-live" not in err and "-c" not in started[0]
    assert "exited" not in err  # a clean exit says nothing more


def test_a_dying_server_is_reported_with_its_code(tmp_path: Path) -> None:
    out = _proxy(tmp_path, "import sys; sys.exit(7)")
    assert out.returncode == 7
    err = out.stderr.decode()
    assert "exited with code 7" in err, err
    assert "sk-live" not in err
    assert out.stdout == b""


def test_a_server_killed_by_a_signal_is_reported(tmp_path: Path) -> None:
    out = _proxy(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert out.returncode in (-9, 128 + 9)
    assert "exited with signal 9" in out.stderr.decode(), out.stderr.decode()
