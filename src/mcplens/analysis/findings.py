"""What a detector reports: a finding with a severity, the numbers behind it and what to do."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Final

INFO: Final = "info"
WARNING: Final = "warning"
CRITICAL: Final = "critical"
SEVERITIES: Final = (INFO, WARNING, CRITICAL)
RANK: Final = {INFO: 0, WARNING: 1, CRITICAL: 2}

#: detector name -> the area it belongs to (the guide's sections)
AREAS: Final = {
    "client_spike": "usage",
    "tool_spike": "usage",
    "chain": "usage",
    "loop": "usage",
    "fail_together": "usage",
    "unused_tool": "usage",
    "heavy_tail": "performance",
    "payload_bloat": "performance",
    "slowest_tools": "performance",
    "error_rate": "health",
    "shared_failure": "health",
    "tool_failure": "health",
    "volume": "health",
    "restarts": "health",
    "rate_limited": "health",
    "exfiltration": "security",
    "data_access_burst": "security",
    "secrets_in_arguments": "security",
    "prompt_injection": "security",
    "tool_drift": "security",
    "auth_failures": "security",
}


@dataclass
class Finding:
    detector: str  # one of AREAS
    severity: str  # info | warning | critical
    subject: str  # what it is about: a client, a tool, a server, "a -> b"; with detector, the identity
    title: str  # one line
    evidence: dict[str, Any] = field(default_factory=dict)  # the numbers, the window, example sessions
    action: str = ""  # what to do about it

    def __post_init__(self) -> None:
        # several detectors gather examples per row (one per chain, per bucket ...): list each session once
        ex = self.evidence.get("example_sessions")
        if isinstance(ex, list | tuple):
            self.evidence["example_sessions"] = list(dict.fromkeys(ex))

    @property
    def area(self) -> str:
        return AREAS.get(self.detector, "other")

    @property
    def key(self) -> str:
        """Identity across runs: an alert episode is one key staying present."""
        return f"{self.detector}:{self.subject}"

    def to_dict(self) -> dict[str, Any]:
        return {"area": self.area, **asdict(self)}


def sort_findings(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-RANK[f.severity], f.area, f.detector, f.subject))
