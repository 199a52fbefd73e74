"""What may be kept of a request's arguments, per tool: set in code, environment or a TOML file.

Redaction is on by default and cannot be switched off as a whole; a policy only narrows it
(``no_arguments``, ``deny``) or, field by field and tool by tool, keeps a value verbatim
(``allow``) where the owner knows it is harmless.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mcplens.privacy.redact import RedactionRules

#: (tool, argument path, value) -> replacement value, or None to drop it
Callback = Callable[[str | None, tuple[str, ...], Any], Any]


@dataclass(frozen=True)
class ToolPolicy:
    """Overrides for one tool (or prompt): argument names kept verbatim, always redacted, or none at all."""

    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()
    no_arguments: bool = False


@dataclass(frozen=True)
class Policy:
    """The privacy policy. The default keeps redacted arguments and redacts everything textual."""

    #: record no argument values at all (names and sizes are still kept)
    no_arguments: bool = False
    #: longest string kept; longer ones are truncated
    max_string: int = 256
    #: argument objects larger than this (JSON bytes) are not kept, only their shape
    max_arguments_bytes: int = 16_384
    #: argument names always redacted, everywhere
    deny_keys: frozenset[str] = frozenset()
    #: argument names kept verbatim everywhere (use sparingly; per-tool ``allow`` is narrower)
    allow_keys: frozenset[str] = frozenset()
    #: extra patterns: placeholder kind -> regular expression
    patterns: Mapping[str, str] = field(default_factory=dict)
    tools: Mapping[str, ToolPolicy] = field(default_factory=dict)
    #: a last word on each kept value, after redaction
    callback: Callback | None = None

    def rules_for(self, tool: str | None) -> RedactionRules:
        tp = self.tools.get(tool or "", ToolPolicy())
        callback = self.callback
        return RedactionRules(
            max_string=self.max_string,
            extra_sensitive_keys=frozenset(self.deny_keys | tp.deny),
            allow_keys=frozenset(self.allow_keys | tp.allow),
            deny_keys=frozenset(self.deny_keys | tp.deny),
            custom_patterns=dict(self.patterns),
            callback=(lambda path, value: callback(tool, path, value)) if callback else None,
        )

    def keeps_arguments(self, tool: str | None) -> bool:
        if self.no_arguments:
            return False
        override = self.tools.get(tool or "") if self.tools else None
        return override is None or not override.no_arguments


def _names(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list | tuple | set | frozenset) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise ValueError(f"{where}: expected a list of argument names, got {value!r}")


def from_mapping(data: Mapping[str, Any], where: str = "privacy") -> Policy:
    """A policy from the ``[privacy]`` table of a config file (or an equivalent dict)."""
    known = {"no_arguments", "max_string", "max_arguments_bytes", "deny_keys", "allow_keys", "patterns", "tools"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    patterns = dict(data.get("patterns", {}))
    for kind, rx in patterns.items():
        try:
            re.compile(rx)
        except (re.error, TypeError) as exc:
            raise ValueError(f"{where}.patterns.{kind}: not a regular expression: {exc}") from None
    tools: dict[str, ToolPolicy] = {}
    for name, spec in dict(data.get("tools", {})).items():
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}.tools.{name}: expected a table")
        bad = sorted(set(spec) - {"allow", "deny", "no_arguments"})
        if bad:
            raise ValueError(f"{where}.tools.{name}: unknown key(s) {', '.join(bad)}; known: allow, deny, no_arguments")
        tools[name] = ToolPolicy(
            allow=_names(spec.get("allow"), f"{where}.tools.{name}.allow"),
            deny=_names(spec.get("deny"), f"{where}.tools.{name}.deny"),
            no_arguments=bool(spec.get("no_arguments", False)),
        )
    policy = Policy(
        no_arguments=bool(data.get("no_arguments", False)),
        deny_keys=_names(data.get("deny_keys"), f"{where}.deny_keys"),
        allow_keys=_names(data.get("allow_keys"), f"{where}.allow_keys"),
        patterns=patterns,
        tools=tools,
    )
    for key in ("max_string", "max_arguments_bytes"):
        if key in data:
            value = data[key]
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{where}.{key}: expected a non-negative integer, got {value!r}")
            policy = replace(policy, **{key: value})  # type: ignore[arg-type]  # an int field, checked above
    return policy


def load_file(path: Path) -> Policy:
    """The ``[privacy]`` table of a TOML config file; a missing table is the default policy."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"mcplens config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"mcplens config file {path}: {exc}") from None
    return from_mapping(data.get("privacy", {}), where=f"{path} [privacy]")


def from_env(base: Policy, environ: Mapping[str, str] | None = None) -> Policy:
    """Environment overrides: ``MCPLENS_NO_ARGUMENTS``, ``MCPLENS_MAX_STRING``, ``MCPLENS_DENY_KEYS``."""
    env = os.environ if environ is None else environ
    policy = base
    if env.get("MCPLENS_NO_ARGUMENTS", "").strip().lower() in {"1", "true", "yes", "on"}:
        policy = replace(policy, no_arguments=True)
    if env.get("MCPLENS_MAX_STRING"):
        try:
            policy = replace(policy, max_string=int(env["MCPLENS_MAX_STRING"]))
        except ValueError:
            raise ValueError(f"MCPLENS_MAX_STRING={env['MCPLENS_MAX_STRING']!r} is not an integer") from None
    if env.get("MCPLENS_DENY_KEYS"):
        policy = replace(policy, deny_keys=policy.deny_keys | _names(env["MCPLENS_DENY_KEYS"], "MCPLENS_DENY_KEYS"))
    return policy
