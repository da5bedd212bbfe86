"""The store's behaviour, proved against a real PostgreSQL and a real SQLite file alike."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from softswitch.events import (
    CDR,
    AgentStateChanged,
    AuthFailed,
    CallAnswered,
    CallEnded,
    CallStarted,
    CampaignAttempt,
    Event,
    EventBus,
    QueueEvent,
    RecordingSaved,
    RegistrationChanged,
)
from softswitch.store import (
    Agent,
    Registration,
    Store,
    StoreError,
    StoreWriter,
    User,
    create_store,
    open_store,
)
from softswitch.store.postgres import PostgresStore
from softswitch.store.schema import LATEST
from softswitch.store.testing import (
    pg_url,
    reset_schema,
    sample_attempt,
    sample_call,
    sample_misc,
    temporary_database_sync,
)

pytestmark = pytest.mark.integration

T0 = 1_790_000_000.0


@pytest.fixture(scope="session")
def pg_db() -> Iterator[str]:
    """A PostgreSQL database of this test session, random name, dropped at the end."""
    yield from temporary_database_sync("softswitch_store")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A freshly migrated store on each backend."""
    if request.param == "sqlite":
        url = "sqlite:///store.db"
    else:
        dbname = request.getfixturevalue("pg_db")
        await reset_schema(dbname)
        url = pg_url(dbname)
    s = await open_store(url, base_dir=tmp_path, spool_dir=tmp_path / "spool")
    yield s
    await s.close()


def cdr(call_uuid: str, *, caller: str = "0311112222", agent: str = "", queue: str = "", **kw: object) -> CDR:
    base: dict[str, object] = dict(
        ts=T0 + 100,
        call_uuid=call_uuid,
        caller=caller,
        callee="0120000000",
        start=T0,
        answer=T0 + 10,
        end=T0 + 100,
        disposition="answered",
        hangup_cause="normal_clearing",
        hangup_side="caller",
        queue=queue,
        agent=agent,
    )
    base.update(kw)
    return CDR(**base)  # type: ignore[arg-type]


async def test_migrations_are_recorded_and_reapplying_them_changes_nothing(store: Store) -> None:
    st = await store.migration_status()
    assert st.current == LATEST and st.pending == ()
    again = await store.migrate()
    assert again.applied == st.applied


async def test_a_batch_written_twice_is_stored_once_with_its_legs(store: Store) -> None:
    c = cdr("u1", agent="a1", legs=(("cid-a", "inbound", "trunk"), ("cid-b", "outbound", "a1")))
    batch = [c, QueueEvent(ts=T0, queue="q", call_uuid="u1", event="joined")]
    assert await store.write_events(batch) == 2
    assert await store.write_events(batch) == 0
    assert await store.count("cdrs") == 1
    assert await store.count("call_legs") == 2
    assert await store.count("queue_events") == 1
    # The replayed CDR must not count the caller's call with the agent a second time.
    assert [(a.caller, a.agent, a.count) for a in await store.load_affinity()] == [("0311112222", "a1", 1)]


async def test_duplicate_ids_inside_one_batch_are_stored_once(store: Store) -> None:
    ev = QueueEvent(ts=T0, queue="q", call_uuid="u1", event="joined")
    c = cdr("u2", agent="a1")
    await store.write_events([ev, ev, c, c])
    assert await store.count("queue_events") == 1
    assert (await store.load_affinity())[0].count == 1


async def test_every_event_kind_lands_in_its_table(store: Store) -> None:
    evs = [
        CallStarted(ts=T0, call_uuid="u1", caller="0311112222", callee="100"),
        CallAnswered(ts=T0 + 1, call_uuid="u1", answered_by="a1"),
        CallEnded(ts=T0 + 2, call_uuid="u1", cause="normal_clearing", side="caller"),
        AgentStateChanged(ts=T0, agent="a1", state="available", previous="offline"),
        RecordingSaved(ts=T0, call_uuid="u1", path="/r/u1.wav", duration=2.0, sha256="ab" * 32),
        AuthFailed(ts=T0, source="udp:203.0.113.9:5060", username="x", method="REGISTER", banned=True),
        RegistrationChanged(ts=T0, aor="sip:1@x", contact="sip:1@h", expires=60, source="udp:h:5060"),
        sample_attempt(1, ts=T0),
    ]
    assert await store.write_events(evs) == len(evs)
    assert await store.count("event_log") == 3
    assert await store.count("agent_states") == 1
    assert await store.count("recordings") == 1
    assert await store.count("security_events") == 1
    assert await store.count("registrations") == 1
    assert await store.event_ids("campaign_attempts") == [evs[-1].id]
    assert sorted(await store.event_ids("event_log")) == sorted(e.id for e in evs[:3])


