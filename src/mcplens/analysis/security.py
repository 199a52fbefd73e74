"""Security detectors: read-then-send (exfiltration), secrets and injection phrases in arguments,
tool definitions that change (rug pulls), authentication failures."""

from __future__ import annotations

import fnmatch
import json
import re
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Final

from mcplens import event as ev
from mcplens.analysis.core import _SESSION, _r, _t
from mcplens.analysis.findings import CRITICAL, INFO, RANK, WARNING, Finding
from mcplens.classify import HIGH, MEDIUM

if TYPE_CHECKING:
    from mcplens.analysis.core import Analysis

#: a redaction kind that names a credential (a key, a token, a password ...) rather than personal data
_CREDENTIAL: Final = re.compile(r"KEY|TOKEN|JWT|AUTH|CREDENTIAL|COOKIE|PASSWORD|SECRET|SESSION")


#: the redaction kinds that are credentials (an agent handling secrets), not personal data: the kinds the
#: privacy stage counts (text patterns as ``KIND``, key-name rules as ``REDACTED:KIND``) whose name says
#: credential (:data:`_CREDENTIAL`). Written out, not derived at run time: deriving them imports the
#: privacy patterns, whose ~80 regular expressions take ~50 ms to compile in every ``insights`` run.
#: tests/analysis/test_units.py derives the set from the patterns and fails when the two differ.
SECRET_KINDS: Final = frozenset({
    "ANTHROPIC_KEY", "AUTH_HEADER", "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "COOKIE", "GITHUB_TOKEN", "GITLAB_TOKEN",
    "GOOGLE_API_KEY", "JWT", "OPENAI_KEY", "PRIVATE_KEY", "PROVIDER_KEY", "SLACK_TOKEN", "STRIPE_KEY",
    "URL_CREDENTIALS", "REDACTED:API_KEY", "REDACTED:AUTHORIZATION", "REDACTED:COOKIE", "REDACTED:CREDENTIAL",
    "REDACTED:PASSWORD", "REDACTED:PRIVATE_KEY", "REDACTED:SECRET", "REDACTED:SESSION", "REDACTED:TOKEN",
})


def detect(a: Analysis) -> None:
    for d in DETECTORS:
        d(a)


def exfiltration(a: Analysis) -> None:
    """Sessions that read with a data-access tool, then sent out with an outbound one."""
    th = a.th
    if a.reads and a.sends:
        rows = a.run(
            """
            WITH tot AS (SELECT server, sum(with_calls) AS n FROM ru_sessions GROUP BY server)
            SELECT e.server, read_tool, send_tool, sum(sessions) AS sessions, max(max_send_bytes) AS max_send_bytes,
                   min(first_read) AS first, max(last_send) AS last, any_value(tot.n) AS total,
                   list_sort(list_distinct(flatten(list(examples))))[1:?] AS examples
            FROM ru_exfil e LEFT JOIN tot ON tot.server IS NOT DISTINCT FROM e.server
            WHERE read_tool IN (SELECT unnest(?)) AND send_tool IN (SELECT unnest(?))
            GROUP BY 1, 2, 3 ORDER BY sessions DESC, read_tool, send_tool""",
            [th.examples, a.reads, a.sends],
        )
        for r in rows:
            share = r["sessions"] / (r["total"] or 1)  # of this server's sessions: baselines are per server
            level, why = a.classes.sensitivity(r["read_tool"])
            common = share >= th.exfil_common_share
            sev = INFO if common else {HIGH: CRITICAL, MEDIUM: WARNING}.get(level, INFO)
            a.add(
                "exfiltration",
                sev,
                a.scoped(r["server"], f"{r['read_tool']} -> {r['send_tool']}"),
                f"{r['sessions']} session(s) read with {r['read_tool']} ({level} sensitivity) then sent out "
                f"with {r['send_tool']}" + (" (a common workflow here)" if common else ""),
                "read-then-send is how injected instructions exfiltrate data: review these sessions; "
                "require confirmation for the outbound tool or mark it in [insights.tools]",
                server=r["server"],
                sessions=int(r["sessions"]),
                share_of_sessions=_r(share, 4),
                read_sensitivity=level,
                sensitivity_reason=why,
                outbound_reason=_outbound_reason(a, r["send_tool"]),
                max_outbound_request_bytes=r["max_send_bytes"],
                window=[_t(r["first"]), _t(r["last"])],
                example_sessions=list(r["examples"]) if sev != INFO else [],
                within_s=th.exfil_window,
            )


