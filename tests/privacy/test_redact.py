"""The redaction engine against a synthetic corpus of secrets and personal data, and a benign one."""

from __future__ import annotations

import inspect
import json
import sys
import traceback
from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest

from mcplens.privacy import patterns as P
from mcplens.privacy.redact import RedactionRules, Redactor
from tests.privacy.corpus import ARGS, BENIGN, CLIENT_INFO, ERROR, HEADER, JSON_STRING, SECRETS, URI, Item

R = Redactor()
PATTERN_KINDS = {i.kind for i in SECRETS if i.key is None}
KEYED_KINDS = {i.kind for i in SECRETS if i.key is not None}


def strings(obj: Any) -> list[str]:
    """Every key and scalar in an output object, as text."""
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(str(k))
            out.extend(strings(v))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(strings(v))
    else:
        out.append(str(obj))
    return out


def leaks(secret: str, outputs: list[str]) -> list[str]:
    """The 8-character windows of ``secret`` found in the output (the whole value if shorter)."""
    text = "\x00".join(outputs)
    if len(secret) < 8:
        return [secret] if secret in text else []
    return sorted({secret[i : i + 8] for i in range(len(secret) - 7) if secret[i : i + 8] in text})


def place(item: Item, where: str) -> tuple[list[str], Counter[str]]:
    v = item.value
    key = item.key
    if where == ARGS:
        leaf = {"id": 1, key: v} if key else {"id": 1, "note": f"see {v} for details"}
        out, c = R.value({"request": {"batch": [leaf], "meta": {"source": "import", "dry_run": False}}})
        return strings(out), c
    if where == JSON_STRING:
        inner = {key: v} if key else {"text": f"value {v}"}
        out, c = R.value({"payload": json.dumps({"records": [inner]})})
        return strings(out), c
    if where == ERROR:
        msg = f"ValueError: bad {key}='{v}'" if key else f"RuntimeError: upstream rejected {v} (code 17)"
        out_s, c = R.text(msg)
        return [out_s], c
    if where == URI:
        if item.kind == "URL_CREDENTIALS":
            uri = str(v)
        elif key:
            uri = f"https://svc.internal/v1/lookup?{key}={quote(str(v), safe='')}"
        else:
            uri = f"https://svc.internal/v1/lookup?q={quote(str(v), safe='')}&page=2"
        out_s, c = R.uri(uri)
        return [out_s], c
    if where == HEADER:
        if key:
            name = key if key.lower().startswith("x-") else f"X-{key}"
            h = {"Accept": "application/json", name: str(v)}
        elif item.header in ("Cookie", "Set-Cookie"):
            h = {item.header: str(v).split(": ", 1)[1]}
        elif item.header:
            h = {item.header: str(v)}
        else:
            h = {"X-Debug-Context": f"ctx {v}", "Accept": "application/json"}
        out_h, c = R.headers(h)
        return strings(out_h), c
    if where == CLIENT_INFO:
        info = (
            {"name": "acme-agent", "version": "1.4.2", key: v}
            if key
            else {"name": f"acme-agent {v}", "version": "1.4.2"}
        )
        out, c = R.value(info)
        return strings(out), c
    raise AssertionError(where)


CASES = [(item, where) for item in SECRETS for where in item.places]


def test_corpus_size_and_kinds() -> None:
    kinds = {i.kind for i in SECRETS}
    assert len(SECRETS) >= 200, len(SECRETS)
    assert len(kinds) >= 20, kinds
    assert len(BENIGN) >= 200, len(BENIGN)
    # every requested placeholder kind is represented
    for kind in ["EMAIL", "PHONE", "IPV4", "IPV6", "CARD", "IBAN", "JWT", "AUTH_HEADER", "AWS_ACCESS_KEY",
                 "AWS_SECRET_KEY", "GITHUB_TOKEN", "GITLAB_TOKEN", "SLACK_TOKEN", "STRIPE_KEY", "OPENAI_KEY",
                 "ANTHROPIC_KEY", "GOOGLE_API_KEY", "PRIVATE_KEY", "URL_CREDENTIALS", "COOKIE", "REDACTED:NAME",
                 "REDACTED:ADDRESS", "REDACTED:USER_ID", "REDACTED:DEVICE_ID", "REDACTED:PASSWORD"]:  # fmt: skip
        assert kind in kinds, kind
    print(f"\nsecret corpus: {len(SECRETS)} items, {len(kinds)} kinds, {len(CASES)} placements; benign: {len(BENIGN)}")


