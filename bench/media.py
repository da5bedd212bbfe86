"""Relay benchmark: N concurrent G.711 calls relayed by LocalMediaBackend on 127.0.0.1.

A relay process (uvloop when installed; one event loop, so one core) anchors 2N legs bridged in
pairs; a separate load process (both pinned to different cores with --pin) plays both phones of every call,
sending 20 ms PCMU packets in both directions with a send timestamp in the payload, and measures
loss and the delay variation the relay adds. Printed per N: packets, loss, added jitter (transit
minus the stream's minimum transit) p50/p99/max, relay CPU (% of one core), load-process CPU, the
p99 lateness of a 10 ms timer inside the relay ("stall") and the share of the run during which
some task on the machine waited for a CPU (Linux PSI): on a shared machine the last two show
when delay came from scheduling rather than from the relay. --baseline adds a run of the same
load with the phones talking directly, without the relay; --bare a run through a forwarder that
does nothing but datagram_received -> sendto on the same loop (the floor for any asyncio relay).

    .venv/bin/python bench/media.py                    # N = 100, 200, 500, 1000; 10 s each
    .venv/bin/python bench/media.py --counts 100,500 --seconds 5 --baseline --bare
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import select
import socket
import struct
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ADDRESS = "127.0.0.1"
PTIME = 0.02
PAYLOAD = 160
HDR = struct.Struct("!BBHIIq")  # RTP header + send time (ns) at the start of the payload


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _renice(increment: int) -> None:
    if increment:
        with contextlib.suppress(OSError):
            os.nice(increment)


def _pin(cpu: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})


def relay_main(
    conn: Connection,
    n: int,
    ports: str,
    pin: bool,
    use_uvloop: bool = True,
    nice: int = 0,
    bare: bool = False,
) -> None:
    """The system under test: one process, one event loop."""
    _raise_fd_limit()
    _renice(nice)
    if pin:
        _pin(0)
    loop_name = "asyncio"
    if use_uvloop:
        try:
            import uvloop

            uvloop.install()
            loop_name = "uvloop"
        except ImportError:
            pass
    from media.local import LocalMediaBackend
    from media.sdp import Negotiated

    class Bare(asyncio.DatagramProtocol):
        """The floor: forward each datagram unchanged, no header work at all (--bare)."""

        peer: Bare
        transport: asyncio.DatagramTransport
        remote: tuple[str, int]

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.peer.transport.sendto(data, self.peer.remote)

    async def run_bare() -> None:
        loop = asyncio.get_running_loop()
        gen_ports: list[int] = conn.recv()
        legs: list[Bare] = []
        for gp in gen_ports:
            _, leg = await loop.create_datagram_endpoint(Bare, local_addr=(ADDRESS, 0))
            leg.remote = (ADDRESS, gp)
            legs.append(leg)
        for i in range(0, len(legs), 2):
            legs[i].peer, legs[i + 1].peer = legs[i + 1], legs[i]
        conn.send(([p.transport.get_extra_info("sockname")[1] for p in legs], loop_name + "-bare"))
        await measure(loop)

    async def measure(loop: asyncio.AbstractEventLoop) -> None:
        await loop.run_in_executor(None, conn.recv)  # "start"
        t0, w0 = os.times(), time.monotonic()
        lags: list[float] = []

        async def probe() -> None:
            # how late a 10 ms timer fires: the relay's own stalls, or the OS not scheduling it
            while True:
                t = loop.time()
                await asyncio.sleep(0.01)
                lags.append(loop.time() - t - 0.01)

        probe_task = asyncio.ensure_future(probe())
        await loop.run_in_executor(None, conn.recv)  # "stop"
        t1, w1 = os.times(), time.monotonic()
        probe_task.cancel()
        lags.sort()
        lag99 = lags[int(0.99 * (len(lags) - 1))] if lags else 0.0
        conn.send((((t1.user - t0.user) + (t1.system - t0.system)) / (w1 - w0), lag99))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        backend = LocalMediaBackend(
            ADDRESS, ports, rtp_timeout=3600.0, check_interval=1.0, recordings_dir="/tmp"
        )
        gen_ports: list[int] = conn.recv()
        local = []
        for i, gp in enumerate(gen_ports):
            ep = await backend.allocate(f"l{i}")
            await backend.set_remote(f"l{i}", Negotiated(ADDRESS, gp, "PCMU", 0, 101, "sendrecv"))
            local.append(ep.port)
        for i in range(0, len(gen_ports), 2):
            await backend.bridge(f"l{i}", f"l{i + 1}")
        conn.send((local, loop_name))
        await measure(loop)
        await backend.close()

    asyncio.run(run_bare() if bare else run())


def load_main(conn: Connection, n: int, seconds: float, warmup: float, pin: bool, nice: int = 0) -> None:
    """Both phones of every call: paced senders and a receiver on one epoll loop."""
    _raise_fd_limit()
    _renice(nice)
    if pin:
        _pin(1)
    legs = 2 * n
    socks = []
    for _ in range(legs):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        s.bind((ADDRESS, 0))
        s.setblocking(False)
        socks.append(s)
    conn.send([s.getsockname()[1] for s in socks])
    relay_ports: list[int] | None = conn.recv()
    if relay_ports is None:
        # baseline: each phone sends straight to its partner, measuring the load process and kernel alone
        relay_ports = [socks[i ^ 1].getsockname()[1] for i in range(legs)]
    dests = [(ADDRESS, p) for p in relay_ports]
    fd_index = {s.fileno(): i for i, s in enumerate(socks)}
    ep = select.epoll()
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
    pad = b"\xff" * (PAYLOAD - 8)
    seq = [0] * legs
    min_transit = [1 << 62] * legs
    transits: list[list[int]] = [[] for _ in range(legs)]
    sent = received = 0
    conn.recv()  # go
    cpu0 = os.times()
    start = time.monotonic() + 0.05
    measure_from = int((start + warmup) * 1e9)
    end = start + warmup + seconds
    offsets = [i * PTIME / legs for i in range(legs)]
    tick = 0
    i = 0
    mono_ns = time.monotonic_ns
    recv = [s.recv for s in socks]
    sendto = [s.sendto for s in socks]
    sending = True
    drain_until = end + 0.5
    while True:
        now = time.monotonic()
        if sending:
            # send every packet that is due, spread evenly over the 20 ms period
            while True:
                due = start + tick * PTIME + offsets[i]
                if due > now:
                    break
                if due >= end:
                    sending = False
                    break
                sq = seq[i]
                seq[i] = (sq + 1) & 0xFFFF
                with contextlib.suppress(BlockingIOError):
                    sendto[i](HDR.pack(0x80, 0, sq, (tick * 160) & 0xFFFFFFFF, i, mono_ns()) + pad, dests[i])
                    sent += 1
                i += 1
                if i == legs:
                    i = 0
                    tick += 1
            timeout = max(0.0, start + tick * PTIME + offsets[i] - time.monotonic()) if sending else 0.05
        else:
            if now >= drain_until:
                break
            timeout = 0.05
        for fd, _ev in ep.poll(timeout):
            k = fd_index[fd]
            r = recv[k]
            while True:
                try:
                    data = r(2048)
                except BlockingIOError:
                    break
                t = mono_ns()
                if len(data) != HDR.size + PAYLOAD - 8 or 72 <= (data[1] & 0x7F) <= 76:
                    continue  # the relay's RTCP reports (sent to our port + 1, another phone)
                sent_ns = HDR.unpack_from(data)[5]
                received += 1
                if sent_ns >= measure_from:
                    tr = t - sent_ns
                    transits[k].append(tr)
                    if tr < min_transit[k]:
                        min_transit[k] = tr
    cpu1 = os.times()
    added: list[int] = []
    for k in range(legs):
        m = min_transit[k]
        added.extend(x - m for x in transits[k])
    added.sort()

    def pct(p: float) -> float:
        return added[min(len(added) - 1, int(p * len(added)))] / 1e6 if added else float("nan")

    cpu = ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / (warmup + seconds + 0.55)
    conn.send(
        {
            "sent": sent,
            "received": received,
            "p50": pct(0.5),
            "p99": pct(0.99),
            "max": added[-1] / 1e6 if added else float("nan"),
            "cpu": cpu,
        }
    )
    for s in socks:
        s.close()


def cpu_pressure_us() -> int | None:
    """Total microseconds some task waited for a CPU (Linux PSI), to show a contended machine."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(line.rsplit("total=", 1)[1])