def auth_failures(a: Analysis) -> None:
    th = a.th
    rows = a.run(
        f"""
        WITH f AS (SELECT * FROM rare WHERE status = '{ev.UNAUTHORIZED}' OR error_category = '{ev.CAT_AUTH}'),
             peak AS (SELECT client, max(n) AS peak FROM (SELECT client, floor(time / ?) AS b, count(*) AS n
                                                           FROM f GROUP BY 1, 2) GROUP BY 1)
        SELECT client, min(client_name) AS name, count(*) AS n, any_value(peak.peak) AS peak,
               histogram(status) AS statuses, histogram(tool) AS tools,
               list(DISTINCT session ORDER BY session)[1:?] AS sessions,
               min(time) AS first, max(time) AS last
        FROM f JOIN peak USING (client) GROUP BY 1 HAVING any_value(peak.peak) >= ? ORDER BY n DESC, client""",
        [th.auth_bucket, th.examples, th.auth_warning],
    )
    for r in rows:
        sev = CRITICAL if r["peak"] >= th.auth_critical else WARNING
        a.add(
            "auth_failures",
            sev,
            r["client"],
            f"{r['n']:,} authentication failures / unauthorized attempts from {r['name'] or r['client']}",
            "a misconfigured or expired credential, or someone probing: check this client's credentials "
            "and block it if unknown",
            failures=int(r["n"]),
            most_in_one_bucket=int(r["peak"]),
            statuses=dict(r["statuses"]),
            tools=dict(r["tools"]),
            client_name=r["name"],
            example_sessions=list(r["sessions"]),
            window=[_t(r["first"]), _t(r["last"])],
        )


def _outbound_reason(a: Analysis, tool: str) -> str:
    c = a.classes
    if any(fnmatch.fnmatchcase(tool, p) for p in c.outbound):
        return "configured as outbound ([insights.tools] outbound)"
    if "openWorld" in c.hints.get(tool, ()):
        return "annotated openWorldHint: it reaches outside systems"
    return "its name says it sends data out"


def secrets_and_injection(a: Analysis) -> None:
    """Credentials and prompt-injection phrases the privacy stage counted in arguments."""
    rows = a.run(
        """
        SELECT k AS kind, tool, sum(v) AS n, count(DISTINCT session) AS sessions,
               list(DISTINCT session ORDER BY session)[1:?] AS ex
        FROM (SELECT tool, session, unnest(map_keys(m)) AS k, unnest(map_values(m)) AS v
              FROM (SELECT tool, session, json_transform(redactions, '"MAP(VARCHAR, BIGINT)"') AS m
                    FROM rare WHERE redactions IS NOT NULL))
        WHERE k LIKE 'INJECTION:%' OR k IN (SELECT unnest(?))
        GROUP BY 1, 2 ORDER BY n DESC, kind, tool""",
        [a.th.examples, sorted(SECRET_KINDS)],
    )
    secrets: dict[str, dict[str, Any]] = {}
    inject: dict[str, dict[str, Any]] = {}
    for r in rows:
        target = inject if r["kind"].startswith("INJECTION:") else secrets
        d = target.setdefault(r["tool"], {"kinds": Counter(), "sessions": 0, "ex": []})
        d["kinds"][r["kind"]] += int(r["n"])
        d["sessions"] = max(d["sessions"], int(r["sessions"]))
        d["ex"] = list(dict.fromkeys([*d["ex"], *r["ex"]]))[: a.th.examples]
    for tool, d in secrets.items():
        a.add(
            "secrets_in_arguments",
            WARNING,
            tool,
            f"secrets passed in {tool}'s arguments: " + ", ".join(f"{k} x{n}" for k, n in d["kinds"].most_common()),
            "they were redacted before storage, but the agent saw them: find where it got them and keep "
            "credentials out of prompts and tool inputs",
            kinds=dict(d["kinds"]),
            sessions=d["sessions"],
            example_sessions=d["ex"],
        )
    for tool, d in inject.items():
        a.add(
            "prompt_injection",
            CRITICAL,
            tool,
            f"prompt-injection phrases in {tool}'s arguments: "
            + ", ".join(f"{k.removeprefix('INJECTION:')} x{n}" for k, n in d["kinds"].most_common()),
            "an agent is passing on injected instructions: review the sessions and the content they read",
            kinds=dict(d["kinds"]),
            sessions=d["sessions"],
            example_sessions=d["ex"],
        )


