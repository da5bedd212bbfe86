"""Sans-IO SIP transactions: RFC 3261 section 17 as updated by RFC 6026.

The layer holds the four transaction state machines and the timers that drive them. It never reads a
clock, sleeps or touches a socket: the asyncio shell passes ``now`` (seconds, any monotonic origin) in
and acts on the returned outputs.

Entry points (every one returns a list of outputs, in the order they should be acted upon):

``receive(msg, source, now)``
    A parsed message from the transport. Requests open server transactions (``RequestReceived``) or
    are absorbed as retransmissions; responses are routed to client transactions
    (``ResponseReceived``) or reported as ``StrayResponse``.
``send_request(req, dest, now) -> (ClientTransaction, outputs)``
    Opens a client transaction. The request must already carry its top Via with an RFC 3261 branch
    (``new_branch()``); the transport fills nothing in. ACK for a 2xx has no transaction: use
    ``send_stateless``.
``send_response(resp, now, dest=None, *, tx=None)``
    Passes a TU response to its server transaction, found by the response's top Via and CSeq (or
    given as ``tx``, which skips the look-up). A response that matches no live transaction is sent
    statelessly to the address the Via names (RFC 3261 18.2.2). Responses the state machine
    forbids (e.g. a second final response to a non-INVITE) are dropped: ``[]``.
``send_stateless(msg, dest)``
    Serialises a message that belongs to no transaction (ACK for a 2xx, a stateless 400).
``cancel(invite_tx, now)``
    Builds the CANCEL of RFC 3261 9.1 and sends it in its own non-INVITE client transaction, once a
    provisional response has arrived; before that the CANCEL is kept pending and sent when the first
    provisional response arrives (or dropped if a final response comes first).
``on_transport_error(tx_or_key, now)``
    The shell could not send for a transaction (``Send.tx_key`` names it): ``TransportFailure``.
``next_deadline()`` / ``tick(now)``
    The earliest timer, and firing every timer due at ``now``.
``len(layer)``
    Live (not yet terminated) transactions; it returns to 0 once every timer has fired.

Choices worth knowing:

* The automatic ``100 Trying`` for INVITE (RFC 3261 17.2.1) is sent ``TimerSettings.trying_delay``
  seconds after the INVITE (0.2 s by default) unless the TU has answered first; 0 sends it at once,
  None never (for a B2BUA that sends its own 100 immediately).
* A CANCEL is answered by the layer itself (RFC 3261 9.2): 200 when it matches a server transaction,
  481 otherwise. ``CancelReceived`` reaches the TU only when the matched INVITE transaction has not
  sent a final response yet; the TU then answers the INVITE with 487. The 200 to the CANCEL carries
  the To tag of the INVITE transaction's responses (``ServerTransaction.to_tag``), creating one
  there when none was sent yet, so the TU can put the same tag on its 487. A CANCEL is matched
  against INVITE transactions only (RFC 3261 9.1 forbids cancelling other methods): otherwise 481.
* Every ACK that no INVITE server transaction absorbs (ACK for 2xx, and ACK matched in the RFC 6026
  Accepted state) is handed to the TU as ``AckReceived``.
* Timer A doubles without a cap (RFC 3261 17.1.1.2); timers E and G are capped at T2.
* An INVITE client transaction that sent a CANCEL and got no final response 64*T1 later reports
  ``TransactionTimeout(tx, 'cancel')`` and terminates (RFC 3261 9.1), so a silent peer cannot leak it.
* Timer C (RFC 3261 16.6, optional) reports ``TransactionTimeout(tx, 'C')`` on an INVITE client
  transaction that has been in Proceeding that long without a new provisional response; the
  transaction stays alive and the TU decides (usually CANCEL).
* Requests whose top Via branch lacks the ``z9hG4bK`` cookie (or is the bare cookie, RFC 4475
  3.2.1) are matched the RFC 2543 way (RFC 3261 17.2.3): Request-URI, To tag, From tag, Call-ID,
  CSeq, top Via.
* To keep memory small at thousands of transactions per second, a server transaction drops its
  request once it has sent a final response (``request`` becomes None); it keeps only the bytes it
  may have to retransmit.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from enum import StrEnum

from softswitch.sip.message import MAGIC_COOKIE, Request, Response, make_response, new_tag
from softswitch.sip.uri import Via, parse_name_addr, split_comma_list

__all__ = [
    "AckReceived",
    "Addr",
    "CancelReceived",
    "ClientTransaction",
    "Output",
    "RELIABLE_TRANSPORTS",
    "RequestReceived",
    "ResponseReceived",
    "Send",
    "ServerTransaction",
    "State",
    "StrayResponse",
    "TimerSettings",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimeout",
    "TransportFailure",
]

RELIABLE_TRANSPORTS = frozenset({"tcp", "tls", "ws", "wss", "sctp"})


@dataclass(frozen=True, slots=True)
class Addr:
    """A transport address: ``transport`` is lower-case ('udp', 'tcp', 'tls', 'ws', 'wss')."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        """True for connection-oriented transports, which need no retransmissions."""
        return self.transport in RELIABLE_TRANSPORTS


@dataclass(slots=True)
class TimerSettings:
    """RFC 3261 timer values in seconds (Table 4); B/F/H/J/L/M default to 64*T1.

    ``timer_d`` applies to unreliable transports only (reliable ones use 0, as do I, J and K).
    ``timer_c`` (None: off) is the optional INVITE Proceeding guard of RFC 3261 16.6.
    ``trying_delay`` is when the INVITE server sends its own 100 Trying (0: at once, None: never).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_b: float | None = None
    timer_f: float | None = None
    timer_h: float | None = None
    timer_j: float | None = None
    timer_l: float | None = None
    timer_m: float | None = None
    timer_d: float = 32.0
    timer_c: float | None = None
    trying_delay: float | None = 0.2

    def sixty_four(self, value: float | None) -> float:
        """``value`` when set, else 64*T1."""
        return 64 * self.t1 if value is None else value


