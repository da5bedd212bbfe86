"""Digest over the wire to a running node: SHA-256 offered first (RFC 8760), MD5 as fallback,
HA1-configured users, nonce-count replay refused, over real UDP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest

from softswitch.sip.auth import DigestClient, ha1
from softswitch.sip.message import Response, parse_message
from tests.nodes import DOMAIN, UdpClient, node_config, running_node

pytestmark = pytest.mark.integration


def register(port: int, user: str, cseq: int, auth: str | None = None, call_id: str = "dg-1") -> bytes:
    lines = [
        f"REGISTER sip:{DOMAIN} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-dg-{cseq};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{DOMAIN}>;tag=dg",
        f"To: <sip:{user}@{DOMAIN}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@127.0.0.1:{port}>",
        "Expires: 600",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


async def exchange(client: UdpClient, dest: tuple[str, int], data: bytes) -> Response:
    client.send(data, dest)
    raw = await client.recv(timeout=2.0)
    assert raw is not None, "no answer"
    msg = parse_message(raw)
    assert isinstance(msg, Response)
    return msg


async def test_sha256_is_offered_first_and_used_by_a_client_that_knows_it(tmp_path):
    config = node_config(tmp_path, users=[("2001", "secret-2001")],
                         security={"digest_algorithms": ["SHA-256", "MD5"]})
    async with running_node(config) as node:
        dest = node.address("udp")
        client = await UdpClient.open()
        try:
            challenge = await exchange(client, dest, register(client.port, "2001", 1))
            assert challenge.status == 401
            offers = challenge.headers.values("WWW-Authenticate")
            assert "algorithm=SHA-256" in offers[0] and "algorithm=MD5" in offers[1]
            auth = DigestClient().authorization(offers, "REGISTER", f"sip:{DOMAIN}", "2001", "secret-2001")
            assert "algorithm=SHA-256" in auth
            ok = await exchange(client, dest, register(client.port, "2001", 2, auth))
            assert ok.status == 200
            # The very same credentials again (same nonce, same nc) are a replay: refused.
            again = await exchange(client, dest, register(client.port, "2001", 3, auth))
            assert again.status == 401
        finally:
            client.close()
        assert node.registrar.count(time.time()) == 1


async def test_user_configured_by_ha1_registers_without_a_plain_password(tmp_path):
    users = [{"id": "3001", "ha1_md5": ha1("3001", DOMAIN, "hashed-pw", "MD5")}]
    config = node_config(tmp_path, directory={"users": users}, security={"digest_algorithms": ["MD5"]})
    async with running_node(config) as node:
        dest = node.address("udp")
        client = await UdpClient.open()
        try:
            challenge = await exchange(client, dest, register(client.port, "3001", 1))
            auth = DigestClient().authorization(challenge.headers.values("WWW-Authenticate"), "REGISTER",
                                                f"sip:{DOMAIN}", "3001", "hashed-pw")
            assert (await exchange(client, dest, register(client.port, "3001", 2, auth))).status == 200
        finally:
            client.close()


async def test_a_binding_that_is_not_refreshed_expires_on_time(tmp_path):
    config = node_config(tmp_path, users=[("2002", "pw-2002")],
                         sip={"min_expires": 1}, security={"digest_algorithms": ["MD5"]})
    async with running_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        dest = node.address("udp")
        client = await UdpClient.open()
        try:
            challenge = await exchange(client, dest, register(client.port, "2002", 1).replace(
                b"Expires: 600", b"Expires: 1"))
            auth = DigestClient().authorization(challenge.headers.values("WWW-Authenticate"), "REGISTER",
                                                f"sip:{DOMAIN}", "2002", "pw-2002")
            ok = await exchange(client, dest, register(client.port, "2002", 2, auth).replace(
                b"Expires: 600", b"Expires: 1"))
            assert ok.status == 200 and node.registrar.count(time.time()) == 1
        finally:
            client.close()
        await asyncio.sleep(1.6)  # no polling: the node's timer fires at the binding's deadline
        assert [e.action for e in events if getattr(e, "kind", "") == "registration"] == ["bound", "expired"]
        assert not node.registrar.lookup("2002", time.time())


async def test_an_invite_that_already_passed_through_this_node_is_refused_as_a_loop(tmp_path):
    async with running_node(node_config(tmp_path)) as node:
        host, port = node.address("udp")
        client = await UdpClient.open()
        try:
            invite = (
                f"INVITE sip:u0001@{DOMAIN} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{client.port};branch=z9hG4bK-loop-2;rport\r\n"
                f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-loop-1\r\n"
                "Max-Forwards: 68\r\n"
                f"From: <sip:u0000@{DOMAIN}>;tag=lp\r\nTo: <sip:u0001@{DOMAIN}>\r\n"
                "Call-ID: loop-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            resp = await exchange(client, (host, port), invite)
            assert resp.status == 482
        finally:
            client.close()
