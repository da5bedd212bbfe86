"""Unit tests of the ACD engine rules, with a fake clock (plain floats)."""

from __future__ import annotations

import random
from typing import TypeVar

import pytest

from acd.affinity import AffinityMemory
from acd.engine import AcdEngine
from acd.model import (
    AgentConfig,
    AgentReady,
    AgentState,
    AgentStateChange,
    Announce,
    CallerJoined,
    CancelOffer,
    Connect,
    Decision,
    Escalate,
    EscalationStep,
    Offer,
    OfferAccepted,
    Overflow,
    OverflowTarget,
    QueueConfig,
    Reject,
    ScheduleCallback,
    Strategy,
    TargetKind,
)

D = TypeVar("D", bound=Decision)


def of(decisions: list[Decision], kind: type[D]) -> list[D]:
    return [d for d in decisions if isinstance(d, kind)]


def offer_to(decisions: list[Decision]) -> list[tuple[str, str]]:
    return [(o.caller, o.agent) for o in of(decisions, Offer)]


def make(queue: QueueConfig, agents: list[AgentConfig], login: bool = True, **kw: object) -> AcdEngine:
    eng = AcdEngine([queue], agents, **kw)  # type: ignore[arg-type]
    if login:
        for a in agents:
            eng.agent_logged_in(a.id, 0.0)
    return eng


def agent(aid: str, queue: str = "q", tier: int = 0, **skills: int) -> AgentConfig:
    return AgentConfig(aid, skills=skills, queues={queue: tier})


def busy_all(eng: AcdEngine, agents: list[str], t: float) -> None:
    """Give every agent a call so that they are on call at time t."""
    for i, a in enumerate(agents):
        d = eng.caller_joined(f"filler{i}-{a}", "q", t)
        (o,) = of(d, Offer)
        eng.offer_accepted(o.caller, o.agent, t)


# -- basic routing --------------------------------------------------------------------------------


def test_caller_goes_to_the_longest_idle_agent() -> None:
    eng = AcdEngine([QueueConfig("q")], [agent("a"), agent("b"), agent("c")])
    eng.agent_logged_in("b", 1.0)
    eng.agent_logged_in("a", 2.0)
    eng.agent_logged_in("c", 3.0)
    d = eng.caller_joined("x", "q", 10.0)
    assert offer_to(d) == [("x", "b")]
    assert "longest_idle" in of(d, Offer)[0].reason


def test_agent_becoming_ready_takes_the_first_waiting_caller_at_once() -> None:
    eng = make(QueueConfig("q"), [agent("a")], login=False)
    eng.caller_joined("x1", "q", 1.0)
    eng.caller_joined("x2", "q", 2.0)
    d = eng.agent_logged_in("a", 3.0)
    assert offer_to(d) == [("x1", "a")]


def test_vip_goes_first_and_equal_priority_is_fifo() -> None:
    eng = make(QueueConfig("q", priority_step=60.0), [agent("a")], login=False)
    eng.caller_joined("n1", "q", 0.0)
    eng.caller_joined("n2", "q", 1.0)
    eng.caller_joined("vip", "q", 2.0, priority=5)
    assert eng.waiting("q") == ["vip", "n1", "n2"]


def test_a_long_waiter_ages_past_a_newly_arrived_vip() -> None:
    eng = make(QueueConfig("q", priority_step=60.0), [agent("a")], login=False)
    eng.caller_joined("old", "q", 0.0)
    eng.caller_joined("vip", "q", 200.0, priority=2)  # worth 120 s, but old has waited 200 s
    assert eng.waiting("q") == ["old", "vip"]


def test_agent_below_minimum_proficiency_is_not_offered() -> None:
    eng = make(QueueConfig("q", skills={"ja": 5}), [agent("low", ja=3), agent("high", ja=7)])
    d = eng.caller_joined("x", "q", 1.0)
    assert offer_to(d) == [("x", "high")]


def test_caller_skills_add_to_queue_requirements() -> None:
    eng = make(QueueConfig("q", skills={"ja": 1}), [agent("a", ja=9), agent("b", ja=2, en=6)])
    d = eng.caller_joined("x", "q", 1.0, skills={"en": 5})
    assert offer_to(d) == [("x", "b")]


def test_paused_logged_out_and_unreachable_agents_are_never_offered() -> None:
    eng = make(QueueConfig("q"), [agent("p"), agent("o"), agent("u"), agent("ok")])
    eng.agent_paused("p", "lunch", 1.0)
    eng.agent_logged_out("o", 1.0)
    eng.set_reachable("u", False, 1.0)
    eng.agent_paused("ok", "meeting", 1.0)
    d = eng.caller_joined("x", "q", 2.0)
    assert of(d, Offer) == []
    assert eng.agent_reason("p") == "lunch"
    # the registrar sees a registration again: the caller is offered at once
    d = eng.set_reachable("u", True, 3.0)
    assert offer_to(d) == [("x", "u")]


def test_every_decision_carries_a_reason() -> None:
    eng = make(QueueConfig("q", announce_every=30), [agent("a")])
    ds = eng.caller_joined("x", "q", 0.0) + eng.caller_joined("y", "q", 0.0) + eng.tick(100.0)
    assert ds and all(d.reason for d in ds)


def test_handle_accepts_events_as_data() -> None:
    eng = make(QueueConfig("q"), [agent("a")], login=False)
    eng.handle(CallerJoined(now=0.0, caller="x", queue="q"))
    d = eng.handle(AgentReady(now=1.0, agent="a"))
    assert offer_to(d) == [("x", "a")]
    d = eng.handle(OfferAccepted(now=2.0, caller="x", agent="a"))
    assert of(d, Connect)[0].wait == 2.0


