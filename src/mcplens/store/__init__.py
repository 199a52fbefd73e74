"""Where events live: the durable writer the pipeline appends to, and the stores the reading side opens.

Two factories, so no other layer names a backend:

* :func:`open_writer` gives the capture pipeline its durable sink (today the local segment writer,
  :mod:`mcplens.store.local.writer`; standard library only, it runs inside the monitored server);
* :func:`open_store` gives the reading side (CLI, analysis, dashboard) a :class:`~mcplens.store.base.Store`
  for a data directory or a URL, dispatching on the URL's scheme through :data:`OPENERS`.

A new backend adds an opener to :data:`OPENERS` (and, if it also takes writes, a branch in
:func:`open_writer`), in its own subpackage (``store/<name>/``). This module imports nothing heavy:
the capture side imports it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mcplens.store.base import Store


class DurableSink(Protocol):
    """What the pipeline's writer thread needs from the store's write half."""

    name: str

    def write_batch(self, events: list[dict[str, Any]]) -> int:
        """Append the events; returns how many were written (or raises, naming how many made it)."""

    def close(self) -> None:
        """Finish the current file or connection; events written so far stay readable."""


def open_writer(settings: Any, instance_id: str) -> DurableSink:
    """The durable sink for one pipeline (``instance_id`` names its files); never imports DuckDB.

    ``settings.store`` set (a ``postgresql://`` URL): the PostgreSQL writer, which spools to the
    local segment writer when the database is down (psycopg is imported only then)."""
    if getattr(settings, "store", None):
        from mcplens.store.postgres.writer import PostgresWriter

        return PostgresWriter(settings.store, settings.home, instance_id, max_bytes=settings.segment_max_bytes,
                              max_age=settings.segment_max_age)
    from mcplens.store.local.writer import EventLogSink

    return EventLogSink(
        settings.home, instance_id, max_bytes=settings.segment_max_bytes, max_age=settings.segment_max_age
    )


def _open_local(target: str) -> Store:
    from mcplens.store.local.reader import LocalStore

    return LocalStore(Path(target.removeprefix("file://")).expanduser())


def _open_postgres(url: str) -> Store:
    from mcplens.store.postgres.store import PostgresStore

    return PostgresStore(url)


#: URL scheme -> opener. ``file`` (and a plain path) is the local data directory.
OPENERS: dict[str, Callable[[str], Store]] = {"file": _open_local, "postgresql": _open_postgres,
                                              "postgres": _open_postgres}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_store(url_or_home: str | os.PathLike[str]) -> Store:
    """The store at a data directory (a path or ``file://``) or a URL whose scheme has an opener.

    Raises ``ValueError`` naming the known schemes for any other URL, rather than taking it for a
    directory name.
    """
    if isinstance(url_or_home, os.PathLike):
        return _open_local(os.fspath(url_or_home))
    m = _SCHEME.match(url_or_home)
    if m is None:
        return _open_local(url_or_home)
    scheme = m.group(1).lower()
    opener = OPENERS.get(scheme)
    if opener is None:
        known = ", ".join(f"{s}://" for s in sorted(OPENERS))
        raise ValueError(f"no store for {scheme}:// URLs; known: {known} or a data directory path")
    return opener(url_or_home)
