"""The PostgreSQL store: an asyncpg pool and one transaction per batch.

A batch is split by table and each table's rows are sent with binary COPY into a temporary staging
table of the connection; one statement then moves every staging table into its real table with
`ON CONFLICT DO NOTHING` on the event id, which is what makes spool replays idempotent, and bumps
the affinity counters from the CDRs that statement actually inserted, so a replay cannot count a
call twice. (The older "unnest" mode sends column arrays to `INSERT ... SELECT FROM unnest(...)`
instead; bench/store.py can compare them.) Reads use asyncpg's cached prepared statements.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

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
    json_text,
    migration_status_of,
    queue_stats_of,
    queue_stats_sql,
    record_of,
    update_rows,
)
from softswitch.store.schema import MIGRATIONS, MIGRATIONS_TABLE

log = logging.getLogger(__name__)

T = TypeVar("T")

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn = PoolConnectionProxy[asyncpg.Record]
else:
    Conn = Any

# Errors of a migration's own SQL (as opposed to losing the connection while applying it).
_MIGRATION_ERRORS = (
    asyncpg.SyntaxOrAccessError,
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.FeatureNotSupportedError,
)

# Serialises migrations across nodes sharing one database (an arbitrary, fixed key).
_MIGRATION_LOCK_KEY = 0x50F7_5317

_CDR_SQL = """
WITH ins AS (
    INSERT INTO cdrs (id, ts, call_uuid, caller, callee, start_ts, answer_ts, end_ts, duration,
                      billable, disposition, hangup_cause, hangup_side, trunk, did, queue, agent,
                      customer_id)
    SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[],
                         $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::int8[],
                         $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
                         $16::text[], $17::text[], $18::text[])
    ON CONFLICT DO NOTHING
    RETURNING CASE WHEN customer_id <> '' THEN customer_id ELSE caller END AS key, agent, answer_ts, end_ts
), aff AS (
    INSERT INTO affinity AS a (caller, agent, last_handled, count)
    SELECT key, agent, max(end_ts), count(*) FROM ins
    WHERE answer_ts IS NOT NULL AND agent <> '' AND key <> ''
    GROUP BY key, agent
    ON CONFLICT (caller, agent) DO UPDATE
    SET last_handled = GREATEST(a.last_handled, excluded.last_handled), count = a.count + excluded.count
)
SELECT count(*) FROM ins
"""

_LEG_SQL = """
INSERT INTO call_legs (cdr_id, idx, call_uuid, call_id, direction, peer)
SELECT * FROM unnest($1::text[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::text[])
ON CONFLICT DO NOTHING
"""

_QUEUE_SQL = """
INSERT INTO queue_events (id, ts, queue, call_uuid, event, agent, caller, wait, reason, data)
SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::float8[], $9::text[], $10::text[])
ON CONFLICT DO NOTHING
"""

_AGENT_SQL = """
INSERT INTO agent_states (id, ts, agent, state, reason, previous)
SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[], $6::text[])
ON CONFLICT DO NOTHING
"""

_RECORDING_SQL = """
INSERT INTO recordings (id, ts, call_uuid, path, duration, sha256, channels)
SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::float8[], $6::text[],
                     $7::int4[])
ON CONFLICT DO NOTHING
"""

_SECURITY_SQL = """
INSERT INTO security_events (id, ts, source, username, method, banned)
SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[], $6::bool[])
ON CONFLICT DO NOTHING
"""

_LOG_SQL = """
INSERT INTO event_log (id, ts, kind, call_uuid, body)
SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[])
ON CONFLICT DO NOTHING
"""

_ATTEMPT_SQL = """
INSERT INTO campaign_attempts (id, ts, campaign, record_id, attempt, number, result, customer_id,
                               agent, call_uuid, started, answered, ended)
SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::int4[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::float8[], $12::float8[],
                     $13::float8[])
ON CONFLICT DO NOTHING
"""

_REGISTRATION_SQL = """
INSERT INTO registrations AS r (aor, contact, expires_at, source, user_agent, updated)
SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::text[], $6::float8[])
ON CONFLICT (aor, contact) DO UPDATE
SET expires_at = excluded.expires_at, source = excluded.source, user_agent = excluded.user_agent,
    updated = excluded.updated
