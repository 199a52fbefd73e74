"""A throwaway PostgreSQL cluster: ``initdb`` in a temp dir, listening on 127.0.0.1 at a free port.

Used by the tests' session fixture and by ``bench/postgres.py``. The binaries come from PATH, else
from Debian's ``/usr/lib/postgresql/<version>/bin`` (``make postgres`` installs them when root).
The unix socket lives in the cluster's own directory, so two clusters never collide.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import free_port

ADMIN = "mcplens_admin"


def binaries() -> Path | None:
    """The directory holding initdb/pg_ctl/postgres, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    return None


def _unprivileged_user() -> str:
    import pwd

    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")


class Cluster:
    """One cluster; :meth:`url` gives a libpq URL for a role (the admin role has no password and
    trusts local TCP connections, the roles mcplens creates authenticate with scram passwords)."""

    def __init__(self, root: Path | None = None, *, settings: dict[str, str] | None = None) -> None:
        bindir = binaries()
        if bindir is None:
            raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found")
        self.bin = bindir
        self.root = Path(root or tempfile.mkdtemp(prefix="mcplens-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.port = free_port()
        self.settings = settings or {}
        self._started = False
        self.user = _unprivileged_user() if os.geteuid() == 0 else None
        if self.user is not None:
            shutil.chown(self.root, self.user)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:  # the server refuses to run as root: run it as an unprivileged user
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> Cluster:
        self.sock.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            shutil.chown(self.sock, self.user)
        self._run("initdb", "-D", str(self.data), "-U", ADMIN, "--auth-local=trust", "--auth-host=scram-sha-256",
                  "--locale=C", "-E", "UTF8", "--no-sync")
        # the admin role trusts 127.0.0.1 (no password in tests); every other role needs its password
        hba = self.data / "pg_hba.conf"
        self._write(hba, f"local all all trust\nhost all {ADMIN} 127.0.0.1/32 trust\n"
                       "host all all 127.0.0.1/32 scram-sha-256\n")
        conf = {"listen_addresses": "'127.0.0.1'", "port": str(self.port),
                "unix_socket_directories": f"'{self.sock}'", "fsync": "off", "full_page_writes": "off",
                "max_connections": "100", "shared_buffers": "128MB", "logging_collector": "off",
                **self.settings}
        text = (self.data / "postgresql.conf").read_text(encoding="utf-8")
        self._write(self.data / "postgresql.conf", text + "".join(f"{k} = {v}\n" for k, v in conf.items()))
        return self

    @property
    def running(self) -> bool:
        return self._started

    def _write(self, path: Path, text: str) -> None:
        path.write_text(text, encoding="utf-8")
        if self.user is not None:
            shutil.chown(path, self.user)

    def start(self) -> Cluster:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log.txt"), "-w", "-t", "60", "start")
        self._started = True
        return self

    def stop(self, mode: str = "fast") -> None:
        if self._started:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)
            self._started = False

    def create_db(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(ADMIN), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(ADMIN, db=name)

    def url(self, user: str = ADMIN, password: str | None = None, db: str = "postgres") -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}?connect_timeout=3"

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":  # a cluster to play with: prints its admin URL, stops on Enter
    c = Cluster().init().start()
    print(c.url(), flush=True)
    try:
        input()
    finally:
        c.destroy()
        os._exit(0)
