"""Outbound campaigns end to end: the REST API, the node's dialler, SIPp as the carrier answering,
rejecting or ignoring the calls, and registered SIPp agents who take them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from softswitch.api.events import ScreenPop
from softswitch.app import Node
from softswitch.config import NodeConfig
from softswitch.events import CDR, CampaignAttempt, RecordingSaved
from softswitch.store.testing import pg_url, temporary_database_sync
from tests.nodes import DOMAIN, node_config, running_node, wait_for
from tests.peers import SippProcess, free_port, require_sipp, run_sipp, start_sipp, write_users_inf
from tests.test_trunks_sipp import invites_seen_by

pytestmark = pytest.mark.integration

CARRIER_IP = "127.0.0.5"
ALWAYS_OPEN = {"weekly": {"mon-sun": ["00:00-24:00"]}, "public_holidays": "none"}
SUPERVISOR = {"Authorization": "Bearer supervisor-token"}


def agent_auth(agent: str) -> dict[str, str]:
    return {"Authorization": f"Bearer agent-{agent}-token"}


def campaign_config(tmp: Path, agents: list[str], carrier_port: int, *, phones: tuple[str, ...] = ()) -> NodeConfig:
    users: list[dict[str, Any]] = [
        {"id": a, "password": f"pw-{a}", "agent": {"skills": {"sales": 5}, "queues": ["sales"]}} for a in agents]
    users += [{"id": u, "password": f"pw-{u}"} for u in phones]
    tokens = [{"token": "supervisor-token", "role": "supervisor"}]
    tokens += [{"token": f"agent-{a}-token", "role": "agent", "agent": a} for a in agents]
    rtp = 10000 + (free_port() % 20000) // 2 * 2
    return node_config(
        tmp, directory={"users": users}, api={"tokens": tokens},
        queues=[{"name": "sales", "skills": {"sales": 1}, "ring_timeout": 8, "wrap_up": 0, "announce_every": None}],
        trunks=[{"name": "carrier", "host": CARRIER_IP, "port": carrier_port, "addresses": [CARRIER_IP],
                 "prefixes": ["0"], "caller_id": "0312345000"}],
        media={"address": "127.0.0.1", "rtp_ports": f"{rtp}-{rtp + 599}", "tts_cache_dir": str(tmp / "tts"),
               "recordings_dir": str(tmp / "rec")},
    )


async def register(node: Node, tmp: Path, user: str) -> int:
    port = free_port()
    inf = write_users_inf(tmp / f"reg-{user}.csv", [(user, f"pw-{user}")], DOMAIN)
    result = await run_sipp("register_only.xml", node.address("udp"), inf=inf, port=port)
    assert result.returncode == 0 and result.successful == 1, result.explain()
    return port


@contextlib.asynccontextmanager
async def agent_phones(node: Node, tmp: Path, agents: list[str]) -> AsyncIterator[list[SippProcess]]:
    """Registered SIPp phones that answer every call at once and wait for the other side's BYE."""
    phones = []
    for a in agents:
        port = await register(node, tmp, a)
        phones.append(await start_sipp("uas_answer.xml", None, port=port, calls=10_000, timeout=300))
    try:
        yield phones
    finally:
        for p in phones:
            p.kill()
            await p.wait()


@contextlib.contextmanager
def two_nodes_on_one_database(tmp_path: Path, agents: list[str]) -> Iterator[list[NodeConfig]]:
    """Configs of two nodes (their own ports and folders) sharing one fresh PostgreSQL database."""
    dbs = temporary_database_sync("softswitch_nodes")
    db = next(dbs)
    try:
        configs = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            config = campaign_config(tmp_path / name, agents, free_port(CARRIER_IP))
            configs.append(config.model_copy(update={"database": pg_url(db)}))
        yield configs
    finally:
        next(dbs, None)


def count_pacing(node: Node) -> Callable[[], int]:
    """Count the campaign manager's pacing passes (a loop that churns shows up here)."""
    passes = 0
    pace_all = node.campaigns._pace_all

    def counted() -> None:
        nonlocal passes
        passes += 1
        pace_all()

    node.campaigns._pace_all = counted  # type: ignore[method-assign]
    return lambda: passes


def start_carrier(port: int, calls: int, trace: Path | None = None, talk_ms: int = 300):
    extra = ["-d", str(talk_ms)]
    if trace is not None:
        extra += ["-trace_msg", "-message_file", str(trace)]
    return start_sipp("carrier_campaign.xml", None, local_ip=CARRIER_IP, port=port, calls=calls, timeout=240,
                      extra=extra)


def numbers_csv(count: int, *, start: int = 0, fields: bool = True) -> str:
    """A call list whose last digits pick the carrier's behaviour (see carrier_campaign.xml)."""
    lines = ["id,number,customer_id,name" if fields else "number"]
    for i in range(start, start + count):
        number = f"03-5550-{i:04d}"
        lines.append(f"r{i},{number},C{i},顧客{i}" if fields else number)
    return "\n".join(lines) + "\n"


