"""The B2BUA: every call is an inbound leg and one or more outbound legs, each its own dialog.

Callback-driven (no coroutines): the node feeds it requests, responses, ACKs, CANCELs and timer
expiries; it sends through the node's transaction layer. SDP is relayed between the legs as is.
Forking rings every live contact of the callee at once: the first 2xx wins, the others are
cancelled, and a late 2xx from a loser is acknowledged and hung up at once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from softswitch.events import CDR, CallAnswered, CallEnded, CallStarted, Event
from softswitch.sip.dialog import Dialog, DialogError, Replaces, parse_replaces
from softswitch.sip.errors import SipParseError
from softswitch.sip.message import Request, Response, make_response, new_call_id, new_tag
from softswitch.sip.reliable import Output, PrackTimeout, ReliableProvisionals, SendResponse
from softswitch.sip.transaction import Addr
from softswitch.sip.uri import SipURI, parse_name_addr

log = logging.getLogger(__name__)

#: Headers a B2BUA copies from one leg's request to the other's (the rest are per-leg).
RELAYED = ("Content-Type", "Content-Disposition", "Session-Expires", "Min-SE", "Accept", "Allow-Events",
           "User-Agent", "Subject", "Priority", "P-Asserted-Identity", "Privacy")


class SipService(Protocol):
    """What the B2BUA needs from the node."""

    def send_request(
        self, req: Request, dest: Addr, on_response: Callable[[Response], None]
    ) -> object: ...
    def cancel(self, tx: object) -> None: ...
    def respond(self, resp: Response) -> None: ...
    def send_ack(self, req: Request, dest: Addr) -> None: ...
    def via(self, dest: Addr) -> str: ...
    def contact(self, user: str, dest: Addr) -> str: ...
    def call_later(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]: ...
    def resolve(self, uri: str, transport_hint: str = "udp") -> Addr: ...


@dataclass(slots=True)
class Target:
    """One place to ring: a request URI and where to send it."""

    uri: str
    dest: Addr
    user: str = ""
    # Trunk legs (softswitch.calls.trunks): `prepare` rewrites the INVITE before it is sent
    # (number form, caller ID, privacy); `authorize` answers a 401/407 with the INVITE to resend,
    # or None to give up.
    prepare: Callable[[Request], None] | None = None
    authorize: Callable[[Request, Response], Request | None] | None = None


@dataclass(slots=True)
class OutLeg:
    """One outbound (callee-side) leg while it rings and after it answers."""

    target: Target
    invite: Request
    tx: object | None = None
    dialog: Dialog | None = None
    status: int = 0
    cancelled: bool = False
    done: bool = False
    rseq: int = 0  # the last reliable provisional acknowledged with PRACK (RFC 3262)
    # Legs the switch rings for a transfer handle their own responses (not the call's ringing logic).
    handler: Callable[[Response], None] | None = None


@dataclass(slots=True)
class InLeg:
    """The inbound (caller-side) leg."""

    invite: Request
    source: Addr
    tag: str
    dialog: Dialog | None = None
    answer: Response | None = None
    acked: bool = False
    retransmit_cancel: Callable[[], None] | None = None
    # RFC 3262 towards a caller that supports 100rel: its provisionals go reliably.
    reliable: ReliableProvisionals | None = None
    reliable_timer: Callable[[], None] | None = None


@dataclass(slots=True)
class Call:
    """A call through the switch."""

    uuid: str
    caller: str
    callee: str
    a: InLeg
    legs: list[OutLeg] = field(default_factory=list)
    b: OutLeg | None = None  # the leg that answered
    start: float = 0.0
    answer: float | None = None
    end: float | None = None
    state: str = "routing"  # routing | ringing | answered | ended
    best: Response | None = None
    cause: str = ""
    side: str = ""
    trunk: str = ""
    did: str = ""
    no_answer_cancel: Callable[[], None] | None = None
    pending: dict[str, tuple[str, object]] = field(default_factory=dict)
    # Local mode: the switch answers the caller itself (dialplan, IVR, queue) and legs it
    # originates are bridged in media, not relayed. The observer hears what happens to the call.
    local: bool = False
    observer: CallObserver | None = None
    attempts: list[Attempt] = field(default_factory=list)
    queue: str = ""
    agent: str = ""
    customer_id: str = ""
    local_sdp: bytes = b""
    placed: bool = False  # the switch placed it (callback, click-to-call): no inbound leg
    # Relay calls to a user with forwarding: on busy / no answer, where to ring next (once).
    forward: Callable[[int], list[Target]] | None = None
    transfer: Transfer | None = None  # a transfer under way that involves this call


@dataclass(slots=True)
class Transfer:
    """A transfer under way: the transferor's dialog in one call (the REFER's, where NOTIFYs go,
    or the dialog a Replaces names) and whether the transferor hung up meanwhile."""

    side: str
    dialog: Dialog
    dest: Addr
    user: str  # whom the switch stands for towards the transferor (the Contact's user)
    notify: bool = True
    gone: bool = False
    partner: Call | None = None  # the other call of an attended transfer


class CallObserver(Protocol):
    """What a locally answered call reports to the application driving it."""

    def on_ended(self, call: Call, side: str, cause: str) -> None:
        """The call is over (`side` hung up: caller, callee or system)."""

    def on_reoffer(self, call: Call, side: str, sdp: bytes) -> bytes:
        """A leg sent a new offer (hold, codec change): return our answer SDP."""

    def on_refer(self, call: Call, refer_to: str, side: str = "b") -> bool:
        """The party on `side` asks to transfer the other one to `refer_to` (blind, RFC 3515)."""


@dataclass(slots=True)
class Attempt:
    """One originate: legs rung in parallel for the application (an agent, a dialled user)."""

    call: Call
    legs: list[OutLeg]
    on_result: Callable[[OutLeg | None, int, bytes], None]  # (answered leg or None, status, SDP)
    done: bool = False
    best: int = 0
    timer_cancel: Callable[[], None] | None = None
    # Set for attempts whose ringing legs another phone may take over with Replaces (directed call
    # pickup, RFC 3891): our SDP answer to that phone's offer, from the attempt's media endpoint.
    answer_offer: Callable[[bytes], bytes | None] | None = None
    # The side of the call the answering leg takes: "b" (the leg it rings), or "a" when the first
    # party transfers the other one (its own dialog is hung up instead).
    side: str = "b"


#: CDR dispositions of failure statuses.
DISPOSITIONS = {486: "busy", 600: "busy", 603: "declined", 480: "no-answer", 408: "no-answer", 487: "cancelled",
                404: "failed"}

# The response a caller sees when every fork failed: most telling first (RFC 3261 16.7 spirit).
_PREFERENCE = (486, 600, 603, 404, 604, 484, 488, 606, 480, 487, 408, 503, 500)


class B2BUA:
    """Routes new INVITEs into calls and relays everything inside them."""

    def __init__(
        self,
        sip: SipService,
        *,
        publish: Callable[[Event], None],
        no_answer_timeout: float = 60.0,
        t1: float = 0.5,
        t2: float = 4.0,
        session_expires: float = 1800.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sip = sip
        self.publish = publish
        self.no_answer_timeout = no_answer_timeout
        self.t1 = t1
        self.t2 = t2
        self.session_expires = session_expires
        self.clock = clock
        self.calls: dict[str, Call] = {}
        # (call_id, local_tag) -> (call, side) for in-dialog routing of both legs.
        self._by_dialog: dict[tuple[str, str], tuple[Call, str]] = {}
        self._by_invite: dict[tuple[str, str, int], Call] = {}
        # Where a transfer's target is (a user's phones, an outside number): set by the node.
        self.lookup: Callable[[str, str], list[Target]] | None = None
        # Dialogs that ended lately (an INVITE with Replaces naming one gets 603, RFC 3891), bounded.
        self._ended: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Transferors' dialogs the switch is hanging up: their own BYE still gets 200, not 481.
        self._released: dict[tuple[str, str], Dialog] = {}
        # 2xx answers to INVITEs with Replaces, resent until their ACK (RFC 3261 13.3.1.4).
        self._unacked: dict[tuple[str, str], Callable[[], None]] = {}

    # -- new calls --------------------------------------------------------------------------

    def start_call(
        self,
        invite: Request,
        source: Addr,
        caller: str,
        callee: str,
        targets: list[Target],
        *,
        trunk: str = "",
        did: str = "",
        no_answer_after: float | None = None,
        forward: Callable[[int], list[Target]] | None = None,
    ) -> Call:
        """Ring every target in parallel on behalf of the caller's INVITE; `forward` gives the
        targets to ring instead after a busy (486) or no answer (408) when every fork failed."""
        call = Call(
            uuid=uuid.uuid4().hex,
            caller=caller,
            callee=callee,
            a=InLeg(invite=invite, source=source, tag=new_tag(),
                    reliable=ReliableProvisionals.for_invite(invite, t1=self.t1)),
            start=self.clock(),
            trunk=trunk,
            did=did,
            forward=forward,
        )
        self.calls[call.uuid] = call
        self._by_invite[self._invite_key(invite)] = call
        self.publish(CallStarted(ts=call.start, call_uuid=call.uuid, caller=caller, callee=callee,
                                 trunk=trunk, did=did))
        self.sip.respond(make_response(invite, 100, "Trying"))
        mf = invite.max_forwards
        max_forwards = 70 if mf is None else max(0, mf - 1)
        for target in targets:
            self._fork(call, target, max_forwards)
        call.state = "ringing"
        timeout = no_answer_after if no_answer_after is not None else self.no_answer_timeout
        call.no_answer_cancel = self.sip.call_later(timeout, lambda: self._no_answer(call))
        return call

    def _fork(self, call: Call, target: Target, max_forwards: int) -> None:
        self._make_leg(call, target, max_forwards, call.a.invite.body)

    def _make_leg(self, call: Call, target: Target, max_forwards: int, body: bytes,
                  attempt: Attempt | None = None, from_user: str | None = None, fresh: bool = False) -> OutLeg:
        """Build and send one outbound INVITE for the call (relayed or local SDP)."""
        a = call.a.invite
        req = Request("INVITE", target.uri)
        h = req.headers
        h.add("Via", f"{self.sip.via(target.dest)};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport")
        h.add("Max-Forwards", str(max_forwards))
        from_ = a.from_
        display = f'"{from_.display}" ' if from_.display else ""
        h.add("From", f"{display}<sip:{from_user or call.caller}@{self._domain_of(a)}>;tag={new_tag()}")
        h.add("To", f"<{target.uri}>")
        h.add("Call-ID", new_call_id())
        h.add("CSeq", "1 INVITE")
        h.add("Contact", self.sip.contact(call.caller, target.dest))
        h.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER, NOTIFY, INFO, PRACK")
        h.add("Supported", "100rel, timer")
        if call.local or fresh:
            if body:
                h.add("Content-Type", "application/sdp")
        else:
            for name in RELAYED:
                v = a.headers.get(name)
                if v is not None:
                    h.add(name, v)
        req.body = body
        if target.prepare is not None:
            target.prepare(req)
        leg = OutLeg(target=target, invite=req)
        call.legs.append(leg)
        if attempt is not None:
            attempt.legs.append(leg)
        leg.tx = self.sip.send_request(req, target.dest, lambda resp: self._on_leg_response(call, leg, resp))
        return leg

    @staticmethod
    def _domain_of(req: Request) -> str:
        uri = req.to.uri
        return uri.host if isinstance(uri, SipURI) else "localhost"

    @staticmethod
    def _invite_key(req: Request) -> tuple[str, str, int]:
        return (req.call_id or "", req.from_.tag or "", req.cseq[0])

    # -- responses from callee legs ---------------------------------------------------------

    def _prack(self, leg: OutLeg, resp: Response) -> bool:
        """Acknowledge a reliable provisional response on an outbound leg (RFC 3262) with PRACK,
        once per RSeq: the callee keeps resending it until then and may give up the call.
        True when the response is a retransmission already acknowledged (not to be relayed)."""
        if "100rel" not in {t.lower() for t in resp.headers.get_all("Require")}:
            return False
        try:
            rseq = int((resp.headers.get("RSeq") or "").strip())
        except ValueError:
            return False
        if rseq <= leg.rseq:
            return True
        if not resp.to.tag:
            return False
        leg.rseq = rseq
        if leg.dialog is None:
            leg.dialog = Dialog.as_uac(leg.invite, resp)
        dest = leg.target.dest
        prack = leg.dialog.request("PRACK", via=self.sip.via(dest),
                                   headers=[("RAck", f"{rseq} {leg.invite.cseq[0]} INVITE")])
        self.sip.send_request(prack, dest, lambda r: None)
        return False

    def _on_leg_response(self, call: Call, leg: OutLeg, resp: Response) -> None:
        status = resp.status
        if status in (401, 407) and leg.target.authorize is not None and not leg.cancelled and not leg.done:
            retry = leg.target.authorize(leg.invite, resp)
            if retry is not None:
                # Same Call-ID and From tag, next CSeq: the leg continues as a new transaction,
                # sent once the transaction layer's ACK for the challenge is on the wire.
                leg.invite, leg.dialog, leg.tx = retry, None, None

                def resend() -> None:
                    if not (leg.cancelled or leg.done):
                        leg.tx = self.sip.send_request(retry, leg.target.dest,
                                                       lambda resp: self._on_leg_response(call, leg, resp))

                self.sip.call_later(0.0, resend)
                return
        if 100 < status < 200 and self._prack(leg, resp):
            return
        if leg.handler is not None:
            leg.handler(resp)
            return
        if call.local:
            self._on_attempt_response(call, leg, resp)
            return
        if status < 200:
            if status > 100 and resp.to.tag and leg.dialog is None:
                leg.dialog = Dialog.as_uac(leg.invite, resp)
            if status > 100 and call.state == "ringing" and not leg.cancelled:
                self._relay_provisional(call, resp)
            return
        if 200 <= status < 300:
            self._on_leg_answered(call, leg, resp)
            return
        leg.status = status
        leg.done = True
        if call.state != "ringing":
            return
        if call.best is None or _rank(status) < _rank(call.best.status):
            call.best = resp
        if all(lg.done for lg in call.legs):
            if not self._forward(call, call.best.status if call.best else status):
                self._fail(call, call.best or resp)

    def _relay_provisional(self, call: Call, resp: Response) -> None:
        a = call.a.invite
        out = make_response(a, resp.status, resp.reason, to_tag=call.a.tag)
        if resp.body:
            out.body = resp.body
            ctype = resp.headers.get("Content-Type")
            if ctype:
                out.headers.add("Content-Type", ctype)
            out.headers.add("Contact", self.sip.contact(call.callee, call.a.source))
        self._provisional(call, out)

    def _provisional(self, call: Call, resp: Response) -> None:
        """A 1xx to the caller: reliable (RFC 3262) when the caller supports 100rel, else as is."""
        rel = call.a.reliable
        if rel is None or resp.status == 100:
            self.sip.respond(resp)
            return
        if resp.headers.get("Contact") is None:
            resp.headers.add("Contact", self.sip.contact(call.callee, call.a.source))
        # The early dialog: the caller's PRACKs come in it.
        self._by_dialog.setdefault((call.a.invite.call_id or "", call.a.tag), (call, "a"))
        self._run_reliable(call, rel.provisional(resp, self.clock()))

    def _answer_caller(self, call: Call, ok: Response) -> None:
        """Send the caller our 2xx and resend it until the ACK; with 100rel it may wait for a PRACK."""
        rel = call.a.reliable
        self._run_reliable(call, rel.final(ok, self.clock()) if rel is not None else [SendResponse(ok)])

    def _run_reliable(self, call: Call, outputs: list[Output]) -> None:
        """Carry out what the RFC 3262 sender asks, and arm its next timer."""
        for out in outputs:
            if isinstance(out, SendResponse):
                self.sip.respond(out.response)
                if 200 <= out.response.status < 300 and out.response is call.a.answer:
                    self._retransmit_2xx(call, self.t1)
            elif isinstance(out, PrackTimeout):
                self._prack_timeout(call)
                return
        rel = call.a.reliable
        if call.a.reliable_timer is not None:
            call.a.reliable_timer()
            call.a.reliable_timer = None
        deadline = rel.next_deadline if rel is not None else None
        if rel is not None and deadline is not None:
            call.a.reliable_timer = self.sip.call_later(
                max(0.0, deadline - self.clock()), lambda: self._run_reliable(call, rel.tick(self.clock())))

    def _prack_timeout(self, call: Call) -> None:
        """No PRACK for a reliable provisional in 64*T1: the caller is unreachable; 5xx (RFC 3262 s3)."""
        log.info("call %s: no PRACK from the caller, failing the call", call.uuid)
        for leg in call.legs:
            if not leg.done:
                self._cancel_leg(leg)
        if call.b is not None and call.b.dialog is not None and call.state == "answered":
            self._bye(call.b.dialog, call.b.target.dest)  # answered, but the caller never got the 2xx
        self.sip.respond(make_response(call.a.invite, 504, "No PRACK", to_tag=call.a.tag))
        self._finish(call, "failed", "no-prack", "caller")

    def _on_leg_answered(self, call: Call, leg: OutLeg, resp: Response) -> None:
        dialog = Dialog.as_uac(leg.invite, resp)
        dialog.confirm(resp)
        if leg.dialog is not None and leg.dialog.remote_tag == dialog.remote_tag:
            leg.dialog.confirm(resp)
            dialog = leg.dialog
        # Every 2xx is acknowledged, even one we no longer want (RFC 3261 13.2.2.4).
        self._ack(dialog, leg.invite.cseq[0], leg.target.dest)
        if call.state != "ringing" or leg.cancelled or (call.b is not None and call.b is not leg):
            self._bye(dialog, leg.target.dest)
            return
        leg.dialog = dialog
        leg.done = True
        leg.status = resp.status
        call.b = leg
        call.state = "answered"
        call.answer = self.clock()
        if call.no_answer_cancel is not None:
            call.no_answer_cancel()
        for other in call.legs:
            if other is not leg and not other.done:
                self._cancel_leg(other)
        self._by_dialog[(dialog.call_id, dialog.local_tag)] = (call, "b")
        # Answer the caller with the callee's SDP.
        a = call.a.invite
        ok = make_response(a, 200, "OK", to_tag=call.a.tag)
        ok.headers.add("Contact", self.sip.contact(call.callee, call.a.source))
        ok.headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER, NOTIFY, INFO")
        ctype = resp.headers.get("Content-Type")
        if resp.body and ctype:
            ok.headers.add("Content-Type", ctype)
        ok.body = resp.body
        call.a.answer = ok
        call.a.dialog = Dialog.as_uas(a, call.a.tag)
        call.a.dialog.confirm()
        self._by_dialog[(call.a.dialog.call_id, call.a.tag)] = (call, "a")
        self._answer_caller(call, ok)
        self.publish(CallAnswered(ts=call.answer, call_uuid=call.uuid, answered_by=leg.target.user or call.callee))

    def _retransmit_2xx(self, call: Call, interval: float, elapsed: float = 0.0) -> None:
        """The UAS core resends its 2xx until the ACK comes (RFC 3261 13.3.1.4, RFC 6026)."""

        def again() -> None:
            if call.a.acked or call.state != "answered" or call.a.answer is None:
                return
            if elapsed + interval >= 64 * self.t1:
                log.info("call %s: no ACK for the 2xx, hanging up", call.uuid)
                self._hangup_both(call, "no-ack", "caller")
                return
            self.sip.respond(call.a.answer)
            self._retransmit_2xx(call, min(interval * 2, self.t2), elapsed + interval)

        call.a.retransmit_cancel = self.sip.call_later(interval, again)

    def _fail(self, call: Call, resp: Response) -> None:
        status = resp.status
        if status in (401, 407, 403):
            status = 503  # the callee's challenge is not the caller's business
        elif status >= 500 and status not in (503, 600, 603, 604, 606):
            status = 503 if status != 500 else 500
        out = make_response(call.a.invite, status, resp.reason if status == resp.status else None,
                            to_tag=call.a.tag)
        retry = resp.headers.get("Retry-After")
        if retry:
            out.headers.add("Retry-After", retry)
        self.sip.respond(out)
        disposition = DISPOSITIONS.get(status, "failed")
        self._finish(call, disposition, f"{status}", "callee")

    def _no_answer(self, call: Call) -> None:
        if call.state != "ringing":
            return
        for leg in call.legs:
            if not leg.done:
                self._cancel_leg(leg)
        if self._forward(call, 408):
            return
        out = make_response(call.a.invite, 480, "Temporarily Unavailable", to_tag=call.a.tag)
        self.sip.respond(out)
        self._finish(call, "no-answer", "no-answer-timeout", "system")

    def _forward(self, call: Call, status: int) -> bool:
        """Ring the user's forwarding target after a busy or unanswered first try (at most once)."""
        if call.forward is None:
            return False
        targets = call.forward(status)
        call.forward = None
        if not targets:
            return False
        log.info("call %s: forwarded after %d to %s", call.uuid, status, [t.uri for t in targets])
        call.best = None
        mf = call.a.invite.max_forwards
        for target in targets:
            self._fork(call, target, 70 if mf is None else max(0, mf - 1))
        if call.no_answer_cancel is not None:
            call.no_answer_cancel()
        call.no_answer_cancel = self.sip.call_later(self.no_answer_timeout, lambda: self._no_answer(call))
        return True

    def _cancel_leg(self, leg: OutLeg) -> None:
        leg.cancelled = True
        leg.done = True
        if leg.tx is not None:
            self.sip.cancel(leg.tx)

    # -- local mode: the switch answers and originates (dialplan, IVR, ACD) ----------------

    def accept(self, invite: Request, source: Addr, caller: str, callee: str, observer: CallObserver, *,
               trunk: str = "", did: str = "") -> Call:
        """Take a new INVITE as a call the switch itself handles; sends 100 Trying."""
        call = Call(uuid=uuid.uuid4().hex, caller=caller, callee=callee,
                    a=InLeg(invite=invite, source=source, tag=new_tag(),
                            reliable=ReliableProvisionals.for_invite(invite, t1=self.t1)),
                    start=self.clock(), trunk=trunk, did=did, local=True, observer=observer, state="ringing")
        self.calls[call.uuid] = call
        self._by_invite[self._invite_key(invite)] = call
        self.publish(CallStarted(ts=call.start, call_uuid=call.uuid, caller=caller, callee=callee,
                                 trunk=trunk, did=did))
        self.sip.respond(make_response(invite, 100, "Trying"))
        return call

    def answer_local(self, call: Call, sdp: bytes) -> None:
        """Answer the caller with our own SDP (media anchored at the switch)."""
        if call.state != "ringing":
            return
        a = call.a.invite
        call.local_sdp = sdp
        ok = make_response(a, 200, "OK", to_tag=call.a.tag)
        ok.headers.add("Contact", self.sip.contact(call.callee, call.a.source))
        ok.headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER, NOTIFY, INFO")
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = sdp
        interval = self._session_interval(a)
        if interval is not None:
            # RFC 4028: the switch refreshes the session itself (refresher=uas) and ends it when a
            # refresh goes unanswered, so a caller that vanished does not stay up for ever.
            ok.headers.add("Session-Expires", f"{int(interval)};refresher=uas")
            if "timer" in {t.lower() for t in a.headers.get_all("Supported")}:
                ok.headers.add("Require", "timer")
        call.a.answer = ok
        call.a.dialog = Dialog.as_uas(a, call.a.tag)
        call.a.dialog.confirm()
        self._by_dialog[(call.a.dialog.call_id, call.a.tag)] = (call, "a")
        call.state = "answered"
        call.answer = self.clock()
        self._answer_caller(call, ok)
        if interval is not None:
            self._schedule_refresh(call, interval)
        self.publish(CallAnswered(ts=call.answer, call_uuid=call.uuid, answered_by="switch"))

    def _session_interval(self, invite: Request) -> float | None:
        """The session interval for a call we answer: the caller's Session-Expires if it asked
        (never below its Min-SE), else ours; None when session timers are off."""
        if self.session_expires <= 0:
            return None
        interval = self.session_expires
        asked = invite.headers.get("Session-Expires")
        if asked:
            try:
                interval = min(interval, float(asked.split(";", 1)[0].strip()))
            except ValueError:
                pass
        min_se = invite.headers.get("Min-SE")
        if min_se:
            try:
                interval = max(interval, float(min_se.split(";", 1)[0].strip()))
            except ValueError:
                pass
        return interval

    def _schedule_refresh(self, call: Call, interval: float) -> None:
        """Refresh the caller's side at half the interval with an UPDATE (no SDP change)."""

        def refresh() -> None:
            if call.state != "answered" or call.a.dialog is None:
                return
            dest = call.a.source
            update = call.a.dialog.request(
                "UPDATE", via=self.sip.via(dest), contact=self.sip.contact(call.callee, dest),
                headers=[("Session-Expires", f"{int(interval)};refresher=uas"), ("Supported", "timer")])

            def answered(resp: Response) -> None:
                if resp.status < 200 or call.state != "answered":
                    return
                # No answer (408, also our own transaction timeout) or no such dialog (481): the
                # caller is gone. A phone that merely refuses UPDATE (405/501) is left alone.
                if resp.status in (408, 481):
                    log.info("call %s: session refresh answered %d, ending the call", call.uuid, resp.status)
                    self._hangup_both(call, "session_timeout", "system")
                    return
                self._schedule_refresh(call, interval)

            self.sip.send_request(update, dest, answered)

        call.pending["refresh"] = ("timer", self.sip.call_later(interval / 2, refresh))

    def ring(self, call: Call) -> None:
        """Tell a caller not yet answered that the far end is ringing (180)."""
        if call.state == "ringing" and not call.pending.get("rang"):
            call.pending["rang"] = ("180", None)
            self._provisional(call, make_response(call.a.invite, 180, "Ringing", to_tag=call.a.tag))

    def reject(self, call: Call, status: int, reason: str | None = None, cause: str = "") -> None:
        """Refuse a call not yet answered (closed, no route, busy...)."""
        if call.state != "ringing":
            return
        self.sip.respond(make_response(call.a.invite, status, reason, to_tag=call.a.tag))
        disposition = DISPOSITIONS.get(status, "failed")
        self._finish(call, disposition, cause or str(status), "system")

    def originate(self, call: Call, targets: list[Target], sdp: bytes, *, timeout: float,
                  on_result: Callable[[OutLeg | None, int, bytes], None], from_user: str | None = None,
                  answer_offer: Callable[[bytes], bytes | None] | None = None, side: str = "b") -> Attempt:
        """Ring `targets` in parallel with our SDP; `on_result` gets the answering leg (first 2xx
        wins, the others are cancelled) or None with the best failure status. With `answer_offer`,
        an INVITE with Replaces naming a ringing leg answers the attempt instead (call pickup);
        `on_result` then gets that phone's leg and its SDP offer. With `side` "a" the leg that
        answers takes the first party's place (that party is hung up), not the second's."""
        attempt = Attempt(call=call, legs=[], on_result=on_result, answer_offer=answer_offer, side=side)
        call.attempts.append(attempt)

        def expired() -> None:
            if attempt.done:
                return
            self.cancel_attempt(attempt)
            on_result(None, 408, b"")

        attempt.timer_cancel = self.sip.call_later(timeout, expired)
        for target in targets:
            self._make_leg(call, target, 70, sdp, attempt, from_user)
        return attempt

    def originate_call(self, caller: str, callee: str, targets: list[Target], sdp: bytes, *, timeout: float,
                       observer: CallObserver, on_result: Callable[[OutLeg | None, int, bytes], None],
                       domain: str = "localhost", call_uuid: str | None = None, trunk: str = "") -> Call:
        """A call the switch places itself (queued callbacks, click-to-call): ring `targets`; the
        leg that answers becomes the call's first party, and more legs can then be originated."""
        first = targets[0]
        placeholder = Request("INVITE", first.uri)
        for name, value in (("From", f"<sip:{caller}@{domain}>;tag={new_tag()}"), ("To", f"<{first.uri}>"),
                            ("Call-ID", new_call_id()), ("CSeq", "1 INVITE")):
            placeholder.headers.add(name, value)
        call = Call(uuid=call_uuid or uuid.uuid4().hex, caller=caller, callee=callee,
                    a=InLeg(invite=placeholder, source=first.dest, tag=new_tag()), start=self.clock(),
                    local=True, observer=observer, state="ringing", placed=True, trunk=trunk)
        self.calls[call.uuid] = call
        self.publish(CallStarted(ts=call.start, call_uuid=call.uuid, caller=caller, callee=callee))

        def answered(leg: OutLeg | None, status: int, body: bytes) -> None:
            if leg is None or leg.dialog is None:
                self._finish(call, DISPOSITIONS.get(status, "failed"), str(status), "callee")
                on_result(None, status, b"")
                return
            # Promote the answering leg to the call's first party.
            dialog = leg.dialog
            self._by_dialog[(dialog.call_id, dialog.local_tag)] = (call, "a")
            call.b = None
            call.a = InLeg(invite=leg.invite, source=leg.target.dest, tag=dialog.local_tag, dialog=dialog,
                           acked=True)
            call.state = "answered"
            call.answer = self.clock()
            self.publish(CallAnswered(ts=call.answer, call_uuid=call.uuid, answered_by=leg.target.user))
            on_result(leg, status, body)

        self.originate(call, targets, sdp, timeout=timeout, on_result=answered)
        return call

    def cancel_attempt(self, attempt: Attempt, status: int = 487) -> None:
        """Stop ringing (offer withdrawn, caller gone); `on_result` is not called."""
        if attempt.done:
            return
        attempt.done = True
        if attempt.timer_cancel is not None:
            attempt.timer_cancel()
        for leg in attempt.legs:
            if not leg.done:
                self._cancel_leg(leg)

    def _attempt_of(self, call: Call, leg: OutLeg) -> Attempt | None:
        for attempt in call.attempts:
            if leg in attempt.legs:
                return attempt
        return None

    def _on_attempt_response(self, call: Call, leg: OutLeg, resp: Response) -> None:
        status = resp.status
        attempt = self._attempt_of(call, leg)
        if status < 200:
            if status > 100 and resp.to.tag and leg.dialog is None:
                leg.dialog = Dialog.as_uac(leg.invite, resp)
            return
        if 200 <= status < 300:
            dialog = Dialog.as_uac(leg.invite, resp)
            dialog.confirm(resp)
            self._ack(dialog, leg.invite.cseq[0], leg.target.dest)
            if attempt is None or attempt.done or call.state in ("ended",) or leg.cancelled:
                self._bye(dialog, leg.target.dest)  # too late: someone else won or the caller left
                return
            leg.dialog = dialog
            leg.done = True
            leg.status = status
            attempt.done = True
            if attempt.timer_cancel is not None:
                attempt.timer_cancel()
            for other in attempt.legs:
                if other is not leg and not other.done:
                    self._cancel_leg(other)
            if attempt.side == "a":
                self._replace_first(call, leg, dialog)
                attempt.on_result(leg, status, resp.body)
                return
            if call.b is not None and call.b.dialog is not None:
                self._bye(call.b.dialog, call.b.target.dest)  # a new leg replaces the old one
                self._by_dialog.pop((call.b.dialog.call_id, call.b.dialog.local_tag), None)
            call.b = leg
            self._by_dialog[(dialog.call_id, dialog.local_tag)] = (call, "b")
            attempt.on_result(leg, status, resp.body)
            return
        leg.status = status
        leg.done = True
        if attempt is None or attempt.done:
            return
        if attempt.best == 0 or _rank(status) < _rank(attempt.best):
            attempt.best = status
        if all(lg.done for lg in attempt.legs):
            attempt.done = True
            if attempt.timer_cancel is not None:
                attempt.timer_cancel()
            attempt.on_result(None, attempt.best, b"")

    def _replace_first(self, call: Call, leg: OutLeg, dialog: Dialog) -> None:
        """An answered leg takes the first party's place (a transfer by that party): its dialog
        is hung up and forgotten, the new party's becomes side "a"."""
        old, dest = call.a.dialog, call.a.source
        if call.a.retransmit_cancel is not None:
            call.a.retransmit_cancel()
        if old is not None:
            self._bye(old, dest)
            self._detach(call, "a")
            self._remember_ended((old.call_id, old.local_tag))
        self._install(call, "a", dialog, leg.target.dest, leg.target.user, leg.invite)

    def drop_leg(self, call: Call) -> None:
        """Hang up the answered outbound leg only (the caller stays, e.g. back to the queue)."""
        b = call.b
        if b is not None and b.dialog is not None:
            self._bye(b.dialog, b.target.dest)
            self._by_dialog.pop((b.dialog.call_id, b.dialog.local_tag), None)
        if b is not None and not call.agent:
            call.agent = b.target.user  # who answered, for the CDR
        call.b = None

    # -- requests from the caller before answer ---------------------------------------------

    def on_cancel(self, invite: Request, to_tag: str | None = None) -> bool:
        """The caller cancelled its INVITE: cancel every fork, answer 487. False if unknown.

        `to_tag` is the tag the transaction layer already put on its 200 to the CANCEL; the 487
        must carry the same one.
        """
        call = self._by_invite.get(self._invite_key(invite))
        if call is None or call.state != "ringing":
            return False
        if to_tag:
            call.a.tag = to_tag
        for leg in call.legs:
            if not leg.done:
                self._cancel_leg(leg)
        self.sip.respond(make_response(call.a.invite, 487, "Request Terminated", to_tag=call.a.tag))
        self._finish(call, "cancelled", "cancel", "caller")
        return True

    def on_ack(self, ack: Request) -> bool:
        """ACK for a 2xx (in-dialog): stop retransmitting, or relay a re-INVITE's ACK."""
        stop = self._unacked.pop((ack.call_id or "", ack.to.tag or ""), None)
        if stop is not None:
            stop()
            return True
        found = self._find(ack)
        if found is None:
            return False
        call, side = found
        if side == "a" and not call.a.acked:
            call.a.acked = True
            if call.a.retransmit_cancel is not None:
                call.a.retransmit_cancel()
            return True
        pending = call.pending.pop(f"ack-{side}", None)
        if pending is not None:
            _, payload = pending
            dialog, cseq, dest = payload  # type: ignore[misc]
            self._ack(dialog, cseq, dest, body=ack.body)
        return True

    # -- in-dialog requests ------------------------------------------------------------------

    def _find(self, req: Request) -> tuple[Call, str] | None:
        to_tag = req.to.tag
        if not to_tag:
            return None
        return self._by_dialog.get((req.call_id or "", to_tag))

    def on_in_dialog(self, req: Request) -> bool:
        """A request with a To tag: relay it to the other leg. False when no dialog matches."""
        found = self._find(req)
        if found is None:
            key = (req.call_id or "", req.to.tag or "")
            if req.method == "BYE" and self._released.pop(key, None) is not None:
                # The transferor hangs up before the switch's BYE went out: no need to send that one.
                self.sip.respond(make_response(req, 200, "OK"))
                return True
            return False
        call, side = found
        if req.method == "PRACK":
            # Acknowledges our reliable provisional (RFC 3262); never relayed: each leg has its own.
            rel = call.a.reliable if side == "a" else None
            if rel is None:
                self.sip.respond(make_response(req, 481, "Call/Transaction Does Not Exist"))
                return True
            status, outputs = rel.prack(req, self.clock())
            self.sip.respond(make_response(req, status, None))
            self._run_reliable(call, outputs)
            return True
        mine, other, other_dest = self._legs(call, side)
        tr = call.transfer
        if req.method == "BYE" and tr is not None and tr.side == side and mine is not None:
            self._transferor_left(call, req, mine)
            return True
        if call.local and mine is not None:
            self._local_in_dialog(call, side, req, mine)
            return True
        if mine is None or other is None:
            self.sip.respond(make_response(req, 481, "Call/Transaction Does Not Exist"))
            return True
        try:
            mine.check_request(req)
        except DialogError as exc:
            self.sip.respond(make_response(req, exc.status, exc.reason))
            return True
        if req.method == "BYE":
            self.sip.respond(make_response(req, 200, "OK"))
            self._bye(other, other_dest)
            self._finish(call, "answered", "normal", "caller" if side == "a" else "callee")
            return True
        if req.method == "REFER":
            # The switch stays in the path: it carries out the transfer itself (RFC 5589 as a B2BUA)
            # rather than asking the other phone to call a target it may not even reach.
            self._on_refer(call, side, req, mine)
            return True
        if req.method in ("INVITE", "UPDATE"):
            mine.refresh_target(req)
        self._relay_request(call, side, req, other, other_dest)
        return True

    def _local_in_dialog(self, call: Call, side: str, req: Request, mine: Dialog) -> None:
        """In-dialog requests of a call the switch answered: it is the far end of every leg."""
        try:
            mine.check_request(req)
        except DialogError as exc:
            self.sip.respond(make_response(req, exc.status, exc.reason))
            return
        if req.method == "BYE":
            self.sip.respond(make_response(req, 200, "OK"))
            if side == "a":
                self.drop_leg(call)
                self._finish(call, "answered", "normal", "caller")
            else:
                # The agent or dialled party hung up: the call is over for the caller too.
                call.b = None
                self._by_dialog.pop((mine.call_id, mine.local_tag), None)
                if call.a.dialog is not None:
                    self._bye(call.a.dialog, call.a.source)
                self._finish(call, "answered", "normal", "callee")
            return
        if req.method in ("INVITE", "UPDATE"):
            mine.refresh_target(req)
            sdp = call.local_sdp
            if req.body and call.observer is not None:
                sdp = call.observer.on_reoffer(call, side, req.body)
            ok = make_response(req, 200, "OK")
            dest = call.a.source if side == "a" else (call.b.target.dest if call.b else call.a.source)
            ok.headers.add("Contact", self.sip.contact(call.callee if side == "a" else call.caller, dest))
            if sdp:
                ok.headers.add("Content-Type", "application/sdp")
                ok.body = sdp
            self.sip.respond(ok)
            return
        if req.method == "REFER":
            self._local_refer(call, side, req, mine)
            return
        if req.method in ("INFO", "NOTIFY", "OPTIONS", "MESSAGE"):
            self.sip.respond(make_response(req, 200, "OK"))
            return
        self.sip.respond(make_response(req, 501, "Not Implemented"))

    def _local_refer(self, call: Call, side: str, req: Request, mine: Dialog) -> None:
        """Blind transfer asked by either party (the called one, or the first party of a call the
        switch placed, e.g. an agent's click-to-call): 202, a NOTIFY that it is under way, then
        the application rings the target; when it answers, the transferor's leg is hung up."""
        refer_to = req.headers.get("Refer-To")
        if refer_to and "replaces" in refer_to.lower():
            self._on_refer(call, side, req, mine)  # attended: the switch joins the two calls itself
            return
        if call.b is None or call.b.dialog is None or call.a.dialog is None or not refer_to:
            # Nobody to transfer yet (the caller is hearing the IVR or waiting in a queue).
            self.sip.respond(make_response(req, 403, "Transfer Not Allowed From This Leg"))
            return
        if call.observer is None or not call.observer.on_refer(call, refer_to, side):
            self.sip.respond(make_response(req, 404, "Transfer Target Not Found"))
            return
        self.sip.respond(make_response(req, 202, "Accepted"))
        _, dest, user = self._party(call, side)
        notify = mine.request("NOTIFY", via=self.sip.via(dest), contact=self.sip.contact(user, dest),
                              body=b"SIP/2.0 100 Trying\r\n",
                              headers=[("Event", "refer"), ("Subscription-State", "active;expires=60"),
                                       ("Content-Type", "message/sipfrag;version=2.0")])
        self.sip.send_request(notify, dest, lambda resp: None)

    def _legs(self, call: Call, side: str) -> tuple[Dialog | None, Dialog | None, Addr]:
        b = call.b
        b_dialog = b.dialog if b is not None else None
        b_dest = b.target.dest if b is not None else call.a.source
        if side == "a":
            return call.a.dialog, b_dialog, b_dest
        return b_dialog, call.a.dialog, call.a.source

    def _relay_request(self, call: Call, side: str, req: Request, other: Dialog, dest: Addr) -> None:
        headers = [(n, v) for n in RELAYED if (v := req.headers.get(n)) is not None]
        # We stand for the requester towards the far side, and for the far side towards the requester.
        far_user, contact_user = (call.caller, call.callee) if side == "a" else (call.callee, call.caller)
        out = other.request(req.method, via=self.sip.via(dest), contact=self.sip.contact(far_user, dest),
                            body=req.body, headers=headers)
        for name in ("Refer-To", "Referred-By", "Replaces", "Event", "Subscription-State", "RAck", "Info-Package"):
            v = req.headers.get(name)
            if v is not None:
                out.headers.add(name, v)
        # Where the requester is: our Contact in the answer must be reachable from there.
        near = call.a.source if side == "a" else (call.b.target.dest if call.b else dest)

        def on_response(resp: Response) -> None:
            if resp.status == 100:
                return
            back = make_response(req, resp.status, resp.reason)
            ctype = resp.headers.get("Content-Type")
            if resp.body and ctype:
                back.headers.add("Content-Type", ctype)
            back.body = resp.body
            for name in ("Session-Expires", "Require", "Supported", "Min-SE"):
                v = resp.headers.get(name)
                if v is not None:
                    back.headers.add(name, v)
            if req.method in ("INVITE", "UPDATE") and 200 <= resp.status < 300:
                other.refresh_target(resp)
                back.headers.add("Contact", self.sip.contact(contact_user, near))
            if req.method == "INVITE" and 200 <= resp.status < 300:
                # Acknowledge the far side when the near side acknowledges us (it may carry SDP).
                call.pending[f"ack-{side}"] = ("ack", (other, out.cseq[0], dest))
            self.sip.respond(back)

        self.sip.send_request(out, dest, on_response)

    # -- transfers: REFER (RFC 3515, 5589) and Replaces (RFC 3891) --------------------------------

    def _party(self, call: Call, side: str) -> tuple[Dialog | None, Addr, str]:
        """One side's dialog, where it is, and whom the switch stands for towards it."""
        if side == "a":
            return call.a.dialog, call.a.source, call.callee
        b = call.b
        return (b.dialog if b is not None else None), (b.target.dest if b is not None else call.a.source), call.caller

    def _on_refer(self, call: Call, side: str, req: Request, mine: Dialog) -> None:
        """A party asks to transfer the other one: to a target (blind) or, with Replaces in the
        Refer-To, into another call of the transferor's (attended). The switch answers 202, reports
        progress with NOTIFY sipfrag, does the work and hangs the transferor up when it is done."""
        refer_to = req.headers.get("Refer-To")
        try:
            uri = parse_name_addr(refer_to or "").uri
        except SipParseError:
            self.sip.respond(make_response(req, 400, "Bad Refer-To"))
            return
        if not isinstance(uri, SipURI) or call.state != "answered":
            self.sip.respond(make_response(req, 400 if call.state == "answered" else 403, "Bad Refer-To"))
            return
        if call.transfer is not None:
            self.sip.respond(make_response(req, 491, "Request Pending"))
            return
        replaces = next((v for k, v in uri.headers.items() if k.lower() == "replaces"), None)
        rep: Replaces | None = None
        if replaces is not None:
            try:
                rep = parse_replaces(replaces)
            except ValueError:
                self.sip.respond(make_response(req, 400, "Bad Replaces In Refer-To"))
                return
        self.sip.respond(make_response(req, 202, "Accepted"))
        _, dest, user = self._party(call, side)
        call.transfer = Transfer(side=side, dialog=mine, dest=dest, user=user)
        self._notify(call.transfer, "100 Trying", final=False)
        if rep is not None:
            self._attended(call, side, rep)
        else:
            self._blind(call, side, uri)

    def _notify(self, tr: Transfer, frag: str, *, final: bool, then: Callable[[], None] | None = None) -> None:
        """Tell the transferor how the transfer goes (RFC 3515 2.4.4: a message/sipfrag status line)."""
        state = "terminated;reason=noresource" if final else "active;expires=60"
        notify = tr.dialog.request(
            "NOTIFY", via=self.sip.via(tr.dest), contact=self.sip.contact(tr.user, tr.dest),
            body=f"SIP/2.0 {frag}\r\n".encode(),
            headers=[("Event", "refer"), ("Subscription-State", state),
                     ("Content-Type", "message/sipfrag;version=2.0")])

        def answered(resp: Response) -> None:
            if resp.status >= 200 and then is not None:
                then()

        self.sip.send_request(notify, tr.dest, answered)

    def _transfer_failed(self, call: Call, status: int, reason: str) -> None:
        """Report a failed transfer; the call goes on as it was (RFC 5589 6.1), unless the
        transferor already hung up, in which case the party left waiting is hung up too."""
        for c in (call, call.transfer.partner if call.transfer is not None else None):
            if c is None or c.transfer is None:
                continue
            tr, c.transfer = c.transfer, None
            if tr.gone and c.state == "answered":
                other = "b" if tr.side == "a" else "a"
                dialog, dest, _ = self._party(c, other)
                if dialog is not None:
                    self._bye(dialog, dest)
                self._finish(c, "answered", "transfer_failed", "system")
            elif tr.notify and not tr.gone:
                self._notify(tr, f"{status} {reason}", final=True)
        log.info("call %s: transfer failed with %d %s", call.uuid, status, reason)

    def _transfer_done(self, call: Call) -> None:
        """Report success and release the transferor (NOTIFY 200, then BYE)."""
        tr = call.transfer
        call.transfer = None
        if tr is None or tr.gone:
            return
        key = (tr.dialog.call_id, tr.dialog.local_tag)
        self._released[key] = tr.dialog

        def release() -> None:
            if self._released.pop(key, None) is not None:
                self._bye(tr.dialog, tr.dest)
                self._remember_ended(key)

        if tr.notify:
            self._notify(tr, "200 OK", final=True, then=release)
        else:
            release()

    def _transferor_left(self, call: Call, req: Request, mine: Dialog) -> None:
        """The transferor hung up before the transfer finished: the other party stays for it."""
        tr = call.transfer
        assert tr is not None
        try:
            mine.check_request(req)
        except DialogError as exc:
            self.sip.respond(make_response(req, exc.status, exc.reason))
            return
        self.sip.respond(make_response(req, 200, "OK"))
        tr.gone = True
        self._by_dialog.pop((mine.call_id, mine.local_tag), None)
        self._remember_ended((mine.call_id, mine.local_tag))

    def _detach(self, call: Call, side: str) -> None:
        """Forget a side's dialog mapping (its party is leaving or moving to another call)."""
        dialog, _, _ = self._party(call, side)
        if dialog is not None and self._by_dialog.get((dialog.call_id, dialog.local_tag), (None,))[0] is call:
            del self._by_dialog[(dialog.call_id, dialog.local_tag)]

    def _install(self, call: Call, side: str, dialog: Dialog, dest: Addr, user: str, invite: Request,
                 leg: OutLeg | None = None) -> None:
        """Put a party (its established dialog) on one side of a call, in place of whoever was there."""
        if side == "a":
            self._by_invite.pop(self._invite_key(call.a.invite), None)
            call.a = InLeg(invite=invite, source=dest, tag=dialog.local_tag, dialog=dialog, acked=True)
        else:
            if leg is None:
                leg = OutLeg(target=Target(uri=dialog.remote_target, dest=dest, user=user), invite=invite,
                             dialog=dialog, status=200, done=True)
            leg.handler = None
            if leg not in call.legs:
                call.legs.append(leg)
            call.b = leg
            if user and not call.agent:
                call.agent = user
        self._by_dialog[(dialog.call_id, dialog.local_tag)] = (call, side)

    def _reinvite(self, call: Call, side: str, body: bytes,
                  on_final: Callable[[Request, Response], None]) -> None:
        """A re-INVITE of the switch's own to one side (an offer, or none to ask for one); the
        ACK of a 2xx is left to `on_final`, which may have to wait for an answer from elsewhere."""
        dialog, dest, user = self._party(call, side)
        if dialog is None:
            on_final(Request("INVITE", "sip:invalid"), Response(481, "Call/Transaction Does Not Exist"))
            return
        headers = [("Content-Type", "application/sdp")] if body else []
        req = dialog.request("INVITE", via=self.sip.via(dest), contact=self.sip.contact(user, dest), body=body,
                             headers=headers)

        def answered(resp: Response) -> None:
            if resp.status < 200:
                return
            if resp.status < 300:
                dialog.refresh_target(resp)
            on_final(req, resp)

        self.sip.send_request(req, dest, answered)

    def _answerer(self, call: Call, side: str) -> Callable[[bytes, Callable[[bytes | None], None]], None]:
        """How to answer an offer made to `side` of `call` by a newcomer: the media layer answers for
        anchored calls; otherwise the party on the other side is re-INVITEd with the offer."""
        other = "b" if side == "a" else "a"

        def answer(offer: bytes, done: Callable[[bytes | None], None]) -> None:
            if call.local:
                observer = call.observer
                done(observer.on_reoffer(call, side, offer) if observer is not None else call.local_sdp)
                return

            def answered(req: Request, resp: Response) -> None:
                if 200 <= resp.status < 300:
                    dialog, dest, _ = self._party(call, other)
                    if dialog is not None:
                        self._ack(dialog, req.cseq[0], dest)
                    done(resp.body or None)
                else:
                    done(None)

            self._reinvite(call, other, offer, answered)

        return answer

    def _renegotiate(self, call: Call, side: str, answer: Callable[[bytes, Callable[[bytes | None], None]], None],
                     done: Callable[[bool], None]) -> None:
        """Third-party call control (RFC 3725 flow I): re-INVITE one side without SDP, have its
        offer answered by `answer`, and give that answer back to it in the ACK."""

        def offered(req: Request, resp: Response) -> None:
            if not 200 <= resp.status < 300:
                done(False)
                return
            dialog, dest, _ = self._party(call, side)
            if dialog is None:
                done(False)
                return
            if not resp.body:
                self._ack(dialog, req.cseq[0], dest)
                done(False)
                return

            def answered(sdp: bytes | None) -> None:
                # The ACK must go even when nobody answered the offer: without one the party
                # would resend its 2xx and then drop its own call.
                self._ack(dialog, req.cseq[0], dest, body=sdp or b"")
                done(sdp is not None)

            answer(resp.body, answered)

        self._reinvite(call, side, b"", offered)

    def _attended(self, call1: Call, side1: str, rep: Replaces) -> None:
        """Join the transferee (the other party of `call1`) with the party on the far side of the
        dialog that Replaces names (the transferor's other call through the switch)."""
        found = self._match_replaces(rep)
        if found[0] is call1:
            found = (403, "Cannot Replace The Referring Dialog")
        elif isinstance(found[0], Call) and found[0].transfer is not None:
            found = (491, "Request Pending")
        if not isinstance(found[0], Call):
            status, reason = found  # type: ignore[misc]
            self._transfer_failed(call1, status, reason)
            return
        call2, side2 = found  # type: ignore[misc]
        dialog2, dest2, user2 = self._party(call2, side2)
        assert dialog2 is not None
        call2.transfer = Transfer(side=side2, dialog=dialog2, dest=dest2, user=user2, notify=False, partner=call1)
        assert call1.transfer is not None
        call1.transfer.partner = call2
        keep1 = "b" if side1 == "a" else "a"
        keep2 = "b" if side2 == "a" else "a"
        # One call survives with both remaining parties; the other one ends. A call whose media the
        # switch anchors survives (its media leg towards the transferor is reused); else the REFER's.
        if call2.local and not call1.local:
            survivor, s_side, donor, d_side = call2, side2, call1, keep1
        else:
            survivor, s_side, donor, d_side = call1, side1, call2, keep2

        def connected(ok: bool) -> None:
            if not ok or survivor.state != "answered" or donor.state != "answered":
                self._transfer_failed(call1, 500, "Transfer Failed")
                return
            self._splice(survivor, s_side, donor, d_side)
            self._transfer_done(call2)
            self._transfer_done(call1)
            log.info("call %s: attended transfer joined it with call %s", survivor.uuid, donor.uuid)

        self._renegotiate(donor, d_side, self._answerer(survivor, s_side), connected)

    def _splice(self, survivor: Call, s_side: str, donor: Call, d_side: str) -> None:
        """Move the party on `d_side` of `donor` to `s_side` of `survivor` (whose transferor leaves);
        the donor call ends with its own CDR, the moved party's dialog untouched."""
        dialog, dest, _ = self._party(donor, d_side)
        assert dialog is not None
        if d_side == "a":
            invite, user, leg = donor.a.invite, donor.caller, None
        else:
            assert donor.b is not None
            invite, user, leg = donor.b.invite, donor.b.target.user, donor.b
        self._detach(survivor, s_side)
        self._finish(donor, "answered", "transferred", "system")
        self._install(survivor, s_side, dialog, dest, user, invite, leg)

    def _blind(self, call: Call, side: str, uri: SipURI) -> None:
        """Ring the target for the party left (relayed call): an INVITE without SDP, whose offer
        that party answers in a re-INVITE; the target then takes the transferor's place."""
        remaining = "b" if side == "a" else "a"
        number = uri.user or ""
        from_user = call.caller if remaining == "a" else (call.b.target.user if call.b else call.callee)
        targets = self.lookup(number, from_user) if self.lookup is not None and number else []
        if not targets:
            self._transfer_failed(call, 404, "Not Found")
            return
        legs: list[OutLeg] = []
        state = {"won": False, "best": 0}

        def expired() -> None:
            if state["won"] or call.transfer is None:
                return
            for lg in legs:
                if not lg.done:
                    self._cancel_leg(lg)
            state["won"] = True
            self._transfer_failed(call, 408, "Request Timeout")

        stop_timer = self.sip.call_later(self.no_answer_timeout, expired)

        def on_response(leg: OutLeg, resp: Response) -> None:
            if resp.status < 200:
                if resp.status > 100 and resp.to.tag and leg.dialog is None:
                    leg.dialog = Dialog.as_uac(leg.invite, resp)
                return
            if resp.status >= 300:
                leg.done, leg.status = True, resp.status
                if state["best"] == 0 or _rank(resp.status) < _rank(state["best"]):
                    state["best"] = resp.status
                if not state["won"] and all(lg.done for lg in legs):
                    state["won"] = True
                    stop_timer()
                    self._transfer_failed(call, state["best"], resp.reason or "Transfer Failed")
                return
            dialog = Dialog.as_uac(leg.invite, resp)
            dialog.confirm(resp)
            dest = leg.target.dest
            if state["won"] or call.state != "answered" or call.transfer is None or not resp.body:
                self._ack(dialog, leg.invite.cseq[0], dest)
                self._bye(dialog, dest)
                if not state["won"] and call.transfer is not None:
                    state["won"] = True
                    stop_timer()
                    self._transfer_failed(call, 488, "Not Acceptable Here")
                return
            state["won"] = True
            stop_timer()
            leg.dialog, leg.done, leg.status = dialog, True, resp.status
            for other in legs:
                if other is not leg and not other.done:
                    self._cancel_leg(other)

            def answered(sdp: bytes | None) -> None:
                self._ack(dialog, leg.invite.cseq[0], dest, body=sdp or b"")
                if sdp is None or call.state != "answered":
                    self._bye(dialog, dest)
                    self._transfer_failed(call, 488, "Not Acceptable Here")
                    return
                self._detach(call, side)
                self._install(call, side, dialog, dest, leg.target.user, leg.invite, leg)
                self._transfer_done(call)
                log.info("call %s: blind transfer to %s answered", call.uuid, number)

            self._answerer(call, side)(resp.body, answered)

        for target in targets:
            leg = self._make_leg(call, target, 70, b"", from_user=from_user, fresh=True)
            legs.append(leg)
            leg.handler = lambda resp, leg=leg: on_response(leg, resp)

    def _match_replaces(self, rep: Replaces) -> tuple[Call, str] | tuple[int, str]:
        """The switch's answered leg a Replaces names (RFC 3891 section 3): Call-ID and to-tag match
        the leg's local tag, from-tag its remote tag; else the status to refuse with."""
        key = (rep.call_id, rep.to_tag)
        found = self._by_dialog.get(key)
        if found is None:
            if key in self._ended:
                return 603, "Declined"
            return 481, "Call/Transaction Does Not Exist"
        call, side = found
        dialog, _, _ = self._party(call, side)
        if dialog is None or dialog.remote_tag != rep.from_tag:
            return 481, "Call/Transaction Does Not Exist"
        if call.state != "answered" or dialog.state != "confirmed":
            # Early dialogs: the switch's own outbound ones may not be replaced (section 3), and
            # taking over a caller that is still ringing is not offered.
            return 481, "Call/Transaction Does Not Exist"
        if rep.early_only:
            return 486, "Busy Here"
        return call, side

    def _match_early(self, rep: Replaces) -> tuple[Call, Attempt, OutLeg] | tuple[int, str] | None:
        """A ringing leg of the switch's own that Replaces names (an early dialog this UA initiated,
        which RFC 3891 section 3 lets be replaced: directed call pickup), or the status to refuse
        with; None when no early dialog matches. Only legs a dial step rings may be taken over:
        queue offers, transfer targets and relayed calls (whose caller's offer nobody could answer:
        the switch relays SDP there and has no media of its own) are refused with 481."""
        # A linear search: INVITEs with Replaces are rare, and ringing legs are not indexed by dialog.
        for call in self.calls.values():
            for leg in call.legs:
                dialog = leg.dialog
                if leg.done or dialog is None or dialog.call_id != rep.call_id or dialog.local_tag != rep.to_tag:
                    continue
                attempt = self._attempt_of(call, leg) if call.local else None
                if (dialog.remote_tag != rep.from_tag or attempt is None or attempt.done
                        or attempt.answer_offer is None):
                    return 481, "Call/Transaction Does Not Exist"
                return call, attempt, leg
        return None

    def _pick_up(self, invite: Request, source: Addr, user: str, call: Call, attempt: Attempt) -> None:
        """The sender of an INVITE with Replaces answers a dial step's attempt in place of the
        phones it rings (RFC 3891 section 3): 200 with our answer to its offer, the ringing legs
        cancelled (the replaced phone gets CANCEL, as a UAC does for an early dialog)."""
        sdp = attempt.answer_offer(invite.body) if attempt.answer_offer is not None and invite.body else None
        if sdp is None:
            status, reason = (488, "Offer Required") if not invite.body else (488, "Not Acceptable Here")
            self.sip.respond(make_response(invite, status, reason, to_tag=new_tag()))
            return
        tag = new_tag()
        dialog = Dialog.as_uas(invite, tag)
        dialog.confirm()
        leg = OutLeg(target=Target(uri=dialog.remote_target, dest=source, user=user), invite=invite, dialog=dialog,
                     status=200, done=True)
        attempt.done = True
        if attempt.timer_cancel is not None:
            attempt.timer_cancel()
        for other in attempt.legs:
            if not other.done:
                self._cancel_leg(other)
        if call.b is not None and call.b.dialog is not None:
            self._bye(call.b.dialog, call.b.target.dest)  # as when a leg answers: it replaces the old one
            self._by_dialog.pop((call.b.dialog.call_id, call.b.dialog.local_tag), None)
        call.legs.append(leg)
        attempt.legs.append(leg)
        call.b = leg
        self._by_dialog[(dialog.call_id, tag)] = (call, "b")
        ok = make_response(invite, 200, "OK", to_tag=tag)
        ok.headers.add("Contact", self.sip.contact(call.caller, source))
        ok.headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER, NOTIFY, INFO, PRACK")
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = sdp
        self.sip.respond(ok)
        self._resend_until_ack(call, ok, (dialog.call_id, tag))
        log.info("call %s: %s picked up the call ringing elsewhere (Replaces)", call.uuid, user)
        attempt.on_result(leg, 200, invite.body)

    def on_replaces(self, invite: Request, source: Addr, user: str) -> None:
        """A new INVITE with Replaces (RFC 3891) from an authenticated user: its sender takes the
        place of the party on the named leg, which is hung up, or answers in place of a phone a
        dial step rings (call pickup); 481/486/603 when it cannot."""
        try:
            rep = parse_replaces(invite.headers.get("Replaces") or "")
        except ValueError:
            self.sip.respond(make_response(invite, 400, "Bad Replaces Header", to_tag=new_tag()))
            return
        early = self._match_early(rep) if (rep.call_id, rep.to_tag) not in self._by_dialog else None
        if early is not None:
            if isinstance(early[0], Call):
                self._pick_up(invite, source, user, early[0], early[1])  # type: ignore[misc]
            else:
                self.sip.respond(make_response(invite, early[0], early[1], to_tag=new_tag()))  # type: ignore[arg-type]
            return
        found = self._match_replaces(rep)
        if isinstance(found[0], Call) and found[0].transfer is not None:
            found = (486, "Busy Here")
        if not isinstance(found[0], Call):
            status, reason = found  # type: ignore[misc]
            self.sip.respond(make_response(invite, status, reason, to_tag=new_tag()))
            return
        call, side = found  # type: ignore[misc]
        if not invite.body:
            self.sip.respond(make_response(invite, 488, "Offer Required", to_tag=new_tag()))
            return
        self.sip.respond(make_response(invite, 100, "Trying"))
        old, old_dest, contact_user = self._party(call, side)
        assert old is not None
        call.transfer = Transfer(side=side, dialog=old, dest=old_dest, user=contact_user, notify=False)
        tag = new_tag()

        def answered(sdp: bytes | None) -> None:
            if sdp is None or call.state != "answered":
                self.sip.respond(make_response(invite, 488 if call.state == "answered" else 481, None, to_tag=tag))
                self._transfer_failed(call, 488, "Not Acceptable Here")
                return
            ok = make_response(invite, 200, "OK", to_tag=tag)
            ok.headers.add("Contact", self.sip.contact(contact_user, source))
            ok.headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER, NOTIFY, INFO, PRACK")
            ok.headers.add("Content-Type", "application/sdp")
            ok.body = sdp
            dialog = Dialog.as_uas(invite, tag)
            dialog.confirm()
            self._detach(call, side)
            self._install(call, side, dialog, source, user, invite)
            self.sip.respond(ok)
            self._resend_until_ack(call, ok, (dialog.call_id, tag))
            self._transfer_done(call)
            log.info("call %s: %s replaced the party on side %s", call.uuid, user, side)

        self._answerer(call, side)(invite.body, answered)

    def _resend_until_ack(self, call: Call, ok: Response, key: tuple[str, str], interval: float | None = None,
                          elapsed: float = 0.0) -> None:
        """Resend a 2xx to an INVITE until its ACK (RFC 3261 13.3.1.4); none after 64*T1 ends the call."""
        interval = interval or self.t1

        def again() -> None:
            if key not in self._unacked or call.state != "answered":
                self._unacked.pop(key, None)
                return
            if elapsed + interval >= 64 * self.t1:
                del self._unacked[key]
                self._hangup_both(call, "no-ack", "system")
                return
            self.sip.respond(ok)
            self._resend_until_ack(call, ok, key, min(interval * 2, self.t2), elapsed + interval)

        self._unacked[key] = self.sip.call_later(interval, again)

    def _remember_ended(self, key: tuple[str, str]) -> None:
        self._ended[key] = None
        if len(self._ended) > 4096:
            self._ended.popitem(last=False)

    # -- teardown ----------------------------------------------------------------------------

    def _ack(self, dialog: Dialog, cseq: int, dest: Addr, body: bytes = b"") -> None:
        ack = dialog.ack(cseq, via=self.sip.via(dest), body=body)
        self.sip.send_ack(ack, dest)

    def _bye(self, dialog: Dialog, dest: Addr) -> None:
        bye = dialog.request("BYE", via=self.sip.via(dest))
        self.sip.send_request(bye, dest, lambda resp: None)

    def _hangup_both(self, call: Call, cause: str, side: str) -> None:
        if call.b is not None and call.b.dialog is not None:
            self._bye(call.b.dialog, call.b.target.dest)
        if call.a.dialog is not None:
            self._bye(call.a.dialog, call.a.source)
        self._finish(call, "answered", cause, side)

    def hangup(self, call_uuid: str, cause: str = "admin") -> bool:
        """End a call from the outside (operator API, shutdown)."""
        call = self.calls.get(call_uuid)
        if call is None:
            return False
        if call.state == "answered":
            self._hangup_both(call, cause, "system")
        elif call.state == "ringing":
            for leg in call.legs:
                if not leg.done:
                    self._cancel_leg(leg)
            status = 480 if call.local else 503
            self.sip.respond(make_response(call.a.invite, status, None, to_tag=call.a.tag))
            self._finish(call, "failed", cause, "system")
        return True

    def _finish(self, call: Call, disposition: str, cause: str, side: str) -> None:
        if call.state == "ended":
            return
        call.state = "ended"
        call.end = self.clock()
        call.cause, call.side = cause, side
        if call.no_answer_cancel is not None:
            call.no_answer_cancel()
        refresh = call.pending.pop("refresh", None)
        if refresh is not None:
            refresh[1]()  # type: ignore[operator]
        if call.a.retransmit_cancel is not None:
            call.a.retransmit_cancel()  # no more 2xx retransmissions once the call is over
        if call.a.reliable is not None:
            call.a.reliable.stop()
        if call.a.reliable_timer is not None:
            call.a.reliable_timer()
        for attempt in call.attempts:
            self.cancel_attempt(attempt)
        for leg in call.legs:
            if not leg.done:
                self._cancel_leg(leg)  # e.g. a transfer target still ringing when the call ends
        self.calls.pop(call.uuid, None)
        self._by_invite.pop(self._invite_key(call.a.invite), None)
        a_key = (call.a.invite.call_id or "", call.a.tag)
        if self._by_dialog.get(a_key, (None,))[0] is call:
            del self._by_dialog[a_key]
        if call.a.dialog is not None:
            self._remember_ended((call.a.dialog.call_id, call.a.dialog.local_tag))
        if call.b is not None and call.b.dialog is not None:
            key = (call.b.dialog.call_id, call.b.dialog.local_tag)
            if self._by_dialog.get(key, (None,))[0] is call:
                del self._by_dialog[key]
            self._remember_ended(key)
        legs = [] if call.placed else [(call.a.invite.call_id or "", "inbound", call.caller)]
        legs += [(lg.invite.call_id or "", "outbound", lg.target.user or lg.target.uri) for lg in call.legs]
        self.publish(CallEnded(ts=call.end, call_uuid=call.uuid, cause=cause, side=side))
        self.publish(
            CDR(
                ts=call.end,
                call_uuid=call.uuid,
                caller=call.caller,
                callee=call.callee,
                start=call.start,
                answer=call.answer,
                end=call.end,
                disposition=disposition if call.answer is None else "answered",
                hangup_cause=cause,
                hangup_side=side,
                legs=tuple(legs),
                trunk=call.trunk,
                did=call.did,
                queue=call.queue,
                agent=call.agent or (call.b.target.user if call.b else ""),
                customer_id=call.customer_id,
            )
        )
        if call.observer is not None:
            call.observer.on_ended(call, side, cause)

    def __len__(self) -> int:
        return len(self.calls)


def _rank(status: int) -> int:
    try:
        return _PREFERENCE.index(status)
    except ValueError:
        return len(_PREFERENCE) + (status // 100)