# -- no answer --------------------------------------------------------------------------------


def test_unanswered_offer_goes_to_the_next_agent_after_ring_timeout() -> None:
    eng = make(QueueConfig("q", ring_timeout=10), [agent("a"), agent("b")])
    d = eng.caller_joined("x", "q", 0.0)
    assert offer_to(d) == [("x", "a")]
    assert eng.next_deadline() == 10.0
    assert eng.tick(9.9) == []
    d = eng.tick(10.0)
    assert [(c.caller, c.agent) for c in of(d, CancelOffer)] == [("x", "a")]
    assert offer_to(d) == [("x", "b")]
    assert eng.agent_state("a") is AgentState.AVAILABLE


def test_agent_missing_k_offers_in_a_row_is_paused_no_answer() -> None:
    eng = make(QueueConfig("q", ring_timeout=5, max_no_answer=2, retry_delay=1), [agent("a")])
    eng.caller_joined("x", "q", 0.0)
    eng.tick(5.0)  # miss 1; the caller is retried after retry_delay
    assert eng.agent_state("a") is AgentState.AVAILABLE
    d = eng.tick(6.0)
    assert offer_to(d) == [("x", "a")]
    d = eng.tick(11.0)  # miss 2
    assert eng.agent_state("a") is AgentState.PAUSED
    assert eng.agent_reason("a") == "no-answer"
    assert any(isinstance(x, AgentStateChange) and x.reason == "no-answer" for x in d)


def test_an_answer_resets_the_consecutive_miss_count() -> None:
    eng = make(QueueConfig("q", ring_timeout=5, max_no_answer=2, retry_delay=1), [agent("a")])
    eng.caller_joined("x", "q", 0.0)
    eng.tick(5.0)
    eng.tick(6.0)
    eng.offer_accepted("x", "a", 7.0)
    eng.call_ended("x", 8.0)
    eng.caller_joined("y", "q", 9.0)
    eng.tick(14.0)
    assert eng.agent_state("a") is AgentState.AVAILABLE


def test_rejected_offer_is_not_offered_to_the_same_agent_again_at_once() -> None:
    eng = make(QueueConfig("q", retry_delay=5), [agent("a")])
    eng.caller_joined("x", "q", 0.0)
    d = eng.offer_rejected("x", "a", 1.0)
    assert of(d, Offer) == []
    d = eng.tick(6.0)
    assert offer_to(d) == [("x", "a")]


# -- ring all ----------------------------------------------------------------------------------


def test_ring_all_first_accept_wins_and_other_offers_are_cancelled() -> None:
    eng = make(QueueConfig("q", strategy=Strategy.RING_ALL), [agent("a"), agent("b"), agent("c")])
    d = eng.caller_joined("x", "q", 0.0)
    assert sorted(offer_to(d)) == [("x", "a"), ("x", "b"), ("x", "c")]
    d = eng.offer_accepted("x", "b", 1.0)
    assert sorted(c.agent for c in of(d, CancelOffer)) == ["a", "c"]
    assert [(c.caller, c.agent) for c in of(d, Connect)] == [("x", "b")]
    late = eng.offer_accepted("x", "a", 1.1)
    assert of(late, Connect) == [] and of(late, CancelOffer)
    assert eng.connected() == {"x": "b"}
    assert eng.agent_state("a") is AgentState.AVAILABLE


# -- escalation and overflow ------------------------------------------------------------------


def test_escalation_relaxes_proficiency_then_adds_other_queues_then_overflows() -> None:
    steps = (
        EscalationStep(after=30, relax_proficiency=3),
        EscalationStep(after=60, add_queues=("other",)),
        EscalationStep(after=90, overflow=OverflowTarget(TargetKind.TRUNK, "outsourcer")),
    )
    q = QueueConfig("q", skills={"ja": 8}, escalation=steps, ring_timeout=1000)
    eng = AcdEngine([q, QueueConfig("other")], [agent("weak", ja=5), agent("oth", queue="other", ja=9)])
    eng.agent_paused("weak", "x", 0.0)
    eng.agent_logged_in("oth", 0.0)
    eng.agent_paused("oth", "x", 0.0)
    eng.caller_joined("c1", "q", 0.0)
    eng.caller_joined("c2", "q", 0.0)
    eng.caller_joined("c3", "q", 0.0)
    d = eng.agent_ready("weak", 1.0)
    assert of(d, Offer) == []  # 5 < 8
    d = eng.tick(30.0)
    assert [e.step for e in of(d, Escalate)] == [1, 1, 1]
    assert offer_to(d) == [("c1", "weak")]  # 5 >= 8 - 3
    eng.agent_ready("oth", 31.0)  # not yet borrowed
    assert eng.agent_state("oth") is AgentState.AVAILABLE
    d = eng.tick(60.0)
    assert offer_to(d) == [("c2", "oth")]
    d = eng.tick(90.0)
    (ov,) = of(d, Overflow)
    assert ov.caller == "c3" and ov.target == OverflowTarget(TargetKind.TRUNK, "outsourcer")
    assert eng.caller_state("c3") is None
    assert eng.stats.queue_live("q").overflowed == 1


def test_december_peak_overflows_callers_beyond_max_size_to_the_outsourced_centre() -> None:
    trunk = OverflowTarget(TargetKind.TRUNK, "outsourcer-osaka")
    eng = make(QueueConfig("q", max_size=10, overflow=trunk), [agent(f"a{i}") for i in range(5)])
    decisions: list[Decision] = []
    for i in range(45):  # 3x the 15 the centre can hold (5 on call + 10 waiting)
        decisions += eng.caller_joined(f"x{i}", "q", float(i))
    assert len(of(decisions, Offer)) == 5
    assert len(eng.waiting("q")) == 10
    assert len(of(decisions, Overflow)) == 30
    assert all(o.target == trunk and "full" in o.reason for o in of(decisions, Overflow))
    assert of(decisions, Reject) == []