def test_every_secret_is_removed_everywhere() -> None:
    """(a) no item, nor any 8-character window of it, survives any placement; the right kind counts."""
    failures = []
    for item, where in CASES:
        outputs, c = place(item, where)
        found = leaks(item.secret, outputs)
        if found:
            failures.append(f"LEAK {item.kind} in {where}: {found[:3]} -> {outputs}")
            continue
        if where == URI and item.key:
            ok = item.kind in c or any(k != "QUERY_VALUE" for k in c)
        else:
            ok = item.kind in c
        if not ok:
            failures.append(f"KIND {item.kind} in {where}: counted {dict(c)} for {item.value!r}")
    print(f"\nleak check: {len(CASES)} placements of {len(SECRETS)} items, {len(failures)} failures")
    assert not failures, "\n".join(failures[:40])


def test_placeholders_keep_no_fragment() -> None:
    for item in SECRETS[:60]:
        out, _ = R.text(f"x {item.value} y") if item.key is None else R.value({item.key: item.value})
        s = json.dumps(out)
        assert "*" not in s  # no masks like sk-****abcd
        for ph in ("[", "]"):
            assert ph in s


def test_benign_corpus_over_redaction_rate() -> None:
    """(b) values with no secret in them come out unchanged (over-redaction < 2 %)."""
    altered = []
    for v in BENIGN:
        if isinstance(v, str):
            out, c = R.text(v)
            out2, c2 = R.value({"q": v})
            if out != v or out2 != {"q": v}:
                altered.append((v, out, out2, c + c2))
        else:
            out, c = R.value(v)
            if out != v:
                altered.append((v, out, out, c))
    rate = len(altered) / len(BENIGN)
    print(f"\nover-redaction: {len(altered)}/{len(BENIGN)} = {rate:.2%}")
    for a in altered:
        print("  altered:", a)
    assert rate < 0.02


# ------------------------------------------------------------------ (c) features


def test_truncation_after_redaction() -> None:
    r = Redactor(RedactionRules(max_string=32))
    s = "a" * 10 + " alice@example.com " + "b " * 500
    out, c = r.text(s)
    assert out.startswith("a" * 10 + " [EMAIL] ")
    assert out.endswith(" chars]") and "…[+" in out
    assert len(out) < 60
    assert c["TRUNCATED"] == 1 and c["EMAIL"] == 1
    # the count is exact: kept + dropped = redacted length
    redacted_len = len(s) - len("alice@example.com") + len("[EMAIL]")
    assert out == s.replace("alice@example.com", "[EMAIL]")[:32] + f"…[+{redacted_len - 32} chars]"
    # default 256
    out, c = Redactor().text("word " * 100)
    assert out.startswith("word ") and out.endswith("…[+244 chars]") and c == Counter({"TRUNCATED": 1})


def test_secret_straddling_the_cut_is_not_half_kept() -> None:
    key = "ghp_" + "aB3" * 12
    r = Redactor(RedactionRules(max_string=20))
    out, c = r.text("x" * 10 + " " + key)
    assert "aB3aB3aB" not in out and c["GITHUB_TOKEN"] == 1


def test_huge_text_is_scanned_up_to_the_limit_and_cut() -> None:
    r = Redactor(RedactionRules(scan_limit=4096))
    s = "alice@example.com " + "lorem ipsum " * 2000
    out, c = r.text(s)
    assert out.startswith("[EMAIL] ") and c["TRUNCATED"] == 1 and "alice" not in out


def test_blobs() -> None:
    import base64
    import random

    rnd = random.Random(1)
    raw = bytes(rnd.randrange(256) for _ in range(3000))
    b64 = base64.b64encode(raw).decode()
    out, c = R.text(b64)
    assert out == "[BLOB 3000 bytes]" and c == Counter({"BLOB": 1})
    out, c = R.text(f"image: data:image/png;base64,{b64} end")
    assert out == "image: [BLOB 3000 bytes] end" and c["BLOB"] == 1
    out, c = R.text("payload " + raw.hex())
    assert out == "payload [BLOB 3000 bytes]"
    out, c = R.value({"file": raw, "n": 3})
    assert out == {"file": "[BLOB 3000 bytes]", "n": 3} and c["BLOB"] == 1
    # a huge base64 string beyond the scan limit is still measured, not truncated
    big = base64.b64encode(raw * 40).decode()
    out, c = R.text(big)
    assert out == f"[BLOB {len(raw) * 40} bytes]"
    # a sha256 digest or a slug is not a blob
    for keep in ["2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
                 "a-very-long-slug-for-an-article-about-monitoring-mcp-servers-in-production"]:  # fmt: skip
        assert R.text(keep)[0] == keep


