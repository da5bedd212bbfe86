"""Directed call pickup by Replaces with real SIPp phones (RFC 3891 section 3): an INVITE with
Replaces naming the early dialog of a phone a dial step rings answers the call in its place; the
ringing phone is cancelled."""

from __future__ import annotations

import asyncio

import pytest

from softswitch.config import load_config
from softswitch.sip.dialog import Dialog
from tests.nodes import DOMAIN, running_node, wait_for, wait_for_cdrs
from tests.peers import free_port, require_sipp, run_sipp, start_sipp, write_users_inf
from tests.test_dial_forwarding_sipp import dialled, phone, write_node

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _sipp_present() -> None:
    require_sipp()


def early_dialog(node, user: str) -> Dialog | None:
    """The switch's early dialog with `user`'s ringing phone: what a phone watching it (a busy lamp
    field subscription) would learn."""
    for call in node.b2bua.calls.values():
        for leg in call.legs:
            if not leg.done and leg.dialog is not None and leg.target.user == user:
                return leg.dialog
    return None


async def test_invite_with_replaces_naming_a_ringing_dial_step_leg_picks_the_call_up(tmp_path):
    config = load_config(write_node(tmp_path, {}))
    async with running_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        ringing = await phone(node, tmp_path, "2001", "uas_ring_until_cancel.xml")
        await asyncio.sleep(0.3)
        inf = write_users_inf(tmp_path / "caller.csv", [("3001", "pw-3001")], DOMAIN)
        caller = await start_sipp("uac_call.xml", node.address("udp"), inf=inf, service="800", timeout=30)
        assert await wait_for(lambda: early_dialog(node, "2001") is not None and
                              early_dialog(node, "2001").remote_tag)
        d = early_dialog(node, "2001")
        assert d is not None
        inf = write_users_inf(tmp_path / "picker.csv", [("2002", "pw-2002")], DOMAIN)
        picker = await run_sipp("uac_pickup_replaces.xml", node.address("udp"), inf=inf, service="2001",
                                port=free_port(), timeout=30,
                                extra=["-key", "callid", d.call_id, "-key", "totag", d.local_tag,
                                       "-key", "fromtag", d.remote_tag, "-key", "flags", ";early-only"])
        assert picker.returncode == 0 and picker.successful == 1, picker.explain()
        for p in (caller, ringing):
            assert p is not None
            result = await p.wait()
            assert result.returncode == 0 and result.successful == 1, result.explain()
        (cdr,) = await wait_for_cdrs(events)
        assert cdr.disposition == "answered" and cdr.agent == "2002" and cdr.hangup_side == "caller"
        assert dialled(cdr) == ["2001", "2002"]
        assert await wait_for(lambda: len(node.b2bua) == 0)
