"""Users' forwarding inside dialplan `dial` steps, with real SIPp phones and a SIPp carrier: a step
that dials one user forwards on busy, on no answer and when no phone is registered (to another
user or to an outside number through a trunk); in a ring group only `always` applies per member."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from softswitch.config import load_config
from softswitch.events import CDR
from tests.nodes import DOMAIN, running_node, wait_for, wait_for_cdrs
from tests.peers import SippProcess, free_port, require_sipp, run_sipp, start_sipp, write_users_inf

pytestmark = pytest.mark.integration

PLAN = """\
version: 1
ring_groups:
  desk: {members: __DESK__, strategy: ring_all, timeout: 10}
contexts:
  internal:
    users: all
    routes:
      - name: direct
        match: {number: "800"}
        steps:
          - dial: {users: ["2001"], timeout: 20}
          - hangup: busy
      - name: group
        match: {number: "900"}
        steps:
          - dial: {group: desk}
          - hangup: busy
"""


@pytest.fixture(autouse=True)
def _sipp_present() -> None:
    require_sipp()


def write_node(tmp: Path, forward: dict[str, dict[str, Any]], *, desk: list[str] | None = None,
               carrier_port: int | None = None) -> Path:
    """Users 2001-2004 (with `forward` rules by id) and 3001 the caller; a trunk to a SIPp carrier
    on 127.0.0.1:`carrier_port` for numbers starting with 0."""
    (tmp / "plan.yaml").write_text(PLAN.replace("__DESK__", json.dumps(desk or ["2001", "2003"])))
    rtp = 10000 + (free_port() % 20000) // 2 * 2
    users = []
    for u in ("2001", "2002", "2003", "2004", "3001"):
        rule = f", forward: {json.dumps(forward[u])}" if u in forward else ""
        users.append(f"    - {{id: '{u}', password: 'pw-{u}'{rule}}}")
    trunks = []
    if carrier_port is not None:
        trunks = ["trunks:",
                  f"  - {{name: carrier, host: 127.0.0.1, port: {carrier_port}, prefixes: ['0']}}"]
    path = tmp / "node.yaml"
    path.write_text("\n".join([
        "sip:",
        f"  listen: ['udp://127.0.0.1:{free_port()}']",
        f"  domain: {DOMAIN}",
        "security: {digest_algorithms: [MD5]}",
        "media:",
        "  address: 127.0.0.1",
        f"  rtp_ports: '{rtp}-{rtp + 199}'",
        f"  tts_cache_dir: '{tmp / 'tts'}'",
        f"  recordings_dir: '{tmp / 'rec'}'",
        f"database: 'sqlite:///{tmp / 'node.db'}'",
        f"api: {{listen: '127.0.0.1:{free_port(kind=socket.SOCK_STREAM)}'}}",
        *trunks,
        "directory:",
        "  users:",
        *users,
        "dialplan: plan.yaml",
        "",
    ]))
    return path


async def phone(node, tmp: Path, user: str, scenario: str | None) -> SippProcess | None:
    """Register `user` from a SIPp of its own and run `scenario` there (None: registered only)."""
    port = free_port()
    inf = write_users_inf(tmp / f"reg-{user}.csv", [(user, f"pw-{user}")], DOMAIN)
    reg = await run_sipp("register_only.xml", node.address("udp"), inf=inf, port=port)
    assert reg.returncode == 0 and reg.successful == 1, reg.explain()
    if scenario is None:
        return None
    return await start_sipp(scenario, None, port=port, calls=1, timeout=30)


async def call(node, tmp: Path, number: str, phones: list[SippProcess | None],
               scenario: str = "uac_call.xml") -> CDR:
    """3001 dials `number`; every phone and the caller must finish well. The call's CDR."""
    events: list = []
    node.bus.subscribe(events.append)
    await asyncio.sleep(0.3)
    inf = write_users_inf(tmp / "caller.csv", [("3001", "pw-3001")], DOMAIN)
    uac = await run_sipp(scenario, node.address("udp"), inf=inf, service=number, timeout=30)
    assert uac.returncode == 0 and uac.successful == 1, uac.explain()
    for p in phones:
        if p is not None:
            result = await p.wait()
            assert result.returncode == 0 and result.successful == 1, result.explain()
    (cdr,) = await wait_for_cdrs(events)
    assert await wait_for(lambda: len(node.b2bua) == 0)
    return cdr