def outcome_of(number: str) -> str:
    return {"1": "busy", "2": "rejected", "3": "no_answer"}.get(number[-1], "connected")


async def create_campaign(http: httpx.AsyncClient, cid: str, mode: str, **settings: Any) -> dict[str, Any]:
    body = {"id": cid, "name": f"test {mode}", "mode": mode, "queue": "sales", "trunk": "carrier",
            "caller_id": "0312340000", "schedule": ALWAYS_OPEN, **settings}
    r = await http.post("/api/campaigns", json=body, headers=SUPERVISOR)
    assert r.status_code == 200, r.text
    return r.json()


async def campaign_finished(http: httpx.AsyncClient, cid: str, timeout: float) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = await http.get(f"/api/campaigns/{cid}", headers=SUPERVISOR)
        body = r.json()
        if body["state"] == "finished":
            return body
        await asyncio.sleep(0.25)
    raise AssertionError(f"campaign {cid} did not finish: {body}")


async def test_a_progressive_campaign_of_200_numbers_accounts_for_every_record(tmp_path):
    require_sipp()
    agents = ["2001", "2002", "2003", "2004", "2005"]
    carrier_port = free_port(CARRIER_IP)
    config = campaign_config(tmp_path, agents, carrier_port)
    async with running_node(config) as node, agent_phones(node, tmp_path, agents):
        events: list = []
        node.bus.subscribe(events.append)
        carrier = await start_carrier(carrier_port, calls=200)
        api = f"http://{config.api.host}:{node.api.port}"
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            # No retries: each number is dialled once, so the carrier sees exactly 200 calls.
            await create_campaign(http, "spring", "progressive", max_attempts=1, ring_timeout=5)
            r = await http.post("/api/campaigns/spring/records", content=numbers_csv(200).encode(),
                                headers={**SUPERVISOR, "Content-Type": "text/csv"})
            assert r.status_code == 200, r.text
            assert (r.json()["added"], r.json()["rejected"]) == (200, [])
            r = await http.put("/api/campaigns/spring/state", json={"state": "running"}, headers=SUPERVISOR)
            assert r.status_code == 200, r.text
            final = await campaign_finished(http, "spring", 200)
            records = (await http.get("/api/campaigns/spring/records?limit=1000", headers=SUPERVISOR)).json()
            await wait_for(lambda: len([e for e in events if isinstance(e, CampaignAttempt)]) == 200, timeout=10)
            await asyncio.sleep(1.0)  # the store writer's batch
            stored = (await http.get("/api/campaigns/spring/attempts", headers=SUPERVISOR)).json()["attempts"]
        result = await carrier.wait()
        assert result.successful == 200, result.explain()
    rows = records["records"]
    assert len(rows) == 200
    for row in rows:
        expected = outcome_of(row["number"])
        assert row["last_result"] == expected, row
        assert row["state"] == ("done" if expected == "connected" else "failed"), row
        assert row["attempts"] == 1
        if expected == "connected":
            assert row["agent"] in agents
    assert final["stats"]["connected"] == sum(1 for r in rows if r["state"] == "done") == 140
    # Progressive never dials a customer without a free agent: nobody was abandoned.
    assert final["stats"]["abandoned"] == 0
    attempts = [e for e in events if isinstance(e, CampaignAttempt)]
    assert sorted(a.record_id for a in attempts) == sorted(r["id"] for r in rows)
    assert {(a["record_id"], a["result"]) for a in stored} == {(a.record_id, a.result) for a in attempts}
    cdrs = [e for e in events if isinstance(e, CDR) and e.trunk == "carrier"]
    assert len(cdrs) == 200
    # Each agent's screen shows the record's fields and why they are called.
    pops = {e.customer_id: e for e in events if isinstance(e, ScreenPop)}
    assert len(pops) == 140
    assert pops["C0"].variables["name"] == "顧客0" and pops["C0"].variables["campaign"] == "spring"
    assert pops["C0"].caller == "0355500000"
    connected = {a.call_uuid: a for a in attempts if a.result == "connected"}
    for cdr in cdrs:
        if cdr.call_uuid in connected:
            assert cdr.agent == connected[cdr.call_uuid].agent and cdr.customer_id.startswith("C")
    # Every connected call was recorded, linked to its CDR.
    recorded = {e.call_uuid for e in events if isinstance(e, RecordingSaved)}
    assert recorded == set(connected), len(recorded)


