"""Events are data: immutable records of state changes, published on one in-process bus.

The store, the CTI WebSocket, metrics and the wallboard subscribe to the bus; SIP, ACD and media
code only ever publish. Publishing never blocks and never raises into the publisher.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

log = logging.getLogger(__name__)


def new_event_id() -> str:
    """A globally unique id; the store uses it to make replays idempotent."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event. `ts` is wall-clock seconds since the epoch when it happened."""

    kind: ClassVar[str] = "event"
    ts: float
    id: str = field(default_factory=new_event_id)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the event's kind."""
        d = asdict(self)
        d["kind"] = self.kind
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Rebuild an event from `to_dict` output (used by the store's spool replay)."""
        kind = data.get("kind")
        target = EVENT_TYPES.get(kind or "")
        if target is None:
            raise ValueError(f"unknown event kind {kind!r}")
        names = {f.name for f in fields(target)}
        kwargs = {k: v for k, v in data.items() if k in names}
        for f in fields(target):
            if f.name in kwargs and isinstance(kwargs[f.name], list) and "tuple" in str(f.type):
                kwargs[f.name] = tuple(
                    tuple(x) if isinstance(x, list) else x for x in kwargs[f.name]
                )
        return target(**kwargs)


EVENT_TYPES: dict[str, type[Event]] = {}


def register_event(cls: type[Event]) -> type[Event]:
    """Class decorator: makes an event type known to `Event.from_dict`."""
    EVENT_TYPES[cls.kind] = cls
    return cls


@register_event
@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationChanged(Event):
    """A contact was bound, refreshed or removed for an address of record."""

    kind: ClassVar[str] = "registration"
    aor: str
    contact: str
    expires: int  # 0 when removed
    source: str  # "udp:1.2.3.4:5060"
    user_agent: str = ""
    action: str = "bound"  # bound | refreshed | removed | expired


@register_event
@dataclass(frozen=True, slots=True, kw_only=True)
class AuthFailed(Event):
    """A request failed digest authentication (for security monitoring)."""

    kind: ClassVar[str] = "auth_failed"
    source: str
    username: str
    method: str
    banned: bool = False


@register_event
@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(Event):
    kind: ClassVar[str] = "call_started"
    call_uuid: str
    caller: str
    callee: str
    trunk: str = ""
    did: str = ""


@register_event
@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered(Event):
    kind: ClassVar[str] = "call_answered"
    call_uuid: str
    answered_by: str


@register_event
@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(Event):
    kind: ClassVar[str] = "call_ended"
    call_uuid: str
    cause: str
    side: str  # caller | callee | system


@register_event
@dataclass(frozen=True, slots=True, kw_only=True)
class CDR(Event):
    """One call detail record per call, published when the call ends."""

    kind: ClassVar[str] = "cdr"
    call_uuid: str
    caller: str
    callee: str
    start: float
    answer: float | None
    end: float
    disposition: str  # answered | busy | no-answer | failed | cancelled
    hangup_cause: str
    hangup_side: str
    legs: tuple[tuple[str, str, str], ...] = ()  # (call_id, direction, peer)
    trunk: str = ""
    did: str = ""
    queue: str = ""
    agent: str = ""
    customer_id: str = ""

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def billable(self) -> int:
        """Billable whole seconds from answer to end (rounded up, as carriers bill)."""
        if self.answer is None:
            return 0
        secs = max(0.0, self.end - self.answer)
        return int(secs) + (1 if secs > int(secs) else 0)


@register_event
@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEvent(Event):
    """One ACD event, like a line of a queue log (joined, offered, answered, abandoned, ...)."""

    kind: ClassVar[str] = "queue_event"
    queue: str
    call_uuid: str
    event: str
    agent: str = ""
    caller: str = ""
    wait: float = 0.0
    reason: str = ""
    data: str = ""  # JSON text for anything else


@register_event
@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateChanged(Event):
    kind: ClassVar[str] = "agent_state"
    agent: str
    state: str  # offline | available | offered | on_call | wrap_up | paused
    reason: str = ""
    previous: str = ""


@register_event
@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingSaved(Event):
    kind: ClassVar[str] = "recording_saved"
    call_uuid: str
    path: str
    duration: float
    sha256: str
    channels: int = 2


@register_event
@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignAttempt(Event):
    """One outbound dial of a campaign record and how it ended.

    result: connected (answered and bridged to an agent), abandoned (answered, no agent in time),
    busy, no_answer, rejected, unreachable, or skipped (a preview the agent passed over)."""

    kind: ClassVar[str] = "campaign_attempt"
    campaign: str
    record_id: str
    attempt: int
    number: str
    result: str
    customer_id: str = ""
    agent: str = ""
    call_uuid: str = ""
    started: float = 0.0
    answered: float | None = None
    ended: float | None = None


Subscriber = Callable[[Event], Any]


class EventBus:
    """An in-process publish/subscribe bus.

    Synchronous subscribers run inline and must be quick; slow consumers (the store, WebSockets)
    take an `asyncio.Queue` with `queue()` and drain it in their own task. A full queue drops the
    event for that consumer only and counts the drop, so a stuck consumer never stalls calls; the
    store uses an unbounded queue because it must not lose anything.
    """

    def __init__(self) -> None:
        self._subscribers: list[tuple[Subscriber, tuple[type[Event], ...] | None]] = []
        self._queues: list[tuple[asyncio.Queue[Event], tuple[type[Event], ...] | None]] = []
        self.dropped = 0
        self.published = 0

    def subscribe(self, fn: Subscriber, *types: type[Event]) -> Callable[[], None]:
        """Call `fn(event)` for every event (or only the given types). Returns an unsubscribe."""
        entry = (fn, types or None)
        self._subscribers.append(entry)
        return lambda: self._subscribers.remove(entry) if entry in self._subscribers else None

    def queue(self, *types: type[Event], maxsize: int = 0) -> asyncio.Queue[Event]:
        """A queue that receives every event (or only the given types)."""
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        self._queues.append((q, types or None))
        return q

    def unqueue(self, q: asyncio.Queue[Event]) -> None:
        self._queues = [(x, t) for x, t in self._queues if x is not q]

    def publish(self, event: Event) -> None:
        self.published += 1
        for fn, types in list(self._subscribers):
            if types is None or isinstance(event, types):
                try:
                    fn(event)
                except Exception:
                    log.exception("event subscriber %r failed on %s", fn, event.kind)
        for q, types in self._queues:
            if types is None or isinstance(event, types):
                try:
                    q.put_nowait(event)
                except asyncio.QueueFull:
                    self.dropped += 1
