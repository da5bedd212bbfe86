"""Registration against a running node with real SIPp clients: digest auth, refresh, unregister,
bad passwords, bans, and malformed input over UDP and TCP that must not stop the node."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from tests.nodes import DOMAIN, UdpClient, make_users, node_config, options_request, running_node, status_of
from tests.peers import free_port, require_sipp, run_sipp, write_users_inf

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _sipp_present() -> None:
    require_sipp()


async def test_sipp_registers_refreshes_and_unregisters_100_users_with_digest(tmp_path):
    users = make_users(100)
    config = node_config(tmp_path, users=users)
    inf = write_users_inf(tmp_path / "users.csv", users, DOMAIN)
    async with running_node(config) as node:
        remote = node.address("udp")
        port = free_port()  # the same phone port for both runs, so the second refreshes the first's contacts
        first = await run_sipp("register_only.xml", remote, inf=inf, calls=100, rate=100, port=port)
        assert first.returncode == 0 and first.successful == 100, first.explain()
        now = time.time()
        assert node.registrar.count(now) == 100
        for user, _ in users[:5]:
            (binding,) = node.registrar.lookup(user, now)
            assert binding.contact.startswith(f"sip:{user}@127.0.0.1:")
            assert 3500 < binding.expires_at - now <= 3600

        full = await run_sipp("register_auth.xml", remote, inf=inf, calls=100, rate=100, port=port)
        assert full.returncode == 0 and full.successful == 100, full.explain()
        assert node.registrar.count(time.time()) == 0


async def test_sipp_registers_over_tcp(tmp_path):
    users = make_users(10)
    config = node_config(tmp_path, users=users)
    inf = write_users_inf(tmp_path / "users.csv", users, DOMAIN)
    async with running_node(config) as node:
        result = await run_sipp("register_only.xml", node.address("tcp"), inf=inf, calls=10, rate=20, transport="tcp")
        assert result.returncode == 0 and result.successful == 10, result.explain()
        binding = node.registrar.lookup(users[0][0], time.time())[0]
        assert binding.source.transport == "tcp"


async def test_interval_too_brief_gets_423_and_a_query_lists_no_bindings(tmp_path):
    users = make_users(2)
    config = node_config(tmp_path, users=users, sip={"min_expires": 60})
    inf = write_users_inf(tmp_path / "users.csv", users, DOMAIN)
    async with running_node(config) as node:
        result = await run_sipp("register_brief.xml", node.address("udp"), inf=inf, calls=2, rate=10)
        assert result.returncode == 0 and result.successful == 2, result.explain()
        assert node.registrar.count(time.time()) == 0


async def test_wrong_password_and_unknown_user_get_the_same_fresh_challenge(tmp_path):
    users = make_users(3)
    config = node_config(tmp_path, users=users)
    wrong = [(users[0][0], "not-the-password"), ("nobody", "whatever"), (users[1][0], "")]
    inf = write_users_inf(tmp_path / "bad.csv", wrong, DOMAIN)
    async with running_node(config) as node:
        result = await run_sipp(
            "register_badpass.xml", node.address("udp"), inf=inf, calls=3, rate=10, local_ip="127.0.0.2"
        )
        assert result.returncode == 0 and result.successful == 3, result.explain()
        assert node.registrar.count(time.time()) == 0


async def test_ten_failed_authentications_ban_the_source_but_not_others(tmp_path):
    users = make_users(2)
    config = node_config(tmp_path, users=users, security={"auth_fail_limit": 10, "ban_seconds": 600})
    bad = write_users_inf(tmp_path / "bad.csv", [(users[0][0], "guess")] * 10, DOMAIN)
    good = write_users_inf(tmp_path / "good.csv", users, DOMAIN)
    async with running_node(config) as node:
        remote = node.address("udp")
        attack = await run_sipp("register_badpass.xml", remote, inf=bad, calls=9, rate=20, local_ip="127.0.0.3")
        assert attack.returncode == 0 and attack.successful == 9, attack.explain()
        assert not node.auth.banned("127.0.0.3", time.time())
        # The tenth failure within the minute bans the address at once.
        tenth = await run_sipp("register_badpass_banned.xml", remote, inf=bad, calls=1, rate=20, local_ip="127.0.0.3")
        assert tenth.returncode == 0 and tenth.successful == 1, tenth.explain()
        # Even the right password is now refused from that address...
        refused = await run_sipp("register_banned.xml", remote, inf=good, calls=1, rate=10, local_ip="127.0.0.3")
        assert refused.returncode == 0 and refused.successful == 1, refused.explain()
        # ...while everyone else registers as usual.
        ok = await run_sipp("register_only.xml", remote, inf=good, calls=2, rate=10, local_ip="127.0.0.4")
        assert ok.returncode == 0 and ok.successful == 2, ok.explain()


def _garbage(rng: random.Random, valid: bytes) -> list[bytes]:
    out = [
        b"\x00\xff" * 50,
        b"INVITE\r\n\r\n",
        b"NOTSIP / HTTP/1.1\r\nHost: x\r\n\r\n",
        valid[: len(valid) // 2],
        valid.replace(b"Content-Length: 0", b"Content-Length: 999"),
        valid.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1),
        b"REGISTER sip:x SIP/2.0\r\n" + b"X-Pad: " + b"a" * 70000 + b"\r\n\r\n",
    ]
    for _ in range(60):
        b = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        out.append(bytes(b))
    return out


async def test_malformed_input_over_udp_and_tcp_does_not_stop_the_node(tmp_path):
    users = make_users(5)
    config = node_config(tmp_path, users=users)
    inf = write_users_inf(tmp_path / "users.csv", users, DOMAIN)
    rng = random.Random(4475)
    async with running_node(config) as node:
        host, port = node.address("udp")
        client = await UdpClient.open()
        try:
            for junk in _garbage(rng, options_request(client.port)):
                client.send(junk[:65000], (host, port))
            tcp_host, tcp_port = node.address("tcp")
            for junk in _garbage(rng, options_request(client.port))[:20]:
                reader, writer = await asyncio.open_connection(tcp_host, tcp_port)
                writer.write(junk)
                await writer.drain()
                writer.close()
                await writer.wait_closed()
            # Still alive: OPTIONS over UDP, and real registrations over both transports.
            client.send(options_request(client.port, branch="z9hG4bKalive", call_id="alive"), (host, port))
            reply = None
            for _ in range(200):
                reply = await client.recv(timeout=2.0)
                if reply is None or b"alive" in reply:
                    break
            assert reply is not None and status_of(reply) == 200
        finally:
            client.close()
        udp = await run_sipp("register_only.xml", (host, port), inf=inf, calls=5, rate=20)
        assert udp.returncode == 0 and udp.successful == 5, udp.explain()
        tcp = await run_sipp("register_only.xml", (tcp_host, tcp_port), inf=inf, calls=5, rate=20, transport="tcp")
        assert tcp.returncode == 0 and tcp.successful == 5, tcp.explain()
        assert node.transports.stats.malformed > 0


async def test_a_flooding_source_is_rate_limited_and_others_are_still_served(tmp_path):
    config = node_config(tmp_path, security={"rate_limit": 20, "rate_burst": 20})
    async with running_node(config) as node:
        host, port = node.address("udp")
        flood = await UdpClient.open("127.0.0.7")
        other = await UdpClient.open("127.0.0.8")
        try:
            for i in range(200):
                flood.send(options_request(flood.port, branch=f"z9hG4bKflood{i}", call_id=f"f{i}"), (host, port))
            answered = 0
            while await flood.recv(timeout=0.5) is not None:
                answered += 1
            assert 20 <= answered < 60, answered  # the burst, plus what the rate refills meanwhile
            assert node.dropped >= 140
            other.send(options_request(other.port, branch="z9hG4bKother", call_id="o1"), (host, port))
            reply = await other.recv(timeout=2.0)
            assert reply is not None and status_of(reply) == 200
        finally:
            flood.close()
            other.close()
