"""Outbound campaign persistence (campaigns, call lists, attempts, do-not-call list, scheduled
callbacks), proved against a real PostgreSQL and a real SQLite file alike."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from softswitch.events import CampaignAttempt, EventBus, QueueEvent
from softswitch.store import (
    Campaign,
    CampaignLease,
    CampaignRecord,
    DncEntry,
    ScheduledCallback,
    Store,
    StoreError,
    StoreWriter,
    create_store,
    open_store,
)
from softswitch.store.postgres import PostgresStore
from softswitch.store.schema import LATEST, MIGRATIONS, MIGRATIONS_TABLE
from softswitch.store.testing import (
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
    yield from temporary_database_sync("softswitch_campaigns")


async def _open(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "sqlite":
        return await open_store("sqlite:///store.db", base_dir=tmp_path, spool_dir=tmp_path / "spool")
    dbname = request.getfixturevalue("pg_db")
    await reset_schema(dbname)
    if kind == "postgresql-unnest":
        s = PostgresStore(pg_url(dbname), spool_dir=tmp_path / "spool", write_mode="unnest")
        await s.migrate()
        return s
    return await open_store(pg_url(dbname), base_dir=tmp_path, spool_dir=tmp_path / "spool")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A freshly migrated store on each backend."""
    s = await _open(request.param, tmp_path, request)
    yield s
    await s.close()