def test_max_wait_without_overflow_target_rejects() -> None:
    eng = make(QueueConfig("q", max_wait=120), [agent("a")], login=False)
    eng.caller_joined("x", "q", 0.0)
    d = eng.tick(120.0)
    assert [r.caller for r in of(d, Reject)] == ["x"]


def test_overflow_to_another_queue_keeps_the_original_join_time() -> None:
    q = QueueConfig("q", max_wait=60, overflow=OverflowTarget(TargetKind.QUEUE, "backup"))
    eng = AcdEngine([q, QueueConfig("backup")], [agent("b", queue="backup")])
    eng.caller_joined("x", "q", 0.0)
    d = eng.tick(60.0)
    assert of(d, Overflow)[0].target.target == "backup"
    assert eng.waiting("backup") == ["x"]
    d = eng.agent_logged_in("b", 70.0)
    (o,) = of(d, Offer)
    assert o.queue == "backup"
    d = eng.offer_accepted("x", "b", 71.0)
    assert of(d, Connect)[0].wait == 71.0


def test_overflow_to_callback_keeps_the_place_and_schedules_a_callback() -> None:
    q = QueueConfig("q", max_wait=60, overflow=OverflowTarget(TargetKind.CALLBACK))
    eng = make(q, [agent("a")], login=False)
    eng.caller_joined("x", "q", 0.0, number="0312345678")
    d = eng.tick(60.0)
    assert [s.number for s in of(d, ScheduleCallback)] == ["0312345678"]
    d = eng.agent_logged_in("a", 100.0)
    assert [o.callback_number for o in of(d, Offer)] == ["0312345678"]


# -- affinity ----------------------------------------------------------------------------------


def _handled_before(eng: AcdEngine, number: str, agent_id: str, t: float) -> None:
    eng.affinity.record_handler(number, agent_id, t)


def test_returning_caller_goes_to_the_prior_handler_when_available() -> None:
    eng = make(QueueConfig("q"), [agent("a"), agent("b"), agent("c")])
    _handled_before(eng, "cust-42", "c", 0.0)
    d = eng.caller_joined("x", "q", 100.0, number="0311112222", customer_id="cust-42")
    assert offer_to(d) == [("x", "c")]
    assert "prior handler" in of(d, Offer)[0].reason
    assert eng.stats.queue_live("q").affinity_hits == 1


def test_most_recent_available_prior_handler_wins() -> None:
    eng = make(QueueConfig("q"), [agent("a"), agent("b"), agent("c")])
    eng.affinity.record_handler("n", "b", 10.0)
    eng.affinity.record_handler("n", "c", 20.0)
    eng.agent_paused("c", "lunch", 30.0)
    d = eng.caller_joined("x", "q", 40.0, number="n")
    assert offer_to(d) == [("x", "b")]


def test_caller_waits_for_a_busy_prior_handler_then_gets_them() -> None:
    eng = make(QueueConfig("q", affinity_wait=60, ring_timeout=100), [agent("a"), agent("b")], login=False)
    eng.affinity.record_handler("n", "b", 0.0)
    eng.agent_logged_in("b", 0.0)
    busy_all(eng, ["b"], 1.0)
    eng.agent_logged_in("a", 1.0)
    d = eng.caller_joined("x", "q", 10.0, number="n")
    assert of(d, Offer) == []  # a is free, but x waits for b
    d = eng.call_ended("filler0-b", 30.0)
    assert offer_to(d) == [("x", "b")]
    assert eng.stats.queue_live("q").affinity_hits == 1


def test_affinity_wait_expires_then_normal_strategy_applies_and_a_miss_is_counted() -> None:
    eng = make(QueueConfig("q", affinity_wait=20, ring_timeout=100), [agent("a"), agent("b")], login=False)
    eng.affinity.record_handler("n", "b", 0.0)
    eng.agent_logged_in("b", 0.0)
    busy_all(eng, ["b"], 1.0)
    eng.agent_logged_in("a", 1.0)
    eng.caller_joined("x", "q", 10.0, number="n")
    assert eng.next_deadline() == 30.0
    d = eng.tick(30.0)
    assert offer_to(d) == [("x", "a")]
    live = eng.stats.queue_live("q")
    assert (live.affinity_hits, live.affinity_misses) == (0, 1)


def test_a_scheduled_callback_goes_to_the_booking_agent_even_when_another_has_been_idle_longer() -> None:
    eng = make(QueueConfig("q"), [agent("a"), agent("b")])
    d = eng.caller_joined("cb1", "q", 10.0, number="0312345678", prefer="b", prefer_wait=120,
                          callback_number="0312345678")
    (o,) = of(d, Offer)
    assert (o.agent, o.callback_number) == ("b", "0312345678")


def test_a_scheduled_callback_waits_for_its_busy_agent_then_goes_to_the_queue() -> None:
    eng = make(QueueConfig("q", ring_timeout=100), [agent("a"), agent("b")], login=False)
    eng.agent_logged_in("b", 0.0)
    busy_all(eng, ["b"], 1.0)
    eng.agent_logged_in("a", 1.0)
    d = eng.caller_joined("cb1", "q", 10.0, number="n", prefer="b", prefer_wait=60, callback_number="n")
    assert of(d, Offer) == []  # a is free, but the callback waits for b who booked it
    assert eng.next_deadline() == 70.0
    assert offer_to(eng.tick(70.0)) == [("cb1", "a")]


