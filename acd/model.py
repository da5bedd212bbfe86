"""Data of the ACD: queue and agent configuration, input events and output decisions.

Everything here is plain, immutable data so that the call layer can log it, publish it on the event
bus and replay it in tests. Decisions always carry the `reason` they were taken for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class AgentState(StrEnum):
    """Where an agent is in its cycle; the values match `AgentStateChanged.state` on the bus."""

    OFFLINE = "offline"
    AVAILABLE = "available"
    OFFERED = "offered"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


class Strategy(StrEnum):
    """How a queue picks among several eligible available agents."""

    LONGEST_IDLE = "longest_idle"
    FEWEST_CALLS = "fewest_calls"
    LEAST_TALK_TIME = "least_talk_time"
    ROUND_ROBIN = "round_robin"
    RING_ALL = "ring_all"
    BEST_SKILL = "best_skill"
    RANDOM = "random"
    WEIGHTED = "weighted"


class TargetKind(StrEnum):
    """Where an overflowing caller goes."""

    QUEUE = "queue"  # another queue of this engine: the caller moves and keeps the original join time
    NUMBER = "number"  # an external number
    TRUNK = "trunk"  # an outsourced centre reached over a trunk
    VOICEMAIL = "voicemail"
    CALLBACK = "callback"  # keep the place, hang up, call back when an agent is free


@dataclass(frozen=True, slots=True)
class OverflowTarget:
    """An overflow destination: a queue name, a number, a trunk name, a mailbox, or callback."""

    kind: TargetKind
    target: str = ""


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """What to do once a caller has waited `after` seconds; one step may combine several actions."""

    after: float
    relax_proficiency: int = 0  # lower every required minimum proficiency by this much (never below 1)
    add_queues: tuple[str, ...] = ()  # also offer to the agents of these queues
    overflow: OverflowTarget | None = None


DEFAULT_WEIGHTS: Mapping[str, float] = {
    "idle": 1.0,  # per second idle
    "proficiency": 30.0,  # per proficiency point on the required skills
    "calls": -5.0,  # per call taken
    "talk_time": -0.01,  # per second talked
}


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """One queue. `skills` maps a required skill to its minimum proficiency (1 to 10)."""

    name: str
    skills: Mapping[str, int] = field(default_factory=dict)
    priority: int = 0  # between queues: an agent in several queues serves the higher one first
    strategy: Strategy = Strategy.LONGEST_IDLE
    max_wait: float | None = None  # then overflow (or reject when no overflow target)
    max_size: int | None = None  # waiting callers; a caller beyond it overflows at once
    overflow: OverflowTarget | None = None
    wrap_up: float = 0.0
    service_level: float = 20.0  # threshold in seconds for the service level figure
    announce_every: float | None = None  # position and estimated wait, first at join
    ring_timeout: float = 15.0
    max_no_answer: int = 3  # consecutive unanswered offers before the agent is paused 'no-answer'
    retry_delay: float = 5.0  # an agent who missed a caller is not offered that caller again so soon
    affinity_wait: float = 0.0  # how long a returning caller may wait for a busy prior handler
    priority_step: float = 60.0  # seconds of waiting worth one priority level (ageing; no starvation)
    rejoin_grace: float = 0.0  # a caller who hangs up and calls back within this keeps their place
    escalation: tuple[EscalationStep, ...] = ()
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    default_handle_time: float = 180.0  # for the estimated wait before any call was handled

    def __post_init__(self) -> None:
        for skill, level in self.skills.items():
            if not 1 <= level <= 10:
                raise ValueError(f"queue {self.name}: proficiency for {skill} must be 1..10, not {level}")
        if any(b.after < a.after for a, b in zip(self.escalation, self.escalation[1:], strict=False)):
            raise ValueError(f"queue {self.name}: escalation steps must be in increasing order of time")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """One agent: skills with proficiency 1 to 10, and queue memberships with a tier (lower first)."""

    id: str
    skills: Mapping[str, int] = field(default_factory=dict)
    queues: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for skill, level in self.skills.items():
            if not 1 <= level <= 10:
                raise ValueError(f"agent {self.id}: proficiency for {skill} must be 1..10, not {level}")


# ---------------------------------------------------------------------------------------------
# Decisions (out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Something the call layer must do, with the reason it was decided."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer(Decision):
    """Ring agent with caller. With `callback_number`, reserve the agent and call the caller back."""

    caller: str
    agent: str
    queue: str
    offer_id: int
    ring_timeout: float
    callback_number: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOffer(Decision):
    """Stop ringing this agent for this caller (another agent won, the caller left, ...)."""

    caller: str
    agent: str
    offer_id: int
    queue: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect(Decision):
    """The offer was accepted: bridge caller and agent. Exactly one per caller."""

    caller: str
    agent: str
    queue: str
    wait: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Announce(Decision):
    """Tell the caller their position (1 = next) and estimated wait in seconds (None: unknown)."""

    caller: str
    queue: str
    position: int
    estimated_wait: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Escalate(Decision):
    """An escalation step was applied to a waiting caller."""

    caller: str
    queue: str
    step: int
    min_proficiency_relaxed_by: int
    queues: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Overflow(Decision):
    """Send the caller elsewhere. For a QUEUE target the engine has already moved the caller."""

    caller: str
    queue: str
    target: OverflowTarget


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleCallback(Decision):
    """The caller keeps their place and may hang up; an `Offer` with `callback_number` follows."""

    caller: str
    queue: str
    number: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject(Decision):
    """The caller is taken out of the queue with no overflow target (full, or waited too long)."""

    caller: str
    queue: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateChange(Decision):
    """An agent changed state (publish as `AgentStateChanged`)."""

    agent: str
    state: AgentState
    previous: AgentState


# ---------------------------------------------------------------------------------------------
# Events (in): the same inputs as the engine methods, as data for `AcdEngine.handle`.


@dataclass(frozen=True, slots=True, kw_only=True)
class AcdEvent:
    """An input to the engine at time `now`."""

    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerJoined(AcdEvent):
    caller: str
    queue: str
    priority: int = 0
    skills: Mapping[str, int] = field(default_factory=dict)
    number: str = ""
    customer_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerLeft(AcdEvent):
    caller: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackRequested(AcdEvent):
    caller: str
    number: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackCancelled(AcdEvent):
    caller: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentLoggedIn(AcdEvent):
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentLoggedOut(AcdEvent):
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentPaused(AcdEvent):
    agent: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentReady(AcdEvent):
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentReachability(AcdEvent):
    agent: str
    reachable: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferAccepted(AcdEvent):
    caller: str
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferRejected(AcdEvent):
    caller: str
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferTimedOut(AcdEvent):
    caller: str
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(AcdEvent):
    caller: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WrapUpDone(AcdEvent):
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick(AcdEvent):
    pass
