"""bench/calls: the highest call rate a node sustains on one core, setup latency and memory per call.

A node (bench/_node.py: the real Node, uvloop) runs pinned to CPU 0. A SIPp uas registers once as
the callee and then answers on that port; a SIPp uac places calls from many digest-authenticated
users through the switch (INVITE, 401, ACK, INVITE with credentials, 180, 200, ACK, hold, BYE).
Both SIPps run pinned to CPU 1. Rates rise step by step, each step placing `--calls` calls held
`--hold` seconds so that many are established at once. A step passes when every call succeeded on
both sides and the setups kept at least 95 % of the asked rate.

Per step it prints: the asked and achieved setup rate, ok and failed calls (caller side; the callee
side must agree), setup latency p50/p99 (SIPp response-time distribution, -trace_rtt: first INVITE
to 200 with the digest round trip, and authenticated INVITE to 200), the node's CPU use, the peak
of established calls and the node's resident memory per 1,000 established calls (RSS at the peak
minus RSS before the step). After the ladder the node is asked, on SIGTERM, for its live
transactions, calls, dialog index entries and client callbacks, before and after every SIP timer
has fired; any left after the timers is a leak.

    .venv/bin/python bench/calls.py [--rates 300,400,500,550,600,700,800] [--calls 10000] [--hold 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.peers import SCENARIOS, free_port, write_users_inf  # noqa: E402

DOMAIN = "bench.local"
CALLEE = ("callee", "pw-callee")


def callers(n: int) -> list[tuple[str, str]]:
    """(id, password) of the calling users."""
    return [(f"c{i:05d}", f"pw{i:05d}") for i in range(n)]


def write_config(tmp: Path, port: int, users: list[tuple[str, str]]) -> Path:
    """A node config on loopback with every limit that would throttle a benchmark lifted."""
    lines = [
        "sip:",
        f"  listen: ['udp://127.0.0.1:{port}']",
        f"  domain: {DOMAIN}",
        "security:",
        "  rate_limit: 1000000",
        "  rate_burst: 1000000",
        "  auth_fail_limit: 1000000",
        "  digest_algorithms: [MD5]",
        f"database: 'sqlite:///{tmp / 'bench.db'}'",
        f"api: {{listen: '127.0.0.1:{free_port(kind=socket.SOCK_STREAM)}'}}",
        "directory:",
        "  users:",
    ]
    lines += [f"    - {{id: '{u}', password: '{p}'}}" for u, p in [*users, CALLEE]]
    path = tmp / "node.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """Samples a process's CPU seconds every 0.1 s in a thread, to get its use over any window."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.t0 = time.perf_counter()
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                self.samples.append((time.perf_counter() - self.t0, cpu_seconds(self.pid)))
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def use(self, start: float, end: float) -> float:
        """CPU use (1.0 = one core) between two times in seconds after the sampler started."""
        inside = [(t, c) for t, c in self.samples if start <= t <= end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return float("nan")
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


class NodeProcess:
    """bench/_node.py as a subprocess pinned to one CPU, with its JSON-lines stats file."""

    def __init__(self, config: Path, stats: Path, cpu: str, gc_mode: str = "tuned",
                 gc_thresholds: str | None = None) -> None:
        self.stats = stats
        self.proc = subprocess.Popen(
            ["taskset", "-c", cpu, sys.executable, str(ROOT / "bench" / "_node.py"),
             "--config", str(config), "--stats", str(stats), "--gc", gc_mode,
             *(["--gc-thresholds", gc_thresholds] if gc_thresholds else [])],
            cwd=ROOT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def records(self) -> list[dict]:
        if not self.stats.exists():
            return []
        return [json.loads(line) for line in self.stats.read_text().splitlines() if line.strip()]

    def _await_records(self, count: int, timeout: float) -> list[dict]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            recs = self.records()
            if len(recs) >= count:
                return recs
            if self.proc.poll() is not None:
                raise SystemExit(f"node exited with {self.proc.returncode}")
            time.sleep(0.05)
        raise SystemExit("node did not report")

    def wait_ready(self, timeout: float = 60.0) -> None:
        self._await_records(1, timeout)

    def report(self) -> dict:
        """Counts now, and the established-call peak (with RSS then) since the last report."""
        n = len(self.records())
        self.proc.send_signal(signal.SIGUSR1)
        return self._await_records(n + 1, 30.0)[n]

    def finish(self) -> tuple[dict, dict]:
        """Stop the node; its counts at the end and after every SIP timer fired."""
        n = len(self.records())
        self.proc.send_signal(signal.SIGTERM)
        recs = self._await_records(n + 2, 120.0)
        self.proc.wait(timeout=60)
        return recs[n], recs[n + 1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def sipp_args(scenario: str, port: int, remote: str | None, *extra: str) -> list[str]:
    """SIPp pinned to CPU 1, everything bound to loopback; a `remote` of None runs a uas."""
    return [
        "taskset", "-c", "1", "sipp", *([remote] if remote else []),
        "-sf", str(SCENARIOS / scenario),
        "-i", "127.0.0.1", "-p", str(port), "-ci", "127.0.0.1", "-mi", "127.0.0.1",
        "-t", "u1", "-nostdin", "-nr", "-nd", "-trace_err",
        *extra,
    ]


def counts(stdout: str) -> tuple[int, int]:
    ok = failed = -1
    for line in stdout.splitlines():
        if "Successful call" in line:
            ok = int(line.split("|")[2])
        if "Failed call" in line:
            failed = int(line.split("|")[2])
    return ok, failed


def register_callee(node_port: int, uas_port: int, tmp: Path) -> None:
    inf = write_users_inf(tmp / "callee.csv", [CALLEE], DOMAIN)
    proc = subprocess.run(
        sipp_args("register_only.xml", uas_port, f"127.0.0.1:{node_port}", "-inf", str(inf), "-m", "1",
                  "-timeout", "20s", "-timeout_error"),
        capture_output=True, text=True, errors="replace", check=False, cwd=tmp,
    )
    if proc.returncode != 0:
        raise SystemExit(f"callee registration failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def read_rtt(workdir: Path) -> dict[int, list[tuple[float, float]]]:
    """SIPp's -trace_rtt rows by rtd number: (date_ms, response_time_ms)."""
    out: dict[int, list[tuple[float, float]]] = {}
    for path in workdir.glob("bench_uac_*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.strip().split(";")
            if len(parts) < 3 or not parts[0]:
                continue
            try:
                out.setdefault(int(parts[2]), []).append((float(parts[0]), float(parts[1])))
            except ValueError:
                continue
        path.unlink()
    return out


def show_errors(workdir: Path, who: str) -> None:
    for log in workdir.glob("*_errors.log"):
        first = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][:8]
        if first:
            print(f"  {who} sipp errors ({log.name}):", *(line[:300] for line in first), sep="\n    ",
                  file=sys.stderr)
        log.unlink()


@dataclass
class Step:
    """The figures of one rate step."""

    rate: int
    calls: int
    ok: int
    failed: int
    callee_ok: int
    callee_failed: int
    rc: int
    achieved: float
    setup_p50: float
    setup_p99: float
    auth_invite_p50: float
    auth_invite_p99: float
    cpu: float
    sipp_cpu: float
    gc_longest_ms: float
    gc_detail: str
    peak_established: int
    kb_per_1000: float

    @property
    def sustained(self) -> bool:
        return (self.rc == 0 and self.failed == 0 and self.ok == self.calls and self.callee_failed == 0
                and self.callee_ok == self.calls and self.achieved >= 0.95 * self.rate)


def run_step(node: NodeProcess, node_port: int, uas_port: int, inf: Path, rate: int, calls: int,
             hold: float, workdir: Path) -> Step:
    before = node.report()
    # Both SIPps are children of this process: their CPU time shows in RUSAGE_CHILDREN once reaped.
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    timeout = int(calls / rate + hold + 60)
    uas = subprocess.Popen(
        sipp_args("bench_uas.xml", uas_port, None, "-m", str(calls), "-timeout", f"{timeout + 10}s",
                  "-timeout_error"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", cwd=workdir,
    )
    time.sleep(0.3)
    sampler = CpuSampler(node.pid)
    uac = subprocess.Popen(
        sipp_args("bench_uac.xml", free_port(), f"127.0.0.1:{node_port}", "-inf", str(inf), "-s", CALLEE[0],
                  "-r", str(rate), "-rp", "1000", "-m", str(calls), "-l", str(calls),
                  "-d", str(int(hold * 1000)), "-timeout", f"{timeout}s", "-timeout_error",
                  "-recv_timeout", "10000", "-trace_rtt", "-rtt_freq", "1000"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", cwd=workdir,
    )
    uac_out, _ = uac.communicate()
    wall = time.perf_counter() - sampler.t0
    sampler.stop()
    try:
        uas_out, _ = uas.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        uas.kill()
        uas_out, _ = uas.communicate()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sipp_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    peak = node.report()
    ok, failed = counts(uac_out)
    callee_ok, callee_failed = counts(uas_out)
    rc = uac.returncode or uas.returncode or 0
    if rc != 0:
        show_errors(workdir, "uac/uas")
    rtt = read_rtt(workdir)
    setups = rtt.get(1, [])
    auth = [ms for _, ms in rtt.get(2, [])]
    if len(setups) > 1:
        # The achieved rate is that of completed setups, from the first 200 to the last; the
        # node's CPU use is taken over the same window (SIPp's times count from its start).
        first = min(t for t, _ in setups) / 1000
        last = max(t for t, _ in setups) / 1000
        achieved = (len(setups) - 1) / max(last - first, 1e-3)
        cpu = sampler.use(first, last)
    else:
        achieved = 0.0
        cpu = float("nan")
    established = peak["peak_established"]
    grown = max(0, peak["rss_at_peak_kb"] - before["rss_kb"])
    return Step(
        rate=rate, calls=calls, ok=ok, failed=failed, callee_ok=callee_ok, callee_failed=callee_failed, rc=rc,
        achieved=achieved,
        setup_p50=percentile([ms for _, ms in setups], 0.5), setup_p99=percentile([ms for _, ms in setups], 0.99),
        auth_invite_p50=percentile(auth, 0.5), auth_invite_p99=percentile(auth, 0.99),
        cpu=cpu,
        sipp_cpu=sipp_cpu / wall if wall > 0 else 0.0,
        gc_longest_ms=max(peak.get("gc_longest_ms", [0.0])),
        gc_detail=" ".join(f"gen{g}:{n}x<={ms:.0f}ms" for g, (n, ms) in
                           enumerate(zip(peak.get("gc_collections", []), peak.get("gc_longest_ms", []), strict=False))),
        peak_established=established,
        kb_per_1000=grown / established * 1000 if established else float("nan"),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="300,400,500,550,600,700,800")
    parser.add_argument("--calls", type=int, default=10000, help="calls per step")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds each call stays up")
    parser.add_argument("--users", type=int, default=2000, help="distinct calling users")
    parser.add_argument("--gc", choices=("default", "tuned"), default="tuned",
                        help="the node's garbage collector: tuned as `softswitch run` does (frozen after "
                             "start-up, high thresholds), or Python's defaults for comparison")
    parser.add_argument("--gc-detail", action="store_true", help="print collections per generation per step")
    parser.add_argument("--gc-thresholds", help="with --gc tuned: gc.set_threshold values, e.g. 5000,10,1000000")
    args = parser.parse_args()
    for tool in ("sipp", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        node_port, uas_port = free_port(), free_port()
        users = callers(args.users)
        config = write_config(tmp, node_port, users)
        inf = write_users_inf(tmp / "callers.csv", users, DOMAIN)
        node = NodeProcess(config, tmp / "stats.jsonl", "0", args.gc, args.gc_thresholds)
        try:
            node.wait_ready()
            register_callee(node_port, uas_port, tmp)
            print(f"{'asked/s':>8} {'achieved/s':>10} {'ok':>7} {'failed':>6} {'callee ok':>9} "
                  f"{'setup p50/p99 ms':>17} {'auth INVITE p50/p99 ms':>22} {'node CPU':>8} {'SIPp CPU':>8} "
                  f"{'GC max ms':>9} "
                  f"{'peak estab.':>11} {'KB/1000 calls':>13}")
            passed: list[Step] = []
            for rate in (int(r) for r in args.rates.split(",")):
                step = run_step(node, node_port, uas_port, inf, rate, args.calls, args.hold, tmp)
                print(
                    f"{step.rate:>8} {step.achieved:>10.0f} {step.ok:>7} {step.failed:>6} {step.callee_ok:>9} "
                    f"{step.setup_p50:>8.0f}/{step.setup_p99:<8.0f} {step.auth_invite_p50:>11.0f}/"
                    f"{step.auth_invite_p99:<10.0f} {step.cpu * 100:>7.0f}% {step.sipp_cpu * 100:>7.0f}% "
                    f"{step.gc_longest_ms:>9.0f} {step.peak_established:>11} "
                    f"{step.kb_per_1000:>13.0f}"
                    + ("" if step.sustained else "   <- not sustained")
                    + (f"\n{'':>8} GC during the step: {step.gc_detail}" if args.gc_detail else ""),
                    flush=True,
                )
                if not step.sustained:
                    break
                passed.append(step)
            end, drained = node.finish()
        finally:
            node.kill()
    leaks = {k: drained[k] for k in ("transactions", "calls", "by_dialog", "by_invite", "client_callbacks")}
    live = {k: end[k] for k in leaks}
    print(f"after the run: live {live}; after every SIP timer fired {leaks}; "
          f"node peak memory {drained['hwm_kb'] / 1024:.0f} MB; objects in reference cycles found by a final "
          f"full collection: {drained.get('gc_unreachable')}"
          + (f"; calls that were still {drained['call_states_at_end']} at the end were waited for"
             if drained.get("call_states_at_end") else ""))
    if passed:
        best = max(passed, key=lambda s: s.rate)
        per_call = max(s.kb_per_1000 for s in passed) / 1000
        print(f"highest sustained: {best.rate} calls/s asked ({best.achieved:.0f}/s achieved) over "
              f"{best.calls} calls with none failed (one core, gc {args.gc}); setup p50 {best.setup_p50:.0f} ms, "
              f"p99 {best.setup_p99:.0f} ms (first INVITE to 200, digest included); "
              f"authenticated INVITE to 200 p50 {best.auth_invite_p50:.0f} ms, p99 {best.auth_invite_p99:.0f} ms; "
              f"memory {per_call:.1f} KB per established call (worst step, up to {max(s.peak_established for s in passed)} "
              f"at once); leaks {'none' if not any(leaks.values()) else leaks}")
    else:
        print(f"highest sustained: none of the rates; leaks {'none' if not any(leaks.values()) else leaks}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
