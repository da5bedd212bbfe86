"""A node keeps what matters across restarts: registrations come back, CDRs are in the database,
on the embedded SQLite store and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import pytest

from softswitch.store import open_store
from softswitch.store.testing import pg_url, temporary_database_sync
from tests.nodes import DOMAIN, make_users, node_config, running_node
from tests.peers import free_port, require_sipp, run_sipp, start_sipp, write_users_inf

pytestmark = pytest.mark.integration

@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """The node's database URL: an SQLite file, or a fresh PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'node.db'}"
        return
    for name in temporary_database_sync("softswitch_node"):
        yield pg_url(name)


async def test_registrations_survive_a_restart(tmp_path, database):
    require_sipp()
    users = make_users(3)
    config = node_config(tmp_path, users=users, database=database)
    inf = write_users_inf(tmp_path / "users.csv", users, DOMAIN)
    async with running_node(config) as node:
        result = await run_sipp("register_only.xml", node.address("udp"), inf=inf, calls=3, rate=20)
        assert result.returncode == 0 and result.successful == 3, result.explain()
    async with running_node(config) as node:
        now = time.time()
        assert node.registrar.count(now) == 3
        (binding,) = node.registrar.lookup(users[0][0], now)
        assert binding.contact.startswith(f"sip:{users[0][0]}@127.0.0.1:")
        assert 3500 < binding.expires_at - now <= 3600


async def test_a_call_leaves_its_cdr_and_legs_in_the_database(tmp_path, database):
    require_sipp()
    users = make_users(2)
    caller, callee = users
    config = node_config(tmp_path, users=users, database=database)
    async with running_node(config) as node:
        port = free_port()
        reg = await run_sipp("register_only.xml", node.address("udp"), port=port,
                             inf=write_users_inf(tmp_path / "callee.csv", [callee], DOMAIN))
        assert reg.returncode == 0, reg.explain()
        uas = await start_sipp("uas_answer.xml", None, port=port, timeout=30)
        await asyncio.sleep(0.3)
        uac = await run_sipp("uac_call.xml", node.address("udp"), service=callee[0], timeout=30,
                             inf=write_users_inf(tmp_path / "caller.csv", [caller], DOMAIN))
        assert uac.returncode == 0 and uac.successful == 1, uac.explain()
        assert (await uas.wait()).returncode == 0
    # The node has stopped: everything it published is in the database now.
    store = await open_store(database, base_dir=tmp_path)
    try:
        assert await store.count("cdrs") == 1
        assert await store.count("call_legs") == 2
        (record,) = await store.recent_calls(number=caller[0])
        assert record.disposition == "answered"
    finally:
        await store.close()


async def test_an_agent_registered_before_a_restart_is_available_after_it(tmp_path):
    require_sipp()
    directory = {"users": [{"id": "2001", "password": "pw-2001", "agent": {"skills": {"support": 5}}}]}
    config = node_config(tmp_path, directory=directory)
    inf = write_users_inf(tmp_path / "agent.csv", [("2001", "pw-2001")], DOMAIN)
    async with running_node(config) as node:
        result = await run_sipp("register_only.xml", node.address("udp"), inf=inf, calls=1, rate=10)
        assert result.returncode == 0, result.explain()
        assert node.centre.engine.agent_state("2001").value == "available"
    async with running_node(config) as node:
        assert node.centre.engine.agent_state("2001").value == "available"


async def test_who_handled_a_caller_is_remembered_across_a_restart(tmp_path, database):
    import time as _time

    from softswitch.events import CDR

    directory = {"users": [{"id": "2001", "password": "pw-2001", "agent": {"skills": {"support": 5}}}]}
    config = node_config(tmp_path, directory=directory, database=database)
    now = _time.time()
    async with running_node(config) as node:
        node.bus.publish(CDR(ts=now, call_uuid="handled-1", caller="0312345678", callee="700", start=now - 60,
                             answer=now - 50, end=now, disposition="answered", hangup_cause="normal",
                             hangup_side="caller", queue="support", agent="2001"))
        assert node.writer is not None
        await node.writer.drain()
    async with running_node(config) as node:
        assert node.centre.engine.affinity.recent("0312345678", _time.time()) == ["2001"]
