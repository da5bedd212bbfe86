"""Carrier trunks against real SIPp carriers: inbound DIDs, outbound calls with digest auth and
caller-ID presentation, and registration to the carrier with refreshes and back-off."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from softswitch.app import Node
from softswitch.calls.trunks import TrunkRegistrationChanged
from softswitch.config import NodeConfig
from softswitch.events import CDR
from softswitch.sip.message import parse_message
from tests.nodes import DOMAIN, UdpClient, make_users, node_config
from tests.peers import free_port, require_sipp, run_sipp, start_sipp, write_users_inf

pytestmark = pytest.mark.integration

CARRIER_IP = "127.0.0.5"
STRANGER_IP = "127.0.0.6"


@pytest.fixture(autouse=True)
def _sipp_present() -> None:
    require_sipp()


@contextlib.asynccontextmanager
async def trunk_node(config: NodeConfig, *, retry_base: float | None = None) -> AsyncIterator[Node]:
    node = Node(config)
    if retry_base is not None:
        node.trunks.retry_base = retry_base
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def config_with_trunk(tmp_path: Path, users: list[tuple[str, str]], trunk: dict[str, Any], **kw: Any) -> NodeConfig:
    return node_config(tmp_path, users=users, trunks=[{"name": "carrier", **trunk}], **kw)


async def register_phone(node: Node, tmp_path: Path, user: tuple[str, str], port: int) -> None:
    inf = write_users_inf(tmp_path / f"reg-{user[0]}.csv", [user], DOMAIN)
    result = await run_sipp("register_only.xml", node.address("udp"), inf=inf, port=port)
    assert result.returncode == 0 and result.successful == 1, result.explain()


async def wait_for(events: list, kind: type, count: int = 1, timeout: float = 3.0) -> list:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        found = [e for e in events if isinstance(e, kind)]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    return [e for e in events if isinstance(e, kind)]


def invites_seen_by(trace: Path) -> list:
    """The INVITEs a SIPp UAS received, parsed."""
    text = trace.read_text(errors="replace")
    messages = []
    for m in re.finditer(r"UDP message received \[\d+\] bytes :\n\n(.*?)(?=\n-{5,}|\Z)", text, re.S):
        raw = m.group(1).replace("\r\n", "\n").replace("\n", "\r\n")
        if raw.startswith("INVITE "):
            if not raw.endswith("\r\n\r\n") and "\r\n\r\n" not in raw:
                raw += "\r\n\r\n"
            messages.append(parse_message(raw.encode()))
    return messages


# -- (1) inbound ---------------------------------------------------------------------------------


async def test_carrier_delivers_a_did_from_its_address_to_the_registered_phone_and_the_cdr_names_trunk_and_did(
        tmp_path):
    users = make_users(2)
    config = config_with_trunk(tmp_path, users, {
        "host": CARRIER_IP, "addresses": [f"{CARRIER_IP}/32"], "dids": ["03-5555-0001=u0001"],
    })
    async with trunk_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        phone_port = free_port()
        await register_phone(node, tmp_path, users[1], phone_port)
        phone = await start_sipp("uas_answer.xml", None, port=phone_port, timeout=20,
                                 extra=["-trace_msg", "-message_file", str(tmp_path / "phone.log")])
        await asyncio.sleep(0.2)
        carrier = await run_sipp("carrier_uac_did.xml", node.address("udp"), local_ip=CARRIER_IP,
                                 service="+81355550001", timeout=20, extra=["-key", "caller", "09012345678"])
        assert carrier.returncode == 0 and carrier.successful == 1, carrier.explain()
        answered = await phone.wait()
        assert answered.returncode == 0 and answered.successful == 1, answered.explain()
        (cdr,) = await wait_for(events, CDR)
        assert (cdr.trunk, cdr.did, cdr.caller, cdr.callee) == ("carrier", "0355550001", "09012345678", "u0001")
        assert cdr.disposition == "answered" and cdr.agent == "u0001"
        (invite,) = invites_seen_by(tmp_path / "phone.log")
        assert invite.from_.uri.user == "09012345678"  # the phone sees who calls


async def test_the_same_invite_from_an_address_outside_the_trunk_is_challenged_like_a_phone(tmp_path):
    users = make_users(2)
    config = config_with_trunk(tmp_path, users, {
        "host": CARRIER_IP, "addresses": [f"{CARRIER_IP}/32"], "dids": ["03-5555-0001=u0001"],
    })
    async with trunk_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        stranger = await run_sipp("carrier_uac_refused.xml", node.address("udp"), local_ip=STRANGER_IP,
                                  service="+81355550001", timeout=10, extra=["-key", "caller", "09012345678"])
        assert stranger.returncode == 0 and stranger.successful == 1, stranger.explain()
        assert len(node.b2bua) == 0
        assert not [e for e in events if isinstance(e, CDR)]


async def test_a_carrier_outside_the_addresses_that_answers_the_challenge_with_the_trunk_login_is_routed_by_did(
        tmp_path):
    users = make_users(2)
    config = config_with_trunk(tmp_path, users, {
        "host": CARRIER_IP, "addresses": [f"{CARRIER_IP}/32"], "dids": ["0355550001=u0001"],
        "username": "acme", "password": "s3cret",
    })
    async with trunk_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        phone_port = free_port()
        await register_phone(node, tmp_path, users[1], phone_port)
        phone = await start_sipp("uas_answer.xml", None, port=phone_port, timeout=20)
        await asyncio.sleep(0.2)
        # uac_call.xml: INVITE, 401, INVITE with the injected credentials; From is field 0.
        inf = tmp_path / "carrier.csv"
        inf.write_text("SEQUENTIAL\n0311112222;[authentication username=acme password=s3cret];test.local\n")
        carrier = await run_sipp("uac_call.xml", node.address("udp"), local_ip=STRANGER_IP, inf=inf,
                                 service="0355550001", timeout=20)
        assert carrier.returncode == 0 and carrier.successful == 1, carrier.explain()
        answered = await phone.wait()
        assert answered.returncode == 0 and answered.successful == 1, answered.explain()
        (cdr,) = await wait_for(events, CDR)
        assert (cdr.trunk, cdr.did, cdr.caller, cdr.callee) == ("carrier", "0355550001", "0311112222", "u0001")


# -- (2) outbound --------------------------------------------------------------------------------


async def call_out(tmp_path: Path, trunk: dict[str, Any], dialled: str) -> tuple[list, Any]:
    """A registered phone dials `dialled`; SIPp as the carrier challenges, then answers.
    Returns the node's events and the INVITEs the carrier received."""
    users = make_users(2)
    carrier_port = free_port()
    config = config_with_trunk(tmp_path, users, {
        "host": "127.0.0.1", "port": carrier_port, "username": "acme", "password": "s3cret",
        "caller_id": "03-5555-0000", **trunk,
    })
    trace = tmp_path / "carrier.log"
    async with trunk_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        carrier = await start_sipp("carrier_uas_auth.xml", None, port=carrier_port, timeout=20,
                                   extra=["-key", "user", "acme", "-key", "password", "s3cret",
                                          "-trace_msg", "-message_file", str(trace)])
        await asyncio.sleep(0.2)
        inf = write_users_inf(tmp_path / "caller.csv", [users[0]], DOMAIN)
        phone = await run_sipp("uac_call.xml", node.address("udp"), inf=inf, service=dialled, timeout=20)
        result = await carrier.wait()
        assert phone.returncode == 0 and phone.successful == 1, phone.explain()
        assert result.returncode == 0 and result.successful == 1, result.explain()
        await wait_for(events, CDR)
    return events, invites_seen_by(trace)


