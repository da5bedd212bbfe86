"""The REST API over real HTTP against a running node: roles, agent actions, supervisor and
operator actions, clear 4xx answers, OpenAPI docs and Prometheus metrics."""

from __future__ import annotations

import asyncio

import httpx

from softswitch.events import AgentStateChanged
from tests.test_api_common import api_node, auth


async def test_agent_logs_in_pauses_with_a_reason_gets_ready_and_logs_out_over_http(tmp_path):
    async with api_node(tmp_path) as (node, centre, api), httpx.AsyncClient(base_url=api.url) as http:
        states: list[AgentStateChanged] = []
        node.bus.subscribe(states.append, AgentStateChanged)
        r = await http.post("/api/agents/u0000/login", headers=auth("agent"))
        assert r.status_code == 200 and r.json()["state"] == "available"
        r = await http.post("/api/agents/u0000/pause", json={"reason": "lunch"}, headers=auth("agent"))
        assert r.status_code == 200 and r.json()["state"] == "paused" and r.json()["reason"] == "lunch"
        r = await http.get("/api/agents/u0000", headers=auth("agent"))
        assert (r.json()["state"], r.json()["reason"]) == ("paused", "lunch")
        r = await http.post("/api/agents/u0000/ready", headers=auth("agent"))
        assert r.json()["state"] == "available"
        r = await http.post("/api/agents/u0000/logout", headers=auth("agent"))
        assert r.json()["state"] == "offline"
        assert [(e.agent, e.state, e.reason) for e in states] == [
            ("u0000", "available", "logged in"), ("u0000", "paused", "lunch"),
            ("u0000", "available", "ready"), ("u0000", "offline", "logged out"),
        ]


async def test_missing_or_unknown_tokens_get_401_and_roles_are_enforced_with_403(tmp_path):
    async with api_node(tmp_path) as (node, centre, api), httpx.AsyncClient(base_url=api.url) as http:
        r = await http.get("/api/me")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
        r = await http.get("/api/me", headers={"Authorization": "Bearer not-a-token"})
        assert r.status_code == 401 and r.json() == {"error": "unauthorized", "detail": "unknown token"}
        r = await http.get("/api/me", headers={"Authorization": "Basic dTpw"})
        assert r.status_code == 401
        # An agent acts only for itself.
        r = await http.post("/api/agents/u0001/login", headers=auth("agent"))
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        assert centre.agent_state("u0001")["state"] == "offline"
        for method, path in (("GET", "/api/agents"), ("GET", "/api/calls"), ("PUT", "/api/agents/u0000/state"),
                             ("DELETE", "/api/calls/x"), ("POST", "/api/dialplan/reload"),
                             ("GET", "/api/registrations")):
            r = await http.request(method, path, headers=auth("agent"), json={"state": "paused"})
            assert r.status_code == 403, (method, path, r.text)
        # Supervisors act for any agent but may not hang up calls or reload the dialplan.
        r = await http.post("/api/agents/u0001/login", headers=auth("supervisor"))
        assert r.status_code == 200 and r.json()["state"] == "available"
        for method, path in (("DELETE", "/api/calls/x"), ("POST", "/api/dialplan/reload"),
                             ("GET", "/api/registrations")):
            r = await http.request(method, path, headers=auth("supervisor"))
            assert r.status_code == 403, (method, path, r.text)
        r = await http.get("/api/me", headers=auth("admin"))
        assert r.json() == {"role": "admin", "agent": None}


async def test_bad_requests_get_json_4xx_answers_that_say_what_is_wrong(tmp_path):
    async with api_node(tmp_path) as (node, centre, api), httpx.AsyncClient(base_url=api.url) as http:
        sup = auth("supervisor")
        r = await http.post("/api/agents/u0000/pause", json={}, headers=sup)
        assert r.status_code == 422 and r.json()["error"] == "invalid_request"
        assert r.json()["detail"][0]["field"] == "reason"
        r = await http.post("/api/agents/u0000/pause", content=b"{not json", headers=sup)
        assert r.status_code == 400 and r.json()["error"] == "bad_json"
        r = await http.put("/api/agents/u0000/state", json={"state": "sleeping"}, headers=sup)
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "state"
        r = await http.put("/api/agents/u0000/state", json={"state": "paused", "extra": 1}, headers=sup)
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "extra"
        r = await http.get("/api/agents/nobody", headers=sup)
        assert r.status_code == 404 and r.json() == {"error": "not_found", "detail": "no agent nobody"}
        r = await http.post("/api/agents/u0000/logout", headers=sup)
        assert r.status_code == 409 and r.json()["error"] == "conflict"
        r = await http.delete("/api/agents/u0000", headers=sup)
        assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
        r = await http.get("/api/nothing-here", headers=sup)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        r = await http.post("/api/calls/no-such-call/supervise", json={"mode": "barge"}, headers=sup)
        assert r.status_code == 404
        r = await http.post("/api/calls/no-such-call/supervise", json={"mode": "barge"}, headers=auth("admin"))
        assert r.status_code == 422 and "supervisor" in r.json()["detail"]
        r = await http.delete("/api/calls/no-such-call", headers=auth("admin"))
        assert r.status_code == 404 and r.json()["error"] == "not_found"


