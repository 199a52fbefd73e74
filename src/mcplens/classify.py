"""Which tools read sensitive data and which can send data out: from MCP annotations, then names.

Rules, in order (the first that answers wins):

1. configuration: ``[insights.tools] data_access = [...]``, ``outbound = [...]``, ``ignore = [...]``
   (glob patterns over tool names);
2. MCP tool annotations from ``tools/list`` replies: ``openWorldHint: true`` -> outbound;
3. the name: outbound words (send, post, email, upload, webhook, http, publish, share, notify,
   slack, fetch_url ...) -> outbound; data words (query, sql, database, read, get, lookup, search,
   export, dump, record, customer, file, secret ...) -> data access.

A ``readOnlyHint`` tool is never outbound by name alone (a read-only tool promises no side effect).

How *sensitive* a data-access tool's reads are (:meth:`ToolClasses.sensitivity`), which sets the
severity of a read-then-send: ``high`` when configured (``data_access`` or ``sensitive``) or named
for secrets, people, customers, databases or files; ``low`` for public or reference content (docs,
knowledge base, wiki, web search) or an ``openWorld`` read, and for a bare read verb (``get``,
``search``, ``list``) that names nothing sensitive; ``medium`` for other records. Each answer comes
with the reason, which the finding shows.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

DATA_ACCESS: Final = "data_access"
OUTBOUND: Final = "outbound"
OTHER: Final = "other"
HIGH: Final = "high"
MEDIUM: Final = "medium"
LOW: Final = "low"

_OUTBOUND = re.compile(
    r"(send|post|email|e_?mail|mail|upload|webhook|http|publish|share|notify|slack|tweet|sms|fetch_?url|"
    r"request_?url|curl|wget|push|forward|transfer|submit|external)",
    re.I,
)
_DATA = re.compile(
    r"(query|sql|database|\bdb|db_|select|read|get|lookup|search|export|dump|record|customer|account|file|"
    r"secret|credential|user|profile|list)",
    re.I,
)


_HIGH = re.compile(
    r"(secret|credential|passw|token|api_?key|private|customer|client_?data|patient|employee|user|profile|"
    r"account|contact|person|people|payment|card|salary|payroll|ssn|pii|personal|inbox|email|mail|message|"
    r"health|medical|bank|finance|query|sql|database|\bdb|db_|dump|export|file|env|config|ssh)",
    re.I,
)
_LOW = re.compile(
    r"(doc|knowledge|\bkb|kb_|wiki|faq|help|manual|guide|handbook|public|web|news|weather|time|"
    r"sum|echo|example|sample|demo|catalog|glossary|dictionary|translate)",
    re.I,
)
_MEDIUM = re.compile(r"(record|table|row|order|invoice|ticket|issue|note|memory|graph|entit|node|calendar|"
                     r"event|report|repo|log|director|folder|path)", re.I)


@dataclass(frozen=True)
class ToolClasses:
    data_access: tuple[str, ...] = ()
    outbound: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    sensitive: tuple[str, ...] = ()  # data-access tools whose reads are sensitive (glob patterns)
    #: tool -> annotations seen in tools/list (readOnly, destructive, openWorld)
    hints: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def classify(self, tool: str) -> str:
        if _any(tool, self.ignore):
            return OTHER
        if _any(tool, self.outbound):
            return OUTBOUND
        if _any(tool, self.data_access):
            return DATA_ACCESS
        hints = self.hints.get(tool, ())
        if "openWorld" in hints:
            return OUTBOUND
        if "readOnly" not in hints and _OUTBOUND.search(tool):
            return OUTBOUND
        if _DATA.search(tool) or _any(tool, self.sensitive):
            return DATA_ACCESS
        return OTHER

    def sensitivity(self, tool: str) -> tuple[str, str]:
        """(high | medium | low, why) for a data-access tool's reads."""
        if _any(tool, self.sensitive):
            return HIGH, "configured as sensitive ([insights.tools] sensitive)"
        if _any(tool, self.data_access):
            return HIGH, "configured as data access ([insights.tools] data_access)"
        hints = self.hints.get(tool, ())
        high = _HIGH.search(tool)
        if high:
            return HIGH, f"its name says it reads {high.group(0).lower()!r} data"
        if "openWorld" in hints:
            return LOW, "it reads the open world (openWorldHint): public content"
        low = _LOW.search(tool)
        if low:
            return LOW, f"its name says it reads reference or public content ({low.group(0).lower()!r})"
        medium = _MEDIUM.search(tool)
        if medium:
            return MEDIUM, f"its name says it reads {medium.group(0).lower()!r} records"
        return LOW, "a generic read (its name and annotations name nothing sensitive)"

    def split(self, tools: Sequence[str | None]) -> tuple[list[str], list[str]]:
        """(data-access tools, outbound tools) among ``tools``, each sorted: the read-then-send pairs."""
        kinds = {t: self.classify(t) for t in tools if t is not None}
        return (sorted(t for t, k in kinds.items() if k == DATA_ACCESS),
                sorted(t for t, k in kinds.items() if k == OUTBOUND))


def _any(tool: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(tool, p) for p in patterns)
