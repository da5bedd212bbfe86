"""The store interface: what the node persists and what the CTI and the ACD read back.

Two implementations share it: `PostgresStore` (asyncpg) for production and `SqliteStore` (the
stdlib `sqlite3` driven from one worker thread) as the embedded default. Writes arrive in batches
of bus events from `StoreWriter`; every event's `id` is its primary key, so writing a batch twice
(a replay after an uncertain commit) changes nothing.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from softswitch.events import Event
from softswitch.store.schema import LATEST, MIGRATIONS


class StoreError(Exception):
    """A store problem the caller should report: a bad URL, a failed migration, bad data."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now; the writer spools and retries later."""


#: The CDR columns a CallRecord is read from, in its field order.
CALL_COLUMNS = (
    "call_uuid, caller, callee, start_ts, answer_ts, end_ts, disposition, queue, agent, customer_id"
)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One past call of a caller, as the CTI screen pop and the ACD affinity rule read it."""

    call_uuid: str
    caller: str
    callee: str
    start: float
    answer: float | None
    end: float
    disposition: str
    queue: str
    agent: str
    customer_id: str


@dataclass(frozen=True, slots=True)
class Affinity:
    """The agent who last handled a caller, when, and how many calls they handled together.

    `caller` is the ACD's affinity key: the CRM customer id when the call had one, else the
    calling number (acd.affinity.AffinityMemory.load accepts these rows as they are).
    """

    caller: str
    agent: str
    last_handled: float
    count: int


@dataclass(frozen=True, slots=True)
class Registration:
    """A live registrar binding, persisted so a restart keeps it."""

    aor: str
    contact: str
    expires_at: float
    source: str
    user_agent: str = ""
    updated: float = 0.0


@dataclass(frozen=True, slots=True)
class CampaignLease:
    """A campaign's dialling lease as stored: `owner` is the node that holds it, or held it last."""

    owner: str
    lease_until: float
    state: str


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A queue's figures over an interval.

    offered counts calls seen in the queue (joined, answered or abandoned); a call that abandoned
    and was answered later in the interval counts as answered only. service_level follows the
    ACD's definition, answered within the threshold over answered plus abandoned (None when both
    are 0); asa is the average wait of answered calls and aht the average talk time of the queue's
    answered CDRs (None when there are none).
    """

    queue: str
    start: float
    end: float
    offered: int
    answered: int
    abandoned: int
    answered_within: int
    service_level: float | None
    asa: float | None
    aht: float | None


@dataclass(frozen=True, slots=True)
class User:
    """A directory user managed through the API (its secret is whatever the registrar stores)."""

    id: str
    display_name: str = ""
    secret: str = ""
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Agent:
    """An ACD agent managed through the API: skills map a skill name to a proficiency."""

    id: str
    user_id: str
    skills: dict[str, int] = field(default_factory=dict)
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Campaign:
    """An outbound campaign: its dialling mode, queue, trunk, caller ID, schedule and settings.

    schedule and settings are JSON objects (schedule: zone, weekly hours, closed days; settings:
    max_attempts, retry_delays, abandon_ceiling, ...); state is draft, running, paused or finished.
    """

    id: str
    name: str
    mode: str
    queue: str
    trunk: str = ""
    caller_id: str = ""
    schedule: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    state: str = "draft"
    created: float = 0.0
    updated: float = 0.0


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    """One number of a campaign's call list, with its dialling progress.

    `updated` orders writes: an update is applied only when it is newer than the stored row's.
    """

    campaign: str
    id: str
    number: str
    customer_id: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    state: str = "pending"
    attempts: int = 0
    next_at: float = 0.0
    last_result: str = ""
    agent: str = ""
    updated: float = 0.0


@dataclass(frozen=True, slots=True)
class DncEntry:
    """A number on the do-not-call list."""

    number: str
    reason: str = ""
    added: float = 0.0


@dataclass(frozen=True, slots=True)
class ScheduledCallback:
    """A callback booked for a time: offered to `agent` first, then to `queue`.

    state is pending, offered, done, failed or cancelled.
    """

    id: str
    number: str
    due: float
    queue: str
    agent: str = ""
    customer_id: str = ""
    note: str = ""
    state: str = "pending"
    created: float = 0.0
    updated: float = 0.0
    call_uuid: str = ""


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """Applied and pending schema versions."""

    current: int
    latest: int
    applied: tuple[tuple[int, str, float], ...]  # (version, name, applied_at)
    pending: tuple[tuple[int, str], ...]


# Queue-log event names that count as a call entering / being answered in / leaving a queue. The
# ACD publishes one QueueEvent per transition; these sets accept the usual queue-log spellings.
JOIN_EVENTS = ("joined", "enterqueue", "enqueued")
ANSWER_EVENTS = ("answered", "connect")
ABANDON_EVENTS = ("abandoned", "abandon")


def event_json(event: Event) -> str:
    """The compact JSON form of `event.to_dict()` (spool lines and the generic event log).

    Built from the fields directly: `dataclasses.asdict` deep-copies every value, which made it
    the largest cost of a batch on the event loop. Event fields are JSON scalars or tuples of them.
    """
    d = {f.name: getattr(event, f.name) for f in fields(event)}
    d["kind"] = event.kind
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False)


class Store(abc.ABC):
    """Persistence for one node. Every method is a coroutine and safe to call concurrently."""

    url: str
    spool_dir: Path

    @abc.abstractmethod
    async def migrate(self) -> MigrationStatus:
        """Apply pending schema migrations and return the resulting status."""

    def defer_migration(self) -> bool:
        """Apply migrations at the first successful connection instead of now.

        Lets a node start while its database is down (the writer spools meanwhile). Returns False
        when the backend cannot defer (SQLite: a local file is either usable now or not at all).
        """
        return False

    @abc.abstractmethod
    async def migration_status(self) -> MigrationStatus:
        """Applied and pending migrations, without changing anything."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""

    # ---- writes (the writer calls this; it is idempotent per event id) ----
    @abc.abstractmethod
    async def write_events(self, events: Sequence[Event]) -> int:
        """Persist a batch in one transaction; returns how many events were new (registration
        updates, which have no id of their own, always count).

        Raises StoreUnavailable when the database is unreachable (the batch may or may not have
        been committed) and StoreError when the data itself was refused.
        """

    # ---- CTI / ACD reads ----
    @abc.abstractmethod
    async def missed_calls(self, user: str, *, limit: int = 20) -> list[CallRecord]:
        """Calls to a user that nobody answered (busy, no answer, cancelled), newest first."""

    @abc.abstractmethod
    async def recent_calls(
        self, *, number: str | None = None, customer_id: str | None = None, limit: int = 10
    ) -> list[CallRecord]:
        """A caller's most recent calls (newest first), by calling number or customer id."""

    @abc.abstractmethod
    async def load_affinity(self) -> list[Affinity]:
        """Every caller-to-agent affinity (the ACD loads them at start)."""

    @abc.abstractmethod
    async def upsert_affinity(self, caller: str, agent: str, ts: float) -> None:
        """Record that `agent` handled `caller` at `ts` (count + 1)."""

    @abc.abstractmethod
    async def load_registrations(self, now: float) -> list[Registration]:
        """Bindings that have not expired at `now`."""

    @abc.abstractmethod
    async def upsert_registration(self, reg: Registration) -> None:
        """Insert or refresh a binding (ignored when an update with a later timestamp exists)."""

    @abc.abstractmethod
    async def delete_registration(self, aor: str, contact: str, ts: float) -> None:
        """Remove a binding as of `ts` (a later re-registration is kept)."""

    @abc.abstractmethod
    async def queue_stats(
        self, queue: str, start: float, end: float, *, sl_threshold: float = 20.0
    ) -> QueueStats:
        """Offered, answered, abandoned, service level, ASA and AHT for `[start, end)`."""

    # ---- directory managed through the API ----
    @abc.abstractmethod
    async def upsert_user(self, user: User) -> None:
        """Create or replace a user."""

    @abc.abstractmethod
    async def delete_user(self, user_id: str) -> bool:
        """Delete a user (and its agent); False when there was none."""

    @abc.abstractmethod
    async def list_users(self) -> list[User]:
        """Every managed user, by id."""

    @abc.abstractmethod
    async def upsert_agent(self, agent: Agent) -> None:
        """Create or replace an agent (its user must exist)."""

    @abc.abstractmethod
    async def delete_agent(self, agent_id: str) -> bool:
        """Delete an agent; False when there was none."""

    @abc.abstractmethod
    async def list_agents(self) -> list[Agent]:
        """Every managed agent, by id."""

    # ---- outbound campaigns ----
    @abc.abstractmethod
    async def upsert_campaign(self, c: Campaign) -> None:
        """Create or replace a campaign; an existing one keeps its `created` time.

        `created` and `updated` of 0 mean now.
        """

    @abc.abstractmethod
    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        """One campaign, or None."""

    @abc.abstractmethod
    async def list_campaigns(self) -> list[Campaign]:
        """Every campaign, oldest first."""

    @abc.abstractmethod
    async def claim_campaign(self, campaign_id: str, owner: str, until: float, now: float) -> bool:
        """Take or renew the lease to dial a running campaign: True when `owner` now holds it until
        `until` (it was free, expired before `now`, or already `owner`'s); False when another node
        holds it or the campaign is not running."""

    @abc.abstractmethod
    async def release_campaign(self, campaign_id: str, owner: str) -> None:
        """Give the lease up (only `owner`'s own lease); the owner stays named as who dialled last."""

    @abc.abstractmethod
    async def campaign_lease(self, campaign_id: str) -> CampaignLease | None:
        """Who holds (or last held) the campaign's lease, until when, and its stored state."""

    @abc.abstractmethod
    async def delete_campaign(self, campaign_id: str) -> bool:
        """Delete a campaign and its call list (its attempts stay, as history); False when none."""

    @abc.abstractmethod
    async def add_campaign_records(self, campaign_id: str, records: Sequence[CampaignRecord]) -> int:
        """Append records to a campaign's call list in one transaction; returns how many were new.

        A record whose id the campaign already has (or that appeared earlier in `records`) is left as
        it is. Raises StoreError when the campaign does not exist or a record names another campaign.
        """

    @abc.abstractmethod
    async def campaign_records(
        self,
        campaign_id: str,
        *,
        state: str | None = None,
        limit: int = 1000,
        offset: int = 0,
        due_before: float | None = None,
    ) -> list[CampaignRecord]:
        """A page of a campaign's records in import order, optionally only those in `state`
        and those whose `next_at` is at or before `due_before`."""

    @abc.abstractmethod
    async def get_campaign_record(self, campaign_id: str, record_id: str) -> CampaignRecord | None:
        """One record of a campaign, or None."""

    @abc.abstractmethod
    async def update_campaign_records(self, records: Sequence[CampaignRecord]) -> None:
        """Store state, attempts, next_at, last_result, agent and updated of existing records in one
        transaction; a record is changed only when its `updated` is newer than the stored one."""

    @abc.abstractmethod
    async def campaign_counts(self, campaign_id: str) -> dict[str, int]:
        """How many of a campaign's records are in each state (states with none are absent)."""

    @abc.abstractmethod
    async def campaign_attempts(self, campaign_id: str, record_id: str | None = None) -> list[dict[str, Any]]:
        """Stored CampaignAttempt rows of a campaign (or one record), ordered by started, attempt.

        Keys are the event's fields: id, ts, campaign, record_id, attempt, number, result,
        customer_id, agent, call_uuid, started, answered, ended.
        """

    # ---- do-not-call list ----
    @abc.abstractmethod
    async def add_dnc(self, entries: Sequence[DncEntry]) -> int:
        """Add numbers to the do-not-call list; one already there keeps its entry. Returns how many
        were new. `added` of 0 means now."""

    @abc.abstractmethod
    async def remove_dnc(self, number: str) -> bool:
        """Take a number off the list; False when it was not on it."""

    @abc.abstractmethod
    async def list_dnc(self) -> list[DncEntry]:
        """The whole do-not-call list, by number."""

    @abc.abstractmethod
    async def dnc_contains(self, number: str) -> bool:
        """Whether a number (compared exactly as stored) is on the do-not-call list."""

    # ---- scheduled callbacks ----
    @abc.abstractmethod
    async def upsert_scheduled_callback(self, cb: ScheduledCallback) -> None:
        """Create or replace a callback unless the stored one has a later `updated`; an existing
        one keeps its `created` time. `created` and `updated` of 0 mean now."""

    @abc.abstractmethod
    async def take_scheduled_callback(self, callback_id: str, now: float) -> bool:
        """Move a pending callback to `offered` (stamped `now`) for the node that will offer it; False
        when it is not pending any more (another node took it, or it was cancelled)."""

    @abc.abstractmethod
    async def get_scheduled_callback(self, callback_id: str) -> ScheduledCallback | None:
        """One callback, or None."""

    @abc.abstractmethod
    async def scheduled_callbacks(
        self, *, state: str | None = "pending", due_before: float | None = None
    ) -> list[ScheduledCallback]:
        """Callbacks in `state` (None: any) due at or before `due_before` (None: any time), by due."""

    # ---- inspection (tests, reports) ----
    @abc.abstractmethod
    async def count(self, table: str) -> int:
        """Rows in one of the store's tables."""

    @abc.abstractmethod
    async def event_ids(self, table: str) -> list[str]:
        """Every event id stored in a table (for exactly-once checks)."""


