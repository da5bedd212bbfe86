"""The contact centre end to end over real SIP: a SIPp caller reaches the dialplan, hears a
Japanese TTS greeting and a menu, presses 1 (RFC 4733), waits in the queue, and a registered
SIPp agent phone rings and is bridged; a returning caller goes to the agent who handled them."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest

from softswitch.config import load_config
from softswitch.events import CDR, AgentStateChanged, QueueEvent
from tests.nodes import DOMAIN, running_node, wait_for_cdrs
from tests.peers import free_port, require_sipp, run_sipp, start_sipp, write_users_inf

pytestmark = pytest.mark.integration

PROMPTS = Path(__file__).resolve().parents[1] / "dialplans" / "prompts"

DIALPLAN = """\
version: 1
ring_groups:
  desk:
    members: __AGENTS__
    strategy: sequential
    timeout: 5
contexts:
  internal:
    users: all
    routes:
      - name: support-line
        match: {number: "700"}
        steps:
          - answer:
          - say: "お電話ありがとうございます。"
          - menu:
              prompt: {say: "サポートは1を押してください。"}
              timeout: 6
              retries: 2
              options:
                "1":
                  - queue: support
          - hangup:
      - name: desk-group
        match: {number: "900"}
        steps:
          - dial: {group: desk}
          - hangup: busy
      - name: agent-direct
        match: {number: "800"}
        steps:
          - dial: {users: ["2001"], timeout: 20}
          - hangup:
"""


def write_node(tmp: Path, agents: list[str], callers: list[str], plan: str | None = None) -> Path:
    port = free_port()
    rtp = 10000 + (free_port() % 20000) // 2 * 2  # a range of its own, so parallel runs rarely meet
    users = [f"    - {{id: '{a}', password: 'pw-{a}', agent: {{skills: {{support: 5}}, queues: [support]}}}}"
             for a in agents]
    users += [f"    - {{id: '{u}', password: 'pw-{u}'}}" for u in callers]
    (tmp / "plan.yaml").write_text(plan if plan is not None else DIALPLAN.replace("__AGENTS__", json.dumps(agents)))
    path = tmp / "node.yaml"
    path.write_text("\n".join([
        "sip:",
        f"  listen: ['udp://127.0.0.1:{port}']",
        f"  domain: {DOMAIN}",
        "security: {digest_algorithms: [MD5]}",
        "media:",
        "  address: 127.0.0.1",
        f"  rtp_ports: '{rtp}-{rtp + 199}'",
        f"  prompts_dir: '{PROMPTS}'",
        f"  tts_cache_dir: '{tmp / 'tts'}'",
        f"  recordings_dir: '{tmp / 'rec'}'",
        f"database: 'sqlite:///{tmp / 'node.db'}'",
        f"api: {{listen: '127.0.0.1:{free_port(kind=socket.SOCK_STREAM)}'}}",
        "queues:",
        "  - {name: support, skills: {support: 1}, ring_timeout: 8, wrap_up: 0, announce_every: null}",
        "directory:",
        "  users:",
        *users,
        "dialplan: plan.yaml",
        "",
    ]))
    return path


async def register_agent(node, tmp: Path, agent: str) -> int:
    port = free_port()
    inf = write_users_inf(tmp / f"agent-{agent}.csv", [(agent, f"pw-{agent}")], DOMAIN)
    reg = await run_sipp("register_only.xml", node.address("udp"), inf=inf, port=port)
    assert reg.returncode == 0 and reg.successful == 1, reg.explain()
    return port


async def queue_call(node, tmp: Path, caller: str, agent_ports: dict[str, int], answering: str) -> list:
    """One IVR call from `caller`; only `answering`'s phone is running (answers at once)."""
    events: list = []
    unsubscribe = node.bus.subscribe(events.append)
    phone = await start_sipp("uas_answer.xml", None, port=agent_ports[answering], calls=1, timeout=40)
    await asyncio.sleep(0.3)
    inf = write_users_inf(tmp / f"caller-{caller}.csv", [(caller, f"pw-{caller}")], DOMAIN)
    uac = await run_sipp("uac_ivr_queue.xml", node.address("udp"), inf=inf, service="700", timeout=40)
    assert uac.returncode == 0 and uac.successful == 1, uac.explain()
    agent_side = await phone.wait()
    assert agent_side.returncode == 0 and agent_side.successful == 1, agent_side.explain()
    await wait_for_cdrs(events)
    unsubscribe()
    return events


