"""Carrier trunks: inbound recognition and DID routing, outbound routing with caller-ID presentation
and digest auth, and registration to the carrier.

Three sans-IO pieces and one thin shell:

- `TrunkRouter` (pure): which trunk a source address belongs to, which user a DID reaches, which
  trunk an external number goes out through and in which form.
- `shape_outbound` / `OutboundAuth` (pure): the INVITE the carrier sees (Request-URI, From, To,
  P-Asserted-Identity, Privacy) and its resend with credentials after a 401/407.
- `TrunkRegistration` (sans-IO, takes `now`): REGISTER to the carrier, answering its challenge,
  refreshing before expiry and backing off exponentially on failure.
- `Trunks` (asyncio shell): wires them into a node (`inbound`, `outbound`, `start`, `stop`).

Inbound recognition: an INVITE whose source address is inside a trunk's `addresses` is that
trunk's, without digest. An INVITE from any other address is challenged like a phone's (401); a
carrier that answers with a trunk's `username`/`password` is then that trunk's (user ids win over
trunk usernames). The node's dialplan gets the call first (context by trunk); `Trunks.inbound` is
the default route.

DID routing rule, until the dialplan takes over: the DID is the Request-URI user (or the To user
when the Request-URI carries the trunk's registration user), normalised to national form. A `dids`
entry is either a number the trunk owns ('0312345678') or a number mapped to a user
('0312345678=1001'). When `dids` is not empty, only listed numbers are accepted (404 otherwise).
A mapped number reaches its user; any other DID reaches the user whose id its last digits spell
(DID 0312341001 reaches extension 1001; the longest such id wins).

Outbound rule: a number the caller dials that is not a user is parsed as a Japanese number
(184/186 and separators allowed); the trunk with the longest matching prefix carries it. A prefix
written with '+' ('+81') matches the E.164 form and sends E.164 to the carrier; any other prefix
('0', '03') matches the national form and sends the national form. The presented caller ID is the
trunk's `caller_id` (else its `username`, else the caller's id), in the same form as the number.
`Trunks.target_for` builds that outbound target for anyone who dials out (dialplan, overflow).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import socket
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

from softswitch.calls.b2bua import Target
from softswitch.calls.numbers import JapaneseNumber, NumberError, Presentation, parse
from softswitch.config import NodeConfig, Trunk
from softswitch.events import Event, register_event
from softswitch.sip.auth import AuthError, DigestClient, credentials_subject, ha1, parse_auth_header
from softswitch.sip.message import Request, Response, make_response, new_call_id, new_tag
from softswitch.sip.transaction import Addr
from softswitch.sip.uri import SipURI, parse_name_addr
from softswitch.yamlconf import ConfigError

if TYPE_CHECKING:
    from softswitch.calls.b2bua import B2BUA
    from softswitch.registrar import Registrar
    from softswitch.security import Authenticator

log = logging.getLogger(__name__)

__all__ = [
    "InboundDecision", "OutboundAuth", "OutboundRoute", "TrunkRegistration", "TrunkRegistrationChanged",
    "TrunkRouter", "TrunkUnavailable", "Trunks", "shape_outbound",
]

ANONYMOUS_FROM = '"Anonymous" <sip:anonymous@anonymous.invalid>'


@register_event
@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkRegistrationChanged(Event):
    """A trunk's registration to its carrier changed state (registered, retrying, ...)."""

    kind: ClassVar[str] = "trunk_registration"
    trunk: str
    state: str  # registering | registered | retrying | stopped
    status: int = 0  # the carrier's last final status (408 for a timeout)
    expires: int = 0  # seconds granted when registered
    retry_in: float = 0.0  # seconds until the next attempt when retrying


class TrunkUnavailable(Exception):
    """The trunk that carries a number cannot take a call now (channels full, host unresolved)."""


