"""The fleet store: many replicas write one PostgreSQL database; the same CLI and insights read it.

``MCPLENS_STORE=postgresql://...`` (option ``store=``, CLI ``--store URL``). Connection settings are
libpq's own: anything a libpq URL or ``PG*`` variable says (``sslmode``, ``passfile``, ``service``)
passes through unchanged. psycopg is imported only when such a URL is set (the ``[postgres]`` extra).

* :mod:`.schema`: versioned migrations (``mcplens db upgrade``), day partitions, roles, retention;
* :mod:`.writer`: the writer thread's sink, COPY per batch, spooling to local segments when down;
* :mod:`.mirror`: ``mcplens db rollup`` (closed hours into the local store's batches and rollup
  files, kept in the database) and the readers' mirror of them;
* :mod:`.store`: the :class:`~mcplens.store.base.Store` over PostgreSQL: the local store's reader
  over that mirror and the events not rolled up yet.

Credentials never reach a log line, an event or an error message: every URL printed goes through
:func:`mask_url` and every error through :func:`clean_error`.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

SCHEMES: Final = ("postgresql://", "postgres://")

_URL_PASSWORD = re.compile(r"(?P<head>postgres(?:ql)?://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<at>@)", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).strip().lower().startswith(SCHEMES)


def mask_url(text: str) -> str:
    """``text`` with any password in a libpq URL or ``password=`` setting replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + "***" + m.group("at"), text)
    return _KV_PASSWORD.sub(lambda m: m.group("head") + "***", text)


def _passwords(url: str) -> list[str]:
    out = []
    try:
        parts = urlsplit(url)
        if parts.password:
            out.append(parts.password)
        out += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    except ValueError:
        pass
    return out


def clean_error(exc: BaseException, url: str | None = None) -> str:
    """An error's first line with any password (of ``url``, or spelled in the text) masked.

    libpq does not echo passwords, but a message may quote the connection string it was given.
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for pw in _passwords(url or ""):
        text = text.replace(pw, "***")
    return mask_url(text)[:300]


def connect(url: str, **kwargs: Any) -> Any:
    """A psycopg connection; the URL goes to libpq as it is (TLS, passfile, service file)."""
    try:
        import psycopg
    except ImportError:
        raise ImportError("the PostgreSQL store needs psycopg: pip install 'mcplens[postgres]'") from None
    try:
        return psycopg.connect(url, **{"autocommit": True, **kwargs})
    except psycopg.Error as e:
        raise ConnectionError(clean_error(e, url)) from None
