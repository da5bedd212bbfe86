"""Turns a batch of bus events into rows per table, the same way for both backends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from softswitch.events import (
    CDR,
    AgentStateChanged,
    AuthFailed,
    CampaignAttempt,
    Event,
    QueueEvent,
    RecordingSaved,
    RegistrationChanged,
)
from softswitch.store.base import event_json

CdrRow = tuple[
    str, float, str, str, str, float, float | None, float, float, int, str, str, str, str, str, str, str, str
]
LegRow = tuple[str, int, str, str, str, str]
QueueRow = tuple[str, float, str, str, str, str, str, float, str, str]
AgentRow = tuple[str, float, str, str, str, str]
RecordingRow = tuple[str, float, str, str, float, str, int]
SecurityRow = tuple[str, float, str, str, str, bool]
RegistrationRow = tuple[str, str, float, str, str, float]  # aor, contact, expires_at, src, ua, updated
LogRow = tuple[str, float, str, str, str]
AttemptRow = tuple[str, float, str, str, int, str, str, str, str, str, float, float | None, float | None]

CDR_COLUMNS = (
    "id", "ts", "call_uuid", "caller", "callee", "start_ts", "answer_ts", "end_ts", "duration",
    "billable", "disposition", "hangup_cause", "hangup_side", "trunk", "did", "queue", "agent",
    "customer_id",
)  # fmt: skip
LEG_COLUMNS = ("cdr_id", "idx", "call_uuid", "call_id", "direction", "peer")
QUEUE_COLUMNS = ("id", "ts", "queue", "call_uuid", "event", "agent", "caller", "wait", "reason", "data")
AGENT_COLUMNS = ("id", "ts", "agent", "state", "reason", "previous")
RECORDING_COLUMNS = ("id", "ts", "call_uuid", "path", "duration", "sha256", "channels")
SECURITY_COLUMNS = ("id", "ts", "source", "username", "method", "banned")
REGISTRATION_COLUMNS = ("aor", "contact", "expires_at", "source", "user_agent", "updated")
LOG_COLUMNS = ("id", "ts", "kind", "call_uuid", "body")
ATTEMPT_COLUMNS = (
    "id", "ts", "campaign", "record_id", "attempt", "number", "result", "customer_id", "agent",
    "call_uuid", "started", "answered", "ended",
)  # fmt: skip

_LIVE_ACTIONS = frozenset({"bound", "refreshed"})


@dataclass(slots=True)
class Rows:
    """A batch split by destination table."""

    cdrs: list[CdrRow] = field(default_factory=list)
    legs: list[LegRow] = field(default_factory=list)
    queue: list[QueueRow] = field(default_factory=list)
    agents: list[AgentRow] = field(default_factory=list)
    recordings: list[RecordingRow] = field(default_factory=list)
    security: list[SecurityRow] = field(default_factory=list)
    registrations: list[RegistrationRow] = field(default_factory=list)
    log: list[LogRow] = field(default_factory=list)
    attempts: list[AttemptRow] = field(default_factory=list)


def registration_row(ev: RegistrationChanged) -> RegistrationRow:
    """A removal or expiry becomes a tombstone that expires at the event's time."""
    live = ev.action in _LIVE_ACTIONS and ev.expires > 0
    expires_at = ev.ts + ev.expires if live else ev.ts
    return (ev.aor, ev.contact, expires_at, ev.source, ev.user_agent, ev.ts)


class RowBuilder:
    """Accumulates events into Rows; feeding it in slices lets the caller yield in between."""

    def __init__(self) -> None:
        self.rows = Rows()
        self._seen: set[str] = set()
        self._regs: dict[tuple[str, str], RegistrationRow] = {}

    def add(self, events: Sequence[Event]) -> None:
        """Add events; an id seen before in this batch is skipped."""
        rows, seen, regs = self.rows, self._seen, self._regs
        for ev in events:
            if ev.id in seen:
                continue
            seen.add(ev.id)
            if isinstance(ev, CDR):
                rows.cdrs.append(
                    (
                        ev.id, ev.ts, ev.call_uuid, ev.caller, ev.callee, ev.start, ev.answer, ev.end,
                        ev.duration, ev.billable, ev.disposition, ev.hangup_cause, ev.hangup_side,
                        ev.trunk, ev.did, ev.queue, ev.agent, ev.customer_id,
                    )
                )  # fmt: skip
                for i, leg in enumerate(ev.legs):
                    call_id, direction, peer = (tuple(leg) + ("", "", ""))[:3]
                    rows.legs.append((ev.id, i, ev.call_uuid, str(call_id), str(direction), str(peer)))
            elif isinstance(ev, QueueEvent):
                rows.queue.append(
                    (ev.id, ev.ts, ev.queue, ev.call_uuid, ev.event, ev.agent, ev.caller, float(ev.wait),
                     ev.reason, ev.data)
                )  # fmt: skip
            elif isinstance(ev, AgentStateChanged):
                rows.agents.append((ev.id, ev.ts, ev.agent, ev.state, ev.reason, ev.previous))
            elif isinstance(ev, RecordingSaved):
                rows.recordings.append(
                    (ev.id, ev.ts, ev.call_uuid, ev.path, float(ev.duration), ev.sha256, int(ev.channels))
                )
            elif isinstance(ev, AuthFailed):
                rows.security.append((ev.id, ev.ts, ev.source, ev.username, ev.method, bool(ev.banned)))
            elif isinstance(ev, CampaignAttempt):
                rows.attempts.append(
                    (ev.id, ev.ts, ev.campaign, ev.record_id, ev.attempt, ev.number, ev.result,
                     ev.customer_id, ev.agent, ev.call_uuid, ev.started, ev.answered, ev.ended)
                )  # fmt: skip
            elif isinstance(ev, RegistrationChanged):
                # One upsert per binding per batch (PostgreSQL cannot touch a row twice in a statement);
                # the newest event wins, as it would have applied in order.
                row = registration_row(ev)
                key = (ev.aor, ev.contact)
                old = regs.get(key)
                if old is None or old[5] <= row[5]:
                    regs[key] = row
            else:
                call_uuid = getattr(ev, "call_uuid", "")
                rows.log.append((ev.id, ev.ts, ev.kind, str(call_uuid or ""), event_json(ev)))

    def finish(self) -> Rows:
        """The rows of everything added."""
        self.rows.registrations = list(self._regs.values())
        return self.rows


def split(events: Sequence[Event]) -> Rows:
    """Group events into rows; duplicate ids inside one batch are kept once."""
    b = RowBuilder()
    b.add(events)
    return b.finish()


async def split_yielding(events: Sequence[Event], step: int = 200) -> Rows:
    """`split` for large batches on the event loop: yields between slices so calls are not delayed."""
    b = RowBuilder()
    for k in range(0, len(events), step):
        b.add(events[k : k + step])
        if k + step < len(events):
            await asyncio.sleep(0)
    return b.finish()