def _recv(conn: Connection, timeout: float = 120.0) -> Any:
    """Receive from a child, failing instead of hanging if it died."""
    if not conn.poll(timeout):
        raise RuntimeError("benchmark child process did not answer (see its traceback above)")
    return conn.recv()


def run_baseline(n: int, seconds: float, warmup: float, pin: bool, nice: int = 0) -> dict[str, float | str]:
    """The same load with no relay in the path: what the machine itself adds."""
    ctx = mp.get_context("spawn")
    l_parent, l_child = ctx.Pipe()
    load = ctx.Process(target=load_main, args=(l_child, n, seconds, warmup, pin, nice), daemon=True)
    load.start()
    try:
        _recv(l_parent)
        l_parent.send(None)
        l_parent.send("go")
        res = _recv(l_parent)
    finally:
        load.join(10)
        if load.is_alive():
            load.kill()
    res["relay_cpu"] = 0.0
    res["lag99"] = float("nan")
    res["loop"] = "direct"
    return res


def run_once(
    n: int,
    seconds: float,
    warmup: float,
    ports: str,
    pin: bool,
    use_uvloop: bool = True,
    nice: int = 0,
    bare: bool = False,
) -> dict[str, float | str]:
    ctx = mp.get_context("spawn")
    r_parent, r_child = ctx.Pipe()
    l_parent, l_child = ctx.Pipe()
    relay = ctx.Process(target=relay_main, args=(r_child, n, ports, pin, use_uvloop, nice, bare), daemon=True)
    load = ctx.Process(target=load_main, args=(l_child, n, seconds, warmup, pin, nice), daemon=True)
    relay.start()
    load.start()
    try:
        r_parent.send(_recv(l_parent))
        relay_ports, loop_name = _recv(r_parent)
        l_parent.send(relay_ports)
        r_parent.send("start")
        l_parent.send("go")
        res = _recv(l_parent)
        r_parent.send("stop")
        relay_cpu, lag99 = _recv(r_parent)
    finally:
        load.join(10)
        relay.join(10)
        for p in (load, relay):
            if p.is_alive():
                p.kill()
    res["relay_cpu"] = relay_cpu
    res["lag99"] = lag99
    res["loop"] = loop_name
    return res