TABLES = (
    "cdrs",
    "call_legs",
    "event_log",
    "queue_events",
    "agent_states",
    "affinity",
    "registrations",
    "recordings",
    "security_events",
    "users",
    "agents",
    "campaigns",
    "campaign_records",
    "campaign_attempts",
    "dnc",
    "scheduled_callbacks",
)

#: Columns a Campaign, CampaignRecord or ScheduledCallback is read from, in field order.
CAMPAIGN_COLUMNS = "id, name, mode, queue, trunk, caller_id, schedule, settings, state, created, updated"
RECORD_COLUMNS = (
    "campaign, id, number, customer_id, fields, state, attempts, next_at, last_result, agent, updated"
)
CALLBACK_COLUMNS = "id, number, due, queue, agent, customer_id, note, state, created, updated, call_uuid"

#: What an import stages per record: its position in the import, then the record's columns.
ImportRow = tuple[int, str, str, str, str, str, int, float, str, str, float]
#: What update_campaign_records writes per record, keyed by (campaign, id).
UpdateRow = tuple[str, str, str, int, float, str, str, float]


def check_table(table: str) -> str:
    """Validate a table name before it is put into SQL text."""
    if table not in TABLES:
        raise StoreError(f"unknown table {table!r}")
    return table


def campaign_row(c: Campaign, now: float) -> tuple[Any, ...]:
    """A campaign's columns in CAMPAIGN_COLUMNS order, its zero timestamps set to `now`."""
    return (
        c.id, c.name, c.mode, c.queue, c.trunk, c.caller_id, json_text(c.schedule),
        json_text(c.settings), c.state, float(c.created or now), float(c.updated or now),
    )  # fmt: skip


