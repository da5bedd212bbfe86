"""Real baresip softphones against a real node, inside a private network namespace.

baresip opens sockets on every address of the host, so it only ever runs in a namespace of its own
(`unshare -n`), where the loopback is the only interface. The node, the phones and the code that
drives them therefore all live in that one namespace: this module is both the harness (classes
`Baresip` and `PhoneSpec`, usable from any asyncio code already inside a namespace) and the entry
point that the tests start under `unshare -n`:

    unshare -n python -m tests.baresip call --mic-a a.wav --mic-b b.wav --workdir DIR \
        [--seconds 3] [--answer auto|accept|reject|ignore] [--hangup-by a|b] [--ring 0.5]

It brings the loopback up, starts a node in-process, two baresips with their own config folders
(G.711, a WAV file as microphone, both audio directions recorded to WAV by the sndfile filter, JSON
control over TCP by ctrl_tcp), has phone A call phone B (which answers by itself, accepts after
ringing, rejects, or is given up on), talks for a few seconds, hangs up, and prints one JSON object
on its last line of stdout (see `call_scenario`). `run_scenario` does the `unshare` from outside
and parses that JSON.

    unshare -n python -m tests.baresip media --workdir DIR --mic-a a.wav --number 800|801|802 \
        [--mic-b b.wav] [--seconds 2] [--digits 1234] [--tts-cache DIR] [--no-telephone-event]

runs `media_scenario`: a node with a dialplan (`MEDIA_DIALPLAN`: 800 records and dials phone B,
801 speaks `TTS_PROMPT`, 802 gathers 4 digits) whose media the switch anchors itself; phone A
dials a route, may send DTMF with `sndcode`, and the JSON tells what the switch saw (CDR,
RecordingSaved, detected digits with their source). `run_media_scenario` runs it from outside.

baresip 1.0 quirks this relies on: `net_interface` takes an address, not `lo`; REGISTER_OK may
be sent before the control connection exists, so registration is read back with `reginfo`;
sndfile names its files dump-<time>-enc.wav (sent) and -dec.wav (received); `sip_listen` also
takes the next port for TLS, so control ports must not be SIP port + 1; the offer always carries
telephone-event (`SdpFilterRelay` strips it when a test needs DTMF in-band only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: Events baresip's ctrl_tcp reports that the harness waits for.
REGISTER_OK = "REGISTER_OK"
CALL_ESTABLISHED = "CALL_ESTABLISHED"
CALL_CLOSED = "CALL_CLOSED"
CALL_INCOMING = "CALL_INCOMING"
CALL_RINGING = "CALL_RINGING"


def missing_tools() -> list[str]:
    """The tools a baresip scenario needs that are not installed."""
    return [t for t in ("baresip", "unshare", "ip") if shutil.which(t) is None]


def require_baresip() -> None:
    """Skip (or, under CI, fail) when baresip or a private network namespace is not available."""
    import pytest

    missing = missing_tools()
    reason = ""
    if missing:
        reason = f"{', '.join(missing)} not installed (Debian packages baresip, util-linux, iproute2)"
    else:
        probe = subprocess.run([*unshare_command(), "true"], capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            reason = f"cannot create a network namespace ({' '.join(unshare_command())}): {probe.stderr.strip()}"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason + "; scripts/bootstrap.sh installs baresip")
        pytest.skip(reason)


def unshare_command() -> list[str]:
    """`unshare -n` as root; otherwise also a user namespace (`-r`) so that no privilege is needed."""
    return ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]


def in_private_netns() -> bool:
    """True when the loopback is this process's only network interface (as after `unshare -n`).

    That is what matters here (baresip can reach nothing else), and unlike comparing namespace
    links with PID 1's it needs no permission to read another process's /proc entries.
    """
    try:
        lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    except OSError:
        return False
    return [line.split(":", 1)[0].strip() for line in lines] == ["lo"]


def netstring(payload: bytes) -> bytes:
    """Frame bytes as a netstring (`<len>:<payload>,`), as ctrl_tcp expects."""
    return str(len(payload)).encode() + b":" + payload + b","


class NetstringReader:
    """Splits a byte stream into netstring payloads."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the payloads now complete."""
        self._buf += data
        out: list[bytes] = []
        while True:
            colon = self._buf.find(b":")
            if colon < 0:
                return out
            try:
                size = int(self._buf[:colon])
            except ValueError as exc:
                raise ValueError(f"bad netstring header {self._buf[:20]!r}") from exc
            end = colon + 1 + size
            if len(self._buf) < end + 1:
                return out
            out.append(self._buf[colon + 1 : end])
            self._buf = self._buf[end + 1 :]


