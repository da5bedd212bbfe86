"""Builds a node from a validated config and runs it: the asyncio shell around the sans-IO cores."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import logging
import os
import secrets
import signal
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import watchfiles

from media.local import LocalMediaBackend
from media.tts import TtsRenderer
from softswitch.api import ApiServer
from softswitch.api.acdview import day_start
from softswitch.api.nodecentre import NodeCentre
from softswitch.calls.b2bua import B2BUA, Target
from softswitch.calls.features import FeatureCall, match_feature
from softswitch.calls.forwarding import forward_after
from softswitch.calls.session import CallSession, DeferredObserver, SessionServices
from softswitch.calls.trunks import Trunks, TrunkUnavailable
from softswitch.campaigns import Campaigns
from softswitch.centre import ContactCentre
from softswitch.config import ConfigError, Forwarding, NodeConfig, demo_config, load_config
from softswitch.dialplan.holder import DialplanHolder, ReloadResult
from softswitch.dialplan.interpreter import Interpreter
from softswitch.events import CallEnded, EventBus, RegistrationChanged
from softswitch.logs import log_event, setup_logging
from softswitch.registrar import Registrar
from softswitch.security import Authenticator, Credentials
from softswitch.sip.message import (
    Request,
    Response,
    check_request_semantics,
    make_response,
    new_tag,
    unsupported_extensions,
)
from softswitch.sip.transaction import (
    AckReceived,
    Addr,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    TimerSettings,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailure,
)
from softswitch.sip.uri import SipURI, parse_uri
from softswitch.store import open_store
from softswitch.store.base import Store, StoreUnavailable
from softswitch.store.writer import StoreWriter
from softswitch.timers import DeadlineTimer
from softswitch.transport import Transports

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, REFER, NOTIFY, UPDATE, INFO"
#: How long SIGTERM waits for calls in progress before hanging them up.
SHUTDOWN_GRACE = 30.0
#: Option tags we implement, for Require (420) and Supported. Session timers are run by the switch on
#: calls it answers and passed end to end on relayed ones; an INVITE with Replaces (RFC 3891) takes
#: over a leg of a call through the switch; provisionals go reliably (RFC 3262) to callers that ask.
SUPPORTED: frozenset[str] = frozenset({"timer", "replaces", "100rel"})

RequestHandler = Callable[[Request, Addr], None]


class Node:
    """One softswitch node: transports, transactions, registrar, and the services around them."""

    def __init__(self, config: NodeConfig, *, bus: EventBus | None = None) -> None:
        self.config = config
        self.bus = bus or EventBus()
        sip = config.sip
        sec = config.security
        # The B2BUA sends its own 100 Trying at once, so the layer's automatic one is off.
        self.transactions = TransactionLayer(TimerSettings(t1=sip.t1, t2=sip.t2, t4=sip.t4, trying_delay=None))
        self.registrar = Registrar(
            sip.domain,
            min_expires=sip.min_expires,
            max_expires=sip.max_expires,
            default_expires=sip.default_expires,
            publish=self.bus.publish,
        )
        self.auth = Authenticator(
            sip.domain,
            _credentials(config),
            secret=secrets.token_bytes(32),
            nonce_ttl=sec.nonce_ttl,
            algorithms=tuple(sec.digest_algorithms),
            fail_limit=sec.auth_fail_limit,
            fail_window=sec.auth_fail_window,
            ban_seconds=sec.ban_seconds,
            rate=sec.rate_limit,
            burst=sec.rate_burst,
            publish=self.bus.publish,
        )
        self.transports = Transports(
            self._on_message,
            max_message_size=sip.max_message_size,
            idle_timeout=sip.tcp_idle_timeout,
            ssl_server=_server_ssl(config),
        )
        self.b2bua = B2BUA(self, publish=self.bus.publish, t1=sip.t1, t2=sip.t2,
                           session_expires=sip.session_expires)
        self.trunks = Trunks(self, config, publish=self.bus.publish)
        self.b2bua.lookup = self._forward_targets  # transfer targets: the same look-up
        media = config.media
        self.media = LocalMediaBackend(media.address, (media.rtp_ports.start, media.rtp_ports.end),
                                       bus=self.bus, recordings_dir=media.recordings_dir,
                                       inband_dtmf=media.inband_dtmf, rtp_timeout=media.rtp_timeout)
        self.tts = TtsRenderer(media.tts_cache_dir)
        self.dialplan = DialplanHolder.from_config(config)
        self.centre = ContactCentre(config, publish=self.bus.publish, lookup_user=self.targets_of,
                                    moh=hold_music)
        self.sessions = SessionServices(
            b2bua=self.b2bua, media=self.media, tts=self.tts, publish=self.bus.publish,
            lookup_user=self.targets_of, prompts_dir=media.prompts_dir,
            voicemail_dir=media.recordings_dir / "voicemail", centre=self.centre, media_address=media.address,
            lookup_external=self._external_target, hold_music=hold_music,
            forwarding=self._forwarding_of, forward_targets=self._forward_targets,
        )
        self.sessions.park_code = config.features.park
        self.centre.services = self.sessions
        self.campaigns = Campaigns(centre=self.centre, services=self.sessions, bus=self.bus,
                                   store=lambda: self.store, target_for=self._campaign_target,
                                   trunk_room=self.trunks.room)
        # The dialplan's book_callback step; its agent may come from a CRM that knows other agents.
        self.sessions.book_callback = functools.partial(self.campaigns.book_callback, any_agent=True)
        self.handlers: dict[str, RequestHandler] = {
            "REGISTER": self._on_register,
            "OPTIONS": self._on_options,
            "INVITE": self._on_invite,
        }
        self._users = {u.id for u in config.directory.users}
        self._client_callbacks: dict[object, Callable[[Response], None]] = {}
        self.dropped = 0
        self._timer = DeadlineTimer(self._on_timer, lambda: asyncio.get_running_loop().time())
        # Binding expiry is on wall time (it is persisted and outlives restarts).
        self._reg_timer = DeadlineTimer(self._on_registrar_timer, time.time)
        self._stopping = False
        self._stopped = False
        self.listening: list[tuple[str, str, int]] = []
        self._unsubscribe_log: Callable[[], None] | None = None
        self._unsubscribe_centre: Callable[[], None] = lambda: None
        self._watcher: asyncio.Task[None] | None = None
        self._watch_stop = asyncio.Event()
        self._watch_targets = {os.path.realpath(p) for p in self.dialplan.watch_paths()}
        self.store: Store | None = None
        self.api: ApiServer | None = None
        self._current: tuple[Request, ServerTransaction] | None = None
        self.writer: StoreWriter | None = None

    # -- life cycle ------------------------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        """The config file's folder: relative paths and the spool live there."""
        path = self.config.path
        return path.parent if path is not None else Path.cwd()

    async def start(self) -> None:
        self._unsubscribe_log = self.bus.subscribe(log_event)
        self._unsubscribe_centre = self.bus.subscribe(self.centre.on_event, RegistrationChanged)
        await self._open_store()
        for agent in self.centre.agents:  # registrations restored from the store count as live
            self.centre.refresh_agent(agent)
        await self.campaigns.start()
        for spec in self.config.sip.listen:
            host, port = await self.transports.listen(spec.transport, spec.host, spec.port)
            self.listening.append((spec.transport, host, port))
            log.info("listening on %s://%s:%d", spec.transport, host, port)
        self._reg_timer.arm(self.registrar.next_deadline())
        self.api = ApiServer(self, NodeCentre(self), self.config.api)
        await self.api.start()
        if self.dialplan.watch_paths():
            self._watcher = asyncio.get_running_loop().create_task(self._watch_dialplan())
        self.trunks.start()

    async def _open_store(self) -> None:
        """Open the store and restore registrations; a database that is down does not stop calls:
        events are spooled to disk and written (after migrating) when it returns."""
        spool = self.base_dir / "var" / "spool"
        self.store = await open_store(self.config.database, base_dir=self.base_dir, spool_dir=spool, require=False)
        try:
            for reg in await self.store.load_registrations(time.time()):
                self.registrar.restore(reg.aor, reg.contact, reg.expires_at, reg.source, reg.user_agent)
            # Who handled whom before a restart: returning callers still reach their agent.
            self.centre.engine.affinity.load(await self.store.load_affinity())
            await self._restore_today()
        except StoreUnavailable as exc:
            log.error("database unavailable (%s): registrations and affinity not restored; events spool to %s",
                      exc, spool)
        self.writer = StoreWriter(self.bus, self.store, spool)
        await self.writer.start()

    async def _restore_today(self) -> None:
        """Today's queue figures (offered, answered, abandoned, service level) from the store, so
        that a restart in the middle of the day does not reset the wallboard."""
        assert self.store is not None
        now = time.time()
        today = day_start(now)
        for q in self.config.queues:
            s = await self.store.queue_stats(q.name, today, now, sl_threshold=q.service_level_seconds)
            self.centre.engine.stats.restore(
                q.name, today, offered=s.offered, answered=s.answered, abandoned=s.abandoned,
                answered_in_sl=s.answered_within, wait_answered=(s.asa or 0.0) * s.answered)

    async def stop(self, grace: float = 0.0) -> None:
        """Refuse new calls, let calls in progress end (up to `grace` seconds), hang up the rest,
        flush the store and close the transports. Stopping twice does nothing more."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping = True
        self.campaigns.halt()
        self.trunks.stop()
        if len(self.b2bua) and grace > 0:
            idle = asyncio.Event()
            unsubscribe = self.bus.subscribe(lambda e: None if len(self.b2bua) else idle.set(), CallEnded)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(idle.wait(), grace)
            unsubscribe()
        for call_uuid in list(self.b2bua.calls):
            self.b2bua.hangup(call_uuid, "shutdown")
        if len(self.b2bua) or self.transactions.next_deadline() is not None:
            await asyncio.sleep(0.2)  # let the BYEs and final answers go out
        self._timer.cancel()
        self._reg_timer.cancel()
        self._watch_stop.set()
        if self._watcher is not None:
            self._watcher.cancel()
        for session in list(self.sessions.sessions.values()):
            if session.task is not None:
                session.task.cancel()
        if self.api is not None:
            await self.api.stop()
        await self.campaigns.stop()
        self.centre.close()
        self.sessions.close()
        await self.media.close()
        await self.transports.close()
        if self.writer is not None:
            await self.writer.stop()
        if self.store is not None:
            await self.store.close()
        if self._unsubscribe_log is not None:
            self._unsubscribe_log()
        self._unsubscribe_centre()
        log.info("node stopped")

    def address(self, transport: str = "udp") -> tuple[str, int]:
        """The bound address of the first listener of a transport."""
        for t, host, port in self.listening:
            if t == transport:
                return host, port
        raise LookupError(f"no {transport} listener")

    # -- dialplan hot reload ---------------------------------------------------------------

    def reload_dialplan(self, reason: str = "request") -> ReloadResult:
        """Load the dialplan file again; calls in progress keep the plan they started with, and a
        plan with errors is refused (logged with file:line) while the running one stays."""
        log.info("reloading the dialplan (%s)", reason)
        return self.dialplan.reload()

    async def _watch_dialplan(self) -> None:
        """Reload when the dialplan file changes (editors often replace it: watch its folder)."""
        targets = self._watch_targets
        folders = {t.rpartition(os.sep)[0] for t in targets}
        try:
            # watchfiles reports paths under the folders as given: real paths, so they compare.
            async for changes in watchfiles.awatch(*folders, stop_event=self._watch_stop, debounce=200,
                                                   step=50, recursive=False):
                if any(path in targets for _, path in changes):
                    self.reload_dialplan("file changed")
        except FileNotFoundError as exc:
            log.warning("cannot watch the dialplan for changes: %s", exc)

    # -- SIP plumbing ----------------------------------------------------------------------

    def _on_message(self, msg: Request | Response, source: Addr) -> None:
        wall = time.time()
        if isinstance(msg, Request):
            if not self.auth.admit(source.host, wall):
                self.dropped += 1
                return
            if msg.method != "ACK" and self.auth.banned(source.host, wall):
                self._send_stateless(make_response(msg, 403, "Forbidden", to_tag=new_tag()), source)
                return
        now = asyncio.get_running_loop().time()
        self._execute(self.transactions.receive(msg, source, now))

    def _execute(self, outputs: list) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self.transports.send(out.data, out.dest)
            elif isinstance(out, RequestReceived):
                # While the request is handled synchronously, answers to it go straight to its
                # transaction instead of being matched by Via again.
                self._current = (out.request, out.server_tx)
                try:
                    self._on_request(out.request, out.source)
                finally:
                    self._current = None
            elif isinstance(out, ResponseReceived):
                self._on_response(out.response, out.transaction)
            elif isinstance(out, TransactionTimeout):
                if out.timer != "C":
                    self._on_client_failure(out.transaction, 408, "Request Timeout")
            elif isinstance(out, TransportFailure):
                self._on_client_failure(out.transaction, 503, "Service Unavailable")
            elif isinstance(out, TransactionTerminated):
                self._client_callbacks.pop(out.transaction, None)
            elif isinstance(out, AckReceived):
                self.b2bua.on_ack(out.request)
            elif isinstance(out, CancelReceived):
                invite = out.invite_server_tx.request
                if invite is not None:
                    self.b2bua.on_cancel(invite, out.invite_server_tx.to_tag)
        self._reschedule()

    def _on_request(self, req: Request, source: Addr) -> None:
        problem = check_request_semantics(req, supported=SUPPORTED)
        if problem is not None:
            status, reason = problem
            resp = make_response(req, status, reason, to_tag=new_tag())
            if status == 420:
                resp.headers.add("Unsupported", ", ".join(unsupported_extensions(req, SUPPORTED)))
            elif status == 415:
                resp.headers.add("Accept", "application/sdp")
            self.respond(resp)
            return
        if req.method != "ACK" and req.to.tag:
            if not self.b2bua.on_in_dialog(req):
                self.respond(make_response(req, 481, "Call/Transaction Does Not Exist"))
            return
        handler = self.handlers.get(req.method)
        if handler is not None:
            handler(req, source)
            return
        if req.method == "ACK":
            return
        if req.method in ("BYE", "CANCEL", "UPDATE", "PRACK", "INFO", "REFER", "NOTIFY"):
            self.respond(make_response(req, 481, "Call/Transaction Does Not Exist", to_tag=new_tag()))
        else:
            resp = make_response(req, 405, "Method Not Allowed", to_tag=new_tag())
            resp.headers.add("Allow", ALLOW)
            self.respond(resp)

    def respond(self, resp: Response) -> None:
        """Send a response through its server transaction."""
        now = asyncio.get_running_loop().time()
        tx = None
        current = self._current
        if current is not None:
            req, server_tx = current
            if resp.headers.get("CSeq") == req.headers.get("CSeq") and resp.call_id == req.call_id:
                tx = server_tx
        self._execute(self.transactions.send_response(resp, now, tx=tx))

    def _send_stateless(self, resp: Response, dest: Addr) -> None:
        self.transports.send(resp.serialize(), dest)

    def _reschedule(self) -> None:
        self._timer.arm(self.transactions.next_deadline())

    def _on_timer(self) -> None:
        now = asyncio.get_running_loop().time()
        self._execute(self.transactions.tick(now))

    def _on_registrar_timer(self) -> None:
        self.registrar.expire(time.time())
        self._reg_timer.arm(self.registrar.next_deadline())

    # -- services the call layer uses (B2BUA's SipService) -----------------------------------

    def send_request(self, req: Request, dest: Addr, on_response: Callable[[Response], None]) -> object:
        """Send a request in a new client transaction; `on_response` gets every response."""
        now = asyncio.get_running_loop().time()
        tx, outputs = self.transactions.send_request(req, dest, now)
        self._client_callbacks[tx] = on_response
        self._execute(outputs)
        return tx

    def cancel(self, tx: object) -> None:
        now = asyncio.get_running_loop().time()
        self._execute(self.transactions.cancel(tx, now))

    def send_ack(self, req: Request, dest: Addr) -> None:
        """ACK for a 2xx: no transaction (RFC 3261 17.1.1.3), straight to the transport."""
        self._execute(self.transactions.send_stateless(req, dest))

    def via(self, dest: Addr) -> str:
        host, port = self._local_for(dest.transport)
        host = f"[{host}]" if ":" in host else host
        return f"SIP/2.0/{dest.transport.upper()} {host}:{port}"

    def contact(self, user: str, dest: Addr) -> str:
        host, port = self._local_for(dest.transport)
        host = f"[{host}]" if ":" in host else host
        suffix = "" if dest.transport == "udp" else f";transport={dest.transport}"
        return f"<sip:{user}@{host}:{port}{suffix}>"

    def call_later(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        handle = asyncio.get_running_loop().call_later(delay, fn)
        return handle.cancel

    def resolve(self, uri: str, transport_hint: str = "udp") -> Addr:
        parsed = parse_uri(uri)
        if not isinstance(parsed, SipURI):
            raise ValueError(f"cannot route to {uri}")
        transport = (parsed.params.get("transport") or transport_hint).lower()
        default = 5061 if transport == "tls" or parsed.scheme == "sips" else 5060
        return Addr(transport, parsed.host.strip("[]"), parsed.port or default)

    def _local_for(self, transport: str) -> tuple[str, int]:
        for t, host, port in self.listening:
            if t == transport:
                return host, port
        return self.listening[0][1], self.listening[0][2]

    def _on_response(self, resp: Response, tx: object) -> None:
        callback = self._client_callbacks.get(tx)
        if callback is not None:
            if resp.status >= 200:
                self._client_callbacks.pop(tx, None)
            callback(resp)

    def _on_client_failure(self, tx: object, status: int, reason: str) -> None:
        """A client transaction timed out or could not be sent: the TU sees a local final response."""
        callback = self._client_callbacks.pop(tx, None)
        request = getattr(tx, "request", None)
        if callback is not None and isinstance(request, Request):
            callback(make_response(request, status, reason))

    # -- applications ----------------------------------------------------------------------

    def _on_invite(self, req: Request, source: Addr) -> None:
        """A new call from a phone: authenticate, find the callee's contacts, ring them all."""
        if self._stopping:
            resp = make_response(req, 503, "Service Unavailable", to_tag=new_tag())
            resp.headers.add("Retry-After", "30")
            self.respond(resp)
            return
        if self._looped(req):
            self.respond(make_response(req, 482, "Loop Detected", to_tag=new_tag()))
            return
        wall = time.time()
        trunk = self.trunks.recognise(source) or self.trunks.by_digest(req, self.auth, wall)
        if trunk is not None:
            # A carrier (by its address, or by the trunk's login in answer to our challenge): by DID.
            did, calling = self.trunks.identify(trunk, req)
            if not self._run_dialplan(req, source, calling, did, trunk=trunk.name, did=did):
                self.trunks.inbound(req, source, trunk, wall)
            return
        who = self.auth.authenticate(req, source.host, wall)
        if isinstance(who, Response):
            self.respond(who)
            return
        if req.headers.get("Replaces") is not None:
            self.b2bua.on_replaces(req, source, who)  # joins a call in progress (attended transfer, pickup)
            return
        ruri = req.ruri
        callee = ruri.user if isinstance(ruri, SipURI) else None
        feature = match_feature(self.config.features, callee) if callee else None
        if feature is not None:
            call = self.b2bua.accept(req, source, who, callee or "", DeferredObserver(lambda: fc))
            fc = FeatureCall(self.sessions, call, self.centre, *feature)
            fc.start()
            return
        if callee is not None and self._run_dialplan(req, source, who, callee, user=who):
            return
        if callee is None or callee not in self._users:
            if not self.trunks.outbound(req, source, who):
                self.respond(make_response(req, 404, "Not Found", to_tag=new_tag()))
            return
        self._call_user(req, source, who, callee)

    def _looped(self, req: Request) -> bool:
        """A new INVITE that already passed through this node (RFC 3261 16.3 item 4): one of its
        Vias below the top names one of our listeners, e.g. a trunk or forward pointing back here."""
        ours = {(host, port) for _, host, port in self.listening}
        return any((v.host.strip("[]"), v.port or 5060) in ours for v in req.vias[1:])

    def _call_user(self, req: Request, source: Addr, caller: str, callee: str) -> None:
        """Ring a user's phones, with their forwarding (always, busy, no answer) applied."""
        fwd = self._forwarding_of(callee)
        targets = self.targets_of(callee)
        if fwd is not None and fwd.always:
            targets = self._forward_targets(fwd.always, caller)
            fwd = None
        on_fail = None
        if fwd is not None and (fwd.busy or fwd.no_answer):
            no_answer = fwd.no_answer

            def on_fail(status: int) -> list[Target]:
                number = forward_after(fwd, status)
                return self._forward_targets(number, caller) if number else []

            if not targets and no_answer:  # no phone registered counts as not answering
                targets = self._forward_targets(no_answer, caller)
                on_fail = None
        if not targets:
            self.respond(make_response(req, 480, "Temporarily Unavailable", to_tag=new_tag()))
            return
        self.b2bua.start_call(req, source, caller, callee, targets, forward=on_fail,
                              no_answer_after=fwd.no_answer_after if fwd is not None and fwd.no_answer else None)

    def _forwarding_of(self, user: str) -> Forwarding | None:
        """A user's forwarding rules (None: not forwarded, or not a user of this node)."""
        found = self.config.users_by_id.get(user)
        return found.forward if found is not None else None

    def _forward_targets(self, number: str, caller: str) -> list[Target]:
        """A forwarding destination: another user's phones, or an outside number via a trunk."""
        if number in self._users:
            return self.targets_of(number)
        found = self._external_target(number, caller, None)
        return [found] if found is not None else []

    def _on_register(self, req: Request, source: Addr) -> None:
        wall = time.time()
        who = self.auth.authenticate(req, source.host, wall)
        if isinstance(who, Response):
            self.respond(who)
            return
        self.respond(self.registrar.handle_register(req, source, who, wall))
        self._reg_timer.arm(self.registrar.next_deadline())

    def _external_target(self, number: str, caller: str, trunk: str | None) -> Target | None:
        """A number outside, through the trunk named (or the one whose prefixes match)."""
        try:
            found = self.trunks.target_for(number, caller, via=trunk)
        except TrunkUnavailable as exc:
            log.warning("cannot dial %s: %s", number, exc)
            return None
        return found[0] if found is not None else None

    def _campaign_target(self, number: str, trunk: str | None, caller_id: str) -> tuple[Target, str] | None:
        """An outbound campaign's customer, through its trunk with its caller ID, and the trunk's
        name. Raises TrunkUnavailable when the trunk is full or not resolved yet."""
        found = self.trunks.target_for(number, caller_id or "campaign", via=trunk, caller_id=caller_id)
        return None if found is None else (found[0], found[1].trunk.name)

    def targets_of(self, user: str) -> list[Target]:
        """Where to ring a user now: one target per live registration."""
        return [Target(uri=b.contact, dest=b.target(), user=user)
                for b in self.registrar.lookup(user, time.time())]

    def _run_dialplan(self, req: Request, source: Addr, caller: str, number: str, *,
                      user: str | None = None, trunk: str | None = None, did: str = "") -> bool:
        """Start the dialplan's route for this call, if one matches; False leaves it to the default."""
        plan = self.dialplan.plan
        if plan is None:
            return False
        context = plan.context_for(user=user, trunk=trunk)
        if context is None:
            return False
        match = plan.route(context, number, caller=caller, did=did, trunk=trunk or "", now=time.time())
        if match is None:
            return False
        interpreter = Interpreter(plan, match, {"caller": caller, "did": did, "dialled": number},
                                  prompts_dir=self.config.media.prompts_dir)
        session: CallSession
        call = self.b2bua.accept(req, source, caller, number, DeferredObserver(lambda: session),
                                 trunk=trunk or "", did=did)
        session = CallSession(self.sessions, call, interpreter)
        session.start()
        return True

    def _on_options(self, req: Request, source: Addr) -> None:
        resp = make_response(req, 200, "OK", to_tag=new_tag())
        resp.headers.add("Allow", ALLOW)
        resp.headers.add("Accept", "application/sdp")
        if SUPPORTED:
            resp.headers.add("Supported", ", ".join(sorted(SUPPORTED)))
        self.respond(resp)


