"""Calls through the B2BUA between real SIPp phones: one registers and answers, one calls."""

from __future__ import annotations

import asyncio

import pytest

from softswitch.events import CDR, CallAnswered, CallStarted
from tests.nodes import DOMAIN, make_users, node_config, running_node, wait_for, wait_for_cdrs
from tests.peers import free_port, require_sipp, run_sipp, start_sipp, write_users_inf

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _sipp_present() -> None:
    require_sipp()


async def register_at(node, tmp_path, user: tuple[str, str], port: int, transport: str = "udp") -> None:
    inf = write_users_inf(tmp_path / f"reg-{user[0]}.csv", [user], DOMAIN)
    result = await run_sipp("register_only.xml", node.address(transport), inf=inf, port=port, transport=transport)
    assert result.returncode == 0 and result.successful == 1, result.explain()


async def test_registered_phone_calls_another_through_the_switch_and_a_cdr_is_published(tmp_path):
    users = make_users(2)
    caller, callee = users
    async with running_node(node_config(tmp_path, users=users)) as node:
        events: list = []
        node.bus.subscribe(events.append)
        callee_port = free_port()
        await register_at(node, tmp_path, callee, callee_port)
        uas = await start_sipp("uas_answer.xml", None, port=callee_port, calls=1, timeout=30)
        await asyncio.sleep(0.3)
        inf = write_users_inf(tmp_path / "caller.csv", [caller], DOMAIN)
        uac = await run_sipp("uac_call.xml", node.address("udp"), inf=inf, service=callee[0], timeout=30)
        callee_result = await uas.wait()
        assert uac.returncode == 0 and uac.successful == 1, uac.explain()
        assert callee_result.returncode == 0 and callee_result.successful == 1, callee_result.explain()
        await wait_for_cdrs(events)
        (cdr,) = [e for e in events if isinstance(e, CDR)]
        assert cdr.caller == caller[0] and cdr.callee == callee[0]
        assert cdr.disposition == "answered" and cdr.hangup_side == "caller"
        assert cdr.answer is not None and cdr.end >= cdr.answer >= cdr.start
        assert len(cdr.legs) == 2 and cdr.legs[0][1] == "inbound" and cdr.legs[1][1] == "outbound"
        assert any(isinstance(e, CallStarted) for e in events)
        assert any(isinstance(e, CallAnswered) for e in events)
        assert len(node.b2bua) == 0


async def test_calling_an_unregistered_user_gets_480_and_an_unknown_one_404(tmp_path):
    users = make_users(2)
    async with running_node(node_config(tmp_path, users=users)) as node:
        inf = write_users_inf(tmp_path / "caller.csv", [users[0]], DOMAIN)
        for service, scenario in ((users[1][0], "uac_expect_480.xml"), ("9999", "uac_expect_404.xml")):
            result = await run_sipp(scenario, node.address("udp"), inf=inf, service=service, timeout=20)
            assert result.returncode == 0 and result.successful == 1, result.explain()


async def call_through(node, tmp_path, *, caller_scenario: str, callee_scenarios: list[str],
                       users: list[tuple[str, str]]) -> list:
    """Register the callee from one SIPp per scenario, run them as phones, place one call from
    the caller, and return the events the node published."""
    caller, callee = users
    return await place_call(node, tmp_path, caller, callee[0], [(callee, s) for s in callee_scenarios],
                            caller_scenario)


async def place_call(node, tmp_path, caller: tuple[str, str], service: str,
                     phones: list[tuple[tuple[str, str], str]], caller_scenario: str) -> list:
    """Register each (user, scenario) phone from a SIPp of its own and run it, call `service` from
    `caller`, wait for every SIPp to finish well and for the CDR; the node's events."""
    events: list = []
    node.bus.subscribe(events.append)
    running = []
    for i, (user, scenario) in enumerate(phones):
        port = free_port()
        inf = write_users_inf(tmp_path / f"phone{i}-{user[0]}.csv", [user], DOMAIN)
        reg = await run_sipp("register_only.xml", node.address("udp"), inf=inf, port=port)
        assert reg.returncode == 0 and reg.successful == 1, reg.explain()
        running.append(await start_sipp(scenario, None, port=port, calls=1, timeout=30))
    await asyncio.sleep(0.3)
    inf = write_users_inf(tmp_path / "caller.csv", [caller], DOMAIN)
    uac = await run_sipp(caller_scenario, node.address("udp"), inf=inf, service=service, timeout=30)
    assert uac.returncode == 0 and uac.successful == 1, uac.explain()
    for phone in running:
        result = await phone.wait()
        assert result.returncode == 0 and result.successful == 1, result.explain()
    await wait_for_cdrs(events)
    return events


