"""SIP transaction layer (RFC 3261 section 17, RFC 6026): every state and timer of the four machines.

A fake clock is just the ``now`` argument: ``drive()`` fires timers at their exact deadlines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from softswitch.sip.message import Request, Response, make_response, new_branch, parse_message
from softswitch.sip.transaction import (
    AckReceived,
    Addr,
    CancelReceived,
    ClientTransaction,
    Output,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    State,
    StrayResponse,
    TimerSettings,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailure,
)

PEER = Addr("udp", "192.0.2.20", 5060)
PEER_TCP = Addr("tcp", "192.0.2.20", 40123)
CONFORMANCE = Path("/work/shared/conformance/rfc4475")


# --- builders ------------------------------------------------------------------------------------
def request(method: str = "INVITE", *, branch: str | None = None, transport: str = "UDP",
            sent_by: str = "192.0.2.20:5060", cseq: int = 1, cseq_method: str | None = None,
            to_tag: str | None = None, call_id: str = "call-1@192.0.2.20", uri: str = "sip:bob@192.0.2.1",
            via_params: str = "", extra: str = "") -> Request:
    """A parsed request as it would arrive from the wire."""
    branch_param = "" if branch == "" else f";branch={branch or 'z9hG4bKdefault1'}"
    to = "<sip:bob@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {sent_by}{branch_param}{via_params}\r\n"
        "Max-Forwards: 70\r\n"
        f"To: {to}\r\n"
        "From: <sip:alice@192.0.2.20>;tag=alice1\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Contact: <sip:alice@192.0.2.20>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def outgoing(method: str = "INVITE", *, transport: str = "UDP", extra: str = "") -> Request:
    """A request this node sends, with a fresh RFC 3261 branch."""
    return request(method, branch=new_branch(), transport=transport, sent_by="192.0.2.1:5060", extra=extra)


def answer(req: Request, status: int, to_tag: str | None = "bobtag") -> Response:
    """A parsed response to ``req`` as the peer would send it."""
    msg = parse_message(make_response(req, status, to_tag=to_tag).serialize())
    assert isinstance(msg, Response)
    return msg


def drive(layer: TransactionLayer, until: float) -> list[tuple[float, Output]]:
    """Fire every timer due up to ``until`` at its own deadline; outputs with their firing times."""
    fired: list[tuple[float, Output]] = []
    while (when := layer.next_deadline()) is not None and when <= until:
        fired.extend((when, o) for o in layer.tick(when))
    return fired


def sends(outputs: list[Output] | list[tuple[float, Output]]) -> list[Send]:
    items = [o[1] if isinstance(o, tuple) else o for o in outputs]
    return [o for o in items if isinstance(o, Send)]


def send_times(fired: list[tuple[float, Output]]) -> list[float]:
    return [t for t, o in fired if isinstance(o, Send)]


def of_type(outputs: list[Output] | list[tuple[float, Output]], kind: type) -> list:
    items = [o[1] if isinstance(o, tuple) else o for o in outputs]
    return [o for o in items if isinstance(o, kind)]


def sent_message(send: Send) -> Request | Response:
    return parse_message(send.data)


@pytest.fixture
def layer() -> TransactionLayer:
    return TransactionLayer()


# --- INVITE client (RFC 3261 17.1.1, RFC 6026 7.2) -------------------------------------------------
def test_invite_client_sends_request_once_and_enters_calling(layer: TransactionLayer) -> None:
    req = outgoing()
    tx, out = layer.send_request(req, PEER, 0.0)
    assert tx.state is State.CALLING
    assert out == [Send(req.serialize(), PEER, tx.key)]
    assert len(layer) == 1
    assert layer.next_deadline() == pytest.approx(0.5)


def test_invite_client_retransmits_with_doubling_interval_without_t2_cap(layer: TransactionLayer) -> None:
    # Timer A doubles on every firing and, unlike E and G, is not capped at T2 (17.1.1.2).
    tx, _ = layer.send_request(outgoing(), PEER, 0.0)
    fired = drive(layer, 31.9)
    assert send_times(fired) == pytest.approx([0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
    assert all(s.data == tx.data and s.dest == PEER for s in sends(fired))


def test_invite_client_timer_b_times_out_in_calling(layer: TransactionLayer) -> None:
    tx, _ = layer.send_request(outgoing(), PEER, 0.0)
    fired = drive(layer, 100.0)
    assert (32.0, TransactionTimeout(tx, "B")) in fired
    assert fired[-1] == (32.0, TransactionTerminated(tx))
    assert tx.state is State.TERMINATED and len(layer) == 0
    assert layer.next_deadline() is None


def test_invite_client_timers_follow_configured_t1(layer: TransactionLayer) -> None:
    fast = TransactionLayer(TimerSettings(t1=0.1, t2=0.4))
    tx, _ = fast.send_request(outgoing(), PEER, 10.0)
    fired = drive(fast, 100.0)
    assert send_times(fired) == pytest.approx([10.1, 10.3, 10.7, 11.5, 13.1, 16.3])
    assert (pytest.approx(16.4), TransactionTimeout(tx, "B")) in fired


def test_invite_client_over_reliable_transport_never_retransmits(layer: TransactionLayer) -> None:
    tx, _ = layer.send_request(outgoing(transport="TCP"), PEER_TCP, 0.0)
    fired = drive(layer, 100.0)
    assert sends(fired) == []
    assert of_type(fired, TransactionTimeout) == [TransactionTimeout(tx, "B")]
    assert len(layer) == 0


def test_invite_client_provisional_moves_to_proceeding_and_stops_timers_a_and_b(
        layer: TransactionLayer) -> None:
    req = outgoing()
    tx, _ = layer.send_request(req, PEER, 0.0)
    ringing = answer(req, 180)
    assert layer.receive(ringing, PEER, 0.2) == [ResponseReceived(ringing, tx)]
    assert tx.state is State.PROCEEDING
    assert drive(layer, 1000.0) == []  # no retransmission, no timer B: the TU decides (CANCEL)
    assert len(layer) == 1


def test_invite_client_passes_every_provisional_to_tu_in_proceeding(layer: TransactionLayer) -> None:
    req = outgoing()
    tx, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(answer(req, 100, None), PEER, 0.1)
    r180, r183 = answer(req, 180), answer(req, 183)
    assert layer.receive(r180, PEER, 0.2) == [ResponseReceived(r180, tx)]
    assert layer.receive(r183, PEER, 0.3) == [ResponseReceived(r183, tx)]
    assert tx.response is r183


def test_invite_client_non_2xx_final_generates_ack_with_same_branch(layer: TransactionLayer) -> None:
    req = outgoing(extra="Route: <sip:proxy.example.com;lr>\r\n")
    tx, _ = layer.send_request(req, PEER, 0.0)
    busy = answer(req, 486)
    out = layer.receive(busy, PEER, 0.3)
    assert out[0] == ResponseReceived(busy, tx)
    assert tx.state is State.COMPLETED
    (ack_send,) = sends(out)
    assert ack_send.dest == PEER
    ack = sent_message(ack_send)
    assert isinstance(ack, Request)
    assert ack.method == "ACK" and ack.uri == req.uri
    assert [v.branch for v in ack.vias] == [tx.branch]
    assert ack.cseq == (req.cseq[0], "ACK")
    assert ack.to.tag == "bobtag"  # the To of the response
    assert ack.from_tag == req.from_tag and ack.call_id == req.call_id
    assert ack.headers.get_all("Route") == ["<sip:proxy.example.com;lr>"]
    assert ack.body == b""


def test_invite_client_retransmitted_final_resends_ack_without_telling_tu(layer: TransactionLayer) -> None:
    req = outgoing()
    tx, _ = layer.send_request(req, PEER, 0.0)
    first = sends(layer.receive(answer(req, 503), PEER, 0.1))
    again = layer.receive(answer(req, 503), PEER, 0.6)
    assert again == first  # only the same ACK, no second ResponseReceived


def test_invite_client_timer_d_terminates_completed(layer: TransactionLayer) -> None:
    req = outgoing()
    tx, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(answer(req, 180), PEER, 0.1)
    layer.receive(answer(req, 404), PEER, 1.0)
    assert drive(layer, 32.9) == []
    assert drive(layer, 33.0) == [(33.0, TransactionTerminated(tx))]
    assert len(layer) == 0


def test_invite_client_over_reliable_transport_terminates_on_non_2xx_at_once(layer: TransactionLayer) -> None:
    req = outgoing(transport="TCP")
    tx, _ = layer.send_request(req, PEER_TCP, 0.0)
    out = layer.receive(answer(req, 486), PEER_TCP, 0.1)
    assert len(sends(out)) == 1  # the ACK
    assert out[-1] == TransactionTerminated(tx)
    assert len(layer) == 0


def test_invite_client_2xx_enters_accepted_and_passes_retransmissions_to_tu(layer: TransactionLayer) -> None:
    req = outgoing()
    tx, _ = layer.send_request(req, PEER, 0.0)
    ok = answer(req, 200)
    assert layer.receive(ok, PEER, 0.1) == [ResponseReceived(ok, tx)]  # no ACK: the TU sends it
    assert tx.state is State.ACCEPTED
    again = answer(req, 200)
    forked = answer(req, 200, to_tag="othertag")
    assert layer.receive(again, PEER, 0.6) == [ResponseReceived(again, tx)]
    assert layer.receive(forked, PEER, 0.7) == [ResponseReceived(forked, tx)]
    assert layer.receive(answer(req, 180), PEER, 0.8) == []  # late provisional absorbed
    assert layer.receive(answer(req, 486), PEER, 0.9) == []


def test_invite_client_timer_m_terminates_accepted(layer: TransactionLayer) -> None:
    req = outgoing()
    tx, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(answer(req, 180), PEER, 0.1)
    layer.receive(answer(req, 200), PEER, 2.0)
    assert drive(layer, 33.9) == []  # no retransmission of INVITE meanwhile
    assert drive(layer, 34.0) == [(34.0, TransactionTerminated(tx))]
    late = answer(req, 200)
    assert layer.receive(late, PEER, 35.0) == [StrayResponse(late, PEER)]


def test_invite_client_completed_ignores_2xx(layer: TransactionLayer) -> None:
    req = outgoing()
    layer.send_request(req, PEER, 0.0)
    layer.receive(answer(req, 486), PEER, 0.1)
    assert layer.receive(answer(req, 200), PEER, 0.2) == []


def test_invite_client_transport_error_terminates_in_calling(layer: TransactionLayer) -> None:
    tx, out = layer.send_request(outgoing(), PEER, 0.0)
    result = layer.on_transport_error(out[0].tx_key, 0.0)
    assert result == [TransportFailure(tx), TransactionTerminated(tx)]
    assert len(layer) == 0 and drive(layer, 100.0) == []


def test_invite_client_transport_error_terminates_completed(layer: TransactionLayer) -> None:
    req = outgoing()
    tx, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(answer(req, 486), PEER, 0.1)
    assert layer.on_transport_error(tx, 0.1) == [TransportFailure(tx), TransactionTerminated(tx)]


def test_invite_client_timer_c_reports_overdue_proceeding_without_terminating() -> None:
    layer = TransactionLayer(TimerSettings(timer_c=180.0))
    req = outgoing()
    tx, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(answer(req, 180), PEER, 1.0)
    layer.receive(answer(req, 100, None), PEER, 50.0)  # a 100 does not restart timer C (16.7)
    layer.receive(answer(req, 183), PEER, 100.0)  # but another provisional does
    assert drive(layer, 279.0) == []
    assert drive(layer, 280.0) == [(280.0, TransactionTimeout(tx, "C"))]
    assert tx.state is State.PROCEEDING and len(layer) == 1


# --- CANCEL, client side (RFC 3261 9.1) ------------------------------------------------------------
def test_cancel_after_provisional_sends_cancel_built_per_9_1(layer: TransactionLayer) -> None:
    req = outgoing(extra="Route: <sip:proxy.example.com;lr>\r\nRequire: 100rel\r\n")
    tx, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(answer(req, 180), PEER, 0.1)
    out = layer.cancel(tx, 1.0)
    (send,) = sends(out)
    cancel = sent_message(send)
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    assert cancel.uri == req.uri and cancel.call_id == req.call_id
    assert cancel.cseq == (req.cseq[0], "CANCEL")
    assert [v.branch for v in cancel.vias] == [tx.branch]
    assert cancel.to.tag is None and cancel.from_tag == req.from_tag
    assert cancel.headers.get_all("Route") == ["<sip:proxy.example.com;lr>"]
    assert "Require" not in cancel.headers
    assert isinstance(tx.cancel_tx, ClientTransaction) and tx.cancel_tx.method == "CANCEL"
    assert send.tx_key == tx.cancel_tx.key
    assert len(layer) == 2
    assert layer.cancel(tx, 1.1) == []  # only one CANCEL per INVITE


def test_cancel_before_provisional_is_sent_when_first_provisional_arrives(layer: TransactionLayer) -> None:
    req = outgoing()
    tx, _ = layer.send_request(req, PEER, 0.0)
    assert layer.cancel(tx, 0.1) == []
    assert tx.cancel_pending
    out = layer.receive(answer(req, 100, None), PEER, 0.2)
    cancels = [m for m in map(sent_message, sends(out)) if isinstance(m, Request)]
    assert [c.method for c in cancels] == ["CANCEL"]
    assert tx.cancel_tx is not None and not tx.cancel_pending


def test_pending_cancel_is_dropped_when_a_final_response_comes_first(layer: TransactionLayer) -> None:
    req = outgoing()
    tx, _ = layer.send_request(req, PEER, 0.0)
    layer.cancel(tx, 0.1)
    out = layer.receive(answer(req, 486), PEER, 0.2)
    assert [sent_message(s).method for s in sends(out)] == ["ACK"]
    assert tx.cancel_tx is None and not tx.cancel_pending


def test_cancel_after_final_response_does_nothing(layer: TransactionLayer) -> None:
    req = outgoing()
    tx, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(answer(req, 200), PEER, 0.2)
    assert layer.cancel(tx, 0.3) == []


def test_cancel_transaction_completes_on_its_200(layer: TransactionLayer) -> None:
    req = outgoing()
    tx, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(answer(req, 180), PEER, 0.1)
    cancel = sent_message(sends(layer.cancel(tx, 0.2))[0])
    assert isinstance(cancel, Request)
    ok = answer(cancel, 200)
    assert layer.receive(ok, PEER, 0.3) == [ResponseReceived(ok, tx.cancel_tx)]
    terminated = answer(req, 487)
    assert layer.receive(terminated, PEER, 0.4)[0] == ResponseReceived(terminated, tx)
    drive(layer, 100.0)
    assert len(layer) == 0


# --- non-INVITE client (RFC 3261 17.1.2) -----------------------------------------------------------
def test_non_invite_client_retransmits_with_doubling_interval_until_t2(layer: TransactionLayer) -> None:
    tx, _ = layer.send_request(outgoing("REGISTER"), PEER, 0.0)
    assert tx.state is State.TRYING
    fired = drive(layer, 15.9)
    assert send_times(fired) == pytest.approx([0.5, 1.5, 3.5, 7.5, 11.5, 15.5])


def test_non_invite_client_timer_f_times_out(layer: TransactionLayer) -> None:
    tx, _ = layer.send_request(outgoing("OPTIONS"), PEER, 0.0)
    fired = drive(layer, 100.0)
    assert of_type(fired, TransactionTimeout) == [TransactionTimeout(tx, "F")]
    assert fired[-1] == (32.0, TransactionTerminated(tx))
    assert len(layer) == 0


def test_non_invite_client_proceeding_retransmits_every_t2(layer: TransactionLayer) -> None:
    req = outgoing("BYE")
    tx, _ = layer.send_request(req, PEER, 0.0)
    trying = answer(req, 100, None)
    assert layer.receive(trying, PEER, 0.2) == [ResponseReceived(trying, tx)]
    assert tx.state is State.PROCEEDING
    fired = drive(layer, 13.0)
    # E was armed at T1 in Trying; from then on it fires every T2 (17.1.2.2).
    assert send_times(fired) == pytest.approx([0.5, 4.5, 8.5, 12.5])
    another = answer(req, 100, None)
    assert layer.receive(another, PEER, 13.0) == [ResponseReceived(another, tx)]


def test_non_invite_client_proceeding_times_out_with_timer_f(layer: TransactionLayer) -> None:
    req = outgoing("BYE")
    tx, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(answer(req, 100, None), PEER, 0.2)
    fired = drive(layer, 40.0)
    assert of_type(fired, TransactionTimeout) == [TransactionTimeout(tx, "F")]


def test_non_invite_client_final_response_completes_and_timer_k_terminates(layer: TransactionLayer) -> None:
    req = outgoing("REGISTER")
    tx, _ = layer.send_request(req, PEER, 0.0)
    ok = answer(req, 200)
    assert layer.receive(ok, PEER, 0.7) == [ResponseReceived(ok, tx)]
    assert tx.state is State.COMPLETED
    assert layer.receive(answer(req, 200), PEER, 1.0) == []  # retransmission absorbed
    assert layer.receive(answer(req, 100, None), PEER, 1.1) == []
    assert drive(layer, 5.6) == []  # no retransmission in Completed
    assert drive(layer, 5.7) == [(5.7, TransactionTerminated(tx))]


def test_non_invite_client_final_from_proceeding_completes(layer: TransactionLayer) -> None:
    req = outgoing("REGISTER")
    tx, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(answer(req, 100, None), PEER, 0.1)
    unauthorized = answer(req, 401)
    assert layer.receive(unauthorized, PEER, 0.2) == [ResponseReceived(unauthorized, tx)]
    assert tx.state is State.COMPLETED


def test_non_invite_client_over_reliable_transport_terminates_on_final(layer: TransactionLayer) -> None:
    req = outgoing("REGISTER", transport="TCP")
    tx, _ = layer.send_request(req, PEER_TCP, 0.0)
    ok = answer(req, 200)
    assert layer.receive(ok, PEER_TCP, 1.0) == [ResponseReceived(ok, tx), TransactionTerminated(tx)]
    assert len(layer) == 0


def test_non_invite_client_over_reliable_transport_never_retransmits(layer: TransactionLayer) -> None:
    tx, _ = layer.send_request(outgoing("OPTIONS", transport="TLS"), Addr("tls", "192.0.2.20", 5061), 0.0)
    fired = drive(layer, 100.0)
    assert sends(fired) == [] and of_type(fired, TransactionTimeout) == [TransactionTimeout(tx, "F")]


def test_non_invite_client_transport_error_terminates(layer: TransactionLayer) -> None:
    req = outgoing("MESSAGE")
    tx, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(answer(req, 100, None), PEER, 0.1)
    assert layer.on_transport_error(tx.key, 0.2) == [TransportFailure(tx), TransactionTerminated(tx)]
    assert layer.on_transport_error(tx.key, 0.3) == []


def test_send_request_rejects_ack_missing_branch_and_duplicates(layer: TransactionLayer) -> None:
    with pytest.raises(ValueError, match="ACK"):
        layer.send_request(outgoing("ACK"), PEER, 0.0)
    with pytest.raises(ValueError, match="branch"):
        layer.send_request(request("OPTIONS", branch="1234"), PEER, 0.0)
    req = outgoing("OPTIONS")
    layer.send_request(req, PEER, 0.0)
    with pytest.raises(ValueError, match="already"):
        layer.send_request(req, PEER, 0.0)


def test_response_with_unknown_branch_is_stray(layer: TransactionLayer) -> None:
    req = outgoing("OPTIONS")
    layer.send_request(req, PEER, 0.0)
    other = answer(outgoing("OPTIONS"), 200)
    wrong_method = answer(request("INFO", branch=req.top_via.branch), 200)  # type: ignore[union-attr]
    assert layer.receive(other, PEER, 0.1) == [StrayResponse(other, PEER)]
    assert layer.receive(wrong_method, PEER, 0.1) == [StrayResponse(wrong_method, PEER)]


# --- INVITE server (RFC 3261 17.2.1, RFC 6026 7.1) -------------------------------------------------
def new_invite(layer: TransactionLayer, now: float = 0.0, **kw: object) -> tuple[Request, ServerTransaction]:
    req = request("INVITE", **kw)  # type: ignore[arg-type]
    out = layer.receive(req, PEER, now)
    (received,) = of_type(out, RequestReceived)
    assert received.request is req
    return req, received.server_tx


def test_invite_server_sends_100_after_200ms_when_tu_is_silent(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    assert tx.state is State.PROCEEDING
    fired = drive(layer, 1.0)
    assert send_times(fired) == pytest.approx([0.2])
    trying = sent_message(sends(fired)[0])
    assert isinstance(trying, Response) and trying.status == 100 and trying.to.tag is None
    assert fired[0][1].dest == PEER  # type: ignore[union-attr]


def test_invite_server_skips_automatic_100_when_tu_answers_first(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    layer.send_response(make_response(req, 180, to_tag="t1"), 0.05)
    assert drive(layer, 1.0) == []


def test_invite_server_sends_100_at_once_when_configured() -> None:
    layer = TransactionLayer(TimerSettings(trying_delay=0))
    req = request("INVITE")
    out = layer.receive(req, PEER, 0.0)
    assert isinstance(out[0], Send) and sent_message(out[0]).status == 100  # type: ignore[union-attr]
    assert isinstance(out[1], RequestReceived)


def test_invite_server_never_sends_100_when_disabled() -> None:
    layer = TransactionLayer(TimerSettings(trying_delay=None))
    req, tx = new_invite(layer)
    assert drive(layer, 10.0) == []
    assert layer.receive(request("INVITE"), PEER, 1.0) == []  # retransmission absorbed, nothing to resend


def test_invite_server_retransmitted_invite_resends_last_provisional(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    layer.send_response(make_response(req, 100), 0.0)
    ringing = make_response(req, 180, to_tag="t1")
    layer.send_response(ringing, 0.1)
    assert layer.receive(request("INVITE"), PEER, 0.5) == [Send(ringing.serialize(), PEER, tx.key)]
    assert len(layer) == 1


def test_invite_server_absorbs_retransmitted_invite_before_any_response(layer: TransactionLayer) -> None:
    new_invite(layer)
    assert layer.receive(request("INVITE"), PEER, 0.1) == []


def test_invite_server_retransmits_final_response_until_ack(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    busy = make_response(req, 486, to_tag="t1")
    out = layer.send_response(busy, 1.0)
    assert out == [Send(busy.serialize(), PEER, tx.key)]
    assert tx.state is State.COMPLETED and tx.request is None
    fired = drive(layer, 16.0)
    # Timer G: T1, doubling, capped at T2 (17.2.1).
    assert send_times(fired) == pytest.approx([1.5, 2.5, 4.5, 8.5, 12.5, 16.5][:5])
    ack = request("ACK", cseq_method="ACK", to_tag="t1")
    assert layer.receive(ack, PEER, 16.0) == []  # absorbed
    assert tx.state is State.CONFIRMED
    assert sends(drive(layer, 20.0)) == []  # retransmissions stopped


def test_invite_server_timer_h_times_out_without_ack(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    layer.send_response(make_response(req, 500, to_tag="t1"), 0.0)
    fired = drive(layer, 100.0)
    assert fired[-2:] == [(32.0, TransactionTimeout(tx, "H")), (32.0, TransactionTerminated(tx))]
    assert len(layer) == 0


def test_invite_server_retransmitted_invite_in_completed_resends_final(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    busy = make_response(req, 486, to_tag="t1")
    layer.send_response(busy, 0.0)
    assert layer.receive(request("INVITE"), PEER, 0.1) == [Send(busy.serialize(), PEER, tx.key)]


def test_invite_server_confirmed_absorbs_acks_and_timer_i_terminates(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    layer.send_response(make_response(req, 486, to_tag="t1"), 0.0)
    layer.receive(request("ACK", cseq_method="ACK", to_tag="t1"), PEER, 0.3)
    assert layer.receive(request("ACK", cseq_method="ACK", to_tag="t1"), PEER, 0.4) == []
    assert layer.receive(request("INVITE"), PEER, 0.5) == []  # INVITE retransmission absorbed too
    assert drive(layer, 5.29) == []
    assert drive(layer, 5.3) == [(5.3, TransactionTerminated(tx))]


def test_invite_server_over_reliable_transport_sends_final_once_and_ack_terminates(
        layer: TransactionLayer) -> None:
    req = request("INVITE", transport="TCP")
    (received,) = of_type(layer.receive(req, PEER_TCP, 0.0), RequestReceived)
    tx = received.server_tx
    assert tx.reply_dest == PEER_TCP
    layer.send_response(make_response(req, 486, to_tag="t1"), 0.0)
    assert sends(drive(layer, 10.0)) == []  # no timer G on TCP
    ack = request("ACK", cseq_method="ACK", to_tag="t1", transport="TCP")
    assert layer.receive(ack, PEER_TCP, 10.0) == [TransactionTerminated(tx)]  # timer I is 0


def test_invite_server_over_reliable_transport_still_times_out_with_timer_h(layer: TransactionLayer) -> None:
    req = request("INVITE", transport="TCP")
    layer.receive(req, PEER_TCP, 0.0)
    layer.send_response(make_response(req, 486, to_tag="t1"), 0.0)
    assert [o.timer for o in of_type(drive(layer, 40.0), TransactionTimeout)] == ["H"]


def test_invite_server_2xx_enters_accepted_and_absorbs_invite_retransmissions(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    ok = make_response(req, 200, to_tag="t1")
    assert layer.send_response(ok, 0.5) == [Send(ok.serialize(), PEER, tx.key)]
    assert tx.state is State.ACCEPTED and tx.to_tag == "t1"
    assert layer.receive(request("INVITE"), PEER, 0.6) == []  # RFC 6026: absorbed, not a new request
    assert sends(drive(layer, 32.0)) == []  # the TU, not the transaction, retransmits the 2xx


def test_invite_server_accepted_sends_tu_2xx_retransmissions_and_passes_ack(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    ok = make_response(req, 200, to_tag="t1")
    layer.send_response(ok, 0.0)
    assert layer.send_response(ok, 0.5) == [Send(ok.serialize(), PEER, tx.key)]
    assert layer.send_response(make_response(req, 486, to_tag="t1"), 0.6) == []  # too late for a non-2xx
    ack = request("ACK", branch="z9hG4bKack2xx", cseq_method="ACK", to_tag="t1")
    assert layer.receive(ack, PEER, 0.7) == [AckReceived(ack, PEER)]


def test_invite_server_timer_l_terminates_accepted(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    layer.send_response(make_response(req, 200, to_tag="t1"), 1.0)
    assert drive(layer, 32.9) == []
    assert drive(layer, 33.0) == [(33.0, TransactionTerminated(tx))]
    assert len(layer) == 0
    # After timer L a retransmitted INVITE is a new request again (RFC 6026 8.7).
    assert of_type(layer.receive(request("INVITE"), PEER, 40.0), RequestReceived)


def test_invite_server_transport_error_terminates_in_proceeding_and_completed(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    out = layer.send_response(make_response(req, 180, to_tag="t1"), 0.0)
    assert layer.on_transport_error(out[0].tx_key, 0.0) == [TransportFailure(tx), TransactionTerminated(tx)]
    req2, tx2 = new_invite(layer, branch="z9hG4bKsecond")
    layer.send_response(make_response(req2, 486, to_tag="t2"), 0.0)
    assert layer.on_transport_error(tx2, 0.0) == [TransportFailure(tx2), TransactionTerminated(tx2)]
    assert len(layer) == 0


def test_invite_server_transport_error_in_accepted_keeps_transaction(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    layer.send_response(make_response(req, 200, to_tag="t1"), 0.0)
    assert layer.on_transport_error(tx, 0.1) == [TransportFailure(tx)]
    assert tx.state is State.ACCEPTED


def test_invite_server_ignores_responses_after_completed(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    layer.send_response(make_response(req, 486, to_tag="t1"), 0.0)
    assert layer.send_response(make_response(req, 200, to_tag="t1"), 0.1) == []
    assert layer.send_response(make_response(req, 180, to_tag="t1"), 0.1) == []


# --- non-INVITE server (RFC 3261 17.2.2) -----------------------------------------------------------
def new_request(layer: TransactionLayer, method: str = "REGISTER", now: float = 0.0,
                **kw: object) -> tuple[Request, ServerTransaction]:
    req = request(method, **kw)  # type: ignore[arg-type]
    out = layer.receive(req, PEER, now)
    assert out == [RequestReceived(req, out[0].server_tx)]  # type: ignore[union-attr]
    return req, out[0].server_tx  # type: ignore[union-attr]


def test_non_invite_server_absorbs_retransmitted_request_in_trying(layer: TransactionLayer) -> None:
    req, tx = new_request(layer)
    assert tx.state is State.TRYING
    assert layer.receive(request("REGISTER"), PEER, 0.5) == []
    assert drive(layer, 100.0) == []  # no timers until the TU answers
    assert len(layer) == 1


def test_non_invite_server_proceeding_resends_last_provisional(layer: TransactionLayer) -> None:
    req, tx = new_request(layer, "SUBSCRIBE")
    trying = make_response(req, 100)
    layer.send_response(trying, 0.0)
    assert tx.state is State.PROCEEDING
    assert layer.receive(request("SUBSCRIBE"), PEER, 0.5) == [Send(trying.serialize(), PEER, tx.key)]


def test_non_invite_server_absorbs_retransmitted_request_by_resending_final(layer: TransactionLayer) -> None:
    req, tx = new_request(layer)
    ok = make_response(req, 200, to_tag="r1")
    assert layer.send_response(ok, 0.1) == [Send(ok.serialize(), PEER, tx.key)]
    assert tx.state is State.COMPLETED and tx.request is None
    assert layer.receive(request("REGISTER"), PEER, 0.6) == [Send(ok.serialize(), PEER, tx.key)]
    assert sends(drive(layer, 31.0)) == []  # a non-INVITE server never retransmits on its own


def test_non_invite_server_timer_j_terminates_completed(layer: TransactionLayer) -> None:
    req, tx = new_request(layer)
    layer.send_response(make_response(req, 100), 0.0)
    layer.send_response(make_response(req, 200, to_tag="r1"), 1.0)
    assert drive(layer, 32.9) == []
    assert drive(layer, 33.0) == [(33.0, TransactionTerminated(tx))]
    assert len(layer) == 0
    assert of_type(layer.receive(request("REGISTER"), PEER, 34.0), RequestReceived)


def test_non_invite_server_over_reliable_transport_terminates_on_final(layer: TransactionLayer) -> None:
    req = request("REGISTER", transport="TCP")
    (received,) = layer.receive(req, PEER_TCP, 0.0)
    tx = received.server_tx  # type: ignore[union-attr]
    out = layer.send_response(make_response(req, 200, to_tag="r1"), 0.0)
    assert out == [Send(out[0].data, PEER_TCP, tx.key), TransactionTerminated(tx)]  # type: ignore[union-attr]


def test_non_invite_server_ignores_second_final_response(layer: TransactionLayer) -> None:
    req, tx = new_request(layer)
    layer.send_response(make_response(req, 200, to_tag="r1"), 0.0)
    assert layer.send_response(make_response(req, 500, to_tag="r1"), 0.1) == []


def test_non_invite_server_transport_error_terminates(layer: TransactionLayer) -> None:
    req, tx = new_request(layer)
    layer.send_response(make_response(req, 200, to_tag="r1"), 0.0)
    assert layer.on_transport_error(tx.key, 0.1) == [TransportFailure(tx), TransactionTerminated(tx)]


# --- response addressing (RFC 3261 18.2.2, RFC 3581) -----------------------------------------------
def test_response_goes_to_source_port_when_rport_requested(layer: TransactionLayer) -> None:
    req = request("OPTIONS", sent_by="10.0.0.5:5062", via_params=";rport")
    nat = Addr("udp", "203.0.113.9", 61000)
    (received,) = layer.receive(req, nat, 0.0)
    assert received.server_tx.reply_dest == nat  # type: ignore[union-attr]


def test_response_goes_to_source_host_and_via_port_without_rport(layer: TransactionLayer) -> None:
    req = request("OPTIONS", sent_by="10.0.0.5:5062")
    (received,) = layer.receive(req, Addr("udp", "203.0.113.9", 61000), 0.0)
    assert received.server_tx.reply_dest == Addr("udp", "203.0.113.9", 5062)  # type: ignore[union-attr]


def test_response_without_transaction_is_sent_statelessly_to_via(layer: TransactionLayer) -> None:
    req = request("OPTIONS", sent_by="10.0.0.5", via_params=";received=203.0.113.9;rport=61000")
    resp = make_response(req, 200)
    assert layer.send_response(resp, 0.0) == [Send(resp.serialize(), Addr("udp", "203.0.113.9", 61000))]
    assert layer.send_response(resp, 0.0, PEER) == [Send(resp.serialize(), PEER)]
    assert len(layer) == 0


def test_send_stateless_serialises_ack_for_2xx(layer: TransactionLayer) -> None:
    ack = outgoing("ACK")
    assert layer.send_stateless(ack, PEER) == [Send(ack.serialize(), PEER)]


# --- CANCEL, server side (RFC 3261 9.2) ------------------------------------------------------------
def test_cancel_matching_invite_is_answered_200_and_reported_to_tu(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    cancel = request("CANCEL")
    out = layer.receive(cancel, PEER, 0.3)
    (send,) = sends(out)
    ok = sent_message(send)
    assert isinstance(ok, Response) and ok.status == 200 and ok.cseq == (1, "CANCEL")
    assert ok.to.tag is not None and ok.to.tag == tx.to_tag  # the TU reuses it on its 487
    assert out[-1] == CancelReceived(cancel, tx)
    (ctx,) = [s for s in layer._servers.values() if s.method == "CANCEL"]
    assert ctx.state is State.COMPLETED
    # The TU answers the INVITE with 487, the ACK confirms, everything drains.
    layer.send_response(make_response(req, 487, to_tag=tx.to_tag), 0.4)
    layer.receive(request("ACK", cseq_method="ACK", to_tag=tx.to_tag), PEER, 0.5)
    drive(layer, 100.0)
    assert len(layer) == 0


def test_cancel_reuses_to_tag_of_provisional_response(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    layer.send_response(make_response(req, 180, to_tag="early1"), 0.1)
    ok = sent_message(sends(layer.receive(request("CANCEL"), PEER, 0.3))[0])
    assert ok.to.tag == "early1"


def test_cancel_without_matching_transaction_is_answered_481(layer: TransactionLayer) -> None:
    new_invite(layer)
    out = layer.receive(request("CANCEL", branch="z9hG4bKnomatch"), PEER, 0.1)
    assert [sent_message(s).status for s in sends(out)] == [481]  # type: ignore[union-attr]
    assert sent_message(sends(out)[0]).to.tag is not None
    assert of_type(out, CancelReceived) == []


def test_cancel_after_final_response_is_answered_200_without_effect(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    layer.send_response(make_response(req, 200, to_tag="t1"), 0.1)
    out = layer.receive(request("CANCEL"), PEER, 0.2)
    assert [sent_message(s).status for s in sends(out)] == [200]  # type: ignore[union-attr]
    assert of_type(out, CancelReceived) == []


def test_retransmitted_cancel_resends_its_200(layer: TransactionLayer) -> None:
    new_invite(layer)
    first = sends(layer.receive(request("CANCEL"), PEER, 0.1))
    again = layer.receive(request("CANCEL"), PEER, 0.6)
    assert again == first and of_type(again, CancelReceived) == []


# --- matching (RFC 3261 17.2.3) --------------------------------------------------------------------
def test_ack_for_2xx_without_transaction_goes_to_tu(layer: TransactionLayer) -> None:
    ack = request("ACK", branch="z9hG4bKfresh", cseq_method="ACK", to_tag="t1")
    assert layer.receive(ack, PEER, 0.0) == [AckReceived(ack, PEER)]
    assert len(layer) == 0


def test_same_branch_from_another_sent_by_is_a_new_transaction(layer: TransactionLayer) -> None:
    new_request(layer, "OPTIONS")
    new_request(layer, "OPTIONS", sent_by="192.0.2.99:5060")
    new_request(layer, "OPTIONS", sent_by="192.0.2.20:5070")
    assert len(layer) == 3


def test_same_branch_with_another_method_is_a_new_transaction(layer: TransactionLayer) -> None:
    new_request(layer, "OPTIONS")
    new_request(layer, "INFO", branch="z9hG4bKdefault1")
    assert len(layer) == 2


def test_sent_by_host_matches_case_insensitively(layer: TransactionLayer) -> None:
    req, tx = new_request(layer, "OPTIONS", sent_by="Host.Example.COM")
    layer.send_response(make_response(req, 200), 0.0)
    again = layer.receive(request("OPTIONS", sent_by="host.example.com"), PEER, 0.1)
    assert len(sends(again)) == 1 and len(layer) == 1


def test_rfc2543_request_without_cookie_matches_its_retransmission(layer: TransactionLayer) -> None:
    data = (CONFORMANCE / "inv2543.dat").read_bytes()
    req = parse_message(data)
    out = layer.receive(req, PEER, 0.0)  # type: ignore[arg-type]
    (received,) = of_type(out, RequestReceived)
    tx = received.server_tx
    assert tx.key[0] == "2543"
    again = parse_message(data)
    assert layer.receive(again, PEER, 0.1) == []  # absorbed
    ringing = make_response(req, 180, to_tag="t2543")  # type: ignore[arg-type]
    assert layer.send_response(ringing, 0.2) == [Send(ringing.serialize(), tx.reply_dest, tx.key)]
    assert layer.receive(parse_message(data), PEER, 0.3) == [Send(ringing.serialize(), tx.reply_dest, tx.key)]
    assert len(layer) == 1


def test_rfc2543_ack_matches_by_to_tag_of_response(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer, branch="")
    layer.send_response(make_response(req, 486, to_tag="t1"), 0.0)
    wrong = request("ACK", branch="", cseq_method="ACK", to_tag="other")
    assert layer.receive(wrong, PEER, 0.1) == [AckReceived(wrong, PEER)]
    assert tx.state is State.COMPLETED
    assert layer.receive(request("ACK", branch="", cseq_method="ACK", to_tag="t1"), PEER, 0.2) == []
    assert tx.state is State.CONFIRMED


def test_rfc2543_requests_differing_in_request_uri_are_distinct(layer: TransactionLayer) -> None:
    new_request(layer, "OPTIONS", branch="")
    new_request(layer, "OPTIONS", branch="", uri="sip:carol@192.0.2.1")
    assert len(layer) == 2


def test_rfc2543_cancel_matches_invite(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer, branch="")
    out = layer.receive(request("CANCEL", branch=""), PEER, 0.1)
    assert out[-1] == CancelReceived(out[-1].cancel_request, tx)  # type: ignore[union-attr]


def test_bare_magic_cookie_branch_uses_rfc2543_matching(layer: TransactionLayer) -> None:
    data = (CONFORMANCE / "badbranch.dat").read_bytes()
    first = parse_message(data)
    other_call = parse_message(data.replace(b"Call-ID: badbranch.", b"Call-ID: other."))
    (r1,) = layer.receive(first, PEER, 0.0)  # type: ignore[arg-type]
    (r2,) = layer.receive(other_call, PEER, 0.0)  # type: ignore[arg-type]
    # With branch-only matching the second OPTIONS would have been taken for a retransmission.
    assert isinstance(r2, RequestReceived) and r2.server_tx is not r1.server_tx  # type: ignore[union-attr]
    assert len(layer) == 2


def test_request_without_via_is_dropped(layer: TransactionLayer) -> None:
    req = request("OPTIONS")
    req.headers.remove("Via")
    assert layer.receive(req, PEER, 0.0) == []


def test_malformed_cseq_is_dropped_without_raising(layer: TransactionLayer) -> None:
    req = request("OPTIONS")
    req.headers.set("CSeq", "abc")
    req.headers.set("Via", "SIP/2.0/UDP 192.0.2.20;branch=nocookie")
    assert layer.receive(req, PEER, 0.0) == []


def test_cancelled_timers_do_not_accumulate_in_the_heap(layer: TransactionLayer) -> None:
    # Every REGISTER answered at once leaves cancelled E/F entries behind; compaction bounds them.
    for i in range(5000):
        req = outgoing("REGISTER")
        layer.send_request(req, PEER, i * 0.001)
        layer.receive(answer(req, 200), PEER, i * 0.001)
    assert len(layer._heap) < 3 * 5000
    drive(layer, 100.0)
    assert len(layer) == 0 and layer.next_deadline() is None


def test_cancelled_invite_without_final_response_terminates_after_64_t1(layer: TransactionLayer) -> None:
    req = outgoing()
    tx, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(answer(req, 180), PEER, 0.1)
    layer.cancel(tx, 10.0)
    layer.receive(answer(req, 183), PEER, 11.0)  # a later provisional does not extend the wait
    fired = drive(layer, 100.0)
    assert (42.0, TransactionTimeout(tx, "cancel")) in fired
    assert (42.0, TransactionTerminated(tx)) in fired
    assert len(layer) == 0


def test_cancel_guard_replaces_timer_c() -> None:
    layer = TransactionLayer(TimerSettings(timer_c=20.0))
    req = outgoing()
    tx, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(answer(req, 180), PEER, 0.0)
    layer.cancel(tx, 1.0)
    timeouts = [o.timer for o in of_type(drive(layer, 100.0), TransactionTimeout) if o.tx is tx]
    assert timeouts == ["cancel"]


# --- configuration and API details -----------------------------------------------------------------
def test_timer_overrides_replace_64_t1() -> None:
    layer = TransactionLayer(TimerSettings(timer_b=5.0, timer_f=3.0, timer_d=0.0))
    itx, _ = layer.send_request(outgoing(), PEER, 0.0)
    ntx, _ = layer.send_request(outgoing("OPTIONS"), PEER, 0.0)
    timeouts = [(t, o.timer) for t, o in drive(layer, 10.0) if isinstance(o, TransactionTimeout)]
    assert timeouts == [(3.0, "F"), (5.0, "B")]
    req = outgoing()
    layer.send_request(req, PEER, 20.0)
    out = layer.receive(answer(req, 486), PEER, 20.1)
    assert isinstance(out[-1], TransactionTerminated)  # timer D of 0 ends Completed at once


def test_websocket_and_tls_count_as_reliable() -> None:
    assert Addr("ws", "h", 80).reliable and Addr("tls", "h", 5061).reliable and Addr("wss", "h", 443).reliable
    assert not Addr("udp", "h", 5060).reliable


def test_non_invite_server_sends_no_automatic_100(layer: TransactionLayer) -> None:
    new_request(layer, "OPTIONS")
    assert drive(layer, 10.0) == []


def test_automatic_100_echoes_timestamp(layer: TransactionLayer) -> None:
    layer.receive(request("INVITE", extra="Timestamp: 54\r\n"), PEER, 0.0)
    (send,) = sends(drive(layer, 1.0))
    assert sent_message(send).headers.get("Timestamp") == "54"


def test_response_destination_given_by_tu_is_kept_for_retransmissions(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    other = Addr("udp", "198.51.100.7", 5070)
    layer.send_response(make_response(req, 486, to_tag="t1"), 0.0, other)
    assert {s.dest for s in sends(drive(layer, 3.0))} == {other}


def test_outputs_offer_aliases_used_by_the_node(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer)
    (received,) = of_type(layer.receive(request("OPTIONS", branch="z9hG4bKopt"), PEER, 0.0), RequestReceived)
    assert received.source == PEER and received.transaction is received.server_tx
    cancel = of_type(layer.receive(request("CANCEL"), PEER, 0.1), CancelReceived)[0]
    assert cancel.invite is tx
    creq = outgoing("OPTIONS")
    ctx, _ = layer.send_request(creq, PEER, 0.0)
    ok = answer(creq, 200)
    (resp,) = layer.receive(ok, PEER, 0.1)
    assert resp.transaction is ctx  # type: ignore[union-attr]
    assert TransactionTimeout(ctx, "F").transaction is ctx
    assert TransactionTerminated(ctx).transaction is ctx and TransportFailure(ctx).transaction is ctx


def test_every_conformance_request_is_handled_and_drains(layer: TransactionLayer) -> None:
    # The torture messages of RFC 4475 / RFC 5118 that parse must never break matching or leak.
    handled = 0
    for path in sorted(CONFORMANCE.parent.glob("*/*.dat")):
        try:
            msg = parse_message(path.read_bytes())
        except ValueError:
            continue
        for out in layer.receive(msg, PEER, 0.0) + layer.receive(msg, PEER_TCP, 0.1):
            if isinstance(out, RequestReceived):
                handled += 1
                layer.send_response(make_response(out.request, 200, to_tag="x"), 0.2, tx=out.server_tx)
    assert handled >= 20
    drive(layer, 1000.0)
    assert len(layer) == 0


def stale_entries(layer: TransactionLayer) -> int:
    from softswitch.sip.transaction import _SLOT
    return sum(1 for _, seq, tx, name in layer._heap if getattr(tx, _SLOT[name]) != seq)


def test_heap_compaction_while_timers_fire_keeps_every_timer_once(layer: TransactionLayer) -> None:
    reqs = [outgoing() for _ in range(2000)]
    for req in reqs:
        layer.send_request(req, PEER, 0.0)
    for req in reqs[:1500]:
        layer.receive(answer(req, 180), PEER, 0.1)  # disarms A and B: 3000 stale entries
    assert layer._stale == stale_entries(layer) == 3000
    first = layer.tick(0.5)  # the 500 re-arming timer A compact the heap mid-tick
    assert len(sends(first)) == 500
    assert layer._stale == stale_entries(layer)
    assert len(sends(layer.tick(1.5))) == 500
    assert layer._stale == stale_entries(layer) and len(layer._heap) < 2000


def test_stateless_response_to_ipv6_via_drops_brackets(layer: TransactionLayer) -> None:
    req = request("OPTIONS", sent_by="[2001:db8::9]:5070")
    (send,) = layer.send_response(make_response(req, 200), 0.0)
    assert send.dest == Addr("udp", "2001:db8::9", 5070)


def test_ack_for_2xx_reusing_invite_branch_reaches_tu_in_accepted(layer: TransactionLayer) -> None:
    # Some UAs wrongly reuse the INVITE's branch on the ACK for a 2xx; RFC 6026 passes it to the TU.
    req, tx = new_invite(layer)
    layer.send_response(make_response(req, 200, to_tag="t1"), 0.0)
    ack = request("ACK", cseq_method="ACK", to_tag="t1")
    assert layer.receive(ack, PEER, 0.1) == [AckReceived(ack, PEER)]
    assert tx.state is State.ACCEPTED


def test_rfc2543_ack_for_2xx_reaches_tu(layer: TransactionLayer) -> None:
    req, tx = new_invite(layer, branch="")
    layer.send_response(make_response(req, 200, to_tag="t1"), 0.0)
    ack = request("ACK", branch="", cseq_method="ACK", to_tag="t1")
    assert layer.receive(ack, PEER, 0.1) == [AckReceived(ack, PEER)]


def test_rfc2543_cancel_with_other_request_uri_is_answered_481(layer: TransactionLayer) -> None:
    new_invite(layer, branch="")
    out = layer.receive(request("CANCEL", branch="", uri="sip:carol@192.0.2.1"), PEER, 0.1)
    assert [sent_message(s).status for s in sends(out)] == [481]  # type: ignore[union-attr]


def test_response_without_via_is_stray(layer: TransactionLayer) -> None:
    resp = answer(outgoing("OPTIONS"), 200)
    resp.headers.remove("Via")
    assert layer.receive(resp, PEER, 0.0) == [StrayResponse(resp, PEER)]