# -- routing (pure) -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboundRoute:
    """An external number and the trunk that carries it."""

    trunk: Trunk
    number: JapaneseNumber
    e164: bool  # send the E.164 form ('+81...') rather than the national form
    caller_id: str = ""  # presented instead of the trunk's (an outbound campaign's own number)

    @property
    def dialled(self) -> str:
        """The number as the carrier sees it in the Request-URI and To."""
        return (self.number.e164 or self.number.national) if self.e164 else self.number.national

    def presented(self, caller: str) -> str:
        """The caller ID presented to the carrier (the route's, else the trunk's caller_id, else its
        username, else the caller)."""
        cid = self.caller_id or self.trunk.caller_id or self.trunk.username or caller
        try:
            number = parse(cid)
        except NumberError:
            return cid
        return (number.e164 or number.national) if self.e164 else number.national


@dataclass(frozen=True, slots=True)
class InboundDecision:
    """What to do with an INVITE from a trunk: ring `user`, or refuse with `status`."""

    trunk: Trunk
    did: str
    caller: str
    user: str | None = None
    status: int = 0
    reason: str = ""


class TrunkRouter:
    """Trunk selection for both directions; pure and cheap, rebuilt when the config changes."""

    def __init__(self, trunks: Sequence[Trunk], users: Collection[str]) -> None:
        self.trunks = list(trunks)
        self.users = set(users)
        # Longest user ids first, so DID 0312341001 picks 1001 over 01 when both exist.
        self._by_length = sorted(self.users, key=len, reverse=True)
        self._dids: dict[str, tuple[frozenset[str], dict[str, str]]] = {}
        errors: list[str] = []
        for trunk in self.trunks:
            owned: set[str] = set()
            mapped: dict[str, str] = {}
            for entry in trunk.dids:
                number, _, user = entry.partition("=")
                try:
                    national = parse(number).national
                except NumberError as exc:
                    errors.append(f"trunks: {trunk.name}: dids: {entry!r}: {exc}")
                    continue
                owned.add(national)
                if user:
                    if user.strip() not in self.users:
                        errors.append(f"trunks: {trunk.name}: dids: {entry!r}: unknown user {user.strip()!r}")
                    mapped[national] = user.strip()
            self._dids[trunk.name] = (frozenset(owned), mapped)
        if errors:
            raise ConfigError(errors)

    def trunk_for_source(self, host: str) -> Trunk | None:
        """The first trunk whose `addresses` contain `host`, or None."""
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return None
        for trunk in self.trunks:
            for net in trunk.addresses:
                if ip.version == net.version and ip in net:
                    return trunk
        return None

    @staticmethod
    def _user_part(uri: object) -> str | None:
        if isinstance(uri, SipURI) and uri.user:
            return uri.user
        number = getattr(uri, "number", None)  # tel: URI
        return str(number) if number else None

    def did_of(self, trunk: Trunk, req: Request) -> str:
        """The dialled number of an inbound INVITE in national form (raw text if not a number)."""
        candidates = []
        ruri_user = self._user_part(req.ruri)
        if ruri_user and ruri_user != trunk.username:
            candidates.append(ruri_user)
        to_user = self._user_part(req.to.uri)
        if to_user:
            candidates.append(to_user)
        for text in candidates:
            try:
                return parse(text).national
            except NumberError:
                continue
        return candidates[0] if candidates else ""

    def user_for_did(self, trunk: Trunk, did: str) -> str | None:
        """The user a DID reaches on this trunk, or None (see the module docstring for the rule)."""
        owned, mapped = self._dids.get(trunk.name, (frozenset(), {}))
        if owned and did not in owned:
            return None
        if did in mapped:
            return mapped[did]
        if did in self.users:
            return did
        for user in self._by_length:
            if did.endswith(user):
                return user
        return None

    def inbound(self, trunk: Trunk, req: Request) -> InboundDecision:
        """Decide where an INVITE from `trunk` goes (no registrar check: that is the caller's)."""
        did = self.did_of(trunk, req)
        caller = calling_number(req)
        owned, _ = self._dids.get(trunk.name, (frozenset(), {}))
        if owned and did not in owned:
            return InboundDecision(trunk, did, caller, status=404, reason="Not Found")
        user = self.user_for_did(trunk, did)
        if user is None:
            return InboundDecision(trunk, did, caller, status=404, reason="Not Found")
        return InboundDecision(trunk, did, caller, user=user)

    def route_number(self, dialled: str, *, via: str | None = None) -> OutboundRoute | None:
        """The trunk for an external number (longest prefix, first trunk on ties), or None.

        `via` names the trunk to use (a dialplan or an overflow target chose it): its prefixes
        then only pick the number's form, E.164 when all of them are written with '+'.
        """
        try:
            number = parse(dialled)
        except NumberError:
            return None
        if via is not None:
            chosen = next((t for t in self.trunks if t.name == via), None)
            if chosen is None:
                return None
            route = self._best(number, [chosen])
            e164 = bool(chosen.prefixes) and all(p.strip().startswith("+") for p in chosen.prefixes)
            return route or OutboundRoute(chosen, number, e164 and number.e164 is not None)
        return self._best(number, self.trunks)

    @staticmethod
    def _best(number: JapaneseNumber, trunks: Sequence[Trunk]) -> OutboundRoute | None:
        best: tuple[int, Trunk, bool] | None = None
        for trunk in trunks:
            for prefix in trunk.prefixes:
                e164 = prefix.startswith("+")
                form = number.e164 if e164 else number.national
                if form is None:
                    continue
                try:
                    wanted = _clean_prefix(prefix)
                except NumberError:
                    continue
                if form.startswith(wanted) and (best is None or len(wanted) > best[0]):
                    best = (len(wanted), trunk, e164)
        if best is None:
            return None
        return OutboundRoute(best[1], number, best[2])


