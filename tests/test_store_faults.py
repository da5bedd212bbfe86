"""Database outages lose nothing: the writer spools, replays in order, and stores each event once.

Outages are real: the test database stops accepting connections and its backends are terminated
(the shared PostgreSQL server keeps running for everyone else).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from softswitch.events import (
    CDR,
    AgentStateChanged,
    CallStarted,
    CampaignAttempt,
    Event,
    EventBus,
    QueueEvent,
)
from softswitch.store import Store, StoreUnavailable, StoreWriter, open_store
from softswitch.store.spool import Spool
from softswitch.store.testing import (
    Outage,
    pg_url,
    reset_schema,
    sample_attempt,
    sample_call,
    temporary_database_sync,
)

pytestmark = pytest.mark.integration

T0 = 1_790_000_000.0


@pytest.fixture(scope="session")
def pg_db() -> Iterator[str]:
    """A PostgreSQL database of this test session, random name, dropped at the end."""
    yield from temporary_database_sync("softswitch_faults")


@pytest.fixture
async def pg_store(pg_db: str, tmp_path: Path) -> AsyncIterator[Store]:
    await reset_schema(pg_db)
    s = await open_store(pg_url(pg_db), base_dir=tmp_path, spool_dir=tmp_path / "spool")
    yield s
    await s.close()


def tear(path: Path, partial: str) -> None:
    """Append half a line, as a crash in the middle of a write leaves it."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(partial)


async def assert_exactly_once(store: Store, published: list[Event]) -> None:
    """Every published event is stored, none twice, nothing else; affinity counts each call once."""
    kinds = (
        ("cdrs", CDR),
        ("queue_events", QueueEvent),
        ("agent_states", AgentStateChanged),
        ("event_log", CallStarted),
        ("campaign_attempts", CampaignAttempt),
    )
    for table, kind in kinds:
        want = sorted(e.id for e in published if isinstance(e, kind))
        got = await store.event_ids(table)
        assert len(got) == len(set(got))
        assert got == want, f"{table}: {len(got)} stored, {len(want)} published"
    assert await store.count("call_legs") == sum(len(e.legs) for e in published if isinstance(e, CDR))
    calls = Counter((e.caller, e.agent) for e in published if isinstance(e, CDR) and e.answer is not None)
    assert {(a.caller, a.agent): a.count for a in await store.load_affinity()} == dict(calls)


async def test_every_event_is_stored_exactly_once_across_repeated_postgres_outages(
    pg_store: Store, pg_db: str, tmp_path: Path
) -> None:
    bus = EventBus()
    writer = StoreWriter(
        bus, pg_store, tmp_path / "spool", batch_size=40, flush_interval=0.002,
        retry_interval=0.05, max_retry_interval=0.2,
    )  # fmt: skip
    await writer.start()
    published: list[Event] = []
    done = asyncio.Event()

    async def stream() -> None:
        # A steady stream of calls; several callers repeat so affinity counts are exercised.
        for i in range(1500):
            evs = sample_call(i, ts=T0 + i, caller=f"03{i % 97:08d}", answered=i % 7 != 0)
            for ev in evs + ([sample_attempt(i, ts=T0 + i)] if i % 3 == 0 else []):  # outbound dials too
                bus.publish(ev)
                published.append(ev)
            if i % 25 == 0:
                await asyncio.sleep(0.005)
        done.set()

    async def chaos() -> None:
        async with Outage(pg_db) as outage:
            rounds = 0
            while not done.is_set() or rounds < 4:
                rounds += 1
                if rounds % 2:
                    await outage.cut()  # refused for a while: events must go to the spool
                    await asyncio.sleep(0.15)
                    await outage.restore()
                else:
                    await outage.kill_connections()  # mid-transaction disconnects
                await asyncio.sleep(0.05)

    await asyncio.gather(stream(), chaos())
    await writer.drain(limit=30)
    await writer.stop()
    assert writer.failures > 0 and writer.spooled > 0 and writer.replayed > 0  # the outages did bite
    await assert_exactly_once(pg_store, published)
    assert not Spool(tmp_path / "spool").pending()


