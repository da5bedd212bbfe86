"""The batching writer between the event bus and the store.

Publishing is a `put_nowait` on the writer's bus queue, so calls never wait for the database. One
intake task drains the queue in batches and writes each batch in one transaction. When the database
fails (or the backlog grows past `max_backlog`), batches go to the local spool instead, fsync'd,
and a replay task feeds the spool back, oldest segment first, once the database answers; while the
spool is not empty every new batch is spooled too, so spooled events reach the database in the
order they were published. Direct writes may overlap (`concurrency` transactions) because no table
depends on the order of batches: rows are keyed by event id, registrations keep the newest update
by timestamp and affinity counters add up. Replays are idempotent for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from softswitch.events import Event, EventBus
from softswitch.store.base import Store, StoreError, StoreUnavailable
from softswitch.store.spool import Spool

log = logging.getLogger(__name__)

_STOP = object()  # queue sentinel that ends the intake after everything before it


class StoreWriter:
    """Feeds bus events to a store in batches, spooling to disk while the database is away."""

    def __init__(
        self,
        bus: EventBus,
        store: Store,
        spool_dir: Path | None = None,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.05,
        concurrency: int = 2,
        max_backlog: int = 200_000,
        retry_interval: float = 0.25,
        max_retry_interval: float = 5.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._bus = bus
        self._store = store
        self.spool_dir = spool_dir if spool_dir is not None else store.spool_dir
        self._batch_size = batch_size
        self._concurrency = max(1, concurrency)
        self._flush_interval = flush_interval
        self._max_backlog = max_backlog
        self._retry_interval = retry_interval
        self._max_retry_interval = max_retry_interval
        self._stop_timeout = stop_timeout
        self._spool: Spool | None = None
        self._queue: asyncio.Queue[Any] | None = None
        self._intake: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._spool_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._closing = False  # the intake is done; the replayer finishes or gives up
        self._stopping = False  # stop() was called
        self._inflight: set[asyncio.Task[None]] = set()
        self._busy = 0  # batches taken from the queue and not yet handled
        # Counters for metrics and tests.
        self.spooling = False
        self.written = 0  # events handed to the store successfully (new or duplicate)
        self.spooled = 0
        self.replayed = 0
        self.rejected = 0
        self.batches = 0
        self.failures = 0
        self.lost = 0  # only when neither the database nor the spool disk worked at shutdown

    # ---- lifecycle ----
    async def start(self) -> None:
        """Subscribe to the bus and start writing; replays a spool left by an earlier run."""
        if self._intake is not None:
            raise RuntimeError("writer already started")
        self._spool = await asyncio.to_thread(Spool, self.spool_dir)
        # Unbounded on purpose: the store must not lose events; the backlog bound spills to disk.
        self._queue = self._bus.queue()
        if await asyncio.to_thread(self._spool.pending):
            log.warning("store spool in %s holds events from an earlier run; replaying", self.spool_dir)
            self.spooling = True
            self._wake.set()
        self._intake = asyncio.create_task(self._intake_loop(), name="store-writer-intake")
        self._replayer = asyncio.create_task(self._replay_loop(), name="store-writer-replay")

    async def stop(self) -> None:
        """Write out everything published so far: to the database, or durably to the spool."""
        if self._intake is None or self._queue is None:
            return
        self._stopping = True
        self._bus.unqueue(self._queue)
        self._queue.put_nowait(_STOP)
        await self._intake
        self._closing = True
        self._wake.set()
        if self._replayer is not None:
            try:
                await asyncio.wait_for(self._replayer, timeout=self._stop_timeout)
            except TimeoutError:
                log.warning("store writer stopped with events still spooled in %s", self.spool_dir)
        if self._spool is not None:
            async with self._spool_lock:
                await asyncio.to_thread(self._spool.close)
        self._intake = None
        self._replayer = None

    def abandon(self) -> None:
        """Stop at once without flushing, as a crash would (events already spooled stay on disk)."""
        for task in (self._intake, self._replayer, *self._inflight):
            if task is not None:
                task.cancel()
        if self._queue is not None:
            self._bus.unqueue(self._queue)
        self._intake = None
        self._replayer = None

    async def drain(self, limit: float = 30.0, *, spool_counts: bool = False) -> None:
        """Wait until every event published so far is in the database (tests, graceful hand-over).

        With `spool_counts`, events safely in the spool count as written too.
        """
        deadline = time.monotonic() + limit
        while True:
            idle = self._queue is not None and self._queue.empty() and self._busy == 0
            if idle and (spool_counts or not self.spooling):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"store writer not drained: backlog={self.backlog} spooling={self.spooling}"
                )
            await asyncio.sleep(0.01)

    @property
    def backlog(self) -> int:
        """Events waiting in memory."""
        return self._queue.qsize() if self._queue is not None else 0

    # ---- intake ----
    async def _intake_loop(self) -> None:
        assert self._queue is not None
        q = self._queue
        slots = asyncio.Semaphore(self._concurrency)
        inflight = self._inflight
        stop = False
        try:
            while not stop:
                first = await q.get()
                if first is _STOP:
                    break
                self._busy += 1
                batch: list[Event] = [first]
                stop = self._take(q, batch)
                if not stop and len(batch) < self._batch_size and self._flush_interval > 0:
                    # Let a trickle of events accumulate a little: fewer, larger transactions.
                    await asyncio.sleep(self._flush_interval)
                    stop = self._take(q, batch)
                if self.spooling:
                    # Spool appends stay in publication order: one at a time, on this task.
                    await self._handle_guarded(batch, None)
                    continue
                # Direct writes overlap (up to `concurrency` transactions) so the database can
                # use more than one core; order between batches does not matter to the schema.
                await slots.acquire()
                task = asyncio.create_task(self._handle_guarded(batch, slots))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
        finally:
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)

    async def _handle_guarded(self, batch: list[Event], slots: asyncio.Semaphore | None) -> None:
        """Handle a batch and never give up on it while running: the intake must not die.

        If neither the database nor the spool takes it (say the disk is full too), the batch is
        retried with back-off; meanwhile new events wait in memory on the bus queue. Only at
        shutdown, after a few more attempts, is it reported as lost.
        """
        delay = self._retry_interval
        attempts = 0
        try:
            while True:
                try:
                    if attempts == 0:
                        await self._handle(batch)
                    else:
                        await self._spool_append(batch)
                    return
                except Exception:
                    attempts += 1
                    log.exception("store writer could not store or spool a batch (attempt %d)", attempts)
                    if self._stopping and attempts >= 3:
                        self.lost += len(batch)
                        log.critical("store writer gave up on %d events at shutdown", len(batch))
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_retry_interval)
        finally:
            self._busy -= 1
            if slots is not None:
                slots.release()

    def _take(self, q: asyncio.Queue[Any], batch: list[Event]) -> bool:
        """Move queued events into `batch` up to the batch size; True when the stop sentinel came."""
        while len(batch) < self._batch_size:
            try:
                item = q.get_nowait()
            except asyncio.QueueEmpty:
                return False
            if item is _STOP:
                return True
            batch.append(item)
        return False

    async def _handle(self, batch: list[Event]) -> None:
        self.batches += 1
        if self.spooling or self.backlog > self._max_backlog:
            await self._spool_append(batch)
            return
        try:
            await self._store.write_events(batch)
            self.written += len(batch)
        except StoreUnavailable as exc:
            self.failures += 1
            log.warning("database unavailable, spooling events: %s", exc)
            await self._spool_append(batch)
        except StoreError as exc:
            log.error("database refused a batch, isolating bad events: %s", exc)
            await self._write_one_by_one(batch, replaying=False)

    async def _write_one_by_one(self, batch: Sequence[Event], *, replaying: bool) -> None:
        """Find the events the database refuses, set them aside, and store the rest."""
        assert self._spool is not None
        for i, ev in enumerate(batch):
            try:
                await self._store.write_events([ev])
            except StoreUnavailable:
                if replaying:
                    raise
                await self._spool_append(batch[i:])
                return
            except StoreError as exc:
                self.rejected += 1
                await asyncio.to_thread(self._spool.reject, [ev], str(exc))
                continue
            if replaying:
                self.replayed += 1
            else:
                self.written += 1

    async def _spool_append(self, batch: Sequence[Event]) -> None:
        assert self._spool is not None
        async with self._spool_lock:
            await asyncio.to_thread(self._spool.append, batch)
            self.spooled += len(batch)
            was_spooling, self.spooling = self.spooling, True
        if not was_spooling:
            # Only the first spooled batch wakes the replayer: during an outage it retries on its
            # own back-off instead of once per batch (each attempt closes a segment).
            self._wake.set()

    # ---- replay ----
    async def _replay_loop(self) -> None:
        delay = self._retry_interval
        while True:
            if not self.spooling:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            try:
                await self._replay_once()
                delay = self._retry_interval
            except Exception as exc:  # an unexpected error must not end the replays either
                self.failures += 1
                if not isinstance(exc, StoreUnavailable):
                    log.exception("spool replay failed unexpectedly")
                if self._closing:
                    log.warning("database still unavailable at shutdown; events stay spooled: %s", exc)
                    return
                log.info("spool replay failed, retrying in %.2fs: %s", delay, exc)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                delay = min(delay * 2, self._max_retry_interval)

    async def _replay_once(self) -> None:
        """Replay every closed segment; clears `spooling` when nothing is left."""
        assert self._spool is not None
        spool = self._spool
        await self._store.ping()  # before rolling: a failed attempt leaves the segments as they are
        async with self._spool_lock:
            segments = await asyncio.to_thread(spool.roll)
            if not segments:
                self.spooling = False
                log.info("spool replayed; writing directly to the database again")
                return
        for seg in segments:
            chunks = await asyncio.to_thread(spool.load, seg, self._batch_size)
            for chunk in chunks:
                try:
                    await self._store.write_events(chunk)
                    self.replayed += len(chunk)
                except StoreUnavailable:
                    raise
                except StoreError:
                    await self._write_one_by_one(chunk, replaying=True)
            await asyncio.to_thread(spool.remove, seg)