def _clean_prefix(prefix: str) -> str:
    text = prefix.replace("-", "").replace(" ", "")
    body = text[1:] if text.startswith("+") else text
    if not body.isdigit() and body != "":
        raise NumberError(f"prefix {prefix!r} is not digits")
    return text


def calling_number(req: Request) -> str:
    """The caller's number from an inbound INVITE, national form if it parses; 'anonymous' when
    the carrier withholds it (Privacy: id, or an anonymous From: 非通知 is never shown).

    When From holds no number (some gateways put a trunk name there), the carrier's
    P-Asserted-Identity gives it: the carrier is trusted, and that is where it asserts the caller.
    """
    privacy = {p.strip().lower() for p in (req.headers.get("Privacy") or "").split(";")}
    user = _uri_user(req.from_.uri)
    if "id" in privacy or user.lower() in ("anonymous", ""):
        return "anonymous"
    candidates = [user]
    pai = req.headers.get("P-Asserted-Identity")
    if pai:
        try:
            candidates.append(_uri_user(parse_name_addr(pai.split(",")[0].strip()).uri))
        except ValueError:
            pass
    for text in candidates:
        try:
            return parse(text).national
        except NumberError:
            continue
    return user


def _uri_user(uri: object) -> str:
    if isinstance(uri, SipURI):
        return uri.user or ""
    return str(getattr(uri, "number", "") or "")


# -- outbound INVITE shaping and authentication (pure) ----------------------------------------


def shape_outbound(req: Request, route: OutboundRoute, caller: str, contact: str) -> None:
    """Rewrite the B2BUA's outbound INVITE into what the carrier sees.

    Request-URI and To carry the number in the trunk's form; From presents the trunk's caller ID,
    or 'anonymous' with Privacy: id when the caller dialled 184. P-Asserted-Identity always tells
    the carrier who really calls (it needs it for emergency call-back and tracing). The phone's own
    P-Asserted-Identity and Privacy are dropped: a phone does not assert identities to a carrier.
    """
    trunk = route.trunk
    host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
    port = "" if trunk.port == (5061 if trunk.transport == "tls" else 5060) else f":{trunk.port}"
    transport = "" if trunk.transport == "udp" else f";transport={trunk.transport}"
    req.uri = f"sip:{route.dialled}@{host}{port}{transport}"
    h = req.headers
    tag = req.from_.tag or new_tag()
    h.set("To", f"<sip:{route.dialled}@{host}>")
    cid = route.presented(caller)
    h.remove("P-Asserted-Identity")
    h.remove("Privacy")
    h.remove("P-Preferred-Identity")
    if route.number.presentation is Presentation.WITHHOLD:
        h.set("From", f"{ANONYMOUS_FROM};tag={tag}")
        h.add("P-Asserted-Identity", f"<sip:{cid}@{host}>")
        h.add("Privacy", "id")
    else:
        h.set("From", f"<sip:{cid}@{host}>;tag={tag}")
        h.add("P-Asserted-Identity", f"<sip:{cid}@{host}>")
    h.set("Contact", contact)