async def test_recent_calls_are_found_by_number_or_customer_id_newest_first(store: Store) -> None:
    await store.write_events(
        [
            cdr("old", start=T0, end=T0 + 50, agent="a1", queue="q"),
            cdr("new", start=T0 + 1000, answer=T0 + 1005, end=T0 + 1100, agent="a2", queue="q"),
            cdr("other", caller="0399998888", customer_id="C42", start=T0 + 500, end=T0 + 600),
        ]
    )
    calls = await store.recent_calls(number="0311112222")
    assert [(c.call_uuid, c.agent) for c in calls] == [("new", "a2"), ("old", "a1")]
    assert [c.call_uuid for c in await store.recent_calls(number="0311112222", limit=1)] == ["new"]
    assert [c.call_uuid for c in await store.recent_calls(customer_id="C42")] == ["other"]
    assert await store.recent_calls(number="0000") == []
    with pytest.raises(StoreError):
        await store.recent_calls()


async def test_missed_calls_are_a_users_unanswered_calls_newest_first(store: Store) -> None:
    await store.write_events(
        [
            cdr("answered", callee="1001", start=T0, answer=T0 + 5, end=T0 + 50),
            cdr("busy", callee="1001", start=T0 + 100, answer=None, end=T0 + 101, disposition="busy"),
            cdr("rang", callee="1001", start=T0 + 200, answer=None, end=T0 + 230, disposition="no-answer"),
            cdr("someone-else", callee="1002", start=T0 + 300, answer=None, end=T0 + 301, disposition="busy"),
        ]
    )
    assert [c.call_uuid for c in await store.missed_calls("1001")] == ["rang", "busy"]
    assert [c.call_uuid for c in await store.missed_calls("1001", limit=1)] == ["rang"]
    assert await store.missed_calls("1003") == []


async def test_affinity_counts_answered_calls_per_agent_and_keeps_the_latest_time(store: Store) -> None:
    await store.write_events(
        [
            cdr("c1", agent="a1", end=T0 + 100),
            cdr("c2", agent="a1", end=T0 + 300),
            cdr("c3", agent="a2", end=T0 + 200),
            cdr("c4", agent="a3", answer=None, disposition="cancelled"),  # never answered
            cdr("c5", agent=""),  # no agent involved
        ]
    )
    await store.upsert_affinity("0311112222", "a2", T0 + 50)  # older than the stored last_handled
    got = {(a.agent): (a.count, a.last_handled) for a in await store.load_affinity()}
    assert got == {"a1": (2, T0 + 300), "a2": (2, T0 + 200)}


async def test_affinity_is_keyed_by_customer_id_when_the_call_had_one(store: Store) -> None:
    await store.write_events(
        [
            cdr("c1", agent="a1", customer_id="C42"),
            cdr("c2", caller="09011112222", agent="a1", customer_id="C42"),
        ]
    )
    assert [(a.caller, a.agent, a.count) for a in await store.load_affinity()] == [("C42", "a1", 2)]


async def test_registrations_persist_live_bindings_and_removals_are_not_undone_by_replays(
    store: Store,
) -> None:
    bound = RegistrationChanged(ts=T0, aor="sip:1@x", contact="sip:1@h1", expires=3600, source="udp:h1:5060")
    short = RegistrationChanged(ts=T0, aor="sip:2@x", contact="sip:2@h2", expires=30, source="udp:h2:5060")
    removed = RegistrationChanged(
        ts=T0 + 10, aor="sip:1@x", contact="sip:1@h1", expires=0, source="udp:h1:5060", action="removed"
    )
    await store.write_events([bound, short])
    assert [r.aor for r in await store.load_registrations(T0 + 1)] == ["sip:1@x", "sip:2@x"]
    assert [r.aor for r in await store.load_registrations(T0 + 60)] == ["sip:1@x"]  # sip:2 expired
    await store.write_events([removed])
    await store.write_events([bound])  # an old event replayed from the spool
    assert [r.aor for r in await store.load_registrations(T0 + 11)] == ["sip:2@x"]
    await store.upsert_registration(
        Registration("sip:3@x", "sip:3@h3", expires_at=T0 + 500, source="tcp:h3:5060", updated=T0 + 20)
    )
    assert [(r.aor, r.expires_at) for r in await store.load_registrations(T0 + 30)] == [("sip:3@x", T0 + 500)]
    await store.delete_registration("sip:3@x", "sip:3@h3", T0 + 40)
    assert await store.load_registrations(T0 + 41) == []


