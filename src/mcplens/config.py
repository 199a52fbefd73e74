"""Settings from keyword arguments and ``MCPLENS_*`` environment variables.

Arguments win over the environment, the environment over defaults, so an operator can tune a
server they did not write without touching its code.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

_TRUE = {"1", "true", "yes", "on"}
MODES = ("local", "packaged")
#: the exporters ``exporters=`` / ``MCPLENS_EXPORTERS`` can name (all off by default: no egress)
EXPORTERS = ("log", "otel", "prometheus", "sentry")
#: the longest flush interval accepted: a hard kill loses at most one interval of events
MAX_FLUSH_INTERVAL = 60.0
#: options that only code can set: objects, not strings
_CODE_ONLY = {"privacy", "processors"}


def default_home() -> Path:
    """The platform's per-user data directory, unless ``MCPLENS_HOME`` names one."""
    env = os.environ.get("MCPLENS_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "mcplens"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "mcplens"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mcplens"


@dataclass(frozen=True)
class Settings:
    """Everything the capture side can be told. Each field has an ``MCPLENS_<NAME>`` variable."""

    home: Path = field(default_factory=default_home)
    #: events held in memory at most; beyond it new events are dropped and counted
    queue_size: int = 10_000
    #: bytes the queued captures may hold (estimated from the sizes the writer measures); beyond it
    #: new events are dropped and counted, like past ``queue_size``
    queue_bytes: int = 32 * 1024 * 1024
    #: seconds between writer flushes, in (0, 60]; a hard kill loses at most this much
    flush_interval: float = 0.25
    #: seconds close() waits, all exporters together, for their queued events; the rest are dropped and counted
    exporter_shutdown_timeout: float = 2.0
    #: events each exporter may hold queued on its own thread; beyond it that exporter drops and counts
    exporter_queue_size: int = 10_000
    #: a segment file is closed and a new one started past this size
    segment_max_bytes: int = 64 * 1024 * 1024
    #: a segment file is closed and a new one started past this age (seconds)
    segment_max_age: float = 600.0
    #: server name/version recorded when the framework does not tell them
    server_name: str | None = None
    server_version: str | None = None
    #: install a SIGTERM handler that flushes before the process dies (only over the default one)
    handle_sigterm: bool = True
    #: "local" (collect to the local store) or "packaged" (nothing at all until the end user opts in)
    mode: str = "local"
    #: packaged mode: the server's own opt-in variable, besides MCPLENS_ENABLED
    opt_in_env: str | None = None
    #: a TOML file with a [privacy] table (default: <home>/config.toml when it exists)
    config: Path | None = None
    #: the privacy policy in code; wins over the config file (not settable from the environment)
    privacy: Any = None
    #: extra privacy-stage processors, run after the built-in ones (code only)
    processors: tuple[Any, ...] = ()
    #: per-client token bucket for tools/call, prompts/get, resources/read: "60/min", "5/s" (off: None)
    rate_limit: str | None = None
    #: exporters fed after the privacy stage: any of "log", "otel", "prometheus", "sentry" (none by default)
    exporters: tuple[str, ...] = ()
    #: "log" exporter: JSON lines to this file (default: stderr; never stdout)
    log_file: Path | None = None
    #: "prometheus" exporter: where /metrics listens (port 0: no server; see mcplens.exporters.prometheus)
    prometheus_host: str = "127.0.0.1"
    prometheus_port: int = 9464
    #: "sentry" exporter: a DSN for mcplens to initialise sentry-sdk with (else the app's own init is used)
    sentry_dsn: str | None = None
    #: put the privacy stage's redacted arguments on OTel spans and Sentry events (off: names and sizes only)
    export_arguments: bool = False
    #: where events go instead of the local files: a ``postgresql://`` URL (libpq; see store/postgres).
    #: Not in repr: the URL may hold a password
    store: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mcplens mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        unknown = sorted(set(self.exporters) - set(EXPORTERS))
        if unknown:
            raise ValueError(f"unknown mcplens exporter(s) {', '.join(unknown)}; known: {', '.join(EXPORTERS)}")
        if self.rate_limit is not None:
            from mcplens.capture.ratelimit import parse_rate

            parse_rate(self.rate_limit)
        self._check_limits()
        if self.store is not None and not str(self.store).lower().startswith(("postgresql://", "postgres://")):
            raise ValueError("MCPLENS_STORE (option store=) must be a postgresql:// URL or unset (the local files)")

    def _check_limits(self) -> None:
        """Reject values that would stall or spin the writer, naming the variable that set them.

        ``flush_interval=0`` made the writer thread busy-loop a whole core; a zero or negative size
        silently dropped every event.
        """
        def bad(name: str, value: Any, want: str) -> ValueError:
            return ValueError(f"MCPLENS_{name.upper()} (option {name}=) must be {want}, not {value!r}")

        interval = self.flush_interval
        number = isinstance(interval, int | float) and not isinstance(interval, bool)
        if not number or not 0 < interval <= MAX_FLUSH_INTERVAL:
            raise bad("flush_interval", interval, f"a number of seconds in (0, {MAX_FLUSH_INTERVAL:g}]")
        for name in ("queue_size", "queue_bytes", "segment_max_bytes", "exporter_queue_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise bad(name, value, "a positive integer")
        for name in ("segment_max_age", "exporter_shutdown_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or value != value:
                raise bad(name, value, "a positive number of seconds")

    def effective_policy(self) -> Any:
        """The privacy policy: code, else the config file, then ``MCPLENS_*`` overrides on top."""
        from mcplens.privacy import policy as p

        if self.privacy is not None:
            if not isinstance(self.privacy, p.Policy):
                raise TypeError(f"privacy= expects a mcplens.privacy.Policy, got {type(self.privacy).__name__}")
            base = self.privacy
        elif self.config is not None:
            base = p.load_file(Path(self.config))
        elif (Path(self.home) / "config.toml").is_file():
            base = p.load_file(Path(self.home) / "config.toml")
        else:
            base = p.Policy()
        return p.from_env(base)

    def opted_in(self, environ: dict[str, str] | None = None) -> tuple[bool, str]:
        """Whether this process may collect, and if not, why (the answer ``instrument`` reports)."""
        env = os.environ if environ is None else environ
        if self.mode != "packaged":
            return True, ""
        if env.get("DO_NOT_TRACK", "").strip().lower() in _TRUE:
            return False, "DO_NOT_TRACK is set"
        names = ["MCPLENS_ENABLED", *([self.opt_in_env] if self.opt_in_env else [])]
        if any(env.get(n, "").strip().lower() in _TRUE for n in names):
            return True, ""
        return False, f"packaged mode: nothing is collected until the user sets {' or '.join(n + '=1' for n in names)}"

    def with_overrides(self, **overrides: Any) -> Settings:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown mcplens option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        clean: dict[str, Any] = {
            k: (Path(v).expanduser() if k in ("home", "config", "log_file") else v)
            for k, v in overrides.items()
            if v is not None
        }
        if "processors" in clean:
            clean["processors"] = tuple(clean["processors"])
        if "exporters" in clean:
            raw = clean["exporters"]
            clean["exporters"] = tuple(x.strip() for x in raw.split(",") if x.strip()) if isinstance(raw, str) else (
                tuple(raw)
            )
        return replace(self, **clean)


def from_env(environ: dict[str, str] | None = None) -> Settings:
    """Settings read from ``MCPLENS_*`` variables; a malformed value is an error naming the variable."""
    env = os.environ if environ is None else environ
    base = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name in _CODE_ONLY:
            continue
        raw = env.get(f"MCPLENS_{f.name.upper()}")
        if raw is None or raw == "":
            continue
        current = getattr(base, f.name)
        try:
            if isinstance(current, bool):
                values[f.name] = raw.strip().lower() in _TRUE
            elif isinstance(current, int):
                values[f.name] = int(raw)
            elif isinstance(current, float):
                values[f.name] = float(raw)
            elif isinstance(current, tuple):
                values[f.name] = tuple(x.strip() for x in raw.split(",") if x.strip())
            elif isinstance(current, Path) or f.name in ("config", "log_file"):
                values[f.name] = Path(raw).expanduser()
            else:
                values[f.name] = raw
        except ValueError:
            raise ValueError(f"MCPLENS_{f.name.upper()}={raw!r} is not a valid {type(current).__name__}") from None
    return replace(base, **values)


def disabled(environ: dict[str, str] | None = None) -> bool:
    """The kill switch: ``MCPLENS_DISABLED=1`` turns every way in off."""
    env = os.environ if environ is None else environ
    return env.get("MCPLENS_DISABLED", "").strip().lower() in _TRUE