def test_key_rules_across_separators_and_case() -> None:
    obj = {
        "apiKey": "abc",
        "api-key": "abc",
        "X-Api-Key": "abc",
        "API_KEY": "abc",
        "user_id": 12,
        "userId": "u1",
        "first_name": "Al",
        "email_address": "x",
        "phone": 5550134,
        "ip": "x",
        "device_id": "x",
        "Password": "",  # empty: nothing to hide
        "token": None,
        "mobile": True,
        "max_tokens": 100,
        "token_count": 7,
        "password_min_length": 12,
        "name": "my-repo",
        "user_agent": "curl/8",
        "nested": [{"auth": {"type": "oauth", "secret": "s"}}],
        "user": {"id": 7, "email": "a@b.co", "role": "admin"},
    }
    out, c = R.value(obj)
    assert out["apiKey"] == out["api-key"] == out["X-Api-Key"] == out["API_KEY"] == "[REDACTED:API_KEY]"
    assert out["user_id"] == out["userId"] == "[REDACTED:USER_ID]"
    assert out["first_name"] == "[REDACTED:NAME]"
    assert out["email_address"] == "[REDACTED:EMAIL]"
    assert out["phone"] == "[REDACTED:PHONE]"
    assert out["ip"] == "[REDACTED:IP]" and out["device_id"] == "[REDACTED:DEVICE_ID]"
    assert out["Password"] == "" and out["token"] is None and out["mobile"] is True
    assert out["max_tokens"] == 100 and out["token_count"] == 7 and out["password_min_length"] == 12
    assert out["name"] == "my-repo" and out["user_agent"] == "curl/8"
    assert out["nested"] == [{"auth": "[REDACTED:AUTHORIZATION]"}]
    assert out["user"] == {"id": 7, "email": "[REDACTED:EMAIL]", "role": "admin"}
    assert c["REDACTED:API_KEY"] == 4 and c["REDACTED:EMAIL"] == 2
    assert obj["apiKey"] == "abc"  # input untouched


@pytest.mark.parametrize(
    ("key", "kind"),
    [("X-Auth-Token", "AUTHORIZATION"), ("access_token", "TOKEN"), ("refreshToken", "TOKEN"),
     ("client_secret", "SECRET"),
     ("aws_secret_access_key", "SECRET"), ("privateKey", "PRIVATE_KEY"), ("Set-Cookie", "COOKIE"),
     ("mcp-session-id", "SESSION"), ("credentials", "CREDENTIAL"), ("lastName", "NAME"), ("surname", "NAME"),
     ("streetAddress", "ADDRESS"), ("zip", "ADDRESS"), ("customer_id", "USER_ID"), ("remote_addr", "IP"),
     ("x-forwarded-for", "IP"), ("mac_address", "DEVICE_ID"), ("imei", "DEVICE_ID"), ("cardNumber", "CARD"),
     ("cvv", "CARD"), ("iban", "BANK_ACCOUNT"), ("date_of_birth", "BIRTHDATE"), ("ssn", "NATIONAL_ID"),
     ("tokenizer", None), ("max_tokens", None), ("token_type", None), ("file_name", None), ("name", None),
     ("key", None), ("city", None), ("password_required", None), ("session_count", None), ("query", None)],
)  # fmt: skip
def test_key_kinds(key: str, kind: str | None) -> None:
    assert P.key_kind(key) == kind


def test_numbers() -> None:
    out, c = R.value({"amount": 4111111111111111, "ts": 1732400000123, "n": 42, "pi": 3.14, "uid": 7})
    assert out == {"amount": "[CARD]", "ts": 1732400000123, "n": 42, "pi": 3.14, "uid": "[REDACTED:USER_ID]"}
    assert c == Counter({"CARD": 1, "REDACTED:USER_ID": 1})


