"""INVITE with Replaces naming an early dialog the switch initiated (RFC 3891 section 3: directed
call pickup), with a recording SIP service: which ringing legs may be taken over, and what the
switch sends when one is."""

from __future__ import annotations

from softswitch.calls.b2bua import B2BUA, Attempt, Call, OutLeg, Target
from softswitch.sip.message import make_response
from tests.test_calls_transfer import ALICE, BOB, CAROL, SDP, RecordingSip, make, replacing_invite, request

ANSWER = b"v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4002 RTP/AVP 0\r\n"


def ringing_dial(b2bua: B2BUA, sip: RecordingSip, *, replaceable: bool = True
                 ) -> tuple[Call, Attempt, list[tuple[OutLeg | None, int, bytes]], list[bytes]]:
    """alice's call answered by the switch's dialplan, which rings bob (who sends 180)."""
    invite = request("INVITE", call_id="call-1", from_="<sip:alice@test.local>;tag=a1", to="<sip:800@test.local>",
                     cseq=1, body=SDP)
    call = b2bua.accept(invite, ALICE, "alice", "800", observer=None)  # type: ignore[arg-type]
    results: list[tuple[OutLeg | None, int, bytes]] = []
    offers: list[bytes] = []

    def answer_offer(offer: bytes) -> bytes | None:
        offers.append(offer)
        return ANSWER

    attempt = b2bua.originate(call, [Target(uri="sip:bob@127.0.0.3:5063", dest=BOB, user="bob")], SDP, timeout=20,
                              on_result=lambda *r: results.append(r),
                              answer_offer=answer_offer if replaceable else None)
    out, _, on_response = sip.sent("INVITE", BOB)[-1]
    on_response(make_response(out, 180, to_tag="b1"))
    return call, attempt, results, offers


def test_replaces_naming_a_ringing_dial_leg_answers_the_dial_with_the_new_phone_and_cancels_the_ringing_one():
    b2bua, sip = make()
    call, attempt, results, offers = ringing_dial(b2bua, sip)
    out = attempt.legs[0].invite
    b2bua.on_replaces(replacing_invite(out.call_id or "", out.from_.tag or "", "b1"), CAROL, "carol")
    ok = sip.responses[-1]
    assert ok.status == 200 and ok.body == ANSWER and ok.call_id == "new-1" and ok.to.tag
    assert offers == [SDP]  # carol's offer answered from the dial's media leg
    assert out in sip.cancelled  # bob's phone stops ringing
    ((leg, status, body),) = results
    assert leg is not None and leg.target.user == "carol" and leg.target.dest == CAROL and status == 200
    assert body == SDP and call.b is leg and attempt.done
    # carol's hang-up is an in-dialog BYE of the call
    b2bua.on_in_dialog(request("BYE", call_id="new-1", from_="<sip:carol@test.local>;tag=c1",
                               to=f"<sip:bob@test.local>;tag={ok.to.tag}", cseq=2))
    assert sip.responses[-1].status == 200 and call.state == "ended" and call.side == "callee"


def test_early_only_replaces_of_a_ringing_dial_leg_is_accepted():
    b2bua, sip = make()
    _, attempt, results, _ = ringing_dial(b2bua, sip)
    out = attempt.legs[0].invite
    b2bua.on_replaces(replacing_invite(out.call_id or "", out.from_.tag or "", "b1", ";early-only"), CAROL, "carol")
    assert sip.responses[-1].status == 200 and len(results) == 1


def test_replaces_of_a_ringing_leg_with_the_wrong_from_tag_gets_481_and_it_keeps_ringing():
    b2bua, sip = make()
    _, attempt, results, _ = ringing_dial(b2bua, sip)
    out = attempt.legs[0].invite
    b2bua.on_replaces(replacing_invite(out.call_id or "", out.from_.tag or "", "other"), CAROL, "carol")
    b2bua.on_replaces(replacing_invite(out.call_id or "", "b1", out.from_.tag or ""), CAROL, "carol")  # swapped
    assert [r.status for r in sip.responses[-2:]] == [481, 481]
    assert not results and not attempt.done and not sip.cancelled


def test_ringing_legs_not_offered_for_pickup_get_481():
    b2bua, sip = make()
    _, attempt, results, _ = ringing_dial(b2bua, sip, replaceable=False)  # a queue offer, a transfer target
    out = attempt.legs[0].invite
    b2bua.on_replaces(replacing_invite(out.call_id or "", out.from_.tag or "", "b1"), CAROL, "carol")
    assert sip.responses[-1].status == 481 and not results and not attempt.done


def test_pickup_without_an_offer_gets_488_and_the_call_keeps_ringing():
    b2bua, sip = make()
    _, attempt, results, _ = ringing_dial(b2bua, sip)
    out = attempt.legs[0].invite
    invite = replacing_invite(out.call_id or "", out.from_.tag or "", "b1")
    invite.body = b""
    b2bua.on_replaces(invite, CAROL, "carol")
    assert sip.responses[-1].status == 488 and not results and not attempt.done


def test_a_leg_that_stopped_ringing_can_no_longer_be_picked_up():
    b2bua, sip = make()
    _, attempt, results, _ = ringing_dial(b2bua, sip)
    out, _, on_response = sip.sent("INVITE", BOB)[-1]
    on_response(make_response(out, 486, to_tag="b1"))
    b2bua.on_replaces(replacing_invite(out.call_id or "", out.from_.tag or "", "b1"), CAROL, "carol")
    assert sip.responses[-1].status == 481 and results == [(None, 486, b"")]