def test_a_callback_for_an_agent_who_is_logged_out_goes_straight_to_the_queue() -> None:
    eng = make(QueueConfig("q"), [agent("a"), agent("b")], login=False)
    eng.agent_logged_in("a", 0.0)
    d = eng.caller_joined("cb1", "q", 10.0, number="n", prefer="b", prefer_wait=60, callback_number="n")
    assert offer_to(d) == [("cb1", "a")]


def test_a_supervisor_moving_a_caller_keeps_one_wait_and_counts_no_abandon() -> None:
    eng = AcdEngine([QueueConfig("q"), QueueConfig("r")], [agent("a", "r")])
    eng.caller_joined("x", "q", 10.0, number="n")
    d = eng.caller_moved("x", "r", 40.0)
    assert offer_to(d) == []  # a is not logged in yet
    assert eng.caller_state("x") == "waiting" and eng.waiting("r") == ["x"]
    old, new = eng.stats.queue_live("q"), eng.stats.queue_live("r")
    assert (old.abandoned, old.overflowed, new.offered) == (0, 1, 1)
    assert offer_to(eng.agent_logged_in("a", 50.0)) == [("x", "a")]
    with pytest.raises(ValueError):
        eng.caller_moved("nobody", "r", 60.0)


def test_available_agents_lists_only_free_reachable_members_of_the_queue() -> None:
    eng = AcdEngine([QueueConfig("q"), QueueConfig("r")], [agent("a"), agent("b"), agent("c"), agent("d", "r")])
    for aid in "abcd":
        eng.agent_logged_in(aid, 0.0)
    eng.agent_paused("b", "lunch", 1.0)
    eng.set_reachable("c", False, 1.0)
    assert eng.available_agents("q") == ["a"]
    eng.caller_joined("x", "q", 2.0)
    assert eng.available_agents("q") == []
    assert eng.available_agents("r") == ["d"]


def test_answered_calls_are_remembered_for_affinity_and_survive_export_and_load() -> None:
    eng = make(QueueConfig("q"), [agent("a")])
    eng.caller_joined("x", "q", 0.0, customer_id="C1")
    eng.offer_accepted("x", "a", 1.0)
    rows = eng.affinity.export()
    assert rows == [{"key": "C1", "agent": "a", "when": 1.0}]
    fresh = AffinityMemory()
    fresh.load(rows)
    assert fresh.recent("C1", 2.0) == ["a"]


# -- announcements, callbacks, rejoin -----------------------------------------------------------


def test_position_and_estimated_wait_are_announced_at_join_and_periodically() -> None:
    eng = make(QueueConfig("q", announce_every=30, default_handle_time=120), [agent("a"), agent("b")])
    busy_all(eng, ["a", "b"], 0.0)
    eng.caller_joined("x1", "q", 1.0)
    d = eng.caller_joined("x2", "q", 2.0)
    (a,) = of(d, Announce)
    assert (a.position, a.estimated_wait) == (2, 120.0)  # 2 ahead-or-at, 2 agents, 120 s each
    d = eng.tick(32.0)
    assert sorted((x.caller, x.position) for x in of(d, Announce)) == [("x1", 1), ("x2", 2)]


def test_estimated_wait_follows_recent_handle_times() -> None:
    eng = make(QueueConfig("q", wrap_up=10), [agent("a")])
    eng.caller_joined("x", "q", 0.0)
    eng.offer_accepted("x", "a", 0.0)
    eng.call_ended("x", 50.0)
    assert eng.estimated_wait("q", 3) == 180.0  # 3 * (50 + 10) / 1


def test_queued_callback_keeps_the_place_and_reserves_the_agent_when_due() -> None:
    eng = make(QueueConfig("q"), [agent("a")])
    busy_all(eng, ["a"], 0.0)
    eng.caller_joined("x1", "q", 1.0)
    eng.caller_joined("x2", "q", 2.0)
    d = eng.callback_requested("x1", "09011112222", 3.0)
    assert of(d, ScheduleCallback)[0].number == "09011112222"
    assert eng.caller_left("x1", 4.0) == []  # the caller hangs up to wait: no abandon
    assert eng.stats.queue_live("q").abandoned == 0
    assert eng.waiting("q") == ["x1", "x2"]
    d = eng.call_ended("filler0-a", 10.0)
    (o,) = of(d, Offer)
    assert (o.caller, o.callback_number) == ("x1", "09011112222")
    assert eng.agent_state("a") is AgentState.OFFERED


def test_caller_who_hangs_up_and_calls_straight_back_keeps_place_and_wait() -> None:
    eng = make(QueueConfig("q", rejoin_grace=30), [agent("a")])
    busy_all(eng, ["a"], 0.0)
    eng.caller_joined("first", "q", 1.0, number="0311")
    eng.caller_joined("other", "q", 2.0, number="0322")
    eng.caller_left("first", 5.0)
    assert eng.stats.queue_live("q").abandoned == 1
    eng.caller_joined("again", "q", 20.0, number="0311")
    assert eng.waiting("q") == ["again", "other"]
    assert eng.stats.queue_live("q").abandoned == 0
    assert eng.stats.queue_live("q").offered == 3  # filler, first, other: one continuous wait
    eng.call_ended("filler0-a", 25.0)
    d = eng.offer_accepted("again", "a", 25.0)
    assert of(d, Connect)[0].wait == 24.0


def test_caller_who_calls_straight_back_still_waits_for_their_prior_handler() -> None:
    eng = make(QueueConfig("q", affinity_wait=60, rejoin_grace=30, ring_timeout=100), [agent("a"), agent("b")], login=False)
    eng.affinity.record_handler("0311", "b", 0.0)
    eng.agent_logged_in("b", 0.0)
    busy_all(eng, ["b"], 1.0)
    eng.agent_logged_in("a", 1.0)
    eng.caller_joined("first", "q", 2.0, number="0311")
    eng.caller_left("first", 5.0)
    d = eng.caller_joined("again", "q", 10.0, number="0311")
    assert of(d, Offer) == []  # a is free, but the caller still waits for b
    d = eng.call_ended("filler0-b", 20.0)
    assert offer_to(d) == [("again", "b")]


