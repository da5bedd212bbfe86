"""Turn engine decisions into bus events (`QueueEvent`, `AgentStateChanged`) for the call layer.

The engine's caller id is the call's uuid. `ts` is the wall-clock time the shell publishes with.
"""

from __future__ import annotations

import json

from acd.model import (
    AgentStateChange,
    Announce,
    CancelOffer,
    Connect,
    Decision,
    Escalate,
    Offer,
    Overflow,
    Reject,
    ScheduleCallback,
)
from softswitch.events import AgentStateChanged, Event, QueueEvent


def to_bus_events(decision: Decision, ts: float) -> list[Event]:
    """The bus events that record `decision` (a queue-log line or an agent state change)."""
    d = decision
    if isinstance(d, AgentStateChange):
        return [AgentStateChanged(ts=ts, agent=d.agent, state=d.state.value, previous=d.previous.value, reason=d.reason)]
    if isinstance(d, Offer):
        data = {"offer_id": d.offer_id, "ring_timeout": d.ring_timeout, "callback_number": d.callback_number}
        return [_q(ts, d.queue, d.caller, "offered", d.reason, agent=d.agent, data=data)]
    if isinstance(d, CancelOffer):
        return [_q(ts, d.queue, d.caller, "offer_cancelled", d.reason, agent=d.agent, data={"offer_id": d.offer_id})]
    if isinstance(d, Connect):
        return [_q(ts, d.queue, d.caller, "answered", d.reason, agent=d.agent, wait=d.wait)]
    if isinstance(d, Announce):
        data = {"position": d.position, "estimated_wait": d.estimated_wait}
        return [_q(ts, d.queue, d.caller, "announced", d.reason, data=data)]
    if isinstance(d, Escalate):
        data = {"step": d.step, "relaxed_by": d.min_proficiency_relaxed_by, "queues": list(d.queues)}
        return [_q(ts, d.queue, d.caller, "escalated", d.reason, data=data)]
    if isinstance(d, Overflow):
        data = {"kind": d.target.kind.value, "target": d.target.target}
        return [_q(ts, d.queue, d.caller, "overflowed", d.reason, data=data)]
    if isinstance(d, ScheduleCallback):
        return [_q(ts, d.queue, d.caller, "callback_scheduled", d.reason, data={"number": d.number})]
    if isinstance(d, Reject):
        return [_q(ts, d.queue, d.caller, "rejected", d.reason)]
    return []


def _q(
    ts: float, queue: str, caller: str, event: str, reason: str, *, agent: str = "", wait: float = 0.0,
    data: dict[str, object] | None = None,
) -> QueueEvent:
    return QueueEvent(
        ts=ts, queue=queue, call_uuid=caller, event=event, agent=agent, wait=wait, reason=reason,
        data=json.dumps(data, ensure_ascii=False) if data else "",
    )