async def test_ivr_caller_presses_1_waits_and_is_bridged_to_a_registered_agent(tmp_path):
    require_sipp()
    config = load_config(write_node(tmp_path, ["2001"], ["3001"]))
    async with running_node(config) as node:
        ports = {"2001": await register_agent(node, tmp_path, "2001")}
        events = await queue_call(node, tmp_path, "3001", ports, "2001")
        (cdr,) = [e for e in events if isinstance(e, CDR)]
        assert cdr.queue == "support" and cdr.agent == "2001"
        assert cdr.disposition == "answered" and cdr.hangup_side == "caller"
        kinds = [e.event for e in events if isinstance(e, QueueEvent)]
        assert kinds[0] == "joined", kinds
        assert "answered" in kinds, kinds
        states = [e.state for e in events if isinstance(e, AgentStateChanged) and e.agent == "2001"]
        assert "on_call" in states, states
        assert len(node.b2bua) == 0


async def test_returning_caller_is_answered_by_the_agent_who_handled_them_before(tmp_path):
    require_sipp()
    config = load_config(write_node(tmp_path, ["2001", "2002"], ["3001", "3002"]))
    async with running_node(config) as node:
        ports = {a: await register_agent(node, tmp_path, a) for a in ("2001", "2002")}
        # First call: whichever agent the strategy picks; find out who by letting both answer.
        first = await queue_call_either(node, tmp_path, "3001", ports)
        other = "2002" if first == "2001" else "2001"
        # The other agent has now been idle longest, yet the returning caller gets the first one.
        events = await queue_call(node, tmp_path, "3001", ports, first)
        (cdr,) = [e for e in events if isinstance(e, CDR)]
        assert cdr.agent == first
        # A new caller goes by the normal strategy: the longest idle agent.
        events = await queue_call(node, tmp_path, "3002", ports, other)
        (cdr,) = [e for e in events if isinstance(e, CDR)]
        assert cdr.agent == other


async def queue_call_either(node, tmp: Path, caller: str, ports: dict[str, int]) -> str:
    """A call where both agents' phones run; returns the agent who got it (the other rings not)."""
    events: list = []
    unsubscribe = node.bus.subscribe(events.append)
    phones = {a: await start_sipp("uas_answer.xml", None, port=p, calls=1, timeout=25) for a, p in ports.items()}
    await asyncio.sleep(0.3)
    inf = write_users_inf(tmp / f"caller-{caller}-first.csv", [(caller, f"pw-{caller}")], DOMAIN)
    uac = await run_sipp("uac_ivr_queue.xml", node.address("udp"), inf=inf, service="700", timeout=40)
    assert uac.returncode == 0 and uac.successful == 1, uac.explain()
    await wait_for_cdrs(events)
    unsubscribe()
    (cdr,) = [e for e in events if isinstance(e, CDR)]
    for agent, phone in phones.items():
        if agent == cdr.agent:
            assert (await phone.wait()).successful == 1
        else:
            phone.kill()
            await phone.wait()
    return cdr.agent


async def test_queued_callback_keeps_the_place_and_calls_the_caller_back_when_an_agent_is_free(tmp_path):
    require_sipp()
    path = write_node(tmp_path, ["2001"], ["3001"])
    path.write_text(path.read_text().replace("announce_every: null}", "announce_every: null, callback_key: '9'}"))
    config = load_config(path)
    async with running_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        agent_port = await register_agent(node, tmp_path, "2001")
        assert node.centre.agent_action("2001", "pause", reason="meeting") is None  # nobody free yet
        caller_port = await register_agent(node, tmp_path, "3001")  # the caller's phone is registered too
        inf = write_users_inf(tmp_path / "caller.csv", [("3001", "pw-3001")], DOMAIN)
        uac = await run_sipp("uac_queue_callback.xml", node.address("udp"), inf=inf, service="700",
                             port=caller_port, timeout=40)
        assert uac.returncode == 0 and uac.successful == 1, uac.explain()
        (asked,) = [e for e in events if isinstance(e, QueueEvent) and e.event == "callback_requested"]
        assert node.centre.engine.caller_state(asked.call_uuid) == "waiting"  # the place is kept
        assert not [e for e in events if isinstance(e, QueueEvent) and e.event == "abandoned"]
        # The agent comes back: their phone rings first, then the caller is called back.
        agent = await start_sipp("uas_answer.xml", None, port=agent_port, calls=1, timeout=40)
        customer = await start_sipp("uas_answer_then_bye.xml", None, port=caller_port, calls=1, timeout=40)
        await asyncio.sleep(0.3)
        assert node.centre.agent_action("2001", "ready") is None
        assert (await customer.wait()).successful == 1
        assert (await agent.wait()).successful == 1
        await wait_for_cdrs(events, 2)
        cdrs = [e for e in events if isinstance(e, CDR)]
        callback = cdrs[-1]
        assert (callback.caller, callback.agent, callback.queue) == ("3001", "2001", "support")
        assert callback.disposition == "answered" and [leg[2] for leg in callback.legs] == ["2001", "3001"]
        assert node.centre.engine.caller_state(asked.call_uuid) is None
        assert len(node.b2bua) == 0