async def test_a_phone_dials_a_national_number_which_goes_out_with_digest_auth_and_the_trunk_caller_id(tmp_path):
    events, invites = await call_out(tmp_path, {"prefixes": ["0"]}, "03-1234-5678")
    challenged, authorised = invites
    assert challenged.uri.startswith("sip:0312345678@127.0.0.1")
    assert "Authorization" not in challenged.headers
    assert authorised.call_id == challenged.call_id and authorised.from_.tag == challenged.from_.tag
    assert authorised.cseq == (challenged.cseq[0] + 1, "INVITE")
    assert 'username="acme"' in (authorised.headers.get("Authorization") or "")
    assert authorised.from_.uri.user == "0355550000"
    assert authorised.headers.get("P-Asserted-Identity") == "<sip:0355550000@127.0.0.1>"
    assert "Privacy" not in authorised.headers
    assert authorised.max_forwards == 69  # the phone sent 70
    (cdr,) = [e for e in events if isinstance(e, CDR)]
    assert (cdr.trunk, cdr.callee, cdr.caller, cdr.disposition) == ("carrier", "0312345678", "u0000", "answered")


async def test_an_e164_prefix_sends_e164_and_184_withholds_the_caller_id(tmp_path):
    events, invites = await call_out(tmp_path, {"prefixes": ["+81"]}, "184-03-1234-5678")
    _, authorised = invites
    assert authorised.uri.startswith("sip:+81312345678@127.0.0.1")
    assert authorised.to.uri.user == "+81312345678"
    assert authorised.from_.uri.user == "anonymous"
    assert authorised.headers.get("Privacy") == "id"
    assert authorised.headers.get("P-Asserted-Identity") == "<sip:+81355550000@127.0.0.1>"
    assert "u0000" not in authorised.headers.get("Contact", "")
    (cdr,) = [e for e in events if isinstance(e, CDR)]
    assert cdr.trunk == "carrier" and cdr.disposition == "answered"


# -- (3) registration ----------------------------------------------------------------------------