@dataclass
class PhoneSpec:
    """One softphone: its account at the registrar, its ports, its microphone and recordings."""

    name: str
    user: str
    password: str
    registrar: tuple[str, int]
    sip_port: int
    ctrl_port: int
    rtp_ports: tuple[int, int]
    mic: Path
    auto_answer: bool = False
    regint: int = 600

    def account_line(self) -> str:
        """The line of baresip's `accounts` file: digest credentials, answer mode, G.711 only."""
        host, port = self.registrar
        mode = ";answermode=auto" if self.auto_answer else ";answermode=manual"
        return (f"<sip:{self.user}@{host}:{port};transport=udp>;auth_user={self.user};auth_pass={self.password}"
                f";regint={self.regint}{mode};audio_codecs=PCMU,PCMA;medianat=;mediaenc=\n")

    def config_text(self, record_dir: Path) -> str:
        """baresip's `config` file: loopback only, no sound device, recordings in `record_dir`."""
        lines = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            "net_interface 127.0.0.1",
            "call_local_timeout 30",
            "call_max_calls 4",
            # A file is the microphone; the decoder side needs a player, which aubridge provides
            # without any sound device (the sndfile filter records both directions before it).
            f"audio_source aufile,{self.mic}",
            "audio_player aubridge,nowhere",
            "audio_alert aubridge,nowhere",
            "ausrc_srate 8000",
            "auplay_srate 8000",
            "ausrc_channels 1",
            "auplay_channels 1",
            "audio_buffer 20-160",
            f"rtp_ports {self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "rtcp_mux no",
            "jitter_buffer_delay 1-10",
            "module_path /usr/lib/baresip/modules",
            "module g711.so",
            "module aufile.so",
            "module aubridge.so",
            "module sndfile.so",
            "module_tmp uuid.so",
            "module_tmp account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
            f"snd_path {record_dir}",
        ]
        return "\n".join(lines) + "\n"