def test_allow_and_deny_keys() -> None:
    r = Redactor(RedactionRules(allow_keys=["session_id", "traceNote", "MCP_SESSION_ID"], deny_keys=["internal-note"],
                                extra_sensitive_keys=["ticketBody"]))  # fmt: skip
    out, c = r.value({
        "sessionId": "s-123",  # allowed across separators: kept verbatim
        "trace_note": "mail bob@example.com",  # allowed: even patterns are skipped
        "INTERNAL_NOTE": "fine text",
        "ticket_body": "anything",
        "password": "pw",
    })  # fmt: skip
    assert out["sessionId"] == "s-123" and out["trace_note"] == "mail bob@example.com"
    assert out["INTERNAL_NOTE"] == "[REDACTED:INTERNAL_NOTE]"
    assert out["ticket_body"] == "[REDACTED:TICKETBODY]"
    assert out["password"] == "[REDACTED:PASSWORD]"
    assert c == Counter({"REDACTED:INTERNAL_NOTE": 1, "REDACTED:TICKETBODY": 1, "REDACTED:PASSWORD": 1})
    # headers honour the same lists
    h, _ = r.headers({"Mcp-Session-Id": "abc", "Authorization": "Bearer x"})
    assert h == {"Mcp-Session-Id": "abc", "Authorization": "[AUTH_HEADER]"}


def test_custom_patterns() -> None:
    r = Redactor(RedactionRules(custom_patterns={"employee id": r"\bEMP-\d{6}\b", "ACME_KEY": r"acme_[a-z0-9]{12}"}))
    out, c = r.text("EMP-004211 used acme_0123456789ab with alice@example.com")
    assert out == "[EMPLOYEE_ID] used [ACME_KEY] with [EMAIL]"
    assert c == Counter({"EMPLOYEE_ID": 1, "ACME_KEY": 1, "EMAIL": 1})
    out, c = r.value({"q": ["EMP-123456"]})
    assert out == {"q": ["[EMPLOYEE_ID]"]}


def test_callback() -> None:
    seen: list[tuple[tuple[str, ...], Any]] = []

    def cb(path: tuple[str, ...], value: Any) -> Any:
        seen.append((path, value))
        if path[-1:] == ("sku",):
            return "[SKU]"
        if path[-1:] == ("leak",):
            return "still alice@example.com"  # a callback cannot bring a secret back
        if path[-1:] == ("boom",):
            raise RuntimeError("bad callback")
        return None

    r = Redactor(RedactionRules(callback=cb))
    out, c = r.value({"items": [{"sku": "AB-1", "qty": 2}], "leak": "x", "boom": "y", "password": "p"})
    assert out == {
        "items": [{"sku": "[SKU]", "qty": 2}],
        "leak": "still [EMAIL]",
        "boom": "[REDACTED:CALLBACK_ERROR]",
        "password": "[REDACTED:PASSWORD]",
    }
    assert (("items", "0", "sku"), "AB-1") in seen and (("items", "0", "qty"), 2) in seen
    assert all(p[-1] != "password" for p, _ in seen)  # key rules come first
    assert c["CALLBACK"] == 2 and c["EMAIL"] == 1 and c["CALLBACK_ERROR"] == 1


def test_json_inside_strings() -> None:
    payload = json.dumps({"user": {"email": "a@b.co"}, "note": "call +1 415 555 0134", "n": 1})
    out, c = R.value({"body": payload})
    inner = json.loads(out["body"])
    assert inner == {"user": {"email": "[REDACTED:EMAIL]"}, "note": "call [PHONE]", "n": 1}
    assert c == Counter({"REDACTED:EMAIL": 1, "PHONE": 1})
    clean = '{"a": 1,   "b": [1, 2]}'
    assert R.value({"body": clean})[0] == {"body": clean}  # untouched, formatting kept


def test_dict_keys_are_scanned() -> None:
    out, c = R.value({"scores": {"alice@example.com": 3}})
    assert out == {"scores": {"[EMAIL]": 3}} and c["EMAIL"] == 1