async def test_the_node_registers_to_the_carrier_answers_its_challenge_and_refreshes_before_expiry(tmp_path):
    carrier_port = free_port()
    trace = tmp_path / "registrar.log"
    registrar = await start_sipp("carrier_registrar.xml", None, port=carrier_port, timeout=15,
                                 extra=["-key", "user", "acme", "-key", "password", "s3cret",
                                        "-trace_msg", "-message_file", str(trace)])
    await asyncio.sleep(0.2)
    # A host name, as carriers usually give: looked up at start (A records, IPv4 first).
    config = config_with_trunk(tmp_path, make_users(1), {
        "host": "localhost", "port": carrier_port, "username": "acme", "password": "s3cret",
        "register": True, "register_expires": 60,
    })
    events: list = []
    async with trunk_node(config) as node:
        node.bus.subscribe(events.append)
        registered = []
        for _ in range(80):
            registered = [e for e in events if isinstance(e, TrunkRegistrationChanged) and e.state == "registered"]
            if len(registered) >= 3:
                break
            await asyncio.sleep(0.05)
        assert len(registered) >= 3, events  # the registration and two refreshes
        assert all(e.expires == 2 and e.status == 200 for e in registered)
        gaps = [b.ts - a.ts for a, b in zip(registered, registered[1:], strict=False)]
        assert all(0.7 < gap < 1.9 for gap in gaps), gaps  # refreshed halfway through the 2 s grant
        assert node.trunks.registrations["carrier"].state == "registered"
        assert node.trunks.resolved["carrier"] == "127.0.0.1"
    result = await registrar.wait()
    assert result.returncode == 0 and result.successful == 1, result.explain()


async def test_a_silent_carrier_makes_the_registration_back_off_with_growing_intervals(tmp_path):
    silent = await UdpClient.open()
    try:
        config = config_with_trunk(tmp_path, make_users(1), {
            "host": "127.0.0.1", "port": silent.port, "username": "acme", "password": "s3cret",
            "register": True, "register_expires": 60,
        }, sip={"t1": 0.01})  # timer F = 64*T1 = 0.64 s: an unanswered REGISTER fails fast
        events: list = []
        async with trunk_node(config, retry_base=0.3) as node:
            node.bus.subscribe(events.append)
            loop = asyncio.get_running_loop()
            firsts: dict[int, float] = {}
            end = loop.time() + 6.0
            while len(firsts) < 4 and loop.time() < end:
                data = await silent.recv(timeout=max(0.01, end - loop.time()))
                if data is None:
                    break
                msg = parse_message(data)
                firsts.setdefault(msg.cseq[0], loop.time())  # retransmissions keep their CSeq
            retrying = [e for e in events if isinstance(e, TrunkRegistrationChanged) and e.state == "retrying"]
        assert len(firsts) == 4, firsts
        times = [firsts[k] for k in sorted(firsts)]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert gaps[0] < gaps[1] < gaps[2], gaps
        assert [e.retry_in for e in retrying[:3]] == [0.3, 0.6, 1.2]
        assert all(e.status == 408 for e in retrying)
    finally:
        silent.close()


def carrier_invite(node: Node, client: UdpClient, number: str, call_id: str) -> bytes:
    host, port = node.address("udp")
    return (
        f"INVITE sip:{number}@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CARRIER_IP}:{client.port};branch=z9hG4bK{call_id};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:0311112222@{CARRIER_IP}>;tag=t-{call_id}\r\n"
        f"To: <sip:{number}@{host}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:0311112222@{CARRIER_IP}:{client.port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def final_status(client: UdpClient, call_id: str, timeout: float = 3.0) -> int | None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        data = await client.recv(timeout=max(0.01, end - loop.time()))
        if data is None:
            return None
        msg = parse_message(data)
        if msg.call_id == call_id and getattr(msg, "status", 0) >= 180:
            return msg.status
    return None


async def test_a_trunk_at_max_channels_refuses_the_next_call_with_503_and_unknown_dids_with_404(tmp_path):
    users = make_users(2)
    config = config_with_trunk(tmp_path, users, {
        "host": CARRIER_IP, "addresses": [f"{CARRIER_IP}/32"], "max_channels": 1,
        "dids": ["0355550001=u0001", "0355550002=u0001"],
    })
    async with trunk_node(config) as node:
        phone_port = free_port()
        await register_phone(node, tmp_path, users[1], phone_port)
        phone = await start_sipp("uas_ring_until_cancel.xml", None, port=phone_port, timeout=20)
        await asyncio.sleep(0.2)
        client = await UdpClient.open(CARRIER_IP)
        try:
            client.send(carrier_invite(node, client, "0355550001", "first"), node.address("udp"))
            assert await final_status(client, "first") == 180  # ringing: one channel in use
            assert node.trunks.channels_in_use("carrier") == 1
            client.send(carrier_invite(node, client, "0355550002", "second"), node.address("udp"))
            assert await final_status(client, "second") == 503
            client.send(carrier_invite(node, client, "0355550009", "third"), node.address("udp"))
            assert await final_status(client, "third") == 404
        finally:
            client.close()
    # Stopping the node cancelled the call still ringing at the phone.
    result = await phone.wait()
    assert result.returncode == 0 and result.successful == 1, result.explain()