@dataclass
class Baresip:
    """A running baresip, driven over ctrl_tcp: commands with tokens, events in a queue."""

    spec: PhoneSpec
    workdir: Path
    proc: asyncio.subprocess.Process | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _task: asyncio.Task[None] | None = None
    _responses: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _tokens: int = 0
    reginfo: str = ""

    @property
    def config_dir(self) -> Path:
        return self.workdir / "config"

    @property
    def record_dir(self) -> Path:
        return self.workdir / "recordings"

    @property
    def log_path(self) -> Path:
        return self.workdir / "baresip.log"

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.record_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "config").write_text(self.spec.config_text(self.record_dir))
        (self.config_dir / "accounts").write_text(self.spec.account_line())
        (self.config_dir / "contacts").write_text("")

    async def start(self, timeout: float = 5.0) -> None:
        """Start baresip and connect to its control port."""
        if not in_private_netns():
            raise RuntimeError("baresip listens on every address: run it in a private network namespace")
        self.write_config()
        log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            "baresip", "-f", str(self.config_dir), "-v",
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
            cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.spec.ctrl_port)
                break
            except OSError:
                if self.proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.spec.name}: baresip control port did not open; "
                                       f"log:\n{self.log_tail()}") from None
                await asyncio.sleep(0.05)
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self._reader is not None
        frames = NetstringReader()
        while True:
            data = await self._reader.read(65536)
            if not data:
                return
            for payload in frames.feed(data):
                try:
                    msg = json.loads(payload)
                except ValueError:
                    continue
                if msg.get("response"):
                    fut = self._responses.pop(str(msg.get("token", "")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif msg.get("event"):
                    msg["at"] = time.monotonic()
                    self.events.append(msg)
                    self._changed.set()

    async def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Send a ctrl_tcp command and wait for its response."""
        assert self._writer is not None
        self._tokens += 1
        token = str(self._tokens)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._responses[token] = fut
        body = {"command": command, "params": params, "token": token}
        self._writer.write(netstring(json.dumps(body).encode()))
        await self._writer.drain()
        return await asyncio.wait_for(fut, timeout)

    def seen(self, kind: str) -> dict[str, Any] | None:
        """The first event of a type, if it came."""
        return next((e for e in self.events if e.get("type") == kind), None)

    async def wait_event(self, kind: str, timeout: float = 5.0) -> dict[str, Any] | None:
        """The first event of a type, waiting for it up to `timeout` seconds (None if it never came)."""
        deadline = time.monotonic() + timeout
        while (found := self.seen(kind)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return found

    async def stop(self, timeout: float = 3.0) -> None:
        """Ask baresip to quit (it unregisters), kill it when it lingers."""
        if self.proc is None:
            return
        if self.proc.returncode is None and self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.write(netstring(json.dumps({"command": "quit", "params": "", "token": "q"}).encode()))
                await self._writer.drain()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._writer is not None:
            self._writer.close()

    def recordings(self) -> dict[str, str]:
        """The WAVs sndfile wrote: 'enc' is what this phone sent, 'dec' what it received."""
        out: dict[str, str] = {}
        for path in sorted(self.record_dir.glob("*.wav")):
            for side in ("enc", "dec"):
                if path.stem.endswith(f"-{side}"):
                    out[side] = str(path)
        return out

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def registered(node: Any, phone: Baresip, timeout: float) -> bool:
    """Both ends agree the phone is registered: the node has a binding, baresip says OK.

    baresip may register before the control connection is up (its REGISTER_OK event is then
    lost), so its view is read with the `reginfo` command.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.registrar.is_registered(phone.spec.user, time.time()):
            info = await phone.command("reginfo")
            phone.reginfo = re.sub(r"\x1b\[[0-9;]*m", "", str(info.get("data", "")))
            if phone.seen(REGISTER_OK) is not None or re.search(r"\bOK\b", phone.reginfo):
                return True
        await asyncio.sleep(0.05)
    return False


def wav_seconds(path: str | Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


#: How phone B deals with the incoming call in `call_scenario`.
ANSWER_MODES = ("auto", "accept", "reject", "ignore")


async def call_scenario(workdir: Path, mic_a: Path, mic_b: Path, seconds: float = 3.0, *,
                        answer: str = "auto", hangup_by: str = "a", ring: float = 0.5) -> dict[str, Any]:
    """Phone A (1001) calls phone B (1002) through a fresh node.

    `answer`: 'auto' (B answers at once by itself), 'accept' (B rings `ring` seconds, then the
    `accept` command), 'reject' (B rings, then hangs up before answering), 'ignore' (B rings and
    A gives up after `ring` seconds: a CANCEL). An answered call lasts `seconds`, then the phone
    named by `hangup_by` ('a' or 'b') hangs up.

    Returns: registered, incoming (B saw the call), ringing (A heard ringing), established, closed
    and closed_reason (baresip's words, e.g. '486 Busy Here'; each per phone), setup_seconds, talk_seconds, the node's CDR (disposition, hangup side and
    cause, start/answer/end, how many), the recordings per phone ({'enc': what it sent, 'dec':
    what it received}) and their lengths, the event types each phone reported, and on failure the
    tails of the phones' logs.
    """
    from softswitch.events import CDR
    from tests.nodes import node_config, running_node
    from tests.peers import free_port

    if answer not in ANSWER_MODES or hangup_by not in ("a", "b"):
        raise ValueError(f"answer must be one of {ANSWER_MODES} and hangup_by 'a' or 'b'")
    users = [("1001", "pw-1001-secret"), ("1002", "pw-1002-secret")]
    per_phone = ("registered", "incoming", "ringing", "established", "closed")
    result: dict[str, Any] = {key: {} for key in per_phone}
    result.update(answer=answer, hangup_by=hangup_by, recordings={})
    async with running_node(node_config(workdir, users=users, transports=("udp",))) as node:
        cdrs: list[CDR] = []
        node.bus.subscribe(cdrs.append, CDR)
        registrar = node.address("udp")
        phones = {
            "a": Baresip(PhoneSpec("a", "1001", users[0][1], registrar, free_port(), free_port(),
                                   (20000, 20099), mic_a), workdir / "phone-a"),
            "b": Baresip(PhoneSpec("b", "1002", users[1][1], registrar, free_port(), free_port(),
                                   (20100, 20199), mic_b, auto_answer=answer == "auto"), workdir / "phone-b"),
        }
        a, b = phones["a"], phones["b"]
        try:
            for phone in phones.values():
                await phone.start()
            for name, phone in phones.items():
                result["registered"][name] = await registered(node, phone, 5.0)
            if all(result["registered"].values()):
                await _place_call(result, a, b, registrar, answer, hangup_by, seconds, ring)
                for _ in range(40):
                    if cdrs:
                        break
                    await asyncio.sleep(0.05)
        finally:
            for phone in phones.values():
                await phone.stop()
        result["calls_left"] = len(node.b2bua)
    for name, phone in phones.items():
        result["incoming"][name] = phone.seen(CALL_INCOMING) is not None
        result["ringing"][name] = phone.seen(CALL_RINGING) is not None
        closed = phone.seen(CALL_CLOSED)
        result.setdefault("closed_reason", {})[name] = str(closed.get("param", "")) if closed else ""
    if cdrs:
        cdr = cdrs[0]
        result["cdr"] = {"caller": cdr.caller, "callee": cdr.callee, "disposition": cdr.disposition,
                         "hangup_side": cdr.hangup_side, "hangup_cause": cdr.hangup_cause,
                         "start": cdr.start, "answer": cdr.answer, "end": cdr.end, "count": len(cdrs)}
    for name, phone in phones.items():
        recs = phone.recordings()
        result["recordings"][name] = recs
        result.setdefault("recorded_seconds", {})[name] = {k: round(wav_seconds(v), 3) for k, v in recs.items()}
        result.setdefault("events", {})[name] = [e.get("type") for e in phone.events]
        result.setdefault("reginfo", {})[name] = phone.reginfo
    expect_answer = answer in ("auto", "accept")
    ok = (all(result["registered"].values()) and all(result["closed"].values())
          and (not expect_answer or all(result["established"].values())))
    if not ok:
        result["logs"] = {name: phone.log_tail() for name, phone in phones.items()}
    return result


async def _place_call(result: dict[str, Any], a: Baresip, b: Baresip, registrar: tuple[str, int],
                      answer: str, hangup_by: str, seconds: float, ring: float) -> None:
    """The call itself, recording what happened into `result` (see `call_scenario`)."""
    phones = {"a": a, "b": b}
    t0 = time.monotonic()
    host, port = registrar
    result["dial"] = await a.command("dial", f"sip:1002@{host}:{port}")
    if answer != "auto":
        if await b.wait_event(CALL_INCOMING, 5.0) is None:
            return
        await asyncio.sleep(ring)
        if answer == "accept":
            result["accept"] = await b.command("accept")
        elif answer == "reject":
            result["reject"] = await b.command("hangup")
        else:
            result["cancel"] = await a.command("hangup")
    if answer in ("reject", "ignore"):
        for name, phone in phones.items():
            result["closed"][name] = await phone.wait_event(CALL_CLOSED, 5.0) is not None
            result["established"][name] = phone.seen(CALL_ESTABLISHED) is not None
        return
    for name, phone in phones.items():
        result["established"][name] = await phone.wait_event(CALL_ESTABLISHED, 5.0) is not None
    if not all(result["established"].values()):
        return
    result["setup_seconds"] = round(time.monotonic() - t0, 3)
    await asyncio.sleep(seconds)
    t1 = time.monotonic()
    result["hangup"] = await phones[hangup_by].command("hangup")
    for name, phone in phones.items():
        result["closed"][name] = await phone.wait_event(CALL_CLOSED, 5.0) is not None
    established_at = min(p.seen(CALL_ESTABLISHED)["at"] for p in phones.values())  # type: ignore[index]
    result["talk_seconds"] = round(t1 - established_at, 3)


def run_scenario(workdir: Path, mic_a: Path, mic_b: Path, seconds: float = 3.0, *, answer: str = "auto",
                 hangup_by: str = "a", ring: float = 0.5, timeout: float = 40.0) -> dict[str, Any]:
    """Run `call_scenario` under `unshare -n` (from outside any namespace) and return its JSON result."""
    proc = subprocess.run(
        [*unshare_command(), sys.executable, "-m", "tests.baresip", "call", "--workdir", str(workdir),
         "--mic-a", str(mic_a), "--mic-b", str(mic_b), "--seconds", str(seconds), "--answer", answer,
         "--hangup-by", hangup_by, "--ring", str(ring)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"scenario failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


#: The dialplan of `media_scenario`: routes that make the switch answer and anchor the media itself.
MEDIA_DIALPLAN = """\
version: 1
contexts:
  internal:
    users: all
    routes:
      - name: recorded-call
        match: {number: "800"}
        steps:
          - record: start
          - dial: {users: ["1002"], timeout: 10}
          - hangup:
      - name: tts-prompt
        match: {number: "801"}
        steps:
          - answer:
          - say: "${prompt}"
          - hangup:
      - name: gather-digits
        match: {number: "802"}
        steps:
          - answer:
          - gather: {into: code, max_digits: 4, timeout: 8, terminator: ""}
          - hangup:
"""

#: The prompt route 801 speaks (tests render the same text to compare lengths).
TTS_PROMPT = "お電話ありがとうございます。ただいま電話が大変混み合っております。"


def strip_telephone_event(message: bytes) -> bytes:
    """A SIP message whose SDP offers no telephone-event (RFC 4733) format; others unchanged.

    baresip 1.0 always adds telephone-event to its offer (no setting turns it off), so a call
    that must carry DTMF in-band has its offer filtered on the way to the switch.
    """
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep or b"telephone-event" not in body:
        return message
    lines = body.decode().split("\r\n")
    pts = {ln.split()[0].split(":")[1] for ln in lines if ln.startswith("a=rtpmap:") and "telephone-event" in ln}
    out = []
    for ln in lines:
        if ln.startswith("m=audio "):
            words = ln.split(" ")
            ln = " ".join(words[:3] + [w for w in words[3:] if w not in pts])
        elif ln.startswith(("a=rtpmap:", "a=fmtp:")) and ln.split()[0].split(":")[1] in pts:
            continue
        out.append(ln)
    new_body = "\r\n".join(out).encode()
    head = re.sub(rb"(?im)^(content-length|l)[ \t]*:[ \t]*\d+", lambda m: m.group(1) + b": " + str(len(new_body)).encode(),
                  head)
    return head + sep + new_body


class SdpFilterRelay(asyncio.DatagramProtocol):
    """A UDP relay in front of the switch that strips telephone-event from what the phone sends.

    Everything from the switch goes back to the phone's last address; everything else goes to
    the switch, filtered by `strip_telephone_event`.
    """

    def __init__(self, switch: tuple[str, int]) -> None:
        self.switch = switch
        self.phone: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.stripped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
        assert self.transport is not None
        if addr == self.switch:
            if self.phone is not None:
                self.transport.sendto(data, self.phone)
            return
        self.phone = addr
        filtered = strip_telephone_event(data)
        self.stripped += filtered != data
        self.transport.sendto(filtered, self.switch)


def write_media_node(workdir: Path, tts_cache: Path | None = None) -> Path:
    """A node config (users 1001 and 1002, `MEDIA_DIALPLAN`) in `workdir`; returns its path.

    Nothing else runs in the namespace, so fixed ports are safe there.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "plan.yaml").write_text(MEDIA_DIALPLAN.replace("${prompt}", TTS_PROMPT))
    cache = tts_cache if tts_cache is not None else workdir / "tts"
    path = workdir / "node.yaml"
    path.write_text("\n".join([
        "sip:",
        "  listen: ['udp://127.0.0.1:5060']",
        "  domain: test.local",
        "security: {digest_algorithms: [MD5]}",
        "media:",
        "  address: 127.0.0.1",
        "  rtp_ports: '30000-30199'",
        f"  prompts_dir: '{ROOT / 'dialplans' / 'prompts'}'",
        f"  tts_cache_dir: '{cache}'",
        f"  recordings_dir: '{workdir / 'switch-recordings'}'",
        f"database: 'sqlite:///{workdir / 'node.db'}'",
        "api: {listen: '127.0.0.1:8080'}",
        "directory:",
        "  users:",
        "    - {id: '1001', password: pw-1001-secret}",
        "    - {id: '1002', password: pw-1002-secret}",
        "dialplan: plan.yaml",
        "",
    ]))
    return path


async def media_scenario(workdir: Path, mic_a: Path, number: str, *, mic_b: Path | None = None,
                         seconds: float | None = 3.0, digits: str = "", digit_gap: float = 0.4,
                         tts_cache: Path | None = None, close_timeout: float = 15.0,
                         no_telephone_event: bool = False) -> dict[str, Any]:
    """Phone A (1001) dials a dialplan route of a fresh node whose media the switch anchors itself.

    With `mic_b`, phone B (1002) is up too and answers by itself (route 800 rings it). Once A's
    call is established, A sends `digits` one at a time with baresip's `sndcode` (RFC 4733
    telephone-events), `digit_gap` seconds apart; then A hangs up after `seconds`, or (None)
    waits up to `close_timeout` for the switch to end the call. `no_telephone_event`: A talks to
    the switch through `SdpFilterRelay`, so its offer has no telephone-event and DTMF can only
    arrive in-band (its microphone WAV holds the tones).

    Returns: registered, established, closed (per phone), hung_up_by ('a' or 'switch'),
    talk_seconds, the node's CDR, the RecordingSaved events (path, duration, sha256, channels),
    the digits the media layer detected on each leg ({leg, digit, source, duration_ms}), the
    phones' recordings, the SDP telephone-event payload types the switch negotiated per leg, and
    on failure the phones' log tails.
    """
    from softswitch.config import load_config
    from softswitch.events import CDR, RecordingSaved
    from tests.nodes import running_node

    config = load_config(write_media_node(workdir, tts_cache))
    result: dict[str, Any] = {"registered": {}, "established": {}, "closed": {}, "recordings": {},
                              "number": number, "digits_sent": digits}
    async with running_node(config) as node:
        cdrs: list[CDR] = []
        saved: list[RecordingSaved] = []
        node.bus.subscribe(cdrs.append, CDR)
        node.bus.subscribe(saved.append, RecordingSaved)
        detected: list[dict[str, Any]] = []
        telev: dict[str, int] = {}

        def on_dtmf(leg_id: str, digit: Any) -> None:
            leg = node.media.legs.get(leg_id)
            if leg is not None:
                telev[leg_id] = leg.te_pt
            detected.append({"leg": leg_id, "digit": digit.digit, "source": digit.source,
                             "duration_ms": digit.duration_ms, "at": time.monotonic()})

        node.media.on_dtmf(on_dtmf)
        registrar = node.address("udp")
        relay: SdpFilterRelay | None = None
        if no_telephone_event:
            _, relay = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: SdpFilterRelay(registrar), local_addr=("127.0.0.1", 5070))
        phones = {"a": Baresip(PhoneSpec("a", "1001", "pw-1001-secret",
                                         ("127.0.0.1", 5070) if relay else registrar, 5071, 4071,
                                         (20000, 20099), mic_a), workdir / "phone-a")}
        if mic_b is not None:
            phones["b"] = Baresip(PhoneSpec("b", "1002", "pw-1002-secret", registrar, 5081, 4081,
                                            (20100, 20199), mic_b, auto_answer=True), workdir / "phone-b")
        a = phones["a"]
        try:
            for phone in phones.values():
                await phone.start()
            for name, phone in phones.items():
                result["registered"][name] = await registered(node, phone, 5.0)
            if all(result["registered"].values()):
                await _media_call(result, phones["a"].spec.registrar, phones, number, seconds, digits,
                                  digit_gap, close_timeout)
                for _ in range(60):
                    if cdrs and (saved or number != "800"):
                        break
                    await asyncio.sleep(0.05)
        finally:
            for phone in phones.values():
                await phone.stop()
            if relay is not None and relay.transport is not None:
                result["offers_stripped"] = relay.stripped
                relay.transport.close()
        result["calls_left"] = len(node.b2bua)
        result["te_pt"] = telev
    t_est = a.seen(CALL_ESTABLISHED)
    result["detected"] = [{**d, "at": round(d.pop("at") - t_est["at"], 3) if t_est else None} for d in detected]
    if cdrs:
        cdr = cdrs[0]
        result["cdr"] = {"caller": cdr.caller, "callee": cdr.callee, "disposition": cdr.disposition,
                         "hangup_side": cdr.hangup_side, "hangup_cause": cdr.hangup_cause,
                         "start": cdr.start, "answer": cdr.answer, "end": cdr.end, "count": len(cdrs)}
    result["saved"] = [{"path": s.path, "duration": s.duration, "sha256": s.sha256, "channels": s.channels,
                        "call_uuid": s.call_uuid} for s in saved]
    for name, phone in phones.items():
        result["recordings"][name] = phone.recordings()
        result.setdefault("events", {})[name] = [e.get("type") for e in phone.events]
    if not (all(result["registered"].values()) and all(result["established"].values())
            and all(result["closed"].values())):
        result["logs"] = {name: phone.log_tail() for name, phone in phones.items()}
    return result


async def _media_call(result: dict[str, Any], via: tuple[str, int], phones: dict[str, Baresip], number: str,
                      seconds: float | None, digits: str, digit_gap: float, close_timeout: float) -> None:
    """The call of `media_scenario` (sent to `via`: the switch or the relay), recorded into `result`."""
    a = phones["a"]
    host, port = via
    result["dial"] = await a.command("dial", f"sip:{number}@{host}:{port}")
    for name, phone in phones.items():
        result["established"][name] = await phone.wait_event(CALL_ESTABLISHED, 10.0) is not None
    if not all(result["established"].values()):
        return
    for d in digits:
        await asyncio.sleep(digit_gap)
        result.setdefault("sndcode", []).append(await a.command("sndcode", d))
    if seconds is not None:
        await asyncio.sleep(seconds)
        if a.seen(CALL_CLOSED) is None:
            result["hangup"] = await a.command("hangup")
            result["hung_up_by"] = "a"
    closed = await a.wait_event(CALL_CLOSED, close_timeout)
    result.setdefault("hung_up_by", "switch")
    for name, phone in phones.items():
        result["closed"][name] = await phone.wait_event(CALL_CLOSED, 5.0) is not None
    established_at = a.seen(CALL_ESTABLISHED)["at"]  # type: ignore[index]
    if closed is not None:
        result["talk_seconds"] = round(closed["at"] - established_at, 3)


def run_media_scenario(workdir: Path, mic_a: Path, number: str, *, mic_b: Path | None = None,
                       seconds: float | None = 3.0, digits: str = "", tts_cache: Path | None = None,
                       no_telephone_event: bool = False, timeout: float = 40.0) -> dict[str, Any]:
    """Run `media_scenario` under `unshare -n` (from outside any namespace) and return its JSON result."""
    argv = [*unshare_command(), sys.executable, "-m", "tests.baresip", "media", "--workdir", str(workdir),
            "--mic-a", str(mic_a), "--number", number, "--digits", digits]
    if mic_b is not None:
        argv += ["--mic-b", str(mic_b)]
    if seconds is not None:
        argv += ["--seconds", str(seconds)]
    if tts_cache is not None:
        argv += ["--tts-cache", str(tts_cache)]
    if no_telephone_event:
        argv.append("--no-telephone-event")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"scenario failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def bring_loopback_up() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="baresip scenarios in a private network namespace")
    sub = parser.add_subparsers(dest="scenario", required=True)
    call = sub.add_parser("call", help="A calls B through a node, talks, hangs up; prints JSON")
    call.add_argument("--workdir", type=Path, required=True)
    call.add_argument("--mic-a", type=Path, required=True)
    call.add_argument("--mic-b", type=Path, required=True)
    call.add_argument("--seconds", type=float, default=3.0, help="talk time of an answered call")
    call.add_argument("--answer", choices=ANSWER_MODES, default="auto", help="what phone B does")
    call.add_argument("--hangup-by", choices=("a", "b"), default="a")
    call.add_argument("--ring", type=float, default=0.5, help="ringing before B (or A) acts")
    media = sub.add_parser("media", help="A dials a dialplan route of a node that anchors media; prints JSON")
    media.add_argument("--workdir", type=Path, required=True)
    media.add_argument("--mic-a", type=Path, required=True)
    media.add_argument("--mic-b", type=Path, default=None, help="start phone B (1002, auto-answer) too")
    media.add_argument("--number", required=True, help="the route to dial: 800 record, 801 TTS, 802 gather")
    media.add_argument("--seconds", type=float, default=None, help="A hangs up after this (default: the switch)")
    media.add_argument("--digits", default="", help="DTMF A sends with sndcode once established")
    media.add_argument("--tts-cache", type=Path, default=None)
    media.add_argument("--no-telephone-event", action="store_true",
                       help="A's offer reaches the switch without telephone-event (DTMF in-band only)")
    args = parser.parse_args(argv)
    if not in_private_netns():
        print("refusing to run: start this under `unshare -n` (baresip binds every address)", file=sys.stderr)
        return 2
    bring_loopback_up()
    if args.scenario == "media":
        result = asyncio.run(media_scenario(args.workdir, args.mic_a, args.number, mic_b=args.mic_b,
                                            seconds=args.seconds, digits=args.digits, tts_cache=args.tts_cache,
                                            no_telephone_event=args.no_telephone_event))
    else:
        result = asyncio.run(call_scenario(args.workdir, args.mic_a, args.mic_b, args.seconds,
                                           answer=args.answer, hangup_by=args.hangup_by, ring=args.ring))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