def the_cdr(events: list) -> CDR:
    (cdr,) = [e for e in events if isinstance(e, CDR)]
    return cdr


async def test_busy_callee_gives_the_caller_486_and_a_busy_cdr(tmp_path):
    users = make_users(2)
    async with running_node(node_config(tmp_path, users=users)) as node:
        events = await call_through(node, tmp_path, caller_scenario="uac_expect_486.xml",
                                    callee_scenarios=["uas_busy.xml"], users=users)
        cdr = the_cdr(events)
        assert cdr.disposition == "busy" and cdr.answer is None and cdr.billable == 0


async def test_caller_cancelling_while_it_rings_cancels_the_callee(tmp_path):
    users = make_users(2)
    async with running_node(node_config(tmp_path, users=users)) as node:
        events = await call_through(node, tmp_path, caller_scenario="uac_cancel.xml",
                                    callee_scenarios=["uas_ring_until_cancel.xml"], users=users)
        cdr = the_cdr(events)
        assert cdr.disposition == "cancelled" and cdr.hangup_side == "caller"
        assert len(node.b2bua) == 0


async def test_unanswered_call_times_out_with_480_and_the_callee_is_cancelled(tmp_path):
    users = make_users(2)
    async with running_node(node_config(tmp_path, users=users)) as node:
        node.b2bua.no_answer_timeout = 1.5
        events = await call_through(node, tmp_path, caller_scenario="uac_expect_480.xml",
                                    callee_scenarios=["uas_ring_until_cancel.xml"], users=users)
        cdr = the_cdr(events)
        assert cdr.disposition == "no-answer" and cdr.hangup_side == "system"
        assert 1.4 <= cdr.end - cdr.start < 5


async def test_callee_hanging_up_ends_the_call_on_both_sides(tmp_path):
    users = make_users(2)
    async with running_node(node_config(tmp_path, users=users)) as node:
        events = await call_through(node, tmp_path, caller_scenario="uac_callee_hangs_up.xml",
                                    callee_scenarios=["uas_answer_then_bye.xml"], users=users)
        cdr = the_cdr(events)
        assert cdr.disposition == "answered" and cdr.hangup_side == "callee"


async def test_hold_reinvite_is_relayed_both_ways(tmp_path):
    users = make_users(2)
    async with running_node(node_config(tmp_path, users=users)) as node:
        events = await call_through(node, tmp_path, caller_scenario="uac_hold.xml",
                                    callee_scenarios=["uas_answer_hold.xml"], users=users)
        assert the_cdr(events).disposition == "answered"


async def test_forked_call_first_answer_wins_and_the_other_phone_is_cancelled(tmp_path):
    users = make_users(2)
    async with running_node(node_config(tmp_path, users=users)) as node:
        events = await call_through(node, tmp_path, caller_scenario="uac_call.xml",
                                    callee_scenarios=["uas_answer.xml", "uas_ring_until_cancel.xml"],
                                    users=users)
        cdr = the_cdr(events)
        assert cdr.disposition == "answered" and len(cdr.legs) == 3