async def test_queue_stats_give_offered_answered_abandoned_service_level_asa_and_aht(store: Store) -> None:
    evs: list[Event] = []
    # Three answered after 5, 15 and 40 s, one abandoned after 30 s, one answered elsewhere.
    for n, wait in (("c1", 5.0), ("c2", 15.0), ("c3", 40.0)):
        evs.append(QueueEvent(ts=T0, queue="sales", call_uuid=n, event="joined"))
        evs.append(
            QueueEvent(ts=T0 + wait, queue="sales", call_uuid=n, event="answered", agent="a", wait=wait)
        )
        evs.append(cdr(n, queue="sales", agent="a", answer=T0 + wait, end=T0 + wait + 100 + wait))
    evs.append(QueueEvent(ts=T0, queue="sales", call_uuid="c4", event="joined"))
    evs.append(QueueEvent(ts=T0 + 30, queue="sales", call_uuid="c4", event="abandoned", wait=30.0))
    evs.append(QueueEvent(ts=T0, queue="support", call_uuid="c5", event="joined"))
    evs.append(QueueEvent(ts=T0 + 3000, queue="sales", call_uuid="late", event="joined"))  # outside
    # Abandoned, came straight back on the same call and was answered: one answered call.
    evs.append(QueueEvent(ts=T0, queue="sales", call_uuid="c6", event="joined"))
    evs.append(QueueEvent(ts=T0 + 8, queue="sales", call_uuid="c6", event="abandoned", wait=8.0))
    evs.append(QueueEvent(ts=T0 + 12, queue="sales", call_uuid="c6", event="answered", agent="a", wait=12.0))
    await store.write_events(evs)
    st = await store.queue_stats("sales", T0, T0 + 3600 - 1000, sl_threshold=20)
    assert (st.offered, st.answered, st.abandoned, st.answered_within) == (5, 4, 1, 3)
    assert st.service_level == pytest.approx(3 / 5)  # the ACD's: within threshold / (answered + abandoned)
    assert st.asa == pytest.approx((5 + 15 + 40 + 12) / 4)
    assert st.aht == pytest.approx(100 + 20.0)
    # A queue whose calls were logged from the answer on (no "joined" line) still counts them.
    await store.write_events([QueueEvent(ts=T0, queue="vip", call_uuid="v1", event="answered", wait=3.0)])
    vip = await store.queue_stats("vip", T0, T0 + 10)
    assert (vip.offered, vip.answered, vip.service_level) == (1, 1, 1.0)
    empty = await store.queue_stats("nobody", T0, T0 + 10)
    assert (empty.offered, empty.service_level, empty.asa, empty.aht) == (0, None, None, None)


async def test_users_and_agents_can_be_created_replaced_listed_and_deleted(store: Store) -> None:
    await store.upsert_user(User("u1", "山田 太郎", "ha1", True))
    await store.upsert_user(User("u2", "Suzuki"))
    await store.upsert_agent(Agent("a1", "u1", {"billing": 80, "ja": 100}))
    await store.upsert_user(User("u1", "山田 花子", "ha1b", False))
    assert await store.list_users() == [
        User("u1", "山田 花子", "ha1b", False),
        User("u2", "Suzuki", "", True),
    ]
    assert await store.list_agents() == [Agent("a1", "u1", {"billing": 80, "ja": 100}, True)]
    with pytest.raises(StoreError):
        await store.upsert_agent(Agent("a2", "nobody"))  # its user must exist
    assert await store.delete_user("u1") is True
    assert await store.list_agents() == []  # deleting the user removed its agent
    assert await store.delete_user("u1") is False
    assert await store.delete_agent("a1") is False


async def test_writer_stores_every_published_event_by_the_time_it_stops(store: Store, tmp_path: Path) -> None:
    bus = EventBus()
    writer = StoreWriter(bus, store, tmp_path / "spool", batch_size=50, flush_interval=0.001)
    await writer.start()
    published = []
    for i in range(300):
        extra = [*sample_misc(i, ts=T0 + i), sample_attempt(i, ts=T0 + i)] if i % 10 == 0 else []
        for ev in sample_call(i, ts=T0 + i) + extra:
            bus.publish(ev)
            published.append(ev)
    await writer.stop()
    cdr_ids = sorted(e.id for e in published if isinstance(e, CDR))
    assert await store.event_ids("cdrs") == cdr_ids
    assert await store.count("queue_events") == sum(isinstance(e, QueueEvent) for e in published)
    assert await store.event_ids("campaign_attempts") == sorted(
        e.id for e in published if isinstance(e, CampaignAttempt)
    )
    assert writer.spooled == 0 and writer.written == len(published)