WHERE r.updated <= excluded.updated
"""

# COPY path: rows are copied (binary) into per-connection temporary staging tables, then one
# statement moves them into the real tables with ON CONFLICT DO NOTHING and bumps affinity from the
# CDRs actually inserted. Staging tables empty themselves at every commit.
_STAGED = (
    ("cdrs", R.CDR_COLUMNS),
    ("call_legs", R.LEG_COLUMNS),
    ("queue_events", R.QUEUE_COLUMNS),
    ("agent_states", R.AGENT_COLUMNS),
    ("recordings", R.RECORDING_COLUMNS),
    ("security_events", R.SECURITY_COLUMNS),
    ("event_log", R.LOG_COLUMNS),
    ("campaign_attempts", R.ATTEMPT_COLUMNS),
)
_STAGE_DDL = ";\n".join(
    f"CREATE TEMP TABLE IF NOT EXISTS stage_{t} (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    for t, _ in _STAGED
)


# The affinity key is the ACD's: the CRM customer id when the call had one, else the calling number.
_CDR_RETURNING = (
    "CASE WHEN customer_id <> '' THEN customer_id ELSE caller END AS key, agent, answer_ts, end_ts"
)


def _merge_sql() -> str:
    """One statement that moves every staging table into its real table."""
    ctes = [
        f"m_{t} AS (INSERT INTO {t} ({', '.join(cols)}) SELECT {', '.join(cols)} FROM stage_{t} "
        f"ON CONFLICT DO NOTHING RETURNING {_CDR_RETURNING if t == 'cdrs' else '1'})"
        for t, cols in _STAGED
    ]
    ctes.append(
        "aff AS (INSERT INTO affinity AS a (caller, agent, last_handled, count) "
        "SELECT key, agent, max(end_ts), count(*) FROM m_cdrs "
        "WHERE answer_ts IS NOT NULL AND agent <> '' AND key <> '' GROUP BY key, agent "
        "ON CONFLICT (caller, agent) DO UPDATE SET "
        "last_handled = GREATEST(a.last_handled, excluded.last_handled), count = a.count + excluded.count)"
    )
    counted = " + ".join(f"(SELECT count(*) FROM m_{t})" for t, _ in _STAGED if t != "call_legs")
    return "WITH " + ",\n".join(ctes) + f"\nSELECT {counted}"


_MERGE_SQL = _merge_sql()

_STATS_SQL = queue_stats_sql("$1", "$2", "$3", "$4")

_AHT_SQL = """
SELECT avg(end_ts - answer_ts) FROM cdrs
WHERE queue = $1 AND queue <> '' AND answer_ts IS NOT NULL AND answer_ts >= $2 AND answer_ts < $3
"""

_CAMPAIGN_SQL = f"""
INSERT INTO campaigns ({CAMPAIGN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (id) DO UPDATE SET name = excluded.name, mode = excluded.mode, queue = excluded.queue,
    trunk = excluded.trunk, caller_id = excluded.caller_id, schedule = excluded.schedule,
    settings = excluded.settings, state = excluded.state, updated = excluded.updated
"""

_CLAIM_SQL = (
    "UPDATE campaigns SET owner = $2, lease_until = $3 "
    "WHERE id = $1 AND state = 'running' AND (owner = $2 OR owner = '' OR lease_until < $4)"
)
# The owner stays named: the next node to claim learns who dialled last.
_RELEASE_SQL = "UPDATE campaigns SET lease_until = 0 WHERE id = $1 AND owner = $2"

# A campaign import is staged like an event batch: binary COPY into a temporary table of the
# connection, then one INSERT numbers the new rows after the campaign's last one.
_IMPORT_COLUMNS = (
    "ord", "id", "number", "customer_id", "fields", "state", "attempts", "next_at", "last_result",
    "agent", "updated",
)  # fmt: skip
_IMPORT_DDL = """
CREATE TEMP TABLE IF NOT EXISTS stage_campaign_import (
    ord BIGINT NOT NULL, id TEXT NOT NULL, number TEXT NOT NULL, customer_id TEXT NOT NULL,
    fields TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL,
    next_at DOUBLE PRECISION NOT NULL, last_result TEXT NOT NULL, agent TEXT NOT NULL,
    updated DOUBLE PRECISION NOT NULL
) ON COMMIT DELETE ROWS
"""
_IMPORT_SQL = """
INSERT INTO campaign_records (campaign, id, seq, number, customer_id, fields, state, attempts,
                              next_at, last_result, agent, updated)
SELECT $1::text, id, $2::int8 + ord, number, customer_id, fields, state, attempts, next_at,
       last_result, agent, updated
FROM stage_campaign_import
ON CONFLICT DO NOTHING
"""
# Imports into one campaign take turns (so their seq ranges cannot interleave) without locking
# the campaign row against state changes. Two-key advisory locks do not collide with the
# migration's one-key lock.
_IMPORT_LOCK_SQL = "SELECT pg_advisory_xact_lock(20557, hashtext($1))"

_UPDATE_RECORDS_SQL = """
UPDATE campaign_records AS r
SET state = u.state, attempts = u.attempts, next_at = u.next_at, last_result = u.last_result,
    agent = u.agent, updated = u.updated
FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::float8[], $6::text[], $7::text[],
            $8::float8[]) AS u(campaign, id, state, attempts, next_at, last_result, agent, updated)
WHERE r.campaign = u.campaign AND r.id = u.id AND r.updated < u.updated
"""

_CALLBACK_SQL = f"""
INSERT INTO scheduled_callbacks AS s ({CALLBACK_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (id) DO UPDATE SET number = excluded.number, due = excluded.due, queue = excluded.queue,
    agent = excluded.agent, customer_id = excluded.customer_id, note = excluded.note,
    state = excluded.state, updated = excluded.updated, call_uuid = excluded.call_uuid
WHERE s.updated <= excluded.updated
"""


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Transpose rows into one list per column (the arrays `unnest` expands)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]


def _is_data_error(exc: BaseException) -> bool:
    """The database refused the data itself: retrying the same batch would fail again."""
    # COPY encodes client-side and reports a value of the wrong type as a plain TypeError.
    return isinstance(exc, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError | TypeError)


class PostgresStore(Store):
    """The production store on PostgreSQL through an asyncpg pool (created lazily).

    write_mode "copy" (default) stages batches with binary COPY and merges them in one statement;
    "unnest" sends each table's rows as arrays to one INSERT ... SELECT FROM unnest(...).
    """

    def __init__(
        self,
        url: str,
        *,
        spool_dir: Path,
        min_size: int = 1,
        max_size: int = 4,
        command_timeout: float = 15.0,
        connect_timeout: float = 5.0,
        write_mode: str = "copy",
    ) -> None:
        if write_mode not in ("copy", "unnest"):
            raise StoreError(f"write_mode must be 'copy' or 'unnest', not {write_mode!r}")
        self._write_mode = write_mode
        self.url = url
        self.spool_dir = spool_dir
        self._min_size = min_size
        self._max_size = max_size
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._closed = False
        self._migrate_lock = asyncio.Lock()
        self._migrating = False
        self._deferred_migration = False

    # ---- connection handling ----
    async def _get_pool(self) -> asyncpg.Pool:
        if self._closed:
            raise StoreError("store is closed")
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self.url,
                        min_size=self._min_size,
                        max_size=self._max_size,
                        command_timeout=self._command_timeout,
                        timeout=self._connect_timeout,
                    )
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
            return self._pool

    async def _run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `fn` on a pooled connection, mapping driver errors to the store's two kinds."""
        pool = await self._get_pool()
        if self._deferred_migration and not self._migrating:
            await self.migrate()  # the database is back after a start without it
        try:
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                return await fn(conn)
        except StoreError:
            raise
        except Exception as exc:
            if _is_data_error(exc):
                raise StoreError(f"PostgreSQL refused the data: {exc}") from exc
            if isinstance(
                exc,
                OSError
                | TimeoutError
                | asyncpg.PostgresError
                | asyncpg.InterfaceError
                | asyncpg.InternalClientError  # e.g. a pool resetting a connection that just died
                | ConnectionError,
            ):
                raise StoreUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}: {exc}") from exc
            raise

    async def close(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=5.0)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                pool.terminate()

    async def ping(self) -> None:
        await self._run(lambda c: c.fetchval("SELECT 1"))

    # ---- migrations ----
    async def migration_status(self) -> MigrationStatus:
        async def fn(conn: Conn) -> MigrationStatus:
            exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
            applied: list[tuple[int, str, float]] = []
            if exists:
                recs = await conn.fetch(
                    "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
                )
                applied = [(r["version"], r["name"], r["applied_at"]) for r in recs]
            return migration_status_of(applied)

        return await self._run(fn)

    def defer_migration(self) -> bool:
        self._deferred_migration = True
        return True

    async def migrate(self) -> MigrationStatus:
        async with self._migrate_lock:
            self._migrating = True
            try:
                status = await self._migrate()
            finally:
                self._migrating = False
            self._deferred_migration = False
            return status

    async def _migrate(self) -> MigrationStatus:
        async def fn(conn: Conn) -> None:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
                await conn.execute(MIGRATIONS_TABLE)
                done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for m in MIGRATIONS:
                if m.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
                    again = await conn.fetchval(
                        "SELECT 1 FROM schema_migrations WHERE version = $1", m.version
                    )
                    if again:  # another node applied it while we waited for the lock
                        continue
                    for stmt in m.statements:
                        try:
                            await conn.execute(stmt)
                        except _MIGRATION_ERRORS as exc:
                            raise StoreError(f"migration {m.version} ({m.name}) failed: {exc}") from exc
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                        m.version,
                        m.name,
                        time.time(),
                    )
                log.info("applied schema migration %d (%s)", m.version, m.name)

        await self._run(fn)
        return await self.migration_status()

    # ---- writes ----
    async def write_events(self, events: Sequence[Event]) -> int:
        if not events:
            return 0
        rows = await R.split_yielding(events)
        write = self._write_copy if self._write_mode == "copy" else self._write_unnest
        return await self._run(lambda conn: write(conn, rows))

    async def _write_copy(self, conn: Conn, rows: R.Rows) -> int:
        staged: tuple[Sequence[tuple[Any, ...]], ...] = (
            rows.cdrs, rows.legs, rows.queue, rows.agents, rows.recordings, rows.security, rows.log,
            rows.attempts,
        )  # fmt: skip
        for attempt in (0, 1):
            try:
                async with conn.transaction():
                    for (table, cols), batch in zip(_STAGED, staged, strict=True):
                        if batch:
                            await conn.copy_records_to_table(f"stage_{table}", records=batch, columns=cols)
                    new = int(await conn.fetchval(_MERGE_SQL))
                    if rows.registrations:
                        await conn.execute(
                            _REGISTRATION_SQL, *_columns(rows.registrations, len(R.REGISTRATION_COLUMNS))
                        )
                        new += len(rows.registrations)
                    return new
            except asyncpg.UndefinedTableError:
                if attempt:
                    raise
                # A connection that has not written yet: make its staging tables, then retry.
                await conn.execute(_STAGE_DDL)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _write_unnest(self, conn: Conn, rows: R.Rows) -> int:
        new = 0
        async with conn.transaction():
            if rows.cdrs:
                new += await conn.fetchval(_CDR_SQL, *_columns(rows.cdrs, len(R.CDR_COLUMNS)))
            if rows.legs:
                await conn.execute(_LEG_SQL, *_columns(rows.legs, len(R.LEG_COLUMNS)))
            for sql, batch, width in (
                (_QUEUE_SQL, rows.queue, len(R.QUEUE_COLUMNS)),
                (_AGENT_SQL, rows.agents, len(R.AGENT_COLUMNS)),
                (_RECORDING_SQL, rows.recordings, len(R.RECORDING_COLUMNS)),
                (_SECURITY_SQL, rows.security, len(R.SECURITY_COLUMNS)),
                (_LOG_SQL, rows.log, len(R.LOG_COLUMNS)),
                (_ATTEMPT_SQL, rows.attempts, len(R.ATTEMPT_COLUMNS)),
            ):
                if batch:
                    status = await conn.execute(sql, *_columns(batch, width))
                    new += int(status.rsplit(" ", 1)[-1])
            if rows.registrations:
                await conn.execute(
                    _REGISTRATION_SQL, *_columns(rows.registrations, len(R.REGISTRATION_COLUMNS))
                )
                new += len(rows.registrations)
        return new

    # ---- reads ----
    async def missed_calls(self, user: str, *, limit: int = 20) -> list[CallRecord]:
        sql = f"SELECT {CALL_COLUMNS} FROM cdrs WHERE callee = $1 AND answer_ts IS NULL ORDER BY start_ts DESC LIMIT $2"
        recs = await self._run(lambda c: c.fetch(sql, user, limit))
        return [CallRecord(*r) for r in recs]

    async def recent_calls(
        self, *, number: str | None = None, customer_id: str | None = None, limit: int = 10
    ) -> list[CallRecord]:
        if not number and not customer_id:
            raise StoreError("recent_calls needs a number or a customer id")
        sql = (
            f"SELECT {CALL_COLUMNS} FROM cdrs "
            "WHERE ($1::text IS NOT NULL AND caller = $1) "
            "OR ($2::text IS NOT NULL AND customer_id <> '' AND customer_id = $2) "
            "ORDER BY start_ts DESC LIMIT $3"
        )
        recs = await self._run(lambda c: c.fetch(sql, number or None, customer_id or None, limit))
        return [CallRecord(*r) for r in recs]

    async def load_affinity(self) -> list[Affinity]:
        recs = await self._run(
            lambda c: c.fetch(
                "SELECT caller, agent, last_handled, count FROM affinity ORDER BY caller, agent"
            )
        )
        return [Affinity(*r) for r in recs]

    async def upsert_affinity(self, caller: str, agent: str, ts: float) -> None:
        sql = (
            "INSERT INTO affinity AS a (caller, agent, last_handled, count) VALUES ($1, $2, $3, 1) "
            "ON CONFLICT (caller, agent) DO UPDATE "
            "SET last_handled = GREATEST(a.last_handled, excluded.last_handled), count = a.count + 1"
        )
        await self._run(lambda c: c.execute(sql, caller, agent, ts))

    async def load_registrations(self, now: float) -> list[Registration]:
        sql = (
            "SELECT aor, contact, expires_at, source, user_agent, updated FROM registrations "
            "WHERE expires_at > $1 ORDER BY aor, contact"
        )
        recs = await self._run(lambda c: c.fetch(sql, now))
        return [Registration(*r) for r in recs]

    async def upsert_registration(self, reg: Registration) -> None:
        await self._run(
            lambda c: c.execute(
                _REGISTRATION_SQL,
                [reg.aor],
                [reg.contact],
                [reg.expires_at],
                [reg.source],
                [reg.user_agent],
                [reg.updated],
            )
        )

    async def delete_registration(self, aor: str, contact: str, ts: float) -> None:
        # A tombstone, not a DELETE: an older binding replayed later must not come back.
        await self._run(lambda c: c.execute(_REGISTRATION_SQL, [aor], [contact], [ts], [""], [""], [ts]))

    async def queue_stats(
        self, queue: str, start: float, end: float, *, sl_threshold: float = 20.0
    ) -> QueueStats:
        async def fn(conn: Conn) -> QueueStats:
            r = await conn.fetchrow(_STATS_SQL, queue, start, end, sl_threshold)
            assert r is not None  # an aggregate always returns a row
            aht = await conn.fetchval(_AHT_SQL, queue, start, end)
            return queue_stats_of(queue, start, end, r[0], r[1], r[2], r[3], r[4], aht)

        return await self._run(fn)

    # ---- directory ----
    async def upsert_user(self, user: User) -> None:
        sql = (
            "INSERT INTO users (id, display_name, secret, enabled, updated) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, "
            "secret = excluded.secret, enabled = excluded.enabled, updated = excluded.updated"
        )
        await self._run(
            lambda c: c.execute(sql, user.id, user.display_name, user.secret, user.enabled, time.time())
        )

    async def delete_user(self, user_id: str) -> bool:
        status = await self._run(lambda c: c.execute("DELETE FROM users WHERE id = $1", user_id))
        return status.endswith(" 1")

    async def list_users(self) -> list[User]:
        recs = await self._run(
            lambda c: c.fetch("SELECT id, display_name, secret, enabled FROM users ORDER BY id")
        )
        return [User(*r) for r in recs]

    async def upsert_agent(self, agent: Agent) -> None:
        sql = (
            "INSERT INTO agents (id, user_id, skills, enabled, updated) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, skills = excluded.skills, "
            "enabled = excluded.enabled, updated = excluded.updated"
        )
        await self._run(
            lambda c: c.execute(
                sql, agent.id, agent.user_id, json_text(agent.skills), agent.enabled, time.time()
            )
        )

    async def delete_agent(self, agent_id: str) -> bool:
        status = await self._run(lambda c: c.execute("DELETE FROM agents WHERE id = $1", agent_id))
        return status.endswith(" 1")

    async def list_agents(self) -> list[Agent]:
        recs = await self._run(
            lambda c: c.fetch("SELECT id, user_id, skills, enabled FROM agents ORDER BY id")
        )
        return [Agent(r[0], r[1], json.loads(r[2]), r[3]) for r in recs]

    # ---- outbound campaigns ----
    async def upsert_campaign(self, c: Campaign) -> None:
        row = campaign_row(c, time.time())
        await self._run(lambda conn: conn.execute(_CAMPAIGN_SQL, *row))

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        sql = f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1"
        r = await self._run(lambda c: c.fetchrow(sql, campaign_id))
        return campaign_of(r) if r is not None else None

    async def list_campaigns(self) -> list[Campaign]:
        sql = f'SELECT {CAMPAIGN_COLUMNS} FROM campaigns ORDER BY created, id COLLATE "C"'
        return [campaign_of(r) for r in await self._run(lambda c: c.fetch(sql))]

    async def claim_campaign(self, campaign_id: str, owner: str, until: float, now: float) -> bool:
        status = await self._run(lambda c: c.execute(_CLAIM_SQL, campaign_id, owner, until, now))
        return status.endswith(" 1")

    async def campaign_lease(self, campaign_id: str) -> CampaignLease | None:
        sql = "SELECT owner, lease_until, state FROM campaigns WHERE id = $1"
        r = await self._run(lambda c: c.fetchrow(sql, campaign_id))
        return None if r is None else CampaignLease(r[0], float(r[1]), r[2])

    async def release_campaign(self, campaign_id: str, owner: str) -> None:
        await self._run(lambda c: c.execute(_RELEASE_SQL, campaign_id, owner))

    async def delete_campaign(self, campaign_id: str) -> bool:
        status = await self._run(lambda c: c.execute("DELETE FROM campaigns WHERE id = $1", campaign_id))
        return status.endswith(" 1")

    async def add_campaign_records(self, campaign_id: str, records: Sequence[CampaignRecord]) -> int:
        # Encoding 100k records takes a while: off the event loop.
        rows = await asyncio.to_thread(import_rows, campaign_id, records)

        async def fn(conn: Conn) -> int:
            async with conn.transaction():
                await conn.execute(_IMPORT_LOCK_SQL, campaign_id)
                if not await conn.fetchval("SELECT 1 FROM campaigns WHERE id = $1", campaign_id):
                    raise StoreError(f"no campaign {campaign_id!r}")
                if not rows:
                    return 0
                last = await conn.fetchval(
                    "SELECT coalesce(max(seq), 0) FROM campaign_records WHERE campaign = $1", campaign_id
                )
                await conn.execute(_IMPORT_DDL)
                await conn.copy_records_to_table(
                    "stage_campaign_import", records=rows, columns=_IMPORT_COLUMNS
                )
                status = await conn.execute(_IMPORT_SQL, campaign_id, last)
                return int(status.rsplit(" ", 1)[-1])

        return await self._run(fn)

    async def campaign_records(
        self,
        campaign_id: str,
        *,
        state: str | None = None,
        limit: int = 1000,
        offset: int = 0,
        due_before: float | None = None,
    ) -> list[CampaignRecord]:
        # One statement per combination of filters, so each keeps a plan that uses its index.
        args: list[Any] = [campaign_id]
        where = "campaign = $1"
        if state is not None:
            args.append(state)
            where += f" AND state = ${len(args)}"
        if due_before is not None:
            args.append(float(due_before))
            where += f" AND next_at <= ${len(args)}"
        args += [limit, offset]
        sql = (
            f"SELECT {RECORD_COLUMNS} FROM campaign_records WHERE {where} "
            f"ORDER BY seq LIMIT ${len(args) - 1} OFFSET ${len(args)}"
        )
        return [record_of(r) for r in await self._run(lambda c: c.fetch(sql, *args))]

    async def get_campaign_record(self, campaign_id: str, record_id: str) -> CampaignRecord | None:
        sql = f"SELECT {RECORD_COLUMNS} FROM campaign_records WHERE campaign = $1 AND id = $2"
        r = await self._run(lambda c: c.fetchrow(sql, campaign_id, record_id))
        return record_of(r) if r is not None else None

    async def update_campaign_records(self, records: Sequence[CampaignRecord]) -> None:
        rows = update_rows(records)
        if rows:
            await self._run(lambda c: c.execute(_UPDATE_RECORDS_SQL, *_columns(rows, 8)))

    async def campaign_counts(self, campaign_id: str) -> dict[str, int]:
        sql = "SELECT state, count(*) FROM campaign_records WHERE campaign = $1 GROUP BY state"
        return {r[0]: int(r[1]) for r in await self._run(lambda c: c.fetch(sql, campaign_id))}

    async def campaign_attempts(self, campaign_id: str, record_id: str | None = None) -> list[dict[str, Any]]:
        cols = ", ".join(R.ATTEMPT_COLUMNS)
        args: list[Any] = [campaign_id]
        where = "campaign = $1"
        if record_id is not None:
            args.append(record_id)
            where += " AND record_id = $2"
        sql = f'SELECT {cols} FROM campaign_attempts WHERE {where} ORDER BY started, attempt, id COLLATE "C"'
        return [dict(r) for r in await self._run(lambda c: c.fetch(sql, *args))]

    # ---- do-not-call list ----
    async def add_dnc(self, entries: Sequence[DncEntry]) -> int:
        if not entries:
            return 0
        now = time.time()
        rows = [(e.number, e.reason, float(e.added or now)) for e in entries]
        sql = (
            "INSERT INTO dnc (number, reason, added) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::float8[]) ON CONFLICT DO NOTHING"
        )
        status = await self._run(lambda c: c.execute(sql, *_columns(rows, 3)))
        return int(status.rsplit(" ", 1)[-1])

    async def remove_dnc(self, number: str) -> bool:
        status = await self._run(lambda c: c.execute("DELETE FROM dnc WHERE number = $1", number))
        return status.endswith(" 1")

    async def list_dnc(self) -> list[DncEntry]:
        recs = await self._run(
            lambda c: c.fetch('SELECT number, reason, added FROM dnc ORDER BY number COLLATE "C"')
        )
        return [DncEntry(*r) for r in recs]

    async def dnc_contains(self, number: str) -> bool:
        sql = "SELECT EXISTS (SELECT 1 FROM dnc WHERE number = $1)"
        return bool(await self._run(lambda c: c.fetchval(sql, number)))

    # ---- scheduled callbacks ----
    async def upsert_scheduled_callback(self, cb: ScheduledCallback) -> None:
        row = callback_row(cb, time.time())
        await self._run(lambda c: c.execute(_CALLBACK_SQL, *row))

    async def take_scheduled_callback(self, callback_id: str, now: float) -> bool:
        sql = "UPDATE scheduled_callbacks SET state = 'offered', updated = $2 WHERE id = $1 AND state = 'pending'"
        status = await self._run(lambda c: c.execute(sql, callback_id, now))
        return status.endswith(" 1")

    async def get_scheduled_callback(self, callback_id: str) -> ScheduledCallback | None:
        sql = f"SELECT {CALLBACK_COLUMNS} FROM scheduled_callbacks WHERE id = $1"
        r = await self._run(lambda c: c.fetchrow(sql, callback_id))
        return callback_of(r) if r is not None else None

    async def scheduled_callbacks(
        self, *, state: str | None = "pending", due_before: float | None = None
    ) -> list[ScheduledCallback]:
        args: list[Any] = []
        where = ["TRUE"]
        if state is not None:
            args.append(state)
            where.append(f"state = ${len(args)}")
        if due_before is not None:
            args.append(float(due_before))
            where.append(f"due <= ${len(args)}")
        sql = (
            f"SELECT {CALLBACK_COLUMNS} FROM scheduled_callbacks WHERE {' AND '.join(where)} "
            'ORDER BY due, id COLLATE "C"'
        )
        return [callback_of(r) for r in await self._run(lambda c: c.fetch(sql, *args))]

    # ---- inspection ----
    async def count(self, table: str) -> int:
        sql = f"SELECT count(*) FROM {check_table(table)}"
        return int(await self._run(lambda c: c.fetchval(sql)))

    async def event_ids(self, table: str) -> list[str]:
        sql = f"SELECT id FROM {check_table(table)} ORDER BY id"
        return [r[0] for r in await self._run(lambda c: c.fetch(sql))]
