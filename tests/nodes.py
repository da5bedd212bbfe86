"""Building real nodes for integration tests: a validated config, listeners on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from softswitch.app import Node
from softswitch.config import NodeConfig
from softswitch.events import CDR
from tests.peers import free_port

DOMAIN = "test.local"
ROOT = Path(__file__).resolve().parents[1]


def make_users(n: int = 4, *, prefix: str = "u") -> list[tuple[str, str]]:
    """(id, password) pairs: u0000/pw-u0000, ..."""
    return [(f"{prefix}{i:04d}", f"pw-{prefix}{i:04d}") for i in range(n)]


def node_config(
    tmp: Path,
    *,
    users: list[tuple[str, str]] | None = None,
    transports: tuple[str, ...] = ("udp", "tcp"),
    host: str = "127.0.0.1",
    **overrides: Any,
) -> NodeConfig:
    """A node config on free loopback ports with the given users (id, password)."""
    port = free_port(host)
    listen = [f"{t}://{host}:{port}" for t in transports]
    data: dict[str, Any] = {
        "sip": {"listen": listen, "domain": DOMAIN},
        # Debian's SIPp 3.6.1 answers only the first challenge and knows only MD5 (RFC 8760 puts
        # SHA-256 first); SHA-256 is proven over the wire in test_node_digest.py.
        "security": {"digest_algorithms": ["MD5"]},
        "database": f"sqlite:///{tmp / 'node.db'}",
        "api": {"listen": f"127.0.0.1:{free_port(kind=socket.SOCK_STREAM)}"},
        "directory": {
            "users": [{"id": u, "password": p} for u, p in (users if users is not None else make_users())]
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    config = NodeConfig.model_validate(data)
    # The node's own folder (its spool lives there): nodes of one test, or of test runs side by
    # side, must never share a spool.
    config._path = tmp / "node.yaml"
    return config


@contextlib.asynccontextmanager
async def running_node(config: NodeConfig) -> AsyncIterator[Node]:
    node = Node(config)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


class UdpClient(asyncio.DatagramProtocol):
    """A bare UDP socket on 127.0.0.1 for sending raw bytes and reading what comes back."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.queue.put_nowait(data)

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> UdpClient:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        return proto

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def send(self, data: bytes, dest: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, dest)

    async def recv(self, timeout: float = 2.0) -> bytes | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def spawn_softswitch(*args: str, cwd: Path) -> subprocess.Popen:
    """`softswitch ARGS` as an operator runs it: a process of its own, output captured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "softswitch.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll for something the node does a moment later (a CDR after the last BYE, a state)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def wait_for_cdrs(events: list, count: int = 1, timeout: float = 5.0) -> list[CDR]:
    """The CDRs among `events` once at least `count` have been published."""
    await wait_for(lambda: sum(isinstance(e, CDR) for e in events) >= count, timeout)
    return [e for e in events if isinstance(e, CDR)]


def status_of(data: bytes) -> int:
    """The status code of a raw SIP response."""
    first = data.split(b"\r\n", 1)[0].split()
    assert first[0] == b"SIP/2.0", data[:200]
    return int(first[1])


def options_request(port: int, *, branch: str = "z9hG4bKopt1", call_id: str = "opt-1") -> bytes:
    return (
        f"OPTIONS sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{DOMAIN}>;tag=probe\r\n"
        f"To: <sip:{DOMAIN}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