def test_headers() -> None:
    h = {
        "Authorization": "Bearer abc.def.ghi",
        "Proxy-Authorization": "Basic dXNlcjpwYXNz",
        "Cookie": "a=1; b=2",
        "Set-Cookie": "sid=xyz; HttpOnly",
        "X-Api-Key": "k-123",
        "X-Auth-Token": "t",
        "Mcp-Session-Id": "6f1c",
        "X-Forwarded-For": "203.0.113.7, 10.0.0.1",
        "X-Real-IP": "203.0.113.7",
        "User-Agent": "agent/1.0 (contact ops@example.com)",
        "Content-Type": "application/json",
        "Mcp-Protocol-Version": "2025-11-25",
        "Accept": "",
    }
    out, c = R.headers(h)
    assert out == {
        "Authorization": "[AUTH_HEADER]",
        "Proxy-Authorization": "[AUTH_HEADER]",
        "Cookie": "[COOKIE]",
        "Set-Cookie": "[COOKIE]",
        "X-Api-Key": "[REDACTED:API_KEY]",
        "X-Auth-Token": "[REDACTED:AUTHORIZATION]",
        "Mcp-Session-Id": "[REDACTED:SESSION]",
        "X-Forwarded-For": "[REDACTED:IP]",
        "X-Real-IP": "[REDACTED:IP]",
        "User-Agent": "agent/1.0 (contact [EMAIL])",
        "Content-Type": "application/json",
        "Mcp-Protocol-Version": "2025-11-25",
        "Accept": "",
    }
    assert c["AUTH_HEADER"] == 2 and c["COOKIE"] == 2 and c["EMAIL"] == 1
    # a list of pairs works too
    assert R.headers([("cookie", "x=1")])[0] == {"cookie": "[COOKIE]"}


def _fail() -> None:
    raise ValueError("boom for alice@example.com")


def test_traceback_frames() -> None:
    try:
        _fail()
    except ValueError as exc:
        frames = Redactor.traceback_frames(exc)
        stack = traceback.extract_tb(exc.__traceback__)
    raise_line = inspect.getsourcelines(_fail)[1] + 1  # the line after ``def _fail``
    assert frames == [f"tests.privacy.test_redact:{stack[0].lineno}", f"tests.privacy.test_redact:{raise_line}"]
    assert len(frames) == 2 and all("/" not in f and "\\" not in f for f in frames)
    assert Redactor.traceback_frames(stack) == frames
    # library frames lose their site-packages prefix; unknown paths keep only the file name
    fs = [traceback.FrameSummary("/home/alice/.venv/lib/python3.11/site-packages/mcp/server/lowlevel.py", 10, "f"),
          traceback.FrameSummary("/srv/app/secret-project/handler.py", 20, "g"),
          traceback.FrameSummary("C:\\Users\\bob\\proj\\tool.py", 30, "h"),
          traceback.FrameSummary("<frozen importlib._bootstrap>", 40, "i")]  # fmt: skip
    assert Redactor.traceback_frames(fs) == [
        "mcp.server.lowlevel:10", "handler:20", "tool:30", "<frozen importlib._bootstrap>:40"
    ]  # fmt: skip
    assert Redactor.traceback_frames(None) == []
    assert all(not f.startswith(sys.prefix) for f in frames)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///home/alice/notes.txt", "file:///home/[USER]/notes.txt"),
        ("file:///Users/bob/Documents/report.pdf", "file:///Users/[USER]/Documents/report.pdf"),
        ("file:///C:/Users/carol/Desktop/todo.md", "file:///C:/Users/[USER]/Desktop/todo.md"),
        ("https://api.example.com/v1/orders/12345", "https://api.example.com/v1/orders/[ID]"),
        ("res://item/42", "res://item/[ID]"),
        ("db://customers/8f14e45f-ceea-467f-a9b0-9e5f3d1c2a7b/profile", "db://customers/[ID]/profile"),
        ("s3://bucket/exports/3f9e2b1c8d7a6b5c/data.csv", "s3://bucket/exports/[ID]/data.csv"),
        ("https://x.example.com/a/invoice-2024-0012.pdf", "https://x.example.com/a/[ID].pdf"),
        ("mailto:alice@example.com", "mailto:[EMAIL]"),
        ("https://bob:hunter2@git.example.com/org/repo.git", "https://[URL_CREDENTIALS]@git.example.com/org/repo.git"),
        ("postgres://u:p@10.1.2.3:5432/app", "postgres://[URL_CREDENTIALS]@[IPV4]:5432/app"),
        ("http://[2001:db8::1]:8080/x", "http://[IPV6]:8080/x"),
        ("http://localhost:8080/mcp", "http://localhost:8080/mcp"),
        ("https://s.example.com/search?q=alice&page=2", "https://s.example.com/search?q=[VALUE]&page=[VALUE]"),
        (
            "https://s.example.com/cb#access_token=abc&state=1",
            "https://s.example.com/cb#access_token=[VALUE]&state=[VALUE]",
        ),
        ("https://s.example.com/docs#install", "https://s.example.com/docs#install"),
        ("notes://~dave/journal", "notes://[USER]/journal"),
        ("file:///srv/My%20Private%20Diary/entry.txt", "file:///srv/[SEGMENT]/entry.txt"),
        ("ui://widgets/ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "ui://widgets/[GITHUB_TOKEN]"),
        ("repo://docs/getting-started/README.md", "repo://docs/getting-started/README.md"),
        ("user://alice/profile", "user://[USER]/profile"),
        ("user://DE89370400440532013000/profile", "user://[IBAN]/profile"),
        ("notes://note/alice-42", "notes://note/[ID]"),
        ("https://api.example.com/v1/s3/ec2/items", "https://api.example.com/v1/s3/ec2/items"),
        ("notes://8f14e45fceea467f/profile", "notes://[ID]/profile"),
    ],
)
def test_uri(uri: str, expected: str) -> None:
    out, c = R.uri(uri)
    assert out == expected
    assert sum(c.values()) >= (0 if out == uri else 1)


