"""Erlang B and C: the classical staffing formulas the simulator is checked against."""

from __future__ import annotations

import math


def erlang_b(agents: int, traffic: float) -> float:
    """Blocking probability for `traffic` Erlangs offered to `agents` servers (stable recursion)."""
    if agents < 0 or traffic < 0:
        raise ValueError("agents and traffic must be non-negative")
    b = 1.0
    for n in range(1, agents + 1):
        b = traffic * b / (n + traffic * b)
    return b


def erlang_c(agents: int, traffic: float) -> float:
    """Probability that a caller has to wait (M/M/N, no abandonment); 1.0 when overloaded."""
    if agents <= traffic:
        return 1.0
    b = erlang_b(agents, traffic)
    return agents * b / (agents - traffic * (1.0 - b))


def service_level(agents: int, arrival_rate: float, handle_time: float, threshold: float) -> float:
    """Fraction of callers answered within `threshold` seconds (Erlang C)."""
    traffic = arrival_rate * handle_time
    if agents <= traffic:
        return 0.0
    pw = erlang_c(agents, traffic)
    return 1.0 - pw * math.exp(-(agents - traffic) * threshold / handle_time)


def average_speed_of_answer(agents: int, arrival_rate: float, handle_time: float) -> float:
    """Mean wait over all callers (Erlang C); infinite when overloaded."""
    traffic = arrival_rate * handle_time
    if agents <= traffic:
        return math.inf
    return erlang_c(agents, traffic) * handle_time / (agents - traffic)


def agents_for_service_level(
    arrival_rate: float, handle_time: float, threshold: float, target: float
) -> int:
    """The fewest agents reaching `target` service level (e.g. 0.8 within 20 s)."""
    n = max(1, math.floor(arrival_rate * handle_time) + 1)
    while service_level(n, arrival_rate, handle_time, threshold) < target:
        n += 1
    return n