@dataclass(slots=True)
class OutboundAuth:
    """Answers a carrier's 401/407 on one outbound leg: the same INVITE with credentials, the next
    CSeq, a new branch, the same Call-ID and From tag. One answer per challenge; a second plain
    challenge means the credentials are wrong, so the leg fails. A stale nonce is answered again."""

    username: str
    password: str
    digest: DigestClient = field(default_factory=DigestClient)
    attempts: int = 0
    max_attempts: int = 2

    def __call__(self, invite: Request, resp: Response) -> Request | None:
        if resp.status not in (401, 407):
            return None
        header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        challenges = resp.headers.values(header)  # one challenge per line: their commas are not lists
        if not challenges:
            return None
        stale = any(_is_stale(c) for c in challenges)
        if self.attempts >= self.max_attempts or (self.attempts >= 1 and not stale):
            return None
        try:
            value = self.digest.authorization(challenges, invite.method, invite.uri, self.username,
                                              self.password, invite.body)
        except AuthError as exc:
            log.warning("cannot answer the carrier's challenge: %s", exc)
            return None
        self.attempts += 1
        return resend_with(invite, "Authorization" if resp.status == 401 else "Proxy-Authorization", value)


def _is_stale(challenge: str) -> bool:
    try:
        _, params = parse_auth_header(challenge)
    except AuthError:
        return False
    return params.get("stale", "").lower() == "true"


def resend_with(req: Request, header: str, value: str) -> Request:
    """A copy of `req` for a new transaction: fresh branch, next CSeq, `header` set to `value`."""
    out = req.copy()
    h = out.headers
    # The B2BUA's leg has exactly one Via (ours); a new transaction needs a new branch.
    sent_by = (h.get("Via") or "").split(";", 1)[0]
    h.set("Via", f"{sent_by};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport")
    number, method = req.cseq
    h.set("CSeq", f"{number + 1} {method}")
    h.set(header, value)
    return out


# -- registration to the carrier (sans-IO) ------------------------------------------------------


