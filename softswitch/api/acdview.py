"""Plain-data views of an `AcdEngine` for the API, the CTI stream, metrics and the wallboard.

The engine must be fed wall-clock seconds (`time.time()`): its statistics are kept in 15-minute
buckets of that clock, and "today" is counted from local midnight.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from acd.engine import AcdEngine
from acd.model import AgentState

TOKYO = ZoneInfo("Asia/Tokyo")
STATES = tuple(s.value for s in AgentState)


def day_start(now: float, tz: dt.tzinfo = TOKYO) -> float:
    """Wall-clock seconds of the local midnight that began the day containing `now`."""
    local = dt.datetime.fromtimestamp(now, tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def agent_rows(engine: AcdEngine, now: float) -> list[dict[str, Any]]:
    """Every agent: id, state, reason, since, seconds in state, caller, calls, queues."""
    out = []
    for a in engine.snapshot(now)["agents"]:
        queues = a["queues"]
        out.append({**a, "queues": sorted(queues) if isinstance(queues, dict) else queues})
    return out


def queue_rows(engine: AcdEngine, now: float, today: float | None = None) -> list[dict[str, Any]]:
    """Per queue: waiting callers, longest wait, today's offered/answered/abandoned and service
    level (answered within the threshold over answered plus abandoned; None before any call), and
    member agents by state."""
    today = day_start(now) if today is None else today
    snap = engine.snapshot(now)
    by_queue: dict[str, dict[str, int]] = {}
    for a in snap["agents"]:  # one pass over the agents, whatever the number of queues
        queues = a["queues"]
        for name in queues if isinstance(queues, dict) else ():
            counts = by_queue.setdefault(name, dict.fromkeys(STATES, 0))
            counts[str(a["state"])] += 1
    rows: list[dict[str, Any]] = []
    for q in snap["queues"]:
        name = str(q["queue"])
        offered = answered = abandoned = within = 0
        for r in engine.stats.queue_intervals(name, 15):
            if r.start >= today:
                offered += r.offered
                answered += r.answered
                abandoned += r.abandoned
                within += r.answered_within
        by_state = by_queue.get(name) or dict.fromkeys(STATES, 0)
        callers = [c for c in q["callers"] if not c["borrowed"]]  # type: ignore[attr-defined, index]
        rows.append({
            "queue": name,
            "waiting": q["waiting"],
            "longest_wait": q["longest_wait"],
            "callers": callers,
            "ringing": q["ringing"],
            "offered": offered,
            "answered": answered,
            "abandoned": abandoned,
            "answered_within": within,
            "service_level": within / (answered + abandoned) if answered + abandoned else None,
            "agents": by_state,
        })
    return rows