def drift(a: Analysis) -> None:
    """Tool definitions that change. A server may show different tools to different clients (some
    only to clients that support sampling or elicitation), so the tool *set* is compared only
    within one client's view (client name + declared capabilities); a tool whose *definition*
    differs is a change between any two views."""

    rows = a.run(
        f"""
        WITH lists AS (
            SELECT server_name AS server, time, {_SESSION} AS session, instance_id,
                   coalesce(client_name, '?') AS client, client_capabilities AS caps,
                   response_tool_hashes::VARCHAR AS h
            FROM marks WHERE method = 'tools/list' AND response_tool_hashes IS NOT NULL {a.events_where}),
        init AS (SELECT {_SESSION} AS session, any_value(client_capabilities) AS caps FROM marks
                 WHERE method = 'initialize' AND client_capabilities IS NOT NULL {a.events_where} GROUP BY 1)
        SELECT l.server, l.client, coalesce(l.caps, init.caps) AS caps, h, min(time) AS first,
               max(time) AS last, list(DISTINCT l.session) AS sessions, list(DISTINCT instance_id) AS instances
        FROM lists l LEFT JOIN init ON init.session IS NOT DISTINCT FROM l.session
        GROUP BY 1, 2, 3, 4 ORDER BY 1, first""",
        a.events_params * 2,
    )
    views: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    per_server: dict[Any, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        r["hashes"] = json.loads(r["h"])
        caps = tuple(r["caps"]) if r["caps"] is not None else None
        views[(r["server"], r["client"], caps)].append(r)
        merged = per_server[r["server"]].setdefault(r["h"], dict(r, sessions=[], instances=[]))
        merged["first"], merged["last"] = min(merged["first"], r["first"]), max(merged["last"], r["last"])
        merged["sessions"] = sorted({*merged["sessions"], *r["sessions"]}, key=str)
        merged["instances"] = sorted({*merged["instances"], *r["instances"]}, key=str)
    for server, by_hash in per_server.items():  # definitions: across every view of the server
        versions = sorted(by_hash.values(), key=lambda v: v["first"])
        seen: dict[str, tuple[str, dict[str, Any]]] = {}
        for v in versions:
            for tool, h in v["hashes"].items():
                if tool in seen and seen[tool][0] != h:
                    _drift_finding(a, server, seen[tool][1], v, changed=[tool], added=[], removed=[],
                                        view=None)
                seen[tool] = (h, v)
    for (server, client, caps), versions in views.items():  # the tool set: within one view
        for old, new in zip(versions, versions[1:], strict=False):
            before, after = old["hashes"], new["hashes"]
            added, removed = sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys())
            if added or removed:
                _drift_finding(a, server, old, new, changed=[], added=added, removed=removed,
                                    view={"client": client, "capabilities": list(caps) if caps else caps})
    # one finding per server and moment: a changed definition and a changed set seen together
    merged_findings: dict[str, Finding] = {}
    rest = []
    for f in a.findings:
        if f.detector != "tool_drift":
            rest.append(f)
            continue
        if f.subject in merged_findings:
            m = merged_findings[f.subject]
            for k in ("changed", "added", "removed"):
                m.evidence[k] = sorted({*m.evidence[k], *f.evidence[k]})
            if RANK[f.severity] > RANK[m.severity]:
                m.severity, m.title = f.severity, f.title
            continue
        merged_findings[f.subject] = f
    a.findings = rest + list(merged_findings.values())


def _drift_finding(a: Analysis, server: Any, old: dict[str, Any], new: dict[str, Any], *, changed: list[str],
                   added: list[str], removed: list[str], view: dict[str, Any] | None) -> None:
    live = sorted(set(old["sessions"]) & set(new["sessions"]), key=str)
    same_instance = bool(set(old["instances"]) & set(new["instances"]))
    sev = CRITICAL if live or same_instance else WARNING
    what = "; ".join(
        x
        for x in (
            f"changed {', '.join(changed)}" if changed else "",
            f"added {', '.join(added)}" if added else "",
            f"removed {', '.join(removed)}" if removed else "",
        )
        if x
    )
    a.add(
        "tool_drift",
        sev,
        f"{server}@{_t(new['first'])}",
        f"tool definitions of {server} changed"
        + (" under connected clients" if live else " in a running server" if same_instance
           else " between server versions")
        + f": {what}",
        "a tool whose description changes after approval can carry injected instructions "
        "(rug pull): diff the definitions and re-approve",
        server=server,
        changed=changed,
        added=added,
        removed=removed,
        client_view=view,
        first_seen_new=_t(new["first"]),
        last_seen_old=_t(old["last"]),
        sessions_that_saw_both=live[: a.th.examples],
        same_instance=same_instance,
    )


#: the area's detectors, in the order of their findings: each rule on its own, so a run spreads them
#: over its sources (store/source.py ``each``)
DETECTORS = (exfiltration, secrets_and_injection, drift, auth_failures)
