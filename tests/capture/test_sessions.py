"""Sessions derived where the transport has none (2026-07-28 era): conversation ids, then idle gaps."""

from __future__ import annotations

from mcplens import event as ev
from mcplens.capture import sessions
from mcplens.capture.common import Exchange, build_event


def event(t: float, *, session: str | None = None, meta: dict | None = None, address: str = "10.0.0.7",
          name: str = "agent", instance: str = "inst-1") -> dict:
    params = {"name": "lookup", "arguments": {}, "_meta": {"io.modelcontextprotocol/clientInfo":
                                                             {"name": name, "version": "2"}, **(meta or {})}}
    x = Exchange("tools/call", params, 1, t, 0.01, result={"content": []}, session_raw=session,
                 client_address=address, transport="tcp")
    return build_event(x, {ev.INSTANCE_ID: instance})


def test_a_transport_session_is_kept_and_says_so() -> None:
    e = event(1000.0, session="abc")
    assert e[ev.SESSION_ID] == "abc" and e[ev.SESSION_SOURCE] == "transport"
    assert event(1000.0, session="pipe:x")[ev.SESSION_SOURCE] == "pipe"


def test_idle_gap_splits_one_clients_calls_into_sessions() -> None:
    t0 = 5_000_000.0
    a = [event(t0 + i * 60, instance="gap-test") for i in range(5)]  # one conversation, a call a minute
    later = event(t0 + 4 * 60 + sessions.IDLE_GAP + 1, instance="gap-test")  # after an idle gap
    other = event(t0 + 120, address="10.0.0.8", instance="gap-test")  # another client machine
    assert {e[ev.SESSION_SOURCE] for e in [*a, later, other]} == {"idle_gap"}
    assert len({e[ev.SESSION_ID] for e in a}) == 1
    assert later[ev.SESSION_ID] != a[0][ev.SESSION_ID]
    assert other[ev.SESSION_ID] not in (a[0][ev.SESSION_ID], later[ev.SESSION_ID])


def test_a_conversation_id_in_meta_or_baggage_wins() -> None:
    one = event(10.0, meta={"com.example/conversationId": "c-42"})
    two = event(99999.0, meta={"com.example/conversationId": "c-42"}, address="10.9.9.9")
    assert one[ev.SESSION_SOURCE] == "meta" and one[ev.SESSION_ID] == two[ev.SESSION_ID]
    bag = event(10.0, meta={"baggage": "user.tier=gold,session.id=s-9;prop=1"})
    assert bag[ev.SESSION_SOURCE] == "meta" and "s-9" in bag[ev.SESSION_ID]


def test_the_stitcher_stays_bounded() -> None:
    s = sessions.Stitcher(max_clients=3)
    for i in range(10):
        s.session(("i", str(i), ""), float(i))
    assert len(s._last) == 3