class State(StrEnum):
    """Transaction states of RFC 3261 section 17 plus 'accepted' from RFC 6026."""

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


# Which slot of a transaction holds each timer: at most one timer per slot is armed at a time.
_SLOT = {
    "A": "_t_retx", "E": "_t_retx", "G": "_t_retx",
    "B": "_t_life", "D": "_t_life", "F": "_t_life", "H": "_t_life", "I": "_t_life",
    "J": "_t_life", "K": "_t_life", "L": "_t_life", "M": "_t_life",
    "C": "_t_aux", "100": "_t_aux", "cancel": "_t_aux",
}
_SLOTS = ("_t_retx", "_t_life", "_t_aux")
_TIMEOUT_TIMERS = frozenset({"B", "F", "H"})


class ClientTransaction:
    """A client transaction (INVITE or non-INVITE); the TU reads it, the layer drives it."""

    __slots__ = ("_t_aux", "_t_life", "_t_retx", "ack", "branch", "cancel_pending", "cancel_tx", "data",
                 "dest", "interval", "invite", "key", "method", "reliable", "request", "response", "state")

    def __init__(self, request: Request, dest: Addr, branch: str, data: bytes) -> None:
        self.request = request
        self.method = request.method
        self.branch = branch
        self.key: tuple[str, str] = (branch, self.method)
        self.dest = dest
        self.data = data
        self.invite = self.method == "INVITE"
        self.reliable = dest.transport in RELIABLE_TRANSPORTS
        self.state = State.CALLING if self.invite else State.TRYING
        self.interval = 0.0
        self.response: Response | None = None  # the last response passed to the TU
        self.ack: bytes | None = None  # ACK for a non-2xx final, resent on each retransmission of it
        self.cancel_pending = False
        self.cancel_tx: ClientTransaction | None = None
        self._t_retx = 0
        self._t_life = 0
        self._t_aux = 0

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.method} {self.branch} {self.state}>"


