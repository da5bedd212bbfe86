"""bench/register: the highest REGISTER rate (with digest) a node sustains on one core.

Starts a node pinned to CPU 0 (`softswitch run` with a generated config, uvloop) and drives it
with SIPp pinned to CPU 1: each SIPp call is one full digest registration (REGISTER, 401,
REGISTER with credentials, 200). Rates rise step by step; a step passes when every registration
succeeded and SIPp kept the asked rate. Prints, per step, the achieved rate, failures, the node's
CPU use, and at the end the highest sustained rate and the node's peak memory.

    .venv/bin/python bench/register.py [--rates 500,1000,2000,3000,4000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.calls import cpu_seconds, write_config  # noqa: E402  the node config both benches use
from tests.peers import SCENARIOS, free_port, write_users_inf  # noqa: E402

USERS = 5000
DOMAIN = "bench.local"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    import socket

    deadline = time.time() + timeout
    probe = (
        f"OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKw\r\n"
        f"From: <sip:b@{DOMAIN}>;tag=1\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: w\r\nCSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.5)
        while time.time() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"node exited with {proc.returncode}")
            s.sendto(probe, ("127.0.0.1", port))
            try:
                s.recvfrom(65535)
                return
            except TimeoutError:
                continue
    raise SystemExit("node did not come up")


def run_step(port: int, inf: Path, rate: int, seconds: float, node_pid: int, workdir: Path) -> dict:
    calls = int(rate * seconds)
    cpu0 = cpu_seconds(node_pid)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            "taskset", "-c", "1", "sipp", f"127.0.0.1:{port}",
            "-sf", str(SCENARIOS / "register_only.xml"), "-inf", str(inf),
            "-i", "127.0.0.1", "-p", str(free_port()), "-ci", "127.0.0.1", "-mi", "127.0.0.1",
            "-r", str(rate), "-rp", "1000", "-m", str(calls), "-l", str(max(100, rate)),
            "-t", "u1", "-nostdin", "-nr", "-timeout", f"{int(seconds * 4 + 20)}s", "-timeout_error",
            "-recv_timeout", "5000", "-max_socket", "1000", "-trace_err", "-nd",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=workdir,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        for log in workdir.glob("*_errors.log"):
            first = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][:8]
            print("  sipp errors:", *(line[:300] for line in first), sep="\n    ", file=sys.stderr)
            log.unlink()
    cpu = cpu_seconds(node_pid) - cpu0
    ok = failed = -1
    for line in proc.stdout.splitlines():
        if "Successful call" in line:
            ok = int(line.split("|")[2])
        if "Failed call" in line:
            failed = int(line.split("|")[2])
    return {
        "rate": rate,
        "calls": calls,
        "ok": ok,
        "failed": failed,
        "rc": proc.returncode,
        "achieved": ok / wall if wall > 0 and ok > 0 else 0.0,
        "cpu": cpu / wall if wall > 0 else 0.0,
        "wall": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="500,1000,1500,2000,2500,3000,3500,4000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--profile", help="write a py-spy flame graph (SVG) of the node to this file")
    args = parser.parse_args()
    for tool in ("sipp", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        port = free_port()
        config = write_config(tmp, port, [(f"b{i:05d}", f"pw{i:05d}") for i in range(USERS)])
        inf = write_users_inf(tmp / "users.csv", [(f"b{i:05d}", f"pw{i:05d}") for i in range(USERS)], DOMAIN)
        node = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "softswitch.cli", "run", "--config", str(config),
             "--log-level", "WARNING"],
            cwd=ROOT,
        )
        try:
            wait_for_port(port, node)
            spy = None
            if args.profile:
                spy = subprocess.Popen(["py-spy", "record", "-o", args.profile, "-p", str(node.pid), "-r", "200",
                                        "--nonblocking", "-f", "speedscope" if args.profile.endswith(".json") else "flamegraph"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            best = 0.0
            print(f"{'asked/s':>8} {'achieved/s':>11} {'ok':>7} {'failed':>7} {'node CPU':>9}   (registrations)")
            for rate in (int(r) for r in args.rates.split(",")):
                step = run_step(port, inf, rate, args.seconds, node.pid, tmp)
                print(
                    f"{step['rate']:>8} {step['achieved']:>11.0f} {step['ok']:>7} {step['failed']:>7} "
                    f"{step['cpu'] * 100:>8.0f}%",
                    flush=True,
                )
                sustained = step["failed"] == 0 and step["rc"] == 0 and step["achieved"] >= 0.95 * rate
                if not sustained:
                    break
                best = max(best, step["achieved"])
            if spy is not None:
                spy.send_signal(2)
                spy.wait(timeout=30)
            print(f"highest sustained: {best:.0f} digest registrations/s = {2 * best:.0f} REGISTER requests/s "
                  f"(each registration is REGISTER, 401, REGISTER with credentials, 200) on one core; "
                  f"node peak memory {peak_rss_mb(node.pid):.0f} MB")
        finally:
            node.terminate()
            node.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
