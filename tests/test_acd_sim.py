"""The simulator drives the real engine and agrees with queueing theory."""

from __future__ import annotations

import math
import random

import pytest

from acd.engine import AcdEngine
from acd.erlang import agents_for_service_level, average_speed_of_answer, erlang_b, erlang_c, service_level
from acd.model import AgentConfig, OverflowTarget, QueueConfig, TargetKind
from acd.sim import Load, Simulator, constant, exponential, lognormal


def test_erlang_formulas_match_known_values() -> None:
    assert erlang_b(1, 1.0) == pytest.approx(0.5)
    assert erlang_c(3, 2.0) == pytest.approx(4 / 9)
    assert erlang_c(2, 2.0) == 1.0
    # M/M/1: P(wait > t) = rho * exp(-(mu - lambda) t)
    assert service_level(1, 0.5, 1.0, 2.0) == pytest.approx(1 - 0.5 * math.exp(-1.0))
    assert average_speed_of_answer(1, 0.5, 1.0) == pytest.approx(1.0)
    n = agents_for_service_level(100 / 3600, 180, 20, 0.8)
    assert service_level(n, 100 / 3600, 180, 20) >= 0.8 > service_level(n - 1, 100 / 3600, 180, 20)


def test_simulated_single_queue_matches_erlang_c_service_level_within_two_points() -> None:
    agents, traffic, handle, threshold = 10, 7.0, 60.0, 20.0
    rate = traffic / handle
    eng = AcdEngine(
        [QueueConfig("q", service_level=threshold, ring_timeout=1e9)],
        [AgentConfig(f"a{i}", queues={"q": 0}) for i in range(agents)],
    )
    sim = Simulator(eng, [Load("q", rate, exponential(handle))], random.Random(3))
    result = sim.run(300_000.0, login=[f"a{i}" for i in range(agents)])
    expected = service_level(agents, rate, handle, threshold)
    assert result.arrivals > 30_000
    assert result.service_level(threshold, after=2_000.0) == pytest.approx(expected, abs=0.02)
    # the engine's own statistics say the same
    live = eng.stats.queue_live("q")
    assert live.service_level == pytest.approx(expected, abs=0.02)
    assert live.occupancy == pytest.approx(traffic / agents, abs=0.02)
    assert live.average_speed_of_answer == pytest.approx(average_speed_of_answer(agents, rate, handle), rel=0.15)


def test_impatient_callers_abandon_and_are_counted_by_the_engine() -> None:
    eng = AcdEngine([QueueConfig("q")], [AgentConfig(f"a{i}", queues={"q": 0}) for i in range(3)])
    sim = Simulator(eng, [Load("q", 4 / 60, lognormal(60, 30), patience=exponential(30))], random.Random(1))
    r = sim.run(20_000.0, login=["a0", "a1", "a2"])
    live = eng.stats.queue_live("q")
    assert r.abandoned > 50
    assert live.abandoned == r.abandoned
    assert live.answered == r.answered
    assert live.offered == r.arrivals


def test_overloaded_queue_overflows_to_the_outsourcer_instead_of_dropping() -> None:
    trunk = OverflowTarget(TargetKind.TRUNK, "outsourcer")
    eng = AcdEngine([QueueConfig("q", max_size=5, overflow=trunk)], [AgentConfig(f"a{i}", queues={"q": 0}) for i in range(5)])
    # three times what five agents can take
    sim = Simulator(eng, [Load("q", 3 * 5 / 120, constant(120))], random.Random(2))
    r = sim.run(7200.0, login=[f"a{i}" for i in range(5)])
    assert r.overflowed > r.arrivals / 2
    assert r.rejected == 0 and r.abandoned == 0


def test_unanswered_offers_ring_the_next_agent_in_simulation() -> None:
    eng = AcdEngine([QueueConfig("q", ring_timeout=10, max_no_answer=1000)], [AgentConfig(f"a{i}", queues={"q": 0}) for i in range(4)])
    sim = Simulator(eng, [Load("q", 1 / 60, exponential(60))], random.Random(4), answer_delay=constant(2.0),
                    no_answer_probability=0.3)
    r = sim.run(20_000.0, login=[f"a{i}" for i in range(4)])
    assert r.answered >= r.arrivals - 5


def test_intraday_profile_shapes_arrivals() -> None:
    eng = AcdEngine([QueueConfig("q")], [AgentConfig(f"a{i}", queues={"q": 0}) for i in range(5)])
    sim = Simulator(eng, [Load("q", 0.05, constant(30), profile=lambda t: 0.0 if t < 3600 else 1.0)], random.Random(5))
    sim.run(7200.0, login=[f"a{i}" for i in range(5)])
    hours = {r.start: r.offered for r in eng.stats.queue_intervals("q", 60)}
    assert hours.get(0.0, 0) == 0
    assert 130 < hours[3600.0] < 230  # 180 expected
