"""bench/_node: a node for benchmarks that reports its object counts and memory.

Runs a `softswitch.app.Node` in-process (uvloop when installed) from a config file. Every half
second it samples the established calls and the resident memory, keeping the peak. On SIGUSR1 it
appends one JSON line of counts to `--stats` (and starts a new peak window); on SIGTERM it appends
the counts as they are, then the counts after every SIP timer has been made to fire (the clock of
the sans-IO transaction layer advanced by ten minutes), then stops. Whatever remains after the
timers fired is a leak.

    python bench/_node.py --config node.yaml --stats stats.jsonl [--gc default|tuned]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from softswitch.app import GC_THRESHOLDS, Node, install_uvloop, tune_gc  # noqa: E402
from softswitch.config import load_config  # noqa: E402
from softswitch.events import CallEnded  # noqa: E402

#: How far the transaction clock is pushed to fire every timer (Timer B/D/F/H/J/K are 64*T1 at most).
DRAIN_SECONDS = 600.0


def rss_kb() -> int:
    """Resident memory of this process now, in KiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def hwm_kb() -> int:
    """Peak resident memory of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class GcWatch:
    """Collections per generation and the longest pause, since the last report (a latency suspect)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]
        self.total = [0.0, 0.0, 0.0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        gen = info["generation"]
        pause = time.perf_counter() - self._started
        self.count[gen] += 1
        self.total[gen] += pause
        self.longest[gen] = max(self.longest[gen], pause)

    def take(self) -> dict[str, object]:
        out = {"gc_collections": list(self.count), "gc_longest_ms": [round(x * 1000, 1) for x in self.longest],
               "gc_total_ms": [round(x * 1000, 1) for x in self.total]}
        self.count = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]
        self.total = [0.0, 0.0, 0.0]
        return out


class Sampler:
    """Counts of the node's live objects and the memory peak since the last report."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.gc = GcWatch()
        self.peak_established = 0
        self.rss_at_peak = 0

    def established(self) -> int:
        return sum(1 for c in self.node.b2bua.calls.values() if c.state == "answered")

    def sample(self) -> None:
        n = self.established()
        if n >= self.peak_established:
            self.peak_established = n
            self.rss_at_peak = rss_kb()

    def counts(self, phase: str) -> dict[str, object]:
        node = self.node
        b2bua = node.b2bua
        return {
            "phase": phase,
            "transactions": len(node.transactions),
            "calls": len(b2bua),
            "by_dialog": len(b2bua._by_dialog),
            "by_invite": len(b2bua._by_invite),
            "client_callbacks": len(node._client_callbacks),
            "established": self.established(),
            "rss_kb": rss_kb(),
            "hwm_kb": hwm_kb(),
            "peak_established": self.peak_established,
            "rss_at_peak_kb": self.rss_at_peak,
            **self.gc.take(),
        }


def emit(path: Path, record: dict[str, object]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def drain(node: Node, future: float) -> None:
    """Fire every SIP transaction timer due before `future` (twice: firing can arm more)."""
    for _ in range(3):
        node._execute(node.transactions.tick(future))


async def run(config_path: Path, stats: Path, interval: float, gc_mode: str,
              thresholds: tuple[int, int, int]) -> int:
    node = Node(load_config(config_path))
    await node.start()
    if gc_mode == "tuned":
        # What `softswitch run` does after start-up (softswitch.app.tune_gc): what start-up built
        # leaves the collector's view, and full collections become rare.
        tune_gc(thresholds)
    sampler = Sampler(node)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def report() -> None:
        sampler.sample()
        emit(stats, sampler.counts("report"))
        sampler.peak_established = 0
        sampler.rss_at_peak = 0

    loop.add_signal_handler(signal.SIGUSR1, report)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    emit(stats, sampler.counts("ready"))
    while not stop.is_set():
        sampler.sample()
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass
    emit(stats, sampler.counts("end"))
    # Fire every SIP timer: transactions in their wait states (Timer D, J, K, ...) terminate.
    drain(node, loop.time() + DRAIN_SECONDS)
    waiting = {c.state for c in node.b2bua.calls.values()}
    if waiting:
        # Calls still ringing (a callee that rang and went away) end on the B2BUA's no-answer
        # timer, which runs on the event loop's clock: wait for it rather than call them leaks.
        idle = asyncio.Event()
        unsubscribe = node.bus.subscribe(lambda e: None if len(node.b2bua) else idle.set(), CallEnded)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(idle.wait(), node.b2bua.no_answer_timeout + 5.0)
        unsubscribe()
        drain(node, loop.time() + DRAIN_SECONDS)
    drained = sampler.counts("drained")
    drained["call_states_at_end"] = sorted(waiting)
    # Objects only the cyclic collector can free (reference cycles): with every call over, what a
    # full collection finds is garbage that reference counting could not reclaim when calls ended.
    gc.unfreeze()
    drained["gc_unreachable"] = gc.collect()
    emit(stats, drained)
    await node.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--gc", choices=("default", "tuned"), default="tuned",
                        help="tuned: as `softswitch run` (gc.freeze() after start-up, higher thresholds); "
                             "default: Python's own settings, for comparison")
    parser.add_argument("--gc-thresholds", default=",".join(map(str, GC_THRESHOLDS)),
                        help="the thresholds of --gc tuned (gc.set_threshold)")
    args = parser.parse_args()
    t0, t1, t2 = (int(x) for x in args.gc_thresholds.split(","))
    logging.basicConfig(level=logging.WARNING)
    install_uvloop()
    return asyncio.run(run(args.config, args.stats, args.interval, args.gc, (t0, t1, t2)))


if __name__ == "__main__":
    raise SystemExit(main())