async def test_a_call_that_finds_no_free_rtp_port_is_refused_with_503_and_the_node_goes_on(tmp_path):
    require_sipp()
    path = write_node(tmp_path, ["2001"], ["3001", "3002"])
    port = free_port() // 2 * 2
    text = path.read_text()
    start = text.index("  rtp_ports:")
    end = text.index("\n", start)
    path.write_text(text[:start] + f"  rtp_ports: '{port}-{port + 1}'" + text[end:])  # room for one leg
    config = load_config(path)
    async with running_node(config) as node:
        first = await start_sipp("uac_ivr_queue.xml", node.address("udp"), service="700", timeout=40,
                                 inf=write_users_inf(tmp_path / "c1.csv", [("3001", "pw-3001")], DOMAIN))
        await asyncio.sleep(1.5)  # the first call holds the only port, waiting in the IVR
        second = await run_sipp("uac_expect_503.xml", node.address("udp"), service="700", timeout=20,
                                inf=write_users_inf(tmp_path / "c2.csv", [("3002", "pw-3002")], DOMAIN))
        assert second.returncode == 0 and second.successful == 1, second.explain()
        first.kill()
        await first.wait()


async def test_a_call_whose_rtp_stops_is_hung_up_by_the_switch(tmp_path):
    require_sipp()
    path = write_node(tmp_path, ["2001"], ["3001"])
    path.write_text(path.read_text().replace("  address: 127.0.0.1\n", "  address: 127.0.0.1\n  rtp_timeout: 1.5\n"))
    config = load_config(path)
    async with running_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        # SIPp sends no audio: waiting in the IVR, the caller looks dead after 1.5 s of silence.
        caller = await run_sipp("uac_feature.xml", node.address("udp"), service="700", timeout=20,
                                inf=write_users_inf(tmp_path / "c.csv", [("3001", "pw-3001")], DOMAIN))
        assert caller.returncode == 0 and caller.successful == 1, caller.explain()  # it got the BYE
        (cdr,) = await wait_for_cdrs(events)
        assert cdr.hangup_cause == "rtp_timeout" and cdr.hangup_side == "system"


async def test_session_timer_refreshes_the_call_and_ends_it_when_the_caller_has_vanished(tmp_path):
    require_sipp()
    path = write_node(tmp_path, ["2001"], ["3001"])
    # Short SIP timers, so the unanswered refresh fails in 64*T1 = 3.2 s rather than 32 s.
    path.write_text(path.read_text().replace("sip:\n", "sip:\n  t1: 0.05\n  session_expires: 2\n", 1))
    config = load_config(path)
    async with running_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        caller = await run_sipp("uac_session_timer.xml", node.address("udp"), service="700", timeout=20,
                                inf=write_users_inf(tmp_path / "c.csv", [("3001", "pw-3001")], DOMAIN))
        assert caller.returncode == 0 and caller.successful == 1, caller.explain()  # one refresh answered
        (cdr,) = await wait_for_cdrs(events, timeout=10)
        assert cdr.hangup_cause == "session_timeout" and cdr.hangup_side == "system"
        assert len(node.b2bua) == 0


async def test_todays_queue_figures_survive_a_restart_of_the_node(tmp_path):
    require_sipp()
    from softswitch.api.acdview import queue_rows

    config = load_config(write_node(tmp_path, ["2001"], ["3001"]))
    async with running_node(config) as node:
        ports = {"2001": await register_agent(node, tmp_path, "2001")}
        await queue_call(node, tmp_path, "3001", ports, "2001")
        await asyncio.sleep(0.5)  # the store writer's batch
        (before,) = [r for r in queue_rows(node.centre.engine, time.time()) if r["queue"] == "support"]
    assert (before["offered"], before["answered"]) == (1, 1)
    async with running_node(config) as node:
        (after,) = [r for r in queue_rows(node.centre.engine, time.time()) if r["queue"] == "support"]
    for key in ("offered", "answered", "abandoned", "service_level"):
        assert after[key] == before[key], (key, before, after)
