"""A discrete-event simulator that drives the real ACD engine.

Callers arrive as Poisson processes per queue, talk for a sampled handle time and abandon after a
sampled patience. Agents answer offers (after an optional ring delay, or never with some
probability). Engine deadlines are interleaved with simulated events, so the simulator exercises
exactly the code the call layer runs.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from acd.engine import AcdEngine
from acd.model import CancelOffer, Connect, Decision, Offer, Overflow, Reject, TargetKind

Sampler = Callable[[random.Random], float]


def exponential(mean: float) -> Sampler:
    """Exponentially distributed samples with the given mean."""
    rate = 1.0 / mean
    return lambda rng: rng.expovariate(rate)


def lognormal(mean: float, sd: float) -> Sampler:
    """Log-normal samples with the given mean and standard deviation (typical of handle times)."""
    sigma2 = math.log(1.0 + (sd / mean) ** 2)
    mu = math.log(mean) - sigma2 / 2.0
    sigma = math.sqrt(sigma2)
    return lambda rng: rng.lognormvariate(mu, sigma)


def constant(value: float) -> Sampler:
    """Always the same value."""
    return lambda rng: value


@dataclass(frozen=True)
class Load:
    """Traffic offered to one queue."""

    queue: str
    arrival_rate: float  # calls per second (the peak rate when a profile is given)
    handle_time: Sampler
    patience: Sampler | None = None  # None: nobody abandons
    priority: int = 0
    skills: Mapping[str, int] = field(default_factory=dict)
    returning_share: float = 0.0  # share of callers drawn from a pool of known numbers (affinity)
    customers: int = 1000
    profile: Callable[[float], float] | None = None  # time -> share of the peak rate, 0..1 (intraday curve)


@dataclass
class SimResult:
    """What happened, from the callers' side. `waits` holds (arrival time, wait) per answered call."""

    arrivals: int = 0
    answered: int = 0
    abandoned: int = 0
    overflowed: int = 0
    rejected: int = 0
    decisions: int = 0
    engine_calls: int = 0
    waits: list[tuple[float, float]] = field(default_factory=list)

    def service_level(self, threshold: float, after: float = 0.0) -> float:
        """Share of callers arriving after `after` answered within `threshold` (answered only)."""
        ws = [w for t, w in self.waits if t >= after]
        return sum(1 for w in ws if w <= threshold) / len(ws) if ws else math.nan


_ARRIVE, _ANSWER, _ABANDON, _END = range(4)


class Simulator:
    """Runs `loads` against `engine`; agents must already be configured (and are logged in here)."""

    def __init__(
        self,
        engine: AcdEngine,
        loads: list[Load],
        rng: random.Random,
        *,
        answer_delay: Sampler | None = None,
        no_answer_probability: float = 0.0,
    ) -> None:
        self.engine = engine
        self.loads = loads
        self.rng = rng
        self.answer_delay = answer_delay
        self.no_answer_probability = no_answer_probability
        self.result = SimResult()
        self._heap: list[tuple[float, int, int, object]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._handle: dict[str, float] = {}
        self._arrived: dict[str, float] = {}
        self._waiting: set[str] = set()
        self._cancelled: set[int] = set()

    def _push(self, when: float, kind: int, payload: object) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), kind, payload))

    def run(self, until: float, start: float = 0.0, login: list[str] | None = None) -> SimResult:
        """Simulate from `start` to `until` seconds; `login` agents at `start` first."""
        eng = self.engine
        for agent in login or []:
            self._apply(eng.agent_logged_in(agent, start), start)
        for i, load in enumerate(self.loads):
            self._push(start + self.rng.expovariate(load.arrival_rate), _ARRIVE, i)
        heap = self._heap
        inf = math.inf
        while True:
            t_ev = heap[0][0] if heap else inf
            dl = eng.next_deadline()
            t_dl = dl if dl is not None else inf
            if min(t_ev, t_dl) > until:
                break
            self.result.engine_calls += 1
            if t_dl <= t_ev:
                self._apply(eng.tick(t_dl), t_dl)
                continue
            now, _, kind, payload = heapq.heappop(heap)
            if kind == _ARRIVE:
                self._arrive(int(payload), now)  # type: ignore[call-overload]
            elif kind == _ANSWER:
                caller, agent, oid = payload  # type: ignore[misc]
                if oid in self._cancelled:
                    self._cancelled.discard(oid)
                else:
                    self._apply(eng.offer_accepted(caller, agent, now), now)
            elif kind == _ABANDON:
                if payload in self._waiting:
                    self._waiting.discard(payload)  # type: ignore[arg-type]
                    self.result.abandoned += 1
                    self._apply(eng.caller_left(payload, now), now)  # type: ignore[arg-type]
            else:
                self._apply(eng.call_ended(payload, now), now)  # type: ignore[arg-type]
        return self.result

    def _arrive(self, i: int, now: float) -> None:
        load = self.loads[i]
        rng = self.rng
        self._push(now + rng.expovariate(load.arrival_rate), _ARRIVE, i)
        if load.profile is not None and rng.random() >= load.profile(now):
            return  # thinning: a non-homogeneous Poisson process from the peak rate
        cid = f"s{next(self._ids)}"
        self.result.arrivals += 1
        self._handle[cid] = load.handle_time(rng)
        self._arrived[cid] = now
        self._waiting.add(cid)
        if load.patience is not None:
            self._push(now + load.patience(rng), _ABANDON, cid)
        number = ""
        if load.returning_share and rng.random() < load.returning_share:
            number = f"{load.queue}-cust{rng.randrange(load.customers)}"
        self._apply(
            self.engine.caller_joined(cid, load.queue, now, priority=load.priority, skills=load.skills, number=number),
            now,
        )

    def _apply(self, decisions: list[Decision], now: float) -> None:
        res = self.result
        res.decisions += len(decisions)
        for d in decisions:
            if isinstance(d, Offer):
                if self.no_answer_probability and self.rng.random() < self.no_answer_probability:
                    continue  # let the engine's ring timeout fire
                delay = self.answer_delay(self.rng) if self.answer_delay else 0.0
                self._push(now + delay, _ANSWER, (d.caller, d.agent, d.offer_id))
            elif isinstance(d, CancelOffer):
                if d.offer_id > 0:
                    self._cancelled.add(d.offer_id)
            elif isinstance(d, Connect):
                self._waiting.discard(d.caller)
                res.answered += 1
                res.waits.append((self._arrived.pop(d.caller), d.wait))
                self._push(now + self._handle.pop(d.caller), _END, d.caller)
            elif isinstance(d, Overflow):
                if d.target.kind is TargetKind.CALLBACK:
                    self._waiting.discard(d.caller)  # hung up to be called back: no abandon
                elif d.target.kind is not TargetKind.QUEUE:
                    self._gone(d.caller)
                    res.overflowed += 1
            elif isinstance(d, Reject):
                self._gone(d.caller)
                res.rejected += 1

    def _gone(self, caller: str) -> None:
        self._waiting.discard(caller)
        self._handle.pop(caller, None)
        self._arrived.pop(caller, None)
