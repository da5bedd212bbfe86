"""Helpers for tests and benchmarks of the store: throw-away PostgreSQL databases and sample events.

Databases are created through the server's `postgres` database with a random name and dropped
afterwards; outages are simulated per database (ALLOW_CONNECTIONS off plus pg_terminate_backend),
never by stopping the shared server.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg

from softswitch.events import (
    CDR,
    AgentStateChanged,
    AuthFailed,
    CallStarted,
    CampaignAttempt,
    Event,
    QueueEvent,
    RecordingSaved,
    RegistrationChanged,
)

T = TypeVar("T")

PG_SERVER = os.environ.get("SOFTSWITCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def pg_url(dbname: str) -> str:
    """The URL of database `dbname` on the test server."""
    return f"{PG_SERVER}/{dbname}"


async def create_database(prefix: str = "softswitch_test") -> str:
    """Create a database with a random name; returns its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_url("postgres"), timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(name: str) -> None:
    """Drop a database made by `create_database`, disconnecting whoever is still on it."""
    conn = await asyncpg.connect(pg_url("postgres"), timeout=10)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def temporary_database_sync(prefix: str = "softswitch_test") -> Iterator[str]:
    """A generator for a session fixture: yields a fresh database name, drops it afterwards."""
    name = _run_in_thread(create_database(prefix))
    try:
        yield name
    finally:
        _run_in_thread(drop_database(name))


def _run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on its own thread (callers may be inside an event loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def reset_schema(dbname: str) -> None:
    """Empty a test database completely (its next open_store migrates from scratch)."""
    conn = await asyncpg.connect(pg_url(dbname), timeout=10)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


class Outage:
    """Cuts one database off from its clients and brings it back, leaving the server running."""

    def __init__(self, dbname: str) -> None:
        self.dbname = dbname
        self._admin: asyncpg.Connection | None = None

    async def __aenter__(self) -> Outage:
        self._admin = await asyncpg.connect(pg_url("postgres"), timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._admin is not None:
            await self.restore()
            await self._admin.close()

    async def kill_connections(self) -> int:
        """Terminate every backend connected to the database; returns how many."""
        assert self._admin is not None
        return int(
            await self._admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                self.dbname,
            )
        )

    async def cut(self) -> None:
        """Refuse new connections (superusers included) and drop the open ones."""
        assert self._admin is not None
        await self._admin.execute(f'ALTER DATABASE "{self.dbname}" WITH ALLOW_CONNECTIONS false')
        await self.kill_connections()

    async def restore(self) -> None:
        """Accept connections again."""
        assert self._admin is not None
        await self._admin.execute(f'ALTER DATABASE "{self.dbname}" WITH ALLOW_CONNECTIONS true')


def sample_call(
    i: int,
    *,
    ts: float,
    caller: str | None = None,
    agent: str = "",
    queue: str = "support",
    answered: bool = True,
    customer_id: str = "",
) -> list[Event]:
    """The events of one queued call: call started, queue joined/answered, agent state, CDR."""
    call_uuid = f"call-{i:08d}-{uuid.uuid4().hex[:6]}"
    caller = caller or f"0312345{i % 10000:04d}"
    agent = agent or f"agent{i % 50:02d}"
    wait = float(i % 40)
    evs: list[Event] = [
        CallStarted(ts=ts, call_uuid=call_uuid, caller=caller, callee="0120000000", did="0120000000"),
        QueueEvent(ts=ts, queue=queue, call_uuid=call_uuid, event="joined", caller=caller),
    ]
    if answered:
        evs += [
            QueueEvent(
                ts=ts + wait, queue=queue, call_uuid=call_uuid, event="answered", agent=agent, wait=wait
            ),
            AgentStateChanged(ts=ts + wait, agent=agent, state="on_call", previous="offered"),
        ]
    else:
        evs.append(QueueEvent(ts=ts + wait, queue=queue, call_uuid=call_uuid, event="abandoned", wait=wait))
    evs.append(
        CDR(
            ts=ts + wait + 60,
            call_uuid=call_uuid,
            caller=caller,
            callee="0120000000",
            start=ts,
            answer=ts + wait if answered else None,
            end=ts + wait + 60,
            disposition="answered" if answered else "cancelled",
            hangup_cause="normal_clearing",
            hangup_side="caller",
            legs=((f"{call_uuid}-a", "inbound", "trunk1"), (f"{call_uuid}-b", "outbound", agent)),
            queue=queue,
            agent=agent if answered else "",
            customer_id=customer_id,
        )
    )
    return evs


def sample_misc(i: int, *, ts: float) -> list[Event]:
    """One of each remaining kind: registration, auth failure, recording."""
    return [
        RegistrationChanged(
            ts=ts, aor=f"sip:{1000 + i % 100}@example.jp", contact=f"sip:{1000 + i % 100}@10.0.0.{i % 250}",
            expires=3600, source=f"udp:10.0.0.{i % 250}:5060",
        ),
        AuthFailed(ts=ts, source=f"udp:203.0.113.{i % 250}:5060", username=f"u{i}", method="REGISTER"),
        RecordingSaved(ts=ts, call_uuid=f"call-{i:08d}", path=f"/rec/{i}.wav", duration=61.5, sha256="0" * 64),
    ]  # fmt: skip


def sample_attempt(i: int, *, ts: float, campaign: str = "camp1", attempt: int = 1) -> CampaignAttempt:
    """One outbound dial of record `r{i}`: every third one busy, the rest connected to an agent."""
    connected = i % 3 != 0
    return CampaignAttempt(
        ts=ts, campaign=campaign, record_id=f"r{i:06d}", attempt=attempt, number=f"0901234{i % 10000:04d}",
        result="connected" if connected else "busy", customer_id=f"C{i}", agent=f"agent{i % 50:02d}" if connected else "",
        call_uuid=f"out-{i:08d}-{attempt}", started=ts - 20, answered=ts - 12 if connected else None, ended=ts,
    )  # fmt: skip
