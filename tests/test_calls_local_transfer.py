"""Blind REFER on a call the switch anchors, from either party, with a recording SIP service: the
application is asked with the transferor's side, and the leg it rings takes that side's place."""

from __future__ import annotations

from softswitch.calls.b2bua import B2BUA, Call, OutLeg, Target
from softswitch.sip.message import Request, make_response
from tests.test_calls_transfer import ALICE, BOB, CAROL, SDP, RecordingSip, make, request


class Transferring:
    """The application side: on REFER it rings carol with the transferor's side, as CallSession does."""

    def __init__(self, b2bua: B2BUA) -> None:
        self.b2bua = b2bua
        self.refers: list[tuple[str, str]] = []
        self.results: list[tuple[OutLeg | None, int, bytes]] = []

    def on_ended(self, call: Call, side: str, cause: str) -> None:
        pass

    def on_reoffer(self, call: Call, side: str, sdp: bytes) -> bytes:
        return SDP

    def on_refer(self, call: Call, refer_to: str, side: str = "b") -> bool:
        self.refers.append((refer_to, side))
        self.b2bua.originate(call, [Target(uri="sip:carol@127.0.0.4:5064", dest=CAROL, user="carol")], SDP,
                             timeout=30, on_result=lambda *r: self.results.append(r), side=side)
        return True


def answer(sip: RecordingSip, dest, tag: str) -> Request:
    out, _, on_response = sip.sent("INVITE", dest)[-1]
    ok = make_response(out, 200, to_tag=tag)
    ok.headers.add("Contact", f"<sip:{tag}@{dest.host}:{dest.port}>")
    ok.headers.add("Content-Type", "application/sdp")
    ok.body = SDP
    on_response(ok)
    return out


def placed_call(b2bua: B2BUA, sip: RecordingSip, app: Transferring) -> Call:
    """The switch rings agent alice (she answers: the first party), then customer bob (answers)."""
    call = b2bua.originate_call("0312345678", "alice", [Target(uri="sip:alice@127.0.0.2:5062", dest=ALICE,
                                                               user="alice")],
                                SDP, timeout=30, observer=app, on_result=lambda *r: None)
    answer(sip, ALICE, "al")
    b2bua.originate(call, [Target(uri="sip:bob@127.0.0.3:5063", dest=BOB, user="bob")], SDP, timeout=30,
                    on_result=lambda *r: None)
    answer(sip, BOB, "bo")
    assert call.state == "answered" and call.a.source == ALICE and call.b is not None
    return call


def refer_from(call: Call, side: str) -> Request:
    dialog = call.a.dialog if side == "a" else call.b.dialog  # type: ignore[union-attr]
    assert dialog is not None
    return request("REFER", call_id=dialog.call_id, from_=f"<sip:x@test.local>;tag={dialog.remote_tag}",
                   to=f"<sip:y@test.local>;tag={dialog.local_tag}", cseq=2,
                   extra=("Refer-To: <sip:carol@test.local>",))


def test_the_first_party_of_an_anchored_call_blind_transfers_the_other_and_is_hung_up():
    b2bua, sip = make()
    app = Transferring(b2bua)
    call = placed_call(b2bua, sip, app)
    alice_dialog = call.a.dialog
    b2bua.on_in_dialog(refer_from(call, "a"))
    assert sip.responses[-1].status == 202 and app.refers == [("<sip:carol@test.local>", "a")]
    notify, dest, _ = sip.sent("NOTIFY")[-1]
    assert dest == ALICE and notify.call_id == alice_dialog.call_id  # progress goes to the transferor
    answer(sip, CAROL, "ca")
    ((leg, status, _),) = app.results
    assert leg is not None and leg.target.user == "carol" and status == 200
    (bye, _, _), = sip.sent("BYE", ALICE)
    assert bye.call_id == alice_dialog.call_id and not sip.sent("BYE", BOB)
    assert call.a.source == CAROL and call.a.dialog is leg.dialog and call.b is not None and call.b.target.user == "bob"
    # carol hanging up now ends the call for bob as well
    d = call.a.dialog
    b2bua.on_in_dialog(request("BYE", call_id=d.call_id, from_=f"<sip:carol@test.local>;tag={d.remote_tag}",
                               to=f"<sip:x@test.local>;tag={d.local_tag}", cseq=2))
    assert call.state == "ended" and call.side == "caller" and sip.sent("BYE", BOB)


def test_the_called_party_still_transfers_the_first_one():
    b2bua, sip = make()
    app = Transferring(b2bua)
    call = placed_call(b2bua, sip, app)
    bob_dialog = call.b.dialog  # type: ignore[union-attr]
    b2bua.on_in_dialog(refer_from(call, "b"))
    assert sip.responses[-1].status == 202 and app.refers[-1][1] == "b"
    answer(sip, CAROL, "ca")
    (bye, _, _), = sip.sent("BYE", BOB)
    assert bye.call_id == bob_dialog.call_id and not sip.sent("BYE", ALICE)
    assert call.a.source == ALICE and call.b is not None and call.b.target.user == "carol"


def test_a_refer_before_anyone_is_connected_to_the_first_party_is_refused():
    b2bua, sip = make()
    app = Transferring(b2bua)
    call = b2bua.originate_call("0312345678", "alice", [Target(uri="sip:alice@127.0.0.2:5062", dest=ALICE,
                                                               user="alice")],
                                SDP, timeout=30, observer=app, on_result=lambda *r: None)
    answer(sip, ALICE, "al")
    b2bua.on_in_dialog(refer_from(call, "a"))
    assert sip.responses[-1].status == 403 and not app.refers