def test_calling_back_after_the_grace_is_a_new_wait() -> None:
    eng = make(QueueConfig("q", rejoin_grace=30), [agent("a")])
    busy_all(eng, ["a"], 0.0)
    eng.caller_joined("first", "q", 1.0, number="0311")
    eng.caller_joined("other", "q", 2.0, number="0322")
    eng.caller_left("first", 5.0)
    eng.tick(40.0)
    eng.caller_joined("again", "q", 40.0, number="0311")
    assert eng.waiting("q") == ["other", "again"]
    assert eng.stats.queue_live("q").abandoned == 1


# -- agent lifecycle ---------------------------------------------------------------------------


def test_wrap_up_keeps_the_agent_busy_until_its_timer() -> None:
    eng = make(QueueConfig("q", wrap_up=30), [agent("a")])
    eng.caller_joined("x", "q", 0.0)
    eng.offer_accepted("x", "a", 1.0)
    eng.call_ended("x", 61.0)
    assert eng.agent_state("a") is AgentState.WRAP_UP
    eng.caller_joined("y", "q", 70.0)
    assert eng.next_deadline() == 91.0
    d = eng.tick(91.0)
    assert offer_to(d) == [("y", "a")]


def test_pause_during_a_call_takes_effect_when_the_call_ends() -> None:
    eng = make(QueueConfig("q", wrap_up=30), [agent("a")])
    eng.caller_joined("x", "q", 0.0)
    eng.offer_accepted("x", "a", 1.0)
    eng.agent_paused("a", "break", 5.0)
    assert eng.agent_state("a") is AgentState.ON_CALL
    eng.call_ended("x", 10.0)
    assert eng.agent_state("a") is AgentState.PAUSED
    assert eng.agent_reason("a") == "break"


def test_pausing_an_offered_agent_gives_the_caller_to_the_next_agent() -> None:
    eng = make(QueueConfig("q"), [agent("a"), agent("b")])
    eng.caller_joined("x", "q", 0.0)
    d = eng.agent_paused("a", "toilet", 1.0)
    assert of(d, CancelOffer) and offer_to(d) == [("x", "b")]


def test_agent_serves_its_lower_tier_queues_first() -> None:
    eng = AcdEngine(
        [QueueConfig("main"), QueueConfig("side")],
        [AgentConfig("a", queues={"main": 0, "side": 1})],
    )
    eng.caller_joined("s", "side", 0.0)
    eng.caller_joined("m", "main", 5.0)
    d = eng.agent_logged_in("a", 10.0)
    assert offer_to(d) == [("m", "a")]


def test_higher_tier_agents_take_calls_only_when_lower_tier_is_busy() -> None:
    eng = make(QueueConfig("q"), [agent("backup", tier=2), agent("primary", tier=0)])
    assert offer_to(eng.caller_joined("x", "q", 1.0)) == [("x", "primary")]
    assert offer_to(eng.caller_joined("y", "q", 2.0)) == [("y", "backup")]


# -- strategies ---------------------------------------------------------------------------------


def _engine_with_history(strategy: Strategy, **kw: object) -> AcdEngine:
    eng = make(QueueConfig("q", strategy=strategy, **kw), [agent("a", s=3), agent("b", s=9), agent("c", s=6)])  # type: ignore[arg-type]
    # a: 2 short calls; b: 1 long call; c: none. All available again; a idle longest.
    for cid, aid, t0, t1 in (("h1", "a", 1, 2), ("h2", "a", 3, 4), ("h3", "b", 5, 100)):
        eng.agent_paused("a" if aid != "a" else "b", "hold", t0 - 0.5)
        eng.agent_paused("c", "hold", t0 - 0.5)
        if aid == "a":
            eng.agent_paused("b", "hold", t0 - 0.5)
        else:
            eng.agent_paused("a", "hold", t0 - 0.5)
        d = eng.caller_joined(cid, "q", t0)
        assert offer_to(d) == [(cid, aid)]
        eng.offer_accepted(cid, aid, t0)
        eng.call_ended(cid, t1)
        for x in "abc":
            eng.agent_ready(x, t1)
    return eng


def test_fewest_calls_strategy() -> None:
    eng = _engine_with_history(Strategy.FEWEST_CALLS)
    assert offer_to(eng.caller_joined("x", "q", 200.0)) == [("x", "c")]


def test_least_talk_time_strategy_prefers_short_talkers() -> None:
    eng = _engine_with_history(Strategy.LEAST_TALK_TIME)
    eng.agent_paused("c", "away", 150.0)
    assert offer_to(eng.caller_joined("x", "q", 200.0)) == [("x", "a")]


def test_best_skill_strategy_picks_highest_proficiency() -> None:
    eng = _engine_with_history(Strategy.BEST_SKILL, skills={"s": 1})
    assert offer_to(eng.caller_joined("x", "q", 200.0)) == [("x", "b")]


def test_best_skill_ties_break_by_longest_idle() -> None:
    eng = make(QueueConfig("q", strategy=Strategy.BEST_SKILL, skills={"s": 1}), [agent("a", s=5), agent("b", s=5)], login=False)
    eng.agent_logged_in("b", 1.0)
    eng.agent_logged_in("a", 2.0)
    assert offer_to(eng.caller_joined("x", "q", 3.0)) == [("x", "b")]