async def test_a_predictive_campaign_keeps_its_abandonment_under_the_ceiling(tmp_path):
    require_sipp()
    agents = ["2001", "2002", "2003", "2004"]
    carrier_port = free_port(CARRIER_IP)
    config = campaign_config(tmp_path, agents, carrier_port)
    async with running_node(config) as node, agent_phones(node, tmp_path, agents):
        carrier = await start_carrier(carrier_port, calls=100_000, talk_ms=600)
        api = f"http://{config.api.host}:{node.api.port}"
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            await create_campaign(http, "winter", "predictive", max_attempts=1, ring_timeout=5,
                                  abandon_ceiling=0.05)
            # Half of these numbers are busy (1), decline (2) or never answer (3), so the dialler
            # must dial more than one line per free agent to keep them busy.
            lines = ["id,number"] + [f"p{i},03-5551-{i:03d}{'51525153'[i % 8]}" for i in range(200)]
            r = await http.post("/api/campaigns/winter/records", json={"csv": "\n".join(lines)},
                                headers=SUPERVISOR)
            assert r.status_code == 200 and r.json()["added"] == 200, r.text
            await http.put("/api/campaigns/winter/state", json={"state": "running"}, headers=SUPERVISOR)
            final = await campaign_finished(http, "winter", 300)
        carrier.kill()
        await carrier.wait()
    stats = final["stats"]
    assert stats["answered"] == 100, stats
    assert stats["abandoned"] / stats["answered"] <= 0.05, stats
    assert stats["connected"] + stats["abandoned"] == stats["answered"], stats
    assert stats["mean_lines_per_agent"] > 1.0, stats


async def test_preview_gives_each_agent_their_own_record_then_rings_the_agent_before_the_customer(tmp_path):
    require_sipp()
    agents = ["2001", "2002"]
    carrier_port = free_port(CARRIER_IP)
    trace = tmp_path / "carrier.log"
    config = campaign_config(tmp_path, agents, carrier_port)
    async with running_node(config) as node, agent_phones(node, tmp_path, agents):
        events: list = []
        node.bus.subscribe(events.append)
        carrier = await start_carrier(carrier_port, calls=1, trace=trace)
        api = f"http://{config.api.host}:{node.api.port}"
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            await create_campaign(http, "pv", "preview")
            await http.post("/api/campaigns/pv/records", json={"csv": numbers_csv(3, start=4)}, headers=SUPERVISOR)
            r = await http.post("/api/campaigns/pv/preview", headers=agent_auth("2001"))
            assert r.status_code == 409  # a draft campaign hands out nothing
            await http.put("/api/campaigns/pv/state", json={"state": "running"}, headers=SUPERVISOR)
            first = (await http.post("/api/campaigns/pv/preview", headers=agent_auth("2001"))).json()["record"]
            again = (await http.post("/api/campaigns/pv/preview", headers=agent_auth("2001"))).json()["record"]
            second = (await http.post("/api/campaigns/pv/preview", headers=agent_auth("2002"))).json()["record"]
            assert first["id"] == again["id"] == "r4" and second["id"] == "r5"
            assert first["fields"] == {"name": "顧客4"}
            # Nobody may dial a record another agent holds.
            r = await http.post("/api/campaigns/pv/records/r5/dial", headers=agent_auth("2001"))
            assert r.status_code == 409, r.text
            r = await http.post("/api/campaigns/pv/records/r5/dial?agent=2002", headers=agent_auth("2001"))
            assert r.status_code == 403, r.text
            r = await http.post("/api/campaigns/pv/records/r5/skip", headers=agent_auth("2002"))
            assert r.json()["record"]["state"] == "pending"
            assert (await http.post("/api/campaigns/pv/preview", headers=agent_auth("2002"))).json()["record"]["id"] == "r6"
            # An agent who logs out hands their previewed record back.
            assert (await http.post("/api/agents/2002/logout", headers=agent_auth("2002"))).status_code == 200
            await wait_for(lambda: node.campaigns.runs["pv"].dialer.records()["r6"].state == "pending")
            r = await http.post("/api/campaigns/pv/records/r4/dial", headers=agent_auth("2001"))
            assert r.status_code == 200, r.text
            assert (await carrier.wait()).successful == 1
            await wait_for(lambda: any(isinstance(e, CampaignAttempt) and e.result == "connected" for e in events))
            rows = {r["id"]: r for r in (await http.get("/api/campaigns/pv/records",
                                                        headers=SUPERVISOR)).json()["records"]}
        await wait_for(lambda: any(isinstance(e, CDR) for e in events))
    assert rows["r4"]["state"] == "done" and rows["r4"]["agent"] == "2001"
    assert rows["r5"]["state"] == "pending" and rows["r5"]["attempts"] == 0
    assert rows["r6"]["state"] == "pending" and rows["r6"]["agent"] == ""
    (cdr,) = [e for e in events if isinstance(e, CDR)]
    assert [leg[2] for leg in cdr.legs][0] == "2001"  # the agent's phone rang first
    assert cdr.customer_id == "C4" and cdr.trunk == "carrier" and cdr.agent == "2001"
    (invite,) = invites_seen_by(trace)
    assert invite.uri.startswith("sip:0355500004@")
    assert "0312340000" in invite.headers.get("From")  # the campaign's caller ID, not the trunk's


