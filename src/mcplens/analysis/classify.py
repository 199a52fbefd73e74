"""Which tools read sensitive data and which can send data out: from MCP annotations, then names.

Rules, in order (the first that answers wins):

1. configuration: ``[insights.tools] data_access = [...]``, ``outbound = [...]``, ``ignore = [...]``
   (glob patterns over tool names);
2. MCP tool annotations from ``tools/list`` replies: ``openWorldHint: true`` -> outbound;
3. the name: outbound words (send, post, email, upload, webhook, http, publish, share, notify,
   slack, fetch_url ...) -> outbound; data words (query, sql, database, read, get, lookup, search,
   export, dump, record, customer, file, secret ...) -> data access.

A ``readOnlyHint`` tool is never outbound by name alone (a read-only tool promises no side effect).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Final

DATA_ACCESS: Final = "data_access"
OUTBOUND: Final = "outbound"
OTHER: Final = "other"

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


@dataclass(frozen=True)
class ToolClasses:
    data_access: tuple[str, ...] = ()
    outbound: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
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
        if _DATA.search(tool):
            return DATA_ACCESS
        return OTHER


def _any(tool: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(tool, p) for p in patterns)