def test_round_robin_strategy_rotates_through_members() -> None:
    eng = make(QueueConfig("q", strategy=Strategy.ROUND_ROBIN), [agent("a"), agent("b"), agent("c")])
    got = []
    for i in range(6):
        (o,) = of(eng.caller_joined(f"x{i}", "q", float(i)), Offer)
        got.append(o.agent)
        eng.offer_accepted(o.caller, o.agent, float(i))
        eng.call_ended(o.caller, float(i) + 0.5)
    assert got == ["a", "b", "c", "a", "b", "c"]


def test_random_strategy_is_reproducible_with_a_seeded_rng() -> None:
    def run(seed: int) -> list[str]:
        eng = make(QueueConfig("q", strategy=Strategy.RANDOM), [agent(x) for x in "abcdefgh"], rng=random.Random(seed))
        picks = []
        for i in range(8):
            (o,) = of(eng.caller_joined(f"x{i}", "q", float(i)), Offer)
            picks.append(o.agent)
            eng.offer_rejected(o.caller, o.agent, float(i))
            eng.caller_left(o.caller, float(i))
        return picks

    assert run(1) == run(1)
    assert len(set(run(1))) > 1


def test_weighted_strategy_uses_configured_weights() -> None:
    eng = _engine_with_history(Strategy.WEIGHTED, skills={"s": 1}, weights={"proficiency": 1.0, "calls": -10.0})
    # scores: a 3-20=-17, b 9-10=-1, c 6-0=6
    assert offer_to(eng.caller_joined("x", "q", 200.0)) == [("x", "c")]


# -- statistics ---------------------------------------------------------------------------------


def test_statistics_per_queue_and_agent_live_and_by_interval() -> None:
    eng = make(QueueConfig("q", service_level=20, wrap_up=10), [agent("a")])
    eng.caller_joined("x1", "q", 0.0)  # answered at once
    eng.offer_accepted("x1", "a", 5.0)
    eng.caller_joined("x2", "q", 10.0)  # waits 85 s
    eng.call_ended("x1", 65.0)
    eng.tick(75.0)
    eng.offer_accepted("x2", "a", 95.0)
    eng.caller_joined("x3", "q", 100.0)
    eng.caller_left("x3", 130.0)  # abandoned after 30 s
    eng.call_ended("x2", 1000.0)  # crosses into the second 15-minute interval
    eng.tick(1010.0)
    live = eng.stats.queue_live("q")
    assert (live.offered, live.answered, live.abandoned) == (3, 2, 1)
    assert live.service_level == pytest.approx(1 / 3)
    assert live.average_speed_of_answer == pytest.approx((5 + 85) / 2)
    assert live.longest_wait == 85
    assert live.average_handle_time == pytest.approx((60 + 10 + 905 + 10) / 2)
    ag = eng.stats.agent_live("a")
    assert ag.answered == 2
    # idle 0-0 and 75-75 (offered at once), busy the rest, except it was idle 1000+10..1010: none
    assert ag.occupancy == pytest.approx(1.0)
    q15 = eng.stats.queue_intervals("q", 15)
    assert [r.start for r in q15] == [0.0, 900.0]
    assert (q15[0].offered, q15[0].answered, q15[0].abandoned) == (3, 2, 1)
    assert q15[1].average_handle_time == pytest.approx(905 + 10)
    (h,) = eng.stats.queue_intervals("q", 60)
    assert (h.offered, h.answered, h.start, h.end) == (3, 2, 0.0, 3600.0)


def test_occupancy_counts_idle_time() -> None:
    eng = make(QueueConfig("q"), [agent("a")])
    eng.caller_joined("x", "q", 30.0)
    eng.offer_accepted("x", "a", 30.0)
    eng.call_ended("x", 90.0)
    eng.agent_logged_out("a", 120.0)
    assert eng.stats.agent_live("a").occupancy == pytest.approx(60 / 120)
    assert eng.stats.queue_live("q").occupancy == pytest.approx(60 / 120)


def test_queue_status_shows_waiting_and_longest_current_wait() -> None:
    eng = make(QueueConfig("q"), [agent("a")], login=False)
    eng.caller_joined("x", "q", 10.0)
    eng.caller_joined("y", "q", 20.0)
    st = eng.queue_status("q", 50.0)
    assert (st["waiting"], st["longest_wait"], st["available"], st["staffed"]) == (2, 40.0, 0, 0)


def test_configuration_is_validated() -> None:
    with pytest.raises(ValueError):
        AgentConfig("a", skills={"ja": 11})
    with pytest.raises(ValueError):
        QueueConfig("q", skills={"ja": 0})
    with pytest.raises(KeyError):
        AcdEngine([QueueConfig("q")], [AgentConfig("a", queues={"nope": 0})])


# -- more edge rules ----------------------------------------------------------------------------


def test_no_deadline_when_nothing_is_pending() -> None:
    eng = make(QueueConfig("q"), [agent("a")])
    assert eng.next_deadline() is None
    eng.caller_joined("x", "q", 0.0)
    eng.offer_accepted("x", "a", 1.0)
    assert eng.next_deadline() is None  # the ring timer died with the accept


def test_estimated_wait_is_unknown_when_nobody_is_staffed() -> None:
    eng = make(QueueConfig("q", announce_every=30), [agent("a")], login=False)
    d = eng.caller_joined("x", "q", 0.0)
    assert [(a.position, a.estimated_wait) for a in of(d, Announce)] == [(1, None)]


