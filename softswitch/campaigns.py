"""Outbound campaigns and scheduled callbacks on a node: the asyncio shell around `acd.dialer`.

A campaign (kept in the store) has a call list, a schedule, a trunk, a caller ID, a queue and a
mode. While it runs, its `Dialer` is paced whenever an agent changes state, an attempt ends, a retry
falls due or the schedule opens: there is no polling loop. Progressive and predictive calls are
placed customer first, through the trunk with the campaign's caller ID; once answered they join the
campaign's queue, and the ACD offers them to its agents with a screen pop of the record's fields.
A predictive call that no agent is offered within the connect window hears a short message and is
logged as abandoned. Preview calls ring the agent first, then the customer, when the agent asks.

Every attempt is a `CampaignAttempt` event (the store writer makes it durable and spools it while
the database is down); record states are written behind and retried until the database takes them.
Scheduled callbacks are booked in the store and, when due, queued as callbacks offered to the
booking agent first.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import io
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from acd.dialer import Dial, Dialer, DialerSettings, Mode, Record, RecordState, Result
from softswitch.calls.numbers import NumberError, to_national
from softswitch.calls.session import DIAL_STATUS, PlacedCall
from softswitch.calls.trunks import TrunkUnavailable
from softswitch.dialplan import commands as c
from softswitch.dialplan.calendar import Calendar
from softswitch.events import AgentStateChanged, CampaignAttempt, Event, EventBus
from softswitch.store.base import (
    Campaign,
    CampaignRecord,
    DncEntry,
    ScheduledCallback,
    Store,
    StoreError,
    StoreUnavailable,
)
from softswitch.timers import DeadlineTimer

if TYPE_CHECKING:
    from softswitch.calls.b2bua import Target
    from softswitch.calls.session import SessionServices
    from softswitch.centre import ContactCentre

log = logging.getLogger(__name__)

DEFAULT_HOURS: dict[str, list[str]] = {"mon-sat": ["09:00-20:00"]}
ABANDON_MESSAGE = "お電話ありがとうございます。ただいま担当者が全員対応中のため、改めてご連絡いたします。"
PREVIEW_FAILED = "お客様につながりませんでした。"
DIAL_RESULTS = {"busy": Result.BUSY, "no_answer": Result.NO_ANSWER, "rejected": Result.REJECTED}
MAX_CSV_BYTES = 20_000_000
FLUSH_EVERY = 0.5
SCHEDULE_RECHECK = 60.0  # a closed campaign looks at its calendar again at most this late
OUTBOUND_PAUSE = "outbound call"  # the ACD state reason of an agent on a preview call
PREVIEW_HOLD = 600.0  # seconds an agent may keep a previewed record without dialling or skipping it
LEASE_SECONDS = 30.0  # a node's hold on a running campaign, renewed every third of it
TRUNK_FULL_PAUSE = 0.5  # a campaign whose trunk has no channel free waits this long before dialling again
FAST_FAILURE = 3.0  # a call refused within this many seconds never rang
BREAKER_FAILURES = 3  # such failures in a row pause the campaign
BREAKER_PAUSE, BREAKER_MAX_PAUSE = 5.0, 300.0  # first pause, doubled each time up to this
IN_FLIGHT_RETRY = 300.0  # a record found mid-dial at load is tried again this much later
CALLBACK_RETRY = 5.0  # a due callback the database could not hand out is tried again this late
OFFER_LOST_AFTER = 600.0  # an `offered` callback this old at start was lost with a stopped node
JST = ZoneInfo("Asia/Tokyo")


class CampaignError(ValueError):
    """A campaign request the state does not allow (unknown queue, not a preview campaign...)."""


class CampaignNotFound(LookupError):
    """No such campaign, record or callback."""


class CampaignSpec(BaseModel):
    """What an operator gives to create a campaign (validated; also the API's request body)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["december-follow-up"])
    name: str = Field("", max_length=200)
    mode: Literal["preview", "progressive", "predictive"]
    queue: str = Field(min_length=1, description="the queue whose agents take the calls")
    trunk: str = Field("", description="trunk to dial through; empty: the trunk whose prefixes match")
    caller_id: str = Field("", max_length=32, description="number presented to customers; empty: the trunk's")
    schedule: Calendar = Field(default_factory=lambda: Calendar(weekly=DEFAULT_HOURS),
                               description="when numbers may be dialled; Japanese public holidays are skipped")
    max_attempts: int = Field(3, ge=1, le=20)
    retry_delays: dict[Literal["busy", "no_answer", "rejected", "unreachable", "abandoned"],
                       Annotated[float, Field(ge=0, le=30 * 86400, allow_inf_nan=False)]] = Field(
        default_factory=dict, description="seconds before a number is tried again, per result")
    abandon_ceiling: float = Field(0.03, ge=0.0, le=0.5, description="predictive: highest abandonment rate")
    connect_window: float = Field(2.0, gt=0, le=30, description="predictive: seconds to find an agent")
    ring_timeout: float = Field(25.0, ge=5, le=120)
    max_lines_per_agent: float = Field(3.0, ge=1, le=10)
    record: bool = True

    def settings(self) -> DialerSettings:
        """The dialler core's settings."""
        base = DialerSettings(mode=Mode(self.mode))
        delays = {**base.retry_delays, **{str(k): float(v) for k, v in self.retry_delays.items()}}
        return replace(base, max_attempts=self.max_attempts, retry_delays=delays,
                       abandon_ceiling=self.abandon_ceiling, connect_window=self.connect_window,
                       max_lines_per_agent=self.max_lines_per_agent)

    def to_campaign(self, state: str, created: float, now: float) -> Campaign:
        """The stored form."""
        settings = self.model_dump(exclude={"id", "name", "mode", "queue", "trunk", "caller_id", "schedule"})
        return Campaign(id=self.id, name=self.name, mode=self.mode, queue=self.queue, trunk=self.trunk,
                        caller_id=self.caller_id, schedule=self.schedule.model_dump(), settings=settings,
                        state=state, created=created, updated=now)

    @classmethod
    def of(cls, campaign: Campaign) -> CampaignSpec:
        """Back from the stored form."""
        return cls.model_validate({**campaign.settings, "id": campaign.id, "name": campaign.name,
                                   "mode": campaign.mode, "queue": campaign.queue, "trunk": campaign.trunk,
                                   "caller_id": campaign.caller_id, "schedule": campaign.schedule})


class CallbackSpec(BaseModel):
    """A callback booked by an agent (or through the API for a caller)."""

    model_config = ConfigDict(extra="forbid")

    number: str = Field(min_length=2, max_length=32)
    due: float = Field(gt=1_500_000_000, lt=4_000_000_000, allow_inf_nan=False,
                       description="when to call, epoch seconds")
    queue: str = Field(min_length=1)
    agent: str = Field("", description="offered to this agent first; empty: the queue")
    customer_id: str = Field("", max_length=64)
    note: str = Field("", max_length=500)


# -- call lists ------------------------------------------------------------------------------


def parse_call_list(data: bytes) -> tuple[list[Record], list[dict[str, Any]]]:
    """A CSV call list: a header row naming `number` (required), optional `customer_id` and `id`,
    and any other columns (kept as fields for the screen pop). UTF-8 (with or without BOM) or
    Shift_JIS (as Japanese Excel saves it). Returns the records and the rejected lines with why."""
    text = _decode(data)
    if "\x00" in text:
        raise CampaignError("the call list holds NUL bytes: is it a spreadsheet file rather than CSV?")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise CampaignError("the call list is empty") from None
    except csv.Error as exc:
        raise CampaignError(f"line 1: {exc}") from None
    if "number" not in header:
        raise CampaignError("line 1: the header must name a 'number' column")
    if len(set(header)) != len(header):
        raise CampaignError("line 1: a column is named twice")
    records: list[Record] = []
    rejected: list[dict[str, Any]] = []
    seen: set[str] = set()
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rejected.append({"line": reader.line_num, "error": str(exc)})
            continue
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            rejected.append({"line": line, "error": f"{len(row)} columns, the header has {len(header)}"})
            continue
        values = {h: v.strip() for h, v in zip(header, row, strict=True)}
        try:
            number = to_national(values.pop("number"))
        except NumberError as exc:
            rejected.append({"line": line, "error": f"number: {exc}"})
            continue
        customer = values.pop("customer_id", "")
        given = values.pop("id", "")
        # Without an id column a record is known by its number and customer, so sending the same
        # list again (a retried upload) adds nothing.
        rid = given or hashlib.sha256(f"{number}|{customer}".encode()).hexdigest()[:16]
        if rid in seen:
            what = f"id {rid}" if given else f"number {number}" + (f" of customer {customer}" if customer else "")
            rejected.append({"line": line, "error": f"{what} is listed twice"})
            continue
        seen.add(rid)
        records.append(Record(id=rid, number=number, customer_id=customer, fields=values))
    return records, rejected


def _decode(data: bytes) -> str:
    if len(data) > MAX_CSV_BYTES:
        raise CampaignError(f"the call list is over {MAX_CSV_BYTES // 1_000_000} MB: split it")
    for encoding in ("utf-8-sig", "cp932"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CampaignError("the call list is neither UTF-8 nor Shift_JIS text")


def _stored(campaign: str, r: Record, now: float) -> CampaignRecord:
    return CampaignRecord(campaign=campaign, id=r.id, number=r.number, customer_id=r.customer_id,
                          fields=dict(r.fields), state=str(r.state), attempts=r.attempts, next_at=r.next_at,
                          last_result=r.last_result, agent=r.agent, updated=now)


def _record_json(r: Record) -> dict[str, Any]:
    return {"id": r.id, "number": r.number, "customer_id": r.customer_id, "fields": dict(r.fields),
            "state": str(r.state), "attempts": r.attempts, "next_at": r.next_at or None,
            "last_result": r.last_result, "agent": r.agent}


# -- the node's campaigns ----------------------------------------------------------------------


@dataclass
class Run:
    """A campaign loaded on this node: its spec, state and dialler."""

    spec: CampaignSpec
    state: str
    created: float
    dialer: Dialer
    calls: set[asyncio.Task[None]] = field(default_factory=set)
    leased_until: float = 0.0  # this node may dial the campaign until then (its lease in the store)
    blocked_until: float = 0.0  # its trunk was full, or the carrier fails every call: no dial before then
    previews: dict[str, float] = field(default_factory=dict)  # agent -> when they last asked for their record
    failures: int = 0  # calls in a row that failed at once (no ringing): a trunk or carrier fault?
    backoff: float = 0.0  # the last pause those failures caused

    @property
    def id(self) -> str:
        return self.spec.id

    def dials_here(self, now: float) -> bool:
        return self.state == "running" and self.leased_until > now


TargetFor = Callable[[str, str | None, str], "tuple[Target, str] | None"]


class Campaigns:
    """Every campaign and scheduled callback of a node."""

    def __init__(self, *, centre: ContactCentre, services: SessionServices, bus: EventBus,
                 store: Callable[[], Store | None], target_for: TargetFor,
                 trunk_room: Callable[[str], int | None] = lambda trunk: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.centre = centre
        self.services = services
        self.bus = bus
        self.store = store
        self.target_for = target_for
        self.trunk_room = trunk_room  # channels free on a trunk now (None: no limit)
        self.clock = clock
        self._placing: dict[str, int] = {}  # trunk -> calls being set up, not yet counted by the trunk
        self.runs: dict[str, Run] = {}
        self.dnc: set[str] = set()
        self.callbacks: dict[str, ScheduledCallback] = {}
        self._dirty: dict[tuple[str, str], CampaignRecord] = {}
        self._dirty_callbacks: dict[str, ScheduledCallback] = {}
        self._dirty_campaigns: dict[str, Campaign] = {}
        self._offering: set[str] = set()  # due callbacks being taken in the store now
        self._callback_retry: dict[str, float] = {}  # callback id -> not before (being taken, database away)
        self._flush_wanted = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._pace_handle: asyncio.Handle | None = None
        self._timer = DeadlineTimer(self._on_timer, clock)
        self._unsubscribe: Callable[[], None] = lambda: None
        self._loaded = False
        self._halted = False
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = LEASE_SECONDS
        self.preview_hold = PREVIEW_HOLD
        self._leases: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load campaigns, the do-not-call list and pending callbacks from the store, then run."""
        self._unsubscribe = self.bus.subscribe(self._on_event, AgentStateChanged)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        try:
            await self._load()
        except StoreUnavailable as exc:
            log.error("database unavailable (%s): campaigns and callbacks not loaded; retrying", exc)
            self._spawn(self._load_later())
        self._leases = asyncio.get_running_loop().create_task(self._lease_loop())

    async def _load_later(self) -> None:
        delay = 1.0
        while not self._loaded:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            try:
                await self._load()
            except StoreUnavailable:
                continue
            self._pace_soon()

    async def _load(self) -> None:
        store = self._require_store()
        self.dnc = {e.number for e in await store.list_dnc()}
        await self._discover(store)
        now = self.clock()
        for cb in await store.scheduled_callbacks(state=None):
            if cb.state == "pending":
                self.callbacks[cb.id] = cb
            elif cb.state == "offered" and cb.updated < now - OFFER_LOST_AFTER:
                # Offered long ago and never finished: the node offering it went away. Offer it again.
                cb = replace(cb, state="pending", updated=now)
                await store.upsert_scheduled_callback(cb)
                self.callbacks[cb.id] = cb
            elif cb.state in ("offered", "done", "failed", "cancelled"):
                self.callbacks[cb.id] = cb
        self._loaded = True
        self._arm()

    def halt(self) -> None:
        """Dial nothing more (the node is stopping); calls in progress go on."""
        self._halted = True
        self._unsubscribe()
        self._timer.cancel()
        if self._pace_handle is not None:
            self._pace_handle.cancel()
            self._pace_handle = None

    async def _discover(self, store: Store) -> None:
        """Load the campaigns this node does not know yet (all at start; later, those created
        through another node)."""
        for campaign in await store.list_campaigns():
            if campaign.id in self.runs:
                continue
            try:
                spec = CampaignSpec.of(campaign)
                records = await self._stored_records(store, campaign.id)
            except (ValueError, StoreError) as exc:
                # One campaign this node cannot read (a newer version's settings?) must not stop it.
                if isinstance(exc, StoreUnavailable):
                    raise
                log.error("campaign %s not loaded: %s", campaign.id, exc)
                continue
            self.runs[campaign.id] = Run(spec, campaign.state, campaign.created,
                                         Dialer(campaign.id, spec.settings(), records, dnc=self._is_dnc))

    async def _stored_records(self, store: Store, campaign: str) -> list[Record]:
        now = self.clock()
        records: list[Record] = []
        offset = 0
        while True:
            page = await store.campaign_records(campaign, limit=10_000, offset=offset)
            records += [_loaded(r, now) for r in page]
            offset += len(page)
            if len(page) < 10_000:
                return records

    async def stop(self) -> None:
        """Stop dialling, finish the bookkeeping of calls in progress and write what is pending."""
        self.halt()
        if self._leases is not None:
            self._leases.cancel()
        calls = [t for run in self.runs.values() for t in run.calls]
        for t in calls + list(self._tasks):
            t.cancel()
        if calls:
            # Each call's bookkeeping (its attempt, its record) runs as it is cancelled.
            await asyncio.wait(calls, timeout=5.0)
        if self._flusher is not None:
            # A batch the flusher holds goes back to the pending writes as it is cancelled.
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        for cb in list(self.callbacks.values()):
            if cb.state == "offered":
                # Not finished here: back to the book for the next node that starts (or this one).
                self._set_callback(replace(cb, state="pending", updated=self.clock()))
        try:
            await self._flush()
            for run in self.runs.values():
                if run.leased_until:
                    await self._require_store().release_campaign(run.id, self.owner)
        except StoreUnavailable as exc:
            log.warning("campaign writes or leases left for the next start: %s", exc)

    # -- campaigns (the API calls these) ------------------------------------------------------

    async def create(self, spec: CampaignSpec) -> dict[str, Any]:
        """A new campaign, in the draft state until it is started."""
        if spec.id in self.runs:
            raise CampaignError(f"campaign {spec.id} exists")
        self._check_spec(spec)
        now = self.clock()
        store = self._require_store()
        if await store.get_campaign(spec.id) is not None:  # created through another node
            raise CampaignError(f"campaign {spec.id} exists")
        await store.upsert_campaign(spec.to_campaign("draft", now, now))
        run = Run(spec, "draft", now, Dialer(spec.id, spec.settings(), (), dnc=self._is_dnc))
        self.runs[spec.id] = run
        return self.describe(spec.id)

    def _check_spec(self, spec: CampaignSpec) -> None:
        if spec.queue not in {q.name for q in self.centre.config.queues}:
            raise CampaignError(f"no queue {spec.queue}")
        if spec.trunk and spec.trunk not in {t.name for t in self.centre.config.trunks}:
            raise CampaignError(f"no trunk {spec.trunk}")

    def describe(self, campaign: str) -> dict[str, Any]:
        """A campaign, its state and its dialler's figures."""
        run = self._run(campaign)
        now = self.clock()
        return {**run.spec.model_dump(mode="json"), "state": run.state, "created": run.created,
                "stats": run.dialer.stats(now), "calls_in_progress": len(run.calls),
                "dialling_here": run.dials_here(now)}

    def list(self) -> list[dict[str, Any]]:
        """Every campaign, described."""
        return [self.describe(cid) for cid in sorted(self.runs)]

    async def delete(self, campaign: str) -> None:
        """Remove a campaign that is not dialling, with its call list."""
        run = self._run(campaign)
        if run.calls:
            raise CampaignError(f"campaign {campaign} has calls in progress: pause it first")
        if not await self._require_store().delete_campaign(campaign):
            raise CampaignNotFound(f"no campaign {campaign}")
        self.runs.pop(campaign, None)
        for key in [k for k in self._dirty if k[0] == campaign]:
            del self._dirty[key]

    async def set_state(self, campaign: str, state: Literal["running", "paused"]) -> dict[str, Any]:
        """Start (or resume) or pause dialling; calls in progress finish either way."""
        run = self._run(campaign)
        if run.state == state:
            return self.describe(campaign)
        now = self.clock()
        store = self._require_store()
        await store.upsert_campaign(run.spec.to_campaign(state, run.created, now))
        run.state = state
        if state == "running":
            await self._claim(run, store, now)
        elif run.leased_until:
            run.leased_until = 0.0
            await store.release_campaign(run.id, self.owner)
        self._pace_soon()
        return self.describe(campaign)

    # -- leases: one node dials a campaign at a time ----------------------------------------

    async def _lease_loop(self) -> None:
        """Every third of a lease: follow what other nodes did (states, lists, do-not-call numbers)
        and take or renew the lease of each running campaign."""
        while True:
            store = self.store()
            if store is not None and self._loaded:
                try:
                    await self._discover(store)
                    await self._refresh_dnc(store)
                except StoreUnavailable as exc:
                    log.warning("do-not-call list not refreshed (%s)", exc)
                except Exception:
                    log.exception("do-not-call list not refreshed")
                for run in list(self.runs.values()):
                    self._expire_previews(run)
                    try:
                        await self._follow(run, store)
                    except StoreUnavailable as exc:
                        # Keep dialling on the lease we hold; it runs out if the database stays away.
                        log.warning("campaign %s: lease not renewed (%s)", run.id, exc)
                    except Exception:
                        log.exception("campaign %s: lease not renewed", run.id)
                self._pace_soon()
            await asyncio.sleep(self.lease_seconds / 3)

    def _expire_previews(self, run: Run) -> None:
        """A record an agent reserved and left alone (they walked away, closed the browser) goes
        back to the list after `preview_hold` seconds."""
        now = self.clock()
        for agent, since in list(run.previews.items()):
            if now - since >= self.preview_hold and (held := self._release_preview(run, agent)):
                log.info("campaign %s: %s's reservation of %s ran out", run.id, agent, held)

    async def _follow(self, run: Run, store: Store) -> None:
        lease = await store.campaign_lease(run.id)
        if lease is None:  # deleted through another node
            if not run.calls:
                self.runs.pop(run.id, None)
            run.leased_until = 0.0
            return
        if lease.state != run.state and run.id not in self._dirty_campaigns:
            log.info("campaign %s is %s (changed through another node)", run.id, lease.state)
            run.state = lease.state
        if run.state != "running":
            run.leased_until = 0.0  # paused elsewhere: calls in progress finish, nothing new
            return
        await self._pick_up_records(run, store)
        await self._claim(run, store, self.clock(), lease.owner)

    async def _claim(self, run: Run, store: Store, now: float, last_owner: str | None = None) -> None:
        """Take or renew the campaign's lease. When another node dialled it since this node last
        did, its list is read again first, with nothing dialled meanwhile."""
        if last_owner is None:
            lease = await store.campaign_lease(run.id)
            last_owner = lease.owner if lease is not None else ""
        taken_over = last_owner not in ("", self.owner)
        if taken_over and (run.calls or any(k[0] == run.id for k in self._dirty)):
            run.leased_until = 0.0  # finish and write our own calls first; claim on a later round
            return
        if not await store.claim_campaign(run.id, self.owner, now + self.lease_seconds, now):
            if run.leased_until:
                log.warning("campaign %s is dialled by another node now", run.id)
            run.leased_until = 0.0
            return
        if taken_over:
            run.leased_until = 0.0
            await self._reload(run, store)
        run.leased_until = now + self.lease_seconds

    async def _pick_up_records(self, run: Run, store: Store) -> None:
        """Records imported through another node join this node's list."""
        counts = await store.campaign_counts(run.id)
        if sum(counts.values()) <= len(run.dialer.records()):
            return
        fresh = [r for r in await self._stored_records(store, run.id) if run.dialer.record(r.id) is None]
        run.dialer.add_records(fresh)
        log.info("campaign %s: %d records imported through another node", run.id, len(fresh))

    async def _refresh_dnc(self, store: Store) -> None:
        """Numbers put on the do-not-call list through another node stop being dialled here."""
        if await store.count("dnc") == len(self.dnc):
            return
        numbers = {e.number for e in await store.list_dnc()}
        for n in numbers - self.dnc:
            for run in self.runs.values():
                for r in run.dialer.block(n):
                    self._mark(run, r.id)
        self.dnc = numbers

    async def _reload(self, run: Run, store: Store) -> None:
        records = await self._stored_records(store, run.id)
        run.dialer = Dialer(run.id, run.spec.settings(), records, dnc=self._is_dnc)

    async def import_list(self, campaign: str, data: bytes) -> dict[str, Any]:
        """Add a CSV call list: every line is stored before the dialler sees it."""
        run = self._run(campaign)
        records, rejected = parse_call_list(data)
        fresh = [r for r in records if run.dialer.record(r.id) is None]
        duplicates = len(records) - len(fresh)
        now = self.clock()
        await self._require_store().add_campaign_records(campaign, [_stored(campaign, r, now) for r in fresh])
        added = run.dialer.add_records(fresh)
        blocked = [r for r in fresh if (k := run.dialer.record(r.id)) is not None and k.state == RecordState.DNC]
        for r in blocked:
            self._mark(run, r.id)
        if run.state == "finished" and not run.dialer.finished():
            # "Finished" only meant the list ran out: new numbers carry on dialling.
            await self.set_state(campaign, "running")
        self._pace_soon()
        return {"campaign": campaign, "added": added, "duplicates": duplicates, "do_not_call": len(blocked),
                "rejected": rejected}

    def records(self, campaign: str, *, state: str | None = None, limit: int = 100,
                offset: int = 0) -> list[dict[str, Any]]:
        """The call list with each record's state, attempts and last result."""
        rows = [r for r in self._run(campaign).dialer.records().values() if state is None or str(r.state) == state]
        return [_record_json(r) for r in rows[offset:offset + limit]]

    async def attempts(self, campaign: str, record_id: str | None = None) -> list[dict[str, Any]]:
        """Every attempt of the campaign (or of one record), as stored."""
        self._run(campaign)
        return await self._require_store().campaign_attempts(campaign, record_id)

    # -- preview ---------------------------------------------------------------------------

    def preview_next(self, campaign: str, agent: str) -> dict[str, Any] | None:
        """Reserve the next record for the agent to look at; None when nothing is due."""
        run = self._preview_run(campaign)
        self._check_preview_agent(run, agent)
        record = run.dialer.preview_next(agent, self.clock())
        if record is None:
            return None
        run.previews[agent] = self.clock()
        self._mark(run, record.id)
        return _record_json(record)

    def preview_skip(self, campaign: str, agent: str, record_id: str) -> dict[str, Any]:
        """The agent passes over the record: it goes back to the list, after the others."""
        run = self._preview_run(campaign)
        try:
            record = run.dialer.preview_skip(agent, record_id, self.clock())
        except (KeyError, ValueError) as exc:
            raise CampaignError(str(exc)) from None
        run.previews.pop(agent, None)
        self._publish_attempt(run, record, Result.SKIPPED, agent=agent, call_uuid="", started=self.clock())
        self._mark(run, record_id)
        return _record_json(record)

    def preview_dial(self, campaign: str, agent: str, record_id: str) -> dict[str, Any]:
        """Dial the previewed record: the agent's phone rings first, then the customer's."""
        run = self._preview_run(campaign)
        self._check_preview_agent(run, agent)
        targets = self.centre.lookup_user(agent)
        if not targets:
            raise CampaignError(f"{agent} has no registered phone")
        try:
            dial = run.dialer.preview_dial(agent, record_id, self.clock())
        except (KeyError, ValueError) as exc:
            raise CampaignError(str(exc)) from None
        run.previews.pop(agent, None)
        self._mark(run, record_id)
        self._start_call(run, dial, self._preview_call(run, dial, targets))
        return {"campaign": campaign, "record": record_id, "agent": agent, "attempt": dial.attempt}

    def _check_preview_agent(self, run: Run, agent: str) -> None:
        from acd.model import AgentState

        if agent not in self.centre.agents:
            raise CampaignError(f"{agent} is not an agent")
        if self.centre.engine.agent_state(agent) == AgentState.OFFLINE:
            raise CampaignError(f"{agent} is logged out")
        if not run.spec.schedule.is_open(self.clock()):
            raise CampaignError(f"campaign {run.id} is outside its calling hours")

    def _preview_run(self, campaign: str) -> Run:
        run = self._run(campaign)
        if run.spec.mode != "preview":
            raise CampaignError(f"campaign {campaign} is {run.spec.mode}, not preview")
        if run.state != "running":
            raise CampaignError(f"campaign {campaign} is {run.state}")
        if not run.dials_here(self.clock()):
            raise CampaignError(f"campaign {campaign} is dialled by another node: use that node")
        return run

    # -- do not call -----------------------------------------------------------------------

    async def add_dnc(self, numbers: list[str], reason: str = "") -> dict[str, Any]:
        """Add numbers to the do-not-call list; records not yet final with them stop being dialled."""
        clean: list[str] = []
        for n in numbers:
            try:
                clean.append(to_national(n))
            except NumberError as exc:
                raise CampaignError(f"{n}: {exc}") from None
        now = self.clock()
        added = await self._require_store().add_dnc([DncEntry(number=n, reason=reason, added=now) for n in clean])
        self.dnc.update(clean)
        blocked = 0
        for run in self.runs.values():
            for n in clean:
                for r in run.dialer.block(n):
                    self._mark(run, r.id)
                    blocked += 1
        return {"added": added, "records_blocked": blocked}

    async def remove_dnc(self, number: str) -> bool:
        """Take a number off the do-not-call list (records already blocked stay blocked)."""
        try:
            n = to_national(number)
        except NumberError as exc:
            raise CampaignError(f"{number}: {exc}") from None
        removed = await self._require_store().remove_dnc(n)
        self.dnc.discard(n)
        return removed

    async def list_dnc(self) -> list[dict[str, Any]]:
        """The do-not-call list."""
        return [{"number": e.number, "reason": e.reason, "added": e.added}
                for e in await self._require_store().list_dnc()]

    def _is_dnc(self, number: str) -> bool:
        return number in self.dnc

    # -- scheduled callbacks ---------------------------------------------------------------

    async def book_callback(self, spec: CallbackSpec, *, any_agent: bool = False) -> dict[str, Any]:
        """Book a callback; at `due` it is offered to the agent first, then to the queue. With
        `any_agent` (a caller booking through the IVR, where the agent comes from a CRM look-up),
        an agent the node does not know leaves the callback to the queue instead of refusing it."""
        if spec.queue not in {q.name for q in self.centre.config.queues}:
            raise CampaignError(f"no queue {spec.queue}")
        if spec.agent and spec.agent not in self.centre.agents:
            if not any_agent:
                raise CampaignError(f"{spec.agent} is not an agent")
            log.info("callback to %s: %s is not an agent here; the queue takes it", spec.number, spec.agent)
            spec = spec.model_copy(update={"agent": ""})
        try:
            number = to_national(spec.number)
        except NumberError:
            number = spec.number  # an extension, or a number the trunk knows better
        if not number.isdigit():
            raise CampaignError(f"{spec.number} is not a number to call")
        now = self.clock()
        cb = ScheduledCallback(id=uuid.uuid4().hex[:16], number=number, due=spec.due, queue=spec.queue,
                               agent=spec.agent, customer_id=spec.customer_id, note=spec.note, state="pending",
                               created=now, updated=now)
        await self._require_store().upsert_scheduled_callback(cb)
        self.callbacks[cb.id] = cb
        self._arm()
        return _callback_json(cb)

    def list_callbacks(self, state: str | None = None) -> list[dict[str, Any]]:
        """Booked callbacks, soonest first."""
        rows = sorted(self.callbacks.values(), key=lambda cb: cb.due)
        return [_callback_json(cb) for cb in rows if state is None or cb.state == state]

    async def cancel_callback(self, callback_id: str) -> dict[str, Any]:
        """Cancel a callback that is not being offered yet."""
        cb = self.callbacks.get(callback_id)
        if cb is None:
            raise CampaignNotFound(f"no callback {callback_id}")
        if cb.state != "pending":
            raise CampaignError(f"callback {callback_id} is {cb.state}")
        cb = replace(cb, state="cancelled", updated=self.clock())
        await self._require_store().upsert_scheduled_callback(cb)
        self.callbacks[callback_id] = cb
        return _callback_json(cb)

    def _due_callbacks(self, now: float) -> None:
        for cb in list(self.callbacks.values()):
            if (cb.state != "pending" or cb.due > now or self._callback_retry.get(cb.id, 0.0) > now
                    or cb.id in self._offering):
                continue
            self._offering.add(cb.id)
            self._callback_retry[cb.id] = now + CALLBACK_RETRY  # not again while this one is taken
            self._spawn(self._offer_callback(cb))

    async def _offer_callback(self, cb: ScheduledCallback) -> None:
        """Take the due callback in the store (so that one node only offers it), then queue it."""
        now = self.clock()
        try:
            taken = await self._require_store().take_scheduled_callback(cb.id, now)
        except StoreUnavailable as exc:
            log.warning("scheduled callback %s waits for the database: %s", cb.id, exc)
            self._arm()
            return
        finally:
            self._offering.discard(cb.id)
        self._callback_retry.pop(cb.id, None)
        if not taken:
            # Another node offers it, or it was cancelled there: this node forgets it.
            self.callbacks.pop(cb.id, None)
            return
        when = dt.datetime.fromtimestamp(cb.created, JST).strftime("%H:%M")
        reason = f"予約コールバック ({cb.agent or cb.queue} が {when} に予約)" + (f": {cb.note}" if cb.note else "")
        why = self.centre.schedule_callback(
            cb.id, cb.number, cb.queue, customer_id=cb.customer_id, agent=cb.agent or None, reason=reason,
            on_done=lambda outcome, cid=cb.id: self._callback_done(cid, outcome))
        if why is not None:
            log.warning("scheduled callback %s to %s not queued: %s", cb.id, cb.number, why)
        self._set_callback(replace(cb, state="offered" if why is None else "failed", updated=now))

    def _callback_done(self, callback_id: str, outcome: str) -> None:
        cb = self.callbacks.get(callback_id)
        if cb is not None:
            self._set_callback(replace(cb, state="done" if outcome == "connected" else "failed",
                                       updated=self.clock()))

    def _set_callback(self, cb: ScheduledCallback) -> None:
        self.callbacks[cb.id] = cb
        self._dirty_callbacks[cb.id] = cb
        self._flush_wanted.set()

    # -- pacing ----------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if isinstance(event, AgentStateChanged) and event.state == "offline":
            # An agent who logs out hands back the record they were previewing.
            for run in self.runs.values():
                self._release_preview(run, event.agent)
        self._pace_soon()

    def _release_preview(self, run: Run, agent: str) -> str | None:
        """The record `agent` holds in preview goes back to the list; its id, if there was one."""
        run.previews.pop(agent, None)
        held = run.dialer.release(agent, self.clock())
        if held is not None:
            self._mark(run, held)
        return held

    def _pace_soon(self) -> None:
        """Pace every campaign once, soon: a burst of agent changes costs one pass."""
        if self._pace_handle is None and not self._halted:
            self._pace_handle = asyncio.get_running_loop().call_soon(self._pace_all)

    def _on_timer(self) -> None:
        self._due_callbacks(self.clock())
        self._pace_all()

    def _pace_all(self) -> None:
        self._pace_handle = None
        now = self.clock()
        for run in self.runs.values():
            if run.spec.mode == "preview" or not run.dials_here(now) or run.blocked_until > now:
                continue
            try:
                self._pace(run, now)
            except Exception:
                log.exception("campaign %s: pacing failed", run.id)
        self._arm()

    def _pace(self, run: Run, now: float) -> None:
        open_now = run.spec.schedule.is_open(now)
        free = self.centre.engine.available_agents(run.spec.queue) if open_now else []
        for dial in run.dialer.pace(now, free, open=open_now):
            self._mark(run, dial.record_id)
            self._start_call(run, dial, self._customer_first(run, dial))
        if run.dialer.finished() and not run.calls and run.state == "running":
            run.state = "finished"
            run.leased_until = 0.0
            self._dirty_campaigns[run.id] = run.spec.to_campaign(run.state, run.created, now)
            self._flush_wanted.set()

    def _arm(self) -> None:
        if self._halted:
            return
        deadlines = [max(cb.due, self._callback_retry.get(cb.id, 0.0))
                     for cb in self.callbacks.values() if cb.state == "pending"]
        now = self.clock()
        for run in self.runs.values():
            # Preview campaigns dial when agents ask; retries already due go out when an agent frees.
            if not run.dials_here(now) or run.spec.mode == "preview":
                continue
            d = run.dialer.next_deadline(now)
            if d is not None:
                deadlines.append(d)
            if run.blocked_until > now:
                deadlines.append(run.blocked_until)
            if not run.spec.schedule.is_open(now):
                deadlines.append((now // SCHEDULE_RECHECK + 1) * SCHEDULE_RECHECK)
        self._timer.arm(min(deadlines) if deadlines else None)

    # -- calls -----------------------------------------------------------------------------

    def _start_call(self, run: Run, dial: Dial, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        run.calls.add(task)

        def done(t: asyncio.Task[None]) -> None:
            run.calls.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("campaign %s: call to record %s failed", run.id, dial.record_id, exc_info=t.exception())
            self._pace_soon()

        task.add_done_callback(done)

    async def _customer_first(self, run: Run, dial: Dial) -> None:
        """Progressive and predictive: dial the customer; once answered, the ACD finds the agent."""
        spec = run.spec
        started = self.clock()
        record = run.dialer.record(dial.record_id)
        assert record is not None
        result, agent, call_uuid, answered = Result.UNREACHABLE, "", "", None
        try:
            try:
                found = self.target_for(dial.number, spec.trunk or None, spec.caller_id)
                if found is not None:
                    room = self.trunk_room(found[1])
                    if room is not None and room - self._placing.get(found[1], 0) <= 0:
                        raise TrunkUnavailable(f"trunk {found[1]}: every channel is in use")
            except TrunkUnavailable as exc:
                # Not this number's fault: it goes back to the list without counting an attempt,
                # and the campaign waits a moment for a channel rather than trying again at once.
                log.info("campaign %s: %s", run.id, exc)
                run.blocked_until = self.clock() + TRUNK_FULL_PAUSE
                result = Result.SKIPPED
                return
            if found is None:
                log.warning("campaign %s: no trunk carries %s", run.id, dial.number)
                return
            target, trunk = found
            placing = [trunk]  # until the call exists and the trunk counts it
            self._placing[trunk] = self._placing.get(trunk, 0) + 1

            def placed() -> None:
                if placing:
                    self._placing[placing.pop()] -= 1

            try:
                cc, status = await PlacedCall.ring(self.services, spec.caller_id or spec.queue, dial.number,
                                                   [target], spec.ring_timeout, trunk=trunk, on_placed=placed)
            finally:
                placed()
            if cc is None:
                result = DIAL_RESULTS.get(status, Result.UNREACHABLE)
                return
            call_uuid = cc.call.uuid
            answered = self.clock()
            run.dialer.answered(dial.record_id, answered)
            try:
                result, agent = await self._to_agent(run, cc, record)
            finally:
                await cc._cleanup()
        finally:
            ended = self.clock()
            if agent:
                run.dialer.handle_ended(dial.record_id, ended)
            self._finish(run, dial, result, agent=agent, call_uuid=call_uuid, started=started,
                         answered=answered, ended=ended)

    async def _to_agent(self, run: Run, cc: PlacedCall, record: Record) -> tuple[Result, str]:
        """An answered customer joins the campaign's queue; predictive calls must find an agent
        within the connect window, or hear a short message and count as abandoned."""
        spec = run.spec
        cc.call.customer_id = record.customer_id
        cc.record_wanted = spec.record
        variables = {**record.fields, "customer_id": record.customer_id, "campaign": spec.id,
                     "campaign_name": spec.name or spec.id, "reason": f"発信キャンペーン {spec.name or spec.id}"}
        predictive = spec.mode == "predictive"
        cmd = c.EnqueueAcd(queue=spec.queue, priority=10, max_wait=spec.connect_window + 30.0 if predictive else 60.0,
                           variables=variables)
        queued = asyncio.ensure_future(
            self.centre.enqueue(cc, cmd, assign_within=spec.connect_window if predictive else None,
                                number=record.number))
        hung_up = asyncio.ensure_future(cc.ended.wait())
        try:
            await asyncio.wait({queued, hung_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hung_up.cancel()
        if not queued.done():
            queued.cancel()  # the customer hung up first
            await asyncio.gather(queued, return_exceptions=True)
            return Result.ABANDONED, ""
        outcome = queued.result()
        if outcome.outcome == "answered":
            run.dialer.connected(record.id, outcome.agent, self.clock())
            await cc.ended.wait()
            return Result.CONNECTED, outcome.agent
        await self._say_and_hang_up(cc, ABANDON_MESSAGE, "campaign_abandoned")
        return Result.ABANDONED, ""

    async def _preview_call(self, run: Run, dial: Dial, targets: list[Target]) -> None:
        """Preview: ring the agent's phone; when they answer, dial the customer and bridge them."""
        spec = run.spec
        agent = dial.agent or ""
        started = self.clock()
        result, call_uuid, answered = Result.UNREACHABLE, "", None
        paused = self._hold_agent(agent)
        try:
            cc, status = await PlacedCall.ring(self.services, dial.number, agent, targets, 30.0)
            if cc is None:
                # The agent did not pick up: the record was not dialled; it goes back to the list.
                result = Result.SKIPPED
                return
            call_uuid = cc.call.uuid
            try:
                record = run.dialer.record(dial.record_id)
                assert record is not None
                cc.call.agent = agent
                cc.call.customer_id = record.customer_id
                cc.record_wanted = spec.record
                try:
                    found = self.target_for(dial.number, spec.trunk or None, spec.caller_id)
                except TrunkUnavailable as exc:
                    log.warning("campaign %s: %s", run.id, exc)
                    result = Result.SKIPPED
                    found = None
                if found is None:
                    await self._say_and_hang_up(cc, PREVIEW_FAILED, "no_route")
                    return
                target, trunk = found
                cc.call.trunk = trunk
                leg = f"{cc.call.uuid}:b"
                out, status_code = await cc.originate(leg, [target], spec.ring_timeout, from_user=agent)
                if out is None:
                    result = DIAL_RESULTS.get(DIAL_STATUS.get(status_code, "failed"), Result.UNREACHABLE)
                    await self._say_and_hang_up(cc, PREVIEW_FAILED, "customer_" + str(result))
                    return
                answered = self.clock()
                run.dialer.answered(dial.record_id, answered)
                run.dialer.connected(dial.record_id, agent, answered)
                await cc.bridge(leg)
                await cc.ended.wait()
                run.dialer.handle_ended(dial.record_id, self.clock())
                result = Result.CONNECTED
            finally:
                await cc._cleanup()
        finally:
            if paused and self.centre.engine.agent_reason(agent) == OUTBOUND_PAUSE:
                self.centre.agent_action(agent, "ready")  # unless they paused for something else meanwhile
            self._finish(run, dial, result, agent=agent, call_uuid=call_uuid, started=started,
                         answered=answered, ended=self.clock())

    def _hold_agent(self, agent: str) -> bool:
        """Keep the ACD from offering inbound calls to an agent busy with a preview call."""
        from acd.model import AgentState

        if self.centre.engine.agent_state(agent) in (AgentState.OFFLINE, AgentState.PAUSED):
            return False
        return self.centre.agent_action(agent, "pause", OUTBOUND_PAUSE) is None

    async def _say_and_hang_up(self, cc: PlacedCall, text: str, cause: str) -> None:
        try:
            if not cc.ended.is_set():
                path = await self.services.tts.render(text, lang="ja")
                handle = await self.services.media.play(cc.a_leg, path)
                await asyncio.wait_for(handle.wait(), 15.0)
        except Exception:
            log.exception("campaign message failed")
        cc._hangup(cause)

    def _finish(self, run: Run, dial: Dial, result: Result, *, agent: str, call_uuid: str, started: float,
                answered: float | None, ended: float) -> None:
        """One attempt is over: the dialler learns its result, the store its record and attempt."""
        record = run.dialer.dial_result(dial.record_id, result, ended, agent=agent)
        if result != Result.SKIPPED:
            self._publish_attempt(run, record, result, agent=agent, call_uuid=call_uuid, started=started,
                                  answered=answered, ended=ended, attempt=dial.attempt)
            self._breaker(run, result, ended - started, ended)
        self._mark(run, dial.record_id)

    def _breaker(self, run: Run, result: Result, took: float, now: float) -> None:
        """Calls that fail at once, one after another (a carrier refusing the caller ID, a trunk
        answering 503, no route), would use up the whole list's attempts in seconds: after a few,
        the campaign pauses, longer each time, until a call gets through again."""
        if result != Result.UNREACHABLE or took >= FAST_FAILURE:
            run.failures, run.backoff = 0, 0.0
            return
        run.failures += 1
        if run.failures < BREAKER_FAILURES:
            return
        run.failures = 0
        run.backoff = min(max(run.backoff * 2, BREAKER_PAUSE), BREAKER_MAX_PAUSE)
        run.blocked_until = max(run.blocked_until, now + run.backoff)
        log.warning("campaign %s: %d calls in a row failed at once (trunk or carrier fault?); no dialling "
                    "for %.0f s", run.id, BREAKER_FAILURES, run.backoff)

    def _publish_attempt(self, run: Run, record: Record, result: Result, *, agent: str, call_uuid: str,
                         started: float, answered: float | None = None, ended: float | None = None,
                         attempt: int | None = None) -> None:
        self.bus.publish(CampaignAttempt(
            ts=self.clock(), campaign=run.id, record_id=record.id,
            attempt=record.attempts if attempt is None else attempt, number=record.number, result=str(result),
            customer_id=record.customer_id, agent=agent, call_uuid=call_uuid, started=started,
            answered=answered, ended=ended if ended is not None else self.clock()))

    # -- store ---------------------------------------------------------------------------------

    def _mark(self, run: Run, record_id: str) -> None:
        record = run.dialer.record(record_id)
        if record is not None:
            self._dirty[(run.id, record_id)] = _stored(run.id, record, self.clock())
            self._flush_wanted.set()

    async def _flush_loop(self) -> None:
        delay = FLUSH_EVERY
        while True:
            await self._flush_wanted.wait()
            await asyncio.sleep(delay)
            self._flush_wanted.clear()
            try:
                await self._flush()
                delay = FLUSH_EVERY
            except StoreUnavailable as exc:
                delay = min(max(delay * 2, 1.0), 30.0)
                log.warning("campaign records not written yet (%s); retrying in %.0f s", exc, delay)
                self._flush_wanted.set()
            except Exception:
                log.exception("writing campaign records failed")
                self._flush_wanted.set()
                delay = 5.0

    async def _flush(self) -> None:
        """Write changed records and callbacks; what fails stays pending for the next try."""
        store = self.store()
        if store is None:
            return
        if self._dirty:
            batch, self._dirty = self._dirty, {}
            try:
                await store.update_campaign_records(list(batch.values()))
            except BaseException:
                for k, v in batch.items():
                    self._dirty.setdefault(k, v)
                raise
        if self._dirty_campaigns:
            campaigns, self._dirty_campaigns = self._dirty_campaigns, {}
            for cid in list(campaigns):
                try:
                    if cid in self.runs:  # not deleted meanwhile
                        await store.upsert_campaign(campaigns[cid])
                        if campaigns[cid].state != "running":
                            await store.release_campaign(cid, self.owner)
                except BaseException:
                    for k, v in campaigns.items():
                        self._dirty_campaigns.setdefault(k, v)
                    raise
                del campaigns[cid]
        if self._dirty_callbacks:
            cbs, self._dirty_callbacks = self._dirty_callbacks, {}
            done: list[str] = []
            try:
                for cid, cb in cbs.items():
                    await store.upsert_scheduled_callback(cb)
                    done.append(cid)
            except BaseException:
                for cid, cb in cbs.items():
                    if cid not in done:
                        self._dirty_callbacks.setdefault(cid, cb)
                raise

    def _require_store(self) -> Store:
        store = self.store()
        if store is None:
            raise StoreUnavailable("the node has no store")
        return store

    def _run(self, campaign: str) -> Run:
        run = self.runs.get(campaign)
        if run is None:
            raise CampaignNotFound(f"no campaign {campaign}")
        return run

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("campaign background task failed", exc_info=t.exception())

        task.add_done_callback(done)


def _loaded(r: CampaignRecord, now: float) -> Record:
    state = RecordState(r.state)
    next_at = r.next_at
    if state == RecordState.PREVIEWING:
        state = RecordState.PENDING  # the agent's reservation went with the node
    elif state == RecordState.DIALLING:
        # Dialled by a node that stopped, or that lost its lease and may still be talking to the
        # customer: try again, but not before that call would be over.
        state, next_at = RecordState.RETRY, max(next_at, now + IN_FLIGHT_RETRY)
    return Record(id=r.id, number=r.number, customer_id=r.customer_id, fields=dict(r.fields), state=state,
                  attempts=r.attempts, next_at=next_at, last_result=r.last_result,
                  agent=r.agent if state != RecordState.PENDING else "")


def _callback_json(cb: ScheduledCallback) -> dict[str, Any]:
    return {"id": cb.id, "number": cb.number, "due": cb.due, "queue": cb.queue, "agent": cb.agent,
            "customer_id": cb.customer_id, "note": cb.note, "state": cb.state, "created": cb.created}