async def test_do_not_call_numbers_are_never_dialled_and_a_closed_schedule_dials_nothing(tmp_path):
    require_sipp()
    agents = ["2001"]
    carrier_port = free_port(CARRIER_IP)
    trace = tmp_path / "carrier.log"
    config = campaign_config(tmp_path, agents, carrier_port)
    async with running_node(config) as node, agent_phones(node, tmp_path, agents):
        carrier = await start_carrier(carrier_port, calls=3, trace=trace)
        api = f"http://{config.api.host}:{node.api.port}"
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            r = await http.post("/api/dnc", json={"numbers": ["03-5550-0004"], "reason": "asked"}, headers=SUPERVISOR)
            assert r.status_code == 200, r.text
            closed = {"weekly": {}, "public_holidays": "none"}
            await create_campaign(http, "night", "progressive", schedule=closed)
            await http.post("/api/campaigns/night/records", json={"csv": numbers_csv(1, start=9)}, headers=SUPERVISOR)
            await http.put("/api/campaigns/night/state", json={"state": "running"}, headers=SUPERVISOR)
            await create_campaign(http, "day", "progressive")
            r = await http.post("/api/campaigns/day/records", json={"csv": numbers_csv(4, start=4)}, headers=SUPERVISOR)
            assert r.json()["do_not_call"] == 1
            # Blocked while the list is already loaded: r6 is never dialled either.
            await http.post("/api/dnc", json={"numbers": ["0355500006"]}, headers=SUPERVISOR)
            await http.put("/api/campaigns/day/state", json={"state": "running"}, headers=SUPERVISOR)
            await campaign_finished(http, "day", 60)
            # More numbers for a finished campaign: it carries on by itself.
            r = await http.post("/api/campaigns/day/records", json={"csv": numbers_csv(1, start=8)}, headers=SUPERVISOR)
            assert r.json()["added"] == 1
            assert (await http.get("/api/campaigns/day", headers=SUPERVISOR)).json()["state"] == "running"
            await campaign_finished(http, "day", 60)
            night = (await http.get("/api/campaigns/night", headers=SUPERVISOR)).json()
            rows = {r["id"]: r["state"] for r in (await http.get("/api/campaigns/day/records",
                                                                 headers=SUPERVISOR)).json()["records"]}
            metrics = (await http.get("/metrics")).text
            assert 'softswitch_campaign_records{campaign="day",state="dnc"} 2.0' in metrics
            assert 'softswitch_campaign_running{campaign="night"} 1.0' in metrics
            assert (await http.delete("/api/dnc/0355500006", headers=SUPERVISOR)).status_code == 200
            assert (await http.delete("/api/dnc/0355500006", headers=SUPERVISOR)).status_code == 404
        assert (await carrier.wait()).successful == 3
    assert rows == {"r4": "dnc", "r5": "done", "r6": "dnc", "r7": "done", "r8": "done"}
    dialled = sorted(inv.uri.split("@")[0] for inv in invites_seen_by(trace))
    assert dialled == ["sip:0355500005", "sip:0355500007", "sip:0355500008"]
    assert night["state"] == "running" and night["stats"]["attempts"] == 0


async def test_a_booked_callback_rings_the_booking_agent_first_with_a_screen_pop_that_says_why(tmp_path):
    require_sipp()
    agents = ["2001", "2002"]
    carrier_port = free_port(CARRIER_IP)
    config = campaign_config(tmp_path, agents, carrier_port, phones=("3001",))
    async with running_node(config) as node, agent_phones(node, tmp_path, agents):
        events: list = []
        node.bus.subscribe(events.append)
        customer_port = await register(node, tmp_path, "3001")
        customer = await start_sipp("uas_answer_then_bye.xml", None, port=customer_port, calls=1, timeout=30)
        api = f"http://{config.api.host}:{node.api.port}"
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            r = await http.post("/api/callbacks", json={"number": "3001", "due": time.time() + 1.5, "queue": "sales",
                                                        "agent": "2002", "customer_id": "C-77", "note": "請求書の件"},
                                headers=agent_auth("2002"))
            assert r.status_code == 200, r.text
            cb = r.json()
            assert cb["state"] == "pending"
            r = await http.post("/api/callbacks", json={"number": "3001", "due": time.time(), "queue": "sales",
                                                        "agent": "2001"}, headers=agent_auth("2002"))
            assert r.status_code == 403  # an agent books callbacks for themselves
            assert (await customer.wait()).successful == 1
            await wait_for(lambda: any(isinstance(e, CDR) for e in events), timeout=10)
            await wait_for(lambda: node.campaigns.callbacks[cb["id"]].state == "done")
            listed = (await http.get("/api/callbacks", headers=SUPERVISOR)).json()["callbacks"]
    pops = [e for e in events if isinstance(e, ScreenPop)]
    assert pops and pops[0].agent == "2002" and pops[0].customer_id == "C-77"
    assert "予約コールバック" in pops[0].variables["reason"] and "請求書の件" in pops[0].variables["reason"]
    (cdr,) = [e for e in events if isinstance(e, CDR)]
    assert cdr.agent == "2002" and cdr.customer_id == "C-77"
    assert [leg[2] for leg in cdr.legs] == ["2002", "3001"]
    assert [c["state"] for c in listed] == ["done"]


