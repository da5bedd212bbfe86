"""The API on the node's real contact centre (`NodeCentre`): a SIPp caller goes through the IVR into
the queue, the agent's desktop gets the screen pop while their SIPp phone rings, and REST drives
the agent's state on the node's own ACD."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from websockets.asyncio.client import connect

from softswitch.api import ApiServer
from softswitch.api.nodecentre import NodeCentre
from softswitch.config import ApiSettings, load_config
from tests.nodes import DOMAIN, running_node
from tests.peers import free_port, require_sipp, start_sipp, write_users_inf
from tests.test_api_ws import UAS_RING_THEN_ANSWER, read_until
from tests.test_queue_sipp import register_agent, write_node

pytestmark = pytest.mark.integration


async def test_screen_pop_from_the_ivr_queue_reaches_the_agent_before_the_phone_answers_and_rest_drives_the_node(
    tmp_path,
):
    require_sipp()
    config = load_config(write_node(tmp_path, ["2001"], ["3001"]))
    settings = ApiSettings(listen=f"127.0.0.1:{free_port(kind=socket.SOCK_STREAM)}", tokens=[
        {"token": "t-2001", "role": "agent", "agent": "2001"}, {"token": "t-admin", "role": "admin"}])
    async with running_node(config) as node:
        # Replace the node's own API (no tokens in this config) by one with the test's tokens.
        if node.api is not None:
            await node.api.stop()
        api = node.api = ApiServer(node, NodeCentre(node), settings)
        await api.start()
        try:
            async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": "Bearer t-2001"}) as http:
                r = await http.get("/api/agents/2001")
                assert r.status_code == 200 and r.json()["state"] == "offline"
                port = await register_agent(node, tmp_path, "2001")  # the node logs a registered agent in
                assert (await http.get("/api/agents/2001")).json()["state"] == "available"
                scenario = tmp_path / "uas_ring_then_answer.xml"
                scenario.write_text(UAS_RING_THEN_ANSWER)
                phone = await start_sipp(scenario, None, port=port, calls=1, timeout=40)
                async with connect(f"ws://127.0.0.1:{api.port}/ws/events?token=t-2001") as desktop:
                    await asyncio.sleep(0.3)
                    inf = write_users_inf(tmp_path / "caller.csv", [("3001", "pw-3001")], DOMAIN)
                    uac = await start_sipp("uac_ivr_queue.xml", node.address("udp"), inf=inf, service="700",
                                           timeout=40)
                    seen = await read_until(
                        desktop, lambda m: m["kind"] == "queue_event" and m["event"] == "answered", timeout=20)
                    kinds = [m["kind"] for m in seen]
                    assert "screen_pop" in kinds, kinds
                    pop = seen[kinds.index("screen_pop")]
                    answered = seen[-1]
                    assert pop["agent"] == "2001" and pop["queue"] == "support" and pop["caller"] == "3001"
                    assert pop["call_uuid"] == answered["call_uuid"]
                    assert pop["wait"] >= 0.0 and pop["history"] == []
                    assert pop["_received"] < answered["ts"], (pop["_received"], answered["ts"])
                    calls = (await http.get("/api/calls", headers={"Authorization": "Bearer t-admin"})).json()
                    assert [c["call_uuid"] for c in calls["calls"]] == [pop["call_uuid"]]
                    r = await http.post(f"/api/calls/{pop['call_uuid']}/supervise",
                                        json={"mode": "listen", "supervisor": "3001"},
                                        headers={"Authorization": "Bearer t-admin"})
                    # The node would ring the supervisor's phone; 3001 has no registration to ring.
                    assert r.status_code == 409 and "supervisor-not-registered" in r.json()["detail"]
                for proc in (uac, phone):
                    result = await proc.wait()
                    assert result.returncode == 0 and result.successful == 1, result.explain()
                # After the call: the agent pauses and comes back through REST, on the node's engine.
                for _ in range(40):
                    if (await http.get("/api/agents/2001")).json()["state"] == "available":
                        break
                    await asyncio.sleep(0.05)
                r = await http.post("/api/agents/2001/pause", json={"reason": "break"})
                assert (r.status_code, r.json()["state"], r.json()["reason"]) == (200, "paused", "break")
                assert node.centre.engine.agent_state("2001").value == "paused"
                r = await http.post("/api/agents/2001/ready")
                assert r.json()["state"] == "available"
                queues = (await http.get("/api/queues")).json()["queues"]
                (support,) = [q for q in queues if q["queue"] == "support"]
                assert (support["offered"], support["answered"], support["service_level"]) == (1, 1, 1.0)
                admin = {"Authorization": "Bearer t-admin"}
                r = await http.post("/api/dialplan/reload", headers=admin)
                assert r.status_code == 200 and r.json()["reloaded"] is True
                r = await http.post("/api/calls/x/supervise", json={"mode": "listen", "supervisor": "2001"},
                                    headers=admin)
                assert r.status_code == 404
        finally:
            await api.stop()
