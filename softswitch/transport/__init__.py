"""asyncio transports (UDP, TCP, TLS) that feed bytes into the sans-IO SIP core.

The transports own sockets and connections only. They frame and parse messages, answer malformed
requests with 400 when a response can be formed, stamp `received`/`rport` on the top Via
(RFC 3581), keep stream connections for reuse in both directions and close idle ones, and answer
CRLF keepalives (RFC 5626 section 4.4.1). Everything else is the node's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace

from softswitch.sip.errors import SipParseError
from softswitch.sip.message import (
    KeepAlive,
    Request,
    Response,
    StreamParser,
    make_response,
    parse_message,
)
from softswitch.sip.transaction import Addr

log = logging.getLogger(__name__)

Message = Request | Response
#: Called for every well-formed message: (message, source address).
MessageHandler = Callable[[Message, Addr], None]

RELIABLE = frozenset({"tcp", "tls", "ws", "wss"})
#: Socket buffer asked for on UDP listeners (the kernel caps it at net.core.rmem_max).
UDP_BUFFER = 4 * 1024 * 1024


@dataclass(slots=True)
class TransportStats:
    """Counters exposed to metrics and tests."""

    received: int = 0
    sent: int = 0
    malformed: int = 0
    rejected_400: int = 0
    keepalives: int = 0
    connections_opened: int = 0
    connections_closed: int = 0


def format_hostport(host: str, port: int) -> str:
    """host:port with IPv6 references in brackets (RFC 5118)."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _bare_host(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def stamp_via(req: Request, source: Addr, *, force_rport: bool = True) -> None:
    """Add `received` and fill `rport` on the top Via, per RFC 3261 18.2.1 and RFC 3581.

    With `force_rport` the port is recorded even when the client did not ask, so responses go
    back to the address and port the request came from: phones of agents working from home sit
    behind NATs that only let those through.
    """
    top = req.top_via
    if top is None:
        return
    changed = False
    src_host = source.host
    params = dict(top.params)
    if _bare_host(top.host).lower() != src_host.lower():
        params["received"] = src_host
        changed = True
    if "rport" in params or (force_rport and source.transport == "udp"):
        params["rport"] = str(source.port)
        params.setdefault("received", src_host)
        changed = True
    if changed:
        req.replace_top_via(replace(top, params=params))


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, manager: Transports) -> None:
        self.manager = manager
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Bursts of REGISTER storms (a whole office rebooting) must queue, not drop.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UDP_BUFFER)

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.manager._on_datagram(self, data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable and the like: the transaction's timers will notice; nothing to do here.
        log.debug("udp error: %s", exc)


class _StreamProtocol(asyncio.Protocol):
    """One TCP or TLS connection, inbound or outbound."""

    def __init__(self, manager: Transports, transport_name: str) -> None:
        self.manager = manager
        self.name = transport_name
        self.parser = StreamParser(max_size=manager.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Addr | None = None
        self.last_activity = 0.0
        self._idle_handle: asyncio.TimerHandle | None = None
        self.pending: list[bytes] = []
        self.connected = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = Addr(self.name, peer[0], peer[1])
        self.manager._register_connection(self)
        self.touch()
        if not self.connected.done():
            self.connected.set_result(None)
        for data in self.pending:
            transport.write(data)  # type: ignore[attr-defined]
        self.pending.clear()

    def touch(self) -> None:
        loop = asyncio.get_running_loop()
        self.last_activity = loop.time()
        if self._idle_handle is None:
            self._idle_handle = loop.call_later(self.manager.idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        self._idle_handle = None
        if self.transport is None or self.transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        idle_for = loop.time() - self.last_activity
        if idle_for >= self.manager.idle_timeout:
            log.debug("closing idle %s connection to %s", self.name, self.peer)
            self.transport.close()
        else:
            self._idle_handle = loop.call_later(self.manager.idle_timeout - idle_for, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self.touch()
        assert self.peer is not None
        try:
            items = self.parser.feed(data)
        except SipParseError as exc:
            # The stream has lost its framing: answer what we can and drop the connection.
            self.manager._on_parse_error(exc, self.peer, self._write)
            if self.transport is not None:
                self.transport.close()
            return
        for item in items:
            if isinstance(item, KeepAlive):
                self.manager.stats.keepalives += 1
                if item.kind == "ping":
                    self._write(b"\r\n")
                continue
            self.manager._dispatch(item, self.peer)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.manager.stats.sent += 1
        else:
            self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("connection closed"))
        self.manager._unregister_connection(self)


class Transports:
    """All of a node's SIP listeners and connections."""

    def __init__(
        self,
        on_message: MessageHandler,
        *,
        max_message_size: int = 65536,
        idle_timeout: float = 300.0,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
        on_send_failure: Callable[[Addr, Exception], None] | None = None,
    ) -> None:
        self.on_message = on_message
        self.max_message_size = max_message_size
        self.idle_timeout = idle_timeout
        self.ssl_server = ssl_server
        self.ssl_client = ssl_client
        self.on_send_failure = on_send_failure
        self.stats = TransportStats()
        self._udp: dict[tuple[str, int], _UdpProtocol] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: dict[Addr, _StreamProtocol] = {}
        self._connecting: dict[Addr, asyncio.Task[None]] = {}
        self._pending: dict[Addr, list[bytes]] = {}
        self.local: dict[str, tuple[str, int]] = {}

    # -- listeners ---------------------------------------------------------------------------

    async def listen(self, transport: str, host: str, port: int) -> tuple[str, int]:
        """Open a listener; returns the bound (host, port), useful when port 0 was asked for."""
        loop = asyncio.get_running_loop()
        host = _bare_host(host)
        if transport == "udp":
            _, proto = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port)
            )
            assert proto.transport is not None
            bound = proto.transport.get_extra_info("sockname")[:2]
            self._udp[(bound[0], bound[1])] = proto
        elif transport in ("tcp", "tls"):
            if transport == "tls" and self.ssl_server is None:
                raise ValueError("tls listener needs sip.tls_cert and sip.tls_key")
            server = await loop.create_server(
                lambda: _StreamProtocol(self, transport),
                host=host,
                port=port,
                ssl=self.ssl_server if transport == "tls" else None,
                reuse_address=True,
            )
            self._servers.append(server)
            bound = server.sockets[0].getsockname()[:2]
        else:
            raise ValueError(f"transport {transport!r} is not supported yet (udp, tcp and tls are)")
        self.local.setdefault(transport, (bound[0], bound[1]))
        return bound[0], bound[1]

    async def close(self) -> None:
        for proto in self._udp.values():
            if proto.transport is not None:
                proto.transport.close()
        for server in self._servers:
            server.close()
        for conn in list(self._connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for task in self._connecting.values():
            task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._udp.clear()
        self._servers.clear()

    # -- receiving ---------------------------------------------------------------------------

    def _on_datagram(self, proto: _UdpProtocol, data: bytes, addr: tuple) -> None:
        source = Addr("udp", addr[0], addr[1])
        if len(data) <= 4 and not data.strip():
            self.stats.keepalives += 1  # CRLF keepalive over UDP: nothing to answer
            return
        try:
            msg = parse_message(data, max_size=self.max_message_size)
        except SipParseError as exc:
            assert proto.transport is not None
            transport = proto.transport
            self._on_parse_error(exc, source, lambda b: transport.sendto(b, addr))
            return
        self._dispatch(msg, source)

    def _on_parse_error(self, exc: SipParseError, source: Addr, reply: Callable[[bytes], None]) -> None:
        self.stats.malformed += 1
        partial = exc.partial
        log.info("malformed SIP from %s: %s", format_hostport(source.host, source.port), exc.reason)
        if partial is None or partial.method == "ACK":
            return
        try:
            resp = make_response(partial, exc.status, exc.reason[:200] if exc.reason else None)
            # The reply goes back where the bytes came from, whatever the Via says.
            reply(resp.serialize())
            self.stats.rejected_400 += 1
        except Exception:  # a response cannot be formed from this wreck: drop it
            log.debug("cannot answer malformed message from %s", source, exc_info=True)

    def _dispatch(self, msg: Message, source: Addr) -> None:
        self.stats.received += 1
        if isinstance(msg, Request):
            try:
                stamp_via(msg, source)
            except Exception:
                log.debug("cannot stamp Via from %s", source, exc_info=True)
        self.on_message(msg, source)

    # -- sending -----------------------------------------------------------------------------

    def _register_connection(self, conn: _StreamProtocol) -> None:
        assert conn.peer is not None
        self.stats.connections_opened += 1
        self._connections[conn.peer] = conn

    def _unregister_connection(self, conn: _StreamProtocol) -> None:
        self.stats.connections_closed += 1
        if conn.peer is not None and self._connections.get(conn.peer) is conn:
            del self._connections[conn.peer]

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def send(self, data: bytes, dest: Addr) -> None:
        """Send bytes to `dest`, reusing a stream connection to that peer or opening one."""
        self.stats.sent += 1
        if dest.transport == "udp":
            proto = self._udp_for(dest)
            if proto is None or proto.transport is None:
                self._fail(dest, ConnectionError("no UDP listener"))
                return
            proto.transport.sendto(data, (_bare_host(dest.host), dest.port))
            return
        conn = self._connections.get(dest)
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(data)
            conn.touch()
            return
        pending = self._connecting.get(dest)
        if pending is not None:
            self._pending_for(dest).append(data)
            return
        self._pending[dest] = [data]
        self._connecting[dest] = asyncio.get_running_loop().create_task(self._connect(dest))

    def _pending_for(self, dest: Addr) -> list[bytes]:
        return self._pending.setdefault(dest, [])

    async def _connect(self, dest: Addr) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _StreamProtocol(self, dest.transport),
                    _bare_host(dest.host),
                    dest.port,
                    ssl=(self.ssl_client or ssl.create_default_context()) if dest.transport == "tls" else None,
                ),
                timeout=10.0,
            )
            # Key the connection by the address we asked for too, so later sends find it.
            self._connections[dest] = proto
            for data in self._pending.pop(dest, []):
                proto._write(data)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            self._pending.pop(dest, None)
            self._fail(dest, exc)
        finally:
            self._connecting.pop(dest, None)

    def _fail(self, dest: Addr, exc: Exception) -> None:
        log.info("cannot send to %s: %s", dest, exc)
        if self.on_send_failure is not None:
            self.on_send_failure(dest, exc)

    def _udp_for(self, dest: Addr) -> _UdpProtocol | None:
        if not self._udp:
            return None
        want_v6 = ":" in dest.host
        for (host, _), proto in self._udp.items():
            if (":" in host) == want_v6:
                return proto
        return next(iter(self._udp.values()))


def is_private(host: str) -> bool:
    """True for RFC 1918, loopback and link-local addresses (NAT detection for contacts)."""
    try:
        ip = ipaddress.ip_address(_bare_host(host))
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local
