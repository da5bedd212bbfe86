"""Two transaction layers over a lossy, duplicating, reordering network, driven by random TUs.

Properties: nothing raises; each request reaches the server TU once; each non-INVITE and each
non-2xx INVITE final reaches the client TU once; and once the TUs have answered everything and every
timer has fired, neither layer holds a transaction (no leak).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softswitch.sip.message import Request, Response, make_response, new_branch, parse_message
from softswitch.sip.transaction import (
    AckReceived,
    Addr,
    CancelReceived,
    ClientTransaction,
    Output,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    State,
    StrayResponse,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailure,
)

UAC = Addr("udp", "192.0.2.1", 5060)
UAS = Addr("udp", "192.0.2.2", 5060)
METHODS = ("INVITE", "INVITE", "OPTIONS", "REGISTER", "BYE")


def outgoing(method: str, n: int, transport: str) -> Request:
    text = (
        f"{method} sip:bob@192.0.2.2 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 192.0.2.1:5060;branch={new_branch()}\r\n"
        "Max-Forwards: 70\r\nTo: <sip:bob@192.0.2.2>\r\nFrom: <sip:alice@192.0.2.1>;tag=a\r\n"
        f"Call-ID: c{n}@192.0.2.1\r\nCSeq: {n} {method}\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


@dataclass
class World:
    """Both nodes, the network between them and what each TU has seen."""

    reliable: bool
    uac: TransactionLayer = field(default_factory=TransactionLayer)
    uas: TransactionLayer = field(default_factory=TransactionLayer)
    now: float = 0.0
    wire: list[tuple[float, int, bool, bytes]] = field(default_factory=list)  # (when, seq, to_uas, data)
    seq: int = 0
    lossy: bool = True
    winding_down: bool = False
    uac_addr: Addr = UAC
    uas_addr: Addr = UAS
    client_txs: list[ClientTransaction] = field(default_factory=list)
    pending: list[ServerTransaction] = field(default_factory=list)
    requests_seen: set[tuple[str | None, str]] = field(default_factory=set)
    finals_seen: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.reliable:
            self.uac_addr = Addr("tcp", UAC.host, UAC.port)
            self.uas_addr = Addr("tcp", UAS.host, UAS.port)

    def transmit(self, data: bytes, to_uas: bool, draw: st.DataObject) -> None:
        copies = 1
        if self.lossy and not self.reliable:
            copies = draw.draw(st.sampled_from((0, 1, 1, 1, 2)), label="copies")
        for _ in range(copies):
            delay = draw.draw(st.floats(0.0, 0.4), label="delay") if not self.reliable else 0.01
            self.seq += 1
            heapq.heappush(self.wire, (self.now + delay, self.seq, to_uas, data))

    def handle(self, outputs: list[Output], at_uas: bool, draw: st.DataObject) -> None:
        for o in outputs:
            if isinstance(o, Send):
                self.transmit(o.data, not at_uas, draw)
            elif isinstance(o, RequestReceived):
                key = (o.request.top_via.branch, o.request.method)  # type: ignore[union-attr]
                assert key not in self.requests_seen, f"request delivered twice: {key}"
                self.requests_seen.add(key)
                self.pending.append(o.server_tx)
                if self.winding_down:  # a late retransmission opened it: the TU answers at once
                    self.answer(o.server_tx, 200 if o.server_tx.invite else 404, draw)
            elif isinstance(o, CancelReceived):
                assert o.invite_server_tx.state is State.PROCEEDING
            elif isinstance(o, ResponseReceived):
                self.on_response(o.response, o.client_tx, draw)
            else:
                assert isinstance(o, AckReceived | StrayResponse | TransactionTerminated
                                  | TransactionTimeout | TransportFailure)

    def on_response(self, resp: Response, tx: ClientTransaction, draw: st.DataObject) -> None:
        if resp.status >= 200 and not (tx.invite and resp.status < 300):
            key = (tx.branch, tx.method)
            assert key not in self.finals_seen, f"final response delivered twice: {key}"
            self.finals_seen.add(key)
        if tx.invite and 200 <= resp.status < 300:
            ack = Request("ACK", tx.request.uri, [
                ("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch={new_branch()}"),
                ("To", resp.headers.get("To") or ""), ("From", tx.request.headers.get("From") or ""),
                ("Call-ID", tx.request.call_id or ""), ("CSeq", f"{tx.request.cseq[0]} ACK")])
            for o in self.uac.send_stateless(ack, self.uas_addr):
                assert isinstance(o, Send)
                self.transmit(o.data, True, draw)

    def advance(self, until: float, draw: st.DataObject) -> None:
        """Deliver packets and fire timers in time order up to ``until``."""
        while True:
            candidates = [t for t in (self.uac.next_deadline(), self.uas.next_deadline()) if t is not None]
            if self.wire:
                candidates.append(self.wire[0][0])
            if not candidates or min(candidates) > until:
                break
            self.now = max(self.now, min(candidates))
            while self.wire and self.wire[0][0] <= self.now:
                _, _, to_uas, data = heapq.heappop(self.wire)
                msg = parse_message(data)
                if to_uas:
                    self.handle(self.uas.receive(msg, self.uac_addr, self.now), True, draw)
                else:
                    self.handle(self.uac.receive(msg, self.uas_addr, self.now), False, draw)
            self.handle(self.uac.tick(self.now), False, draw)
            self.handle(self.uas.tick(self.now), True, draw)
        self.now = max(self.now, until)

    def answer(self, tx: ServerTransaction, status: int, draw: st.DataObject) -> None:
        if tx.request is None or tx.state is State.TERMINATED:
            return
        if not tx.invite and 100 < status < 200:
            status = 100
        resp = make_response(tx.request, status, to_tag="b")
        self.handle(self.uas.send_response(resp, self.now), True, draw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), reliable=st.booleans())
def test_random_traffic_never_raises_duplicates_or_leaks(data: st.DataObject, reliable: bool) -> None:
    world = World(reliable)
    transport = "TCP" if reliable else "UDP"
    dest = world.uas_addr
    n = 0
    for _ in range(data.draw(st.integers(1, 25), label="steps")):
        action = data.draw(st.sampled_from(("send", "wait", "wait", "answer", "answer", "cancel")))
        if action == "send":
            n += 1
            method = data.draw(st.sampled_from(METHODS))
            tx, out = world.uac.send_request(outgoing(method, n, transport), dest, world.now)
            world.client_txs.append(tx)
            world.handle(out, False, data)
        elif action == "wait":
            world.advance(world.now + data.draw(st.floats(0.0, 40.0)), data)
        elif action == "answer" and world.pending:
            tx = data.draw(st.sampled_from(world.pending))
            status = data.draw(st.sampled_from((100, 180, 200, 200, 404, 486, 503)))
            world.answer(tx, status, data)
        elif action == "cancel":
            invites = [t for t in world.client_txs if t.invite and t.state is not State.TERMINATED]
            if invites:
                world.handle(world.uac.cancel(data.draw(st.sampled_from(invites)), world.now), False, data)
    # Wind down: the network stops losing packets and the server TU answers everything it holds.
    world.lossy = False
    world.winding_down = True
    world.advance(world.now + 1.0, data)
    for tx in list(world.pending):
        world.answer(tx, 200 if tx.invite else 404, data)
    # An INVITE left ringing is cancelled by its TU (the B2BUA's ring timeout).
    for tx in world.client_txs:
        if tx.invite and tx.state is State.PROCEEDING:
            world.handle(world.uac.cancel(tx, world.now), False, data)
    world.advance(world.now + 500.0, data)
    assert len(world.uac) == 0, [t for t in world.client_txs if t.state is not State.TERMINATED]
    assert len(world.uas) == 0
    assert world.uac.next_deadline() is None and world.uas.next_deadline() is None


# --- one layer fed random messages --------------------------------------------------------------
BRANCHES = ("z9hG4bKa", "z9hG4bKb", "z9hG4bK", "old2543", "")
SOURCES = (UAC, Addr("udp", "192.0.2.9", 5062), Addr("tcp", "192.0.2.9", 40000), Addr("ws", "192.0.2.9", 80))


def raw_request(method: str, branch: str, cseq_method: str, to_tag: str | None, transport: str) -> Request:
    """Built directly, not parsed: the layer must also survive what the parser would refuse."""
    via = f"SIP/2.0/{transport} 192.0.2.9:5062" + (f";branch={branch}" if branch else "")
    to = "<sip:bob@192.0.2.2>" + (f";tag={to_tag}" if to_tag else "")
    return Request(method, "sip:bob@192.0.2.2", [
        ("Via", via), ("To", to), ("From", "<sip:alice@192.0.2.9>;tag=f"), ("Call-ID", "fuzz"),
        ("CSeq", f"7 {cseq_method}"), ("Max-Forwards", "70")])


incoming_requests = st.builds(
    raw_request,
    method=st.sampled_from(("INVITE", "ACK", "CANCEL", "OPTIONS", "BYE")),
    branch=st.sampled_from(BRANCHES),
    cseq_method=st.sampled_from(("INVITE", "ACK", "CANCEL", "OPTIONS")),
    to_tag=st.sampled_from((None, "b", "x")),
    transport=st.sampled_from(("UDP", "TCP")),
)


def check_consistency(layer: TransactionLayer, txs: list) -> None:
    from softswitch.sip.transaction import _SLOT

    stale = sum(1 for _, seq, tx, name in layer._heap if getattr(tx, _SLOT[name]) != seq)
    assert layer._stale == stale
    assert len(layer) == sum(1 for t in set(txs) if t.state is not State.TERMINATED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.one_of(
    st.tuples(st.just("request"), incoming_requests, st.sampled_from(SOURCES)),
    st.tuples(st.just("send"), st.sampled_from(("INVITE", "OPTIONS")), st.sampled_from(("udp", "tcp"))),
    st.tuples(st.just("response"), st.integers(0, 20), st.sampled_from((100, 180, 200, 401, 487, 603))),
    st.tuples(st.just("answer"), st.integers(0, 20), st.sampled_from((100, 183, 200, 486))),
    st.tuples(st.just("cancel"), st.integers(0, 20), st.just(0)),
    st.tuples(st.just("error"), st.integers(0, 20), st.just(0)),
    st.tuples(st.just("tick"), st.floats(0.0, 20.0), st.just(0)),
), max_size=40))
def test_random_interleavings_never_raise_and_never_leak(steps: list[tuple]) -> None:
    layer = TransactionLayer()
    now = 0.0
    txs: list[ClientTransaction | ServerTransaction] = []
    n = 0
    for kind, a, b in steps:
        if kind == "request":
            for o in layer.receive(a, b, now):
                if isinstance(o, RequestReceived):
                    txs.append(o.server_tx)
                if isinstance(o, Send) and o.tx_key is not None:
                    tx = layer._servers.get(o.tx_key)
                    if tx is not None:
                        txs.append(tx)  # the CANCEL transaction the layer answered itself
        elif kind == "send":
            n += 1
            tx, _ = layer.send_request(outgoing(a, n, b.upper()), Addr(b, "192.0.2.2", 5060), now)
            txs.append(tx)
        elif kind == "response":
            clients = [t for t in txs if isinstance(t, ClientTransaction)]
            if clients:
                tx = clients[a % len(clients)]
                resp = parse_message(make_response(tx.request, b, to_tag="b").serialize())
                layer.receive(resp, UAS, now)
        elif kind == "answer":
            servers = [t for t in txs if isinstance(t, ServerTransaction) and t.request is not None]
            if servers:
                tx = servers[a % len(servers)]
                layer.send_response(make_response(tx.request, b, to_tag="b"), now, tx=tx)
        elif kind == "cancel":
            invites = [t for t in txs if isinstance(t, ClientTransaction) and t.invite]
            if invites:
                layer.cancel(invites[a % len(invites)], now)
        elif kind == "error" and txs:
            layer.on_transport_error(txs[a % len(txs)], now)
        else:
            now += a
            layer.tick(now)
        # A CANCEL goes out on cancel() or, when pending, on the first provisional response.
        txs.extend(t.cancel_tx for t in txs if isinstance(t, ClientTransaction) and t.cancel_tx is not None)
        check_consistency(layer, txs)
    # Every TU duty done: servers get a final answer, ringing INVITEs a final response.
    for tx in list(txs):
        if isinstance(tx, ServerTransaction) and tx.request is not None and tx.state is not State.TERMINATED:
            layer.send_response(make_response(tx.request, 500, to_tag="b"), now, tx=tx)
        elif isinstance(tx, ClientTransaction) and tx.state is State.PROCEEDING:
            layer.receive(parse_message(make_response(tx.request, 487, to_tag="b").serialize()), UAS, now)
    while (deadline := layer.next_deadline()) is not None:
        now = max(now, deadline)
        layer.tick(now)
    check_consistency(layer, txs)
    assert len(layer) == 0 and not layer._clients and not layer._servers and not layer._heap
