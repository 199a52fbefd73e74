"""``mcplens disclose``: the README section a server author pastes, written from the configuration.

It is generated, not hand-written, so it cannot drift from what the code collects: the lists
below come from the same policy object the privacy stage enforces.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mcplens.config import Settings
from mcplens.privacy.policy import Policy

#: the default data directory per platform, as an end user would find it on their own machine
_PORTABLE_HOME = {
    "linux": "~/.local/share/mcplens",
    "darwin": "~/Library/Application Support/mcplens",
    "win32": "%LOCALAPPDATA%\\mcplens",
}


def _names(values: frozenset[str]) -> str:
    return ", ".join(f"`{v}`" for v in sorted(values))


def _arguments_line(policy: Policy) -> str:
    if policy.no_arguments:
        return "- Tool arguments: **not collected**; only each argument's name and size in bytes."
    line = (
        "- Tool and prompt arguments, **redacted**: values under sensitive names (passwords, tokens, keys, cookies, "
        "sessions, credentials, names, usernames, emails, phones, addresses, user/device ids, national ids, IPs), "
        "also inside text as `key: value` or `key=value`, and values that look like secrets or personal data "
        "(emails, phone numbers, national ids such as SSNs, IP and MAC addresses, payment cards, IBANs, JWTs, "
        "auth headers, cloud and API keys, private keys, credentials in URLs, cookies) are replaced by a "
        "placeholder such as "
        f"`[EMAIL]`; strings longer than {policy.max_string} characters are truncated, binary data is replaced by "
        f"its size, and argument objects over {policy.max_arguments_bytes} bytes are not kept at all."
    )
    extra = []
    if policy.deny_keys:
        extra.append(f"  Always redacted: {_names(policy.deny_keys)}.")
    if policy.allow_keys:
        extra.append(f"  Kept verbatim: {_names(policy.allow_keys)}.")
    for tool, tp in sorted(policy.tools.items()):
        if tp.no_arguments:
            extra.append(f"  `{tool}`: no argument values.")
        if tp.allow:
            extra.append(f"  `{tool}`: kept verbatim: {_names(tp.allow)}.")
        if tp.deny:
            extra.append(f"  `{tool}`: always redacted: {_names(tp.deny)}.")
    if policy.patterns:
        extra.append(f"  Also redacted: {_names(frozenset(policy.patterns))} (custom patterns).")
    return "\n".join([line, *extra])


def _where_stored(home: Path) -> str:
    """The data directory as the end user's own machine names it, never the operator's path.

    The text is pasted into a README that other people read and run on their machines: the
    operator's home directory (``/home/alice/...``) names the operator and is wrong for everyone else.
    """
    default = _PORTABLE_HOME.get(sys.platform, _PORTABLE_HOME["linux"])
    portable = (
        f"mcplens's data directory on the machine that runs the server (by default `{default}`; "
        "set `MCPLENS_HOME` to move it)"
    )
    if os.environ.get("MCPLENS_HOME") or os.environ.get("XDG_DATA_HOME"):
        return "the directory named by `MCPLENS_HOME` on the machine that runs the server"
    try:
        if Path(home).expanduser().resolve() != _platform_default().resolve():
            return "the data directory the operator configured (`MCPLENS_HOME`) on the machine that runs the server"
    except OSError:
        pass
    return portable


def _platform_default() -> Path:
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "mcplens"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")) / "mcplens"
    return Path(os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")) / "mcplens"


def _destinations(settings: Settings) -> list[str]:
    """Each configured exporter and what it sends where, without the operator's hosts or paths."""
    out = []
    for name in settings.exporters:
        if name == "log":
            where = "a log file the operator chose" if settings.log_file else "the server's standard error"
            out.append(f"- **Log lines** (JSON, one per request, the same sanitized fields) to {where}.")
        elif name == "otel":
            out.append(
                "- **OpenTelemetry**: a span and duration metrics per request, with the same sanitized fields, "
                "to the OTLP collector the operator configured (`OTEL_EXPORTER_OTLP_ENDPOINT`)."
            )
        elif name == "prometheus":
            out.append(
                "- **Prometheus**: per-tool request counts, error counts and latency histograms (labels are "
                "method, tool and status names only) on a `/metrics` endpoint this server serves"
                + (f" on port {settings.prometheus_port}." if settings.prometheus_port else ".")
            )
        elif name == "sentry":
            out.append(
                "- **Sentry**: failed requests and performance spans, with the same sanitized fields, to the "
                "Sentry project the operator configured."
            )
    return out


def render(settings: Settings, *, server: str = "This server") -> str:
    """Markdown describing what the effective configuration collects and how to control it."""
    policy = settings.effective_policy()
    packaged = settings.mode == "packaged"
    opt_in = ["MCPLENS_ENABLED=1", *([f"{settings.opt_in_env}=1"] if settings.opt_in_env else [])]
    if packaged:
        switch = (
            f"Telemetry is **off by default**. Nothing is collected, no file is written and no connection is made "
            f"until you opt in by setting {' or '.join(f'`{v}`' for v in opt_in)} in the server's environment. "
            "`DO_NOT_TRACK=1` keeps it off even then."
        )
    else:
        switch = "Monitoring is on. To turn it off, set `MCPLENS_DISABLED=1` in the server's environment."
    sent = _destinations(settings)
    if sent:
        where = (
            f"**Where it goes**: to files under {_where_stored(settings.home)}; read them with `mcplens report`, "
            "delete that directory to erase them. The same sanitized records also go to:\n"
            + "\n".join(sent)
        )
    else:
        where = (
            f"**Where it goes**: only to files under {_where_stored(settings.home)}. Nothing is sent over the "
            "network. Read it with `mcplens report`; delete that directory to erase it."
        )
    if getattr(settings, "store", None):  # PostgreSQL (store/postgres): named by its variable, never its URL
        where = (
            "**Where it goes**: over the network to the operator's PostgreSQL database named by `MCPLENS_STORE` "
            f"(while it is unreachable, events wait in files under {_where_stored(settings.home)}); read it with "
            "`mcplens report --store ...`." + ("" if not sent else " The same sanitized records also go to:\n"
                                              + "\n".join(sent))
        )
    return f"""## Telemetry and privacy

{server} uses [mcplens](https://pypi.org/project/mcplens/) to monitor its own requests. {switch}

**What is collected**, one record per request:
- the MCP method, the tool, prompt or resource called (resource addresses with personal parts removed),
  when, how long it took, and whether it succeeded (status, error type and category, and the error
  message with secrets and personal data removed);
- the size of the reply in bytes, an estimate of its tokens, and the number and types of content items;
{_arguments_line(policy)}
- the client's name and version (e.g. `claude-desktop 1.2`) and the protocol version;
- pseudonymous session, client and address ids: keyed hashes that only the operator of this machine,
  who holds the key, can link back.

**Never collected**: the content of tool results, resources or prompts; conversation history;
credentials (API keys, tokens, passwords, connection strings); personal data (emails, phone numbers,
addresses, names, user ids, IP addresses, device ids) beyond the placeholders above.

{where}

**Controls**: `MCPLENS_DISABLED=1` turns everything off. `MCPLENS_NO_ARGUMENTS=1` keeps no argument
values at all. `MCPLENS_DENY_KEYS=a,b` always redacts the named arguments.
"""
