"""Transfers through the switch with real SIPp phones: attended transfer with Replaces (RFC 3891,
RFC 5589 section 7) on relayed and anchored calls, blind REFER on a relayed call, and an INVITE
with Replaces that names no dialog of the switch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from softswitch.config import load_config
from tests.nodes import DOMAIN, make_users, node_config, running_node, wait_for, wait_for_cdrs
from tests.peers import SippProcess, free_port, require_sipp, run_sipp, start_sipp, write_users_inf
from tests.test_queue_sipp import write_node

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _sipp_present() -> None:
    require_sipp()


async def phone(node, tmp_path: Path, user: tuple[str, str], scenario: str) -> SippProcess:
    """Register `user` from a SIPp of its own, then run `scenario` there as that phone."""
    port = free_port()
    inf = write_users_inf(tmp_path / f"reg-{user[0]}.csv", [user], DOMAIN)
    reg = await run_sipp("register_only.xml", node.address("udp"), inf=inf, port=port)
    assert reg.returncode == 0 and reg.successful == 1, reg.explain()
    return await start_sipp(scenario, None, port=port, calls=1, timeout=30)


def transferor_inf(tmp_path: Path, user: tuple[str, str], calls: list[tuple[str, ...]]) -> Path:
    """One injection line per call of the transferor: user, credentials, domain, then `calls` fields."""
    u, pw = user
    lines = ["SEQUENTIAL"] + [
        ";".join([u, f"[authentication username={u} password={pw}]", DOMAIN, *fields]) for fields in calls
    ]
    path = tmp_path / "transferor.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


async def attended_transfer(node, tmp_path: Path, agent: tuple[str, str], first: str, colleague: str,
                            phones: list[SippProcess]) -> list:
    """The agent calls `first`, holds, calls `colleague`, and transfers the first call to them with
    Replaces; every SIPp must end well. The node's CDRs."""
    events: list = []
    node.bus.subscribe(events.append)
    await asyncio.sleep(0.3)
    inf = transferor_inf(tmp_path, agent, [(first, "first", colleague), (colleague, "second", colleague)])
    a = await run_sipp("uac_attended_transferor.xml", node.address("udp"), inf=inf, calls=2, rate=1,
                       extra=["-rp", "1000", "-cid_str", "%u-%p-xfer"], timeout=30)
    assert a.returncode == 0 and a.successful == 2, a.explain()
    for p in phones:
        result = await p.wait()
        assert result.returncode == 0 and result.successful == 1, result.explain()
    cdrs = await wait_for_cdrs(events, 2)
    assert await wait_for(lambda: len(node.b2bua) == 0)
    return cdrs


async def test_attended_transfer_of_a_relayed_call_connects_the_customer_to_the_colleague(tmp_path):
    users = make_users(3)
    agent, customer, colleague = users
    async with running_node(node_config(tmp_path, users=users)) as node:
        c = await phone(node, tmp_path, customer, "uas_transferee.xml")  # re-INVITEd with B's offer
        b = await phone(node, tmp_path, colleague, "uas_transfer_target.xml")  # offers, gets C's answer
        cdrs = await attended_transfer(node, tmp_path, agent, customer[0], colleague[0], [c, b])
        by_callee = {cdr.callee: cdr for cdr in cdrs}
        # The agent's consultation call ends as transferred; the customer's call goes on with the
        # colleague until the colleague hangs up.
        assert by_callee[colleague[0]].hangup_cause == "transferred"
        kept = by_callee[customer[0]]
        assert kept.disposition == "answered" and kept.hangup_cause == "normal"
        assert [leg[2] for leg in kept.legs] == [agent[0], customer[0]]