def dialled(cdr: CDR) -> list[str]:
    return [leg[2] for leg in cdr.legs if leg[1] == "outbound"]


async def test_a_dial_step_to_a_busy_user_forwards_to_their_busy_destination(tmp_path):
    config = load_config(write_node(tmp_path, {"2001": {"busy": "2002"}}))
    async with running_node(config) as node:
        busy = await phone(node, tmp_path, "2001", "uas_busy.xml")
        other = await phone(node, tmp_path, "2002", "uas_answer.xml")
        cdr = await call(node, tmp_path, "800", [busy, other])
        assert cdr.disposition == "answered" and cdr.agent == "2002"
        assert dialled(cdr) == ["2001", "2002"]


async def test_a_dial_step_forwards_after_the_users_no_answer_time(tmp_path):
    config = load_config(write_node(tmp_path, {"2001": {"no_answer": "2002", "no_answer_after": 1.0}}))
    async with running_node(config) as node:
        ringing = await phone(node, tmp_path, "2001", "uas_ring_until_cancel.xml")  # cancelled after 1 s
        other = await phone(node, tmp_path, "2002", "uas_answer.xml")
        cdr = await call(node, tmp_path, "800", [ringing, other])
        assert cdr.disposition == "answered" and cdr.agent == "2002"
        assert dialled(cdr) == ["2001", "2002"]


async def test_a_dial_step_to_a_user_with_no_phone_registered_goes_to_the_no_answer_destination(tmp_path):
    config = load_config(write_node(tmp_path, {"2001": {"no_answer": "2002"}}))
    async with running_node(config) as node:
        other = await phone(node, tmp_path, "2002", "uas_answer.xml")
        cdr = await call(node, tmp_path, "800", [other])
        assert cdr.disposition == "answered" and dialled(cdr) == ["2002"]


async def test_a_dial_step_forwards_a_busy_user_to_an_outside_number_through_the_trunk(tmp_path):
    carrier_port = free_port()
    config = load_config(write_node(tmp_path, {"2001": {"busy": "090-1111-2222"}}, carrier_port=carrier_port))
    async with running_node(config) as node:
        busy = await phone(node, tmp_path, "2001", "uas_busy.xml")
        carrier = await start_sipp("uas_answer.xml", None, port=carrier_port, calls=1, timeout=30)
        cdr = await call(node, tmp_path, "800", [busy, carrier])
        assert cdr.disposition == "answered"
        (first, forwarded) = dialled(cdr)
        assert first == "2001" and forwarded.startswith("sip:09011112222@127.0.0.1")


async def test_always_forwarding_replaces_the_users_phones_in_a_dial_step(tmp_path):
    config = load_config(write_node(tmp_path, {"2001": {"always": "2002"}}))
    async with running_node(config) as node:
        await phone(node, tmp_path, "2001", None)  # registered, but must not ring
        other = await phone(node, tmp_path, "2002", "uas_answer.xml")
        cdr = await call(node, tmp_path, "800", [other])
        assert cdr.disposition == "answered" and dialled(cdr) == ["2002"]


async def test_a_ring_group_member_with_always_forwarding_rings_the_destination_instead(tmp_path):
    config = load_config(write_node(tmp_path, {"2004": {"always": "2002"}}, desk=["2003", "2004"]))
    async with running_node(config) as node:
        busy = await phone(node, tmp_path, "2003", "uas_busy.xml")
        await phone(node, tmp_path, "2004", None)  # registered, but forwarded: must not ring
        other = await phone(node, tmp_path, "2002", "uas_answer.xml")
        cdr = await call(node, tmp_path, "900", [busy, other])
        assert cdr.disposition == "answered" and cdr.agent == "2002"
        assert sorted(dialled(cdr)) == ["2002", "2003"]


async def test_ring_group_members_are_not_forwarded_on_busy(tmp_path):
    config = load_config(write_node(tmp_path, {"2001": {"busy": "2002"}}, desk=["2001", "2003"]))
    async with running_node(config) as node:
        first = await phone(node, tmp_path, "2001", "uas_busy.xml")
        second = await phone(node, tmp_path, "2003", "uas_busy.xml")
        await phone(node, tmp_path, "2002", None)  # registered: a forward would ring it
        cdr = await call(node, tmp_path, "900", [first, second], scenario="uac_expect_486.xml")
        assert cdr.disposition == "busy" and sorted(dialled(cdr)) == ["2001", "2003"]
