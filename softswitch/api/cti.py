"""The CTI stream: bus events to WebSocket clients, filtered by who is listening, and screen pops.

An agent's connection receives its own events (its state, offers and screen pops, its calls) and
the queue statistics; a supervisor's or admin's receives every event. Each client has a bounded
queue: a client that stops reading loses events (counted), it never slows the node down.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from softswitch.api.auth import Principal
from softswitch.api.centre import ContactCentre
from softswitch.api.events import ScreenPop
from softswitch.events import (
    AgentStateChanged,
    CallAnswered,
    CallEnded,
    CallStarted,
    Event,
    EventBus,
    QueueEvent,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

CLIENT_QUEUE = 1000  # messages buffered per client before its events are dropped
STATS_DEBOUNCE = 0.05  # queue statistics go out this soon after a change, coalescing bursts
STATS_EVERY = 1.0  # and at least this often while anyone listens (wait clocks move)
HISTORY_LIMIT = 5
HISTORY_TIMEOUT = 1.0
MAX_PREFETCH = 10_000  # histories looked up ahead for waiting callers
# Queue events after which a caller's prefetched history is no longer needed (a new 'joined' refetches).
_LEFT_QUEUE = frozenset({"answered", "abandoned", "overflowed", "rejected"})
CLOSE = ""  # never a JSON message: tells the connection to close (going away)


def dumps(message: Mapping[str, Any]) -> str:
    """JSON text of a message (UTF-8 kept: Japanese names stay readable)."""
    return json.dumps(message, ensure_ascii=False, default=str)


async def resolve(value: T | Awaitable[T]) -> T:
    """The value, awaited when the contact centre returned an awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value


HistoryLookup = Callable[..., Awaitable[list[Any]]]