def campaign_of(r: Sequence[Any]) -> Campaign:
    """A Campaign from a row read with CAMPAIGN_COLUMNS."""
    return Campaign(
        r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), json.loads(r[7]), r[8],
        float(r[9]), float(r[10]),
    )  # fmt: skip


def record_of(r: Sequence[Any]) -> CampaignRecord:
    """A CampaignRecord from a row read with RECORD_COLUMNS."""
    return CampaignRecord(
        r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], int(r[6]), float(r[7]), r[8], r[9], float(r[10])
    )


def callback_row(cb: ScheduledCallback, now: float) -> tuple[Any, ...]:
    """A callback's columns in CALLBACK_COLUMNS order, its zero timestamps set to `now`."""
    return (
        cb.id, cb.number, float(cb.due), cb.queue, cb.agent, cb.customer_id, cb.note, cb.state,
        float(cb.created or now), float(cb.updated or now), cb.call_uuid,
    )  # fmt: skip


def callback_of(r: Sequence[Any]) -> ScheduledCallback:
    """A ScheduledCallback from a row read with CALLBACK_COLUMNS."""
    return ScheduledCallback(
        r[0], r[1], float(r[2]), r[3], r[4], r[5], r[6], r[7], float(r[8]), float(r[9]), r[10]
    )


