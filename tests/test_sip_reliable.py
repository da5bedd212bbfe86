"""RFC 3262 UAS side on a fake clock: reliable provisionals, their retransmission until PRACK, the
64*T1 give-up, one at a time, and a 2xx held back while a provisional with SDP is unacknowledged.
Also the Replaces header parser (RFC 3891) the transfer code relies on."""

from __future__ import annotations

import pytest

from softswitch.sip.dialog import Replaces, parse_replaces
from softswitch.sip.message import Request, make_response, parse_message
from softswitch.sip.reliable import PrackTimeout, ReliableProvisionals, SendResponse, option_tags

T1 = 0.5


def invite(*extra: str) -> Request:
    lines = [
        "INVITE sip:bob@example.com SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1",
        "Max-Forwards: 70",
        "From: <sip:alice@example.com>;tag=a1",
        "To: <sip:bob@example.com>",
        "Call-ID: rel-1",
        "CSeq: 7 INVITE",
        "Contact: <sip:alice@192.0.2.1>",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


def prack(rack: str, cseq: int = 8) -> Request:
    lines = [
        "PRACK sip:switch@192.0.2.9 SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKpr{cseq}",
        "Max-Forwards: 70",
        "From: <sip:alice@example.com>;tag=a1",
        "To: <sip:bob@example.com>;tag=s1",
        "Call-ID: rel-1",
        f"CSeq: {cseq} PRACK",
        f"RAck: {rack}",
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


def sender(first_rseq: int = 100) -> tuple[Request, ReliableProvisionals]:
    inv = invite("Require: 100rel")
    return inv, ReliableProvisionals(inv, t1=T1, first_rseq=first_rseq)


def ringing(inv: Request, status: int = 180, sdp: bool = False):
    resp = make_response(inv, status, to_tag="s1")
    if sdp:
        resp.headers.add("Content-Type", "application/sdp")
        resp.body = b"v=0\r\n"
    return resp


def sent(outputs) -> list[int]:
    return [o.response.status for o in outputs if isinstance(o, SendResponse)]


def test_only_callers_that_require_or_support_100rel_get_a_sender():
    assert ReliableProvisionals.for_invite(invite()) is None
    assert ReliableProvisionals.for_invite(invite("Require: 100rel")) is not None
    assert ReliableProvisionals.for_invite(invite("Supported: timer, 100REL")) is not None
    assert option_tags(invite("Supported: timer, 100rel", "Supported: replaces"), "Supported") == {
        "timer", "100rel", "replaces"}


def test_first_rseq_is_random_in_the_allowed_range():
    for _ in range(50):
        r = ReliableProvisionals(invite("Require: 100rel"))
        out = r.provisional(ringing(r.invite), 0.0)
        rseq = int(out[0].response.headers.get("RSeq"))
        assert 1 <= rseq <= 2**31 - 1


def test_a_provisional_goes_out_with_require_100rel_and_rseq():
    inv, r = sender()
    (out,) = r.provisional(ringing(inv), 0.0)
    assert isinstance(out, SendResponse)
    assert out.response.headers.get("RSeq") == "100"
    assert "100rel" in option_tags(out.response, "Require")
    assert r.waiting and r.next_deadline == pytest.approx(T1)


def test_100_trying_is_never_sent_reliably():
    inv, r = sender()
    (out,) = r.provisional(make_response(inv, 100), 0.0)
    assert out.response.headers.get("RSeq") is None and not r.waiting and r.next_deadline is None


def test_retransmits_at_t1_doubling_until_prack():
    inv, r = sender()
    r.provisional(ringing(inv), 0.0)
    times = []
    now = 0.0
    for _ in range(4):
        now = r.next_deadline
        assert sent(r.tick(now)) == [180]
        times.append(now)
    assert times == pytest.approx([0.5, 1.5, 3.5, 7.5])
    assert r.tick(now + 0.1) == []  # not yet due
    status, out = r.prack(prack("100 7 INVITE"), now + 0.2)
    assert status == 200 and out == [] and r.next_deadline is None and not r.waiting
    assert r.tick(100.0) == []


def test_no_prack_for_64_t1_gives_up_with_a_timeout():
    inv, r = sender()
    r.provisional(ringing(inv), 0.0)
    retransmissions = 0
    while True:
        deadline = r.next_deadline
        assert deadline is not None
        out = r.tick(deadline)
        if any(isinstance(o, PrackTimeout) for o in out):
            break
        retransmissions += len(sent(out))
    assert deadline == pytest.approx(64 * T1)
    assert retransmissions == 6  # at 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s
    assert r.finished and r.next_deadline is None
    assert r.provisional(ringing(inv), 40.0) == [] and r.final(make_response(inv, 500), 40.0) == []


def test_prack_with_wrong_rseq_cseq_or_method_gets_481_and_retransmissions_go_on():
    inv, r = sender()
    r.provisional(ringing(inv), 0.0)
    for rack in ("101 7 INVITE", "99 7 INVITE", "100 6 INVITE", "100 7 UPDATE"):
        status, out = r.prack(prack(rack), 0.1)
        assert (status, out) == (481, [])
    assert r.waiting and sent(r.tick(T1)) == [180]


def test_malformed_rack_gets_400():
    inv, r = sender()
    r.provisional(ringing(inv), 0.0)
    assert r.prack(prack("abc"), 0.1) == (400, [])
    assert r.prack(prack("100 7"), 0.1) == (400, [])


def test_prack_when_nothing_was_sent_reliably_gets_481():
    _, r = sender()
    assert r.prack(prack("100 7 INVITE"), 0.0) == (481, [])


def test_a_second_provisional_waits_for_the_first_prack_then_gets_the_next_rseq():
    inv, r = sender()
    r.provisional(ringing(inv, 180), 0.0)
    assert r.provisional(ringing(inv, 183, sdp=True), 0.1) == []
    status, out = r.prack(prack("100 7 INVITE"), 0.2)
    assert status == 200 and sent(out) == [183]
    assert out[0].response.headers.get("RSeq") == "101"
    assert r.next_deadline == pytest.approx(0.2 + T1)
    # Its own PRACK; the earlier RSeq acknowledged again (a new PRACK, not a retransmission) is 481.
    assert r.prack(prack("100 7 INVITE", cseq=9), 0.3) == (481, [])
    assert r.prack(prack("101 7 INVITE", cseq=10), 0.3) == (200, [])


def test_2xx_is_held_while_a_provisional_with_sdp_is_unacknowledged():
    inv, r = sender()
    r.provisional(ringing(inv, 183, sdp=True), 0.0)
    ok = make_response(inv, 200, to_tag="s1")
    assert r.final(ok, 0.1) == [] and r.holding
    assert sent(r.tick(T1)) == [183]  # the provisional keeps going out meanwhile
    status, out = r.prack(prack("100 7 INVITE"), 0.7)
    assert status == 200 and [o.response for o in out] == [ok]
    assert r.finished and not r.holding and r.next_deadline is None


def test_2xx_goes_at_once_when_the_unacknowledged_provisional_has_no_sdp():
    inv, r = sender()
    r.provisional(ringing(inv, 180), 0.0)
    ok = make_response(inv, 200, to_tag="s1")
    assert [o.response for o in r.final(ok, 0.1)] == [ok]
    assert r.next_deadline is None and r.tick(10.0) == []
    # A PRACK the 2xx overtook still acknowledges what was sent: 200, nothing more to send.
    assert r.prack(prack("100 7 INVITE"), 0.2) == (200, [])


def test_error_final_goes_at_once_even_with_an_unacknowledged_offer():
    inv, r = sender()
    r.provisional(ringing(inv, 183, sdp=True), 0.0)
    busy = make_response(inv, 486, to_tag="s1")
    assert [o.response for o in r.final(busy, 0.1)] == [busy]
    assert r.next_deadline is None


def test_queued_provisionals_are_dropped_by_the_final_response():
    inv, r = sender()
    r.provisional(ringing(inv, 180), 0.0)
    r.provisional(ringing(inv, 183), 0.1)
    ok = make_response(inv, 200, to_tag="s1")
    assert sent(r.final(ok, 0.2)) == [200]
    assert r.prack(prack("100 7 INVITE"), 0.3) == (200, [])


def test_no_prack_for_an_offer_discards_the_held_2xx():
    inv, r = sender()
    r.provisional(ringing(inv, 183, sdp=True), 0.0)
    r.final(make_response(inv, 200, to_tag="s1"), 0.1)
    out = r.tick(64 * T1)
    assert out == [PrackTimeout(100)] and not r.holding


def test_stop_ends_retransmissions_and_sends_nothing_more():
    inv, r = sender()
    r.provisional(ringing(inv, 180), 0.0)
    r.stop()
    assert r.next_deadline is None and r.tick(1.0) == []
    assert r.provisional(ringing(inv, 183), 1.0) == [] and r.final(make_response(inv, 200), 1.0) == []


def test_rseq_wraps_after_the_largest_value():
    inv, r = sender(first_rseq=2**31 - 1)
    r.provisional(ringing(inv, 180), 0.0)
    _, out = r.prack(prack(f"{2**31 - 1} 7 INVITE"), 0.1)
    r.provisional(ringing(inv, 183), 0.2)
    assert r.prack(prack("1 7 INVITE", cseq=9), 0.3) == (200, [])


def test_replaces_header_is_parsed_with_its_tags_and_early_only_flag():
    assert parse_replaces("abc@h;to-tag=t1;from-tag=f1") == Replaces("abc@h", "t1", "f1", False)
    assert parse_replaces(" x ; from-tag=F ;TO-TAG=T; early-only") == Replaces("x", "T", "F", True)
    for bad in ("", "x;to-tag=t", "x;from-tag=f", ";to-tag=t;from-tag=f", "x;to-tag=;from-tag=f"):
        with pytest.raises(ValueError):
            parse_replaces(bad)