class ServerTransaction:
    """A server transaction (INVITE or non-INVITE); the TU answers it through ``send_response``."""

    __slots__ = ("_match", "_t_aux", "_t_life", "_t_retx", "interval", "invite", "key", "last", "method",
                 "reliable", "reply_dest", "request", "source", "state", "to_tag")

    def __init__(self, request: Request, key: tuple[object, ...], source: Addr, reply_dest: Addr,
                 match: tuple[str, str | None] | None) -> None:
        self.request: Request | None = request
        self.method = request.method
        self.key = key
        self.source = source
        self.reply_dest = reply_dest
        self.invite = self.method == "INVITE"
        self.reliable = source.transport in RELIABLE_TRANSPORTS
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self.interval = 0.0
        self.last: bytes | None = None  # the last response sent, resent on request retransmissions
        self.to_tag: str | None = None  # INVITE only: the To tag of our responses (for CANCEL, RFC 2543 ACK)
        self._match = match  # RFC 2543 only: (Request-URI, To tag of the request)
        self._t_retx = 0
        self._t_life = 0
        self._t_aux = 0

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.method} {self.key[0]} {self.state}>"


Transaction = ClientTransaction | ServerTransaction


# --- outputs -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    """Bytes for the transport; ``tx_key`` names the transaction (for ``on_transport_error``)."""

    data: bytes
    dest: Addr
    tx_key: tuple[object, ...] | None = None


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU, with the server transaction to answer it through."""

    request: Request
    server_tx: ServerTransaction

    @property
    def source(self) -> Addr:
        """Where the request came from."""
        return self.server_tx.source

    @property
    def transaction(self) -> ServerTransaction:
        """Alias of ``server_tx``."""
        return self.server_tx


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK that belongs to the TU (ACK for a 2xx): no transaction absorbed it."""

    request: Request
    source: Addr | None = None


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched an INVITE server transaction still without a final answer (send 487)."""

    cancel_request: Request
    invite_server_tx: ServerTransaction

    @property
    def invite(self) -> ServerTransaction:
        """Alias of ``invite_server_tx``."""
        return self.invite_server_tx


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for the TU from a client transaction (including RFC 6026 2xx retransmissions)."""

    response: Response
    client_tx: ClientTransaction

    @property
    def transaction(self) -> ClientTransaction:
        """Alias of ``client_tx``."""
        return self.client_tx


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matched no client transaction (a proxy may forward it; a UA drops it)."""

    response: Response
    source: Addr | None = None


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer B, F or H (or the optional C) fired: the transaction failed (or, for C, is overdue)."""

    tx: Transaction
    timer: str

    @property
    def transaction(self) -> Transaction:
        """Alias of ``tx``."""
        return self.tx


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """The transaction reached Terminated and was forgotten."""

    tx: Transaction

    @property
    def transaction(self) -> Transaction:
        """Alias of ``tx``."""
        return self.tx


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """The transport could not send for this transaction (RFC 3261 17.1.4 / 17.2.4)."""

    tx: Transaction

    @property
    def transaction(self) -> Transaction:
        """Alias of ``tx``."""
        return self.tx


Output = (Send | RequestReceived | AckReceived | CancelReceived | ResponseReceived | StrayResponse
          | TransactionTimeout | TransactionTerminated | TransportFailure)


# --- helpers -------------------------------------------------------------------------------------
def _is_3261(branch: str | None) -> bool:
    # A bare magic cookie is no unique branch at all (RFC 4475 3.2.1): match it the RFC 2543 way.
    return branch is not None and len(branch) > 7 and branch.startswith(MAGIC_COOKIE)


def _via_tuple(via: Via) -> tuple[str, str, int | None, str | None]:
    return via.transport.upper(), via.host.lower(), via.port, via.branch


def _reply_address(via: Via, source: Addr) -> Addr:
    """Where responses to a request received from ``source`` go (RFC 3261 18.2.2, RFC 3581)."""
    if source.transport in RELIABLE_TRANSPORTS:
        return source  # same connection
    if via.maddr:
        return Addr(source.transport, via.maddr.strip("[]"), via.port or 5060)
    if via.rport is not None:
        return source
    # 'received' would equal the source address, so the source host serves for both cases.
    return Addr(source.transport, source.host, via.port or 5060)


