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
CALL_COLUMNS = "call_uuid, caller, callee, start_ts, answer_ts, end_ts, disposition, queue, agent, customer_id"


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
)


def check_table(table: str) -> str:
    """Validate a table name before it is put into SQL text."""
    if table not in TABLES:
        raise StoreError(f"unknown table {table!r}")
    return table


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
