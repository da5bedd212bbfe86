"""Outbound dialer benchmark: a simulated predictive campaign against progressive dialling.

Run: .venv/bin/python bench/dialer.py [--agents 20 100 500] [--answer-rate 0.35] [--ceiling 0.03] [--hours 2]

A discrete-event simulation (heap of events, seeded random, no real time) drives the real
`acd.dialer.Dialer` exactly as the runner does: `pace` whenever an agent becomes free or a line
drops, `answered` on 200 OK, `connected` when an answered call is bridged to the longest-idle free
agent, `dial_result` once per attempt, `handle_ended` when the talk ends. Each dial rings 5-25 s
and is then answered with the answer probability, else gives no answer (or busy, 1-4 s). Talk time
is log-normal (mean 180 s), wrap-up about 10 s. An answered call that finds no agent within the
connect window (2 s) is abandoned. For each agent count it prints the calls dialled, answered,
connected and abandoned, the abandonment rate against the ceiling, agent occupancy ((talk +
wrap-up) / logged time), mean lines per free agent and the wall time of the simulation, first for
predictive pacing, then for progressive (one line per free agent) as the baseline.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from acd.dialer import Dial, Dialer, DialerSettings, Mode, Record, Result
from acd.sim import lognormal

_RING_END, _ABANDON, _TALK_END, _WRAP_END = range(4)


@dataclass(frozen=True)
class Campaign:
    """What the simulated campaign looks like."""

    agents: int
    mode: Mode = Mode.PREDICTIVE
    answer_rate: float = 0.35
    busy_share: float = 0.15  # of the calls not answered: busy (quickly) rather than ringing out
    ring_min: float = 5.0
    ring_max: float = 25.0
    handle_mean: float = 180.0
    handle_sd: float = 90.0
    wrap_mean: float = 10.0
    connect_window: float = 2.0
    ceiling: float = 0.03
    hours: float = 2.0
    seed: int = 1


@dataclass
class Outcome:
    """What the campaign achieved in its simulated hours."""

    campaign: Campaign
    dialled: int = 0
    answered: int = 0
    connected: int = 0
    abandoned: int = 0
    busy_time: float = 0.0
    lines_per_agent: float = 0.0
    wall: float = 0.0
    pace_calls: int = 0
    stats: dict[str, object] | None = None

    @property
    def abandon_rate(self) -> float:
        """Abandoned / answered."""
        return self.abandoned / self.answered if self.answered else 0.0

    @property
    def occupancy(self) -> float:
        """(Talk + wrap-up) / logged time."""
        return self.busy_time / (self.campaign.agents * self.campaign.hours * 3600.0)


def simulate(c: Campaign) -> Outcome:
    """Run the campaign for `c.hours` of simulated time and return its figures."""
    t0 = time.perf_counter()
    rng = random.Random(c.seed)
    end = c.hours * 3600.0
    talk = lognormal(c.handle_mean, c.handle_sd)
    wrap = lognormal(c.wrap_mean, c.wrap_mean * 0.3)
    settings = DialerSettings(mode=c.mode, abandon_ceiling=c.ceiling, connect_window=c.connect_window)
    # Twice the records the agents could get through if every dial were to a fresh number.
    n_records = int(2 * c.agents * c.hours * 3600 / (c.handle_mean + c.wrap_mean) / c.answer_rate) + 100
    dialer = Dialer("bench", settings, (Record(f"r{i}", f"0312{i:07d}") for i in range(n_records)))
    out = Outcome(c)
    heap: list[tuple[float, int, int, object]] = []
    seq = itertools.count()
    agent_ids = [f"a{i}" for i in range(c.agents)]
    free: dict[str, None] = dict.fromkeys(agent_ids)  # insertion order: longest idle first
    waiting: dict[str, float] = {}  # answered calls without an agent yet, oldest first
    reserved_for: dict[str, str | None] = {}  # record -> the agent its dial is reserved for
    busy_since: dict[str, float] = {}

    def push(when: float, kind: int, payload: object) -> None:
        heapq.heappush(heap, (when, next(seq), kind, payload))

    def place(dials: list[Dial], now: float) -> None:
        for d in dials:
            out.dialled += 1
            reserved_for[d.record_id] = d.agent
            if rng.random() < c.answer_rate:
                push(now + rng.uniform(c.ring_min, c.ring_max), _RING_END, (d.record_id, None))
            elif rng.random() < c.busy_share:
                push(now + rng.uniform(1.0, 4.0), _RING_END, (d.record_id, Result.BUSY))
            else:
                push(now + rng.uniform(c.ring_min, c.ring_max), _RING_END, (d.record_id, Result.NO_ANSWER))

    def pace(now: float) -> None:
        out.pace_calls += 1
        place(dialer.pace(now, list(free), open=now < end), now)

    def connect(rid: str, agent: str, now: float) -> None:
        del free[agent]
        dialer.connected(rid, agent, now)
        dialer.dial_result(rid, Result.CONNECTED, now, agent=agent)
        out.connected += 1
        busy_since[agent] = now
        push(now + talk(rng), _TALK_END, (rid, agent))

    pace(0.0)
    while heap and heap[0][0] <= end:
        now, _, kind, payload = heapq.heappop(heap)
        if kind == _RING_END:
            rid, result = payload  # type: ignore[misc]
            if result is not None:
                dialer.dial_result(rid, result, now)
                reserved_for.pop(rid)
                pace(now)
                continue
            out.answered += 1
            dialer.answered(rid, now)
            agent = reserved_for.pop(rid)
            if agent is None:
                agent = next(iter(free), None) if not waiting else None
            if agent is not None:
                connect(rid, agent, now)
            else:
                waiting[rid] = now
                push(now + c.connect_window, _ABANDON, rid)
        elif kind == _ABANDON:
            if waiting.pop(payload, None) is not None:  # type: ignore[call-overload]
                out.abandoned += 1
                dialer.dial_result(payload, Result.ABANDONED, now)  # type: ignore[arg-type]
                pace(now)
        elif kind == _TALK_END:
            rid, agent = payload  # type: ignore[misc]
            dialer.handle_ended(rid, now)
            push(now + wrap(rng), _WRAP_END, agent)
        else:
            agent = payload  # type: ignore[assignment]
            out.busy_time += now - busy_since.pop(agent)  # type: ignore[arg-type]
            free[agent] = None  # type: ignore[index]
            if waiting:  # the oldest answered call still inside its connect window takes them
                rid = next(iter(waiting))
                del waiting[rid]
                connect(rid, agent, now)  # type: ignore[arg-type]
            else:
                pace(now)
    out.busy_time += sum(end - since for since in busy_since.values())
    out.stats = dialer.stats(end)
    out.lines_per_agent = float(out.stats["mean_lines_per_agent"])  # type: ignore[arg-type]
    out.wall = time.perf_counter() - t0
    return out


def report(o: Outcome) -> str:
    """One line of figures for a run."""
    c = o.campaign
    return (f"{c.mode.value:<12}{c.agents:>6}{o.dialled:>9}{o.answered:>9}{o.connected:>10}{o.abandoned:>10}"
            f"{o.abandon_rate * 100:>9.2f}%{c.ceiling * 100:>7.1f}%{o.occupancy * 100:>10.1f}%"
            f"{o.lines_per_agent:>8.2f}{o.wall:>8.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, nargs="+", default=[20, 100, 500])
    p.add_argument("--answer-rate", type=float, default=0.35)
    p.add_argument("--ceiling", type=float, default=0.03)
    p.add_argument("--hours", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    print(f"{a.hours:g} simulated hours, answer rate {a.answer_rate:.2f}, talk ~180 s + wrap-up ~10 s, "
          f"connect window 2 s, abandonment ceiling {a.ceiling * 100:.1f}%")
    print(f"{'mode':<12}{'agents':>6}{'dialled':>9}{'answered':>9}{'connected':>10}{'abandoned':>10}"
          f"{'abandon':>10}{'ceiling':>8}{'occupancy':>11}{'lines':>8}{'wall s':>8}")
    total = time.perf_counter()
    for mode in (Mode.PREDICTIVE, Mode.PROGRESSIVE):
        for n in a.agents:
            print(report(simulate(Campaign(n, mode=mode, answer_rate=a.answer_rate, ceiling=a.ceiling,
                                           hours=a.hours, seed=a.seed))), flush=True)
    print("lines = mean lines ringing per free agent at each pacing decision (predictive also counts agents "
          "about to become free, so it can pass 3 per free agent)")
    print(f"total wall time {time.perf_counter() - total:.1f} s")


if __name__ == "__main__":
    main()