@pytest.fixture(params=["sqlite", "postgresql", "postgresql-unnest"])
async def event_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A freshly migrated store on each backend and each PostgreSQL write mode."""
    s = await _open(request.param, tmp_path, request)
    yield s
    await s.close()


def campaign(cid: str = "c1", **kw: object) -> Campaign:
    base: dict[str, object] = dict(
        id=cid,
        name="Renewal calls 秋",
        mode="progressive",
        queue="sales",
        trunk="carrier1",
        caller_id="0312345678",
        schedule={"zone": "Asia/Tokyo", "weekly": {"mon": [["09:00", "18:00"]]}, "closed": ["2026-01-01"]},
        settings={"max_attempts": 3, "retry_delays": [600, 3600], "abandon_ceiling": 0.03},
    )
    base.update(kw)
    return Campaign(**base)  # type: ignore[arg-type]


def records(cid: str, ids: list[str], **kw: object) -> list[CampaignRecord]:
    return [
        CampaignRecord(
            cid, rid, f"0901111{n:04d}", customer_id=f"C-{rid}", fields={"name": f"顧客 {rid}"}, **kw
        )  # type: ignore[arg-type]
        for n, rid in enumerate(ids)
    ]


async def ids_of(store: Store, cid: str, **kw: object) -> list[str]:
    return [r.id for r in await store.campaign_records(cid, **kw)]  # type: ignore[arg-type]


async def test_a_campaign_is_created_read_replaced_listed_and_deleted(store: Store) -> None:
    c1 = campaign("c1", created=T0, updated=T0)
    await store.upsert_campaign(c1)
    await store.upsert_campaign(campaign("c0", name="second", created=T0 + 5, updated=T0 + 5))
    assert await store.get_campaign("c1") == c1
    assert [c.id for c in await store.list_campaigns()] == ["c1", "c0"]  # oldest first
    running = replace(c1, state="running", settings={"max_attempts": 5}, created=T0 + 99, updated=T0 + 10)
    await store.upsert_campaign(running)
    assert await store.get_campaign("c1") == replace(running, created=T0)  # keeps its creation time
    now = time.time()
    await store.upsert_campaign(campaign("c2"))  # no timestamps given: now
    c2 = await store.get_campaign("c2")
    assert c2 is not None and c2.created >= now and c2.updated == c2.created and c2.state == "draft"
    assert await store.get_campaign("nope") is None
    assert await store.delete_campaign("c1") is True
    assert await store.delete_campaign("c1") is False
    assert [c.id for c in await store.list_campaigns()] == ["c0", "c2"]


async def test_importing_the_same_records_again_adds_only_new_ids_and_leaves_stored_rows_alone(
    store: Store,
) -> None:
    await store.upsert_campaign(campaign("c1"))
    assert await store.add_campaign_records("c1", records("c1", ["r1", "r2", "r3"])) == 3
    again = records("c1", ["r2", "r4"], state="done")  # r2 exists: it is not overwritten
    again[0] = replace(again[0], number="0000000000")
    assert await store.add_campaign_records("c1", again) == 1
    assert await store.add_campaign_records("c1", records("c1", ["r1", "r2", "r3", "r4"])) == 0
    got = {r.id: r for r in await store.campaign_records("c1")}
    assert list(got) == ["r1", "r2", "r3", "r4"]
    assert got["r2"] == records("c1", ["r1", "r2"])[1]
    assert got["r4"].state == "done" and got["r4"].fields == {"name": "顧客 r4"}
    # A repeated id inside one import: the first one counts.
    dup = [CampaignRecord("c1", "r5", "111"), CampaignRecord("c1", "r5", "222")]
    assert await store.add_campaign_records("c1", dup) == 1
    assert (await store.get_campaign_record("c1", "r5")) == CampaignRecord("c1", "r5", "111")
    assert await store.get_campaign_record("c1", "missing") is None
    assert await store.add_campaign_records("c1", []) == 0


async def test_the_same_record_id_in_two_campaigns_is_two_records(store: Store) -> None:
    await store.upsert_campaign(campaign("c1"))
    await store.upsert_campaign(campaign("c2"))
    assert await store.add_campaign_records("c1", records("c1", ["r1"])) == 1
    assert await store.add_campaign_records("c2", records("c2", ["r1"])) == 1
    assert await store.count("campaign_records") == 2


async def test_records_come_back_in_import_order_paged_and_filtered_by_state_and_due_time(
    store: Store,
) -> None:
    await store.upsert_campaign(campaign("c1"))
    order = ["z9", "a1", "m5", "b2", "y8"]  # not the order of the ids
    await store.add_campaign_records("c1", records("c1", order[:3]))
    await store.add_campaign_records("c1", records("c1", order[3:]))
    assert await ids_of(store, "c1") == order
    assert await ids_of(store, "c1", limit=2) == order[:2]
    assert await ids_of(store, "c1", limit=2, offset=2) == order[2:4]
    assert await ids_of(store, "c1", offset=10) == []
    await store.update_campaign_records(
        [
            CampaignRecord("c1", "a1", "", state="retry", next_at=T0 + 600, updated=T0 + 1),
            CampaignRecord("c1", "b2", "", state="retry", next_at=T0 + 60, updated=T0 + 1),
            CampaignRecord("c1", "y8", "", state="done", updated=T0 + 1),
        ]
    )
    assert await ids_of(store, "c1", state="retry") == ["a1", "b2"]
    assert await ids_of(store, "c1", state="retry", due_before=T0 + 60) == ["b2"]
    assert await ids_of(store, "c1", state="pending") == ["z9", "m5"]
    assert await ids_of(store, "c1", due_before=T0) == ["z9", "m5", "y8"]


async def test_an_import_into_a_missing_campaign_or_naming_another_campaign_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="no campaign"):
        await store.add_campaign_records("ghost", records("ghost", ["r1"]))
    await store.upsert_campaign(campaign("c1"))
    mixed = records("c1", ["r1", "r2"]) + records("c2", ["r3"])
    with pytest.raises(StoreError, match="belongs to campaign"):
        await store.add_campaign_records("c1", mixed)
    assert await store.count("campaign_records") == 0  # nothing of the refused import was kept
    # A record that leaves its campaign empty is imported into the one named by the call.
    assert await store.add_campaign_records("c1", [CampaignRecord("", "r9", "0311112222")]) == 1
    assert await ids_of(store, "c1") == ["r9"]


async def test_a_hundred_thousand_records_import_at_once_and_a_repeat_adds_none(store: Store) -> None:
    await store.upsert_campaign(campaign("big"))
    n = 100_000
    recs = [
        CampaignRecord("big", f"r{i:06d}", f"090{i:08d}", customer_id=f"C{i}", fields={"plan": "gold"})
        for i in range(n)
    ]
    assert await store.add_campaign_records("big", recs) == n
    assert await store.add_campaign_records("big", recs) == 0
    assert await store.campaign_counts("big") == {"pending": n}
    tail = await store.campaign_records("big", limit=3, offset=n - 3)
    assert [r.id for r in tail] == [f"r{i:06d}" for i in range(n - 3, n)]
    assert tail[-1].fields == {"plan": "gold"}


async def test_concurrent_imports_into_one_campaign_keep_each_import_together(store: Store) -> None:
    await store.upsert_campaign(campaign("c1"))
    a = records("c1", [f"a{i:04d}" for i in range(2000)])
    b = records("c1", [f"b{i:04d}" for i in range(2000)])
    added = await asyncio.gather(store.add_campaign_records("c1", a), store.add_campaign_records("c1", b))
    assert added == [2000, 2000]
    got = await ids_of(store, "c1", limit=5000)
    want_a, want_b = [r.id for r in a], [r.id for r in b]
    assert got in (want_a + want_b, want_b + want_a)


async def test_record_updates_apply_only_when_newer_than_the_stored_row(store: Store) -> None:
    await store.upsert_campaign(campaign("c1"))
    await store.add_campaign_records("c1", records("c1", ["r1", "r2"], updated=T0))
    dialling = CampaignRecord("c1", "r1", "x", state="dialling", attempts=1, agent="a1", updated=T0 + 10)
    await store.update_campaign_records([dialling])
    late_retry = CampaignRecord("c1", "r1", "x", state="pending", attempts=0, updated=T0 + 5)
    same_time = CampaignRecord("c1", "r1", "x", state="done", attempts=9, updated=T0 + 10)
    unknown = CampaignRecord("c1", "nope", "x", state="done", updated=T0 + 100)
    await store.update_campaign_records([late_retry, same_time, unknown])
    r1 = await store.get_campaign_record("c1", "r1")
    assert r1 is not None
    assert (r1.state, r1.attempts, r1.agent, r1.updated) == ("dialling", 1, "a1", T0 + 10)
    # Only the tracked columns change; what the import brought stays.
    assert (r1.number, r1.customer_id, r1.fields) == ("09011110000", "C-r1", {"name": "顧客 r1"})
    # Two versions of one record in one batch: the newer wins, whatever their order.
    done = CampaignRecord(
        "c1", "r2", "", state="done", attempts=2, next_at=T0 + 50, last_result="connected", agent="a2",
        updated=T0 + 30,
    )  # fmt: skip
    retry = replace(done, state="retry", last_result="busy", agent="", updated=T0 + 20)
    await store.update_campaign_records([done, retry])
    r2 = await store.get_campaign_record("c1", "r2")
    assert r2 is not None
    assert (r2.state, r2.attempts, r2.next_at, r2.last_result, r2.agent) == (
        "done",
        2,
        T0 + 50,
        "connected",
        "a2",
    )
    await store.update_campaign_records([])
    assert await store.get_campaign_record("nope", "r1") is None


async def test_campaign_counts_give_records_per_state(store: Store) -> None:
    await store.upsert_campaign(campaign("c1"))
    await store.upsert_campaign(campaign("c2"))
    await store.add_campaign_records("c1", records("c1", [f"r{i}" for i in range(6)]))
    await store.add_campaign_records("c2", records("c2", ["r0"]))
    await store.update_campaign_records(
        [CampaignRecord("c1", f"r{i}", "", state="done", updated=T0) for i in range(3)]
        + [CampaignRecord("c1", "r3", "", state="failed", updated=T0)]
    )
    assert await store.campaign_counts("c1") == {"done": 3, "failed": 1, "pending": 2}
    assert await store.campaign_counts("c2") == {"pending": 1}
    assert await store.campaign_counts("none") == {}


async def test_one_node_at_a_time_holds_a_campaigns_dialling_lease(store: Store) -> None:
    await store.upsert_campaign(campaign("c1", state="running"))
    assert not await store.claim_campaign("nope", "node-a", T0 + 30, T0)
    assert await store.claim_campaign("c1", "node-a", T0 + 30, T0)
    assert not await store.claim_campaign("c1", "node-b", T0 + 40, T0 + 10)  # held by a
    assert await store.claim_campaign("c1", "node-a", T0 + 40, T0 + 10)  # a renews
    # Saving the campaign keeps the lease.
    await store.upsert_campaign(campaign("c1", state="running", name="renamed"))
    assert not await store.claim_campaign("c1", "node-b", T0 + 50, T0 + 20)
    # An expired lease (node a died) is taken over.
    assert await store.claim_campaign("c1", "node-b", T0 + 71, T0 + 41)
    assert not await store.claim_campaign("c1", "node-a", T0 + 72, T0 + 42)
    await store.release_campaign("c1", "node-a")  # not a's to release
    assert not await store.claim_campaign("c1", "node-a", T0 + 72, T0 + 42)
    await store.upsert_campaign(campaign("c1", state="paused"))
    await store.release_campaign("c1", "node-b")
    # Released, b stays named as who dialled last.
    assert await store.campaign_lease("c1") == CampaignLease("node-b", 0.0, "paused")
    assert not await store.claim_campaign("c1", "node-a", T0 + 72, T0 + 42)  # paused: nobody dials it
    await store.upsert_campaign(campaign("c1", state="running"))
    assert await store.claim_campaign("c1", "node-a", T0 + 72, T0 + 42)
    assert await store.campaign_lease("c1") == CampaignLease("node-a", T0 + 72, "running")
    assert await store.campaign_lease("nope") is None


async def test_deleting_a_campaign_deletes_its_call_list_and_keeps_its_attempt_history(store: Store) -> None:
    await store.upsert_campaign(campaign("c1"))
    await store.upsert_campaign(campaign("c2"))
    await store.add_campaign_records("c1", records("c1", ["r1", "r2"]))
    await store.add_campaign_records("c2", records("c2", ["r1"]))
    await store.write_events([sample_attempt(1, ts=T0, campaign="c1")])
    assert await store.delete_campaign("c1") is True
    assert await store.campaign_records("c1") == []
    assert await store.campaign_counts("c1") == {}
    assert await ids_of(store, "c2") == ["r1"]
    assert len(await store.campaign_attempts("c1")) == 1
    # A campaign created again under the same id starts with an empty list.
    await store.upsert_campaign(campaign("c1"))
    assert await store.add_campaign_records("c1", records("c1", ["r1"])) == 1


async def test_the_do_not_call_list_adds_each_number_once_and_answers_membership(store: Store) -> None:
    now = time.time()
    n = await store.add_dnc(
        [
            DncEntry("0312345678", "asked on call", T0),
            DncEntry("09011112222"),
            DncEntry("0312345678", "again"),
        ]
    )
    assert n == 2
    assert await store.add_dnc([DncEntry("09011112222", "dup"), DncEntry("+81312340000", "", T0 + 1)]) == 1
    assert await store.dnc_contains("0312345678") is True
    assert await store.dnc_contains("0312345679") is False
    entries = await store.list_dnc()
    assert [e.number for e in entries] == ["+81312340000", "0312345678", "09011112222"]
    assert entries[1] == DncEntry("0312345678", "asked on call", T0)  # the first entry stays
    assert entries[2].reason == "" and entries[2].added >= now  # added now
    assert await store.remove_dnc("0312345678") is True
    assert await store.remove_dnc("0312345678") is False
    assert await store.dnc_contains("0312345678") is False
    assert await store.add_dnc([]) == 0


async def test_a_due_callback_is_taken_by_one_node_only(store: Store) -> None:
    await store.upsert_scheduled_callback(ScheduledCallback("cb1", "0311111111", T0, "sales", created=T0, updated=T0))
    await store.upsert_scheduled_callback(
        ScheduledCallback("cb2", "0311112222", T0, "sales", state="cancelled", created=T0, updated=T0))
    assert await store.take_scheduled_callback("cb1", T0 + 5)
    assert not await store.take_scheduled_callback("cb1", T0 + 6)  # the other node
    assert not await store.take_scheduled_callback("cb2", T0 + 6)  # cancelled
    assert not await store.take_scheduled_callback("nope", T0 + 6)
    taken = await store.get_scheduled_callback("cb1")
    assert taken is not None and (taken.state, taken.updated) == ("offered", T0 + 5)


async def test_scheduled_callbacks_are_listed_by_due_time_filtered_by_state_and_due(store: Store) -> None:
    cbs = [
        ScheduledCallback("cb3", "0311113333", T0 + 300, "sales", created=T0, updated=T0),
        ScheduledCallback("cb1", "0311111111", T0 + 100, "sales", agent="a1", customer_id="C1", note="見積もり",
                          created=T0, updated=T0),
        ScheduledCallback("cb2", "0311112222", T0 + 200, "support", created=T0, updated=T0),
    ]  # fmt: skip
    for cb in cbs:
        await store.upsert_scheduled_callback(cb)
    assert [c.id for c in await store.scheduled_callbacks()] == ["cb1", "cb2", "cb3"]
    assert [c.id for c in await store.scheduled_callbacks(due_before=T0 + 200)] == ["cb1", "cb2"]  # inclusive
    assert await store.scheduled_callbacks(due_before=T0 + 99) == []
    assert (await store.scheduled_callbacks(due_before=T0 + 100))[0] == cbs[1]
    offered = replace(cbs[1], state="offered", call_uuid="u-77", created=T0 + 50, updated=T0 + 100)
    await store.upsert_scheduled_callback(offered)
    assert [c.id for c in await store.scheduled_callbacks(due_before=T0 + 200)] == ["cb2"]
    assert [c.id for c in await store.scheduled_callbacks(state="offered")] == ["cb1"]
    assert [c.id for c in await store.scheduled_callbacks(state=None)] == ["cb1", "cb2", "cb3"]
    assert await store.get_scheduled_callback("cb1") == replace(offered, created=T0)  # keeps created
    # A late retry of the older write does not bring the callback back to pending.
    await store.upsert_scheduled_callback(cbs[1])
    assert (await store.get_scheduled_callback("cb1")) == replace(offered, created=T0)
    now = time.time()
    await store.upsert_scheduled_callback(ScheduledCallback("cb4", "0311114444", T0, "sales"))
    cb4 = await store.get_scheduled_callback("cb4")
    assert cb4 is not None and cb4.created >= now and cb4.updated == cb4.created
    assert await store.get_scheduled_callback("nope") is None


async def test_campaign_attempts_land_in_their_table_once_however_often_a_batch_is_written(
    event_store: Store,
) -> None:
    store = event_store
    attempts = [sample_attempt(i, ts=T0 + i) for i in range(30)]
    retry = sample_attempt(3, ts=T0 + 900, attempt=2)  # record r000003 dialled again later
    other = sample_attempt(1, ts=T0 + 1, campaign="c9")
    batch = [*attempts, retry, other, QueueEvent(ts=T0, queue="q", call_uuid="u1", event="joined")]
    assert await store.write_events(batch) == len(batch)
    assert await store.write_events(batch) == 0  # a replay of a committed batch
    assert await store.write_events([*batch[:5], *batch]) == 0
    assert await store.event_ids("campaign_attempts") == sorted(
        e.id for e in batch if isinstance(e, CampaignAttempt)
    )
    assert await store.count("event_log") == 0  # attempts do not also go to the generic log
    rows = await store.campaign_attempts("camp1")
    assert [r["id"] for r in rows] == [e.id for e in (*attempts, retry)]  # by started, attempt
    busy = await store.campaign_attempts("camp1", "r000003")
    assert [(r["attempt"], r["result"]) for r in busy] == [(1, "busy"), (2, "busy")]
    first = busy[0]
    ev = attempts[3]
    assert first == {
        "id": ev.id, "ts": ev.ts, "campaign": "camp1", "record_id": "r000003", "attempt": 1,
        "number": ev.number, "result": "busy", "customer_id": "C3", "agent": "", "call_uuid": ev.call_uuid,
        "started": ev.started, "answered": None, "ended": ev.ended,
    }  # fmt: skip
    connected = (await store.campaign_attempts("camp1", "r000001"))[0]
    assert (connected["answered"], connected["agent"]) == (T0 + 1 - 12, "agent01")
    assert [r["id"] for r in await store.campaign_attempts("c9")] == [other.id]
    assert await store.campaign_attempts("none") == []


async def test_campaign_attempts_published_on_the_bus_are_stored_by_the_writer(
    store: Store, tmp_path: Path
) -> None:
    bus = EventBus()
    writer = StoreWriter(bus, store, tmp_path / "spool", batch_size=40, flush_interval=0.001)
    await writer.start()
    published = []
    for i in range(200):
        evs = (
            [sample_attempt(i, ts=T0 + i), *sample_call(i, ts=T0 + i)]
            if i % 4 == 0
            else [sample_attempt(i, ts=T0 + i)]
        )
        for ev in evs:
            bus.publish(ev)
            published.append(ev)
    await writer.stop()
    want = sorted(e.id for e in published if isinstance(e, CampaignAttempt))
    assert await store.event_ids("campaign_attempts") == want and len(want) == 200


async def test_an_attempt_with_a_value_of_the_wrong_type_is_refused_as_data(
    tmp_path: Path, pg_db: str
) -> None:
    for mode in ("copy", "unnest"):
        await reset_schema(pg_db)
        store = PostgresStore(pg_url(pg_db), spool_dir=tmp_path, write_mode=mode)
        try:
            await store.migrate()
            bad = CampaignAttempt(
                ts=T0, campaign="c", record_id="r", attempt="first", number="1", result="busy"
            )  # type: ignore[arg-type]
            with pytest.raises(StoreError):
                await store.write_events([bad])
            assert await store.count("campaign_attempts") == 0
        finally:
            await store.close()


# ---- upgrading a database made by the version 1 schema ----


def _v1_sqlite(path: Path) -> None:
    """A file as a node with only migration 1 left it, with one call in it."""
    with sqlite3.connect(path) as conn:
        conn.execute(MIGRATIONS_TABLE)
        for stmt in MIGRATIONS[0].statements:
            conn.execute(stmt)
        conn.execute("INSERT INTO schema_migrations VALUES (1, ?, ?)", (MIGRATIONS[0].name, T0))
        conn.execute(_V1_CDR, _V1_CDR_ROW)
    conn.close()


async def _v1_postgres(dbname: str) -> None:
    await reset_schema(dbname)
    conn = await asyncpg.connect(pg_url(dbname), timeout=10)
    try:
        async with conn.transaction():
            await conn.execute(MIGRATIONS_TABLE)
            for stmt in MIGRATIONS[0].statements:
                await conn.execute(stmt)
            await conn.execute("INSERT INTO schema_migrations VALUES (1, $1, $2)", MIGRATIONS[0].name, T0)
            await conn.execute(_V1_CDR.replace("?", "${}").format(*range(1, 19)), *_V1_CDR_ROW)
    finally:
        await conn.close()


_V1_CDR = (
    "INSERT INTO cdrs (id, ts, call_uuid, caller, callee, start_ts, answer_ts, end_ts, duration, billable, "
    "disposition, hangup_cause, hangup_side, trunk, did, queue, agent, customer_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_V1_CDR_ROW = (
    "cdr-v1", T0 + 60, "call-v1", "0311112222", "0120000000", T0, T0 + 5, T0 + 60, 60.0, 55,
    "answered", "normal_clearing", "caller", "", "", "sales", "a1", "",
)  # fmt: skip


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_version_1_database_upgrades_in_place_and_keeps_its_data(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        _v1_sqlite(tmp_path / "v1.db")
        url = "sqlite:///v1.db"
    else:
        dbname = request.getfixturevalue("pg_db")
        await _v1_postgres(dbname)
        url = pg_url(dbname)
    before = create_store(url, base_dir=tmp_path)
    try:
        st = await before.migration_status()
    finally:
        await before.close()
    assert st.current == 1 and [v for v, _ in st.pending] == [2] and LATEST == 2
    store = await open_store(url, base_dir=tmp_path)
    try:
        st = await store.migration_status()
        assert st.current == 2 and st.pending == ()
        assert st.applied[0] == (1, MIGRATIONS[0].name, T0)  # version 1 was not applied again
        assert [c.call_uuid for c in await store.recent_calls(number="0311112222")] == ["call-v1"]
        await store.upsert_campaign(campaign("c1"))
        assert await store.add_campaign_records("c1", records("c1", ["r1"])) == 1
        assert await store.write_events([sample_attempt(1, ts=T0)]) == 1
        assert await store.add_dnc([DncEntry("0311112222")]) == 1
        await store.upsert_scheduled_callback(ScheduledCallback("cb", "0311112222", T0, "sales"))
        assert len(await store.scheduled_callbacks()) == 1
    finally:
        await store.close()
    again = await open_store(url, base_dir=tmp_path)  # a restart: nothing left to apply
    try:
        assert (await again.migration_status()).applied == st.applied
        assert await again.count("campaign_records") == 1
    finally:
        await again.close()