def hold_music() -> np.ndarray:
    """Music on hold when a queue names no file: a soft two-note chime, 4 s, looped."""
    rate = 8000
    t = np.arange(rate) / rate
    note = lambda hz: np.sin(2 * np.pi * hz * t) * np.exp(-3 * t)  # noqa: E731
    bar = np.concatenate([note(523.25), note(659.25), np.zeros(rate * 2)])
    return (bar * 6000).astype(np.int16)


def _credentials(config: NodeConfig) -> list[Credentials]:
    creds = []
    for u in config.directory.users:
        creds.append(
            Credentials(
                user=u.id,
                password=u.password.get_secret_value() if u.password is not None else None,
                ha1_md5=u.ha1_md5,
                ha1_sha256=u.ha1_sha256,
            )
        )
    return creds


def _server_ssl(config: NodeConfig) -> ssl.SSLContext | None:
    sip = config.sip
    if sip.tls_cert is None or sip.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(sip.tls_cert), str(sip.tls_key))
    return ctx


#: Young collections every 5,000 allocations, full ones practically never (see tune_gc).
GC_THRESHOLDS = (5_000, 10, 1_000_000)


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Keep the garbage collector's pauses shorter than SIP's T1.

    A call's objects are freed by reference counting (bench/calls.py finds no cycle garbage after
    10,000 calls), while full collections that walk thousands of live calls paused the node for
    0.25-0.5 s, long enough for phones to retransmit. So what start-up built is frozen out of the
    collector, young collections run less often, and full ones practically never.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


