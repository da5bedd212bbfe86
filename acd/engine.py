"""The ACD engine: a sans-IO core. Events go in with the current time, decisions come out.

Matching is event driven. A caller joining, an agent becoming available or a deadline firing makes a
decision at once; `tick(now)` only handles due deadlines (a heap; `next_deadline()` tells the shell
when to call it). Available agents are indexed per queue and tier in longest-idle order and waiting
callers are kept sorted per queue, so no decision scans all agents or all callers.
"""

from __future__ import annotations

import heapq
import itertools
import random
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Mapping

from acd.affinity import AffinityMemory
from acd.model import (
    AcdEvent,
    AgentConfig,
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPaused,
    AgentReachability,
    AgentReady,
    AgentState,
    AgentStateChange,
    Announce,
    CallbackCancelled,
    CallbackRequested,
    CallEnded,
    CallerJoined,
    CallerLeft,
    CancelOffer,
    Connect,
    Decision,
    Escalate,
    Offer,
    OfferAccepted,
    OfferRejected,
    OfferTimedOut,
    Overflow,
    OverflowTarget,
    QueueConfig,
    Reject,
    ScheduleCallback,
    Strategy,
    TargetKind,
    Tick,
    WrapUpDone,
)
from acd.stats import StatsBook
from acd.strategies import select

# Caller states
WAITING = "waiting"
OFFERED = "offered"
CONNECTED = "connected"

# Deadline kinds
_RING, _WRAP, _ESC, _MAXWAIT, _AFF, _ANN, _RETRY, _LEFT = range(8)

_BUSY = (AgentState.OFFERED, AgentState.ON_CALL, AgentState.WRAP_UP)
_UNSTAFFED = (AgentState.OFFLINE, AgentState.PAUSED)

Entry = tuple[float, int, str]  # (virtual join time, sequence, caller id): sort order in a queue
Signature = tuple[tuple[tuple[str, int], ...], int]  # (required skills, relaxation)


class _Agent:
    __slots__ = (
        "call_queue",
        "caller",
        "calls",
        "gen",
        "id",
        "idle_since",
        "misses",
        "offer",
        "order",
        "pending",
        "queue_names",
        "queues",
        "reachable",
        "reason",
        "since",
        "skills",
        "state",
        "talk_time",
    )

    def __init__(self, cfg: AgentConfig, order: dict[str, int]) -> None:
        self.id = cfg.id
        self.skills: Mapping[str, int] = dict(cfg.skills)
        self.queues: dict[str, int] = dict(cfg.queues)
        self.queue_names = tuple(self.queues)
        self.order = order  # ordinal per queue, for round robin
        self.state = AgentState.OFFLINE
        self.reason = ""
        self.reachable = True
        self.idle_since = 0.0
        self.since = 0.0
        self.calls = 0
        self.talk_time = 0.0
        self.misses = 0
        self.offer: int | None = None
        self.caller: str | None = None
        self.call_queue = ""
        self.gen = 0
        self.pending: tuple[AgentState, str] | None = None  # pause/logout asked for during a call


class _Queue:
    __slots__ = ("avail", "avail_skill", "by_sig", "cfg", "handle_sum", "handle_times", "home_count", "member_seq", "members", "rr_last", "staffed", "tiers", "waiting")

    def __init__(self, cfg: QueueConfig) -> None:
        self.cfg = cfg
        self.waiting: list[Entry] = []  # home callers and callers who borrowed this queue's agents
        # The same entries split by requirement signature (skills, relaxation): an agent checks its
        # skills once per signature instead of once per caller.
        self.by_sig: dict[Signature, list[Entry]] = {}
        self.home_count = 0
        self.avail: dict[int, dict[str, None]] = {}  # tier -> available agents in longest-idle order
        self.tiers: list[int] = []
        self.avail_skill: dict[int, dict[str, dict[str, None]]] = {}  # tier -> skill -> agents, same order
        self.members: dict[str, int] = {}  # agent -> ordinal (round robin order)
        self.member_seq = 0
        self.rr_last = -1
        self.staffed = 0
        self.handle_times: deque[float] = deque(maxlen=100)
        self.handle_sum = 0.0

    def aht(self) -> float:
        if not self.handle_times:
            return self.cfg.default_handle_time
        return self.handle_sum / len(self.handle_times)


class _Caller:
    __slots__ = (
        "aff_until",
        "agent",
        "answered_at",
        "callback_number",
        "customer_id",
        "entry",
        "esc_base",
        "gen",
        "id",
        "join_time",
        "key",
        "missed",
        "next_step",
        "number",
        "offers",
        "pool",
        "preferred",
        "priority",
        "queue",
        "relax",
        "req",
        "req_key",
        "sig",
        "state",
    )

    def __init__(self, cid: str, queue: str, now: float) -> None:
        self.id = cid
        self.queue = queue
        self.priority = 0
        self.req: dict[str, int] = {}
        self.req_key: tuple[tuple[str, int], ...] = ()
        self.sig: Signature = ((), 0)
        self.join_time = now
        self.entry: Entry = (now, 0, cid)
        self.number = ""
        self.customer_id = ""
        self.key = ""
        self.state = WAITING
        self.offers: dict[str, int] = {}
        self.pool: list[str] = [queue]
        self.relax = 0
        self.next_step = 0
        self.esc_base = now
        self.preferred: str | None = None
        self.aff_until = 0.0
        self.missed: dict[str, float] = {}
        self.callback_number: str | None = None
        self.agent: str | None = None
        self.answered_at = 0.0
        self.gen = 0


class _Left:
    """A caller who hung up while waiting, remembered for the rejoin grace."""

    __slots__ = ("caller", "expires", "left_at")

    def __init__(self, caller: _Caller, left_at: float, expires: float) -> None:
        self.caller = caller
        self.left_at = left_at
        self.expires = expires