def test_overflow_waits_for_a_ringing_agent_to_answer_or_time_out() -> None:
    q = QueueConfig("q", max_wait=30, ring_timeout=10, overflow=OverflowTarget(TargetKind.VOICEMAIL, "mb1"))
    eng = make(q, [agent("a")], login=False)
    eng.caller_joined("x", "q", 0.0)
    eng.agent_logged_in("a", 25.0)  # rings 25..35
    assert of(eng.tick(30.0), Overflow) == []
    d = eng.offer_accepted("x", "a", 32.0)
    assert of(d, Connect)
    assert of(eng.tick(100.0), Overflow) == []


def test_caller_hanging_up_while_ringing_frees_the_agent_for_the_next_caller() -> None:
    eng = make(QueueConfig("q"), [agent("a")])
    eng.caller_joined("x", "q", 0.0)
    eng.caller_joined("y", "q", 1.0)
    d = eng.caller_left("x", 2.0)
    assert [(c.caller, c.agent) for c in of(d, CancelOffer)] == [("x", "a")]
    assert offer_to(d) == [("y", "a")]
    assert eng.stats.queue_live("q").abandoned == 1


def test_accept_after_the_ring_timeout_is_refused() -> None:
    eng = make(QueueConfig("q", ring_timeout=5), [agent("a"), agent("b")])
    eng.caller_joined("x", "q", 0.0)
    eng.tick(5.0)  # moves to b
    d = eng.offer_accepted("x", "a", 5.5)
    assert of(d, Connect) == [] and of(d, CancelOffer)
    assert eng.connected() == {}


def test_logout_during_a_call_takes_effect_when_the_call_ends() -> None:
    eng = make(QueueConfig("q", wrap_up=30), [agent("a")])
    eng.caller_joined("x", "q", 0.0)
    eng.offer_accepted("x", "a", 1.0)
    eng.agent_logged_out("a", 5.0)
    assert eng.agent_state("a") is AgentState.ON_CALL
    eng.call_ended("x", 10.0)
    assert eng.agent_state("a") is AgentState.OFFLINE
    assert of(eng.caller_joined("y", "q", 11.0), Offer) == []


def test_callback_callers_are_not_announced_to() -> None:
    eng = make(QueueConfig("q", announce_every=10), [agent("a")], login=False)
    eng.caller_joined("x", "q", 0.0)
    eng.callback_requested("x", "0300", 1.0)
    assert of(eng.tick(50.0), Announce) == []


def test_escalated_callers_compete_with_the_borrowed_queue_by_waiting_time() -> None:
    q = QueueConfig("q", escalation=(EscalationStep(after=10, add_queues=("other",)),))
    eng = AcdEngine([q, QueueConfig("other")], [agent("o", queue="other")])
    eng.caller_joined("x", "q", 0.0)
    eng.tick(10.0)
    eng.caller_joined("own", "other", 20.0)
    d = eng.agent_logged_in("o", 30.0)
    assert offer_to(d) == [("x", "o")]  # waited 30 s against 10 s
    eng.offer_accepted("x", "o", 31.0)
    d = eng.call_ended("x", 40.0)
    assert offer_to(d) == [("own", "o")]


def test_thirty_minute_intervals_sum_two_fifteen_minute_ones() -> None:
    eng = make(QueueConfig("q"), [agent("a")])
    for i, t in enumerate((100.0, 1000.0, 2000.0)):
        eng.caller_joined(f"x{i}", "q", t)
        eng.offer_accepted(f"x{i}", "a", t + 1)
        eng.call_ended(f"x{i}", t + 60)
    assert [r.answered for r in eng.stats.queue_intervals("q", 15)] == [1, 1, 1]
    assert [(r.start, r.answered) for r in eng.stats.queue_intervals("q", 30)] == [(0.0, 2), (1800.0, 1)]
    with pytest.raises(ValueError):
        eng.stats.queue_intervals("q", 20)


def test_supervisor_skill_change_makes_an_idle_agent_eligible_at_once() -> None:
    eng = make(QueueConfig("q", skills={"ko": 5}), [agent("a", ko=2)])
    eng.caller_joined("x", "q", 0.0)
    d = eng.update_agent(AgentConfig("a", skills={"ko": 6}, queues={"q": 0}), 5.0)
    assert offer_to(d) == [("x", "a")]


def test_agent_moved_to_another_queue_stops_getting_the_old_queues_callers() -> None:
    eng = AcdEngine([QueueConfig("q"), QueueConfig("r")], [agent("a")])
    eng.agent_logged_in("a", 0.0)
    eng.update_agent(AgentConfig("a", queues={"r": 0}), 1.0)
    assert of(eng.caller_joined("x", "q", 2.0), Offer) == []
    assert offer_to(eng.caller_joined("y", "r", 3.0)) == [("y", "a")]
    assert eng.queue_status("q", 3.0)["staffed"] == 0
    assert eng.queue_status("r", 3.0)["staffed"] == 1


def test_removing_a_ringing_agent_offers_the_caller_to_someone_else() -> None:
    eng = make(QueueConfig("q"), [agent("a"), agent("b")])
    eng.caller_joined("x", "q", 0.0)
    d = eng.remove_agent("a", 1.0)
    assert offer_to(d) == [("x", "b")]
    assert eng.next_deadline() == 16.0
    eng.offer_accepted("x", "b", 2.0)
    eng.call_ended("x", 3.0)
    with pytest.raises(KeyError):
        eng.agent_state("a")


def test_caller_needing_a_rare_skill_reaches_the_one_higher_tier_agent_who_has_it() -> None:
    agents = [agent(f"p{i}", ja=5) for i in range(20)] + [agent("thai", tier=1, ja=2, th=6)]
    eng = make(QueueConfig("q", skills={"ja": 1}), agents)
    d = eng.caller_joined("x", "q", 1.0, skills={"th": 4})
    assert offer_to(d) == [("x", "thai")]


