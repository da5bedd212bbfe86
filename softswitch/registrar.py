"""The location service: REGISTER handling (RFC 3261 section 10.3) and contact look-up.

Sans-IO like the SIP core: every method takes `now` (wall-clock epoch seconds, because binding
expiry is persisted and must survive restarts) and returns responses and events. Bindings live
behind `BindingStore`; the in-memory one is the default and the store persists them through
`RegistrationChanged` events.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Protocol

from softswitch.events import Event, RegistrationChanged
from softswitch.sip.errors import SipParseError
from softswitch.sip.message import Request, Response, make_response, new_tag
from softswitch.sip.transaction import Addr
from softswitch.sip.uri import NameAddr, SipURI, parse_name_addr, parse_uri


@dataclass(slots=True)
class Binding:
    """One contact bound to an address of record."""

    aor: str
    contact: str  # the Contact URI as the phone sent it
    expires_at: float
    call_id: str
    cseq: int
    source: Addr  # where the REGISTER came from (NAT: requests go here)
    q: float = 1.0
    user_agent: str = ""
    instance: str = ""  # +sip.instance (RFC 5626)
    behind_nat: bool = False
    key: str = field(default="")

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))

    def target(self) -> Addr:
        """Where requests for this contact are sent: the NAT-rewritten source when needed.

        Stream transports always reuse the connection the phone registered on (RFC 5626 spirit).
        """
        if self.behind_nat or self.source.transport != "udp":
            return self.source
        uri = parse_uri(self.contact)
        if isinstance(uri, SipURI):
            transport = (uri.params.get("transport") or "udp").lower()
            default_port = 5061 if uri.scheme == "sips" or transport == "tls" else 5060
            return Addr(transport, uri.host.strip("[]"), uri.port or default_port)
        return self.source


class BindingStore(Protocol):
    """Where bindings are kept. The store issue persists them; memory is the default."""

    def get(self, aor: str) -> list[Binding]: ...
    def put(self, binding: Binding) -> None: ...
    def remove(self, aor: str, key: str) -> None: ...
    def all(self) -> Iterable[Binding]: ...


class MemoryBindings:
    """Bindings in a dict of dicts: aor -> contact key -> binding."""

    def __init__(self) -> None:
        self._by_aor: dict[str, dict[str, Binding]] = {}

    def get(self, aor: str) -> list[Binding]:
        return list(self._by_aor.get(aor, {}).values())

    def put(self, binding: Binding) -> None:
        self._by_aor.setdefault(binding.aor, {})[binding.key] = binding

    def remove(self, aor: str, key: str) -> None:
        contacts = self._by_aor.get(aor)
        if contacts is not None:
            contacts.pop(key, None)
            if not contacts:
                del self._by_aor[aor]

    def all(self) -> Iterable[Binding]:
        for contacts in self._by_aor.values():
            yield from contacts.values()

    def __len__(self) -> int:
        return sum(len(c) for c in self._by_aor.values())


def contact_key(contact: NameAddr) -> str:
    """A comparison key for Contact URIs (RFC 3261 19.1.4, simplified to what phones vary)."""
    instance = contact.params.get("+sip.instance")
    if instance:
        return "instance:" + instance.strip('"<>').lower()
    uri = contact.uri
    if isinstance(uri, SipURI):
        transport = (uri.params.get("transport") or "udp").lower()
        return f"{uri.scheme}:{uri.user or ''}@{uri.host.lower()}:{uri.port or ''};{transport}"
    return str(uri).lower()


class Registrar:
    """Processes REGISTER requests that have already been authenticated."""

    def __init__(
        self,
        domain: str,
        *,
        bindings: BindingStore | None = None,
        min_expires: int = 60,
        max_expires: int = 7200,
        default_expires: int = 3600,
        max_contacts: int = 10,
        publish: Callable[[Event], None] = lambda e: None,
    ) -> None:
        self.domain = domain
        self.bindings: BindingStore = bindings if bindings is not None else MemoryBindings()
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_contacts = max_contacts
        self.publish = publish
        self._expiry: list[tuple[float, str, str]] = []
        for b in self.bindings.all():
            heapq.heappush(self._expiry, (b.expires_at, b.aor, b.key))

    def aor_for(self, user: str) -> str:
        return f"sip:{user}@{self.domain}"

    def lookup(self, user: str, now: float) -> list[Binding]:
        """Live contacts of a user, best q first, most recent registration first among equals."""
        live = [b for b in self.bindings.get(self.aor_for(user)) if b.expires_at > now]
        live.sort(key=lambda b: (-b.q, -b.expires_at))
        return live

    def is_registered(self, user: str, now: float) -> bool:
        return any(b.expires_at > now for b in self.bindings.get(self.aor_for(user)))

    def handle_register(self, req: Request, source: Addr, user: str, now: float) -> Response:
        """Apply a REGISTER for `user` (the authenticated identity) and build the response."""
        to = req.to
        to_uri = to.uri if to is not None else None
        if not isinstance(to_uri, SipURI) or to_uri.user is None:
            return make_response(req, 400, "To must be a sip URI with a user part", to_tag=new_tag())
        if to_uri.user != user:
            # Someone's credentials used to register someone else's address.
            return make_response(req, 403, "Forbidden", to_tag=new_tag())
        aor = self.aor_for(user)
        call_id = req.call_id or ""
        cseq = req.cseq[0]
        header_expires = _int_or_none(req.headers.get("Expires"))

        if req.contact_star:
            if header_expires != 0 or len(req.contacts) > 0:
                return make_response(req, 400, "Wildcard Contact needs Expires: 0 alone", to_tag=new_tag())
            for b in self.bindings.get(aor):
                if b.call_id == call_id and cseq <= b.cseq:
                    return make_response(req, 400, "CSeq out of order", to_tag=new_tag())
            for b in self.bindings.get(aor):
                self._remove(b, now, "removed")
            return self._ok(req, aor, now)

        changes: list[tuple[NameAddr, str, int]] = []
        for contact in req.contacts:
            raw = contact.params.get("expires")
            expires = _int_or_none(raw) if raw is not None else header_expires
            if expires is None:
                expires = self.default_expires
            if expires < 0:
                return make_response(req, 400, "Bad expires value", to_tag=new_tag())
            if 0 < expires < self.min_expires:
                resp = make_response(req, 423, "Interval Too Brief", to_tag=new_tag())
                resp.headers.add("Min-Expires", str(self.min_expires))
                return resp
            changes.append((contact, contact_key(contact), min(expires, self.max_expires)))

        existing = {b.key: b for b in self.bindings.get(aor)}
        for _, key, _ in changes:
            old = existing.get(key)
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                return make_response(req, 400, "CSeq out of order", to_tag=new_tag())
        adding = {key for _, key, exp in changes if exp > 0 and key not in existing}
        if len(existing) + len(adding) > self.max_contacts:
            return make_response(req, 403, "Too many contacts", to_tag=new_tag())

        user_agent = req.headers.get("User-Agent") or ""
        for contact, key, expires in changes:
            old = existing.get(key)
            if expires == 0:
                if old is not None:
                    self._remove(old, now, "removed")
                continue
            uri = contact.uri
            nat = isinstance(uri, SipURI) and (
                uri.host.strip("[]").lower() != source.host.lower()
                or (uri.port or 5060) != source.port
            )
            q = _float_or(contact.params.get("q"), 1.0)
            binding = Binding(
                aor=aor,
                contact=str(uri),
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                source=source,
                q=q,
                user_agent=user_agent,
                instance=(contact.params.get("+sip.instance") or "").strip('"'),
                behind_nat=nat,
                key=key,
            )
            self.bindings.put(binding)
            heapq.heappush(self._expiry, (binding.expires_at, aor, key))
            self.publish(
                RegistrationChanged(
                    ts=now,
                    aor=aor,
                    contact=binding.contact,
                    expires=expires,
                    source=f"{source.transport}:{source.host}:{source.port}",
                    user_agent=user_agent,
                    action="refreshed" if old is not None else "bound",
                )
            )
        return self._ok(req, aor, now)

    def _ok(self, req: Request, aor: str, now: float) -> Response:
        resp = make_response(req, 200, "OK", to_tag=new_tag())
        for b in self.bindings.get(aor):
            if b.expires_at > now:
                resp.headers.add("Contact", f"<{b.contact}>;expires={b.remaining(now)}")
        resp.headers.add("Date", formatdate(now, usegmt=True))
        return resp

    def _remove(self, b: Binding, now: float, action: str) -> None:
        self.bindings.remove(b.aor, b.key)
        self.publish(
            RegistrationChanged(
                ts=now,
                aor=b.aor,
                contact=b.contact,
                expires=0,
                source=f"{b.source.transport}:{b.source.host}:{b.source.port}",
                user_agent=b.user_agent,
                action=action,
            )
        )

    def restore(self, aor: str, contact: str, expires_at: float, source: str, user_agent: str = "") -> None:
        """Re-create a binding persisted before a restart (`source` as 'udp:host:port')."""
        transport, _, rest = source.partition(":")
        host, _, port = rest.rpartition(":")
        try:
            addr = Addr(transport or "udp", host.strip("[]"), int(port))
            na = parse_name_addr(f"<{contact}>")
        except (ValueError, SipParseError):
            return
        uri = na.uri
        nat = isinstance(uri, SipURI) and (uri.host.strip("[]").lower() != addr.host.lower()
                                           or (uri.port or 5060) != addr.port)
        binding = Binding(aor=aor, contact=contact, expires_at=expires_at, call_id="", cseq=0, source=addr,
                          user_agent=user_agent, behind_nat=nat, key=contact_key(na))
        self.bindings.put(binding)
        heapq.heappush(self._expiry, (expires_at, aor, binding.key))

    def next_deadline(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None

    def expire(self, now: float) -> int:
        """Drop bindings whose time has come; returns how many were removed."""
        removed = 0
        while self._expiry and self._expiry[0][0] <= now:
            _, aor, key = heapq.heappop(self._expiry)
            for b in self.bindings.get(aor):
                # A refreshed binding has a later expiry; only its own heap entry removes it.
                if b.key == key and b.expires_at <= now:
                    self._remove(b, now, "expired")
                    removed += 1
        return removed

    def count(self, now: float) -> int:
        return sum(1 for b in self.bindings.all() if b.expires_at > now)


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return -1  # unparseable: treated as a bad expires value


def _float_or(value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        return default
