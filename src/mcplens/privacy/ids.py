"""Pseudonymous ids: a keyed HMAC that only the holder of the key can link back to a raw id.

The key comes from ``MCPLENS_ID_KEY`` or is generated once and kept, owner-readable only, in
the data directory, so ids stay stable across restarts and across the processes that share it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from pathlib import Path

KEY_FILE = "id.key"


def load_or_create_key(home: Path) -> tuple[bytes, bool]:
    """Return (key, persisted). An unwritable directory yields a process-only key, not an error."""
    env = os.environ.get("MCPLENS_ID_KEY")
    if env:
        return env.encode("utf-8"), True
    path = Path(home) / KEY_FILE
    try:
        return path.read_bytes(), True
    except FileNotFoundError:
        pass
    except OSError:
        return os.urandom(32), False
    key = os.urandom(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return path.read_bytes(), True
    except OSError:
        return key, False
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key, True


class Pseudonymizer:
    """Maps a raw id to ``<prefix>_<16 hex>``; the same input and key give the same output."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._cache: dict[tuple[str, str], str] = {}

    def __call__(self, prefix: str, raw: str | None) -> str | None:
        if raw is None or raw == "":
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