def test_old_interval_buckets_can_be_pruned_once_saved() -> None:
    eng = make(QueueConfig("q"), [agent("a")])
    eng.caller_joined("x", "q", 100.0)
    eng.caller_joined("y", "q", 2000.0)
    eng.stats.prune(1800.0)
    assert [r.start for r in eng.stats.queue_intervals("q", 15)] == [1800.0]
    assert eng.stats.queue_live("q").offered == 2


def test_daily_reset_makes_fewest_calls_start_over() -> None:
    eng = make(QueueConfig("q", strategy=Strategy.FEWEST_CALLS), [agent("a"), agent("b")], login=False)
    eng.agent_logged_in("a", 0.0)
    for i in range(2):
        eng.caller_joined(f"h{i}", "q", 1.0 + i)
        eng.offer_accepted(f"h{i}", "a", 1.0 + i)
        eng.call_ended(f"h{i}", 1.5 + i)
    eng.agent_logged_in("b", 10.0)  # a has been idle longer but took 2 calls
    assert offer_to(eng.caller_joined("x", "q", 20.0)) == [("x", "b")]
    eng.caller_left("x", 21.0)
    eng.reset_agent_counters()
    assert offer_to(eng.caller_joined("y", "q", 30.0)) == [("y", "a")]
    assert eng.stats.agent_live("a").answered == 2  # statistics are not reset


def test_snapshot_shows_agents_and_waiting_callers_for_the_supervisor() -> None:
    eng = make(QueueConfig("q"), [agent("a"), agent("b")])
    eng.agent_paused("b", "training", 0.0)
    eng.caller_joined("x", "q", 1.0)
    eng.caller_joined("y", "q", 2.0, priority=1)
    snap = eng.snapshot(10.0)
    by_agent = {r["agent"]: r for r in snap["agents"]}
    assert by_agent["a"]["state"] == "offered" and by_agent["a"]["caller"] == "x"
    assert (by_agent["b"]["state"], by_agent["b"]["reason"], by_agent["b"]["in_state_for"]) == ("paused", "training", 10.0)
    (q,) = snap["queues"]
    assert [(w["caller"], w["wait"]) for w in q["callers"]] == [("y", 8.0)]  # type: ignore[index]
    assert q["ringing"] == ["x"] and q["staffed"] == 1 and q["waiting"] == 1


def test_affinity_loads_the_stores_rows() -> None:
    from dataclasses import dataclass

    @dataclass
    class StoreRow:  # the shape of softswitch.store.Affinity
        caller: str
        agent: str
        last_handled: float
        count: int

    mem = AffinityMemory()
    mem.load([StoreRow("0311", "a", 5.0, 3), {"caller": "0322", "agent": "b", "last_handled": 6.0}])
    mem.load([{"key": "0311", "agent": "c", "when": 7.0}])
    assert mem.recent("0311", 8.0) == ["c", "a"]
    assert mem.recent("0322", 8.0) == ["b"]
    with pytest.raises(ValueError):
        mem.load([{"key": "x", "agent": "a"}])


def test_cancelled_callback_leaves_the_queue() -> None:
    eng = make(QueueConfig("q"), [agent("a")], login=False)
    eng.caller_joined("x", "q", 0.0)
    eng.caller_joined("y", "q", 1.0)
    eng.callback_requested("x", "0300", 2.0)
    eng.callback_cancelled("x", 3.0)
    assert eng.waiting("q") == ["y"]
    assert offer_to(eng.agent_logged_in("a", 4.0)) == [("y", "a")]


def test_handle_dispatches_every_event_type() -> None:
    from acd import model

    eng = make(QueueConfig("q", wrap_up=5), [agent("a"), agent("b")])
    events: list[model.AcdEvent] = [
        model.CallerJoined(now=0.0, caller="x", queue="q", number="0311"),
        model.OfferRejected(now=1.0, caller="x", agent="a"),
        model.OfferTimedOut(now=2.0, caller="x", agent="b"),
        model.Tick(now=10.0),
        model.OfferAccepted(now=11.0, caller="x", agent="a"),
        model.CallEnded(now=20.0, caller="x"),
        model.WrapUpDone(now=21.0, agent="a"),
        model.AgentPaused(now=22.0, agent="a", reason="lunch"),
        model.AgentReachability(now=23.0, agent="b", reachable=False),
        model.CallerJoined(now=24.0, caller="y", queue="q"),
        model.CallbackRequested(now=25.0, caller="y", number="0300"),
        model.CallbackCancelled(now=26.0, caller="y"),
        model.CallerJoined(now=27.0, caller="z", queue="q"),
        model.CallerLeft(now=28.0, caller="z"),
        model.AgentReady(now=29.0, agent="a"),
        model.AgentLoggedOut(now=30.0, agent="a"),
        model.AgentLoggedIn(now=31.0, agent="a"),
    ]
    kinds = {type(e) for e in events}
    assert kinds == {c for c in vars(model).values() if isinstance(c, type) and issubclass(c, model.AcdEvent) and c is not model.AcdEvent}
    for e in events:
        eng.handle(e)
        eng.check_invariants()
    assert eng.agent_state("a") is AgentState.AVAILABLE
    assert eng.stats.queue_live("q").answered == 1


def test_a_transferred_caller_keeps_the_wait_they_already_had() -> None:
    eng = make(QueueConfig("q"), [agent("a")], login=False)
    eng.caller_joined("new", "q", 100.0)
    eng.caller_joined("moved", "q", 110.0, join_time=40.0)
    assert eng.waiting("q") == ["moved", "new"]
    eng.agent_logged_in("a", 120.0)
    d = eng.offer_accepted("moved", "a", 121.0)
    assert of(d, Connect)[0].wait == 81.0
    assert eng.stats.agent_live("a").offered == 1