def _timed(fn: Callable[[], dict[str, float | str]]) -> dict[str, float | str]:
    """Run one measurement and add the share of wall time tasks spent waiting for a CPU."""
    p0, w0 = cpu_pressure_us(), time.monotonic()
    r = fn()
    p1, w1 = cpu_pressure_us(), time.monotonic()
    r["psi"] = None if p0 is None or p1 is None else 100 * (p1 - p0) / 1e6 / (w1 - w0)  # type: ignore[assignment]
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--counts", default="100,200,500,1000", help="comma-separated numbers of concurrent calls"
    )
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--ports", default="30000-34999", help="RTP port range for the relay")
    ap.add_argument(
        "--baseline", action="store_true", help="also run each load without the relay (phones talk directly)"
    )
    ap.add_argument(
        "--bare",
        action="store_true",
        help="also run a bare forwarder (no header rewrite, no stats) on the same loop: the floor for comparison",
    )
    ap.add_argument("--no-uvloop", action="store_true", help="run the relay on the standard asyncio loop")
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness increment for relay and load (e.g. -10 as root, as media servers run)",
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="pin relay and load to different CPUs (only on an otherwise idle machine)",
    )
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.counts.split(",") if x.strip()]
    load1 = os.getloadavg()[0]
    print(
        f"# media relay benchmark: {os.cpu_count()} CPUs (load average {load1:.2f} before start), {args.seconds:.0f} s per run, "
        f"50 pps per direction per call, PCMU 20 ms, nice {args.nice:+d}{', pinned' if args.pin else ''}"
    )
    print(
        f"{'calls':>6} {'loop':>12} {'sent':>9} {'recv':>9} {'loss %':>8} {'jit p50 ms':>10} {'jit p99 ms':>10} {'jit max ms':>10} {'relay CPU':>9} {'load CPU':>8} {'stall p99':>10} {'CPU wait':>8}"
    )
    for n in counts:
        runs = []
        if args.baseline:
            runs.append(_timed(lambda n=n: run_baseline(n, args.seconds, args.warmup, args.pin, args.nice)))
        if args.bare:
            runs.append(
                _timed(
                    lambda n=n: run_once(
                        n,
                        args.seconds,
                        args.warmup,
                        args.ports,
                        args.pin,
                        not args.no_uvloop,
                        args.nice,
                        True,
                    )
                )
            )
        runs.append(
            _timed(
                lambda n=n: run_once(
                    n, args.seconds, args.warmup, args.ports, args.pin, not args.no_uvloop, args.nice
                )
            )
        )
        for r in runs:
            psi = r.get("psi")
            sent, recv = int(r["sent"]), int(r["received"])
            loss = 100.0 * (sent - recv) / sent if sent else float("nan")
            print(
                f"{n:>6} {r['loop']:>12} {sent:>9} {recv:>9} {loss:>8.3f} {r['p50']:>10.2f} {r['p99']:>10.2f} {r['max']:>10.2f} "
                f"{100 * float(r['relay_cpu']):>8.0f}% {100 * float(r['cpu']):>7.0f}% {1000 * float(r['lag99']):>10.2f} "
                f"{'n/a' if psi is None else f'{psi:.0f}%':>8}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
