"""The B2BUA's transfer rules without a network: its SIP service is a recorder, so each request,
response and ACK it sends can be looked at. RFC 3891 section 3 matching (481, 486 early-only, 603
for a dialog that ended), failed and abandoned blind transfers (RFC 5589)."""

from __future__ import annotations

from collections.abc import Callable

from softswitch.calls.b2bua import B2BUA, Call, Target
from softswitch.sip.message import Request, Response, make_response, parse_message
from softswitch.sip.transaction import Addr

ALICE = Addr("udp", "127.0.0.2", 5062)
BOB = Addr("udp", "127.0.0.3", 5063)
CAROL = Addr("udp", "127.0.0.4", 5064)


class RecordingSip:
    """The node's services as the B2BUA sees them, recording everything it sends."""

    def __init__(self) -> None:
        self.requests: list[tuple[Request, Addr, Callable[[Response], None]]] = []
        self.responses: list[Response] = []
        self.acks: list[tuple[Request, Addr]] = []
        self.cancelled: list[object] = []

    def send_request(self, req: Request, dest: Addr, on_response: Callable[[Response], None]) -> object:
        self.requests.append((req, dest, on_response))
        return req

    def cancel(self, tx: object) -> None:
        self.cancelled.append(tx)

    def respond(self, resp: Response) -> None:
        self.responses.append(resp)

    def send_ack(self, req: Request, dest: Addr) -> None:
        self.acks.append((req, dest))

    def via(self, dest: Addr) -> str:
        return "SIP/2.0/UDP 127.0.0.1:5060"

    def contact(self, user: str, dest: Addr) -> str:
        return f"<sip:{user}@127.0.0.1:5060>"

    def call_later(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        return lambda: None

    def resolve(self, uri: str, transport_hint: str = "udp") -> Addr:
        raise ValueError(uri)

    def sent(self, method: str, dest: Addr | None = None) -> list[tuple[Request, Addr, Callable[[Response], None]]]:
        return [r for r in self.requests if r[0].method == method and (dest is None or r[1] == dest)]


SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def request(method: str, *, call_id: str, from_: str, to: str, cseq: int, extra: tuple[str, ...] = (),
            body: bytes = b"", uri: str = "sip:switch@127.0.0.1") -> Request:
    lines = [f"{method} {uri} SIP/2.0", f"Via: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK{method}{cseq}{call_id}",
             "Max-Forwards: 70", f"From: {from_}", f"To: {to}", f"Call-ID: {call_id}", f"CSeq: {cseq} {method}",
             "Contact: <sip:alice@127.0.0.2:5062>", *extra]
    if body:
        lines.append("Content-Type: application/sdp")
    lines += [f"Content-Length: {len(body)}", "", ""]
    msg = parse_message("\r\n".join(lines).encode() + body)
    assert isinstance(msg, Request)
    return msg


def answered_call(b2bua: B2BUA, sip: RecordingSip, call_id: str = "call-1") -> Call:
    """alice calls bob through the switch and bob answers; alice's ACK arrives."""
    invite = request("INVITE", call_id=call_id, from_="<sip:alice@test.local>;tag=a1", to="<sip:bob@test.local>",
                     cseq=1, body=SDP)
    call = b2bua.start_call(invite, ALICE, "alice", "bob", [Target(uri="sip:bob@127.0.0.3:5063", dest=BOB, user="bob")])
    out, _, on_response = sip.sent("INVITE", BOB)[-1]
    ok = make_response(out, 200, to_tag="b1")
    ok.headers.add("Contact", "<sip:bob@127.0.0.3:5063>")
    ok.headers.add("Content-Type", "application/sdp")
    ok.body = SDP
    on_response(ok)
    assert call.state == "answered"
    b2bua.on_ack(request("ACK", call_id=call_id, from_="<sip:alice@test.local>;tag=a1",
                         to=f"<sip:bob@test.local>;tag={call.a.tag}", cseq=1))
    return call


def replacing_invite(call_id: str, to_tag: str, from_tag: str, flags: str = "") -> Request:
    return request("INVITE", call_id="new-1", from_="<sip:carol@test.local>;tag=c1", to="<sip:bob@test.local>",
                   cseq=1, body=SDP, extra=(f"Replaces: {call_id};to-tag={to_tag};from-tag={from_tag}{flags}",))


def make() -> tuple[B2BUA, RecordingSip]:
    sip = RecordingSip()
    return B2BUA(sip, publish=lambda e: None), sip


def test_invite_with_replaces_matches_call_id_and_the_switchs_local_and_remote_tags():
    b2bua, sip = make()
    call = answered_call(b2bua, sip)
    b2bua.on_replaces(replacing_invite("call-1", call.a.tag, "wrong"), CAROL, "carol")
    b2bua.on_replaces(replacing_invite("call-1", "a1", call.a.tag), CAROL, "carol")  # tags swapped
    b2bua.on_replaces(replacing_invite("other", call.a.tag, "a1"), CAROL, "carol")
    assert [r.status for r in sip.responses[-3:]] == [481, 481, 481]
    assert call.state == "answered"


def test_early_only_replaces_of_a_confirmed_dialog_gets_486():
    b2bua, sip = make()
    call = answered_call(b2bua, sip)
    b2bua.on_replaces(replacing_invite("call-1", call.a.tag, "a1", ";early-only"), CAROL, "carol")
    assert sip.responses[-1].status == 486 and call.state == "answered"


def test_replaces_of_a_dialog_that_ended_gets_603():
    b2bua, sip = make()
    call = answered_call(b2bua, sip)
    tag = call.a.tag
    b2bua.on_in_dialog(request("BYE", call_id="call-1", from_="<sip:alice@test.local>;tag=a1",
                               to=f"<sip:bob@test.local>;tag={tag}", cseq=2))
    assert call.state == "ended"
    b2bua.on_replaces(replacing_invite("call-1", tag, "a1"), CAROL, "carol")
    assert sip.responses[-1].status == 603


def test_replaces_of_the_switchs_own_ringing_leg_gets_481():
    b2bua, sip = make()
    invite = request("INVITE", call_id="ring-1", from_="<sip:alice@test.local>;tag=a1", to="<sip:bob@test.local>",
                     cseq=1, body=SDP)
    b2bua.start_call(invite, ALICE, "alice", "bob", [Target(uri="sip:bob@127.0.0.3:5063", dest=BOB, user="bob")])
    out, _, on_response = sip.sent("INVITE", BOB)[-1]
    ringing = make_response(out, 180, to_tag="b1")
    on_response(ringing)
    b2bua.on_replaces(replacing_invite(out.call_id or "", out.from_.tag or "", "b1"), CAROL, "carol")
    assert sip.responses[-1].status == 481


def test_replaces_takes_over_the_side_it_names_and_hangs_up_the_replaced_party():
    b2bua, sip = make()
    call = answered_call(b2bua, sip)
    b2bua.on_replaces(replacing_invite("call-1", call.a.tag, "a1"), CAROL, "carol")
    reinvite, _, on_response = sip.sent("INVITE", BOB)[-1]  # bob gets carol's offer
    assert reinvite.body == SDP and reinvite.to.tag == "b1"
    ok = make_response(reinvite, 200)
    ok.headers.add("Content-Type", "application/sdp")
    ok.body = SDP
    on_response(ok)
    assert sip.acks[-1][1] == BOB
    answer = sip.responses[-1]
    assert answer.status == 200 and answer.body == SDP and answer.call_id == "new-1"
    assert sip.sent("BYE", ALICE)  # the replaced phone is hung up
    assert call.a.source == CAROL and call.a.dialog is not None and call.a.dialog.remote_tag == "c1"


def refer(call: Call, refer_to: str, cseq: int = 2) -> Request:
    return request("REFER", call_id="call-1", from_="<sip:alice@test.local>;tag=a1",
                   to=f"<sip:bob@test.local>;tag={call.a.tag}", cseq=cseq, extra=(f"Refer-To: {refer_to}",))


def notify_frags(sip: RecordingSip) -> list[tuple[bytes, str]]:
    return [(r.body, r.headers.get("Subscription-State") or "") for r, _, _ in sip.sent("NOTIFY", ALICE)]


def test_blind_transfer_to_a_target_nobody_has_reports_404_and_the_call_goes_on():
    b2bua, sip = make()
    b2bua.lookup = lambda number, caller: []
    call = answered_call(b2bua, sip)
    b2bua.on_in_dialog(refer(call, "<sip:nobody@test.local>"))
    assert sip.responses[-1].status == 202
    (trying, _), (failed, state) = notify_frags(sip)
    assert trying == b"SIP/2.0 100 Trying\r\n" and failed.startswith(b"SIP/2.0 404") and state.startswith("terminated")
    assert call.state == "answered" and call.transfer is None and not sip.sent("BYE")


def test_a_second_refer_while_a_transfer_is_under_way_gets_491():
    b2bua, sip = make()
    b2bua.lookup = lambda number, caller: [Target(uri="sip:carol@127.0.0.4:5064", dest=CAROL, user="carol")]
    call = answered_call(b2bua, sip)
    b2bua.on_in_dialog(refer(call, "<sip:carol@test.local>"))
    b2bua.on_in_dialog(refer(call, "<sip:carol@test.local>", cseq=3))
    assert [r.status for r in sip.responses[-2:]] == [202, 491]


def test_blind_transfer_completes_when_the_transferor_hangs_up_before_the_target_answers():
    b2bua, sip = make()
    b2bua.lookup = lambda number, caller: [Target(uri="sip:carol@127.0.0.4:5064", dest=CAROL, user="carol")]
    call = answered_call(b2bua, sip)
    b2bua.on_in_dialog(refer(call, "<sip:carol@test.local>"))
    invite, _, ring_response = sip.sent("INVITE", CAROL)[-1]
    assert invite.body == b""  # no offer: carol makes one (RFC 3725 flow I)
    b2bua.on_in_dialog(request("BYE", call_id="call-1", from_="<sip:alice@test.local>;tag=a1",
                               to=f"<sip:bob@test.local>;tag={call.a.tag}", cseq=3))
    assert sip.responses[-1].status == 200 and call.state == "answered" and not sip.sent("BYE", BOB)
    ok = make_response(invite, 200, to_tag="c1")
    ok.headers.add("Contact", "<sip:carol@127.0.0.4:5064>")
    ok.headers.add("Content-Type", "application/sdp")
    ok.body = SDP
    ring_response(ok)
    reinvite, _, on_response = sip.sent("INVITE", BOB)[-1]  # bob gets carol's offer
    assert reinvite.body == SDP
    answer = make_response(reinvite, 200)
    answer.headers.add("Content-Type", "application/sdp")
    answer.body = b"v=0\r\nanswer\r\n"
    on_response(answer)
    ack_to_carol = [a for a, dest in sip.acks if dest == CAROL][-1]
    assert ack_to_carol.body == b"v=0\r\nanswer\r\n"  # bob's answer goes to carol in the ACK
    assert call.a.source == CAROL and call.transfer is None
    assert [frag for frag, _ in notify_frags(sip)] == [b"SIP/2.0 100 Trying\r\n"]  # none after the BYE
    assert not sip.sent("BYE", ALICE)


def test_attended_refer_naming_an_unknown_dialog_reports_481_and_the_call_goes_on():
    b2bua, sip = make()
    call = answered_call(b2bua, sip)
    b2bua.on_in_dialog(refer(call, "<sip:carol@test.local?Replaces=nope%3Bto-tag%3Dx%3Bfrom-tag%3Dy>"))
    assert sip.responses[-1].status == 202
    (_, _), (failed, state) = notify_frags(sip)
    assert failed.startswith(b"SIP/2.0 481") and state.startswith("terminated")
    assert call.state == "answered" and call.transfer is None


def test_attended_refer_naming_its_own_dialog_is_refused():
    b2bua, sip = make()
    call = answered_call(b2bua, sip)
    own = f"call-1%3Bto-tag%3D{call.a.tag}%3Bfrom-tag%3Da1"
    b2bua.on_in_dialog(refer(call, f"<sip:bob@test.local?Replaces={own}>"))
    (_, _), (failed, _) = notify_frags(sip)
    assert failed.startswith(b"SIP/2.0 403") and call.state == "answered"


def test_attended_transfer_joins_the_two_remaining_parties_and_releases_the_transferor():
    b2bua, sip = make()
    first = answered_call(b2bua, sip, "call-1")  # alice - bob
    second = answered_call(b2bua, sip, "call-2")  # alice - bob again (a second phone of bob's: carol's role)
    replaces = f"call-2%3Bto-tag%3D{second.a.tag}%3Bfrom-tag%3Da1"
    b2bua.on_in_dialog(refer(first, f"<sip:bob@test.local?Replaces={replaces}>"))
    # Second call's bob is asked for an offer (re-INVITE without SDP) ...
    offerless, _, offered = sip.sent("INVITE", BOB)[-1]
    assert offerless.body == b"" and offerless.call_id == second.b.dialog.call_id
    ok = make_response(offerless, 200)
    ok.headers.add("Content-Type", "application/sdp")
    ok.body = SDP
    offered(ok)
    # ... which goes to the first call's bob, whose answer comes back in the ACK.
    reoffer, _, answered = sip.sent("INVITE", BOB)[-1]
    assert reoffer.body == SDP and reoffer.call_id == first.b.dialog.call_id
    answer = make_response(reoffer, 200)
    answer.headers.add("Content-Type", "application/sdp")
    answer.body = b"v=0\r\nanswer\r\n"
    answered(answer)
    acks = [a for a, _ in sip.acks if a.call_id == second.b.dialog.call_id]
    assert acks[-1].body == b"v=0\r\nanswer\r\n"
    assert second.state == "ended" and second.cause == "transferred"
    assert first.state == "answered" and first.a.dialog.call_id == second.b.dialog.call_id
    byes = sip.sent("BYE", ALICE)
    assert [b.call_id for b, _, _ in byes] == ["call-2"]  # call-1's transferor after the NOTIFY
    notify, _, notified = sip.sent("NOTIFY", ALICE)[-1]
    assert notify.body == b"SIP/2.0 200 OK\r\n"
    notified(make_response(notify, 200))
    assert sorted(b.call_id for b, _, _ in sip.sent("BYE", ALICE)) == ["call-1", "call-2"]


def test_a_transfer_target_still_ringing_is_cancelled_when_the_call_ends():
    b2bua, sip = make()
    b2bua.lookup = lambda number, caller: [Target(uri="sip:carol@127.0.0.4:5064", dest=CAROL, user="carol")]
    call = answered_call(b2bua, sip)
    b2bua.on_in_dialog(refer(call, "<sip:carol@test.local>"))
    invite, _, _ = sip.sent("INVITE", CAROL)[-1]
    b2bua.on_in_dialog(request("BYE", call_id=call.b.dialog.call_id, from_="<sip:bob@test.local>;tag=b1",
                               to=f"<sip:bob@test.local>;tag={call.b.dialog.local_tag}", cseq=2))
    assert call.state == "ended" and invite in sip.cancelled
