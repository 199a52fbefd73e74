"""The store factories: a data directory by path or file:// URL, a clear error for a scheme with no store."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcplens import config
from mcplens.store import OPENERS, open_store, open_writer
from mcplens.store.local.reader import LocalStore
from mcplens.store.local.writer import EventLogSink
from tests.store.factory import request


def test_a_path_or_file_url_opens_the_local_store(tmp_path: Path) -> None:
    for target in (tmp_path, str(tmp_path), f"file://{tmp_path}"):
        store = open_store(target)
        assert isinstance(store, LocalStore) and store.home == tmp_path


def test_a_url_without_a_store_is_an_error_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no store for postgresql:// URLs; known: file://"):
        open_store("postgresql://db.example/mcplens")
    with pytest.raises(ValueError, match="no store for s3://"):
        open_store("S3://bucket/x")
    assert not (Path.cwd() / "postgresql:").exists()


def test_a_registered_scheme_is_opened_by_its_opener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setitem(OPENERS, "memo", lambda url: seen.append(url) or LocalStore(tmp_path))
    assert isinstance(open_store("memo://x/y"), LocalStore) and seen == ["memo://x/y"]


def test_the_writer_writes_what_the_store_reads(tmp_path: Path) -> None:
    settings = config.Settings(home=tmp_path)
    sink = open_writer(settings, "0123456789abcdef")
    assert isinstance(sink, EventLogSink)
    assert sink.write_batch([request(1_790_000_000.0 + i) for i in range(3)]) == 3
    sink.close()
    assert open_store(tmp_path).count() == 3
