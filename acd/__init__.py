"""ACD engine: a sans-IO core (events in, decisions out), strategies, statistics and a simulator.

The call layer feeds events with the current time (`AcdEngine.caller_joined(...)`, `tick(now)`, or
`AcdEngine.handle(event)`), executes the returned decisions, and calls `tick` at `next_deadline()`.
"""

from acd.affinity import AffinityMemory
from acd.engine import AcdEngine
from acd.model import (
    AgentConfig,
    AgentState,
    AgentStateChange,
    Announce,
    CancelOffer,
    Connect,
    Decision,
    Escalate,
    EscalationStep,
    Offer,
    Overflow,
    OverflowTarget,
    QueueConfig,
    Reject,
    ScheduleCallback,
    Strategy,
    TargetKind,
)
from acd.stats import Report, StatsBook

__all__ = [
    "AcdEngine",
    "AffinityMemory",
    "AgentConfig",
    "AgentState",
    "AgentStateChange",
    "Announce",
    "CancelOffer",
    "Connect",
    "Decision",
    "Escalate",
    "EscalationStep",
    "Offer",
    "Overflow",
    "OverflowTarget",
    "QueueConfig",
    "Reject",
    "Report",
    "ScheduleCallback",
    "StatsBook",
    "Strategy",
    "TargetKind",
]