def install_uvloop() -> bool:
    """Use uvloop when it is installed (production); plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


async def serve(config: NodeConfig) -> int:
    """Run a node until SIGTERM or SIGINT, then shut it down cleanly."""
    node = Node(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers first: a SIGTERM during start-up must still end in a clean stop, not a kill.
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, node.reload_dialplan, "SIGHUP")
    await node.start()
    tune_gc()
    log.info("node ready: domain %s", config.sip.domain)
    await stop.wait()
    log.info("shutting down: refusing new calls, waiting up to %.0f s for calls in progress",
             SHUTDOWN_GRACE)
    # A second signal cuts the wait short.
    stopping = asyncio.create_task(node.stop(grace=SHUTDOWN_GRACE))
    stop.clear()
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stopping, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if stopping not in done:
        log.info("second signal: ending calls now")
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping
        await node.stop(grace=0.0)
    waiter.cancel()
    return 0


def run_main(args: argparse.Namespace) -> int:
    """`softswitch run`: validate the config (refusing to start when invalid), then serve."""
    setup_logging(args.log_format, args.log_level)
    try:
        if args.config:
            config = load_config(args.config)
        else:
            base = Path.cwd() / "var" / "demo"
            base.mkdir(parents=True, exist_ok=True)
            config = demo_config(base)
            log.info("no --config: demo node on 127.0.0.1 with SQLite under %s", base)
    except ConfigError as exc:
        for line in exc.errors:
            log.error("%s", line)
        log.error("refusing to start: the configuration is invalid")
        return 1
    install_uvloop()
    try:
        return asyncio.run(serve(config))
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
