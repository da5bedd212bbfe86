"""Click-to-call over the real API and real SIPp phones: the agent's phone rings first, then the
customer is dialled; the call is recorded and its CDR carries the customer id."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from softswitch.app import Node
from softswitch.events import CDR, RecordingSaved
from tests.nodes import DOMAIN, node_config, running_node, wait_for, wait_for_cdrs
from tests.peers import SippProcess, free_port, require_sipp, run_sipp, start_sipp, write_users_inf

pytestmark = pytest.mark.integration


async def register(node, tmp: Path, user: str, password: str) -> int:
    port = free_port()
    inf = write_users_inf(tmp / f"reg-{user}.csv", [(user, password)], DOMAIN)
    result = await run_sipp("register_only.xml", node.address("udp"), inf=inf, port=port)
    assert result.returncode == 0 and result.successful == 1, result.explain()
    return port


@contextlib.asynccontextmanager
async def agent_and_customer(tmp_path: Path) -> AsyncIterator[tuple[Node, list, SippProcess, SippProcess]]:
    """A node with agent 2001 and customer 3001 registered as SIPp phones: the agent answers and
    waits, the customer answers and hangs up half a second later."""
    require_sipp()
    directory = {"users": [
        {"id": "2001", "password": "pw-2001", "agent": {"skills": {"sales": 5}}},
        {"id": "3001", "password": "pw-3001"},
    ]}
    tokens = [{"token": "agent-2001-token", "role": "agent", "agent": "2001"},
              {"token": "agent-2002-token", "role": "agent", "agent": "2002"}]
    config = node_config(tmp_path, directory=directory, api={"tokens": tokens},
                         media={"recordings_dir": str(tmp_path / "rec")})
    async with running_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        agent_port = await register(node, tmp_path, "2001", "pw-2001")
        customer_port = await register(node, tmp_path, "3001", "pw-3001")
        agent = await start_sipp("uas_answer.xml", None, port=agent_port, calls=1, timeout=30)
        customer = await start_sipp("uas_answer_then_bye.xml", None, port=customer_port, calls=1, timeout=30)
        await asyncio.sleep(0.3)
        yield node, events, agent, customer


async def test_click_to_call_rings_the_agent_then_the_customer_and_records_the_call(tmp_path):
    async with agent_and_customer(tmp_path) as (node, events, agent, customer):
        api = f"http://{node.config.api.host}:{node.api.port}"
        async with httpx.AsyncClient(base_url=api) as http:
            other = await http.post("/api/calls", json={"number": "3001", "agent": "2001"},
                                    headers={"Authorization": "Bearer agent-2002-token"})
            assert other.status_code == 403  # an agent places calls only for themselves
            r = await http.post("/api/calls", json={"number": "3001", "customer_id": "C-9"},
                                headers={"Authorization": "Bearer agent-2001-token"})
            assert r.status_code == 200, r.text
            assert r.json()["result"] == {"ringing": "2001"}
        assert (await customer.wait()).successful == 1
        assert (await agent.wait()).successful == 1
        await wait_for(lambda: any(isinstance(e, RecordingSaved) for e in events))
        await wait_for_cdrs(events)
        (cdr,) = [e for e in events if isinstance(e, CDR)]
        assert (cdr.agent, cdr.customer_id, cdr.disposition) == ("2001", "C-9", "answered")
        assert [leg[2] for leg in cdr.legs] == ["2001", "3001"]
        (rec,) = [e for e in events if isinstance(e, RecordingSaved)]
        assert rec.call_uuid == cdr.call_uuid
        data = await asyncio.to_thread(Path(rec.path).read_bytes)
        # SIPp phones send no RTP, so the file holds (almost) nothing; the audio itself is checked
        # with real softphones in test_baresip_media.py.
        assert hashlib.sha256(data).hexdigest() == rec.sha256 and rec.channels == 2


async def test_click_to_call_as_a_cti_command_on_the_agents_websocket(tmp_path):
    async with agent_and_customer(tmp_path) as (node, events, agent, customer):
        url = f"ws://{node.config.api.host}:{node.api.port}/ws/events?token=agent-2001-token"
        async with connect(url) as ws:
            await ws.send(json.dumps({"id": "c1", "method": "POST", "path": "/api/calls",
                                      "body": {"number": "3001", "customer_id": "C-10"}}))
            async with asyncio.timeout(5):
                while (reply := json.loads(await ws.recv()))["kind"] != "reply":
                    pass
            assert reply["id"] == "c1" and reply["status"] == 200, reply
            assert reply["result"]["result"] == {"ringing": "2001"}
        assert (await customer.wait()).successful == 1
        assert (await agent.wait()).successful == 1
        await wait_for_cdrs(events)
    (cdr,) = [e for e in events if isinstance(e, CDR)]
    assert (cdr.agent, cdr.customer_id, cdr.disposition) == ("2001", "C-10", "answered")
