"""The schema against a real cluster: migrations, partitions, retention, least privilege, no credentials shown."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mcplens.cli import main
from mcplens.store.postgres import connect, mask_url, schema
from mcplens.store.postgres.writer import PostgresWriter
from tests.store import factory
from tests.store.postgres.conftest import READER_PW, WRITER_PW, Database

DAY = 86400


def test_upgrade_is_versioned_and_idempotent(pg: Database, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["db", "upgrade", "--json", "--store", pg.admin]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"applied": [], "version": schema.LATEST}, "a second upgrade must change nothing"
    assert main(["db", "status", "--json", "--store", pg.admin]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["version"] == schema.LATEST and status["rolled_until"] is None and status["batches"] == 0
    conn = connect(pg.admin)
    try:
        versions = [r[0] for r in conn.execute("SELECT version FROM mcplens.schema_version ORDER BY 1").fetchall()]
        assert versions == [v for v, _, _ in schema.MIGRATIONS]
        # migrations are frozen text: every event field (store/base.FIELDS) must have its column from
        # some migration, so a new field without one fails here, not in a replica's COPY
        have = {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                           "WHERE table_schema = 'mcplens' AND table_name = 'events'").fetchall()}
        want = {n for n, _, _ in schema.columns()} | {n for n, _, _ in schema.WRITER_HEALTH}
        assert want <= have, sorted(want - have)
        days = [d for _, d in schema.partitions(conn)]
        today = int(time.time() // DAY)
        assert set(range(today, today + schema.AHEAD_DAYS + 1)) <= set(days), "partitions are created ahead"
    finally:
        conn.close()


def test_writer_creates_the_day_it_needs_and_retention_drops_whole_days(pg: Database, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    old = [factory.request(now - 40 * DAY + i) for i in range(5)]
    recent = [factory.request(now - 10 * DAY + i) for i in range(7)]
    w = PostgresWriter(pg.writer, tmp_path, "inst-retention")
    assert w.write_batch(old + recent) == 12
    w.close()
    assert w.stats["sent"] == 12 and w.stats["spooled"] == 0, w.stats
    conn = connect(pg.admin)
    try:
        assert conn.execute("SELECT count(*) FROM mcplens.events").fetchone()[0] == 12
        old_day = time.strftime("events_%Y%m%d", time.gmtime(now - 40 * DAY))
        assert old_day in [p for p, _ in schema.partitions(conn)]
        capsys.readouterr()
        assert main(["retention", "--keep", "30d", "--json", "--store", pg.admin]) == 0
        result = json.loads(capsys.readouterr().out)
        assert old_day in result["dropped"]
        assert conn.execute("SELECT count(*) FROM mcplens.events").fetchone()[0] == 7
        # the batches of the rollup job go with the days they hold (and the readers' mirrors with them)
        from mcplens.store.postgres import mirror

        home = mirror.mirror_home(conn, tmp_path / "job")
        assert mirror.roll_up(conn, home, now=now)["events"] == 7
        assert conn.execute("SELECT count(*) FROM mcplens.batches").fetchone()[0] == 1
        # the setting is kept: a bare `retention` applies it again, and a late replay of an old event
        # does not bring the dropped day back
        assert main(["retention", "--store", pg.admin]) == 0
        w2 = PostgresWriter(pg.writer, tmp_path / "late", "inst-late")
        assert w2.write_batch([factory.request(now - 40 * DAY + 99)]) == 1
        w2.close()
        assert conn.execute("SELECT count(*) FROM mcplens.events").fetchone()[0] == 7
        assert old_day not in [p for p, _ in schema.partitions(conn)]
        assert main(["retention", "--keep", "5d", "--store", pg.admin]) == 0
        assert conn.execute("SELECT count(*) FROM mcplens.batches").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM mcplens.batch_files").fetchone()[0] == 0
        mirror.sync(conn, home)  # and a mirror drops them too
        assert not list(home.rglob("*.parquet"))
    finally:
        conn.close()


def test_writer_role_cannot_select_and_reader_cannot_insert(pg: Database, tmp_path: Path) -> None:
    import psycopg

    w = PostgresWriter(pg.writer, tmp_path, "inst-roles")
    assert w.write_batch([factory.request(time.time())]) == 1  # the writer can write ...
    w.close()
    with psycopg.connect(pg.writer, autocommit=True) as conn:
        for sql in ("SELECT count(*) FROM mcplens.events", "SELECT * FROM mcplens.batches",
                    "SELECT * FROM mcplens.batch_files", "SELECT * FROM mcplens.settings",
                    "SELECT * FROM mcplens.stage", "DELETE FROM mcplens.batches",
                    "INSERT INTO mcplens.settings VALUES ('rolled_until', '0')",
                    "DELETE FROM mcplens.events", "DROP TABLE mcplens.events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):  # ... and nothing else
                conn.execute(sql)
    with psycopg.connect(pg.reader, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM mcplens.events").fetchone()[0] == 1
        for sql in ("INSERT INTO mcplens.events (event_id, time) VALUES ('x', 1)", "DELETE FROM mcplens.events",
                    "DELETE FROM mcplens.batches", "UPDATE mcplens.settings SET value = '0'",
                    "INSERT INTO mcplens.batch_files VALUES ('x', 'y', '')",
                    "SELECT mcplens.ensure_partitions(ARRAY[1])"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)


def test_no_password_in_messages_logs_or_disclose(
    pg: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = pg.reader.replace(READER_PW, "Wr0ng-Passw0rd-xyz")
    capsys.readouterr()
    assert main(["report", "--store", wrong]) == 1
    err = capsys.readouterr().err
    assert "password authentication failed" in err and "Wr0ng-Passw0rd-xyz" not in err and "***" in err
    # a writer that cannot log in spools, logs one masked warning, and raises nothing
    w = PostgresWriter(pg.writer.replace(WRITER_PW, "Wr0ng-Passw0rd-xyz"), tmp_path, "inst-pw")
    with caplog.at_level("WARNING", logger="mcplens"):
        assert w.write_batch([factory.request(time.time())]) == 1
    w.close()
    assert w.stats["spooled"] == 1 and w.stats["failures"] >= 1
    assert caplog.records and all("Wr0ng-Passw0rd-xyz" not in r.getMessage() for r in caplog.records)
    assert not any(WRITER_PW in p.read_text() for p in tmp_path.rglob("*.jsonl"))
    from mcplens.config import Settings

    assert WRITER_PW not in repr(Settings(store=pg.writer, home=tmp_path))
    monkeypatch.setenv("MCPLENS_STORE", pg.writer)
    capsys.readouterr()
    assert main(["disclose"]) == 0
    assert WRITER_PW not in capsys.readouterr().out
    assert mask_url("postgresql://u:p%40ss@h/db?sslmode=require") == "postgresql://u:***@h/db?sslmode=require"
    assert mask_url("host=h password='a b' user=u") == "host=h password=*** user=u"