async def test_writer_sets_refused_events_aside_and_stores_the_rest(store: Store, tmp_path: Path) -> None:
    bus = EventBus()
    writer = StoreWriter(bus, store, tmp_path / "spool", batch_size=100, flush_interval=0.01)
    await writer.start()
    good = [QueueEvent(ts=T0 + i, queue="q", call_uuid=f"u{i}", event="joined") for i in range(20)]
    bad = QueueEvent(ts=T0, queue={"not": "text"}, call_uuid="bad", event="joined")  # type: ignore[arg-type]
    for ev in good[:10] + [bad] + good[10:]:
        bus.publish(ev)
    await writer.stop()
    assert await store.event_ids("queue_events") == sorted(e.id for e in good)
    assert writer.rejected == 1
    rejected = (tmp_path / "spool" / "rejected.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"]["id"] for line in rejected] == [bad.id]


async def test_registrations_written_through_the_writer_are_loaded_again_after_a_restart(
    store: Store, tmp_path: Path
) -> None:
    bus = EventBus()
    writer = StoreWriter(bus, store, tmp_path / "spool", flush_interval=0.001)
    await writer.start()
    bus.publish(
        RegistrationChanged(ts=T0, aor="sip:1@x", contact="sip:1@h", expires=600, source="udp:h:5060")
    )
    bus.publish(
        RegistrationChanged(ts=T0, aor="sip:2@x", contact="sip:2@h", expires=600, source="tcp:h:5061")
    )
    bus.publish(RegistrationChanged(ts=T0 + 5, aor="sip:2@x", contact="sip:2@h", expires=0, source="tcp:h:5061",
                                    action="removed"))  # fmt: skip
    await writer.stop()
    again = await open_store(store.url, base_dir=tmp_path)  # a new process on the same database
    try:
        regs = await again.load_registrations(T0 + 10)
    finally:
        await again.close()
    assert [(r.aor, r.contact, r.expires_at, r.source) for r in regs] == [
        ("sip:1@x", "sip:1@h", T0 + 600, "udp:h:5060")
    ]


async def test_a_backlog_past_its_bound_spills_to_the_spool_and_still_arrives_once(
    store: Store, tmp_path: Path
) -> None:
    bus = EventBus()
    writer = StoreWriter(bus, store, tmp_path / "spool", batch_size=25, max_backlog=50, retry_interval=0.01)
    await writer.start()
    evs = [ev for i in range(100) for ev in sample_call(i, ts=T0 + i)]
    for ev in evs:  # a burst with no await in between: the writer cannot keep up with it
        bus.publish(ev)
    await writer.drain(limit=30)
    await writer.stop()
    assert writer.spooled > 0 and writer.replayed == writer.spooled
    assert await store.event_ids("cdrs") == sorted(e.id for e in evs if isinstance(e, CDR))
    assert await store.count("queue_events") == sum(isinstance(e, QueueEvent) for e in evs)


async def test_nodes_migrating_one_postgres_database_at_once_apply_each_version_once(
    pg_db: str, tmp_path: Path
) -> None:
    await reset_schema(pg_db)
    stores = [create_store(pg_url(pg_db), base_dir=tmp_path) for _ in range(3)]
    try:
        results = await asyncio.gather(*(s.migrate() for s in stores))
    finally:
        for s in stores:
            await s.close()
    assert all(r.current == LATEST and r.pending == () for r in results)
    assert len({r.applied for r in results}) == 1 and len(results[0].applied) == LATEST


async def test_the_unnest_write_mode_stores_the_same_rows_once(pg_db: str, tmp_path: Path) -> None:
    await reset_schema(pg_db)
    store = PostgresStore(pg_url(pg_db), spool_dir=tmp_path, write_mode="unnest")
    try:
        await store.migrate()
        evs = [ev for i in range(30) for ev in sample_call(i, ts=T0 + i, caller="0311112222", agent="a1")]
        evs += sample_misc(1, ts=T0) + [sample_attempt(i, ts=T0 + i) for i in range(5)]
        assert await store.write_events(evs) == len(evs)
        assert await store.write_events(evs) == 1  # only the registration upsert counts again
        assert await store.event_ids("cdrs") == sorted(e.id for e in evs if isinstance(e, CDR))
        assert await store.count("call_legs") == 60
        assert await store.event_ids("campaign_attempts") == sorted(
            e.id for e in evs if isinstance(e, CampaignAttempt)
        )
        assert [(a.caller, a.count) for a in await store.load_affinity()] == [("0311112222", 30)]
    finally:
        await store.close()