class TrunkRegistration:
    """Keeps one registration at a carrier alive: REGISTER, answer the challenge, refresh before
    expiry, back off exponentially (`retry_base` doubling up to `retry_max`) after a failure.

    Inputs are `start`, `on_response` and `on_timer` with the current time; each returns the
    REGISTER to send now, if any. `deadline` is when `on_timer` wants to run next.
    """

    def __init__(
        self,
        *,
        trunk: str,
        registrar: str,
        aor: str,
        username: str,
        password: str,
        contact: str,
        via: str,
        expires: int,
        retry_base: float = 5.0,
        retry_max: float = 600.0,
    ) -> None:
        self.trunk = trunk
        self.registrar = registrar  # Request-URI: sip:host[:port]
        self.aor = aor  # sip:user@host
        self.username = username
        self.password = password
        self.contact = contact
        self.via = via  # "SIP/2.0/UDP host:port"
        self.requested = expires
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.call_id = new_call_id()
        self.tag = new_tag()
        self.cseq = 0
        self.state = "idle"  # idle | registering | registered | retrying | stopped
        self.status = 0
        self.expires = 0  # granted by the carrier
        self.failures = 0
        self.retry_in = 0.0
        self.deadline: float | None = None
        self._digest = DigestClient()
        self._auth_tries = 0
        self._expires_now = expires
        self._pending = False

    def start(self, now: float) -> Request:
        """The first REGISTER."""
        return self._register(now, self.requested)

    def stop(self, now: float) -> Request | None:
        """Stop refreshing; the un-REGISTER (Expires: 0) when currently registered."""
        was_registered = self.state == "registered"
        self.state = "stopped"
        self.deadline = None
        if was_registered:
            return self._build(0)
        return None

    def on_timer(self, now: float) -> Request | None:
        """The refresh or retry deadline passed: the next REGISTER."""
        if self.deadline is None or now < self.deadline or self.state == "stopped" or self._pending:
            return None
        return self._register(now, self.requested)

    def on_response(self, resp: Response, now: float) -> Request | None:
        """A response to our latest REGISTER; returns the REGISTER to send at once, if any."""
        if resp.status < 200 or self.state == "stopped":
            return None
        if resp.cseq[0] != self.cseq:
            return None  # an answer to an earlier REGISTER we already gave up on
        self._pending = False
        self.status = resp.status
        if 200 <= resp.status < 300:
            self._registered(resp, now)
            return None
        if resp.status in (401, 407):
            header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
            challenges = resp.headers.values(header)
            stale = any(_is_stale(c) for c in challenges)
            if challenges and (self._auth_tries == 0 or (stale and self._auth_tries < 2)):
                try:
                    value = self._digest.authorization(challenges, "REGISTER", self.registrar,
                                                       self.username, self.password)
                except AuthError as exc:
                    log.warning("trunk %s: cannot answer the registrar's challenge: %s", self.trunk, exc)
                else:
                    self._auth_tries += 1
                    req = self._build(self._expires_now)
                    req.headers.add("Authorization" if resp.status == 401 else "Proxy-Authorization", value)
                    self._pending = True
                    return req
        elif resp.status == 423:
            min_expires = _int(resp.headers.get("Min-Expires"))
            if min_expires is not None and min_expires > self._expires_now:
                self.requested = min_expires
                return self._register(now, min_expires)
        retry_after = _int(resp.headers.get("Retry-After"))
        self._failed(now, float(retry_after) if retry_after is not None else 0.0)
        return None

    # -- internals ---------------------------------------------------------------------------

    def _register(self, now: float, expires: int) -> Request:
        self._auth_tries = 0
        self._expires_now = expires
        if self.state != "registered":
            self.state = "registering"
        self._pending = True
        self.deadline = None
        return self._build(expires)

    def _build(self, expires: int) -> Request:
        self.cseq += 1
        req = Request("REGISTER", self.registrar)
        h = req.headers
        h.add("Via", f"{self.via};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport")
        h.add("Max-Forwards", "70")
        h.add("From", f"<{self.aor}>;tag={self.tag}")
        h.add("To", f"<{self.aor}>")
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self.cseq} REGISTER")
        h.add("Contact", self.contact)
        h.add("Expires", str(expires))
        h.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")
        return req

    def _registered(self, resp: Response, now: float) -> None:
        granted = self._granted(resp)
        self.state = "registered"
        self.expires = granted
        self.failures = 0
        self.retry_in = 0.0
        # Refresh well before expiry: halfway for short grants, 30 s early for long ones.
        self.deadline = now + max(granted / 2, granted - 30.0)

    def _granted(self, resp: Response) -> int:
        ours = parse_name_addr(self.contact).uri if self.contact else None
        for c in resp.contacts:
            if ours is not None and c.uri.equivalent(ours) and c.expires is not None:
                return max(1, c.expires)
        header = _int(resp.headers.get("Expires"))
        if header is not None:
            return max(1, header)
        return self._expires_now

    def _failed(self, now: float, at_least: float) -> None:
        self.failures += 1
        self.state = "retrying"
        backoff = min(self.retry_max, self.retry_base * (2 ** (self.failures - 1)))
        self.retry_in = max(backoff, at_least)
        self.deadline = now + self.retry_in

    def on_timeout(self, now: float) -> None:
        """The REGISTER got no answer at all (the transaction timed out)."""
        if self.state == "stopped":
            return
        self._pending = False
        self.status = 408
        self._failed(now, 0.0)


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


