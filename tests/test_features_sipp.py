"""Feature codes from real SIPp phones: an agent pauses, gets ready, logs out and in again; a
supervisor listens in on an agent's call in progress."""

from __future__ import annotations

import asyncio

import pytest

from acd.model import AgentState
from softswitch.config import load_config
from tests.nodes import DOMAIN, running_node
from tests.peers import require_sipp, run_sipp, start_sipp, write_users_inf
from tests.test_queue_sipp import register_agent, write_node

pytestmark = pytest.mark.integration


async def dial_feature(node, tmp, user: str, code: str) -> None:
    inf = write_users_inf(tmp / f"feat-{user}.csv", [(user, f"pw-{user}")], DOMAIN)
    result = await run_sipp("uac_feature.xml", node.address("udp"), inf=inf, service=code, timeout=30)
    assert result.returncode == 0 and result.successful == 1, result.explain()


async def test_agent_feature_codes_change_the_agents_state(tmp_path):
    require_sipp()
    config = load_config(write_node(tmp_path, ["2001"], []))
    async with running_node(config) as node:
        await register_agent(node, tmp_path, "2001")
        engine = node.centre.engine
        assert engine.agent_state("2001") == AgentState.AVAILABLE  # registering logs the agent in
        await dial_feature(node, tmp_path, "2001", "*23")
        assert engine.agent_state("2001") == AgentState.PAUSED
        await dial_feature(node, tmp_path, "2001", "*24")
        assert engine.agent_state("2001") == AgentState.AVAILABLE
        await dial_feature(node, tmp_path, "2001", "*22")
        assert engine.agent_state("2001") == AgentState.OFFLINE
        await dial_feature(node, tmp_path, "2001", "*21")
        assert engine.agent_state("2001") == AgentState.AVAILABLE
        assert len(node.b2bua) == 0


async def test_supervisor_listens_to_an_agents_call_in_progress(tmp_path):
    require_sipp()
    config = load_config(write_node(tmp_path, ["2001"], ["3001", "2900"]))
    async with running_node(config) as node:
        agent_port = await register_agent(node, tmp_path, "2001")
        phone = await start_sipp("uas_answer.xml", None, port=agent_port, calls=1, timeout=40)
        await asyncio.sleep(0.3)
        caller_inf = write_users_inf(tmp_path / "caller.csv", [("3001", "pw-3001")], DOMAIN)
        caller = await start_sipp("uac_ivr_queue.xml", node.address("udp"), inf=caller_inf, service="700",
                                  timeout=40)
        # Wait until the agent is on the call, then the supervisor dials *31 2001.
        for _ in range(200):
            if node.centre.session_of_agent("2001") is not None:
                break
            await asyncio.sleep(0.05)
        assert node.centre.session_of_agent("2001") is not None
        sup_inf = write_users_inf(tmp_path / "sup.csv", [("2900", "pw-2900")], DOMAIN)
        supervisor = await start_sipp("uac_supervise.xml", node.address("udp"), inf=sup_inf, service="*312001",
                                      timeout=30)
        mixed = False
        for _ in range(60):
            if node.media._supervisions:
                mixed = True
                break
            await asyncio.sleep(0.05)
        sup = await supervisor.wait()
        assert sup.returncode == 0 and sup.successful == 1, sup.explain()
        assert mixed, "the supervisor was never mixed into the call"
        assert not node.media._supervisions  # undone when the supervisor hung up
        assert (await caller.wait()).successful == 1
        assert (await phone.wait()).successful == 1


async def test_supervision_asked_through_the_api_rings_the_supervisors_phone_and_mixes_it_in(tmp_path):
    require_sipp()
    config = load_config(write_node(tmp_path, ["2001"], ["3001", "2900"]))
    async with running_node(config) as node:
        agent_port = await register_agent(node, tmp_path, "2001")
        sup_port = await register_agent(node, tmp_path, "2900")
        phone = await start_sipp("uas_answer.xml", None, port=agent_port, calls=1, timeout=40)
        supervisor_phone = await start_sipp("uas_answer.xml", None, port=sup_port, calls=1, timeout=40)
        await asyncio.sleep(0.3)
        caller_inf = write_users_inf(tmp_path / "caller.csv", [("3001", "pw-3001")], DOMAIN)
        caller = await start_sipp("uac_ivr_queue.xml", node.address("udp"), inf=caller_inf, service="700",
                                  timeout=40)
        for _ in range(200):
            target = node.centre.session_of_agent("2001")
            if target is not None:
                break
            await asyncio.sleep(0.05)
        assert target is not None
        assert node.centre.supervise("whisper", "2900", target.call.uuid) is None
        mixed = False
        for _ in range(60):
            if node.media._supervisions:
                mixed = True
                break
            await asyncio.sleep(0.05)
        assert mixed, "the supervisor's phone was not mixed into the call"
        assert (await caller.wait()).successful == 1
        assert (await phone.wait()).successful == 1
        # When the agent's call ends the switch hangs up the supervisor too.
        assert (await supervisor_phone.wait()).successful == 1
        assert not node.media._supervisions and len(node.b2bua) == 0