def import_rows(campaign_id: str, records: Sequence[CampaignRecord]) -> list[ImportRow]:
    """The rows an import stages: the first record of each id, numbered in the order given."""
    out: list[ImportRow] = []
    seen: set[str] = set()
    for r in records:
        if r.campaign and r.campaign != campaign_id:
            raise StoreError(f"record {r.id!r} belongs to campaign {r.campaign!r}, not {campaign_id!r}")
        if r.id in seen:
            continue
        seen.add(r.id)
        out.append(
            (
                len(out) + 1, r.id, r.number, r.customer_id, json_text(r.fields), r.state,
                int(r.attempts), float(r.next_at), r.last_result, r.agent, float(r.updated),
            )
        )  # fmt: skip
    return out


def update_rows(records: Sequence[CampaignRecord]) -> list[UpdateRow]:
    """One row per (campaign, id), the newest by `updated`, sorted by key so concurrent batches
    lock rows in the same order."""
    newest: dict[tuple[str, str], UpdateRow] = {}
    for r in records:
        row: UpdateRow = (
            r.campaign, r.id, r.state, int(r.attempts), float(r.next_at), r.last_result, r.agent,
            float(r.updated),
        )  # fmt: skip
        old = newest.get((r.campaign, r.id))
        if old is None or old[7] < row[7]:
            newest[(r.campaign, r.id)] = row
    return [newest[k] for k in sorted(newest)]


