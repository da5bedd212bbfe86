"""Queue and agent statistics: live totals and 15/30/60-minute intervals.

Counts are kept in 15-minute buckets only; 30 and 60 minute intervals are sums of those, which works
because every figure is a sum or a maximum. Service level is answered-within-threshold over
answered plus abandoned; occupancy is busy (offered, on call, wrap-up) over busy plus available.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE = 900.0  # seconds in the base bucket (15 minutes)
WIDTHS = (15, 30, 60)


class Counters:
    """Additive counters for one queue or agent over some span of time."""

    __slots__ = (
        "abandoned",
        "affinity_hits",
        "affinity_misses",
        "answered",
        "answered_in_sl",
        "busy_time",
        "handled",
        "idle_time",
        "longest_wait",
        "offered",
        "overflowed",
        "talk_time",
        "wait_answered",
        "wrap_time",
    )

    def __init__(self) -> None:
        self.offered = 0
        self.answered = 0
        self.abandoned = 0
        self.overflowed = 0
        self.answered_in_sl = 0
        self.wait_answered = 0.0
        self.longest_wait = 0.0
        self.handled = 0
        self.talk_time = 0.0
        self.wrap_time = 0.0
        self.busy_time = 0.0
        self.idle_time = 0.0
        self.affinity_hits = 0
        self.affinity_misses = 0

    def merge(self, other: Counters) -> None:
        """Add `other` into this one."""
        for name in Counters.__slots__:
            if name == "longest_wait":
                self.longest_wait = max(self.longest_wait, other.longest_wait)
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class Report:
    """Figures for one queue or agent over [start, end) (end is None for live totals)."""

    start: float
    end: float | None
    offered: int
    answered: int
    abandoned: int
    overflowed: int
    answered_within: int  # answered within the queue's service-level threshold
    service_level: float | None
    average_speed_of_answer: float | None
    average_handle_time: float | None
    longest_wait: float
    occupancy: float | None
    affinity_hits: int
    affinity_misses: int

    @classmethod
    def of(cls, c: Counters, start: float, end: float | None) -> Report:
        """Derive the ratios from raw counters."""
        closed = c.answered + c.abandoned
        busy_idle = c.busy_time + c.idle_time
        return cls(
            start=start,
            end=end,
            offered=c.offered,
            answered=c.answered,
            abandoned=c.abandoned,
            overflowed=c.overflowed,
            answered_within=c.answered_in_sl,
            service_level=c.answered_in_sl / closed if closed else None,
            average_speed_of_answer=c.wait_answered / c.answered if c.answered else None,
            average_handle_time=(c.talk_time + c.wrap_time) / c.handled if c.handled else None,
            longest_wait=c.longest_wait,
            occupancy=c.busy_time / busy_idle if busy_idle > 0 else None,
            affinity_hits=c.affinity_hits,
            affinity_misses=c.affinity_misses,
        )


class _Series:
    """Live totals plus 15-minute buckets for one subject."""

    __slots__ = ("buckets", "live")

    def __init__(self) -> None:
        self.live = Counters()
        self.buckets: dict[int, Counters] = {}

    def at(self, now: float) -> Counters:
        idx = int(now // BASE)
        b = self.buckets.get(idx)
        if b is None:
            b = self.buckets[idx] = Counters()
        return b


class StatsBook:
    """Statistics of every queue and agent, fed by the engine."""

    def __init__(self) -> None:
        self._queues: dict[str, _Series] = {}
        self._agents: dict[str, _Series] = {}
        self._members: dict[str, list[str]] = {}

    def _q(self, queue: str) -> _Series:
        s = self._queues.get(queue)
        if s is None:
            s = self._queues[queue] = _Series()
        return s

    def _a(self, agent: str) -> _Series:
        s = self._agents.get(agent)
        if s is None:
            s = self._agents[agent] = _Series()
        return s

    # -- recording ------------------------------------------------------------------------------

    def restore(self, queue: str, at: float, *, offered: int, answered: int, abandoned: int,
                answered_in_sl: int, wait_answered: float) -> None:
        """Counts kept from before a restart (read back from the store), added to the interval
        holding `at`, so that today's figures survive the node restarting."""
        c = self._q(queue).at(at)
        c.offered += offered
        c.answered += answered
        c.abandoned += abandoned
        c.answered_in_sl += answered_in_sl
        c.wait_answered += wait_answered

    def offered(self, queue: str, now: float) -> None:
        s = self._q(queue)
        s.live.offered += 1
        s.at(now).offered += 1

    def agent_offered(self, agent: str, now: float) -> None:
        """An offer rang this agent (an agent's 'offered' counts offers, answered or not)."""
        s = self._a(agent)
        s.live.offered += 1
        s.at(now).offered += 1

    def answered(self, queue: str, agent: str, now: float, wait: float, threshold: float) -> None:
        in_sl = 1 if wait <= threshold else 0
        for s in (self._q(queue), self._a(agent)):
            for c in (s.live, s.at(now)):
                c.answered += 1
                c.answered_in_sl += in_sl
                c.wait_answered += wait
                if wait > c.longest_wait:
                    c.longest_wait = wait

    def abandoned(self, queue: str, now: float, wait: float, sign: int = 1) -> None:
        """Count an abandon; `sign=-1` retracts one (the caller came straight back)."""
        s = self._q(queue)
        for c in (s.live, s.at(now)):
            c.abandoned += sign
            if sign > 0 and wait > c.longest_wait:
                c.longest_wait = wait

    def overflowed(self, queue: str, now: float, wait: float) -> None:
        s = self._q(queue)
        for c in (s.live, s.at(now)):
            c.overflowed += 1
            if wait > c.longest_wait:
                c.longest_wait = wait

    def affinity(self, queue: str, now: float, hit: bool) -> None:
        s = self._q(queue)
        for c in (s.live, s.at(now)):
            if hit:
                c.affinity_hits += 1
            else:
                c.affinity_misses += 1

    def handled(self, queue: str, agent: str, now: float, talk: float) -> None:
        for s in (self._q(queue), self._a(agent)):
            for c in (s.live, s.at(now)):
                c.handled += 1
                c.talk_time += talk

    def wrapped(self, queue: str, agent: str, now: float, wrap: float) -> None:
        for s in (self._q(queue), self._a(agent)):
            for c in (s.live, s.at(now)):
                c.wrap_time += wrap

    def add_member(self, queue: str, agent: str) -> None:
        """A queue's occupancy is that of its member agents, summed when a report is read."""
        members = self._members.setdefault(queue, [])
        if agent not in members:
            members.append(agent)

    def agent_time(self, agent: str, busy: bool, t0: float, t1: float) -> None:
        """Attribute [t0, t1) of busy or idle time to the agent, split by bucket."""
        if t1 <= t0:
            return
        series = self._a(agent)
        if busy:
            series.live.busy_time += t1 - t0
        else:
            series.live.idle_time += t1 - t0
        t = t0
        while t < t1:
            end = min(t1, (int(t // BASE) + 1) * BASE)
            c = series.at(t)
            if busy:
                c.busy_time += end - t
            else:
                c.idle_time += end - t
            t = end

    def prune(self, before: float) -> None:
        """Drop 15-minute buckets that ended before `before` (once the store has saved them)."""
        limit = int(before // BASE)
        for group in (self._queues, self._agents):
            for series in group.values():
                for idx in [i for i in series.buckets if i < limit]:
                    del series.buckets[idx]

    # -- reading --------------------------------------------------------------------------------

    def queue_live(self, queue: str) -> Report:
        """Totals since the engine started."""
        c = Counters()
        c.merge(self._q(queue).live)
        for agent in self._members.get(queue, ()):
            a = self._a(agent).live
            c.busy_time += a.busy_time
            c.idle_time += a.idle_time
        return Report.of(c, 0.0, None)

    def agent_live(self, agent: str) -> Report:
        return Report.of(self._a(agent).live, 0.0, None)

    def queue_intervals(self, queue: str, minutes: int = 15) -> list[Report]:
        """One report per `minutes` (15, 30 or 60) interval that saw any activity, in time order."""
        merged = _Series()
        for idx, c in self._q(queue).buckets.items():
            merged.buckets.setdefault(idx, Counters()).merge(c)
        for agent in self._members.get(queue, ()):
            for idx, a in self._a(agent).buckets.items():
                m = merged.buckets.setdefault(idx, Counters())
                m.busy_time += a.busy_time
                m.idle_time += a.idle_time
        return _intervals(merged, minutes)

    def agent_intervals(self, agent: str, minutes: int = 15) -> list[Report]:
        return _intervals(self._a(agent), minutes)

    def queues(self) -> list[str]:
        return sorted(self._queues)

    def agents(self) -> list[str]:
        return sorted(self._agents)


def _intervals(series: _Series, minutes: int) -> list[Report]:
    if minutes not in WIDTHS:
        raise ValueError(f"interval must be one of {WIDTHS} minutes")
    per = minutes // 15
    merged: dict[int, Counters] = {}
    for idx, c in series.buckets.items():
        m = merged.get(idx // per)
        if m is None:
            m = merged[idx // per] = Counters()
        m.merge(c)
    width = per * BASE
    return [Report.of(merged[k], k * width, (k + 1) * width) for k in sorted(merged)]
