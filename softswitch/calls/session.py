"""A call the switch answers itself and runs through the dialplan: the asyncio shell around the
sans-IO interpreter. It executes the interpreter's commands with the B2BUA (signalling), the media
backend (prompts, digits, bridging, recording) and the contact centre (queues), and feeds results
back until the plan is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
from pydantic import ValidationError

from media import sdp as sdpmod
from media.backend import MediaBackend, PortPoolExhausted
from media.dtmf import DtmfDigit
from softswitch.calls.b2bua import B2BUA, Call, OutLeg, Target
from softswitch.calls.forwarding import first_ring, forward_ring
from softswitch.dialplan import commands as c
from softswitch.dialplan.interpreter import Interpreter
from softswitch.events import Event
from softswitch.sip.errors import SipParseError
from softswitch.sip.uri import parse_name_addr

if TYPE_CHECKING:
    from media.tts import TtsRenderer
    from softswitch.campaigns import CallbackSpec
    from softswitch.config import Forwarding

log = logging.getLogger(__name__)

#: Hangup causes of the dialplan mapped to the SIP status a caller not yet answered gets.
CAUSE_STATUS = {
    "busy": 486, "user_busy": 486, "rejected": 603, "call_rejected": 603, "decline": 603,
    "no_route": 404, "unallocated_number": 404, "not_found": 404, "closed": 480,
    "normal_clearing": 480, "loop_detected": 482, "dialplan_error": 500,
}
#: DialResult statuses from SIP failures.
DIAL_STATUS = {486: "busy", 600: "busy", 603: "rejected", 408: "no_answer", 480: "no_answer", 487: "no_answer"}


def beep(seconds: float = 0.4, hz: float = 1000.0) -> np.ndarray:
    """The tone before a voicemail recording starts."""
    t = np.arange(int(8000 * seconds)) / 8000.0
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


class CallRefused(Exception):
    """The call was answered with a final error (488, 503...) and its plan stops."""


class SessionServices:
    """What sessions share on a node (passed in; no globals)."""

    def __init__(self, *, b2bua: B2BUA, media: MediaBackend, tts: TtsRenderer, publish: Callable[[Event], None],
                 lookup_user: Callable[[str], list[Target]], prompts_dir: Path, voicemail_dir: Path,
                 centre: Any = None, media_address: str = "127.0.0.1",
                 lookup_external: Callable[[str, str, str | None], Target | None] | None = None,
                 hold_music: Callable[[], np.ndarray] | None = None,
                 book_callback: Callable[[CallbackSpec], Awaitable[dict[str, Any]]] | None = None,
                 forwarding: Callable[[str], Forwarding | None] | None = None,
                 forward_targets: Callable[[str, str], list[Target]] | None = None) -> None:
        self.b2bua = b2bua
        self.media = media
        self.tts = tts
        self.publish = publish
        self.lookup_user = lookup_user
        self.lookup_external = lookup_external
        self.hold_music = hold_music
        self.book_callback = book_callback  # the node's campaigns book callbacks (None: not offered)
        # Users' forwarding rules, and where a forward destination (a user, an outside number) rings.
        self.forwarding = forwarding
        self.forward_targets = forward_targets
        self.prompts_dir = prompts_dir
        self.voicemail_dir = voicemail_dir
        self.centre = centre
        self.media_address = media_address
        self.sessions: dict[str, CallSession] = {}
        self._turns: dict[tuple[str, ...], int] = {}  # round-robin ring groups: who starts next
        self.parked: dict[str, CallSession] = {}  # park slot -> the call waiting there
        self.ringing: dict[str, CallSession] = {}  # user -> a call ringing their phones (for pickup)
        self.park_code: str | None = None  # REFER to this code + a slot parks the call
        self._unsubscribe = media.on_dtmf(self._on_dtmf)
        self._unsubscribe_timeout = media.on_timeout(self._on_rtp_timeout)

    def next_in_turn(self, members: tuple[str, ...]) -> int:
        """Where a round-robin ring group starts ringing this time."""
        return self._turns.get(members, 0) % len(members)

    def answered_by(self, members: tuple[str, ...], user: str) -> None:
        """The member after the one who answered starts the next round-robin call."""
        if user in members:
            self._turns[members] = members.index(user) + 1

    def _on_rtp_timeout(self, leg_id: str) -> None:
        """No RTP from a leg for the media timeout: the phone or the network is gone; end the call."""
        session = self.sessions.get(leg_id.split(":", 1)[0])
        if session is not None and not session.ended.is_set():
            log.info("call %s: no RTP on %s, hanging up", session.call.uuid, leg_id)
            session._hangup("rtp_timeout")

    def _on_dtmf(self, leg_id: str, digit: DtmfDigit) -> None:
        call_uuid = leg_id.split(":", 1)[0]
        session = self.sessions.get(call_uuid)
        if session is not None and leg_id == session.a_leg:
            log.debug("call %s: digit %s (%s)", call_uuid[:8], digit.digit, digit.source)
            session.digit(digit.digit)

    def close(self) -> None:
        self._unsubscribe()
        self._unsubscribe_timeout()


class CallSession:
    """One dialplan-driven call. Also the B2BUA's CallObserver for it."""

    def __init__(self, services: SessionServices, call: Call, interpreter: Interpreter | None) -> None:
        self.s = services
        self.call = call
        self.interp = interpreter
        self.a_leg = f"{call.uuid}:a"
        self.b_leg: str | None = None
        self.answered = False
        self.ended = asyncio.Event()
        self.digits: asyncio.Queue[str] = asyncio.Queue()
        self.recording = False
        self.record_wanted = False
        self.legs: set[str] = set()
        self.task: asyncio.Task[None] | None = None
        self.parked_slot: str | None = None
        self._ringing: tuple[object, asyncio.Future[tuple[OutLeg | None, int, bytes]]] | None = None
        self.picked_by: CallSession | None = None
        self.on_cleanup: list[Callable[[], Awaitable[None] | None]] = []
        self._ports: dict[str, int] = {}

    # -- the B2BUA's observer ----------------------------------------------------------------

    def on_ended(self, call: Call, side: str, cause: str) -> None:
        self.ended.set()

    def on_reoffer(self, call: Call, side: str, body: bytes) -> bytes:
        """A new offer in the dialog (hold, resume): answer from the same endpoint."""
        leg = self.a_leg if side == "a" else self.b_leg
        try:
            offer = sdpmod.parse(body)
            port = self._ports.get(leg or "", 0)
            answer, neg = sdpmod.answer(offer, self.s.media_address, port, version=int(time.time()))
        except (sdpmod.SdpError, ValueError):
            return call.local_sdp
        if leg is not None:
            asyncio.get_running_loop().create_task(self.s.media.set_remote(leg, neg))
        return bytes(answer)

    def on_refer(self, call: Call, refer_to: str, side: str = "b") -> bool:
        """Blind transfer by either connected party (`side`): ring the target, then bridge the
        other party to it; the called party may also transfer to the park code + a slot, which
        parks the caller there instead."""
        try:
            uri = parse_name_addr(refer_to).uri
        except SipParseError:
            return False
        user = getattr(uri, "user", None)
        code = self.s.park_code
        if user and code and user.startswith(code) and len(user) > len(code):
            return side == "b" and self._park(user[len(code):])
        targets = self.s.lookup_user(user) if user else []
        if not targets and user and self.s.lookup_external is not None:
            found = self.s.lookup_external(user, self.call.caller, None)
            targets = [found] if found is not None else []
        if not targets or self.b_leg is None:
            return False
        asyncio.get_running_loop().create_task(self._transfer(targets, side))
        return True

    def _park(self, slot: str) -> bool:
        """Hold the caller in a park slot (music on hold) and hang up the one who parked them."""
        if slot in self.s.parked or self.b_leg is None:
            return False
        self.s.parked[slot] = self
        self.parked_slot = slot
        asyncio.get_running_loop().create_task(self._parked(slot))
        return True

    async def _parked(self, slot: str) -> None:
        old = self.b_leg
        self.b_leg = None
        self.s.b2bua.drop_leg(self.call)
        if old is not None:
            await self.release(old)
        log.info("call %s parked in slot %s", self.call.uuid, slot)
        if self.s.hold_music is not None:
            await self.s.media.play(self.a_leg, self.s.hold_music(), loop=True)
        await self.ended.wait()
        if self.s.parked.get(slot) is self:
            del self.s.parked[slot]

    async def _transfer(self, targets: list[Target], side: str = "b") -> None:
        old = self.b_leg if side == "b" else self.a_leg
        leg = f"{self.call.uuid}:t{uuid.uuid4().hex[:6]}"
        out, _ = await self.originate(leg, targets, 30.0, side=side)
        if out is None:
            return  # the transferor's leg is still up: the call goes on as it was
        # The B2BUA hung up the transferor's leg when the target answered; move the media over.
        if side == "b":
            await self.bridge(leg)
        else:
            # The target takes the first party's place: its media leg is the session's a-leg now.
            self.a_leg = leg
            if self.b_leg is not None:
                await self.s.media.bridge(leg, self.b_leg)
        if old is not None:
            await self.release(old)

    def digit(self, d: str) -> None:
        self.digits.put_nowait(d)

    # -- running the plan --------------------------------------------------------------------

    def start(self) -> None:
        self.s.sessions[self.call.uuid] = self
        self.task = asyncio.get_running_loop().create_task(self.run(), name=f"call-{self.call.uuid}")

    async def run(self) -> None:
        assert self.interp is not None
        try:
            commands = self.interp.start(time.time())
            while True:
                result = await self._execute_all(commands)
                if self.interp.finished:
                    break
                if self.ended.is_set():
                    self.interp.feed(c.CallerHangup(), time.time())
                    break
                commands = self.interp.feed(result if result is not None else c.Timeout(), time.time())
            if self.interp.outcome in ("bridged",) and not self.ended.is_set():
                await self.ended.wait()
            elif not self.ended.is_set() and self.interp.outcome not in ("transferred",):
                self._hangup("normal_clearing")
        except CallRefused as exc:
            log.info("call %s refused: %s", self.call.uuid, exc)
        except Exception:
            log.exception("call %s: dialplan execution failed", self.call.uuid)
            self._hangup("dialplan_error")
        finally:
            await self._cleanup()

    async def _execute_all(self, commands: list[c.Command]) -> c.Result | None:
        result: c.Result | None = None
        for cmd in commands:
            if self.ended.is_set():
                return c.CallerHangup()
            r = await self._guarded(cmd)
            if r is not None:
                result = r
        return result

    async def _guarded(self, cmd: c.Command) -> c.Result | None:
        """Run one command, cut short by the caller hanging up or the interpreter's deadline."""
        assert self.interp is not None
        work = asyncio.ensure_future(self._execute(cmd))
        ended = asyncio.ensure_future(self.ended.wait())
        deadline = self.interp.deadline
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        done, _ = await asyncio.wait({work, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            ended.cancel()
            return work.result()
        work.cancel()
        ended.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        if self.ended.is_set():
            return c.CallerHangup()
        return c.Timeout()

    async def _execute(self, cmd: c.Command) -> c.Result | None:
        log.debug("call %s: %r", self.call.uuid[:8], cmd)
        if isinstance(cmd, c.Answer):
            await self.answer()
            return None
        if isinstance(cmd, c.Play):
            await self.answer()
            return await self._play(self._prompt_path(cmd.path), cmd.barge_in)
        if isinstance(cmd, c.Say):
            await self.answer()
            path = await self.s.tts.render(cmd.text, lang=cmd.lang, voice=cmd.voice)
            return await self._play(path, cmd.barge_in)
        if isinstance(cmd, c.CollectDigits):
            return await self._collect(cmd)
        if isinstance(cmd, c.Dial):
            return await self._dial(cmd)
        if isinstance(cmd, c.Transfer):
            result = await self._dial(c.Dial(targets=(self._target_of(cmd.to, cmd.trunk),), timeout=60.0))
            if result.status != "answered":
                self._hangup("normal_clearing")
            return None
        if isinstance(cmd, c.EnqueueAcd):
            await self.answer()
            if self.s.centre is None:
                return c.QueueResult(outcome="no_agents")
            return await self.s.centre.enqueue(self, cmd)
        if isinstance(cmd, c.StartRecording):
            self.record_wanted = True
            await self._start_recording()
            return None
        if isinstance(cmd, c.StopRecording):
            self.record_wanted = False
            if self.recording:
                self.recording = False
                await self.s.media.record_stop(self.call.uuid)
            return None
        if isinstance(cmd, c.RecordVoicemail):
            return await self._voicemail(cmd)
        if isinstance(cmd, c.HttpLookup):
            return await self._http(cmd)
        if isinstance(cmd, c.BookCallback):
            return await self._book_callback(cmd)
        if isinstance(cmd, c.Publish):
            self.s.publish(cmd.event)
            return None
        if isinstance(cmd, c.Hangup):
            self._hangup(cmd.cause)
            return None
        log.warning("call %s: command %r is not supported", self.call.uuid, cmd)
        return None

    # -- media and signalling ---------------------------------------------------------------

    async def endpoint(self, leg: str) -> int:
        ep = await self.s.media.allocate(leg)
        self.legs.add(leg)
        self._ports[leg] = ep.port
        return ep.port

    async def answer(self) -> None:
        """Answer the caller with our SDP (media anchored here); idempotent."""
        if self.answered or self.ended.is_set():
            return
        self.answered = True
        body = self.call.a.invite.body
        try:
            offer = sdpmod.parse(body)
        except (sdpmod.SdpError, ValueError):
            self.s.b2bua.reject(self.call, 488, "Not Acceptable Here", cause="no-sdp")
            raise CallRefused("no usable SDP offer") from None
        reason = sdpmod.unacceptable_reason(offer)
        if reason is not None:
            self.s.b2bua.reject(self.call, 488, reason, cause="codec")
            raise CallRefused(reason)
        try:
            port = await self.endpoint(self.a_leg)
        except PortPoolExhausted:
            log.warning("call %s: no RTP port free, refusing it with 503", self.call.uuid)
            self.s.b2bua.reject(self.call, 503, "Service Unavailable", cause="no-media-port")
            raise CallRefused("RTP port pool exhausted") from None
        answer, neg = sdpmod.answer(offer, self.s.media_address, port, session_id=int(time.time()))
        await self.s.media.set_remote(self.a_leg, neg)
        self.s.b2bua.answer_local(self.call, bytes(answer))

    async def _play(self, path: str | Path | np.ndarray, barge_in: bool) -> c.PlaybackDone:
        if not barge_in:
            self._drain_digits()
        handle = await self.s.media.play(self.a_leg, path, barge_in=barge_in)
        try:
            await handle.wait()
        finally:
            handle.stop()
        return c.PlaybackDone()

    def _prompt_path(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.s.prompts_dir / p

    def _drain_digits(self) -> None:
        while not self.digits.empty():
            self.digits.get_nowait()

    async def _collect(self, cmd: c.CollectDigits) -> c.DigitsCollected:
        got = ""
        while len(got) < cmd.max_digits:
            try:
                d = await asyncio.wait_for(self.digits.get(), cmd.timeout)
            except TimeoutError:
                return c.DigitsCollected(digits=got, reason="timeout")
            if cmd.terminator and d == cmd.terminator:
                return c.DigitsCollected(digits=got, reason="terminator")
            got += d
        return c.DigitsCollected(digits=got, reason="max")

    def _target_of(self, value: str, trunk: str | None = None) -> c.DialTarget:
        return c.DialTarget(kind="user" if self.s.lookup_user(value) or not value.isdigit() else "external",
                            value=value, trunk=trunk)

    async def originate(self, leg: str, targets: list[Target], timeout: float,
                        from_user: str | None = None, *, replaceable: bool = False,
                        side: str = "b") -> tuple[OutLeg | None, int]:
        """Ring targets from a new media leg; on answer its media is set up (not yet bridged).
        `replaceable`: another phone may answer instead with an INVITE with Replaces naming a
        ringing leg (directed call pickup); its offer is answered from this media leg. `side` "a":
        the answering leg takes the first party's place in the call (a transfer by that party)."""
        try:
            port = await self.endpoint(leg)
        except PortPoolExhausted:
            log.warning("call %s: no RTP port free for %s", self.call.uuid, leg)
            return None, 503
        offer = sdpmod.offer(self.s.media_address, port, session_id=int(time.time()))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[OutLeg | None, int, bytes]] = loop.create_future()

        def done(out: OutLeg | None, status: int, body: bytes) -> None:
            if not fut.done():
                fut.set_result((out, status, body))

        def answer_offer(body: bytes) -> bytes | None:
            try:
                answer, _ = sdpmod.answer(sdpmod.parse(body), self.s.media_address, port,
                                          session_id=int(time.time()))
            except (sdpmod.SdpError, ValueError):
                return None
            return bytes(answer)

        attempt = self.s.b2bua.originate(self.call, targets, bytes(offer), timeout=timeout, on_result=done,
                                         from_user=from_user, answer_offer=answer_offer if replaceable else None,
                                         side=side)
        self._ringing = (attempt, fut)
        try:
            out, status, body = await fut
        except asyncio.CancelledError:
            self.s.b2bua.cancel_attempt(attempt)
            raise
        finally:
            self._ringing = None
        if out is None:
            await self.release(leg)
            return None, status
        try:
            answer = sdpmod.parse(body)
            await self.s.media.set_remote(leg, answer)
        except (sdpmod.SdpError, ValueError):
            log.warning("call %s: the answer to our offer is unusable", self.call.uuid)
            self.s.b2bua.drop_leg(self.call)
            await self.release(leg)
            return None, 488
        return out, status

    async def bridge(self, leg: str) -> None:
        """Connect the caller with an answered leg (stops whatever the caller was hearing)."""
        await self.answer()
        await self.s.media.stop(self.a_leg)
        await self.s.media.bridge(self.a_leg, leg)
        self.b_leg = leg
        if self.record_wanted:
            await self._start_recording()

    async def release(self, leg: str) -> None:
        self.legs.discard(leg)
        self._ports.pop(leg, None)
        await self.s.media.release(leg)

    def _forwarding(self, user: str) -> Forwarding | None:
        return self.s.forwarding(user) if self.s.forwarding is not None else None

    def _forwarded(self, number: str, caller_id: str | None) -> list[Target]:
        """Where a forward destination rings (a user's phones, an outside number via a trunk)."""
        if self.s.forward_targets is None:
            return []
        return self.s.forward_targets(number, caller_id or self.call.caller)

    def _targets_of(self, t: c.DialTarget, caller_id: str | None) -> list[Target]:
        if t.kind == "user":
            fwd = self._forwarding(t.value)
            if fwd is not None and fwd.always and self.s.forward_targets is not None:
                return self._forwarded(fwd.always, caller_id)  # unconditional: the user's phones never ring
            return self.s.lookup_user(t.value)
        if self.s.lookup_external is not None:
            found = self.s.lookup_external(t.value, caller_id or self.call.caller, t.trunk)
            if found is not None:
                return [found]
        return []

    async def _dial(self, cmd: c.Dial) -> c.DialResult:
        """Ring the targets: all at once (ring_all), or one member after another for `timeout`
        each (sequential; round_robin starts after the member who answered last; random).

        Users' forwarding: `always` rings the forward destination instead of a user's phones,
        for every target. A step that dials one user also forwards once on busy (486/600) or no
        answer (nobody within the user's `no_answer_after`, or no phone registered), for what is
        left of the step's timeout; ring group members are not forwarded on busy or no answer
        (the group's next member, or the plan's next step, is the fallback there)."""
        fwd: Forwarding | None = None
        if len(cmd.targets) == 1 and cmd.targets[0].kind == "user" and self.s.forward_targets is not None:
            fwd = self._forwarding(cmd.targets[0].value)
            if fwd is not None and fwd.always:
                fwd = None  # _targets_of already rings the destination; it is not forwarded again
        if cmd.strategy == "ring_all" or len(cmd.targets) < 2:
            rounds = [[t for d in cmd.targets for t in self._targets_of(d, cmd.caller_id)]]
        else:
            members = list(cmd.targets)
            if cmd.strategy == "random":
                random.shuffle(members)
            elif cmd.strategy == "round_robin":
                start = self.s.next_in_turn(tuple(d.value for d in cmd.targets))
                members = members[start:] + members[:start]
            rounds = [self._targets_of(d, cmd.caller_id) for d in members]
        ring_for = cmd.timeout
        if fwd is not None:
            if not rounds[0] and fwd.no_answer:
                # No phone registered counts as not answering: straight to the destination.
                rounds = [self._forwarded(fwd.no_answer, cmd.caller_id)]
                fwd = None
            else:
                ring_for = first_ring(fwd, cmd.timeout)
        rounds = [r for r in rounds if r]
        if not rounds:
            return c.DialResult(status="failed")
        if not self.answered:
            self.s.b2bua.ring(self.call)
        status = 0
        out: OutLeg | None = None
        leg = ""
        users = [d.value for d in cmd.targets if d.kind == "user"]
        for user in users:
            self.s.ringing[user] = self
        started = time.monotonic()
        try:
            for targets in rounds:
                if self.ended.is_set():
                    break
                leg = f"{self.call.uuid}:b{uuid.uuid4().hex[:6]}"
                out, status = await self.originate(leg, targets, ring_for, replaceable=True)
                if self.picked_by is not None:
                    return await self._picked_up(self.picked_by)
                if out is not None:
                    break
            hop = forward_ring(fwd, status, cmd.timeout, time.monotonic() - started) if out is None else None
            targets = self._forwarded(hop[0], cmd.caller_id) if hop is not None else []
            if targets and hop is not None and not self.ended.is_set():
                log.info("call %s: %s forwarded after %d to %s", self.call.uuid, users[0], status, hop[0])
                leg = f"{self.call.uuid}:f{uuid.uuid4().hex[:6]}"
                out, status = await self.originate(leg, targets, hop[1], replaceable=True)
                if self.picked_by is not None:
                    return await self._picked_up(self.picked_by)
        finally:
            for user in users:
                if self.s.ringing.get(user) is self:
                    del self.s.ringing[user]
        if out is not None:
            await self.bridge(leg)
            if cmd.strategy == "round_robin":
                self.s.answered_by(tuple(d.value for d in cmd.targets), out.target.user)
            return c.DialResult(status="answered", answered_by=out.target.user)
        return c.DialResult(status=DIAL_STATUS.get(status, "failed"))  # type: ignore[arg-type]

    def pickup(self, picker: CallSession) -> bool:
        """Another phone answers this call while it rings (call pickup); False if it no longer rings."""
        if self._ringing is None or self.picked_by is not None:
            return False
        attempt, fut = self._ringing
        self.picked_by = picker
        self.s.b2bua.cancel_attempt(attempt)  # type: ignore[arg-type]
        if not fut.done():
            fut.set_result((None, 0, b""))
        return True

    async def _picked_up(self, picker: CallSession) -> c.DialResult:
        """Connect the caller with the phone that picked the call up; either hanging up ends both."""
        await self.bridge(picker.a_leg)
        self.call.agent = picker.call.caller
        asyncio.get_running_loop().create_task(self._hang_up_together(picker))
        return c.DialResult(status="answered", answered_by=picker.call.caller)

    async def _hang_up_together(self, other: CallSession) -> None:
        waits = [asyncio.ensure_future(self.ended.wait()), asyncio.ensure_future(other.ended.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        for session in (self, other):
            if not session.ended.is_set():
                session._hangup("normal_clearing")

    async def _start_recording(self) -> None:
        if self.recording or not self.answered:
            return
        self.recording = True
        await self.s.media.record_start(self.call.uuid, self.a_leg, self.b_leg)

    async def _voicemail(self, cmd: c.RecordVoicemail) -> c.Result:
        await self.answer()
        if cmd.beep:
            await self._play(beep(), False)
        self.s.voicemail_dir.mkdir(parents=True, exist_ok=True)
        path = self.s.voicemail_dir / f"{cmd.box}-{time.strftime('%Y%m%d-%H%M%S')}-{self.call.uuid[:8]}.wav"
        key = f"{self.call.uuid}-vm"
        started = time.time()
        await self.s.media.record_start(key, self.a_leg, None, path=path, stereo=False)
        self._drain_digits()
        try:
            end = started + cmd.max_seconds
            while (left := end - time.time()) > 0:
                try:
                    if await asyncio.wait_for(self.digits.get(), left) == "#":
                        break
                except TimeoutError:
                    break
        finally:
            saved = await self.s.media.record_stop(key)
        duration = saved.duration if saved is not None else time.time() - started
        self.s.publish(c.VoicemailLeft(ts=time.time(), box=cmd.box, caller=self.call.caller, path=str(path),
                                       duration=duration, call_uuid=self.call.uuid))
        return c.VoicemailRecorded(path=str(path), duration=duration)

    async def _http(self, cmd: c.HttpLookup) -> c.HttpResult:
        try:
            async with httpx.AsyncClient(timeout=cmd.timeout) as client:
                resp = await client.request(cmd.method, cmd.url, json=cmd.body)
            try:
                data = resp.json()
            except ValueError:
                data = None
            return c.HttpResult(status=resp.status_code, json=data)
        except httpx.HTTPError as exc:
            log.info("call %s: lookup %s failed: %s", self.call.uuid, cmd.url, exc)
            return c.HttpResult(status=0)

    async def _book_callback(self, cmd: c.BookCallback) -> c.CallbackBooked:
        """Book the callback with the node's campaigns; any failure is a result the plan branches on."""
        from softswitch.campaigns import CallbackSpec  # here: campaigns imports this module

        if self.s.book_callback is None:
            return c.CallbackBooked(ok=False, error="callbacks are not available on this node")
        try:
            spec = CallbackSpec(number=cmd.number, due=cmd.due, queue=cmd.queue, agent=cmd.agent,
                                customer_id=cmd.customer_id, note=cmd.note)
            booked = await self.s.book_callback(spec)
            return c.CallbackBooked(ok=True, id=str(booked["id"]), due=float(booked["due"]))
        except ValidationError as exc:
            error = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        except Exception as exc:
            error = str(exc) or type(exc).__name__
        log.warning("call %s: callback to %s not booked: %s", self.call.uuid, cmd.number, error)
        return c.CallbackBooked(ok=False, error=error)

    def _hangup(self, cause: str) -> None:
        if self.ended.is_set():
            return
        if self.call.state == "ringing":
            self.s.b2bua.reject(self.call, CAUSE_STATUS.get(cause, 480), cause=cause)
        else:
            self.s.b2bua.hangup(self.call.uuid, cause)

    async def _cleanup(self) -> None:
        self.s.sessions.pop(self.call.uuid, None)
        for fn in self.on_cleanup:
            with contextlib.suppress(Exception):
                res = fn()
                if res is not None:
                    await res
        if self.recording:
            self.recording = False
            with contextlib.suppress(Exception):
                await self.s.media.record_stop(self.call.uuid)
        for leg in list(self.legs):
            with contextlib.suppress(Exception):
                await self.release(leg)


class DeferredObserver:
    """The B2BUA's observer for a session created right after its call (breaks the cycle)."""

    def __init__(self, get: Callable[[], CallSession]) -> None:
        self._get = get

    def on_ended(self, call: Call, side: str, cause: str) -> None:
        self._get().on_ended(call, side, cause)

    def on_reoffer(self, call: Call, side: str, sdp: bytes) -> bytes:
        return self._get().on_reoffer(call, side, sdp)

    def on_refer(self, call: Call, refer_to: str, side: str = "b") -> bool:
        return self._get().on_refer(call, refer_to, side)


CALLBACK_NO_ANSWER = "お客様に電話がつながりませんでした。"


class PlacedCall(CallSession):
    """A call the switch places itself: it rings a user's phones first (an agent for a queued
    callback, a supervisor asked for through the API), then may call another party and bridge
    them. Nobody is answered by the switch."""

    def __init__(self, services: SessionServices, call: Call) -> None:
        super().__init__(services, call, None)
        self.answered = True

    @classmethod
    async def ring(cls, services: SessionServices, number: str, user: str, targets: list[Target],
                   timeout: float, *, trunk: str = "",
                   on_placed: Callable[[], None] | None = None) -> tuple[PlacedCall | None, str]:
        """Ring a user's phones showing `number` (or, with `trunk`, a number outside through that
        trunk); (the call, "answered") or (None, a DialResult status)."""
        call_uuid = uuid.uuid4().hex
        leg = f"{call_uuid}:a"
        port = (await services.media.allocate(leg)).port
        offer = sdpmod.offer(services.media_address, port, session_id=int(time.time()))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[OutLeg | None, int, bytes]] = loop.create_future()
        holder: list[PlacedCall] = []

        def done(out: OutLeg | None, status: int, body: bytes) -> None:
            if not fut.done():
                fut.set_result((out, status, body))

        call = services.b2bua.originate_call(number, user, targets, bytes(offer), timeout=timeout,
                                             observer=DeferredObserver(lambda: holder[0]), on_result=done,
                                             call_uuid=call_uuid, trunk=trunk)
        if on_placed is not None:
            on_placed()  # the call now counts against its trunk's channels
        cc = cls(services, call)
        holder.append(cc)
        cc.legs.add(leg)
        cc._ports[leg] = port
        services.sessions[call.uuid] = cc
        out, status, body = await fut
        if out is None:
            await cc._cleanup()
            return None, DIAL_STATUS.get(status, "failed")
        try:
            await services.media.set_remote(leg, sdpmod.parse(body))
        except (sdpmod.SdpError, ValueError):
            cc._hangup("bad_sdp")
            await cc._cleanup()
            return None, "failed"
        return cc, "answered"

    async def dial_customer(self, number: str, from_user: str) -> bool:
        """Call the customer back and bridge them to the agent; waits until the call ends."""
        try:
            targets = self.s.lookup_user(number)
            if not targets and self.s.lookup_external is not None:
                found = self.s.lookup_external(number, from_user, None)
                targets = [found] if found is not None else []
            leg = f"{self.call.uuid}:b"
            out, status = await self.originate(leg, targets, 40.0, from_user=from_user) if targets else (None, 404)
            if out is None:
                path = await self.s.tts.render(CALLBACK_NO_ANSWER, lang="ja")
                await self._play(path, False)
                self._hangup("callback_no_answer")
                return False
            await self.bridge(leg)
            await self.ended.wait()
            return True
        finally:
            await self._cleanup()
