"""Store benchmark: sustained events per second into PostgreSQL, and what the writer costs calls.

    .venv/bin/python bench/store.py                 # PostgreSQL at 127.0.0.1:5432, throw-away database
    .venv/bin/python bench/store.py --sqlite        # the embedded SQLite store instead
    .venv/bin/python bench/store.py --events 400000 --batch 2000

Three figures:
1. raw batched writes (`store.write_events`, one transaction per batch) in events/s;
2. end to end through the bus and the StoreWriter: events published at a steady rate by "call
   handlers" on the event loop, with the sustained rate at which they reach the database;
   (at the given rate and at twice it, to show the headroom);
3. the cost to call handling: `bus.publish` latency and event-loop lag (how late a 1 ms timer
   fires) while the writer is busy, next to the same figures with no writer attached.
The mix per call is the realistic one: call started, queue joined, queue answered, agent state,
CDR with two legs (5 events, 7 rows).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from softswitch.events import Event, EventBus
from softswitch.store import Store, StoreWriter, open_store
from softswitch.store.testing import create_database, drop_database, pg_url, sample_call

T0 = 1_790_000_000.0


def make_events(n: int, offset: int = 0) -> list[Event]:
    """About `n` events of the realistic per-call mix (built before timing starts)."""
    out: list[Event] = []
    i = offset
    while len(out) < n:
        out.extend(sample_call(i, ts=T0 + i, caller=f"03{i % 5000:08d}", answered=i % 8 != 0))
        i += 1
    return out[:n]


def pct(xs: list[float], p: float) -> float:
    """The p-th percentile of xs (nearest rank)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


async def raw_writes(store: Store, events: list[Event], batch: int) -> float:
    t = time.perf_counter()
    for k in range(0, len(events), batch):
        await store.write_events(events[k : k + batch])
    return len(events) / (time.perf_counter() - t)


async def loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    """How late a 1 ms sleep wakes up: the delay any call-handling callback would see."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - t - 0.001)


async def publish_stream(bus: EventBus, events: list[Event], rate: float, publish_lat: list[float]) -> float:
    """Publish `events` at `rate` per second in 1 ms slices, as call handlers would; returns duration."""
    per_tick = max(1, int(rate / 1000))
    t0 = time.perf_counter()
    k = 0
    while k < len(events):
        for ev in events[k : k + per_tick]:
            a = time.perf_counter()
            bus.publish(ev)
            publish_lat.append(time.perf_counter() - a)
        k += per_tick
        # Sleep until this slice's scheduled time: a steady offered load, not a burst.
        delay = t0 + k / rate - time.perf_counter()
        await asyncio.sleep(max(0.0, delay))
    return time.perf_counter() - t0


async def end_to_end(
    store: Store, spool: Path, events: list[Event], rate: float, batch: int, attach_writer: bool
) -> dict[str, float]:
    bus = EventBus()
    writer = StoreWriter(bus, store, spool, batch_size=batch, flush_interval=0.005)
    if attach_writer:
        await writer.start()
    lags: list[float] = []
    publish_lat: list[float] = []
    stop = asyncio.Event()
    lag_task = asyncio.create_task(loop_lag(stop, lags))
    t0 = time.perf_counter()
    pub_secs = await publish_stream(bus, events, rate, publish_lat)
    if attach_writer:
        await writer.drain(limit=600)
    total = time.perf_counter() - t0
    stop.set()
    await lag_task
    if attach_writer:
        await writer.stop()
    return {
        "offered_rate": len(events) / pub_secs,
        "stored_rate": len(events) / total if attach_writer else float("nan"),
        "publish_p50_us": pct(publish_lat, 50) * 1e6,
        "publish_p99_us": pct(publish_lat, 99) * 1e6,
        "publish_max_us": max(publish_lat) * 1e6,
        "lag_p50_ms": pct(lags, 50) * 1e3,
        "lag_p99_ms": pct(lags, 99) * 1e3,
        "lag_max_ms": max(lags) * 1e3 if lags else float("nan"),
        "batches": float(writer.batches),
        "spooled": float(writer.spooled),
    }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000, help="events for the raw write test")
    ap.add_argument("--batch", type=int, default=500, help="events per transaction (the writer default)")
    ap.add_argument("--rate", type=float, default=20_000, help="offered events/s in the end-to-end test")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of the end-to-end test")
    ap.add_argument("--sqlite", action="store_true", help="benchmark the SQLite store instead")
    args = ap.parse_args()

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        loop_name = "uvloop"
    except ImportError:  # pragma: no cover
        loop_name = "asyncio"

    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    dbname = None
    if args.sqlite:
        url = "sqlite:///bench.db"
    else:
        dbname = await create_database("softswitch_bench")
        url = pg_url(dbname)
    store = await open_store(url, base_dir=tmp, spool_dir=tmp / "spool")
    try:
        print(f"store bench: {'SQLite' if args.sqlite else 'PostgreSQL'} ({url}), loop: {loop_name}")
        events = make_events(args.events)
        rate = await raw_writes(store, events, args.batch)
        print(f"raw batched writes: {len(events)} events in batches of {args.batch}: {rate:,.0f} events/s")

        n = int(args.rate * args.seconds)
        base = await end_to_end(
            store, tmp / "spool", make_events(n, 10_000_000), args.rate, args.batch, False
        )
        runs = []
        for k, rate in enumerate((args.rate, args.rate * 2)):
            evs = make_events(int(rate * args.seconds), 20_000_000 + k * 10_000_000)
            runs.append((rate, await end_to_end(store, tmp / "spool", evs, rate, args.batch, True)))
        print(f"end to end via bus + StoreWriter, {args.seconds:.0f} s per offered rate:")
        for _rate, r in runs:
            print(f"  offered {r['offered_rate']:>8,.0f} events/s -> stored {r['stored_rate']:>8,.0f} events/s "
                  f"sustained ({r['batches']:.0f} batches, {r['spooled']:.0f} spooled)")  # fmt: skip
        head = "".join(f"{f'writer @ {rate / 1000:.0f}k/s':>18}" for rate, _ in runs)
        print(f"  call-path cost              no writer{head}")
        for key, label in (
            ("publish_p50_us", "bus.publish p50 (us)"),
            ("publish_p99_us", "bus.publish p99 (us)"),
            ("publish_max_us", "bus.publish max (us)"),
            ("lag_p50_ms", "loop lag p50 (ms)"),
            ("lag_p99_ms", "loop lag p99 (ms)"),
            ("lag_max_ms", "loop lag max (ms)"),
        ):
            cols = "".join(f"{r[key]:>18.2f}" for _, r in runs)
            print(f"  {label:<26}{base[key]:>11.2f}{cols}")
        print(f"  rows: cdrs={await store.count('cdrs')} queue_events={await store.count('queue_events')} "
              f"call_legs={await store.count('call_legs')}")  # fmt: skip
    finally:
        await store.close()
        if dbname:
            await drop_database(dbname)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