async def test_supervisor_forces_an_agent_state_and_moves_a_waiting_caller_keeping_their_wait(tmp_path):
    async with api_node(tmp_path) as (node, centre, api), httpx.AsyncClient(base_url=api.url) as http:
        sup = auth("supervisor")
        r = await http.put("/api/agents/u0000/state", json={"state": "paused", "reason": "coaching"}, headers=sup)
        assert r.status_code == 200 and (r.json()["state"], r.json()["reason"]) == ("paused", "coaching")
        centre.enqueue("call-1", "support", "0312345678")
        await asyncio.sleep(0.05)
        r = await http.post("/api/calls/call-1/move", json={"queue": "sales"}, headers=sup)
        assert r.status_code == 200 and r.json()["queue"] == "sales"
        queues = {q["queue"]: q for q in (await http.get("/api/queues", headers=sup)).json()["queues"]}
        assert queues["support"]["waiting"] == 0 and queues["sales"]["waiting"] == 1
        assert queues["sales"]["callers"][0]["wait"] >= 0.05  # the wait carried over
        r = await http.post("/api/calls/call-1/move", json={"queue": "nowhere"}, headers=sup)
        assert r.status_code == 404 and "nowhere" in r.json()["detail"]
        r = await http.put("/api/agents/u0000/state", json={"state": "available"}, headers=sup)
        assert r.json()["state"] == "available"


async def test_operator_reloads_the_dialplan_and_an_invalid_one_is_refused_with_file_and_line(tmp_path):
    plan = tmp_path / "plan.yaml"
    good = "contexts:\n  default:\n    routes:\n      - name: test\n        match: {number: '1000'}\n        steps:\n"
    plan.write_text(good + "          - hangup:\n")
    async with api_node(tmp_path, dialplan=plan) as (node, centre, api), httpx.AsyncClient(base_url=api.url) as http:
        r = await http.post("/api/dialplan/reload", headers=auth("admin"))
        assert r.status_code == 200, r.text
        assert r.json() == {"reloaded": True, "errors": []}
        plan.write_text(good + "          - dance: 1\n")
        r = await http.post("/api/dialplan/reload", headers=auth("admin"))
        assert r.status_code == 422 and r.json()["error"] == "invalid_dialplan"
        assert any("plan.yaml:7" in line for line in r.json()["detail"]), r.json()


async def test_openapi_describes_every_endpoint_with_its_role_and_docs_page_renders_it(tmp_path):
    async with api_node(tmp_path) as (node, centre, api), httpx.AsyncClient(base_url=api.url) as http:
        doc = (await http.get("/openapi.json")).json()
        assert doc["openapi"].startswith("3.")
        for ep in api.endpoints:
            op = doc["paths"][ep.path][ep.method.lower()]
            assert ep.role in op["description"]
        pause = doc["paths"]["/api/agents/{agent}/pause"]["post"]
        assert pause["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("PauseBody")
        assert "reason" in doc["components"]["schemas"]["PauseBody"]["properties"]
        page = await http.get("/docs")
        assert page.status_code == 200 and "/openapi.json" in page.text


async def test_metrics_come_from_a_registry_per_node_and_show_queues_agents_calls_and_loop_lag(tmp_path):
    async with api_node(tmp_path / "a") as (node, centre, api), httpx.AsyncClient(base_url=api.url) as http:
        async with api_node(tmp_path / "b") as (node_b, centre_b, api_b):
            assert api.metrics.registry is not api_b.metrics.registry
            await http.post("/api/agents/u0001/pause", headers=auth("supervisor"), json={"reason": "x"})
            await http.post("/api/agents/u0000/login", headers=auth("agent"))
            centre.enqueue("call-a", "sales", "0311112222")
            for leg in ("metrics-a", "metrics-b"):  # two real RTP endpoints on node a's media backend
                await node.media.allocate(leg)
            await asyncio.sleep(0.3)  # one lag probe
            text = (await http.get("/metrics")).text
            text_b = (await httpx.AsyncClient(base_url=api_b.url).get("/metrics")).text
        lines = set(text.splitlines())
        assert 'softswitch_queue_waiting{queue="sales"} 1.0' in lines
        assert 'softswitch_queue_waiting{queue="support"} 0.0' in lines
        assert 'softswitch_queue_agents{queue="support",state="available"} 1.0' in lines
        assert 'softswitch_agents{state="available"} 1.0' in lines
        assert "softswitch_active_calls 0.0" in lines and "softswitch_registrations 0.0" in lines
        assert "softswitch_rtp_streams 2.0" in lines
        assert any(x.startswith("softswitch_event_loop_lag_seconds ") for x in lines)
        assert any(x.startswith("softswitch_event_loop_lag_count ") and not x.endswith(" 0.0") for x in lines)
        assert any(x.startswith("softswitch_call_rate ") for x in lines)
        assert "softswitch_rtp_streams 0.0" in text_b.splitlines()  # node b's registry is its own
        assert 'softswitch_queue_waiting{queue="sales"} 0.0' in text_b.splitlines()
