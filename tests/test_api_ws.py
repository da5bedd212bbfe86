"""The CTI WebSocket over real sockets: who sees what, screen pops with the caller's history, and
the screen pop reaching the agent while their (SIPp) phone still rings."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from softswitch.events import CDR, CallAnswered, CallEnded, CallStarted
from tests.nodes import DOMAIN, make_users
from tests.peers import free_port, require_sipp, run_sipp, start_sipp, write_users_inf
from tests.test_api_common import TOKENS, api_node, auth


def ws_url(api: Any, role: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"token": TOKENS[role], **params}.items())
    return f"ws://127.0.0.1:{api.port}/ws/events?{query}"


async def read_until(ws: ClientConnection, pred: Any, timeout: float = 3.0) -> list[dict[str, Any]]:
    """Messages received until one satisfies `pred` (included), with their arrival times."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            msg["_received"] = time.time()
            seen.append(msg)
            if pred(msg):
                return seen


async def quiet_for(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Everything received in the next `seconds`."""
    seen = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                seen.append(json.loads(await ws.recv()))
    except TimeoutError:
        return seen


async def test_websocket_without_a_valid_token_is_refused_with_401(tmp_path):
    async with api_node(tmp_path) as (node, centre, api):
        for url in (f"ws://127.0.0.1:{api.port}/ws/events", f"ws://127.0.0.1:{api.port}/ws/events?token=bad"):
            with pytest.raises(InvalidStatus) as info:
                async with connect(url):
                    pass
            assert info.value.response.status_code == 401


async def test_open_websockets_are_closed_with_1001_going_away_when_the_api_stops(tmp_path):
    async with api_node(tmp_path) as (node, centre, api):
        ws = await connect(ws_url(api, "supervisor"))
        await read_until(ws, lambda m: m["kind"] == "queue_stats")
        await api.stop()
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(3):
                while True:
                    await ws.recv()
        assert ws.close_code == 1001
        with pytest.raises(httpx.ConnectError):
            await httpx.AsyncClient().get(f"{api.url}/api/me")


async def test_an_agent_sees_only_its_own_events_and_a_supervisor_sees_everyone(tmp_path):
    async with api_node(tmp_path) as (node, centre, api), httpx.AsyncClient(base_url=api.url) as http:
        async with connect(ws_url(api, "agent")) as mine, connect(ws_url(api, "supervisor")) as sup:
            hello = await read_until(mine, lambda m: m["kind"] == "hello")
            assert hello[-1]["role"] == "agent" and hello[-1]["agent"] == "u0000"
            await read_until(sup, lambda m: m["kind"] == "queue_stats")
            await http.post("/api/agents/u0001/login", headers=auth("agent2"))
            await http.post("/api/agents/u0000/login", headers=auth("agent"))
            got = await read_until(mine, lambda m: m["kind"] == "agent_state")
            assert [m["agent"] for m in got if m["kind"] == "agent_state"] == ["u0000"]
            seen = await read_until(sup, lambda m: m["kind"] == "agent_state" and m["agent"] == "u0000")
            assert [m["agent"] for m in seen if m["kind"] == "agent_state"] == ["u0001", "u0000"]
            # Queue statistics reach both; only the supervisor's carry every agent.
            stats = await read_until(mine, lambda m: m["kind"] == "queue_stats")
            assert "agents" not in stats[-1]
            stats = await read_until(sup, lambda m: m["kind"] == "queue_stats" and "agents" in m)
            assert {a["agent"]: a["state"] for a in stats[-1]["agents"]} == {"u0000": "available",
                                                                            "u0001": "available"}
            rest = await quiet_for(mine, 0.3)
            assert all(m.get("agent") in (None, "u0000") for m in rest if m["kind"] != "queue_stats")


async def test_screen_pop_carries_number_crm_variables_queue_wait_and_previous_calls_with_handlers(tmp_path):
    async with api_node(tmp_path) as (node, centre, api), httpx.AsyncClient(base_url=api.url) as http:
        # Two earlier calls of this customer, written to the store through the bus like any CDR.
        now = time.time()
        for i, agent in enumerate(("u0001", "u0000")):
            node.bus.publish(CDR(ts=now - 3600 + i, call_uuid=f"old-{i}", caller="0312345678", callee="support",
                                 start=now - 3700 + i * 10, answer=now - 3690 + i * 10, end=now - 3600 + i * 10,
                                 disposition="answered", hangup_cause="normal", hangup_side="caller",
                                 queue="support", agent=agent, customer_id="C-42"))
        assert node.writer is not None
        await node.writer.drain()
        async with connect(ws_url(api, "agent", kinds="screen_pop")) as mine, \
                connect(ws_url(api, "agent2", kinds="screen_pop")) as other:
            await http.post("/api/agents/u0000/login", headers=auth("agent"))
            centre.enqueue("call-7", "support", "0312345678", customer_id="C-42",
                           variables={"crm_name": "山田 太郎", "crm_rank": "gold"})
            (pop,) = await read_until(mine, lambda m: m["kind"] == "screen_pop")
            assert pop["call_uuid"] == "call-7" and pop["agent"] == "u0000" and pop["queue"] == "support"
            assert pop["caller"] == "0312345678" and pop["customer_id"] == "C-42"
            assert pop["variables"] == {"crm_name": "山田 太郎", "crm_rank": "gold"}
            assert 0.0 <= pop["wait"] < 1.0
            assert [(h["call_uuid"], h["agent"], h["disposition"]) for h in pop["history"]] == [
                ("old-1", "u0000", "answered"), ("old-0", "u0001", "answered")]
            assert await quiet_for(other, 0.3) == []  # the other agent's desktop pops nothing


UAS_RING_THEN_ANSWER = """<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="agent phone: ring a second, answer, wait for BYE">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
  <pause milliseconds="1000"/>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=agent 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <timewait milliseconds="500"/>
</scenario>
"""


async def test_screen_pop_reaches_the_agent_before_their_phone_is_answered_then_supervisor_barges_and_admin_hangs_up(
    tmp_path,
):
    require_sipp()
    users = make_users(4)
    agent, caller = users[0], users[3]
    async with api_node(tmp_path, users=users) as (node, centre, api), httpx.AsyncClient(base_url=api.url) as http:
        # Glue standing in for the dialplan's queue step: a call to the agent's extension queues in
        # 'support'; the ACD offers it to the agent, whose phone the B2BUA is ringing.
        events: list = []
        node.bus.subscribe(events.append)
        node.bus.subscribe(lambda e: centre.enqueue(e.call_uuid, "support", e.caller,
                                                    variables={"crm_name": "佐藤"}), CallStarted)
        node.bus.subscribe(lambda e: centre.answered(e.call_uuid, e.answered_by), CallAnswered)
        node.bus.subscribe(lambda e: centre.ended(e.call_uuid), CallEnded)
        phone_port = free_port()
        inf = write_users_inf(tmp_path / "agent.csv", [agent], DOMAIN)
        reg = await run_sipp("register_only.xml", node.address("udp"), inf=inf, port=phone_port)
        assert reg.returncode == 0 and reg.successful == 1, reg.explain()
        scenario = tmp_path / "uas_ring_then_answer.xml"
        scenario.write_text(UAS_RING_THEN_ANSWER)
        phone = await start_sipp(scenario, None, port=phone_port, calls=1, timeout=30)
        async with connect(ws_url(api, "agent")) as desktop:
            await http.post("/api/agents/u0000/login", headers=auth("agent"))
            await asyncio.sleep(0.2)
            inf = write_users_inf(tmp_path / "caller.csv", [caller], DOMAIN)
            uac = await start_sipp("uac_callee_hangs_up.xml", node.address("udp"), inf=inf, service=agent[0],
                                   timeout=30)
            seen = await read_until(desktop, lambda m: m["kind"] == "call_answered", timeout=10)
            kinds = [m["kind"] for m in seen]
            assert "screen_pop" in kinds and kinds.index("screen_pop") < kinds.index("call_answered"), kinds
            pop = seen[kinds.index("screen_pop")]
            answered = seen[kinds.index("call_answered")]
            assert pop["agent"] == "u0000" and pop["caller"] == caller[0]
            assert pop["variables"] == {"crm_name": "佐藤"}
            assert answered["answered_by"] == "u0000"
            # The desktop had the pop before the phone was picked up (the node's own answer time).
            assert pop["_received"] < answered["ts"], (pop["_received"], answered["ts"])
            call_uuid = answered["call_uuid"]
            calls = (await http.get("/api/calls", headers=auth("supervisor"))).json()["calls"]
            assert [(c["call_uuid"], c["state"]) for c in calls] == [(call_uuid, "answered")]
            r = await http.post(f"/api/calls/{call_uuid}/supervise", json={"mode": "barge"},
                                headers=auth("supervisor"))
            assert r.status_code == 200 and r.json()["supervisor"] == "u0002"
            assert centre.supervisions == [("barge", "u0002", call_uuid)]
            regs = (await http.get("/api/registrations", headers=auth("admin"))).json()["registrations"]
            assert [r["aor"].split("@")[0].removeprefix("sip:") for r in regs] == ["u0000"]
            r = await http.delete(f"/api/calls/{call_uuid}", headers=auth("admin"))
            assert r.status_code == 200 and r.json() == {"call_uuid": call_uuid, "hung_up": True}
            ended = await read_until(desktop, lambda m: m["kind"] == "call_ended", timeout=5)
            assert ended[-1]["call_uuid"] == call_uuid and ended[-1]["cause"] == "admin"
            after = [m for m in seen + ended if m["kind"] == "agent_state"]
            assert [m["state"] for m in after] == ["available", "offered", "on_call", "available"]
        for proc in (uac, phone):
            result = await proc.wait()
            assert result.returncode == 0 and result.successful == 1, result.explain()
        assert not node.b2bua.calls


async def test_cti_commands_on_the_websocket_run_rest_operations_with_the_connections_rights(tmp_path):
    async with api_node(tmp_path) as (node, centre, api):
        async with connect(ws_url(api, "agent")) as ws:
            await read_until(ws, lambda m: m["kind"] == "hello")

            async def ask(message: Any) -> dict[str, Any]:
                await ws.send(message if isinstance(message, str) else json.dumps(message))
                return (await read_until(ws, lambda m: m["kind"] == "reply"))[-1]

            me = await ask({"id": 1, "method": "GET", "path": "/api/me"})
            assert (me["id"], me["status"], me["result"]["agent"]) == (1, 200, "u0000")
            login = await ask({"id": 2, "method": "POST", "path": "/api/agents/u0000/login"})
            assert login["status"] == 200, login
            assert centre.engine.agent_state("u0000").value == "available"
            # The agent's token may not act for another agent, nor use supervisor operations.
            other = await ask({"id": 3, "method": "POST", "path": "/api/agents/u0001/login"})
            assert (other["status"], other["error"]) == (403, "forbidden")
            assert (await ask({"id": 4, "method": "GET", "path": "/api/agents"}))["status"] == 403
            bad_body = await ask({"id": 5, "method": "POST", "path": "/api/calls", "body": {"number": "x"}})
            assert bad_body["status"] == 422 and bad_body["detail"][0]["field"] == "number"
            assert (await ask("not json"))["error"] == "bad_json"
            assert (await ask([1, 2]))["error"] == "bad_command"
            assert (await ask({"id": 6, "method": "GET", "path": "/metrics"}))["error"] == "bad_command"
            assert (await ask({"id": 7, "method": "GET", "path": "/api/nowhere"}))["status"] == 404
            assert (await ask({"id": 8, "method": "DELETE", "path": "/api/me"}))["status"] == 405
            queues = await ask({"id": 9, "method": "GET", "path": "/api/queues"})
            assert queues["status"] == 200 and queues["id"] == 9
