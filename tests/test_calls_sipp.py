"""Calls through the B2BUA between real SIPp phones: one registers and answers, one calls."""

from __future__ import annotations

import asyncio

import pytest

from softswitch.events import CDR, CallAnswered, CallStarted
from tests.nodes import DOMAIN, make_users, node_config, running_node
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
        for _ in range(20):
            if any(isinstance(e, CDR) for e in events):
                break
            await asyncio.sleep(0.05)
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