def test_uri_counts() -> None:
    out, c = R.uri("https://api.example.com/users/alice/orders/991?email=a%40b.co&token=xyz&page=2")
    assert out == "https://api.example.com/users/[USER]/orders/[ID]?email=[VALUE]&token=[VALUE]&page=[VALUE]"
    assert c == Counter({"USER": 1, "ID": 1, "EMAIL": 1, "REDACTED:TOKEN": 1, "QUERY_VALUE": 1})


def test_text_in_errors() -> None:
    msg = (
        "ConnectionError: could not connect to postgres://app:S3cretPw@db.internal:5432/app from 10.0.4.2 "
        "as alice@example.com (api_key=abcd1234efgh, Authorization: Bearer eyJhbGciOi.eyJzdWIiOi.sig)\n"
        'File "/home/alice/project/app.py", line 3'
    )
    out, c = R.text(msg)
    for bad in ["S3cretPw", "10.0.4.2", "alice@", "abcd1234", "eyJhbGciOi", "/home/alice"]:
        assert bad not in out
    assert out.startswith("ConnectionError: could not connect to postgres://[URL_CREDENTIALS]@db.internal:5432/app")
    assert {"URL_CREDENTIALS", "IPV4", "EMAIL", "REDACTED:API_KEY", "USER"} <= set(c)


def test_clean_text_is_cheap_and_identical() -> None:
    for s in ["", "ok", "Find all open issues", "x" * 300]:
        out, c = Redactor(RedactionRules(max_string=1000)).text(s)
        assert out == s and not c


def test_never_raises_and_stays_fast_on_hostile_input() -> None:
    import time

    hostile = [
        "+" + "1234567890" * 4 + "x",
        "0" + " 12" * 40 + "a",
        "1:2:3:4:5:6:7:8:" * 500,
        "a@" * 5000,
        "password=x " * 1000,
        "[" * 5000 + "]" * 5000,
        "-----BEGIN RSA PRIVATE KEY-----" + "A" * 20000,
    ]
    for s in hostile:
        t0 = time.perf_counter()
        out, _ = R.text(s)
        out2, _ = R.value({"x": s, "y": [s]})
        R.uri("https://h.example.com/" + s[:2000])
        assert time.perf_counter() - t0 < 1.0, s[:30]
        assert len(out) < 400
    out, c = R.text("-----BEGIN RSA PRIVATE KEY-----\nMIIabc" + "A" * 20000)
    assert out == "[PRIVATE_KEY]" and c["PRIVATE_KEY"] == 1  # cut-off block: redacted to the end
    assert R.value(10**5000)[0] == 10**5000  # huge ints are not stringified
    assert R.value({"n": -4111111111111111})[0] == {"n": "[CARD]"}
    # a value that is not JSON (a caller's own object) is kept only as its redacted text form
    out, c = R.value({"a": _Owner()})
    assert out == {"a": "_Owner(mail [EMAIL])"} and c["EMAIL"] == 1


class _Owner:
    def __repr__(self) -> str:
        return "_Owner(mail alice@example.com)"
