"""Blind transfer by the first party of an anchored call, with real SIPp phones: an agent who
called a customer out (click-to-call over the API) transfers them to a colleague with REFER."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from softswitch.events import CDR
from tests.nodes import DOMAIN, node_config, running_node, wait_for, wait_for_cdrs
from tests.peers import free_port, require_sipp, run_sipp, start_sipp, write_users_inf

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _sipp_present() -> None:
    require_sipp()


async def register(node, tmp: Path, user: str) -> int:
    port = free_port()
    inf = write_users_inf(tmp / f"reg-{user}.csv", [(user, f"pw-{user}")], DOMAIN)
    result = await run_sipp("register_only.xml", node.address("udp"), inf=inf, port=port)
    assert result.returncode == 0 and result.successful == 1, result.explain()
    return port


async def test_an_agent_who_called_a_customer_out_blind_transfers_them_to_a_colleague(tmp_path):
    directory = {"users": [
        {"id": "2001", "password": "pw-2001", "agent": {"skills": {"sales": 5}}},
        {"id": "2002", "password": "pw-2002"},
        {"id": "3001", "password": "pw-3001"},
    ]}
    tokens = [{"token": "agent-2001-token", "role": "agent", "agent": "2001"}]
    config = node_config(tmp_path, directory=directory, api={"tokens": tokens},
                         media={"recordings_dir": str(tmp_path / "rec")})
    async with running_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        ports = {u: await register(node, tmp_path, u) for u in ("2001", "2002", "3001")}
        # The agent answers, then REFERs the customer to 2002 and is hung up by the switch.
        agent = await start_sipp("uas_answer_refer.xml", None, port=ports["2001"], timeout=30,
                                 extra=["-key", "refer_to", "2002"])
        customer = await start_sipp("uas_answer.xml", None, port=ports["3001"], timeout=30)  # BYE at the end
        colleague = await start_sipp("uas_answer_then_bye.xml", None, port=ports["2002"], timeout=30)
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=f"http://{node.config.api.host}:{node.api.port}") as http:
            r = await http.post("/api/calls", json={"number": "3001"},
                                headers={"Authorization": "Bearer agent-2001-token"})
            assert r.status_code == 200, r.text
        for p in (agent, colleague, customer):
            result = await p.wait()
            assert result.returncode == 0 and result.successful == 1, result.explain()
        await wait_for_cdrs(events)
        (cdr,) = [e for e in events if isinstance(e, CDR)]
        assert cdr.disposition == "answered" and cdr.hangup_side == "caller"  # the colleague, now first party
        assert [leg[2] for leg in cdr.legs] == ["2001", "3001", "2002"]
        assert await wait_for(lambda: len(node.b2bua) == 0)
