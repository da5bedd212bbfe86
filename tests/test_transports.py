"""Stream transports against a running node: TLS with the configured certificate, CRLF keepalives,
idle connections closed, and requests to a phone reusing the connection it registered on."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import pytest

from softswitch.sip.auth import DigestClient
from softswitch.sip.message import KeepAlive, Request, Response, StreamParser, make_response
from tests.nodes import DOMAIN, make_users, node_config, options_request, running_node
from tests.peers import free_port, require_sipp, run_sipp, write_users_inf

pytestmark = pytest.mark.integration


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "node.crt", tmp / "node.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


class StreamPeer:
    """A SIP peer on one TCP or TLS connection, reading whole messages with the node's framing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = StreamParser()
        self.pending: list = []

    @classmethod
    async def connect(cls, host: str, port: int, ssl_ctx: ssl.SSLContext | None = None) -> StreamPeer:
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl_ctx)
        return cls(reader, writer)

    @property
    def port(self) -> int:
        return self.writer.get_extra_info("sockname")[1]

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def next(self, timeout: float = 3.0):
        while not self.pending:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not chunk:
                return None
            self.pending.extend(self.parser.feed(chunk))
        return self.pending.pop(0)

    async def next_message(self, timeout: float = 3.0) -> Request | Response | None:
        while True:
            item = await self.next(timeout)
            if not isinstance(item, KeepAlive):
                return item

    def close(self) -> None:
        self.writer.close()


async def test_tls_listener_uses_the_configured_certificate_and_answers(tmp_path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    config = node_config(tmp_path, sip={"listen": [f"tls://127.0.0.1:{port}"], "tls_cert": str(cert),
                                        "tls_key": str(key), "domain": DOMAIN})
    async with running_node(config) as node:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        peer = await StreamPeer.connect(*node.address("tls"), ssl_ctx=ctx)
        try:
            served = peer.writer.get_extra_info("peercert")
            assert served is not None and ("commonName", "127.0.0.1") in served["subject"][0]
            await peer.send(options_request(peer.port).replace(b"SIP/2.0/UDP", b"SIP/2.0/TLS"))
            resp = await peer.next_message()
            assert isinstance(resp, Response) and resp.status == 200
            assert "INVITE" in (resp.headers.get("Allow") or "")
        finally:
            peer.close()


async def test_crlf_keepalive_ping_gets_a_pong_over_tcp(tmp_path):
    async with running_node(node_config(tmp_path)) as node:
        peer = await StreamPeer.connect(*node.address("tcp"))
        try:
            await peer.send(b"\r\n\r\n")
            pong = await asyncio.wait_for(peer.reader.read(16), 2.0)
            assert pong == b"\r\n"
            await peer.send(options_request(peer.port).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
            resp = await peer.next_message()
            assert isinstance(resp, Response) and resp.status == 200
        finally:
            peer.close()


async def test_idle_tcp_connections_are_closed(tmp_path):
    async with running_node(node_config(tmp_path, sip={"tcp_idle_timeout": 0.5})) as node:
        peer = await StreamPeer.connect(*node.address("tcp"))
        try:
            assert await asyncio.wait_for(peer.reader.read(1), 5.0) == b""
        finally:
            peer.close()
        assert node.transports.connection_count == 0


async def test_a_call_reaches_a_tcp_phone_on_the_connection_it_registered_on(tmp_path):
    require_sipp()
    users = make_users(2)
    caller, callee = users
    async with running_node(node_config(tmp_path, users=users)) as node:
        phone = await StreamPeer.connect(*node.address("tcp"))
        try:
            contact = f"<sip:{callee[0]}@127.0.0.1:{phone.port};transport=tcp>"

            def register(cseq: int, auth: str | None = None) -> bytes:
                req = Request("REGISTER", f"sip:{DOMAIN}")
                for name, value in (
                    ("Via", f"SIP/2.0/TCP 127.0.0.1:{phone.port};branch=z9hG4bK-tcpreg{cseq}"),
                    ("Max-Forwards", "70"), ("From", f"<sip:{callee[0]}@{DOMAIN}>;tag=t1"),
                    ("To", f"<sip:{callee[0]}@{DOMAIN}>"), ("Call-ID", "tcp-reg"),
                    ("CSeq", f"{cseq} REGISTER"), ("Contact", contact), ("Expires", "600"),
                ):
                    req.headers.add(name, value)
                if auth:
                    req.headers.add("Authorization", auth)
                return req.serialize()

            await phone.send(register(1))
            challenge = await phone.next_message()
            assert isinstance(challenge, Response) and challenge.status == 401
            auth = DigestClient().authorization(challenge.headers.values("WWW-Authenticate"), "REGISTER",
                                                f"sip:{DOMAIN}", *callee)
            await phone.send(register(2, auth))
            ok = await phone.next_message()
            assert isinstance(ok, Response) and ok.status == 200

            async def answer() -> None:
                invite = await phone.next_message(timeout=10)
                assert isinstance(invite, Request) and invite.method == "INVITE"
                ring = make_response(invite, 180, to_tag="tcpphone")
                await phone.send(ring.serialize())
                ok = make_response(invite, 200, to_tag="tcpphone")
                ok.headers.add("Contact", contact)
                ok.headers.add("Content-Type", "application/sdp")
                ok.body = invite.body
                await phone.send(ok.serialize())
                ack = await phone.next_message(timeout=10)
                assert isinstance(ack, Request) and ack.method == "ACK"
                bye = await phone.next_message(timeout=10)
                assert isinstance(bye, Request) and bye.method == "BYE"
                await phone.send(make_response(bye, 200).serialize())

            answering = asyncio.create_task(answer())
            inf = write_users_inf(tmp_path / "caller.csv", [caller], DOMAIN)
            result = await run_sipp("uac_call.xml", node.address("udp"), inf=inf, service=callee[0], timeout=20)
            await asyncio.wait_for(answering, 10)
            assert result.returncode == 0 and result.successful == 1, result.explain()
            # Everything went over the phone's own connection: the node opened none towards it.
            assert node.transports.stats.connections_opened == 1
        finally:
            phone.close()
