"""The wide corpus against the redactor and the stage directly (fast, every placement), the benign
corpus's over-redaction, key spellings, and the stage's own side doors (argument names, URI echoes)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from mcplens.privacy import patterns as P
from mcplens.privacy.ids import Pseudonymizer
from mcplens.privacy.policy import Policy
from mcplens.privacy.redact import Redactor
from mcplens.privacy.stage import PrivacyStage
from tests.privacy.corpus import BENIGN_WIDE, SHAPED, WIDE, Leak, benign_by_kind, kv_line, prose

R = Redactor()


def fragments(secret: str) -> set[str]:
    return {secret} if len(secret) < 8 else {secret[i : i + 8] for i in range(len(secret) - 7)}


def placements(item: Leak, i: int) -> dict[str, str]:
    key = item.key or "note"
    out = {
        "argument": json.dumps(R.value({"payload": {key: item.value}})[0]),
        "key: value blob": json.dumps(R.value({"config": "mode: fast\n" + kv_line(item, 0) + "\nretries: 3"})[0]),
        "key=value in an error": R.text("lookup failed: " + kv_line(item, 1) + " (code 7)")[0],
        '"key": "value" in text': R.text("payload was {" + kv_line(item, 2) + "}")[0],
        "repr of a dict": R.text(f"lookup failed for {{'{key}': {item.value!r}}}")[0],
        "validation echo": R.text(
            f"1 validation error for typed\ncount\n  Input should be a valid integer [type=int_type, "
            f"input_value={{'{key}': {item.value!r}}}, input_type=dict]"
        )[0],
    }
    if item.key is None:
        out["prose"] = R.text(prose(item, i))[0]
        out["list"] = R.text("agent " + " ".join(x.value for x in SHAPED[max(0, i - 3) : i + 3]))[0]
    return out


def test_every_item_is_removed_from_every_placement() -> None:
    leaks = []
    total = 0
    for i, item in enumerate(WIDE):
        for where, out in placements(item, i).items():
            total += 1
            if any(f in out for f in fragments(item.must_vanish)):
                leaks.append((item.label, where, out[:120]))
    print(f"\nwide corpus: {len(WIDE)} items, {len({i.label for i in WIDE})} kinds, {total} placements, "
          f"{len(leaks)} leaks")
    assert not leaks, leaks[:10]


def test_benign_over_redaction_is_at_most_two_percent() -> None:
    groups = benign_by_kind(BENIGN_WIDE)
    assert len(BENIGN_WIDE) >= 150 and len(groups) >= 12, {k: len(v) for k, v in groups.items()}
    altered = [v for v in BENIGN_WIDE if R.value(v)[0] != v]
    rate = len(altered) / len(BENIGN_WIDE)
    print(f"\nover-redaction: {len(altered)}/{len(BENIGN_WIDE)} = {rate:.2%} over {len(groups)} kinds: {altered}")
    assert rate <= 0.02, altered


@pytest.mark.parametrize(
    ("key", "kind"),
    [("fullName", "NAME"), ("customer_name", "NAME"), ("CONTACT_NAME", "NAME"), ("patient.name", "NAME"),
     ("recipientName", "NAME"), ("recipient", "PERSON"), ("cardholder", "PERSON"), ("beneficiary", "PERSON"),
     ("username", "NAME"), ("login", "USER_ID"), ("user-login", "USERNAME"), ("handle", "USERNAME"),
     ("screen_name", "USERNAME"), ("github_user", "USERNAME"), ("deviceID", "DEVICE_ID"),
     ("device-uuid", "DEVICE_ID"), ("hardware_id", "DEVICE_ID"), ("MACHINE_GUID", "DEVICE_ID"),
     ("serialNumber", "DEVICE_ID"), ("serial_no", "DEVICE_ID"), ("hwid", "DEVICE_ID"), ("buyer-ref", "USER_ID"),
     ("employee_no", "USER_ID"), ("HOME_ADDR", "ADDRESS"), ("street", "ADDRESS"), ("residence", "ADDRESS"),
     ("deliveryAddress", "ADDRESS"), ("driver_license", "NATIONAL_ID"), ("SSN", "NATIONAL_ID"),
     ("geo.lng", "LOCATION"),
     # metadata and things, not people
     ("file_handle", None), ("file_name", None), ("tool_name", None), ("user_agent", None), ("client_id", None),
     ("parent_id", None), ("delivery_date", None), ("login_attempts", None), ("device_type", None),
     ("customer_count", None), ("name", None), ("region", None)],
)  # fmt: skip
def test_key_spellings(key: str, kind: str | None) -> None:
    assert P.key_kind(key) == kind


def test_a_generic_name_key_is_decided_by_its_value() -> None:
    out, c = R.value({"name": "Ada Lovelace", "items": [{"name": "my-repo"}, {"name": "Widget"}]})
    assert out == {"name": "[REDACTED:NAME]", "items": [{"name": "my-repo"}, {"name": "Widget"}]}
    assert c["REDACTED:NAME"] == 1
    assert R.text("name: Grace Hopper\nname: build-artifacts")[0] == "name: [REDACTED:NAME]\nname: build-artifacts"


def test_a_person_role_holding_an_object_is_walked() -> None:
    out, _ = R.value({"recipient": {"email": "a@b.example", "locale": "fr"}, "sender": "Alan Turing"})
    assert out == {"recipient": {"email": "[REDACTED:EMAIL]", "locale": "fr"}, "sender": "[REDACTED:PERSON]"}


def test_an_address_in_text_runs_to_the_end_of_its_line() -> None:
    text = "street: 12 Maple Avenue, Springfield 12345\nretries: 3"
    assert R.text(text)[0] == "street: [REDACTED:ADDRESS]\nretries: 3"
    assert R.text("address=221B Baker Street, London NW1 6XE; code=7")[0] == "address=[REDACTED:ADDRESS]; code=7"


def test_checksums_decide_ambiguous_shapes() -> None:
    assert R.text("DNI 12345678Z")[0] == "DNI [NATIONAL_ID]"  # 12345678 % 23 -> Z
    assert R.text("ref 12345678A")[0] == "ref 12345678A"  # wrong check letter: not a DNI
    assert R.text("SIN 193 456 787")[0] == "SIN [NATIONAL_ID]"  # Luhn-valid
    assert R.text("ticket 193 456 788")[0] == "ticket [PHONE]"  # not Luhn-valid; nine spaced digits still go
    assert R.text("order 482139921 shipped")[0] == "order 482139921 shipped"  # bare 9 digits, no context
    assert R.text("SSN: 482139921")[0] == "SSN: [REDACTED:NATIONAL_ID]"  # the key rule
    assert R.text("her SSN is 482139921.")[0] == "her SSN is [NATIONAL_ID]."  # the words before it
    assert R.text("build 2024.1115.0930")[0] == "build 2024.1115.0930"  # not a dotted MAC


def stage() -> PrivacyStage:
    return PrivacyStage(Policy(), lambda: Pseudonymizer(b"k" * 32))


def test_resource_uri_echoed_in_the_error_is_masked_like_the_uri() -> None:
    uri = "db://prod-customers/acme/ada.lovelace%40example.org/records"
    e = {
        "mcp.method.name": "resources/read", "mcp.resource.uri": uri, "mcplens.target": uri,
        "mcplens.error.message": f"Unknown resource: {uri} (also tried db://prod-customers/acme/other-file/x)",
    }
    out = stage()(e)
    assert out is not None
    assert out["mcp.resource.uri"] == "db://*/*/*/*"
    assert out["mcplens.error.message"] == "Unknown resource: db://*/*/*/* (also tried db://*/*/*/*)"
    assert "lovelace" not in json.dumps(out) and "prod-customers" not in json.dumps(out)


def test_argument_names_are_redacted_in_the_shape() -> None:
    e = {"mcp.method.name": "tools/call", "mcplens.request.arguments": {"ada@example.org": 1, "q": "x"},
         "mcplens.request.args": {"ada@example.org": 1, "q": 3}}
    out = stage()(e)
    assert out is not None
    assert "ada@example.org" not in json.dumps(out)
    assert set(out["mcplens.request.args"]) == {"[EMAIL]", "q"}


def test_no_key_no_ids(tmp_path: Path) -> None:
    e = {"mcp.method.name": "ping", "mcp.session.id": "raw-session-123", "client.address": "203.0.113.9"}
    out = PrivacyStage(Policy(), lambda: Pseudonymizer(None))(dict(e))
    assert out is not None and "mcp.session.id" not in out and "client.address" not in out
    assert Pseudonymizer(b"short")("s", "x") is None  # a weak key is no key
    assert Counter(Pseudonymizer(b"k" * 32)("s", "x")[:2]) == Counter("s_")


def test_features_byte_tables_answer_as_the_regexes_do() -> None:
    """features() answers _TRIGGER, _RUN16 and the six-digit gate of ASCII text with byte tables:
    on random ASCII text they agree with the regexes they stand for."""
    import random

    from mcplens.privacy import patterns as P

    rng = random.Random(5)
    alphabet = "aZ09 .-_/+@:=\\\t\n()'\"#%"
    for _ in range(20000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 50)))
        b = s.encode("ascii")
        assert bool(b.translate(None, P._NOT_TRIGGER)) == (P._TRIGGER.search(s) is not None), s
        assert (P._RUN16_BYTES in b.translate(P._RUN_MAP)) == (P._RUN16.search(s) is not None), s
        if len(b.translate(None, P._NOT_DIGIT)) < 6:
            assert P._NUM6.search(s) is None, s