@dataclass(eq=False)
class Client:
    """One WebSocket listener: who it is, what it asked for, and its outgoing queue."""

    principal: Principal
    kinds: frozenset[str] | None = None
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE))  # JSON texts
    calls: set[str] = field(default_factory=set)  # calls this agent is part of
    dropped: int = 0

    def wants(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds

    def sees(self, ev: Event) -> bool:
        """Whether this client may see `ev` (agents: their own events only)."""
        p = self.principal
        if p.at_least("supervisor"):
            return True
        me = p.agent
        if me is None:
            return False
        if isinstance(ev, AgentStateChanged):
            return ev.agent == me
        if isinstance(ev, ScreenPop):
            return ev.agent == me
        if isinstance(ev, QueueEvent):
            if ev.agent != me:
                return False
            if ev.event in ("offered", "answered"):
                self.calls.add(ev.call_uuid)
            return True
        if isinstance(ev, CallStarted):
            if me in (ev.caller, ev.callee):
                self.calls.add(ev.call_uuid)
                return True
            return False
        if isinstance(ev, CallAnswered):
            if ev.answered_by == me:
                self.calls.add(ev.call_uuid)
            return ev.call_uuid in self.calls
        if isinstance(ev, CallEnded):
            if ev.call_uuid in self.calls:
                self.calls.discard(ev.call_uuid)
                return True
            return False
        return False

    def put(self, message: Mapping[str, Any]) -> None:
        """Queue a message for this client; when its queue is full the message is dropped."""
        self.put_text(dumps(message))

    def put_text(self, text: str) -> None:
        """Queue an already serialised message (one serialisation shared by every client)."""
        if text == CLOSE and self.queue.full():
            self.queue.get_nowait()  # make room: closing matters more than one more event
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped += 1


class CtiHub:
    """Reads the bus, builds screen pops, and fans events and queue statistics out to clients."""

    def __init__(
        self,
        bus: EventBus,
        centre: ContactCentre,
        history: Callable[[], HistoryLookup | None],
        *,
        clock: Callable[[], float] = time.time,
        campaigns: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.bus = bus
        self.centre = centre
        self.history = history
        self.clock = clock
        self.campaigns = campaigns  # outbound campaigns described, for the wallboard
        self.clients: set[Client] = set()
        self._events: asyncio.Queue[Event] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._stats_soon: asyncio.TimerHandle | None = None
        self._pops: set[asyncio.Future[Any]] = set()
        self._prefetch: dict[str, asyncio.Task[list[dict[str, Any]]]] = {}
        self.screen_pops = 0

    async def start(self) -> None:
        """Subscribe to the bus and start fanning out."""
        self._events = self.bus.queue(maxsize=10_000)
        loop = asyncio.get_running_loop()
        self._pump = loop.create_task(self._run())
        self._ticker = loop.create_task(self._tick())

    async def stop(self) -> None:
        """Tell every listener the node is going away, stop reading the bus, cancel screen pops."""
        for client in list(self.clients):
            client.put_text(CLOSE)
        if self._events is not None:
            self.bus.unqueue(self._events)
        if self._stats_soon is not None:
            self._stats_soon.cancel()
        tasks: list[asyncio.Future[Any]] = [t for t in (self._pump, self._ticker) if t is not None]
        tasks += list(self._pops)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._pops.clear()
        self._prefetch.clear()

    # -- clients ---------------------------------------------------------------------------

    async def add(self, client: Client) -> None:
        """A new listener: greet it, then send the current queue statistics."""
        self.clients.add(client)
        if client.wants("hello"):
            client.put({"kind": "hello", "ts": self.clock(), "role": client.principal.role,
                        "agent": client.principal.agent})
        if client.principal.agent is not None and client.wants("agent_snapshot"):
            with contextlib.suppress(LookupError, ValueError):
                state = await resolve(self.centre.agent_state(client.principal.agent))
                client.put({"kind": "agent_snapshot", "ts": self.clock(), **state})
        await self._send_stats([client])

    def remove(self, client: Client) -> None:
        """A listener went away."""
        self.clients.discard(client)

    # -- the pump --------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._events is not None
        while True:
            ev = await self._events.get()
            try:
                self._dispatch(ev)
            except Exception:
                log.exception("CTI dispatch of %s failed", ev.kind)

    def _dispatch(self, ev: Event) -> None:
        if isinstance(ev, QueueEvent):
            if ev.event == "joined":
                self._start_prefetch(ev.call_uuid)
            elif ev.event == "offered" and ev.agent:
                self._spawn(self._screen_pop(ev))
            elif ev.event in _LEFT_QUEUE:
                self._drop_prefetch(ev.call_uuid)
            self._stats_changed()
        elif isinstance(ev, AgentStateChanged):
            self._stats_changed()
        elif isinstance(ev, CallEnded):
            self._drop_prefetch(ev.call_uuid)
        if not self.clients:
            return
        text = ""
        for client in list(self.clients):
            if client.wants(ev.kind) and client.sees(ev):
                text = text or dumps(ev.to_dict())
                client.put_text(text)

    def _spawn(self, coro: Awaitable[None]) -> None:
        """Run a screen pop or a statistics push as a task (they must never be left failing silently)."""
        task = asyncio.ensure_future(coro)
        self._pops.add(task)
        task.add_done_callback(self._pops.discard)

    # -- screen pops -----------------------------------------------------------------------

    async def _context(self, call_uuid: str) -> dict[str, Any]:
        try:
            ctx = await resolve(self.centre.call_context(call_uuid))
        except Exception:
            log.exception("call_context(%s) failed", call_uuid)
            ctx = None
        return dict(ctx or {})

    def _start_prefetch(self, call_uuid: str) -> None:
        """Look the caller's history up while they wait, so the screen pop needs no database trip."""
        if call_uuid in self._prefetch:
            return
        if len(self._prefetch) >= MAX_PREFETCH:  # callers whose end was never seen: forget the oldest
            self._drop_prefetch(next(iter(self._prefetch)))

        async def fetch() -> list[dict[str, Any]]:
            ctx = await self._context(call_uuid)
            return await self._history(call_uuid, str(ctx.get("number") or ""), str(ctx.get("customer_id") or ""))

        task = asyncio.ensure_future(fetch())
        self._prefetch[call_uuid] = task
        self._pops.add(task)  # tracked until done, even once dropped from the map, so stop() ends it
        task.add_done_callback(self._pops.discard)

    def _drop_prefetch(self, call_uuid: str) -> None:
        # Not cancelled: a screen pop may be awaiting it; it ends within HISTORY_TIMEOUT anyway.
        self._prefetch.pop(call_uuid, None)

    async def _history(self, call_uuid: str, number: str, customer_id: str) -> list[dict[str, Any]]:
        lookup = self.history()
        if lookup is None or not (number or customer_id):
            return []
        try:
            records = await asyncio.wait_for(
                lookup(number=number or None, customer_id=customer_id or None, limit=HISTORY_LIMIT + 1),
                HISTORY_TIMEOUT,
            )
        except Exception as exc:  # a slow or absent database must not hold the screen pop back
            log.warning("screen pop: history of %s unavailable: %s", number or customer_id, exc)
            return []
        out = []
        for r in records:
            if r.call_uuid == call_uuid:
                continue
            out.append({
                "call_uuid": r.call_uuid, "start": r.start, "answer": r.answer, "end": r.end,
                "disposition": r.disposition, "queue": r.queue, "agent": r.agent, "callee": r.callee,
            })
        return out[:HISTORY_LIMIT]

    async def _screen_pop(self, ev: QueueEvent) -> None:
        try:
            await self._build_screen_pop(ev)
        except Exception:
            log.exception("screen pop for %s failed", ev.call_uuid)

    async def _build_screen_pop(self, ev: QueueEvent) -> None:
        ctx = await self._context(ev.call_uuid)
        number = str(ctx.get("number") or ev.caller or "")
        customer_id = str(ctx.get("customer_id") or "")
        pre = self._prefetch.get(ev.call_uuid)
        if pre is not None and not pre.cancelled():
            try:
                history = await pre
            except Exception:
                history = []
        else:
            history = await self._history(ev.call_uuid, number, customer_id)
        joined = ctx.get("joined_at")
        wait = max(0.0, ev.ts - float(joined)) if joined is not None else ev.wait
        variables = {str(k): str(v) for k, v in dict(ctx.get("variables") or {}).items()}
        self.screen_pops += 1
        self.bus.publish(ScreenPop(
            ts=self.clock(), call_uuid=ev.call_uuid, agent=ev.agent, queue=str(ctx.get("queue") or ev.queue),
            caller=number, customer_id=customer_id, wait=wait, variables=variables, history=tuple(history),
        ))

    # -- queue statistics --------------------------------------------------------------------

    def _stats_changed(self) -> None:
        if self._stats_soon is None and self.clients:
            loop = asyncio.get_running_loop()
            self._stats_soon = loop.call_later(STATS_DEBOUNCE, self._stats_due)

    def _stats_due(self) -> None:
        self._stats_soon = None
        self._spawn(self._send_stats_logged(list(self.clients)))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY)
            if self.clients:
                await self._send_stats_logged(list(self.clients))

    async def _send_stats_logged(self, clients: list[Client]) -> None:
        try:
            await self._send_stats(clients)
        except Exception:
            log.exception("queue statistics failed")

    async def _send_stats(self, clients: list[Client]) -> None:
        clients = [c for c in clients if c.wants("queue_stats")]
        if not clients:
            return
        queues = await resolve(self.centre.queues())
        ts = self.clock()
        campaigns = campaign_rows(self.campaigns()) if self.campaigns is not None else []
        plain = full = ""
        for c in clients:
            if c.principal.at_least("supervisor"):
                if not full:
                    agents = await resolve(self.centre.agents())
                    full = dumps({"kind": "queue_stats", "ts": ts, "queues": queues, "agents": agents,
                                  "campaigns": campaigns})
                c.put_text(full)
            else:
                plain = plain or dumps({"kind": "queue_stats", "ts": ts, "queues": queues, "campaigns": campaigns})
                c.put_text(plain)


def campaign_rows(campaigns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the wallboard shows of each campaign that has been started: progress and abandonment."""
    rows = []
    for c in campaigns:
        if c.get("state") == "draft":
            continue
        stats = dict(c.get("stats") or {})
        states = dict(stats.get("states") or {})
        rows.append({
            "id": c["id"], "name": c.get("name") or c["id"], "mode": c.get("mode"), "state": c.get("state"),
            "records": stats.get("records", 0), "done": states.get("done", 0), "failed": states.get("failed", 0),
            "remaining": sum(n for s, n in states.items() if s not in ("done", "failed", "dnc")),
            "calls": c.get("calls_in_progress", 0), "connected": stats.get("connected", 0),
            "abandon_rate": stats.get("abandon_rate", 0.0), "abandon_ceiling": c.get("abandon_ceiling"),
        })
    return rows