async def test_call_lists_are_validated_line_by_line_and_campaign_errors_are_clear(tmp_path):
    config = campaign_config(tmp_path, ["2001"], free_port(CARRIER_IP))
    async with running_node(config) as node:
        api = f"http://{config.api.host}:{node.api.port}"
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            r = await http.post("/api/campaigns", json={"id": "x", "mode": "predictive", "queue": "nope"},
                                headers=SUPERVISOR)
            assert r.status_code == 409 and "no queue nope" in r.text
            r = await http.post("/api/campaigns", json={"id": "x", "mode": "sometimes", "queue": "sales"},
                                headers=SUPERVISOR)
            assert r.status_code == 422 and "mode" in r.text
            r = await http.post("/api/campaigns", json={"id": "x", "mode": "preview", "queue": "sales"},
                                headers=agent_auth("2001"))
            assert r.status_code == 403
            await create_campaign(http, "x", "progressive")
            assert (await http.post("/api/campaigns", json={"id": "x", "mode": "preview", "queue": "sales"},
                                    headers=SUPERVISOR)).status_code == 409
            # Shift_JIS as Japanese Excel writes it, with a bad number, a short line and a duplicate id.
            text = "id,number,customer_id,氏名\r\na1,０３－１２３４－５６７８,C1,山田\r\na2,12,C2,佐藤\r\na3,0312345679\r\na1,0312345670,C3,鈴木\r\n"
            r = await http.post("/api/campaigns/x/records", content=text.encode("cp932"),
                                headers={**SUPERVISOR, "Content-Type": "text/csv"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["added"] == 1
            assert [x["line"] for x in body["rejected"]] == [3, 4, 5], body
            rows = (await http.get("/api/campaigns/x/records", headers=SUPERVISOR)).json()["records"]
            assert rows == [{"id": "a1", "number": "0312345678", "customer_id": "C1", "fields": {"氏名": "山田"},
                             "state": "pending", "attempts": 0, "next_at": None, "last_result": "", "agent": ""}]
            again = await http.post("/api/campaigns/x/records", content=text.encode("cp932"),
                                    headers={**SUPERVISOR, "Content-Type": "text/csv"})
            assert again.json()["added"] == 0 and again.json()["duplicates"] == 1
            r = await http.post("/api/campaigns/x/records", json={"csv": "phone\n0312345678\n"}, headers=SUPERVISOR)
            assert r.status_code == 422 and "number" in r.json()["detail"]
            r = await http.post("/api/campaigns/nope/records", json={"csv": "number\n0312345678\n"},
                                headers=SUPERVISOR)
            assert r.status_code == 404
            r = await http.get("/api/campaigns/x/records?limit=0", headers=SUPERVISOR)
            assert r.status_code == 422
            r = await http.post("/api/campaigns/x/preview", headers=agent_auth("2001"))
            assert r.status_code == 409 and "not preview" in r.text
    # The campaign and its list survive a restart.
    async with running_node(config) as node:
        run = node.campaigns.runs["x"]
        assert run.state == "draft" and list(run.dialer.records()) == ["a1"]


async def test_a_database_outage_mid_campaign_loses_no_record_state_and_no_attempt(tmp_path):
    require_sipp()
    from softswitch.store.testing import Outage

    agents = ["2001", "2002", "2003"]
    carrier_port = free_port(CARRIER_IP)
    dbs = temporary_database_sync("softswitch_campaign")
    db = next(dbs)
    try:
        config = campaign_config(tmp_path, agents, carrier_port).model_copy(update={"database": pg_url(db)})
        async with running_node(config) as node, agent_phones(node, tmp_path, agents), Outage(db) as outage:
            carrier = await start_carrier(carrier_port, calls=60, talk_ms=200)
            api = f"http://{config.api.host}:{node.api.port}"
            async with httpx.AsyncClient(base_url=api, timeout=30) as http:
                await create_campaign(http, "storm", "progressive", max_attempts=1, ring_timeout=5)
                lines = ["id,number"] + [f"s{i},03-5552-{i:03d}{'5' if i % 3 else '1'}" for i in range(60)]
                r = await http.post("/api/campaigns/storm/records", json={"csv": "\n".join(lines)},
                                    headers=SUPERVISOR)
                assert r.json()["added"] == 60, r.text
                await http.put("/api/campaigns/storm/state", json={"state": "running"}, headers=SUPERVISOR)
                await wait_for(lambda: node.campaigns.runs["storm"].dialer.stats(time.time())["attempts"] >= 10,
                               timeout=30)
                await outage.cut()
                # Dialling goes on while the database is away; what needs it says so.
                r = await http.get("/api/campaigns/storm/attempts", headers=SUPERVISOR)
                assert r.status_code == 503, r.text
                final = await campaign_finished(http, "storm", 120)
                assert final["stats"]["completed_attempts"] == 60
                await outage.restore()
                # The writer replays its spool and the record states are written behind.
                end = time.monotonic() + 60
                while time.monotonic() < end:
                    try:
                        stored = await node.store.campaign_attempts("storm")
                        rows = await node.store.campaign_records("storm")
                        campaign = await node.store.get_campaign("storm")
                    except Exception:
                        stored, rows, campaign = [], [], None
                    if (len(stored) == 60 and campaign is not None and campaign.state == "finished"
                            and all(r.state in ("done", "failed") for r in rows)):
                        break
                    await asyncio.sleep(0.5)
            assert (await carrier.wait()).successful == 60
        assert sorted(a["record_id"] for a in stored) == sorted(f"s{i}" for i in range(60))
        assert {r.id: r.state for r in rows} == {f"s{i}": ("done" if i % 3 else "failed") for i in range(60)}
        assert campaign is not None and campaign.state == "finished"
        # A restart finds the campaign as it ended.
        async with running_node(config) as node:
            run = node.campaigns.runs["storm"]
            assert run.state == "finished"
            assert run.dialer.stats(time.time())["done"] == 40
    finally:
        next(dbs, None)


async def test_a_predictive_call_answered_when_no_agent_is_free_hears_a_message_and_counts_as_abandoned(tmp_path):
    require_sipp()
    agents = ["2001"]
    carrier_port = free_port(CARRIER_IP)
    config = campaign_config(tmp_path, agents, carrier_port)
    async with running_node(config) as node, agent_phones(node, tmp_path, agents):
        events: list = []
        node.bus.subscribe(events.append)
        # The customer answers after 1.5 s of ringing and waits for the switch to hang up.
        carrier = await start_carrier(carrier_port, calls=1)
        api = f"http://{config.api.host}:{node.api.port}"
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            await create_campaign(http, "late", "predictive", max_attempts=1)
            await http.post("/api/campaigns/late/records", json={"csv": "id,number\nz1,0355539999\n"},
                            headers=SUPERVISOR)
            await http.put("/api/campaigns/late/state", json={"state": "running"}, headers=SUPERVISOR)
            await wait_for(lambda: node.campaigns.runs["late"].calls, timeout=5)
            # The only agent goes on a break while the customer's phone rings.
            r = await http.post("/api/agents/2001/pause", json={"reason": "break"}, headers=SUPERVISOR)
            assert r.status_code == 200, r.text
            final = await campaign_finished(http, "late", 30)
        assert (await carrier.wait()).successful == 1
    (attempt,) = [e for e in events if isinstance(e, CampaignAttempt)]
    assert attempt.result == "abandoned" and attempt.answered is not None
    assert final["stats"]["abandoned"] == 1 and final["stats"]["abandon_rate"] == 1.0
    # The customer heard the apology before the switch hung up, about 2 s (the window) after answering.
    assert attempt.ended - attempt.answered >= 2.0
    (cdr,) = [e for e in events if isinstance(e, CDR)]
    assert cdr.disposition == "answered" and cdr.agent == ""


@contextlib.asynccontextmanager
async def node_with_lease(config: NodeConfig, lease: float) -> AsyncIterator[Node]:
    node = Node(config)
    node.campaigns.lease_seconds = lease
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def test_two_nodes_sharing_a_database_never_dial_one_campaign_at_once(tmp_path):
    with two_nodes_on_one_database(tmp_path, ["2001", "2002"]) as configs:
        async with node_with_lease(configs[0], 1.5) as a:
            url_a = f"http://{configs[0].api.host}:{a.api.port}"
            async with httpx.AsyncClient(base_url=url_a, timeout=30) as http:
                await create_campaign(http, "shared", "preview")
                await http.post("/api/campaigns/shared/records", json={"csv": numbers_csv(3)}, headers=SUPERVISOR)
                await http.put("/api/campaigns/shared/state", json={"state": "running"}, headers=SUPERVISOR)
                await http.post("/api/agents/2001/login", headers=SUPERVISOR)
                first = (await http.post("/api/campaigns/shared/preview", headers=agent_auth("2001"))).json()
                assert first["record"]["id"] == "r0"
            async with node_with_lease(configs[1], 1.5) as b:
                url_b = f"http://{configs[1].api.host}:{b.api.port}"
                run_a = a.campaigns.runs["shared"]
                async with httpx.AsyncClient(base_url=url_b, timeout=30) as http:
                    await http.post("/api/agents/2002/login", headers=SUPERVISOR)
                    await asyncio.sleep(2.0)  # several lease rounds: a keeps renewing, b never gets it
                    r = await http.post("/api/campaigns/shared/preview", headers=agent_auth("2002"))
                    assert r.status_code == 409 and "another node" in r.text
                    assert (await http.get("/api/campaigns/shared", headers=SUPERVISOR)).json()["dialling_here"] is False
                    # What is done through b reaches a, which dials: do-not-call numbers, new records, a pause.
                    await http.post("/api/dnc", json={"numbers": ["0355500002"]}, headers=SUPERVISOR)
                    await http.post("/api/campaigns/shared/records", json={"csv": numbers_csv(1, start=3)},
                                    headers=SUPERVISOR)
                    await wait_for(lambda: (rec := run_a.dialer.record("r2")) is not None and rec.state == "dnc",
                                   timeout=5)
                    await wait_for(lambda: run_a.dialer.record("r3") is not None, timeout=5)
                    await http.put("/api/campaigns/shared/state", json={"state": "paused"}, headers=SUPERVISOR)
                    await wait_for(lambda: run_a.state == "paused" and not run_a.dials_here(time.time()), timeout=5)
                    await http.put("/api/campaigns/shared/state", json={"state": "running"}, headers=SUPERVISOR)
                    await wait_for(lambda: run_a.dials_here(time.time()), timeout=5)
                    assert not b.campaigns.runs["shared"].dials_here(time.time())
                    # A campaign created through b is known to a within a round; its id is taken.
                    await create_campaign(http, "second", "preview")
                    await wait_for(lambda: "second" in a.campaigns.runs, timeout=5)
                    async with httpx.AsyncClient(base_url=url_a, timeout=30) as http_a:
                        r = await http_a.post("/api/campaigns", json={"id": "second", "mode": "preview",
                                                                      "queue": "sales"}, headers=SUPERVISOR)
                        assert r.status_code == 409
                    await a.stop()  # a goes away and gives its lease up; b takes the campaign over
                    await wait_for(lambda: b.campaigns.runs["shared"].dials_here(time.time()), timeout=5)
                    r = await http.post("/api/campaigns/shared/preview", headers=agent_auth("2002"))
                    assert r.status_code == 200, r.text
                    # b read the list again when it took over: r0 (reserved on a, never dialled) is due again.
                    assert r.json()["record"]["id"] == "r0"
                    rows = {x["id"]: x["state"] for x in (await http.get(
                        "/api/campaigns/shared/records", headers=SUPERVISOR)).json()["records"]}
                    assert rows == {"r0": "previewing", "r1": "pending", "r2": "dnc", "r3": "pending"}


async def test_a_retry_due_while_no_agent_is_free_waits_for_an_agent_without_spinning(tmp_path):
    require_sipp()
    agents = ["2001"]
    carrier_port = free_port(CARRIER_IP)
    config = campaign_config(tmp_path, agents, carrier_port)
    async with running_node(config) as node, agent_phones(node, tmp_path, agents):
        carrier = await start_carrier(carrier_port, calls=2)
        passes = count_pacing(node)
        api = f"http://{config.api.host}:{node.api.port}"
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            await create_campaign(http, "again", "progressive", max_attempts=2, retry_delays={"busy": 0.5})
            await http.post("/api/campaigns/again/records", json={"csv": "id,number\nb1,0355540001\n"},
                            headers=SUPERVISOR)
            await http.put("/api/campaigns/again/state", json={"state": "running"}, headers=SUPERVISOR)
            await wait_for(lambda: node.campaigns.runs["again"].dialer.records()["b1"].attempts == 1
                           and not node.campaigns.runs["again"].calls, timeout=10)
            await http.post("/api/agents/2001/pause", json={"reason": "break"}, headers=SUPERVISOR)
            before = passes()
            await asyncio.sleep(2.0)  # the retry falls due with nobody free
            assert passes() - before < 10, passes() - before
            assert node.campaigns.runs["again"].dialer.records()["b1"].attempts == 1
            await http.post("/api/agents/2001/ready", headers=SUPERVISOR)
            await campaign_finished(http, "again", 10)
        assert (await carrier.wait()).successful == 2
    record = node.campaigns.runs["again"].dialer.records()["b1"]
    assert (record.state, record.attempts, record.last_result) == ("failed", 2, "busy")


async def test_a_due_callback_known_to_two_nodes_is_offered_by_one_only(tmp_path):

    with two_nodes_on_one_database(tmp_path, ["2001"]) as configs:
        async with running_node(configs[0]) as a:
            url = f"http://{configs[0].api.host}:{a.api.port}"
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                r = await http.post("/api/callbacks", json={"number": "0312345678", "due": time.time() + 1.5,
                                                            "queue": "sales"}, headers=SUPERVISOR)
                assert r.status_code == 200, r.text
                cid = r.json()["id"]
            async with running_node(configs[1]) as b:  # b reads the book at start: it knows the callback too
                assert b.campaigns.callbacks[cid].state == "pending"
                key = f"callback-{cid}"
                await wait_for(lambda: key in a.centre.callbacks or key in b.centre.callbacks, timeout=5)
                await asyncio.sleep(1.0)  # the other node's timer has fired by now too
                assert (key in a.centre.callbacks) != (key in b.centre.callbacks)
                stored = await a.store.get_scheduled_callback(cid)
                assert stored is not None and stored.state == "offered"


async def test_a_campaign_waits_for_a_free_channel_when_its_trunk_is_full(tmp_path):
    require_sipp()
    agents = ["2001", "2002", "2003"]
    carrier_port = free_port(CARRIER_IP)
    config = campaign_config(tmp_path, agents, carrier_port)
    trunk = config.trunks[0].model_copy(update={"max_channels": 1})
    config = config.model_copy(update={"trunks": [trunk]})
    async with running_node(config) as node, agent_phones(node, tmp_path, agents):
        carrier = await start_carrier(carrier_port, calls=8)
        passes = count_pacing(node)
        most = 0

        async def sample() -> None:
            nonlocal most
            while True:
                most = max(most, node.trunks.channels_in_use("carrier"))
                await asyncio.sleep(0.02)

        sampler = asyncio.ensure_future(sample())
        api = f"http://{config.api.host}:{node.api.port}"
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            await create_campaign(http, "narrow", "progressive", max_attempts=1)
            lines = ["id,number"] + [f"n{i},03-5556-{i:03d}5" for i in range(8)]
            await http.post("/api/campaigns/narrow/records", json={"csv": "\n".join(lines)}, headers=SUPERVISOR)
            await http.put("/api/campaigns/narrow/state", json={"state": "running"}, headers=SUPERVISOR)
            final = await campaign_finished(http, "narrow", 60)
        sampler.cancel()
        assert (await carrier.wait()).successful == 8
    assert most == 1
    assert final["stats"]["connected"] == 8 and final["stats"]["attempts"] == 8
    assert passes() < 200, passes()  # it waited for channels rather than churning


async def test_a_carrier_refusing_every_call_pauses_the_campaign_instead_of_using_up_the_list(tmp_path):
    require_sipp()
    agents = ["2001", "2002", "2003"]
    carrier_port = free_port(CARRIER_IP)
    config = campaign_config(tmp_path, agents, carrier_port)
    async with running_node(config) as node, agent_phones(node, tmp_path, agents):
        carrier = await start_carrier(carrier_port, calls=100)
        api = f"http://{config.api.host}:{node.api.port}"
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            await create_campaign(http, "fault", "progressive", max_attempts=1)
            lines = ["id,number"] + [f"f{i},03-{i:02d}55-8888" for i in range(20)]
            await http.post("/api/campaigns/fault/records", json={"csv": "\n".join(lines)}, headers=SUPERVISOR)
            await http.put("/api/campaigns/fault/state", json={"state": "running"}, headers=SUPERVISOR)
            await asyncio.sleep(3.0)  # the first pause is 5 s
            stats = (await http.get("/api/campaigns/fault", headers=SUPERVISOR)).json()["stats"]
        carrier.kill()
        await carrier.wait()
    # Three free agents: one round of three calls failed at once, then the campaign waited.
    assert 3 <= stats["attempts"] <= 5, stats
    assert stats["results"]["unreachable"] == stats["completed_attempts"]
    assert node.campaigns.runs["fault"].backoff == 5.0


async def test_a_previewed_record_left_alone_goes_back_to_the_list(tmp_path):
    config = campaign_config(tmp_path, ["2001", "2002"], free_port(CARRIER_IP))
    node = Node(config)
    node.campaigns.lease_seconds = 1.5  # a round every 0.5 s
    node.campaigns.preview_hold = 1.0
    await node.start()
    try:
        url = f"http://{config.api.host}:{node.api.port}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            await create_campaign(http, "idle", "preview")
            await http.post("/api/campaigns/idle/records", json={"csv": numbers_csv(2)}, headers=SUPERVISOR)
            await http.put("/api/campaigns/idle/state", json={"state": "running"}, headers=SUPERVISOR)
            for agent in ("2001", "2002"):
                await http.post(f"/api/agents/{agent}/login", headers=SUPERVISOR)
            r = await http.post("/api/campaigns/idle/preview", headers=agent_auth("2001"))
            assert r.json()["record"]["id"] == "r0"
            run = node.campaigns.runs["idle"]
            await wait_for(lambda: run.dialer.record("r0").state == "pending", timeout=5)
            # The agent who walked away no longer holds it; the next agent is offered it.
            r = await http.post("/api/campaigns/idle/records/r0/dial", headers=agent_auth("2001"))
            assert r.status_code == 409
            r = await http.post("/api/campaigns/idle/preview", headers=agent_auth("2002"))
            assert r.json()["record"]["id"] == "r0"  # in its old place
    finally:
        await node.stop()
