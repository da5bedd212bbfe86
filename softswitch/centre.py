"""The contact centre on a node: the sans-IO ACD engine driven by real calls.

Callers reach it through the dialplan's `queue` step (`enqueue`); offers ring the agent's
registered phones; an answer bridges the call; every decision is published on the bus
(`acd.events.to_bus_events`). Timers are one `call_at` on the engine's next deadline: no polling.
An agent is logged in and ready when their phone registers (the API and feature codes can pause or
log them out), and unreachable as soon as their last registration goes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from acd.engine import AcdEngine
from acd.events import to_bus_events
from acd.model import (
    AgentConfig,
    AgentState,
    Announce,
    CancelOffer,
    Connect,
    Decision,
    EscalationStep,
    Offer,
    Overflow,
    OverflowTarget,
    QueueConfig,
    Reject,
    Strategy,
    TargetKind,
)
from media.ports import PortPoolExhausted
from softswitch.config import NodeConfig, QueueSettings
from softswitch.dialplan import commands as c
from softswitch.events import Event, QueueEvent, RegistrationChanged
from softswitch.timers import DeadlineTimer

if TYPE_CHECKING:
    from softswitch.calls.b2bua import Attempt, Target
    from softswitch.calls.session import CallSession, PlacedCall, SessionServices

log = logging.getLogger(__name__)


def _overflow(o: object) -> OverflowTarget | None:
    if o is None:
        return None
    for kind, attr in ((TargetKind.QUEUE, "queue"), (TargetKind.NUMBER, "number"),
                       (TargetKind.VOICEMAIL, "voicemail"), (TargetKind.TRUNK, "trunk")):
        value = getattr(o, attr, None)
        if value:
            return OverflowTarget(kind, value)
    if getattr(o, "callback", False):
        return OverflowTarget(TargetKind.CALLBACK)
    return None


def queue_config(q: QueueSettings) -> QueueConfig:
    """The ACD's queue from the node config's queue settings."""
    return QueueConfig(
        name=q.name, skills=dict(q.skills), priority=q.priority, strategy=Strategy(q.strategy),
        max_wait=q.max_wait, max_size=q.max_size, wrap_up=q.wrap_up, service_level=q.service_level_seconds,
        announce_every=q.announce_every, ring_timeout=q.ring_timeout, max_no_answer=q.max_no_answer,
        affinity_wait=q.affinity_wait if q.affinity else 0.0,
        escalation=tuple(EscalationStep(after=s.after, relax_proficiency=s.relax_proficiency or 0,
                                        add_queues=tuple(s.add_queues), overflow=_overflow(s.overflow))
                         for s in q.escalation),
        **({"weights": dict(q.weights)} if q.weights else {}),
    )


def agent_configs(config: NodeConfig) -> list[AgentConfig]:
    """Every user with an agent profile, with skills and queue tiers."""
    out = []
    for user in config.directory.users:
        if user.agent is None:
            continue
        out.append(AgentConfig(id=user.id, skills=dict(user.agent.skills),
                               queues={m.queue: m.tier for m in user.agent.queues}))
    return out


@dataclass
class Waiting:
    """A caller in a queue: the session, what the dialplan waits for, offers ringing."""

    session: CallSession
    result: asyncio.Future[c.QueueResult]
    queue: str
    offers: dict[int, tuple[str, Attempt | None, str]] = field(default_factory=dict)  # id -> agent, attempt, leg
    connected: str = ""
    moh: object | None = None
    joined: float = field(default_factory=time.time)
    variables: dict[str, str] = field(default_factory=dict)  # shown on the agent's screen pop
    number: str = ""  # the customer's number (the caller's, or the callee's of a call placed out)


@dataclass
class Callback:
    """A caller who pressed the callback key, hung up and keeps their place."""

    number: str
    queue: str
    customer_id: str = ""
    session: PlacedCall | None = None
    reason: str = ""  # why the agent is called (shown on the screen pop)
    on_done: Callable[[str], None] | None = None  # told "connected" or "no_answer" at the end


CALLBACK_CONFIRM = "順番が来ましたら、こちらからお電話いたします。このままお切りください。"


class ContactCentre:
    """Queues on a node: the ACD engine plus the calls it routes."""

    def __init__(self, config: NodeConfig, *, publish: Callable[[Event], None],
                 lookup_user: Callable[[str], list[Target]], moh: Callable[[], object] | None = None,
                 announce_lang: str = "ja", rng: random.Random | None = None) -> None:
        self.config = config
        self.publish = publish
        self.lookup_user = lookup_user
        self.engine = AcdEngine([queue_config(q) for q in config.queues], agent_configs(config),
                                rng=rng or random.Random())
        self.agents = {a.id for a in agent_configs(config)}
        self.waiting: dict[str, Waiting] = {}
        self.logged_out: set[str] = set()  # agents who logged out themselves (no auto login)
        self.callbacks: dict[str, Callback] = {}  # callers who asked to be called back, by caller id
        self.services: SessionServices | None = None  # set by the node (media, B2BUA, TTS for callbacks)
        self.moh = moh
        self.announce_lang = announce_lang
        self._timer = DeadlineTimer(self._on_timer, time.time)

    # -- inputs ------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Bus subscriber: registrations make agents reachable (and log them in) or not."""
        if not isinstance(event, RegistrationChanged):
            return
        self.refresh_agent(event.aor.removeprefix("sip:").split("@", 1)[0])

    def refresh_agent(self, agent: str) -> None:
        """Bring an agent's ACD state in line with their registrations (also after a restart)."""
        if agent not in self.agents:
            return
        now = time.time()
        reachable = bool(self.lookup_user(agent))
        decisions: list[Decision] = []
        # An agent who logged out on purpose stays out when the phone refreshes its registration.
        if reachable and self.engine.agent_state(agent) == AgentState.OFFLINE and agent not in self.logged_out:
            decisions += self.engine.agent_logged_in(agent, now)
        decisions += self.engine.set_reachable(agent, reachable, now)
        self.apply(decisions)

    async def enqueue(self, session: CallSession, cmd: c.EnqueueAcd, *,
                      assign_within: float | None = None, number: str | None = None) -> c.QueueResult:
        """Put a call in a queue and wait until it is answered by an agent or leaves the queue.

        With `assign_within`, a caller that no agent has been offered within that many seconds
        leaves with outcome "timeout" (a predictive dialler's answered call finding nobody free).
        `number` is the customer's when it is not the caller's (a call the switch placed out)."""
        call = session.call
        if cmd.queue not in {q.name for q in self.config.queues}:
            return c.QueueResult(outcome="no_agents")
        loop = asyncio.get_running_loop()
        w = Waiting(session=session, result=loop.create_future(), queue=cmd.queue, variables=dict(cmd.variables),
                    number=number or call.caller)
        if cmd.max_waiting is not None and self.engine.queue_status(cmd.queue, time.time()).get("waiting", 0) >= cmd.max_waiting:
            return c.QueueResult(outcome="full")
        self.waiting[call.uuid] = w
        call.queue = cmd.queue
        call.customer_id = cmd.variables.get("customer_id", "")
        await self._start_moh(w)
        self.publish(QueueEvent(ts=time.time(), queue=cmd.queue, call_uuid=call.uuid, event="joined",
                                caller=w.number, reason="dialplan queue step"))
        decisions = self.engine.caller_joined(
            call.uuid, cmd.queue, time.time(), priority=cmd.priority or 0, skills=cmd.skills or None,
            number=w.number, customer_id=call.customer_id,
        )
        self.apply(decisions)
        key = self._callback_key(cmd.queue)
        watcher = asyncio.ensure_future(self._watch_callback_key(w, key)) if key else None
        deadline = loop.call_later(assign_within, self._unassigned, w) if assign_within is not None else None
        try:
            if cmd.max_wait is not None:
                return await asyncio.wait_for(asyncio.shield(w.result), cmd.max_wait)
            return await w.result
        except TimeoutError:
            self._leave(call.uuid)
            return c.QueueResult(outcome="timeout")
        except asyncio.CancelledError:
            # The caller hung up (or the plan moved on): leave the queue, stop ringing agents.
            self._leave(call.uuid)
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
            if deadline is not None:
                deadline.cancel()
            if not w.connected:
                self.waiting.pop(call.uuid, None)
            session.on_cleanup.append(lambda: self._call_over(call.uuid))

    def _unassigned(self, w: Waiting) -> None:
        if w.offers or w.connected or w.result.done():
            return
        w.result.set_result(c.QueueResult(outcome="timeout"))
        self._leave(w.session.call.uuid)

    def _leave(self, caller: str) -> None:
        w = self.waiting.pop(caller, None)
        if w is None:
            return
        for _, attempt, leg in w.offers.values():
            if attempt is not None:
                w.session.s.b2bua.cancel_attempt(attempt)
            asyncio.get_running_loop().create_task(w.session.release(leg))
        w.offers.clear()
        if not w.connected:
            now = time.time()
            if caller not in self.callbacks:
                self.publish(QueueEvent(ts=now, queue=w.queue, call_uuid=caller, event="abandoned",
                                        caller=w.number, wait=now - w.joined,
                                        reason="caller hung up or left the queue"))
            # With a callback requested the engine keeps the caller's place.
            self.apply(self.engine.caller_left(caller, now))

    def _call_over(self, caller: str) -> None:
        w = self.waiting.pop(caller, None)
        if w is not None and w.connected:
            self.apply(self.engine.call_ended(caller, time.time()))

    # -- queued callbacks ----------------------------------------------------------------------

    def _callback_key(self, queue: str) -> str | None:
        for q in self.config.queues:
            if q.name == queue:
                return q.callback_key
        return None

    async def _watch_callback_key(self, w: Waiting, key: str) -> None:
        """While the caller waits: the callback key keeps their place and ends the call."""
        session = w.session
        while True:
            digit = await session.digits.get()
            if digit == key:
                break
        call = session.call
        self.callbacks[call.uuid] = Callback(number=call.caller, queue=w.queue, customer_id=call.customer_id)
        self.publish(QueueEvent(ts=time.time(), queue=w.queue, call_uuid=call.uuid, event="callback_requested",
                                caller=call.caller, wait=time.time() - w.joined, reason="caller pressed " + key))
        self.apply(self.engine.callback_requested(call.uuid, call.caller, time.time()))
        await session.s.media.stop(session.a_leg)
        path = await session.s.tts.render(CALLBACK_CONFIRM, lang=self.announce_lang)
        handle = await session.s.media.play(session.a_leg, path)
        await handle.wait()
        session._hangup("callback_requested")

    def _callback_offer(self, d: Offer) -> None:
        """The turn of a caller who asked for a callback: ring the agent first, then the caller."""
        cb = self.callbacks.get(d.caller)
        targets = self.lookup_user(d.agent)
        if cb is None or self.services is None or not targets:
            self.apply(self.engine.offer_rejected(d.caller, d.agent, time.time()))
            return
        asyncio.get_running_loop().create_task(self._run_callback(cb, d, targets))

    async def _run_callback(self, cb: Callback, d: Offer, targets: list[Target]) -> None:
        from softswitch.calls.session import PlacedCall

        assert self.services is not None
        cc, result = await PlacedCall.ring(self.services, cb.number, d.agent, targets, d.ring_timeout + 2)
        cb.session = cc
        now = time.time()
        if result == "answered":
            self.apply(self.engine.offer_accepted(d.caller, d.agent, now))
        elif result in ("no_answer",):
            cb.session = None
            self.apply(self.engine.offer_timed_out(d.caller, d.agent, now))
        else:
            cb.session = None
            self.apply(self.engine.offer_rejected(d.caller, d.agent, now))

    async def _connect_callback(self, cb: Callback, d: Connect) -> None:
        cc = cb.session
        if cc is None:
            return
        self.callbacks.pop(d.caller, None)
        cc.call.queue = d.queue
        cc.call.agent = d.agent
        cc.call.customer_id = cb.customer_id
        reached = False
        try:
            reached = await cc.dial_customer(cb.number, from_user=d.queue)
        finally:
            # Whatever happened, the agent is free again and the booking learns the outcome.
            self.apply(self.engine.call_ended(d.caller, time.time()))
            if cb.on_done is not None:
                cb.on_done("connected" if reached else "no_answer")

    def schedule_callback(self, key: str, number: str, queue: str, *, customer_id: str = "",
                          agent: str | None = None, prefer_wait: float = 120.0, reason: str = "",
                          on_done: Callable[[str], None] | None = None) -> str | None:
        """A booked callback falls due: it joins `queue` as a callback (the agent's phone rings
        first, then the customer is dialled), offered to `agent` first when they are logged in.
        None when queued, else why not."""
        if queue not in {q.name for q in self.config.queues}:
            return "unknown-queue"
        caller = f"callback-{key}"
        if caller in self.callbacks or self.engine.caller_state(caller) is not None:
            return "already-queued"
        self.callbacks[caller] = Callback(number=number, queue=queue, customer_id=customer_id, reason=reason,
                                          on_done=on_done)
        now = time.time()
        self.publish(QueueEvent(ts=now, queue=queue, call_uuid=caller, event="joined", caller=number,
                                reason=reason or "scheduled callback"))
        self.apply(self.engine.caller_joined(
            caller, queue, now, number=number, customer_id=customer_id, callback_number=number,
            prefer=agent if agent in self.agents else None, prefer_wait=prefer_wait))
        return None

    # -- agents and supervisors (feature codes, API) -----------------------------------------

    def agent_action(self, agent: str, action: str, reason: str = "") -> str | None:
        """login | logout | pause | ready for an agent; None when done, else why not."""
        if agent not in self.agents:
            return "not-an-agent"
        now = time.time()
        state = self.engine.agent_state(agent)
        e = self.engine
        if action == "login":
            self.logged_out.discard(agent)
            decisions = e.agent_logged_in(agent, now) if state == AgentState.OFFLINE else []
            decisions += e.set_reachable(agent, bool(self.lookup_user(agent)), now)
        elif state == AgentState.OFFLINE:
            return "not-logged-in"
        elif action == "logout":
            self.logged_out.add(agent)
            decisions = e.agent_logged_out(agent, now)
        elif action == "pause":
            decisions = e.agent_paused(agent, reason or "break", now)
        elif action == "ready":
            decisions = e.agent_ready(agent, now)
        else:
            return "unknown-action"
        self.apply(decisions)
        return None

    def supervise(self, mode: str, supervisor: str, call_uuid: str) -> str | None:
        """Ring the supervisor's phone and, once answered, mix it into the call (listen, whisper or
        barge); None when the supervisor's phone is being rung, else why not."""
        w = self.waiting.get(call_uuid)
        if w is None or not w.connected or w.session.b_leg is None:
            return "call-not-connected"
        if self.services is None:
            return "no-media"
        targets = self.lookup_user(supervisor)
        if not targets:
            return "supervisor-not-registered"
        from softswitch.calls.features import supervise_by_phone

        asyncio.get_running_loop().create_task(
            supervise_by_phone(self.services, mode, supervisor, targets, w.session))
        return None

    def click_to_call(self, agent: str, number: str, *, customer_id: str = "", record: bool = True) -> str | None:
        """Ring the agent's phone; when they answer, dial the number (through a trunk with the
        centre's caller ID when it is outside) and connect them. None when ringing, else why not."""
        if self.services is None:
            return "no-media"
        targets = self.lookup_user(agent)
        if not targets:
            return "agent-not-registered"
        asyncio.get_running_loop().create_task(self._click_to_call(agent, number, customer_id, record, targets))
        return None

    async def _click_to_call(self, agent: str, number: str, customer_id: str, record: bool,
                             targets: list[Target]) -> None:
        from softswitch.calls.session import PlacedCall

        assert self.services is not None
        cc, status = await PlacedCall.ring(self.services, number, agent, targets, 30.0)
        if cc is None:
            log.info("click-to-call: %s did not answer (%s)", agent, status)
            return
        cc.call.agent = agent
        cc.call.customer_id = customer_id
        cc.record_wanted = record
        await cc.dial_customer(number, from_user=agent)

    def session_of_agent(self, agent: str) -> CallSession | None:
        """The call an agent is connected to right now, if any."""
        for w in self.waiting.values():
            if w.connected == agent and w.session.b_leg is not None:
                return w.session
        return None

    # -- decisions ---------------------------------------------------------------------------

    def apply(self, decisions: list[Decision]) -> None:
        now = time.time()
        for d in decisions:
            for ev in to_bus_events(d, now):
                self.publish(ev)
            try:
                self._decide(d)
            except Exception:
                log.exception("ACD decision %r failed", d)
        self._reschedule()

    def _decide(self, d: Decision) -> None:
        if isinstance(d, Offer):
            self._offer(d)
        elif isinstance(d, CancelOffer):
            w = self.waiting.get(d.caller)
            if w is not None:
                entry = w.offers.pop(d.offer_id, None)
                if entry is not None:
                    _, attempt, leg = entry
                    if attempt is not None:
                        w.session.s.b2bua.cancel_attempt(attempt)
                    asyncio.get_running_loop().create_task(w.session.release(leg))
        elif isinstance(d, Connect):
            cb = self.callbacks.get(d.caller)
            if cb is not None and cb.session is not None:
                asyncio.get_running_loop().create_task(self._connect_callback(cb, d))
                return
            w = self.waiting.get(d.caller)
            if w is not None:
                asyncio.get_running_loop().create_task(self._connect(w, d))
        elif isinstance(d, Announce):
            w = self.waiting.get(d.caller)
            if w is not None and not w.connected:
                asyncio.get_running_loop().create_task(self._announce(w, d))
        elif isinstance(d, Overflow):
            if d.target.kind not in (TargetKind.QUEUE, TargetKind.CALLBACK):
                self._finish_waiting(d.caller, "overflow")
                self._drop_callback(d.caller, d.reason)
        elif isinstance(d, Reject):
            self._finish_waiting(d.caller, "full" if "full" in d.reason else "timeout")
            self._drop_callback(d.caller, d.reason)

    def _drop_callback(self, caller: str, reason: str) -> None:
        """A callback the ACD gave up on (its queue's max wait, an overflow elsewhere): the booking
        learns it was not made, instead of waiting for ever."""
        cb = self.callbacks.get(caller)
        if cb is None or caller in self.waiting or cb.session is not None:
            return
        self.callbacks.pop(caller, None)
        log.warning("callback to %s dropped by the ACD: %s", cb.number, reason)
        if cb.on_done is not None:
            cb.on_done("dropped")

    def _finish_waiting(self, caller: str, outcome: str) -> None:
        w = self.waiting.get(caller)
        if w is not None and not w.result.done():
            w.result.set_result(c.QueueResult(outcome=outcome))  # type: ignore[arg-type]

    def _offer(self, d: Offer) -> None:
        if d.callback_number is not None and d.caller in self.callbacks:
            self._callback_offer(d)
            return
        w = self.waiting.get(d.caller)
        if w is None:
            self.apply(self.engine.offer_rejected(d.caller, d.agent, time.time()))
            return
        targets = self.lookup_user(d.agent)
        if not targets:
            self.apply(self.engine.set_reachable(d.agent, False, time.time()))
            return
        leg = f"{w.session.call.uuid}:agent{d.offer_id}"
        w.offers[d.offer_id] = (d.agent, None, leg)
        asyncio.get_running_loop().create_task(self._ring(w, d, targets, leg))

    async def _ring(self, w: Waiting, d: Offer, targets: list[Target], leg: str) -> None:
        session = w.session
        try:
            port = await session.endpoint(leg)
        except PortPoolExhausted:
            log.warning("no RTP port free to ring agent %s", d.agent)
            w.offers.pop(d.offer_id, None)
            self.apply(self.engine.offer_rejected(d.caller, d.agent, time.time()))
            return
        from media import sdp as sdpmod

        offer = sdpmod.offer(session.s.media_address, port, session_id=int(time.time()))
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[tuple[object, int, bytes]] = loop.create_future()

        def done(out: object, status: int, body: bytes) -> None:
            if not answered.done():
                answered.set_result((out, status, body))

        if d.offer_id not in w.offers:  # withdrawn while the endpoint was allocated
            await session.release(leg)
            return
        attempt = session.s.b2bua.originate(session.call, targets, bytes(offer), timeout=d.ring_timeout + 2,
                                            on_result=done)
        w.offers[d.offer_id] = (d.agent, attempt, leg)
        out, status, body = await answered
        now = time.time()
        if d.offer_id not in w.offers:
            return
        if out is None:
            w.offers.pop(d.offer_id, None)
            await session.release(leg)
            if status in (408, 480, 487):
                self.apply(self.engine.offer_timed_out(d.caller, d.agent, now))
            else:
                self.apply(self.engine.offer_rejected(d.caller, d.agent, now))
            return
        try:
            await session.s.media.set_remote(leg, sdpmod.parse(body))
        except (sdpmod.SdpError, ValueError):
            session.s.b2bua.drop_leg(session.call)
            w.offers.pop(d.offer_id, None)
            await session.release(leg)
            self.apply(self.engine.offer_rejected(d.caller, d.agent, now))
            return
        self.apply(self.engine.offer_accepted(d.caller, d.agent, now))

    async def _connect(self, w: Waiting, d: Connect) -> None:
        leg = next((lg for agent, _, lg in w.offers.values() if agent == d.agent), None)
        if leg is None:
            return
        w.connected = d.agent
        w.offers = {k: v for k, v in w.offers.items() if v[0] == d.agent}
        session = w.session
        session.call.agent = d.agent
        await session.bridge(leg)
        if not w.result.done():
            w.result.set_result(c.QueueResult(outcome="answered", agent=d.agent))

    async def _start_moh(self, w: Waiting) -> None:
        if self.moh is None:
            return
        try:
            w.moh = await w.session.s.media.play(w.session.a_leg, self.moh(), loop=True)
        except Exception:
            log.exception("music on hold failed")

    async def _announce(self, w: Waiting, d: Announce) -> None:
        if d.estimated_wait is not None and d.estimated_wait >= 60:
            minutes = max(1, round(d.estimated_wait / 60))
            text = f"ただいま{d.position}番目にお待ちいただいております。およそ{minutes}分でおつなぎします。"
        else:
            text = f"ただいま{d.position}番目にお待ちいただいております。まもなくおつなぎします。"
        session = w.session
        try:
            path = await session.s.tts.render(text, lang=self.announce_lang)
            if w.connected or session.ended.is_set():
                return
            handle = await session.s.media.play(session.a_leg, path)
            await handle.wait()
            if not w.connected and not session.ended.is_set():
                await self._start_moh(w)
        except Exception:
            log.exception("announcement failed")

    # -- timers ------------------------------------------------------------------------------

    def _reschedule(self) -> None:
        self._timer.arm(self.engine.next_deadline())

    def _on_timer(self) -> None:
        self.apply(self.engine.tick(time.time()))

    def close(self) -> None:
        self._timer.cancel()
