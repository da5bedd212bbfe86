"""Agent selection strategies.

The engine hands over the eligible available agents of the best tier, already in longest-idle
order, so every strategy breaks ties by longest idle simply by keeping the first best candidate.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from acd.model import Strategy


class AgentLike(Protocol):
    """What a strategy may look at."""

    idle_since: float
    calls: int
    talk_time: float
    skills: Mapping[str, int]


def proficiency(agent: AgentLike, required: Mapping[str, int]) -> int:
    """The agent's summed proficiency on the required skills."""
    skills = agent.skills
    return sum(skills.get(s, 0) for s in required)


def weighted_score(agent: AgentLike, required: Mapping[str, int], weights: Mapping[str, float], now: float) -> float:
    """Configurable score: higher wins. Weights name idle, proficiency, calls and talk_time."""
    return (
        weights.get("idle", 0.0) * (now - agent.idle_since)
        + weights.get("proficiency", 0.0) * proficiency(agent, required)
        + weights.get("calls", 0.0) * agent.calls
        + weights.get("talk_time", 0.0) * agent.talk_time
    )


A = TypeVar("A", bound=AgentLike)


def select(
    strategy: Strategy,
    candidates: Sequence[A],
    required: Mapping[str, int],
    weights: Mapping[str, float],
    now: float,
    rng: random.Random,
    rr_distance: Callable[[A], int],
) -> A:
    """Pick one agent among non-empty `candidates` (given in longest-idle order)."""
    if strategy is Strategy.LONGEST_IDLE or strategy is Strategy.RING_ALL or len(candidates) == 1:
        return candidates[0]
    if strategy is Strategy.FEWEST_CALLS:
        return min(candidates, key=lambda a: a.calls)
    if strategy is Strategy.LEAST_TALK_TIME:
        return min(candidates, key=lambda a: a.talk_time)
    if strategy is Strategy.BEST_SKILL:
        return max(candidates, key=lambda a: proficiency(a, required))
    if strategy is Strategy.ROUND_ROBIN:
        return min(candidates, key=rr_distance)
    if strategy is Strategy.RANDOM:
        return rng.choice(candidates)
    if strategy is Strategy.WEIGHTED:
        return max(candidates, key=lambda a: weighted_score(a, required, weights, now))
    raise ValueError(f"unknown strategy {strategy}")