# -- the asyncio shell ---------------------------------------------------------------------------


class NodeServices(Protocol):
    """What `Trunks` needs from the node."""

    registrar: Registrar
    b2bua: B2BUA

    def send_request(self, req: Request, dest: Addr, on_response: Callable[[Response], None]) -> object: ...
    def respond(self, resp: Response) -> None: ...
    def via(self, dest: Addr) -> str: ...
    def contact(self, user: str, dest: Addr) -> str: ...


class Trunks:
    """The node's trunks: inbound recognition, outbound routing and carrier registrations."""

    def __init__(self, node: NodeServices, config: NodeConfig, *, publish: Callable[[Event], None]) -> None:
        self.node = node
        self.publish = publish
        self.router = TrunkRouter(config.trunks, [u.id for u in config.directory.users])
        self.registrations: dict[str, TrunkRegistration] = {}
        #: Back-off for failed registrations: first wait, and the cap it doubles up to.
        self.retry_base = 5.0
        self.retry_max = 600.0
        self._timers: dict[str, Callable[[], None]] = {}
        self._stopped = False
        # Trunk name -> IP address: hosts given by name are looked up (A/AAAA, no SRV) at start.
        self.resolved: dict[str, str] = {t.name: t.host for t in self.router.trunks if _is_ip(t.host)}
        self._lookups: set[asyncio.Task[None]] = set()
        self._by_username = {t.username: t for t in self.router.trunks if t.username and t.password is not None}

    # -- calls -------------------------------------------------------------------------------

    def channels_in_use(self, trunk: str) -> int:
        """Calls in progress through a trunk (both directions)."""
        return sum(1 for call in self.node.b2bua.calls.values() if call.trunk == trunk)

    def room(self, name: str) -> int | None:
        """Channels free on a trunk now; None when it has no limit (or no such trunk)."""
        trunk = next((t for t in self.router.trunks if t.name == name), None)
        if trunk is None or trunk.max_channels is None:
            return None
        return max(0, trunk.max_channels - self.channels_in_use(name))

    def _full(self, trunk: Trunk) -> bool:
        return trunk.max_channels is not None and self.channels_in_use(trunk.name) >= trunk.max_channels

    def recognise(self, source: Addr) -> Trunk | None:
        """The trunk whose `addresses` hold the request's source, or None (then it is a phone)."""
        return self.router.trunk_for_source(source.host)

    def by_digest(self, req: Request, auth: Authenticator, now: float) -> Trunk | None:
        """The trunk whose username and password the request's credentials prove, or None.

        For carriers that send calls from addresses not listed in `addresses`: they answer the
        node's ordinary challenge with the trunk's login. A user id always wins over a trunk
        username (phones are never taken for carriers)."""
        for value in req.headers.values("Authorization"):
            subject = credentials_subject(value)
            if subject is None:
                continue
            username, realm, _ = subject
            trunk = self._by_username.get(username)
            if trunk is None or trunk.password is None or username in self.router.users or realm != auth.realm:
                continue
            password = trunk.password.get_secret_value()

            def lookup(user: str, realm_: str, algorithm: str, password: str = password) -> str | None:
                return ha1(user, realm_, password, algorithm)

            result = auth.digest.verify(req.method, value, lookup, now, body=req.body)
            if result.ok:
                return trunk
        return None

    def identify(self, trunk: Trunk, req: Request) -> tuple[str, str]:
        """(DID, calling number) of an INVITE from `trunk`, both normalised."""
        return self.router.did_of(trunk, req), calling_number(req)

    def inbound(self, req: Request, source: Addr, trunk: Trunk, now: float) -> None:
        """The default route of an INVITE from a trunk: its DID's user, rung on every contact.

        404 when the DID reaches no user, 480 when the user is not registered, 503 when the
        trunk's `max_channels` are in use. `now` is wall-clock time (registrations use it).
        """
        decision = self.router.inbound(trunk, req)
        if decision.user is None:
            log.info("trunk %s: DID %s reaches no user", trunk.name, decision.did)
            self.node.respond(make_response(req, decision.status, decision.reason, to_tag=new_tag()))
            return
        if self._full(trunk):
            self._refuse_busy(req)
            return
        bindings = self.node.registrar.lookup(decision.user, now)
        if not bindings:
            self.node.respond(make_response(req, 480, "Temporarily Unavailable", to_tag=new_tag()))
            return
        targets = [Target(uri=b.contact, dest=b.target(), user=decision.user) for b in bindings]
        self.node.b2bua.start_call(req, source, decision.caller, decision.user, targets,
                                   trunk=trunk.name, did=decision.did)

    def outbound(self, req: Request, source: Addr, caller: str) -> bool:
        """Send a phone's call to an external number out through its trunk; False if no trunk
        carries the dialled number (the node then answers 404)."""
        dialled = TrunkRouter._user_part(req.ruri)
        if not dialled:
            return False
        try:
            found = self.target_for(dialled, caller)
        except TrunkUnavailable as exc:
            log.warning("%s", exc)
            self._refuse_busy(req)
            return True
        if found is None:
            return False
        target, route = found
        self.node.b2bua.start_call(req, source, caller, route.number.national, [target], trunk=route.trunk.name)
        return True

    def target_for(self, dialled: str, caller: str, *, via: str | None = None,
                   caller_id: str = "") -> tuple[Target, OutboundRoute] | None:
        """The B2BUA target that calls an external number through its trunk (or trunk `via`),
        with the route; None when no trunk carries it. Raises TrunkUnavailable when the trunk
        is at `max_channels` or its host is not resolved yet.

        The dialplan and ACD overflow use this to dial out; the call's `trunk` is route.trunk.name.
        """
        route = self.router.route_number(dialled, via=via)
        if route is None:
            return None
        if caller_id:
            route = dataclasses.replace(route, caller_id=caller_id)
        trunk = route.trunk
        if self._full(trunk):
            raise TrunkUnavailable(f"trunk {trunk.name}: all {trunk.max_channels} channels in use")
        dest = self.dest_of(trunk)
        if dest is None:
            raise TrunkUnavailable(f"trunk {trunk.name}: {trunk.host} is not resolved yet")
        withheld = route.number.presentation is Presentation.WITHHOLD
        contact = self.node.contact("anonymous" if withheld else route.presented(caller), dest)
        auth = None
        if trunk.username and trunk.password is not None:
            auth = OutboundAuth(trunk.username, trunk.password.get_secret_value())
        target = Target(
            uri=f"sip:{route.dialled}@{trunk.host}:{trunk.port}",
            dest=dest,
            prepare=lambda out: shape_outbound(out, route, caller, contact),
            authorize=auth,
        )
        return target, route

    def _refuse_busy(self, req: Request) -> None:
        resp = make_response(req, 503, "Service Unavailable", to_tag=new_tag())
        resp.headers.add("Retry-After", "5")
        self.node.respond(resp)

    # -- registrations -----------------------------------------------------------------------

    def dest_of(self, trunk: Trunk) -> Addr | None:
        """Where to send a trunk's requests; None while its host name is being looked up."""
        ip = self.resolved.get(trunk.name)
        return None if ip is None else Addr(trunk.transport, ip, trunk.port)

    def start(self) -> None:
        """Look up trunk host names, and register every trunk that has `register: true`."""
        for trunk in self.router.trunks:
            if trunk.name in self.resolved:
                self._register(trunk)
            else:
                task = asyncio.get_running_loop().create_task(self._lookup(trunk))
                self._lookups.add(task)
                task.add_done_callback(self._lookups.discard)

    async def _lookup(self, trunk: Trunk) -> None:
        """Resolve a trunk's host name (IPv4 first: the listeners usually are), retrying with the
        registration back-off while DNS fails."""
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopped:
            try:
                infos = await loop.getaddrinfo(trunk.host, trunk.port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                failures += 1
                delay = min(self.retry_max, self.retry_base * 2 ** (failures - 1))
                log.error("trunk %s: cannot resolve %s (%s), retrying in %.0f s", trunk.name, trunk.host, exc, delay)
                await asyncio.sleep(delay)
                continue
            infos.sort(key=lambda info: info[0] != socket.AF_INET)
            self.resolved[trunk.name] = str(infos[0][4][0])
            log.info("trunk %s: %s is %s", trunk.name, trunk.host, self.resolved[trunk.name])
            if not self._stopped:
                self._register(trunk)
            return

    def _register(self, trunk: Trunk) -> None:
        dest = self.dest_of(trunk)
        if dest is None or not trunk.register or not trunk.username or trunk.password is None:
            return
        host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
        port = "" if trunk.port == 5060 else f":{trunk.port}"
        reg = TrunkRegistration(
            trunk=trunk.name,
            registrar=f"sip:{host}{port}",
            aor=f"sip:{trunk.username}@{host}",
            username=trunk.username,
            password=trunk.password.get_secret_value(),
            contact=self.node.contact(trunk.username, dest),
            via=self.node.via(dest),
            expires=trunk.register_expires,
            retry_base=self.retry_base,
            retry_max=self.retry_max,
        )
        self.registrations[trunk.name] = reg
        self._send(reg, dest, reg.start(_now()))
        self._publish(reg)

    def stop(self) -> None:
        """Stop refreshing and un-REGISTER from carriers where registered."""
        self._stopped = True
        for cancel in self._timers.values():
            cancel()
        self._timers.clear()
        for task in self._lookups:
            task.cancel()
        for trunk in self.router.trunks:
            reg = self.registrations.get(trunk.name)
            if reg is None:
                continue
            req = reg.stop(_now())
            dest = self.dest_of(trunk)
            if req is not None and dest is not None:
                self.node.send_request(req, dest, lambda resp: None)
            self._publish(reg)

    def _send(self, reg: TrunkRegistration, dest: Addr, req: Request) -> None:
        self.node.send_request(req, dest, lambda resp: self._on_response(reg, dest, resp))
        self._arm(reg, dest)

    def _on_response(self, reg: TrunkRegistration, dest: Addr, resp: Response) -> None:
        if self._stopped or resp.status < 200:
            return
        now = _now()
        if resp.status in (408, 503) and _local(resp):
            # The node made this up: the transaction timed out or could not be sent.
            reg.on_timeout(now)
            self._publish(reg)
            self._arm(reg, dest)
            return
        req = reg.on_response(resp, now)
        if req is not None:
            # The answer to a challenge: the outcome comes with its response.
            self.node.send_request(req, dest, lambda r: self._on_response(reg, dest, r))
            return
        self._publish(reg)
        self._arm(reg, dest)

    def _arm(self, reg: TrunkRegistration, dest: Addr) -> None:
        cancel = self._timers.pop(reg.trunk, None)
        if cancel is not None:
            cancel()
        if reg.deadline is None or self._stopped:
            return
        delay = max(0.0, reg.deadline - _now())
        handle = asyncio.get_running_loop().call_later(delay, lambda: self._on_timer(reg, dest))
        self._timers[reg.trunk] = handle.cancel

    def _on_timer(self, reg: TrunkRegistration, dest: Addr) -> None:
        self._timers.pop(reg.trunk, None)
        if self._stopped:
            return
        req = reg.on_timer(_now())
        if req is not None:
            self._send(reg, dest, req)
        else:
            self._arm(reg, dest)

    def _publish(self, reg: TrunkRegistration) -> None:
        self.publish(TrunkRegistrationChanged(
            ts=_wall(), trunk=reg.trunk, state=reg.state, status=reg.status, expires=reg.expires,
            retry_in=reg.retry_in,
        ))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _local(resp: Response) -> bool:
    """A response the node made up for a timeout: it has no To tag from the carrier."""
    return not resp.to.tag


def _now() -> float:
    return asyncio.get_running_loop().time()


def _wall() -> float:
    return time.time()