class AcdEngine:
    """Queues callers and offers them to agents. Every method takes `now` and returns decisions."""

    def __init__(
        self,
        queues: list[QueueConfig] | tuple[QueueConfig, ...] = (),
        agents: list[AgentConfig] | tuple[AgentConfig, ...] = (),
        *,
        rng: random.Random | None = None,
        affinity: AffinityMemory | None = None,
        stats: StatsBook | None = None,
    ) -> None:
        self.rng = rng if rng is not None else random.Random(0)
        self.affinity = affinity if affinity is not None else AffinityMemory()
        self.stats = stats if stats is not None else StatsBook()
        self._queues: dict[str, _Queue] = {}
        self._agents: dict[str, _Agent] = {}
        self._callers: dict[str, _Caller] = {}
        self._offers: dict[int, tuple[str, str]] = {}
        self._awaiting: dict[str, dict[str, None]] = {}  # agent -> callers waiting for them (affinity)
        self._left: dict[str, _Left] = {}
        self._heap: list[tuple[float, int, int, object, int]] = []
        self._seq = itertools.count()
        self._offer_ids = itertools.count(1)
        for q in queues:
            self.add_queue(q)
        for a in agents:
            self.add_agent(a)

    # ---------------------------------------------------------------------------------------
    # Configuration

    def add_queue(self, cfg: QueueConfig) -> None:
        """Add (or reconfigure) a queue."""
        existing = self._queues.get(cfg.name)
        if existing is not None:
            existing.cfg = cfg
        else:
            self._queues[cfg.name] = _Queue(cfg)

    def add_agent(self, cfg: AgentConfig) -> None:
        """Add an agent, logged out. Every queue it belongs to must exist."""
        if cfg.id in self._agents:
            raise ValueError(f"agent {cfg.id} already exists")
        self._check_queues(cfg)
        a = self._agents[cfg.id] = _Agent(cfg, {})
        self._join_queues(a)

    def update_agent(self, cfg: AgentConfig, now: float) -> list[Decision]:
        """Change an agent's skills or queue memberships (a supervisor edit), whatever its state."""
        self._check_queues(cfg)
        a = self._agents[cfg.id]
        indexed = a.state is AgentState.AVAILABLE and a.reachable
        staffed = a.state not in _UNSTAFFED
        if indexed:
            self._index_remove(a)
        for qn in a.queue_names:
            q = self._queues[qn]
            q.staffed -= staffed
            if qn not in cfg.queues:
                q.members.pop(a.id, None)
        a.skills = dict(cfg.skills)
        a.queues = dict(cfg.queues)
        a.queue_names = tuple(a.queues)
        self._join_queues(a)
        for qn in a.queue_names:
            self._queues[qn].staffed += staffed
        out: list[Decision] = []
        if indexed:
            self._index_add(a)
            self._match_agent(a, now, out)
        return out

    def remove_agent(self, agent: str, now: float) -> list[Decision]:
        """Forget an agent (not while on a call): a ringing offer goes to someone else."""
        a = self._agents[agent]
        if a.state is AgentState.ON_CALL:
            raise ValueError(f"agent {agent} is on a call; log them out first")
        out = self._leave_service(a, AgentState.OFFLINE, "removed", now)
        for cid in list(self._awaiting.get(agent, ())):
            c = self._callers[cid]
            self._unawait(c)
            self._match_caller(c, now, out, f"prior handler {agent} removed")
        for qn in a.queue_names:
            self._queues[qn].members.pop(agent, None)
        del self._agents[agent]
        return out

    def reset_agent_counters(self) -> None:
        """Start a new day for fewest-calls and least-talk-time (calls taken and talk time to zero)."""
        for a in self._agents.values():
            a.calls = 0
            a.talk_time = 0.0

    def _check_queues(self, cfg: AgentConfig) -> None:
        for qn in cfg.queues:
            if qn not in self._queues:
                raise KeyError(f"agent {cfg.id}: unknown queue {qn}")

    def _join_queues(self, a: _Agent) -> None:
        for qn, tier in a.queues.items():
            q = self._queues[qn]
            if a.id not in q.members:
                q.members[a.id] = q.member_seq
                q.member_seq += 1
                self.stats.add_member(qn, a.id)
            a.order[qn] = q.members[a.id]
            if tier not in q.avail:
                q.avail[tier] = {}
                q.avail_skill[tier] = {}
                q.tiers = sorted(q.avail)

    # ---------------------------------------------------------------------------------------
    # Events in

    def handle(self, event: AcdEvent) -> list[Decision]:
        """Dispatch an event given as data to the matching method."""
        now = event.now
        match event:
            case CallerJoined():
                return self.caller_joined(
                    event.caller, event.queue, now, priority=event.priority, skills=event.skills,
                    number=event.number, customer_id=event.customer_id,
                )
            case CallerLeft():
                return self.caller_left(event.caller, now)
            case CallbackRequested():
                return self.callback_requested(event.caller, event.number, now)
            case CallbackCancelled():
                return self.callback_cancelled(event.caller, now)
            case AgentLoggedIn():
                return self.agent_logged_in(event.agent, now)
            case AgentLoggedOut():
                return self.agent_logged_out(event.agent, now)
            case AgentPaused():
                return self.agent_paused(event.agent, event.reason, now)
            case AgentReady():
                return self.agent_ready(event.agent, now)
            case AgentReachability():
                return self.set_reachable(event.agent, event.reachable, now)
            case OfferAccepted():
                return self.offer_accepted(event.caller, event.agent, now)
            case OfferRejected():
                return self.offer_rejected(event.caller, event.agent, now)
            case OfferTimedOut():
                return self.offer_timed_out(event.caller, event.agent, now)
            case CallEnded():
                return self.call_ended(event.caller, now)
            case WrapUpDone():
                return self.wrap_up_done(event.agent, now)
            case Tick():
                return self.tick(now)
        raise TypeError(f"unknown event {event!r}")

    def caller_joined(
        self,
        caller: str,
        queue: str,
        now: float,
        *,
        priority: int = 0,
        skills: Mapping[str, int] | None = None,
        number: str = "",
        customer_id: str = "",
        join_time: float | None = None,
        prefer: str | None = None,
        prefer_wait: float = 0.0,
        callback_number: str | None = None,
    ) -> list[Decision]:
        """A caller enters `queue`. `customer_id` (from a CRM lookup) or `number` keys affinity.

        `join_time` (default `now`) lets a caller who already waited elsewhere (an IVR, a transfer
        from another queue) keep that wait for ordering and statistics. `prefer` names an agent to
        offer the caller to first (a scheduled callback goes to the agent who booked it), waited for
        up to `prefer_wait` seconds while that agent is logged in but busy. `callback_number` makes
        the caller a callback from the start (nobody on the line: offers ring the agent first)."""
        if caller in self._callers:
            raise ValueError(f"caller {caller} is already queued")
        q = self._queues[queue]
        cfg = q.cfg
        out: list[Decision] = []
        key = customer_id or number
        c = _Caller(caller, queue, now if join_time is None else join_time)
        c.esc_base = now
        c.number = number
        c.customer_id = customer_id
        c.key = key
        c.callback_number = callback_number
        left = self._left.pop(key, None) if key else None
        rejoined = left is not None and left.expires >= now and left.caller.queue == queue
        if rejoined:
            assert left is not None
            old = left.caller
            c.join_time = old.join_time
            c.priority = old.priority
            c.req = old.req
            c.req_key = old.req_key
            c.entry = (old.entry[0], old.entry[1], caller)
            c.pool = old.pool
            c.relax = old.relax
            c.next_step = old.next_step
            c.esc_base = old.esc_base
            c.preferred = old.preferred
            c.aff_until = old.aff_until
            self.stats.abandoned(queue, left.left_at, left.left_at - old.join_time, sign=-1)
        else:
            c.priority = priority
            req = dict(cfg.skills)
            for s, m in (skills or {}).items():
                req[s] = max(m, req.get(s, 0))
            c.req = req
            c.req_key = tuple(sorted(req.items()))
            c.entry = (c.join_time - priority * cfg.priority_step, next(self._seq), caller)
            self.stats.offered(queue, now)
        self._callers[caller] = c
        self._insert(c)
        if prefer is not None and not rejoined:
            key = c.key = key or caller
            self.affinity.record_handler(key, prefer, now)
            a = self._agents.get(prefer)
            if (prefer_wait > 0 and a is not None and prefer in q.members and a.state is not AgentState.OFFLINE
                    and not self._eligible(a, c, now)):
                c.preferred = prefer
                c.aff_until = now + prefer_wait
        if c.preferred is not None and c.aff_until > now:
            self._await(c, c.preferred)
            self._push(c.aff_until, _AFF, caller, c.gen)
        elif not rejoined and key:
            self._affinity_on_join(c, now, out)
        self._match_caller(c, now, out, "caller rejoined within grace" if rejoined else "caller joined")
        self._schedule_caller_timers(c, now, announce=c.state == WAITING, out=out)
        if c.state == WAITING and cfg.max_size is not None and q.home_count > cfg.max_size:
            self._overflow(c, cfg.overflow, now, out, f"queue full ({cfg.max_size} waiting)")
        return out

    def caller_left(self, caller: str, now: float) -> list[Decision]:
        """The caller hung up. While waiting this is an abandon (unless they come straight back)."""
        c = self._callers.get(caller)
        if c is None:
            return []
        if c.state == CONNECTED:
            return self.call_ended(caller, now)
        if c.callback_number is not None:
            return []  # hanging up is expected after asking for a callback: the place is kept
        out: list[Decision] = []
        preferred = c.preferred
        self._drop_caller(c, now, out, "caller hung up")
        c.preferred = preferred  # kept for a caller who calls straight back
        self.stats.abandoned(c.queue, now, now - c.join_time)
        grace = self._queues[c.queue].cfg.rejoin_grace
        if grace > 0 and c.key and c.callback_number is None:
            self._left[c.key] = _Left(c, now, now + grace)
            self._push(now + grace, _LEFT, c.key, 0)
        return out

    def caller_moved(self, caller: str, queue: str, now: float) -> list[Decision]:
        """A supervisor moves a waiting caller to another queue: one continuous wait, counted as an
        overflow out of the old queue (not an abandon) and an offer to the new one."""
        c = self._callers.get(caller)
        if c is None or c.state != WAITING:
            raise ValueError(f"caller {caller} is not waiting")
        if queue not in self._queues:
            raise KeyError(f"no queue {queue}")
        out: list[Decision] = []
        self._overflow(c, OverflowTarget(TargetKind.QUEUE, queue), now, out, f"moved to {queue} by a supervisor")
        return out

    def callback_cancelled(self, caller: str, now: float) -> list[Decision]:
        """A queued callback is withdrawn (the customer cancelled it, or calling back failed)."""
        c = self._callers.get(caller)
        if c is None or c.state == CONNECTED:
            return []
        out: list[Decision] = []
        self._drop_caller(c, now, out, "callback cancelled")
        self.stats.abandoned(c.queue, now, now - c.join_time)
        return out

    def callback_requested(self, caller: str, number: str, now: float) -> list[Decision]:
        """The caller pressed the callback key: they keep their place and may hang up."""
        c = self._callers.get(caller)
        if c is None or c.state == CONNECTED:
            return []
        out: list[Decision] = []
        c.callback_number = number or c.number
        out.append(ScheduleCallback(caller=caller, queue=c.queue, number=c.callback_number, reason="caller asked for a callback"))
        return out

    def agent_logged_in(self, agent: str, now: float) -> list[Decision]:
        """The agent logs in and becomes available."""
        a = self._agents[agent]
        out: list[Decision] = []
        if a.state is AgentState.OFFLINE:
            self._set_state(a, AgentState.AVAILABLE, now, "logged in", out)
            self._match_agent(a, now, out)
        return out

    def agent_logged_out(self, agent: str, now: float) -> list[Decision]:
        """The agent logs out; during a call this takes effect when the call ends."""
        return self._leave_service(self._agents[agent], AgentState.OFFLINE, "logged out", now)

    def agent_paused(self, agent: str, reason: str, now: float) -> list[Decision]:
        """The agent pauses (break, lunch, training...); during a call, when the call ends."""
        a = self._agents[agent]
        if a.state is AgentState.OFFLINE:
            return []
        return self._leave_service(a, AgentState.PAUSED, reason, now)

    def agent_ready(self, agent: str, now: float) -> list[Decision]:
        """The agent is ready for calls (from pause, wrap-up, or logged out)."""
        a = self._agents[agent]
        out: list[Decision] = []
        if a.state is AgentState.ON_CALL or a.state is AgentState.OFFERED:
            a.pending = None
            return out
        if a.state is AgentState.WRAP_UP:
            return self.wrap_up_done(agent, now)
        if a.state is not AgentState.AVAILABLE:
            a.misses = 0
            self._set_state(a, AgentState.AVAILABLE, now, "ready", out)
            self._match_agent(a, now, out)
        return out

    def set_reachable(self, agent: str, reachable: bool, now: float) -> list[Decision]:
        """The registrar says whether the agent can be rung (registration alive, not DND)."""
        a = self._agents[agent]
        out: list[Decision] = []
        if a.reachable == reachable:
            return out
        if a.state is AgentState.AVAILABLE:
            if reachable:
                a.reachable = True
                self._index_add(a)
                self._match_agent(a, now, out)
            else:
                self._index_remove(a)
                a.reachable = False
        else:
            a.reachable = reachable
        return out

    def offer_accepted(self, caller: str, agent: str, now: float) -> list[Decision]:
        """The agent answered. The first accept wins; every other offer for the caller is cancelled."""
        out: list[Decision] = []
        a = self._agents.get(agent)
        oid = a.offer if a is not None else None
        if a is None or oid is None or self._offers.get(oid, ("", ""))[0] != caller:
            out.append(CancelOffer(caller=caller, agent=agent, offer_id=-1, reason="offer no longer valid"))
            return out
        c = self._callers[caller]
        del self._offers[oid]
        del c.offers[agent]
        a.offer = None
        a.misses = 0
        a.calls += 1
        a.call_queue = c.queue
        self._set_state(a, AgentState.ON_CALL, now, f"answered {caller}", out)
        c.state = CONNECTED
        c.agent = agent
        c.answered_at = now
        self._unawait(c)
        freed = self._cancel_all_offers(c, now, out, f"answered by {agent}")
        wait = now - c.join_time
        cfg = self._queues[c.queue].cfg
        self.stats.answered(c.queue, agent, now, wait, cfg.service_level)
        if c.key:
            self.affinity.record_handler(c.key, agent, now)
        out.append(Connect(caller=caller, agent=agent, queue=c.queue, wait=wait, reason="offer accepted"))
        for f in freed:
            self._match_agent(f, now, out)
        return out

    def offer_rejected(self, caller: str, agent: str, now: float) -> list[Decision]:
        """The agent declined (or the INVITE failed): try the next agent."""
        return self._offer_failed(caller, agent, now, timed_out=False, cancel=False)

    def offer_timed_out(self, caller: str, agent: str, now: float) -> list[Decision]:
        """Nobody answered in ring_timeout: a miss for the agent, next agent for the caller."""
        return self._offer_failed(caller, agent, now, timed_out=True, cancel=False)

    def call_ended(self, caller: str, now: float) -> list[Decision]:
        """The call between caller and agent ended; the agent goes to wrap-up."""
        c = self._callers.get(caller)
        if c is None:
            return []
        if c.state != CONNECTED:
            return self.caller_left(caller, now)
        del self._callers[caller]
        out: list[Decision] = []
        assert c.agent is not None
        a = self._agents[c.agent]
        q = self._queues[c.queue]
        talk = now - c.answered_at
        a.talk_time += talk
        a.caller = None
        self.stats.handled(c.queue, a.id, now, talk)
        if len(q.handle_times) == q.handle_times.maxlen:
            q.handle_sum -= q.handle_times[0]
        q.handle_times.append(talk + q.cfg.wrap_up)
        q.handle_sum += talk + q.cfg.wrap_up
        if a.state is not AgentState.ON_CALL:
            return out
        if a.pending is not None:
            state, reason = a.pending
            a.pending = None
            self._set_state(a, state, now, reason, out)
        elif q.cfg.wrap_up > 0:
            a.gen += 1
            self._set_state(a, AgentState.WRAP_UP, now, "call ended", out)
            self._push(now + q.cfg.wrap_up, _WRAP, a.id, a.gen)
        else:
            self._set_state(a, AgentState.AVAILABLE, now, "call ended", out)
            self._match_agent(a, now, out)
        return out

    def wrap_up_done(self, agent: str, now: float) -> list[Decision]:
        """Wrap-up finished (early by the agent, or by its timer)."""
        a = self._agents[agent]
        out: list[Decision] = []
        if a.state is not AgentState.WRAP_UP:
            return out
        self.stats.wrapped(a.call_queue, a.id, now, now - a.since)
        self._set_state(a, AgentState.AVAILABLE, now, "wrap-up done", out)
        self._match_agent(a, now, out)
        return out

    def tick(self, now: float) -> list[Decision]:
        """Handle every deadline due at `now` (ring timeouts, wrap-up, escalation, announcements...)."""
        out: list[Decision] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, kind, key, gen = heapq.heappop(heap)
            self._fire(kind, key, gen, when, now, out)
        return out

    def next_deadline(self) -> float | None:
        """When `tick` next has something to do (None: nothing pending)."""
        heap = self._heap
        while heap and not self._live(heap[0][2], heap[0][3], heap[0][4], heap[0][0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    # ---------------------------------------------------------------------------------------
    # Views

    def available_agents(self, queue: str) -> list[str]:
        """Agents of `queue` who are available and reachable now, by tier, longest idle first."""
        q = self._queues[queue]
        return [aid for tier in q.tiers for aid in q.avail[tier]]

    def agent_state(self, agent: str) -> AgentState:
        """The agent's current state."""
        return self._agents[agent].state

    def agent_reason(self, agent: str) -> str:
        """Why the agent is in its state (e.g. the pause reason)."""
        return self._agents[agent].reason

    def waiting(self, queue: str) -> list[str]:
        """Callers waiting in `queue` (home callers only), in the order they will be served."""
        return [e[2] for e in self._queues[queue].waiting if self._callers[e[2]].queue == queue]

    def caller_state(self, caller: str) -> str | None:
        """'waiting', 'offered', 'connected' or None when the caller is not in the engine."""
        c = self._callers.get(caller)
        return c.state if c is not None else None

    def offers(self) -> dict[int, tuple[str, str]]:
        """Outstanding offers: id -> (caller, agent)."""
        return dict(self._offers)

    def connected(self) -> dict[str, str]:
        """Connected callers -> agent."""
        return {c.id: c.agent for c in self._callers.values() if c.state == CONNECTED and c.agent}

    def position(self, caller: str) -> int | None:
        """1-based place of a waiting caller in its queue."""
        c = self._callers.get(caller)
        if c is None or c.state != WAITING:
            return None
        return bisect_left(self._queues[c.queue].waiting, c.entry) + 1

    def estimated_wait(self, queue: str, position: int) -> float | None:
        """Seconds until a caller at `position` is answered, from recent handle times and staffing."""
        q = self._queues[queue]
        if q.staffed == 0:
            return None
        return position * q.aht() / q.staffed

    def queue_status(self, queue: str, now: float) -> dict[str, float | int]:
        """Live figures for a wallboard: waiting, longest current wait, available and staffed agents."""
        q = self._queues[queue]
        joins = [self._callers[e[2]].join_time for e in q.waiting if self._callers[e[2]].queue == queue]
        return {
            "waiting": q.home_count,
            "longest_wait": now - min(joins) if joins else 0.0,
            "available": sum(len(d) for d in q.avail.values()),
            "staffed": q.staffed,
        }

    def snapshot(self, now: float) -> dict[str, list[dict[str, object]]]:
        """Plain data for the supervisor view and wallboard: every agent, and every queue's callers."""
        agents = [
            {
                "agent": a.id, "state": a.state.value, "reason": a.reason, "since": a.since,
                "in_state_for": now - a.since, "caller": a.caller, "reachable": a.reachable,
                "calls": a.calls, "talk_time": a.talk_time, "queues": dict(a.queues),
            }
            for a in self._agents.values()
        ]
        queues: list[dict[str, object]] = []
        for name, q in self._queues.items():
            callers = [self._callers[e[2]] for e in q.waiting]
            queues.append({
                **self.queue_status(name, now),
                "queue": name,
                "callers": [
                    {
                        "caller": c.id, "wait": now - c.join_time, "priority": c.priority,
                        "preferred_agent": c.preferred, "callback_number": c.callback_number,
                        "borrowed": c.queue != name,
                    }
                    for c in callers
                ],
                "ringing": sorted(cid for cid, _ in self._offers.values() if self._callers[cid].queue == name),
            })
        return {"agents": agents, "queues": queues}

    def check_invariants(self) -> None:
        """Raise AssertionError if the internal indexes disagree (used by the property tests)."""
        for a in self._agents.values():
            in_index = [a.id in self._queues[qn].avail[t] for qn, t in a.queues.items()]
            should = a.state is AgentState.AVAILABLE and a.reachable
            assert all(x == should for x in in_index), f"index of {a.id} wrong"
            for qn, t in a.queues.items():
                by_skill = self._queues[qn].avail_skill[t]
                assert all((a.id in by_skill.get(s, {})) == should for s in a.skills), f"skill index of {a.id}"
        for q in self._queues.values():
            for t, by_skill in q.avail_skill.items():
                for s, d in by_skill.items():
                    assert all(s in self._agents[x].skills and x in q.avail[t] for x in d)
            assert (a.offer is not None) == (a.state is AgentState.OFFERED), f"{a.id} offer/state mismatch"
        for oid, (cid, aid) in self._offers.items():
            assert self._agents[aid].offer == oid
            assert self._callers[cid].offers.get(aid) == oid
            assert self._callers[cid].state == OFFERED
        for q in self._queues.values():
            assert q.waiting == sorted(q.waiting)
            assert sorted(e for lst in q.by_sig.values() for e in lst) == q.waiting
            assert all(lst == sorted(lst) and lst for lst in q.by_sig.values())
            for e in q.waiting:
                assert self._callers[e[2]].state == WAITING
        for c in self._callers.values():
            if c.state == WAITING:
                assert c.sig == (c.req_key, c.relax)
                for qn in c.pool:
                    assert c.entry in self._queues[qn].by_sig[c.sig]
            if c.state == OFFERED:
                assert c.offers

    # ---------------------------------------------------------------------------------------
    # Internals: agent state and index

    def _set_state(self, a: _Agent, new: AgentState, now: float, reason: str, out: list[Decision]) -> None:
        prev = a.state
        if prev is AgentState.AVAILABLE or prev in _BUSY:
            self.stats.agent_time(a.id, prev is not AgentState.AVAILABLE, a.since, now)
        if prev is AgentState.AVAILABLE and a.reachable:
            self._index_remove(a)
        if (prev in _UNSTAFFED) != (new in _UNSTAFFED):
            delta = 1 if prev in _UNSTAFFED else -1
            for qn in a.queue_names:
                self._queues[qn].staffed += delta
        a.state = new
        a.reason = reason
        a.since = now
        if new is AgentState.AVAILABLE:
            a.idle_since = now
            if a.reachable:
                self._index_add(a)
        if new is AgentState.OFFLINE or new is AgentState.PAUSED:
            a.pending = None
        out.append(AgentStateChange(agent=a.id, state=new, previous=prev, reason=reason))

    def _index_add(self, a: _Agent) -> None:
        aid = a.id
        for qn, tier in a.queues.items():
            q = self._queues[qn]
            q.avail[tier][aid] = None
            by_skill = q.avail_skill[tier]
            for s in a.skills:
                d = by_skill.get(s)
                if d is None:
                    by_skill[s] = {aid: None}
                else:
                    d[aid] = None

    def _index_remove(self, a: _Agent) -> None:
        aid = a.id
        for qn, tier in a.queues.items():
            q = self._queues[qn]
            q.avail[tier].pop(aid, None)
            by_skill = q.avail_skill[tier]
            for s in a.skills:
                d = by_skill.get(s)
                if d is not None:
                    d.pop(aid, None)

    def _leave_service(self, a: _Agent, state: AgentState, reason: str, now: float) -> list[Decision]:
        out: list[Decision] = []
        if a.state is AgentState.ON_CALL:
            a.pending = (state, reason)
            return out
        if a.state is AgentState.OFFERED:
            assert a.offer is not None
            c = self._cancel_offer(a.offer, now, out, f"agent {reason}", state, reason)
            self._after_offer_gone(c, now, out)
            return out
        if a.state is AgentState.WRAP_UP:
            self.stats.wrapped(a.call_queue, a.id, now, now - a.since)
        if a.state is not state or (state is AgentState.PAUSED and a.reason != reason):
            self._set_state(a, state, now, reason, out)
        return out

    # ---------------------------------------------------------------------------------------
    # Internals: callers

    def _insert(self, c: _Caller) -> None:
        c.state = WAITING
        c.sig = sig = (c.req_key, c.relax)
        entry = c.entry
        for qn in c.pool:
            q = self._queues[qn]
            insort(q.waiting, entry)
            lst = q.by_sig.get(sig)
            if lst is None:
                q.by_sig[sig] = [entry]
            else:
                insort(lst, entry)
        self._queues[c.queue].home_count += 1

    def _remove(self, c: _Caller) -> None:
        entry = c.entry
        for qn in c.pool:
            q = self._queues[qn]
            _discard(q.waiting, entry)
            lst = q.by_sig.get(c.sig)
            if lst is not None:
                _discard(lst, entry)
                if not lst:
                    del q.by_sig[c.sig]
        self._queues[c.queue].home_count -= 1

    def _schedule_caller_timers(self, c: _Caller, now: float, announce: bool, out: list[Decision]) -> None:
        cfg = self._queues[c.queue].cfg
        if c.next_step < len(cfg.escalation):
            self._push(c.esc_base + cfg.escalation[c.next_step].after, _ESC, c.id, c.gen)
        if cfg.max_wait is not None:
            self._push(c.esc_base + cfg.max_wait, _MAXWAIT, c.id, c.gen)
        if announce and cfg.announce_every:
            self._announce(c, out, "joined")
            self._push(now + cfg.announce_every, _ANN, c.id, c.gen)

    def _announce(self, c: _Caller, out: list[Decision], why: str) -> None:
        pos = self.position(c.id)
        if pos is None or c.callback_number is not None:
            return
        ewt = self.estimated_wait(c.queue, pos)
        out.append(Announce(caller=c.id, queue=c.queue, position=pos, estimated_wait=ewt, reason=why))

    def _affinity_on_join(self, c: _Caller, now: float, out: list[Decision]) -> None:
        recent = self.affinity.recent(c.key, now)
        if not recent:
            return
        q = self._queues[c.queue]
        for aid in recent:
            a = self._agents.get(aid)
            if a is not None and aid in q.members and self._eligible(a, c, now):
                self.stats.affinity(c.queue, now, hit=True)
                self._offer(c, a, now, out, f"prior handler {aid} available", affinity=True)
                return
        if q.cfg.affinity_wait > 0:
            for aid in recent:
                a = self._agents.get(aid)
                if a is not None and aid in q.members and a.state in _BUSY and self._skills_ok(a, c):
                    c.preferred = aid
                    c.aff_until = now + q.cfg.affinity_wait
                    self._await(c, aid)
                    self._push(c.aff_until, _AFF, c.id, c.gen)
                    return
        self.stats.affinity(c.queue, now, hit=False)

    def _await(self, c: _Caller, agent: str) -> None:
        self._awaiting.setdefault(agent, {})[c.id] = None

    def _unawait(self, c: _Caller) -> None:
        if c.preferred is not None:
            d = self._awaiting.get(c.preferred)
            if d is not None:
                d.pop(c.id, None)
                if not d:
                    del self._awaiting[c.preferred]
            c.preferred = None

    def _sig_ok(self, a: _Agent, sig: Signature) -> bool:
        skills = a.skills
        req, relax = sig
        for s, m in req:
            need = m - relax
            if skills.get(s, 0) < (need if need > 1 else 1):
                return False
        return True

    def _free_for(self, a: _Agent, c: _Caller, now: float) -> bool:
        """The per-caller checks beyond skills: affinity reservation and recent misses."""
        if c.preferred is not None and c.preferred != a.id and c.aff_until > now:
            return False
        if c.missed:
            until = c.missed.get(a.id)
            if until is not None and until > now:
                return False
        return True

    def _skills_ok(self, a: _Agent, c: _Caller) -> bool:
        skills = a.skills
        relax = c.relax
        for s, m in c.req.items():
            need = m - relax
            if skills.get(s, 0) < (need if need > 1 else 1):
                return False
        return True

    def _eligible(self, a: _Agent, c: _Caller, now: float) -> bool:
        if a.state is not AgentState.AVAILABLE or not a.reachable:
            return False
        if c.preferred is not None and c.preferred != a.id and c.aff_until > now:
            return False
        if c.missed:
            until = c.missed.get(a.id)
            if until is not None and until > now:
                return False
        return self._skills_ok(a, c)

    def _candidates(self, c: _Caller, now: float, first_only: bool) -> list[_Agent]:
        agents = self._agents
        for qn in c.pool:
            q = self._queues[qn]
            for tier in q.tiers:
                # Scan the smallest set that can hold a match: the available agents having the
                # caller's rarest required skill (insertion order is still longest idle first).
                scan: dict[str, None] | None = q.avail[tier]
                by_skill = q.avail_skill[tier]
                for s, _ in c.req_key:
                    d = by_skill.get(s)
                    if not d:
                        scan = None
                        break
                    if scan is not None and len(d) < len(scan):
                        scan = d
                if not scan:
                    continue
                found: list[_Agent] = []
                for aid in scan:
                    a = agents[aid]
                    if self._eligible(a, c, now):
                        found.append(a)
                        if first_only:
                            return found
                if found:
                    return found
        return []

    def _match_caller(self, c: _Caller, now: float, out: list[Decision], why: str) -> None:
        if c.state != WAITING:
            return
        if c.preferred is not None and c.preferred not in self._agents:
            self._unawait(c)  # the prior handler was removed meanwhile
        if c.preferred is not None and c.aff_until > now:
            a = self._agents[c.preferred]
            if self._eligible(a, c, now):
                self.stats.affinity(c.queue, now, hit=True)
                self._offer(c, a, now, out, f"prior handler {a.id} free again", affinity=True)
            return
        cfg = self._queues[c.queue].cfg
        strategy = cfg.strategy
        cands = self._candidates(c, now, first_only=strategy is Strategy.LONGEST_IDLE)
        if not cands:
            return
        if strategy is Strategy.RING_ALL:
            for a in cands:
                self._offer(c, a, now, out, f"{why}: ring all")
            return
        q = self._queues[c.queue]
        n = max(1, q.member_seq)

        def rr_distance(a: _Agent) -> int:
            return (a.order.get(c.queue, 0) - q.rr_last - 1) % n

        a = select(strategy, cands, c.req, cfg.weights, now, self.rng, rr_distance)
        if strategy is Strategy.ROUND_ROBIN and c.queue in a.order:
            q.rr_last = a.order[c.queue]
        self._offer(c, a, now, out, f"{why}: {strategy.value}")

    def _match_agent(self, a: _Agent, now: float, out: list[Decision]) -> None:
        if a.state is not AgentState.AVAILABLE or not a.reachable:
            return
        waiting_for_me = self._awaiting.get(a.id)
        if waiting_for_me:
            for cid in list(waiting_for_me):
                c = self._callers[cid]
                if c.state == WAITING and self._eligible(a, c, now):
                    self.stats.affinity(c.queue, now, hit=True)
                    self._offer(c, a, now, out, f"prior handler {a.id} free again", affinity=True)
                    return
        callers = self._callers
        best: _Caller | None = None
        best_key: tuple[int, int, float, int] | None = None
        for qn, tier in a.queues.items():
            q = self._queues[qn]
            if best_key is not None and tier > best_key[0]:
                continue
            prio = -q.cfg.priority
            for sig, entries in q.by_sig.items():
                if not self._sig_ok(a, sig):
                    continue
                for entry in entries:
                    key = (tier, prio, entry[0], entry[1])
                    if best_key is not None and key >= best_key:
                        break
                    c = callers[entry[2]]
                    if self._free_for(a, c, now):
                        best, best_key = c, key
                        break
        if best is None:
            return
        if self._queues[best.queue].cfg.strategy is Strategy.RING_ALL:
            self._match_caller(best, now, out, f"agent {a.id} available")
        else:
            self._offer(best, a, now, out, f"agent {a.id} available")

    def _offer(self, c: _Caller, a: _Agent, now: float, out: list[Decision], reason: str, affinity: bool = False) -> None:
        oid = next(self._offer_ids)
        self._offers[oid] = (c.id, a.id)
        c.offers[a.id] = oid
        a.offer = oid
        a.caller = c.id
        if c.state == WAITING:
            self._remove(c)
            c.state = OFFERED
        cfg = self._queues[c.queue].cfg
        self._set_state(a, AgentState.OFFERED, now, f"offered {c.id}", out)
        self.stats.agent_offered(a.id, now)
        out.append(
            Offer(caller=c.id, agent=a.id, queue=c.queue, offer_id=oid, ring_timeout=cfg.ring_timeout,
                  callback_number=c.callback_number, reason=reason)
        )
        self._push(now + cfg.ring_timeout, _RING, oid, 0)

    def _cancel_offer(
        self, oid: int, now: float, out: list[Decision], reason: str,
        agent_state: AgentState = AgentState.AVAILABLE, agent_reason: str = "offer cancelled",
    ) -> _Caller:
        """Withdraw one offer; the agent goes to `agent_state`. Returns the caller."""
        cid, aid = self._offers.pop(oid)
        c = self._callers[cid]
        a = self._agents[aid]
        del c.offers[aid]
        a.offer = None
        a.caller = None
        out.append(CancelOffer(caller=cid, agent=aid, offer_id=oid, queue=c.queue, reason=reason))
        self._set_state(a, agent_state, now, agent_reason, out)
        return c

    def _cancel_all_offers(self, c: _Caller, now: float, out: list[Decision], reason: str) -> list[_Agent]:
        freed = []
        for aid, oid in list(c.offers.items()):
            self._cancel_offer(oid, now, out, reason)
            freed.append(self._agents[aid])
        return freed

    def _after_offer_gone(self, c: _Caller, now: float, out: list[Decision]) -> None:
        """The caller lost an offer: when none is left, they wait again (same place) and rematch."""
        if c.state == OFFERED and not c.offers:
            self._insert(c)
            self._match_caller(c, now, out, "offer failed")

    def _offer_failed(self, caller: str, agent: str, now: float, timed_out: bool, cancel: bool) -> list[Decision]:
        out: list[Decision] = []
        a = self._agents.get(agent)
        if a is None or a.offer is None or self._offers.get(a.offer, ("", ""))[0] != caller:
            return out
        c = self._callers[caller]
        cfg = self._queues[c.queue].cfg
        c.missed[agent] = now + cfg.retry_delay
        if timed_out:
            a.misses += 1
        if timed_out and a.misses >= cfg.max_no_answer:
            a.misses = 0
            next_state, next_reason = AgentState.PAUSED, "no-answer"
        else:
            next_state, next_reason = AgentState.AVAILABLE, "offer not answered" if timed_out else "offer rejected"
        oid = a.offer
        if cancel:
            self._cancel_offer(oid, now, out, "ring timeout", next_state, next_reason)
        else:
            del self._offers[oid]
            del c.offers[agent]
            a.offer = None
            a.caller = None
            self._set_state(a, next_state, now, next_reason, out)
        self._push(now + cfg.retry_delay, _RETRY, caller, c.gen)
        self._after_offer_gone(c, now, out)
        self._match_agent(a, now, out)
        return out

    def _drop_caller(self, c: _Caller, now: float, out: list[Decision], reason: str) -> None:
        """Take a not-connected caller out of the engine, freeing any agent ringing for them."""
        freed = self._cancel_all_offers(c, now, out, reason)
        if c.state == WAITING:
            self._remove(c)
        self._unawait(c)
        self._callers.pop(c.id, None)
        c.gen += 1
        for a in freed:
            self._match_agent(a, now, out)

    def _overflow(self, c: _Caller, target: OverflowTarget | None, now: float, out: list[Decision], reason: str) -> None:
        wait = now - c.join_time
        if target is None:
            self._drop_caller(c, now, out, reason)
            self.stats.overflowed(c.queue, now, wait)
            out.append(Reject(caller=c.id, queue=c.queue, reason=reason))
            return
        if target.kind is TargetKind.CALLBACK:
            if c.callback_number is None:
                c.callback_number = c.number
                out.append(Overflow(caller=c.id, queue=c.queue, target=target, reason=reason))
                out.append(ScheduleCallback(caller=c.id, queue=c.queue, number=c.number, reason=reason))
            return
        old = c.queue
        self._drop_caller(c, now, out, reason)
        self.stats.overflowed(old, now, wait)
        out.append(Overflow(caller=c.id, queue=old, target=target, reason=reason))
        if target.kind is TargetKind.QUEUE and target.target in self._queues:
            # The caller moves and keeps their join time: one continuous wait.
            c.queue = target.target
            c.pool = [target.target]
            c.relax = 0
            c.next_step = 0
            c.esc_base = now
            c.offers = {}
            self._callers[c.id] = c
            self._insert(c)
            self.stats.offered(c.queue, now)
            self._schedule_caller_timers(c, now, announce=False, out=out)
            self._match_caller(c, now, out, f"overflow from {old}")
            nq = self._queues[c.queue]
            if c.state == WAITING and nq.cfg.max_size is not None and nq.home_count > nq.cfg.max_size:
                # No ping-pong: a full target rejects rather than overflowing again.
                self._drop_caller(c, now, out, f"overflow target {c.queue} full")
                self.stats.overflowed(c.queue, now, wait)
                out.append(Reject(caller=c.id, queue=c.queue, reason=f"overflow target {c.queue} full"))

    # ---------------------------------------------------------------------------------------
    # Internals: deadlines

    def _push(self, when: float, kind: int, key: object, gen: int) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), kind, key, gen))

    def _live(self, kind: int, key: object, gen: int, when: float) -> bool:
        if kind == _RING:
            return key in self._offers
        if kind == _WRAP:
            a = self._agents.get(key)  # type: ignore[call-overload]
            return a is not None and a.state is AgentState.WRAP_UP and a.gen == gen
        if kind == _LEFT:
            left = self._left.get(key)  # type: ignore[arg-type]
            return left is not None and left.expires == when
        c = self._callers.get(key)  # type: ignore[arg-type]
        if c is None or c.gen != gen or c.state == CONNECTED:
            return False
        if kind == _AFF:
            return c.preferred is not None
        if kind == _RETRY:
            return c.state == WAITING
        return True

    def _fire(self, kind: int, key: object, gen: int, when: float, now: float, out: list[Decision]) -> None:
        if not self._live(kind, key, gen, when):
            return
        if kind == _RING:
            cid, aid = self._offers[key]  # type: ignore[index]
            out.extend(self._offer_failed(cid, aid, now, timed_out=True, cancel=True))
            return
        if kind == _WRAP:
            out.extend(self.wrap_up_done(key, now))  # type: ignore[arg-type]
            return
        if kind == _LEFT:
            del self._left[key]  # type: ignore[arg-type]
            return
        c = self._callers[key]  # type: ignore[index]
        cfg = self._queues[c.queue].cfg
        if kind == _RETRY:
            self._match_caller(c, now, out, "retry after a miss")
        elif kind == _AFF:
            self._unawait(c)
            self.stats.affinity(c.queue, now, hit=False)
            self._match_caller(c, now, out, "prior handler still busy")
        elif kind == _ANN:
            if c.callback_number is None and cfg.announce_every:
                self._announce(c, out, "periodic announcement")
                self._push(now + cfg.announce_every, _ANN, c.id, c.gen)
        elif kind == _MAXWAIT:
            if c.state == OFFERED:
                # An agent is ringing: let the offer finish before sending the caller away.
                self._push(now + cfg.ring_timeout, kind, c.id, c.gen)
            else:
                self._overflow(c, cfg.overflow, now, out, f"waited longer than {cfg.max_wait:g}s")
        elif kind == _ESC:
            if c.state == OFFERED and cfg.escalation[c.next_step].overflow is not None:
                self._push(now + cfg.ring_timeout, kind, c.id, c.gen)
            else:
                self._escalate(c, now, out)

    def _escalate(self, c: _Caller, now: float, out: list[Decision]) -> None:
        cfg = self._queues[c.queue].cfg
        i = c.next_step
        step = cfg.escalation[i]
        c.next_step = i + 1
        if c.next_step < len(cfg.escalation):
            self._push(c.esc_base + cfg.escalation[c.next_step].after, _ESC, c.id, c.gen)
        reason = f"waited {now - c.join_time:.0f}s: escalation step {i + 1}"
        added = tuple(qn for qn in step.add_queues if qn not in c.pool and qn in self._queues)
        waiting = c.state == WAITING
        if waiting:
            self._remove(c)
        c.relax += step.relax_proficiency
        c.pool.extend(added)
        if waiting:
            self._insert(c)
        out.append(Escalate(caller=c.id, queue=c.queue, step=i + 1, min_proficiency_relaxed_by=c.relax, queues=tuple(c.pool), reason=reason))
        if step.overflow is not None:
            self._overflow(c, step.overflow, now, out, reason)
            return
        self._match_caller(c, now, out, reason)


def _discard(lst: list[Entry], entry: Entry) -> None:
    i = bisect_left(lst, entry)
    if i < len(lst) and lst[i] == entry:
        del lst[i]