async def test_called_party_blind_transfers_the_caller_with_refer(tmp_path):
    from softswitch.config import load_config
    from tests.test_queue_sipp import register_agent, write_node

    config = load_config(write_node(tmp_path, ["2001", "2002"], ["3001"]))
    async with running_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        b_port = await register_agent(node, tmp_path, "2001")
        c_port = await register_agent(node, tmp_path, "2002")
        transferor = await start_sipp("uas_answer_refer.xml", None, port=b_port, calls=1, timeout=30,
                                      extra=["-key", "refer_to", "2002"])
        target = await start_sipp("uas_answer.xml", None, port=c_port, calls=1, timeout=30)
        await asyncio.sleep(0.3)
        inf = write_users_inf(tmp_path / "caller.csv", [("3001", "pw-3001")], DOMAIN)
        caller = await run_sipp("uac_call_long.xml", node.address("udp"), inf=inf, service="800", timeout=30)
        assert caller.returncode == 0 and caller.successful == 1, caller.explain()
        b = await transferor.wait()
        assert b.returncode == 0 and b.successful == 1, b.explain()
        c = await target.wait()  # answered the transferred call and got the caller's BYE
        assert c.returncode == 0 and c.successful == 1, c.explain()
        await wait_for_cdrs(events)
        cdr = the_cdr(events)
        assert cdr.disposition == "answered" and cdr.hangup_side == "caller"
        assert [leg[2] for leg in cdr.legs] == ["3001", "2001", "2002"]
        assert len(node.b2bua) == 0


def forwarding_config(tmp_path, forward: dict):
    users = [{"id": u, "password": p} for u, p in make_users(3)]
    users[1]["forward"] = forward
    return node_config(tmp_path, directory={"users": users})


async def forwarded_call(node, tmp_path, first: str | None, second: str, caller_scenario: str = "uac_call.xml") -> list:
    """u0000 calls u0001, whose phone runs `first` (None: not registered); u0002 runs `second`."""
    users = make_users(3)
    phones = [(users[1], first)] if first is not None else []
    return await place_call(node, tmp_path, users[0], users[1][0], [*phones, (users[2], second)],
                            caller_scenario)


async def test_busy_user_forwards_to_another_phone(tmp_path):
    async with running_node(forwarding_config(tmp_path, {"busy": "u0002"})) as node:
        events = await forwarded_call(node, tmp_path, "uas_busy.xml", "uas_answer.xml")
        cdr = the_cdr(events)
        assert cdr.disposition == "answered" and [leg[2] for leg in cdr.legs] == ["u0000", "u0001", "u0002"]
        assert cdr.callee == "u0001" and cdr.agent == "u0002"  # dialled u0001, answered by u0002


async def test_unanswered_user_forwards_after_the_configured_time(tmp_path):
    async with running_node(forwarding_config(tmp_path, {"no_answer": "u0002", "no_answer_after": 1.0})) as node:
        events = await forwarded_call(node, tmp_path, "uas_ring_until_cancel.xml", "uas_answer.xml")
        assert the_cdr(events).disposition == "answered"


async def test_unconditional_forwarding_never_rings_the_user(tmp_path):
    async with running_node(forwarding_config(tmp_path, {"always": "u0002"})) as node:
        events = await forwarded_call(node, tmp_path, None, "uas_answer.xml")
        assert the_cdr(events).disposition == "answered"


async def test_unanswered_calls_appear_in_the_users_missed_call_list(tmp_path):
    import httpx

    users = make_users(2)
    tokens = [{"token": "user-u0001-token", "role": "agent", "agent": "u0001"}]
    async with running_node(node_config(tmp_path, users=users, api={"tokens": tokens})) as node:
        await call_through(node, tmp_path, caller_scenario="uac_expect_486.xml",
                           callee_scenarios=["uas_busy.xml"], users=users)
        assert node.writer is not None
        await node.writer.drain()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.api.port}") as http:
            r = await http.get("/api/users/u0001/missed", headers={"Authorization": "Bearer user-u0001-token"})
            other = await http.get("/api/users/u0000/missed", headers={"Authorization": "Bearer user-u0001-token"})
        assert r.status_code == 200, r.text
        assert [(m["caller"], m["disposition"]) for m in r.json()["missed"]] == [("u0000", "busy")]
        assert other.status_code == 403  # a user sees only their own list


