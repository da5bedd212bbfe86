"""Real SIP peers for integration tests: SIPp (Debian's sip-tester) driven as a subprocess.

SIPp opens its control and media sockets on 0.0.0.0 unless told otherwise; every run here binds
everything to a loopback address (`-i`, `-ci`, `-mi`) and is bounded in calls and time.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).parent / "sipp"


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_DGRAM) -> int:
    """A port that is free for both UDP and TCP on `host` right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        try:
            with socket.socket(socket.AF_INET, other) as s2:
                s2.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def free_port_block(host: str = "127.0.0.1", count: int = 4) -> int:
    """The first of `count` consecutive free UDP ports (SIPp's media uses -mp and -mp+2)."""
    for _ in range(100):
        base = free_port(host)
        if base + count > 65535 or base % 2:
            continue
        socks = []
        try:
            for offset in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((host, base + offset))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no free port block")


def require_sipp() -> str:
    path = shutil.which("sipp")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("sipp is not installed (Debian package sip-tester); scripts/bootstrap.sh installs it")
        pytest.skip("sipp is not installed (Debian package sip-tester)")
    return path


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    successful: int
    failed: int

    def explain(self) -> str:
        return f"sipp exit {self.returncode}, {self.successful} ok, {self.failed} failed\n{self.stderr[-3000:]}\n{self.stdout[-2000:]}"


_COUNTS = re.compile(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+).*?Failed call\s*\|\s*\d+\s*\|\s*(\d+)", re.S)


class SippProcess:
    """A running SIPp; `wait()` collects its result."""

    def __init__(self, proc: asyncio.subprocess.Process, timeout: float, port: int) -> None:
        self.proc = proc
        self.timeout = timeout
        self.port = port

    async def wait(self) -> SippResult:
        proc = self.proc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout + 30)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
        stdout = out.decode(errors="replace")
        stderr = err.decode(errors="replace")
        ok = failed = -1
        m = list(_COUNTS.finditer(stdout))
        if m:
            ok, failed = int(m[-1].group(1)), int(m[-1].group(2))
        return SippResult(proc.returncode or 0, stdout, stderr, ok, failed)

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


async def start_sipp(
    scenario: str | Path,
    remote: tuple[str, int] | None,
    *,
    local_ip: str = "127.0.0.1",
    port: int | None = None,
    calls: int = 1,
    rate: float = 10.0,
    transport: str = "udp",
    inf: Path | None = None,
    timeout: float = 60.0,
    extra: list[str] | None = None,
    limit: int | None = None,
    service: str | None = None,
) -> SippProcess:
    """Start SIPp with a scenario; a `remote` of None runs it as a server (uas)."""
    sipp = require_sipp()
    scen = Path(scenario)
    if not scen.is_absolute():
        scen = SCENARIOS / scen
    port = port or free_port(local_ip)
    args = [sipp]
    if remote is not None:
        args.append(f"{remote[0]}:{remote[1]}")
    args += [
        "-sf", str(scen),
        "-i", local_ip, "-p", str(port),
        "-ci", local_ip, "-mi", local_ip, "-mp", str(free_port_block(local_ip)),
        "-m", str(calls), "-r", str(rate),
        "-t", {"udp": "u1", "tcp": "t1", "tls": "l1"}[transport],
        "-nostdin", "-timeout", f"{int(timeout)}s", "-timeout_error",
        "-recv_timeout", "10000", "-nr",
    ]
    if limit is not None:
        args += ["-l", str(limit)]
    if inf is not None:
        args += ["-inf", str(inf)]
    if service is not None:
        args += ["-s", service]
    args += extra or []
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    return SippProcess(proc, timeout, port)


async def run_sipp(scenario: str | Path, remote: tuple[str, int], **kw) -> SippResult:
    """Run a SIPp client scenario to completion and return its counts."""
    return await (await start_sipp(scenario, remote, **kw)).wait()


def write_users_inf(path: Path, users: list[tuple[str, str]], domain: str) -> Path:
    """A SIPp injection file, used in order: user; the credentials keyword; domain.

    SIPp does not expand fields inside `[authentication ...]`, so the whole keyword is the field.
    """
    lines = ["SEQUENTIAL"] + [f"{u};[authentication username={u} password={p}];{domain}" for u, p in users]
    path.write_text("\n".join(lines) + "\n")
    return path