def _via_address(via: Via) -> Addr:
    """Where to send a response when no request source is known: the Via's own parameters."""
    transport = via.transport.lower()
    rport = via.rport
    default = 5061 if transport == "tls" else 5060
    port = rport if isinstance(rport, int) and not isinstance(rport, bool) else (via.port or default)
    return Addr(transport, (via.received or via.host).strip("[]"), port)  # Addr hosts carry no brackets


def _top_via_raw(msg: Request | Response) -> str:
    raw = msg.headers.get("Via")
    if raw is None:
        raise ValueError("message has no Via")
    return split_comma_list(raw)[0]


def _tag_of(raw: str | None) -> str | None:
    """The tag parameter of a raw From/To value, without building a NameAddr for the common case."""
    if raw is None or "tag" not in raw.lower():
        return None
    return parse_name_addr(raw).tag


class TransactionLayer:
    """All client and server transactions of one SIP node, with their timers (see module docstring)."""

    def __init__(self, timers: TimerSettings | None = None) -> None:
        self.timers = timers if timers is not None else TimerSettings()
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._servers: dict[tuple[object, ...], ServerTransaction] = {}
        self._heap: list[tuple[float, int, Transaction, str]] = []
        self._seq = itertools.count(1)
        self._stale = 0  # heap entries whose timer was cancelled or re-armed
        self._live = 0

    def __len__(self) -> int:
        return self._live

    # --- timers ----------------------------------------------------------------------------------
    def _arm(self, tx: Transaction, name: str, delay: float, now: float) -> None:
        slot = _SLOT[name]
        if getattr(tx, slot):
            self._stale += 1
        seq = next(self._seq)
        setattr(tx, slot, seq)
        heapq.heappush(self._heap, (now + delay, seq, tx, name))
        # Cancelled timers stay in the heap until due; rebuild it when they dominate so that memory
        # stays proportional to live timers under heavy load.
        if self._stale > 1024 and self._stale * 2 > len(self._heap):
            self._compact()

    def _disarm(self, tx: Transaction, slot: str) -> None:
        if getattr(tx, slot):
            setattr(tx, slot, 0)
            self._stale += 1

    def _compact(self) -> None:
        # In place: tick() holds a reference to the list while firing timers that re-arm.
        heap = self._heap
        heap[:] = [e for e in heap if getattr(e[2], _SLOT[e[3]]) == e[1]]
        heapq.heapify(heap)
        self._stale = 0

    def next_deadline(self) -> float | None:
        """When the earliest armed timer is due, or None when no timer is armed."""
        heap = self._heap
        while heap:
            when, seq, tx, name = heap[0]
            if getattr(tx, _SLOT[name]) == seq:
                return when
            heapq.heappop(heap)
            self._stale -= 1
        return None

    def tick(self, now: float) -> list[Output]:
        """Fire every timer due at ``now``."""
        out: list[Output] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, tx, name = heapq.heappop(heap)
            slot = _SLOT[name]
            if getattr(tx, slot) != seq:
                self._stale -= 1
                continue
            setattr(tx, slot, 0)
            if isinstance(tx, ClientTransaction):
                self._fire_client(tx, name, now, out)
            else:
                self._fire_server(tx, name, now, out)
        return out

    def _fire_client(self, tx: ClientTransaction, name: str, now: float, out: list[Output]) -> None:
        st = tx.state
        if name == "A":
            if st is State.CALLING:
                out.append(Send(tx.data, tx.dest, tx.key))
                tx.interval *= 2  # no T2 cap for INVITE (RFC 3261 17.1.1.2)
                self._arm(tx, "A", tx.interval, now)
        elif name == "E":
            if st is State.TRYING or st is State.PROCEEDING:
                out.append(Send(tx.data, tx.dest, tx.key))
                t2 = self.timers.t2
                tx.interval = t2 if st is State.PROCEEDING else min(2 * tx.interval, t2)
                self._arm(tx, "E", tx.interval, now)
        elif name == "C":
            if st is State.PROCEEDING:
                out.append(TransactionTimeout(tx, "C"))
        elif name == "cancel":
            # RFC 3261 9.1: no final response 64*T1 after the CANCEL: consider the INVITE cancelled.
            if st is State.PROCEEDING:
                out.append(TransactionTimeout(tx, "cancel"))
                self._terminate(tx, out)
        else:
            if name in _TIMEOUT_TIMERS:
                out.append(TransactionTimeout(tx, name))
            self._terminate(tx, out)

    def _fire_server(self, tx: ServerTransaction, name: str, now: float, out: list[Output]) -> None:
        if name == "G":
            if tx.state is State.COMPLETED and tx.last is not None:
                out.append(Send(tx.last, tx.reply_dest, tx.key))
                tx.interval = min(2 * tx.interval, self.timers.t2)
                self._arm(tx, "G", tx.interval, now)
        elif name == "100":
            if tx.state is State.PROCEEDING and tx.last is None and tx.request is not None:
                data = make_response(tx.request, 100).serialize()
                tx.last = data
                out.append(Send(data, tx.reply_dest, tx.key))
        else:
            if name in _TIMEOUT_TIMERS:
                out.append(TransactionTimeout(tx, name))
            self._terminate(tx, out)

    def _terminate(self, tx: Transaction, out: list[Output]) -> None:
        if tx.state is State.TERMINATED:
            return
        tx.state = State.TERMINATED
        for slot in _SLOTS:
            self._disarm(tx, slot)
        if isinstance(tx, ClientTransaction):
            if self._clients.get(tx.key) is tx:
                del self._clients[tx.key]
        elif self._servers.get(tx.key) is tx:
            del self._servers[tx.key]
        self._live -= 1
        out.append(TransactionTerminated(tx))

    # --- receiving -------------------------------------------------------------------------------
    def receive(self, msg: Request | Response, source: Addr, now: float) -> list[Output]:
        """Process one message from the transport; malformed Via/CSeq make it silently dropped."""
        try:
            if isinstance(msg, Response):
                return self._receive_response(msg, source, now)
            return self._receive_request(msg, source, now)
        except ValueError:
            # A Via or CSeq that does not parse: no transaction can be matched and, for a request,
            # no response routed (the transport answers syntax errors before this layer).
            return []

    def _receive_response(self, resp: Response, source: Addr, now: float) -> list[Output]:
        via = resp.top_via
        if via is None or via.branch is None:
            return [StrayResponse(resp, source)]
        tx = self._clients.get((via.branch, resp.cseq[1]))
        if tx is None:
            return [StrayResponse(resp, source)]
        out: list[Output] = []
        status = resp.status
        st = tx.state
        if tx.invite:
            self._invite_client_response(tx, resp, status, st, now, out)
        elif st is State.TRYING or st is State.PROCEEDING:
            if status < 200:
                tx.state = State.PROCEEDING
                tx.response = resp
                out.append(ResponseReceived(resp, tx))
            else:
                self._disarm(tx, "_t_retx")
                self._disarm(tx, "_t_life")
                tx.state = State.COMPLETED
                tx.response = resp
                out.append(ResponseReceived(resp, tx))
                if tx.reliable:
                    self._terminate(tx, out)
                else:
                    self._arm(tx, "K", self.timers.t4, now)
        # Completed: retransmitted finals are absorbed.
        return out

    def _invite_client_response(self, tx: ClientTransaction, resp: Response, status: int, st: State,
                                now: float, out: list[Output]) -> None:
        early = st is State.CALLING or st is State.PROCEEDING
        if status < 200:
            if not early:
                return
            tx.response = resp
            out.append(ResponseReceived(resp, tx))
            if st is State.CALLING:
                self._disarm(tx, "_t_retx")
                self._disarm(tx, "_t_life")
                tx.state = State.PROCEEDING
                if tx.cancel_pending:
                    tx.cancel_pending = False
                    out.extend(self._send_cancel(tx, now))
            if (self.timers.timer_c is not None and tx.cancel_tx is None
                    and (st is State.CALLING or status > 100)):
                self._arm(tx, "C", self.timers.timer_c, now)
        elif status < 300:
            if early:
                for slot in _SLOTS:
                    self._disarm(tx, slot)
                tx.state = State.ACCEPTED
                tx.cancel_pending = False
                self._arm(tx, "M", self.timers.sixty_four(self.timers.timer_m), now)
            elif st is not State.ACCEPTED:
                return  # a 2xx after a non-2xx final: the transaction is done with it
            # RFC 6026: every 2xx (retransmission or another fork) goes to the TU, which ACKs it.
            tx.response = resp
            out.append(ResponseReceived(resp, tx))
        elif early:
            for slot in _SLOTS:
                self._disarm(tx, slot)
            tx.state = State.COMPLETED
            tx.cancel_pending = False
            tx.response = resp
            tx.ack = self._build_ack(tx.request, resp)
            out.append(ResponseReceived(resp, tx))
            out.append(Send(tx.ack, tx.dest, tx.key))
            if tx.reliable or self.timers.timer_d <= 0:
                self._terminate(tx, out)
            else:
                self._arm(tx, "D", self.timers.timer_d, now)
        elif st is State.COMPLETED and tx.ack is not None:
            out.append(Send(tx.ack, tx.dest, tx.key))  # the ACK got lost: resend, TU not told again

    @staticmethod
    def _build_ack(req: Request, resp: Response) -> bytes:
        """ACK for a non-2xx final response (RFC 3261 17.1.1.3)."""
        headers: list[tuple[str, str]] = [("Via", _top_via_raw(req))]
        headers.extend(("Route", r) for r in req.headers.get_all("Route"))
        headers.append(("Max-Forwards", "70"))
        headers.append(("From", req.headers.get("From") or ""))
        headers.append(("To", resp.headers.get("To") or ""))
        headers.append(("Call-ID", req.headers.get("Call-ID") or ""))
        headers.append(("CSeq", f"{req.cseq[0]} ACK"))
        return Request("ACK", req.uri, headers).serialize()

    def _server_key(self, msg: Request | Response, via: Via, method: str) -> tuple[object, ...]:
        branch = via.branch
        if _is_3261(branch):
            return (branch, via.host.lower(), via.port, method)
        return ("2543", msg.call_id, _tag_of(msg.headers.get("From")), msg.cseq[0], method, _via_tuple(via))

    def _receive_request(self, req: Request, source: Addr, now: float) -> list[Output]:
        via = req.top_via
        if via is None:
            return []
        method = req.method
        if method == "ACK":
            return self._receive_ack(req, via, source, now)
        key = self._server_key(req, via, method)
        rfc2543 = key[0] == "2543"
        match = (req.uri, _tag_of(req.headers.get("To"))) if rfc2543 else None
        tx = self._servers.get(key)
        if tx is not None and (match is None or tx._match == match):
            return self._retransmitted_request(tx)
        reply_dest = _reply_address(via, source)
        tx = ServerTransaction(req, key, source, reply_dest, match)
        self._servers[key] = tx
        self._live += 1
        out: list[Output] = []
        if method == "CANCEL":
            self._answer_cancel(req, tx, via, match, now, out)
            return out
        if tx.invite:
            delay = self.timers.trying_delay
            if delay is not None:
                if delay <= 0:
                    data = make_response(req, 100).serialize()
                    tx.last = data
                    out.append(Send(data, reply_dest, key))
                else:
                    self._arm(tx, "100", delay, now)
        out.append(RequestReceived(req, tx))
        return out

    def _retransmitted_request(self, tx: ServerTransaction) -> list[Output]:
        st = tx.state
        # Trying (non-INVITE, nothing sent yet), Confirmed and Accepted absorb the retransmission.
        if tx.last is not None and (st is State.PROCEEDING or st is State.COMPLETED):
            return [Send(tx.last, tx.reply_dest, tx.key)]
        return []

    def _receive_ack(self, req: Request, via: Via, source: Addr, now: float) -> list[Output]:
        key = self._server_key(req, via, "INVITE")
        tx = self._servers.get(key)
        if tx is None:
            return [AckReceived(req, source)]
        if tx._match is not None:
            # RFC 2543: the ACK's To tag is the one of our response, not of the INVITE.
            if tx._match[0] != req.uri or _tag_of(req.headers.get("To")) != tx.to_tag:
                return [AckReceived(req, source)]
        st = tx.state
        if st is State.COMPLETED:
            out: list[Output] = []
            self._disarm(tx, "_t_retx")
            self._disarm(tx, "_t_life")
            tx.state = State.CONFIRMED
            if tx.reliable:
                self._terminate(tx, out)
            else:
                self._arm(tx, "I", self.timers.t4, now)
            return out
        if st is State.ACCEPTED:
            return [AckReceived(req, source)]
        return []  # Confirmed absorbs; an ACK in Proceeding answers nothing we sent

    def _answer_cancel(self, req: Request, ctx: ServerTransaction, via: Via,
                       match: tuple[str, str | None] | None, now: float, out: list[Output]) -> None:
        """Match a new CANCEL to its INVITE (RFC 3261 9.2) and answer it from its own transaction."""
        inv = self._servers.get(self._server_key(req, via, "INVITE"))
        if inv is not None and match is not None and inv._match != match:
            inv = None
        has_tag = _tag_of(req.headers.get("To")) is not None
        if inv is None:
            # A final response carries a To tag (RFC 3261 8.2.6.2).
            self._respond(ctx, make_response(req, 481, to_tag=None if has_tag else new_tag()), None, now, out)
            return
        to_tag = None
        if not has_tag:
            if inv.to_tag is None:
                inv.to_tag = new_tag()
            to_tag = inv.to_tag
        self._respond(ctx, make_response(req, 200, to_tag=to_tag), None, now, out)
        if inv.state is State.PROCEEDING:
            out.append(CancelReceived(req, inv))

    # --- sending ---------------------------------------------------------------------------------
    def send_request(self, req: Request, dest: Addr, now: float) -> tuple[ClientTransaction, list[Output]]:
        """Open a client transaction for ``req`` (top Via with an RFC 3261 branch required)."""
        if req.method == "ACK":
            raise ValueError("ACK has no client transaction: send it with send_stateless()")
        via = req.top_via
        if via is None or not _is_3261(via.branch):
            raise ValueError("a request needs a top Via with an RFC 3261 branch (new_branch())")
        branch = via.branch
        assert branch is not None
        if (branch, req.method) in self._clients:
            raise ValueError(f"branch {branch} already in use for {req.method}")
        tx = ClientTransaction(req, dest, branch, req.serialize())
        self._clients[tx.key] = tx
        self._live += 1
        t = self.timers
        if tx.invite:
            if not tx.reliable:
                tx.interval = t.t1
                self._arm(tx, "A", t.t1, now)
            self._arm(tx, "B", t.sixty_four(t.timer_b), now)
        else:
            if not tx.reliable:
                tx.interval = t.t1
                self._arm(tx, "E", t.t1, now)
            self._arm(tx, "F", t.sixty_four(t.timer_f), now)
        return tx, [Send(tx.data, dest, tx.key)]

    def send_stateless(self, msg: Request | Response, dest: Addr) -> list[Output]:
        """Serialise a message that belongs to no transaction (ACK for 2xx, stateless responses)."""
        return [Send(msg.serialize(), dest)]

    def find_server_transaction(self, resp: Response) -> ServerTransaction | None:
        """The live server transaction a response belongs to, by its top Via and CSeq."""
        via = resp.top_via
        if via is None:
            return None
        return self._servers.get(self._server_key(resp, via, resp.cseq[1]))

    def send_response(self, resp: Response, now: float, dest: Addr | None = None, *,
                      tx: ServerTransaction | None = None) -> list[Output]:
        """Send a TU response through its server transaction (or statelessly when it has none)."""
        if tx is None:
            tx = self.find_server_transaction(resp)
        out: list[Output] = []
        if tx is None or tx.state is State.TERMINATED:
            via = resp.top_via
            if dest is None and via is None:
                raise ValueError("response without Via and without destination")
            target = dest if dest is not None else _via_address(via)  # type: ignore[arg-type]
            out.append(Send(resp.serialize(), target))
            return out
        self._respond(tx, resp, dest, now, out)
        return out

    def _respond(self, tx: ServerTransaction, resp: Response, dest: Addr | None, now: float,
                 out: list[Output]) -> None:
        if dest is not None:
            tx.reply_dest = dest
        status = resp.status
        st = tx.state
        t = self.timers
        if tx.invite:
            if st is State.ACCEPTED:
                if 200 <= status < 300:  # the TU's own 2xx retransmissions (RFC 6026)
                    out.append(Send(resp.serialize(), tx.reply_dest, tx.key))
                return
            if st is not State.PROCEEDING:
                return
            self._disarm(tx, "_t_aux")  # the TU answered: no automatic 100
            if status > 100:
                tag = _tag_of(resp.headers.get("To"))
                if tag is not None:
                    tx.to_tag = tag
            data = resp.serialize()
            out.append(Send(data, tx.reply_dest, tx.key))
            if status < 200:
                tx.last = data
            elif status < 300:
                tx.state = State.ACCEPTED
                tx.last = None
                tx.request = None
                self._arm(tx, "L", t.sixty_four(t.timer_l), now)
            else:
                tx.state = State.COMPLETED
                tx.last = data
                tx.request = None
                if not tx.reliable:
                    tx.interval = t.t1
                    self._arm(tx, "G", t.t1, now)
                self._arm(tx, "H", t.sixty_four(t.timer_h), now)
            return
        if st is not State.TRYING and st is not State.PROCEEDING:
            return
        data = resp.serialize()
        tx.last = data
        out.append(Send(data, tx.reply_dest, tx.key))
        if status < 200:
            tx.state = State.PROCEEDING
            return
        tx.state = State.COMPLETED
        tx.request = None
        if tx.reliable:
            self._terminate(tx, out)
        else:
            self._arm(tx, "J", t.sixty_four(t.timer_j), now)

    # --- CANCEL (client side) --------------------------------------------------------------------
    def cancel(self, invite_tx: ClientTransaction, now: float) -> list[Output]:
        """CANCEL an INVITE client transaction (RFC 3261 9.1); pending until a provisional arrives."""
        if not invite_tx.invite:
            raise ValueError("only INVITE transactions can be cancelled")
        if invite_tx.cancel_tx is not None or invite_tx.cancel_pending:
            return []
        if invite_tx.state is State.CALLING:
            invite_tx.cancel_pending = True
            return []
        if invite_tx.state is State.PROCEEDING:
            return self._send_cancel(invite_tx, now)
        return []  # a final response arrived: nothing left to cancel

    def _send_cancel(self, tx: ClientTransaction, now: float) -> list[Output]:
        req = tx.request
        headers: list[tuple[str, str]] = [("Via", _top_via_raw(req))]
        headers.extend(("Route", r) for r in req.headers.get_all("Route"))
        headers.append(("Max-Forwards", "70"))
        headers.append(("From", req.headers.get("From") or ""))
        headers.append(("To", req.headers.get("To") or ""))
        headers.append(("Call-ID", req.headers.get("Call-ID") or ""))
        headers.append(("CSeq", f"{req.cseq[0]} CANCEL"))
        cancel_tx, out = self.send_request(Request("CANCEL", req.uri, headers), tx.dest, now)
        tx.cancel_tx = cancel_tx
        self._arm(tx, "cancel", self.timers.sixty_four(self.timers.timer_b), now)  # replaces timer C
        return out

    # --- transport errors ------------------------------------------------------------------------
    def on_transport_error(self, tx_key: Transaction | tuple[object, ...] | None, now: float) -> list[Output]:
        """The shell failed to send for a transaction: tell the TU and end it (RFC 3261 17.1.4, 17.2.4)."""
        if isinstance(tx_key, ClientTransaction | ServerTransaction):
            tx: Transaction | None = tx_key
        elif tx_key is None:
            return []
        else:
            tx = self._clients.get(tx_key) if len(tx_key) == 2 else self._servers.get(tx_key)  # type: ignore[arg-type]
        if tx is None or tx.state is State.TERMINATED:
            return []
        out: list[Output] = [TransportFailure(tx)]
        # Accepted lives on so that the TU's 2xx retransmissions and ACK still find it (RFC 6026);
        # Confirmed has nothing left to send.
        if tx.state is not State.ACCEPTED and tx.state is not State.CONFIRMED:
            self._terminate(tx, out)
        return out
