"""Property tests: random event sequences never break the ACD's safety invariants."""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from acd.engine import AcdEngine
from acd.model import (
    AgentConfig,
    AgentState,
    AgentStateChange,
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

QUEUES = [
    QueueConfig(
        "sales",
        skills={"ja": 3},
        ring_timeout=5,
        max_no_answer=2,
        retry_delay=2,
        escalation=(
            EscalationStep(after=10, relax_proficiency=2),
            EscalationStep(after=20, add_queues=("support",)),
            EscalationStep(after=40, overflow=OverflowTarget(TargetKind.QUEUE, "vip")),
        ),
        announce_every=7,
        wrap_up=3,
    ),
    QueueConfig("support", strategy=Strategy.RING_ALL, ring_timeout=4, max_size=3,
                overflow=OverflowTarget(TargetKind.TRUNK, "outsourcer"), rejoin_grace=10),
    QueueConfig("vip", strategy=Strategy.RANDOM, affinity_wait=8, max_wait=60,
                overflow=OverflowTarget(TargetKind.CALLBACK), rejoin_grace=10, wrap_up=2),
    QueueConfig("rr", strategy=Strategy.ROUND_ROBIN, ring_timeout=3, max_wait=30,
                overflow=OverflowTarget(TargetKind.QUEUE, "sales")),
    QueueConfig("best", strategy=Strategy.WEIGHTED, skills={"en": 1}, max_size=2,
                overflow=OverflowTarget(TargetKind.QUEUE, "rr")),
]
AGENTS = [
    AgentConfig("a1", skills={"ja": 5}, queues={"sales": 0, "support": 1, "rr": 1}),
    AgentConfig("a2", skills={"ja": 2, "en": 7}, queues={"sales": 0, "vip": 0, "best": 1}),
    AgentConfig("a3", skills={"ja": 9}, queues={"support": 0, "vip": 1}),
    AgentConfig("a4", skills={"ja": 4}, queues={"support": 0, "sales": 2}),
    AgentConfig("a5", skills={"en": 3}, queues={"vip": 0, "rr": 0, "best": 0}),
]
AGENT_IDS = [a.id for a in AGENTS]
RING_ALL = {"support"}


class AcdMachine(RuleBasedStateMachine):
    """Drives the engine with random events and checks its decisions against a shadow model."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.n = 0
        self.engine = AcdEngine(QUEUES, AGENTS, rng=random.Random(7))
        self.ringing: set[tuple[str, str]] = set()
        self.connected: dict[str, str] = {}  # caller -> agent
        self.agent_state = {a: AgentState.OFFLINE for a in AGENT_IDS}
        self.reachable = dict.fromkeys(AGENT_IDS, True)
        self.caller_queue: dict[str, str] = {}

    def apply(self, decisions: list[Decision]) -> None:
        for d in decisions:
            assert d.reason, d
            if isinstance(d, AgentStateChange):
                assert self.agent_state[d.agent] is d.previous, d
                if d.state is AgentState.OFFERED:
                    # a logged-out, paused, busy or unreachable agent is never offered
                    assert d.previous is AgentState.AVAILABLE and self.reachable[d.agent], d
                self.agent_state[d.agent] = d.state
            elif isinstance(d, Offer):
                assert self.agent_state[d.agent] is AgentState.OFFERED
                assert all(a != d.agent for _, a in self.ringing), "agent holds two offers"
                assert d.caller not in self.connected
                if d.queue not in RING_ALL:
                    assert all(c != d.caller for c, _ in self.ringing), "caller offered twice at once"
                self.ringing.add((d.caller, d.agent))
                self.caller_queue[d.caller] = d.queue
            elif isinstance(d, CancelOffer):
                self.ringing.discard((d.caller, d.agent))
            elif isinstance(d, Connect):
                assert d.caller not in self.connected, "two agents connected to one caller"
                assert d.agent not in self.connected.values(), "agent connected twice"
                self.ringing.discard((d.caller, d.agent))
                assert all(c != d.caller for c, _ in self.ringing), "ring-all loser still ringing"
                self.connected[d.caller] = d.agent
            elif isinstance(d, Overflow | Reject):
                if not (isinstance(d, Overflow) and d.target.kind in (TargetKind.QUEUE, TargetKind.CALLBACK)):
                    assert all(c != d.caller for c, _ in self.ringing)

    @initialize()
    def start(self) -> None:
        for a in AGENT_IDS:
            self.apply(self.engine.agent_logged_in(a, self.now))

    @rule(queue=st.sampled_from([q.name for q in QUEUES]), priority=st.integers(0, 2),
          number=st.sampled_from(["", "n1", "n2", "n3"]))
    def join(self, queue: str, priority: int, number: str) -> None:
        self.n += 1
        cid = f"c{self.n}"
        self.apply(self.engine.caller_joined(cid, queue, self.now, priority=priority, number=number))

    @precondition(lambda self: self.engine._callers)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from(sorted(self.engine._callers)))
        self.apply(self.engine.caller_left(cid, self.now))
        if self.engine.caller_state(cid) is None:  # a caller waiting for a callback stays
            self.ringing = {(c, a) for c, a in self.ringing if c != cid}
            self.connected.pop(cid, None)

    @precondition(lambda self: self.engine._callers)
    @rule(data=st.data())
    def ask_callback(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from(sorted(self.engine._callers)))
        self.apply(self.engine.callback_requested(cid, "0300000000", self.now))

    @precondition(lambda self: self.engine._callers)
    @rule(data=st.data())
    def cancel_callback(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from(sorted(self.engine._callers)))
        self.apply(self.engine.callback_cancelled(cid, self.now))
        if self.engine.caller_state(cid) is None:
            self.ringing = {(c, a) for c, a in self.ringing if c != cid}

    @rule(agent=st.sampled_from(AGENT_IDS),
          action=st.sampled_from(["login", "logout", "pause", "ready", "wrapdone", "unreach", "reach"]))
    def agent_event(self, agent: str, action: str) -> None:
        e = self.engine
        if action == "login":
            d = e.agent_logged_in(agent, self.now)
        elif action == "logout":
            d = e.agent_logged_out(agent, self.now)
        elif action == "pause":
            d = e.agent_paused(agent, "break", self.now)
        elif action == "ready":
            d = e.agent_ready(agent, self.now)
        elif action == "wrapdone":
            d = e.wrap_up_done(agent, self.now)
        else:
            self.reachable[agent] = action == "reach"
            d = e.set_reachable(agent, action == "reach", self.now)
        self.apply(d)

    @rule(agent=st.sampled_from(AGENT_IDS), ja=st.integers(1, 10),
          queues=st.sets(st.sampled_from([q.name for q in QUEUES]), min_size=1), tier=st.integers(0, 2))
    def supervisor_edit(self, agent: str, ja: int, queues: set[str], tier: int) -> None:
        cfg = AgentConfig(agent, skills={"ja": ja, "en": 5}, queues=dict.fromkeys(sorted(queues), tier))
        self.apply(self.engine.update_agent(cfg, self.now))

    @precondition(lambda self: self.ringing)
    @rule(data=st.data(), outcome=st.sampled_from(["accept", "reject", "timeout"]))
    def answer(self, data: st.DataObject, outcome: str) -> None:
        caller, agent = data.draw(st.sampled_from(sorted(self.ringing)))
        self.ringing.discard((caller, agent))
        fn = {"accept": self.engine.offer_accepted, "reject": self.engine.offer_rejected,
              "timeout": self.engine.offer_timed_out}[outcome]
        self.apply(fn(caller, agent, self.now))

    @rule(caller=st.integers(1, 30), agent=st.sampled_from(AGENT_IDS))
    def stray_accept(self, caller: int, agent: str) -> None:
        """An accept that may be stale (cancelled ring-all leg, late 200 OK) never double-connects."""
        if (f"c{caller}", agent) in self.ringing:
            self.ringing.discard((f"c{caller}", agent))
        self.apply(self.engine.offer_accepted(f"c{caller}", agent, self.now))

    @precondition(lambda self: self.connected)
    @rule(data=st.data())
    def hang_up(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from(sorted(self.connected)))
        del self.connected[cid]
        self.apply(self.engine.call_ended(cid, self.now))

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 3.0, 6.0, 15.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.apply(self.engine.tick(self.now))
        nd = self.engine.next_deadline()
        assert nd is None or nd > self.now

    @invariant()
    def engine_agrees_with_shadow(self) -> None:
        e = self.engine
        e.check_invariants()
        assert set(e.connected().items()) == set(self.connected.items())
        assert {tuple(v) for v in e.offers().values()} == self.ringing
        for a in AGENT_IDS:
            assert e.agent_state(a) is self.agent_state[a]
        held = [a for _, a in self.ringing]
        assert len(held) == len(set(held))


TestAcdInvariants = AcdMachine.TestCase
TestAcdInvariants.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