async def test_attended_transfer_of_an_anchored_dialplan_call_moves_the_colleague_onto_its_media(tmp_path):
    config = load_config(write_node(tmp_path, ["2001", "2002"], ["3001"]))
    async with running_node(config) as node:
        # 3001 dials 800 (the dialplan rings 2001: media anchored at the switch), then calls 2002.
        c = await phone(node, tmp_path, ("2001", "pw-2001"), "uas_answer.xml")  # sees nothing but BYE
        b = await phone(node, tmp_path, ("2002", "pw-2002"), "uas_transfer_target.xml")
        cdrs = await attended_transfer(node, tmp_path, ("3001", "pw-3001"), "800", "2002", [c, b])
        by_callee = {cdr.callee: cdr for cdr in cdrs}
        assert by_callee["2002"].hangup_cause == "transferred"
        kept = by_callee["800"]
        assert kept.disposition == "answered" and kept.agent == "2001"
        assert kept.hangup_side == "caller"  # the colleague, now in the caller's place, hung up


async def test_blind_refer_on_a_relayed_call_is_carried_out_by_the_switch(tmp_path):
    users = make_users(3)
    transferor, transferee, target = users
    async with running_node(node_config(tmp_path, users=users)) as node:
        events: list = []
        node.bus.subscribe(events.append)
        c = await phone(node, tmp_path, transferee, "uas_transferee.xml")
        t = await phone(node, tmp_path, target, "uas_blind_target.xml")  # rung without SDP, offers
        await asyncio.sleep(0.3)
        inf = transferor_inf(tmp_path, transferor, [(transferee[0], target[0])])
        a = await run_sipp("uac_blind_transferor.xml", node.address("udp"), inf=inf, timeout=30)
        assert a.returncode == 0 and a.successful == 1, a.explain()
        for p in (c, t):
            result = await p.wait()
            assert result.returncode == 0 and result.successful == 1, result.explain()
        (cdr,) = await wait_for_cdrs(events)
        assert cdr.disposition == "answered" and cdr.hangup_cause == "normal"
        assert [leg[2] for leg in cdr.legs] == [transferor[0], transferee[0], target[0]]
        assert await wait_for(lambda: len(node.b2bua) == 0)


async def test_invite_with_replaces_naming_an_unknown_dialog_gets_481(tmp_path):
    users = make_users(2)
    async with running_node(node_config(tmp_path, users=users)) as node:
        inf = write_users_inf(tmp_path / "caller.csv", [users[0]], DOMAIN)
        result = await run_sipp("uac_replaces_unknown.xml", node.address("udp"), inf=inf, service=users[1][0],
                                timeout=20)
        assert result.returncode == 0 and result.successful == 1, result.explain()
        assert len(node.b2bua) == 0


async def test_invite_with_replaces_takes_over_a_relayed_call_and_the_replaced_phone_is_hung_up(tmp_path):
    users = make_users(3)
    first, held, taker = users
    async with running_node(node_config(tmp_path, users=users)) as node:
        events: list = []
        node.bus.subscribe(events.append)
        c = await phone(node, tmp_path, held, "uas_transferee.xml")  # re-INVITEd with the taker's offer
        await asyncio.sleep(0.3)
        lines = []
        for user, role in ((first, "first"), (taker, "second")):
            lines.append(";".join([user[0], f"[authentication username={user[0]} password={user[1]}]", DOMAIN,
                                   held[0], role]))
        inf = tmp_path / "phones.csv"
        inf.write_text("SEQUENTIAL\n" + "\n".join(lines) + "\n")
        a = await run_sipp("uac_replacing_phone.xml", node.address("udp"), inf=inf, calls=2, rate=1,
                           extra=["-rp", "1000", "-cid_str", "%u-%p-rep"], timeout=30)
        assert a.returncode == 0 and a.successful == 2, a.explain()
        result = await c.wait()
        assert result.returncode == 0 and result.successful == 1, result.explain()
        (cdr,) = await wait_for_cdrs(events)
        assert cdr.disposition == "answered" and cdr.caller == first[0] and cdr.hangup_side == "caller"
        assert await wait_for(lambda: len(node.b2bua) == 0)