async def test_a_new_writer_replays_the_spool_left_by_a_crashed_one(
    pg_store: Store, pg_db: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    published: list[Event] = []
    async with Outage(pg_db) as outage:
        await outage.cut()
        bus = EventBus()
        crashed = StoreWriter(bus, pg_store, spool_dir, batch_size=20, flush_interval=0.001, retry_interval=5)
        await crashed.start()
        for i in range(100):
            for ev in [*sample_call(i, ts=T0 + i), sample_attempt(i, ts=T0 + i)]:
                bus.publish(ev)
                published.append(ev)
        await crashed.drain(limit=10, spool_counts=True)
        assert crashed.spooled == len(published)
        crashed.abandon()  # no stop(), no flush: as if the process died
        await outage.restore()
    lines = sum(len(p.read_text().splitlines()) for p in Spool(spool_dir).segments())
    assert lines == len(published)
    assert await pg_store.count("cdrs") == 0

    bus2 = EventBus()
    revived = StoreWriter(bus2, pg_store, spool_dir, batch_size=64, flush_interval=0.001)
    await revived.start()
    later = sample_call(1000, ts=T0 + 1000)
    for ev in later:
        bus2.publish(ev)
    await revived.drain(limit=20)
    await revived.stop()
    await assert_exactly_once(pg_store, published + later)
    assert Spool(spool_dir).segments() == []


async def test_stop_during_an_outage_keeps_events_in_the_spool_for_the_next_start(
    pg_store: Store, pg_db: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    bus = EventBus()
    async with Outage(pg_db) as outage:
        await outage.cut()
        writer = StoreWriter(bus, pg_store, spool_dir, batch_size=10, retry_interval=0.05, stop_timeout=2)
        await writer.start()
        evs = sample_call(1, ts=T0) + sample_call(2, ts=T0 + 1)
        for ev in evs:
            bus.publish(ev)
        await writer.stop()
        assert Spool(spool_dir).pending()
        with pytest.raises(StoreUnavailable):
            await pg_store.ping()
    writer2 = StoreWriter(EventBus(), pg_store, spool_dir)
    await writer2.start()
    await writer2.drain(limit=20)
    await writer2.stop()
    await assert_exactly_once(pg_store, evs)


async def test_a_torn_last_spool_line_is_set_aside_and_the_rest_replayed(tmp_path: Path) -> None:
    store = await open_store("sqlite:///s.db", base_dir=tmp_path, spool_dir=tmp_path / "spool")
    evs = sample_call(1, ts=T0) + sample_call(2, ts=T0 + 1)
    spool = Spool(tmp_path / "spool")
    spool.append(evs)
    spool.close()
    seg = spool.segments()[0]
    tear(seg, json.dumps(evs[0].to_dict())[:40])  # a crash in the middle of a write
    writer = StoreWriter(EventBus(), store, tmp_path / "spool")
    await writer.start()
    await writer.drain(limit=10)
    await writer.stop()
    await assert_exactly_once(store, evs)
    assert (tmp_path / "spool" / "unreadable.jsonl").read_text().startswith('{"ts"')
    await store.close()


async def test_a_node_started_during_an_outage_migrates_and_replays_when_the_database_returns(
    pg_db: str, tmp_path: Path
) -> None:
    await reset_schema(pg_db)  # an empty database: nothing migrated yet
    async with Outage(pg_db) as outage:
        await outage.cut()
        with pytest.raises(StoreUnavailable):
            await open_store(pg_url(pg_db), base_dir=tmp_path)
        store = await open_store(pg_url(pg_db), base_dir=tmp_path, require=False)
        bus = EventBus()
        writer = StoreWriter(bus, store, batch_size=16, flush_interval=0.001, retry_interval=0.05)
        await writer.start()
        evs = [ev for i in range(20) for ev in sample_call(i, ts=T0 + i)]
        for ev in evs:
            bus.publish(ev)
        await writer.drain(limit=10, spool_counts=True)
        assert writer.spooled == len(evs)
    await writer.drain(limit=20)
    await writer.stop()
    assert (await store.migration_status()).pending == ()
    await assert_exactly_once(store, evs)
    await store.close()


async def test_when_the_spool_disk_fails_too_batches_wait_and_are_spooled_once_it_works(
    tmp_path: Path,
) -> None:
    # PostgreSQL that refuses connections (nothing listens on port 9) and a spool whose directory
    # has been replaced by a file, so both ways of keeping a batch fail for a while.
    store = await open_store("postgresql://nobody@127.0.0.1:9/none", base_dir=tmp_path, require=False)
    spool_dir = tmp_path / "spool"
    bus = EventBus()
    writer = StoreWriter(bus, store, spool_dir, batch_size=8, flush_interval=0.001, retry_interval=0.02)
    await writer.start()
    await asyncio.to_thread(break_dir, spool_dir)
    evs = [ev for i in range(10) for ev in sample_call(i, ts=T0 + i)]
    for ev in evs:
        bus.publish(ev)
    await asyncio.sleep(0.2)
    assert writer.spooled < len(evs)  # nothing could be kept yet, nothing was dropped either
    await asyncio.to_thread(mend_dir, spool_dir)
    await writer.drain(limit=10, spool_counts=True)
    await writer.stop()
    spool = Spool(spool_dir)
    stored = [e for seg in spool.segments() for chunk in spool.read(seg, 100) for e in chunk]
    assert sorted(e.id for e in stored) == sorted(e.id for e in evs)
    assert writer.lost == 0
    await store.close()


def break_dir(path: Path) -> None:
    """Replace a directory by a file so that creating files in it fails."""
    for p in path.iterdir():
        p.unlink()
    path.rmdir()
    path.write_text("not a directory")


def mend_dir(path: Path) -> None:
    """Undo break_dir."""
    path.unlink()
    path.mkdir()
