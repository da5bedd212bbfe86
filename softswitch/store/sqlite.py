"""The embedded SQLite store: the stdlib `sqlite3` on one dedicated worker thread.

One connection lives on one thread (a single-worker executor), so every call is serialised without
locks and the event loop never waits on disk: a whole batch is one hop to the thread and one
transaction. WAL mode lets readers (`sqlite3` shell, reports) look while the node writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from softswitch.events import Event
from softswitch.store import rows as R
from softswitch.store.base import (
    CALL_COLUMNS,
    CALLBACK_COLUMNS,
    CAMPAIGN_COLUMNS,
    RECORD_COLUMNS,
    Affinity,
    Agent,
    CallRecord,
    Campaign,
    CampaignLease,
    CampaignRecord,
    DncEntry,
    MigrationStatus,
    QueueStats,
    Registration,
    ScheduledCallback,
    Store,
    StoreError,
    StoreUnavailable,
    User,
    callback_of,
    callback_row,
    campaign_of,
    campaign_row,
    check_table,
    import_rows,
    migration_status_of,
    queue_stats_of,
    queue_stats_sql,
    record_of,
    update_rows,
)
from softswitch.store.schema import MIGRATIONS, MIGRATIONS_TABLE

log = logging.getLogger(__name__)

T = TypeVar("T")


def _insert(table: str, columns: Sequence[str], tail: str = "ON CONFLICT DO NOTHING") -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) {tail}"


_CDR_SQL = _insert("cdrs", R.CDR_COLUMNS, "ON CONFLICT DO NOTHING RETURNING 1")
_LEG_SQL = _insert("call_legs", R.LEG_COLUMNS)
_QUEUE_SQL = _insert("queue_events", R.QUEUE_COLUMNS)
_AGENT_SQL = _insert("agent_states", R.AGENT_COLUMNS)
_RECORDING_SQL = _insert("recordings", R.RECORDING_COLUMNS)
_SECURITY_SQL = _insert("security_events", R.SECURITY_COLUMNS)
_LOG_SQL = _insert("event_log", R.LOG_COLUMNS)
_ATTEMPT_SQL = _insert("campaign_attempts", R.ATTEMPT_COLUMNS)
_REGISTRATION_SQL = _insert(
    "registrations",
    R.REGISTRATION_COLUMNS,
    "ON CONFLICT (aor, contact) DO UPDATE SET expires_at = excluded.expires_at, "
    "source = excluded.source, user_agent = excluded.user_agent, updated = excluded.updated "
    "WHERE registrations.updated <= excluded.updated",
)
_AFFINITY_SQL = (
    "INSERT INTO affinity (caller, agent, last_handled, count) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (caller, agent) DO UPDATE SET "
    "last_handled = max(last_handled, excluded.last_handled), count = count + excluded.count"
)
_STATS_SQL = queue_stats_sql("?", "?", "?", "?")
_AHT_SQL = """
SELECT avg(end_ts - answer_ts) FROM cdrs
WHERE queue = ? AND queue <> '' AND answer_ts IS NOT NULL AND answer_ts >= ? AND answer_ts < ?
"""
_CAMPAIGN_SQL = (
    f"INSERT INTO campaigns ({CAMPAIGN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, mode = excluded.mode, queue = excluded.queue, "
    "trunk = excluded.trunk, caller_id = excluded.caller_id, schedule = excluded.schedule, "
    "settings = excluded.settings, state = excluded.state, updated = excluded.updated"
)
_IMPORT_SQL = (
    "INSERT INTO campaign_records (campaign, id, seq, number, customer_id, fields, state, attempts, "
    "next_at, last_result, agent, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)
_UPDATE_RECORDS_SQL = (
    "UPDATE campaign_records SET state = ?, attempts = ?, next_at = ?, last_result = ?, agent = ?, "
    "updated = ? WHERE campaign = ? AND id = ? AND updated < ?"
)
_CALLBACK_SQL = (
    f"INSERT INTO scheduled_callbacks ({CALLBACK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET number = excluded.number, due = excluded.due, "
    "queue = excluded.queue, agent = excluded.agent, customer_id = excluded.customer_id, "
    "note = excluded.note, state = excluded.state, updated = excluded.updated, "
    "call_uuid = excluded.call_uuid WHERE scheduled_callbacks.updated <= excluded.updated"
)


class SqliteStore(Store):
    """The embedded store in one SQLite file (or `:memory:`)."""

    def __init__(self, path: str, *, url: str, spool_dir: Path) -> None:
        self.url = url
        self.spool_dir = spool_dir
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # ---- thread plumbing ----
    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit BEGIN/COMMIT below.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
            conn.execute("PRAGMA foreign_keys = ON")
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
                # FULL: a committed batch survives a power cut too, like the fsync'd spool; it
                # costs one fsync per batch, not per event.
                conn.execute("PRAGMA synchronous = FULL")
            self._conn = conn
        return self._conn

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreError("store is closed")

        def job() -> T:
            return fn(self._connect())

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, job)
        except StoreError:
            raise
        except (
            sqlite3.IntegrityError,
            sqlite3.InterfaceError,
            sqlite3.DataError,
            sqlite3.ProgrammingError,
        ) as exc:
            raise StoreError(f"SQLite refused the data: {exc}") from exc
        except (sqlite3.OperationalError, OSError) as exc:
            # Locked, disk full, I/O error, file gone: worth spooling and retrying.
            raise StoreUnavailable(f"SQLite unavailable: {exc}") from exc

    @staticmethod
    def _tx(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn)
        except BaseException:
            if conn.in_transaction:  # some errors (disk full) have rolled back already
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def close(self) -> None:
        if self._closed:
            return

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, shut)
        self._closed = True
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self._call(lambda c: c.execute("SELECT 1").fetchone())

    # ---- migrations ----
    @staticmethod
    def _applied(conn: sqlite3.Connection) -> list[tuple[int, str, float]]:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if not exists:
            return []
        rows = conn.execute("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        return [(int(v), str(n), float(a)) for v, n, a in rows]

    async def migration_status(self) -> MigrationStatus:
        return migration_status_of(await self._call(self._applied))

    async def migrate(self) -> MigrationStatus:
        def fn(conn: sqlite3.Connection) -> None:
            conn.execute(MIGRATIONS_TABLE)
            for m in MIGRATIONS:

                def apply(c: sqlite3.Connection, m: Any = m) -> None:
                    if c.execute(
                        "SELECT 1 FROM schema_migrations WHERE version = ?", (m.version,)
                    ).fetchone():
                        return
                    for stmt in m.statements:
                        c.execute(stmt)
                    c.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                        (m.version, m.name, time.time()),
                    )
                    log.info("applied schema migration %d (%s)", m.version, m.name)

                self._tx(conn, apply)

        await self._call(fn)
        return await self.migration_status()

    # ---- writes ----
    async def write_events(self, events: Sequence[Event]) -> int:
        if not events:
            return 0
        rows = await R.split_yielding(events)

        def body(c: sqlite3.Connection) -> int:
            new = 0
            affinity: dict[tuple[str, str], tuple[float, int]] = {}
            for row in rows.cdrs:
                if not c.execute(_CDR_SQL, row).fetchall():
                    continue  # already stored by an earlier attempt: do not count it again
                new += 1
                # The ACD's affinity key: the customer id when known, else the calling number.
                key, agent, answer, end = row[17] or row[3], row[16], row[6], row[7]
                if answer is not None and agent and key:
                    last, n = affinity.get((key, agent), (end, 0))
                    affinity[(key, agent)] = (max(last, end), n + 1)
            c.executemany(_AFFINITY_SQL, [(k[0], k[1], v[0], v[1]) for k, v in affinity.items()])
            c.executemany(_LEG_SQL, rows.legs)
            for sql, batch in (
                (_QUEUE_SQL, rows.queue),
                (_AGENT_SQL, rows.agents),
                (_RECORDING_SQL, rows.recordings),
                (_SECURITY_SQL, rows.security),
                (_LOG_SQL, rows.log),
                (_ATTEMPT_SQL, rows.attempts),
            ):
                if batch:
                    before = c.total_changes
                    c.executemany(sql, batch)
                    new += c.total_changes - before
            if rows.registrations:
                c.executemany(_REGISTRATION_SQL, rows.registrations)
                new += len(rows.registrations)
            return new

        return await self._call(lambda c: self._tx(c, body))

    # ---- reads ----
    async def missed_calls(self, user: str, *, limit: int = 20) -> list[CallRecord]:
        sql = f"SELECT {CALL_COLUMNS} FROM cdrs WHERE callee = ? AND answer_ts IS NULL ORDER BY start_ts DESC LIMIT ?"
        recs = await self._call(lambda c: c.execute(sql, (user, limit)).fetchall())
        return [CallRecord(*r) for r in recs]

    async def recent_calls(
        self, *, number: str | None = None, customer_id: str | None = None, limit: int = 10
    ) -> list[CallRecord]:
        if not number and not customer_id:
            raise StoreError("recent_calls needs a number or a customer id")
        sql = (
            f"SELECT {CALL_COLUMNS} FROM cdrs "
            "WHERE (? IS NOT NULL AND caller = ?) OR (? IS NOT NULL AND customer_id <> '' AND customer_id = ?) "
            "ORDER BY start_ts DESC LIMIT ?"
        )
        n, cid = number or None, customer_id or None
        recs = await self._call(lambda c: c.execute(sql, (n, n, cid, cid, limit)).fetchall())
        return [CallRecord(*r) for r in recs]

    async def load_affinity(self) -> list[Affinity]:
        recs = await self._call(
            lambda c: c.execute(
                "SELECT caller, agent, last_handled, count FROM affinity ORDER BY caller, agent"
            ).fetchall()
        )
        return [Affinity(a, b, float(t), int(n)) for a, b, t, n in recs]

    async def upsert_affinity(self, caller: str, agent: str, ts: float) -> None:
        await self._call(lambda c: c.execute(_AFFINITY_SQL, (caller, agent, ts, 1)))

    async def load_registrations(self, now: float) -> list[Registration]:
        sql = (
            "SELECT aor, contact, expires_at, source, user_agent, updated FROM registrations "
            "WHERE expires_at > ? ORDER BY aor, contact"
        )
        recs = await self._call(lambda c: c.execute(sql, (now,)).fetchall())
        return [Registration(*r) for r in recs]

    async def upsert_registration(self, reg: Registration) -> None:
        row = (reg.aor, reg.contact, reg.expires_at, reg.source, reg.user_agent, reg.updated)
        await self._call(lambda c: c.execute(_REGISTRATION_SQL, row))

    async def delete_registration(self, aor: str, contact: str, ts: float) -> None:
        await self._call(lambda c: c.execute(_REGISTRATION_SQL, (aor, contact, ts, "", "", ts)))

    async def queue_stats(
        self, queue: str, start: float, end: float, *, sl_threshold: float = 20.0
    ) -> QueueStats:
        def fn(c: sqlite3.Connection) -> QueueStats:
            r = c.execute(_STATS_SQL, (queue, start, end, sl_threshold)).fetchone()
            (aht,) = c.execute(_AHT_SQL, (queue, start, end)).fetchone()
            return queue_stats_of(queue, start, end, r[0], r[1], r[2], r[3], r[4], aht)

        return await self._call(fn)

    # ---- directory ----
    async def upsert_user(self, user: User) -> None:
        sql = (
            "INSERT INTO users (id, display_name, secret, enabled, updated) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, "
            "secret = excluded.secret, enabled = excluded.enabled, updated = excluded.updated"
        )
        row = (user.id, user.display_name, user.secret, user.enabled, time.time())
        await self._call(lambda c: c.execute(sql, row))

    async def delete_user(self, user_id: str) -> bool:
        n = await self._call(lambda c: c.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount)
        return n > 0

    async def list_users(self) -> list[User]:
        recs = await self._call(
            lambda c: c.execute("SELECT id, display_name, secret, enabled FROM users ORDER BY id").fetchall()
        )
        return [User(i, d, s, bool(e)) for i, d, s, e in recs]

    async def upsert_agent(self, agent: Agent) -> None:
        sql = (
            "INSERT INTO agents (id, user_id, skills, enabled, updated) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, skills = excluded.skills, "
            "enabled = excluded.enabled, updated = excluded.updated"
        )
        row = (agent.id, agent.user_id, json.dumps(agent.skills), agent.enabled, time.time())
        await self._call(lambda c: c.execute(sql, row))

    async def delete_agent(self, agent_id: str) -> bool:
        n = await self._call(lambda c: c.execute("DELETE FROM agents WHERE id = ?", (agent_id,)).rowcount)
        return n > 0

    async def list_agents(self) -> list[Agent]:
        recs = await self._call(
            lambda c: c.execute("SELECT id, user_id, skills, enabled FROM agents ORDER BY id").fetchall()
        )
        return [Agent(i, u, json.loads(s), bool(e)) for i, u, s, e in recs]

    # ---- outbound campaigns ----
    async def upsert_campaign(self, c: Campaign) -> None:
        row = campaign_row(c, time.time())
        await self._call(lambda conn: conn.execute(_CAMPAIGN_SQL, row))

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        sql = f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?"
        r = await self._call(lambda c: c.execute(sql, (campaign_id,)).fetchone())
        return campaign_of(r) if r is not None else None

    async def list_campaigns(self) -> list[Campaign]:
        sql = f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns ORDER BY created, id"
        return [campaign_of(r) for r in await self._call(lambda c: c.execute(sql).fetchall())]

    async def claim_campaign(self, campaign_id: str, owner: str, until: float, now: float) -> bool:
        sql = ("UPDATE campaigns SET owner = ?, lease_until = ? "
               "WHERE id = ? AND state = 'running' AND (owner = ? OR owner = '' OR lease_until < ?)")
        n = await self._call(lambda c: c.execute(sql, (owner, until, campaign_id, owner, now)).rowcount)
        return n > 0

    async def release_campaign(self, campaign_id: str, owner: str) -> None:
        sql = "UPDATE campaigns SET lease_until = 0 WHERE id = ? AND owner = ?"  # the owner stays named
        await self._call(lambda c: c.execute(sql, (campaign_id, owner)))

    async def campaign_lease(self, campaign_id: str) -> CampaignLease | None:
        sql = "SELECT owner, lease_until, state FROM campaigns WHERE id = ?"
        r = await self._call(lambda c: c.execute(sql, (campaign_id,)).fetchone())
        return None if r is None else CampaignLease(r[0], float(r[1]), r[2])

    async def delete_campaign(self, campaign_id: str) -> bool:
        # The call list goes with it through ON DELETE CASCADE (foreign_keys is on).
        sql = "DELETE FROM campaigns WHERE id = ?"
        n = await self._call(lambda c: c.execute(sql, (campaign_id,)).rowcount)
        return n > 0

    async def add_campaign_records(self, campaign_id: str, records: Sequence[CampaignRecord]) -> int:
        def job(conn: sqlite3.Connection) -> int:
            # Encoded on the store's thread, like the insert, so the event loop never waits for it.
            rows = import_rows(campaign_id, records)

            def body(c: sqlite3.Connection) -> int:
                if not c.execute("SELECT 1 FROM campaigns WHERE id = ?", (campaign_id,)).fetchone():
                    raise StoreError(f"no campaign {campaign_id!r}")
                (last,) = c.execute(
                    "SELECT coalesce(max(seq), 0) FROM campaign_records WHERE campaign = ?", (campaign_id,)
                ).fetchone()
                before = c.total_changes
                c.executemany(_IMPORT_SQL, ((campaign_id, r[1], last + r[0], *r[2:]) for r in rows))
                return c.total_changes - before

            return self._tx(conn, body)

        return await self._call(job)

    async def campaign_records(
        self,
        campaign_id: str,
        *,
        state: str | None = None,
        limit: int = 1000,
        offset: int = 0,
        due_before: float | None = None,
    ) -> list[CampaignRecord]:
        args: list[Any] = [campaign_id]
        where = "campaign = ?"
        if state is not None:
            args.append(state)
            where += " AND state = ?"
        if due_before is not None:
            args.append(float(due_before))
            where += " AND next_at <= ?"
        args += [limit, offset]
        sql = f"SELECT {RECORD_COLUMNS} FROM campaign_records WHERE {where} ORDER BY seq LIMIT ? OFFSET ?"
        return [record_of(r) for r in await self._call(lambda c: c.execute(sql, args).fetchall())]

    async def get_campaign_record(self, campaign_id: str, record_id: str) -> CampaignRecord | None:
        sql = f"SELECT {RECORD_COLUMNS} FROM campaign_records WHERE campaign = ? AND id = ?"
        r = await self._call(lambda c: c.execute(sql, (campaign_id, record_id)).fetchone())
        return record_of(r) if r is not None else None

    async def update_campaign_records(self, records: Sequence[CampaignRecord]) -> None:
        rows = [(*r[2:], r[0], r[1], r[7]) for r in update_rows(records)]
        if rows:
            await self._call(lambda c: self._tx(c, lambda t: t.executemany(_UPDATE_RECORDS_SQL, rows)))

    async def campaign_counts(self, campaign_id: str) -> dict[str, int]:
        sql = "SELECT state, count(*) FROM campaign_records WHERE campaign = ? GROUP BY state"
        recs = await self._call(lambda c: c.execute(sql, (campaign_id,)).fetchall())
        return {s: int(n) for s, n in recs}

    async def campaign_attempts(self, campaign_id: str, record_id: str | None = None) -> list[dict[str, Any]]:
        cols = ", ".join(R.ATTEMPT_COLUMNS)
        args: tuple[str, ...] = (campaign_id,)
        where = "campaign = ?"
        if record_id is not None:
            args += (record_id,)
            where += " AND record_id = ?"
        sql = f"SELECT {cols} FROM campaign_attempts WHERE {where} ORDER BY started, attempt, id"
        recs = await self._call(lambda c: c.execute(sql, args).fetchall())
        return [dict(zip(R.ATTEMPT_COLUMNS, r, strict=True)) for r in recs]

    # ---- do-not-call list ----
    async def add_dnc(self, entries: Sequence[DncEntry]) -> int:
        if not entries:
            return 0
        now = time.time()
        rows = [(e.number, e.reason, float(e.added or now)) for e in entries]
        sql = "INSERT INTO dnc (number, reason, added) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"

        def body(c: sqlite3.Connection) -> int:
            before = c.total_changes
            c.executemany(sql, rows)
            return c.total_changes - before

        return await self._call(lambda c: self._tx(c, body))

    async def remove_dnc(self, number: str) -> bool:
        n = await self._call(lambda c: c.execute("DELETE FROM dnc WHERE number = ?", (number,)).rowcount)
        return n > 0

    async def list_dnc(self) -> list[DncEntry]:
        recs = await self._call(
            lambda c: c.execute("SELECT number, reason, added FROM dnc ORDER BY number").fetchall()
        )
        return [DncEntry(n, r, float(a)) for n, r, a in recs]

    async def dnc_contains(self, number: str) -> bool:
        sql = "SELECT 1 FROM dnc WHERE number = ?"
        return await self._call(lambda c: c.execute(sql, (number,)).fetchone() is not None)

    # ---- scheduled callbacks ----
    async def upsert_scheduled_callback(self, cb: ScheduledCallback) -> None:
        row = callback_row(cb, time.time())
        await self._call(lambda c: c.execute(_CALLBACK_SQL, row))

    async def take_scheduled_callback(self, callback_id: str, now: float) -> bool:
        sql = "UPDATE scheduled_callbacks SET state = 'offered', updated = ? WHERE id = ? AND state = 'pending'"
        return await self._call(lambda c: c.execute(sql, (now, callback_id)).rowcount) > 0

    async def get_scheduled_callback(self, callback_id: str) -> ScheduledCallback | None:
        sql = f"SELECT {CALLBACK_COLUMNS} FROM scheduled_callbacks WHERE id = ?"
        r = await self._call(lambda c: c.execute(sql, (callback_id,)).fetchone())
        return callback_of(r) if r is not None else None

    async def scheduled_callbacks(
        self, *, state: str | None = "pending", due_before: float | None = None
    ) -> list[ScheduledCallback]:
        args: list[Any] = []
        where = ["1 = 1"]
        if state is not None:
            args.append(state)
            where.append("state = ?")
        if due_before is not None:
            args.append(float(due_before))
            where.append("due <= ?")
        sql = (
            f"SELECT {CALLBACK_COLUMNS} FROM scheduled_callbacks WHERE {' AND '.join(where)} ORDER BY due, id"
        )
        return [callback_of(r) for r in await self._call(lambda c: c.execute(sql, args).fetchall())]

    # ---- inspection ----
    async def count(self, table: str) -> int:
        sql = f"SELECT count(*) FROM {check_table(table)}"
        return int(await self._call(lambda c: c.execute(sql).fetchone()[0]))

    async def event_ids(self, table: str) -> list[str]:
        sql = f"SELECT id FROM {check_table(table)} ORDER BY id"
        return [r[0] for r in await self._call(lambda c: c.execute(sql).fetchall())]
