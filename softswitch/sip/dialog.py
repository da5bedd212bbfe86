"""Dialogs (RFC 3261 section 12): the state two user agents share for the life of a call.

Sans-IO: a dialog builds in-dialog requests (BYE, re-INVITE, ACK for 2xx, UPDATE, REFER...) and
checks incoming ones; the caller sends them through the transaction layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from softswitch.sip.message import Request, Response, new_branch
from softswitch.sip.uri import NameAddr, SipURI, parse_uri


class DialogError(ValueError):
    """An in-dialog request that the dialog must refuse (status says how)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class Dialog:
    """One side's view of a dialog. `local_*` is this node, `remote_*` the peer."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the From (UAC) or To (UAS) header value without tag, as name-addr
    remote_uri: str
    remote_target: str  # the peer's Contact URI
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 1
    remote_seq: int | None = None
    secure: bool = False
    state: str = "early"  # early | confirmed | terminated

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uac(cls, invite: Request, resp: Response) -> Dialog:
        """The caller's dialog, from its INVITE and a 1xx-with-tag or 2xx response (12.1.2)."""
        contacts = resp.contacts
        target = str(contacts[0].uri) if contacts else invite.uri
        routes = [str(r) for r in reversed(resp.headers.get_all("Record-Route"))]
        from_ = invite.from_
        to = resp.to
        return cls(
            call_id=invite.call_id or "",
            local_tag=from_.tag or "",
            remote_tag=to.tag or "",
            local_uri=_without_tag(from_),
            remote_uri=_without_tag(to),
            remote_target=target,
            route_set=routes,
            local_seq=invite.cseq[0],
            remote_seq=None,
            secure=invite.uri.lower().startswith("sips:"),
            state="confirmed" if 200 <= resp.status < 300 else "early",
        )

    @classmethod
    def as_uas(cls, invite: Request, local_tag: str) -> Dialog:
        """The callee's dialog, from the INVITE it received and the tag it chose (12.1.1)."""
        contacts = invite.contacts
        target = str(contacts[0].uri) if contacts else str(invite.from_.uri)
        routes = list(invite.headers.get_all("Record-Route"))
        return cls(
            call_id=invite.call_id or "",
            local_tag=local_tag,
            remote_tag=invite.from_.tag or "",
            local_uri=_without_tag(invite.to),
            remote_uri=_without_tag(invite.from_),
            remote_target=target,
            route_set=routes,
            local_seq=0,
            remote_seq=invite.cseq[0],
            secure=invite.uri.lower().startswith("sips:"),
        )

    def confirm(self, resp: Response | None = None) -> None:
        """A 2xx arrived (UAC) or was sent (UAS): the dialog is confirmed; refresh its target."""
        self.state = "confirmed"
        if resp is not None:
            self.refresh_target(resp)

    def refresh_target(self, msg: Request | Response) -> None:
        """Target refresh (re-INVITE, UPDATE, their 2xx): the peer's new Contact (12.2)."""
        contacts = msg.contacts
        if contacts:
            self.remote_target = str(contacts[0].uri)

    def check_request(self, req: Request) -> None:
        """Validate an in-dialog request's CSeq (12.2.2): lower than before means 500."""
        if req.method in ("ACK", "CANCEL"):
            return
        seq = req.cseq[0]
        if self.remote_seq is not None and seq < self.remote_seq:
            raise DialogError(500, "CSeq out of order")
        if self.remote_seq is not None and seq == self.remote_seq and req.method != "PRACK":
            raise DialogError(500, "CSeq out of order")
        self.remote_seq = seq

    def request(
        self,
        method: str,
        *,
        via: str,
        contact: str | None = None,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
        cseq: int | None = None,
    ) -> Request:
        """A new in-dialog request (12.2.1.1). `via` is 'SIP/2.0/UDP host:port' without branch.

        ACK for a 2xx and CANCEL reuse the given `cseq`; every other request takes the next one.
        """
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        uri, routes = self._request_target()
        req = Request(method, uri)
        h = req.headers
        h.add("Via", f"{via};branch={new_branch()};rport")
        h.add("Max-Forwards", "70")
        for r in routes:
            h.add("Route", r)
        h.add("From", f"{self.local_uri};tag={self.local_tag}")
        h.add("To", f"{self.remote_uri};tag={self.remote_tag}" if self.remote_tag else self.remote_uri)
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{cseq} {method}")
        if contact is not None and method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"):
            h.add("Contact", contact)
        for name, value in headers or ():
            h.add(name, value)
        req.body = body
        return req

    def ack(self, invite_cseq: int, *, via: str, body: bytes = b"") -> Request:
        """The ACK for a 2xx to an INVITE: its own transaction, the INVITE's CSeq number (13.2.2.4)."""
        return self.request("ACK", via=via, cseq=invite_cseq, body=body)

    def _request_target(self) -> tuple[str, list[str]]:
        """Request-URI and Route headers from the route set (12.2.1.1, loose and strict routing)."""
        if not self.route_set:
            return self.remote_target, []
        first = parse_uri(_uri_of(self.route_set[0]))
        if isinstance(first, SipURI) and first.lr:
            return self.remote_target, list(self.route_set)
        # Strict router: its URI becomes the Request-URI, the remote target goes last.
        return _uri_of(self.route_set[0]), [*self.route_set[1:], f"<{self.remote_target}>"]


def _uri_of(route: str) -> str:
    route = route.strip()
    if route.startswith("<"):
        return route[1 : route.index(">")]
    if "<" in route:
        return route[route.index("<") + 1 : route.index(">")]
    return route


def _without_tag(na: NameAddr) -> str:
    params = {k: v for k, v in na.params.items() if k.lower() != "tag"}
    copy = NameAddr(na.display, na.uri, params)
    return str(copy)


@dataclass(frozen=True, slots=True)
class Replaces:
    """A Replaces header (RFC 3891): the dialog a new INVITE takes the place of.

    `to_tag` is the local tag of the dialog at the UA that receives the INVITE, `from_tag` its remote tag.
    """

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False


def parse_replaces(value: str) -> Replaces:
    """Parse `callid;to-tag=X;from-tag=Y[;early-only]`; raise ValueError when a part is missing."""
    call_id, *params = (p.strip() for p in value.split(";"))
    tags: dict[str, str] = {}
    early_only = False
    for param in params:
        name, _, val = param.partition("=")
        name = name.strip().lower()
        if name == "early-only":
            early_only = True
        elif name in ("to-tag", "from-tag"):
            tags[name] = val.strip().strip('"')
    if not call_id or not tags.get("to-tag") or not tags.get("from-tag"):
        raise ValueError(f"malformed Replaces: {value[:80]!r}")
    return Replaces(call_id, tags["to-tag"], tags["from-tag"], early_only)
