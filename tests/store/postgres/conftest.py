"""One throwaway PostgreSQL cluster for the session (``initdb`` in a temp dir, 127.0.0.1, a free port).

Each test gets its own database, upgraded with ``mcplens db upgrade`` as the admin role, and two
login roles made members of ``mcplens_writer`` / ``mcplens_reader`` with ``mcplens db grant``: the
replicas write as the writer, the CLI reads as the reader, as in production. Without PostgreSQL
binaries (``make postgres`` installs them when root) every test here is skipped, saying why.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.store.postgres.cluster import ADMIN, Cluster, binaries

WRITER, READER = "fleet_writer", "fleet_reader"
#: test-only passwords for throwaway roles on a throwaway cluster (scram over 127.0.0.1)
WRITER_PW, READER_PW = "w-Secr3t-pass", "r-Secr3t-pass"
_DBS = itertools.count(1)


@dataclass
class Database:
    cluster: Cluster
    name: str

    @property
    def admin(self) -> str:
        return self.cluster.url(ADMIN, db=self.name)

    @property
    def writer(self) -> str:
        return self.cluster.url(WRITER, WRITER_PW, db=self.name)

    @property
    def reader(self) -> str:
        return self.cluster.url(READER, READER_PW, db=self.name)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    if binaries() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: `make postgres` installs them (root)")
    pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")
    import psycopg

    cluster = Cluster().init().start()
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {WRITER} LOGIN PASSWORD '{WRITER_PW}'")
            conn.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PW}'")
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg(pg_cluster: Cluster) -> Database:
    """A fresh database with the schema upgraded and the two login roles granted."""
    from mcplens.cli import main

    db = Database(pg_cluster, f"t{next(_DBS)}")
    pg_cluster.create_db(db.name)
    assert main(["db", "upgrade", "--store", db.admin]) == 0
    assert main(["db", "grant", WRITER, "--as", "writer", "--store", db.admin]) == 0
    assert main(["db", "grant", READER, "--as", "reader", "--store", db.admin]) == 0
    return db


@pytest.fixture(autouse=True)
def _mirror_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers' mirrors (store/postgres/mirror.py) in a temp dir, not the user's cache."""
    monkeypatch.setenv("MCPLENS_PG_CACHE", str(tmp_path_factory.mktemp("pg-mirrors")))