async def test_sequential_ring_group_rings_the_next_member_when_the_first_is_busy(tmp_path):
    from softswitch.config import load_config
    from tests.test_queue_sipp import write_node

    config = load_config(write_node(tmp_path, ["2001", "2002"], ["3001"]))
    async with running_node(config) as node:
        phones = [(("2001", "pw-2001"), "uas_busy.xml"), (("2002", "pw-2002"), "uas_answer.xml")]
        events = await place_call(node, tmp_path, ("3001", "pw-3001"), "900", phones, "uac_call.xml")
        cdr = the_cdr(events)
        assert cdr.disposition == "answered" and [leg[2] for leg in cdr.legs] == ["3001", "2001", "2002"]
        assert cdr.agent == "2002"


async def test_a_parked_call_is_retrieved_from_another_phone_by_its_slot(tmp_path):
    from softswitch.config import load_config
    from tests.test_queue_sipp import register_agent, write_node

    config = load_config(write_node(tmp_path, ["2001", "2002"], ["3001"]))
    async with running_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        b_port = await register_agent(node, tmp_path, "2001")
        parker = await start_sipp("uas_answer_refer.xml", None, port=b_port, calls=1, timeout=30,
                                  extra=["-key", "refer_to", "*701"])  # park in slot 1
        await asyncio.sleep(0.3)
        inf = write_users_inf(tmp_path / "caller.csv", [("3001", "pw-3001")], DOMAIN)
        caller = await start_sipp("uac_call_long.xml", node.address("udp"), inf=inf, service="800", timeout=30)
        assert (await parker.wait()).successful == 1  # 202, NOTIFY, then hung up by the switch
        assert "1" in node.sessions.parked
        retriever_inf = write_users_inf(tmp_path / "retriever.csv", [("2002", "pw-2002")], DOMAIN)
        retriever = await run_sipp("uac_feature.xml", node.address("udp"), inf=retriever_inf, service="*711",
                                   timeout=30)  # connected until the parked caller hangs up
        assert retriever.returncode == 0 and retriever.successful == 1, retriever.explain()
        first = await caller.wait()
        assert first.returncode == 0 and first.successful == 1, first.explain()
        assert not node.sessions.parked and len(node.b2bua) == 0


async def test_a_call_ringing_at_one_extension_is_picked_up_from_another(tmp_path):
    from softswitch.config import load_config
    from tests.test_queue_sipp import register_agent, write_node

    config = load_config(write_node(tmp_path, ["2001", "2002"], ["3001"]))
    async with running_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        ringing_port = await register_agent(node, tmp_path, "2001")
        ringing = await start_sipp("uas_ring_until_cancel.xml", None, port=ringing_port, calls=1, timeout=30)
        await asyncio.sleep(0.3)
        inf = write_users_inf(tmp_path / "caller.csv", [("3001", "pw-3001")], DOMAIN)
        caller = await start_sipp("uac_call_long.xml", node.address("udp"), inf=inf, service="800", timeout=30)
        assert await wait_for(lambda: "2001" in node.sessions.ringing)
        picker_inf = write_users_inf(tmp_path / "picker.csv", [("2002", "pw-2002")], DOMAIN)
        picker = await run_sipp("uac_feature.xml", node.address("udp"), inf=picker_inf, service="*82001",
                                timeout=30)  # connected until the caller hangs up
        assert picker.returncode == 0 and picker.successful == 1, picker.explain()
        assert (await ringing.wait()).successful == 1  # the ringing phone was cancelled
        first = await caller.wait()
        assert first.returncode == 0 and first.successful == 1, first.explain()
        cdrs = await wait_for_cdrs(events, 2)
        picked = [c for c in cdrs if c.caller == "3001"][0]
        assert picked.disposition == "answered" and picked.agent == "2002"
        assert len(node.b2bua) == 0


async def test_a_callee_sending_reliable_provisionals_gets_its_prack(tmp_path):
    users = make_users(2)
    async with running_node(node_config(tmp_path, users=users)) as node:
        events = await call_through(node, tmp_path, caller_scenario="uac_call.xml",
                                    callee_scenarios=["uas_answer_100rel.xml"], users=users)
        assert the_cdr(events).disposition == "answered"
