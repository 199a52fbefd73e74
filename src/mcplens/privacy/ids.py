"""Pseudonymous ids: a keyed HMAC that only the holder of the key can link back to a raw id.

The key comes from ``MCPLENS_ID_KEY`` or is generated once and kept, owner-readable only, in
the data directory, so ids stay stable across restarts and across the processes that share it.

A weak key would make every pseudonym reversible by brute force over the (small) space of
session ids and addresses, so a key is never empty or short: the file is written whole or not at
all (a temporary file renamed into place, under a lock shared by the processes of one data
directory), a 0-byte or truncated ``id.key`` left by a crash is replaced, and with no usable key
the pipeline records no ids at all rather than weak ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

KEY_FILE = "id.key"
#: bytes of a generated key
KEY_BYTES = 32
#: shortest key accepted, from the file or from ``MCPLENS_ID_KEY``
MIN_KEY_BYTES = 16

logger = logging.getLogger("mcplens")


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """An exclusive lock on ``id.key.lock`` (where ``fcntl`` exists) while the key is created or replaced."""
    try:
        import fcntl
    except ImportError:  # Windows: os.replace is still atomic; the race is only who wins
        yield
        return
    fd = os.open(home / (KEY_FILE + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(path: Path) -> bytes | None:
    """The key in the file if it is long enough, else None (missing, empty, truncated)."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        return None
    return key if len(key) >= MIN_KEY_BYTES else None


def _write_atomically(path: Path, key: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def load_or_create_key(home: Path) -> tuple[bytes | None, bool]:
    """Return (key, persisted); key is None when no strong key can be had (no ids are recorded then).

    An unwritable directory yields a strong process-only key (ids stable within this process), not an error.
    """
    env = os.environ.get("MCPLENS_ID_KEY")
    if env:
        key = env.encode("utf-8")
        if len(key) >= MIN_KEY_BYTES:
            return key, True
        logger.warning("mcplens: MCPLENS_ID_KEY is shorter than %d bytes; no pseudonymous ids are recorded",
                       MIN_KEY_BYTES)
        return None, False
    path = Path(home) / KEY_FILE
    try:
        key = _read(path)
        if key is not None:
            return key, True
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.parent):
            key = _read(path)  # another process may have written it meanwhile
            if key is None:
                key = os.urandom(KEY_BYTES)
                _write_atomically(path, key)
        return key, True
    except OSError:
        return os.urandom(KEY_BYTES), False


class Pseudonymizer:
    """Maps a raw id to ``<prefix>_<16 hex>``; the same input and key give the same output.

    With no key (``None``) every id maps to ``None``: the field is left out of the event.
    """

    def __init__(self, key: bytes | None) -> None:
        if key is not None and len(key) < MIN_KEY_BYTES:
            key = None
        self._key = key
        self._cache: dict[tuple[str, str], str] = {}

    def __call__(self, prefix: str, raw: str | None) -> str | None:
        if raw is None or raw == "" or self._key is None:
            return None
        hit = self._cache.get((prefix, raw))
        if hit is None:
            digest = hmac.new(self._key, f"{prefix}:{raw}".encode(), hashlib.sha256).hexdigest()[:16]
            hit = f"{prefix}_{digest}"
            if len(self._cache) < 65_536:
                self._cache[(prefix, raw)] = hit
        return hit


def lazy_pseudonymizer(home: Path) -> Callable[[], Pseudonymizer]:
    """A factory that reads (or creates) the key on first use: on the writer thread, not at start-up."""
    cache: list[Pseudonymizer] = []

    def get() -> Pseudonymizer:
        if not cache:
            cache.append(Pseudonymizer(load_or_create_key(home)[0]))
        return cache[0]

    return get
