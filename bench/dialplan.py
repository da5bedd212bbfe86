"""Dialplan costs: loading and checking the example configs, routing a call, running a call's steps.

Run: .venv/bin/python bench/dialplan.py [calls]

Prints the time to load + validate each example node config (with its dialplan), route selections
per second in a plan with 1,000 routes whose match is an `_0120XXXXXX`-style pattern (the worst
case: the last route matches), and complete mail-order calls (CRM lookup, hours check, menu,
queue, overflow to the outsourced centre) run through the sans-IO interpreter per second.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from softswitch.config import load_config
from softswitch.dialplan import commands as c
from softswitch.dialplan.interpreter import Interpreter
from softswitch.dialplan.loader import load_dialplan_text

EXAMPLES = Path(__file__).resolve().parent.parent / "dialplans"


def bench_load() -> None:
    for name in ("office.node.yaml", "mailorder-ja.node.yaml"):
        n = 20
        t0 = time.perf_counter()
        for _ in range(n):
            load_config(EXAMPLES / name)
        ms = (time.perf_counter() - t0) / n * 1000
        print(f"load+check {name:<24} {ms:8.2f} ms")


def bench_routing(lookups: int) -> None:
    routes = "\n".join(f"      - {{name: r{i}, match: {{did: '_0120{i:03d}XXX'}}, steps: [{{hangup: }}]}}"
                       for i in range(1000))
    plan = load_dialplan_text(f"contexts:\n  in:\n    trunks: all\n    routes:\n{routes}\n", "bench.yaml")
    t0 = time.perf_counter()
    for _ in range(lookups):
        m = plan.route("in", "0120999123", did="0120999123", now=0.0)
    dt_s = time.perf_counter() - t0
    assert m is not None and m.route.name == "r999"
    print(f"route selection, 1000 pattern routes, last matches: {lookups / dt_s:10.0f} /s "
          f"({dt_s / lookups * 1e6:.1f} us each)")


def bench_calls(calls: int) -> None:
    plan = load_config(EXAMPLES / "mailorder-ja.node.yaml").plan
    assert plan is not None
    now = dt.datetime(2026, 11, 24, 10, tzinfo=ZoneInfo("Asia/Tokyo")).timestamp()
    script: list[c.Result] = [c.HttpResult(200, {"customer": {"id": "C1", "vip": False}}), c.PlaybackDone(),
                              c.DigitsCollected("1"), c.PlaybackDone(), c.QueueResult("overflow"),
                              c.PlaybackDone(), c.DialResult("answered", "x")]
    t0 = time.perf_counter()
    commands = 0
    for _ in range(calls):
        m = plan.route("inbound", "0120123456", caller="0901234567", did="0120123456", trunk="ntt", now=now)
        assert m is not None
        it = Interpreter(plan, m, {"peak_season": "true"})
        commands += len(it.start(now))
        for result in script:
            commands += len(it.feed(result, now))
        assert it.outcome == "bridged"
    dt_s = time.perf_counter() - t0
    print(f"mail-order calls through the interpreter: {calls / dt_s:10.0f} calls/s "
          f"({commands / calls:.0f} commands each, {dt_s / calls * 1e6:.0f} us per call)")


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    bench_load()
    bench_routing(calls)
    bench_calls(calls)


if __name__ == "__main__":
    main()