def json_text(data: Any) -> str:
    """Compact JSON for text columns."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def queue_stats_sql(queue: str, start: str, end: str, threshold: str) -> str:
    """The queue statistics query, given each engine's placeholders for its four parameters.

    One row per call first (answered wins over abandoned, the first answer's wait counts), then
    the totals: offered, answered, abandoned, answered within threshold, average wait.
    """
    seen = sql_in(JOIN_EVENTS + ANSWER_EVENTS + ABANDON_EVENTS)
    answer, abandon = sql_in(ANSWER_EVENTS), sql_in(ABANDON_EVENTS)
    return f"""
WITH per_call AS (
  SELECT call_uuid,
         max(CASE WHEN event IN {answer} THEN 1 ELSE 0 END) AS answered,
         max(CASE WHEN event IN {abandon} THEN 1 ELSE 0 END) AS abandoned,
         min(CASE WHEN event IN {answer} THEN wait END) AS wait
  FROM queue_events
  WHERE queue = {queue} AND ts >= {start} AND ts < {end} AND event IN {seen}
  GROUP BY call_uuid
)
SELECT count(*),
       coalesce(sum(answered), 0),
       coalesce(sum(CASE WHEN answered = 0 AND abandoned = 1 THEN 1 ELSE 0 END), 0),
       coalesce(sum(CASE WHEN answered = 1 AND wait <= {threshold} THEN 1 ELSE 0 END), 0),
       avg(wait)
FROM per_call
"""


def sql_in(values: Sequence[str]) -> str:
    """An SQL `IN` list of this package's constant names (never of user input)."""
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


def migration_status_of(applied: list[tuple[int, str, float]]) -> MigrationStatus:
    """Applied versions against the package's list of migrations."""
    done = {v for v, _, _ in applied}
    return MigrationStatus(
        current=max(done, default=0),
        latest=LATEST,
        applied=tuple(applied),
        pending=tuple((m.version, m.name) for m in MIGRATIONS if m.version not in done),
    )


def queue_stats_of(
    queue: str,
    start: float,
    end: float,
    offered: int,
    answered: int,
    abandoned: int,
    within: int,
    asa: float | None,
    aht: float | None,
) -> QueueStats:
    """Assemble QueueStats; service level is answered-within-threshold over offered."""
    offered, answered, abandoned, within = int(offered), int(answered), int(abandoned), int(within)
    return QueueStats(
        queue=queue,
        start=start,
        end=end,
        offered=offered,
        answered=answered,
        abandoned=abandoned,
        answered_within=within,
        service_level=(within / (answered + abandoned)) if answered + abandoned else None,
        asa=float(asa) if asa is not None else None,
        aht=float(aht) if aht is not None else None,
    )
