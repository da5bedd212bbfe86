"""The in-process media backend: RTP/RTCP on asyncio UDP sockets, relay, prompts, recording, DTMF, mixing.

The relay path is `datagram_received -> sendto` on the same event loop: one header check, a 12-byte
in-place rewrite (SSRC, sequence, timestamp) so each leg sees one continuous stream, and a
`bytes.translate` only when the two legs negotiated different G.711 laws. Anything heavier
(decoding for recording, in-band DTMF, supervision) runs only on legs that asked for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media import g711
from media.audio import FRAME_SAMPLES, read_wav, to_telephony
from media.backend import (
    DtmfCallback,
    LocalEndpoint,
    MediaBackend,
    PlaybackHandle,
    PlaySource,
    TimeoutCallback,
)
from media.dtmf import (
    DtmfDigit,
    InbandDtmfDetector,
    TelephoneEventReceiver,
    dtmf_tone,
    telephone_event_payloads,
)
from media.mixer import AGENT, CALLER, SUPERVISOR, Mixer, SuperviseMode
from media.ports import PortPool, PortPoolExhausted
from media.recorder import RecordingBuffer, WavAppender
from media.rtp import (
    RTCP_BYE,
    RTCP_SDES,
    RTCP_SR,
    RTP_HEADER,
    ReceiverStats,
    RtcpState,
    RtpError,
    RtpSender,
    SenderInfo,
    build_rr,
    build_sdes,
    build_sr,
    looks_like_rtp,
    ntp_timestamp,
    parse_rtcp,
    payload_offset,
)
from media.sdp import Negotiated, SdpError, SessionDescription, negotiate
from softswitch.events import EventBus, RecordingSaved

log = logging.getLogger(__name__)

_FRAME_SECONDS = FRAME_SAMPLES / 8000
_Tap = Callable[[int, int, "npt.NDArray[np.int16]", float], None]  # (ssrc, ts, pcm, arrival)


def _call_soon(tasks: set[asyncio.Future[object]], fn: Callable[..., object], *args: object) -> None:
    """Run a user callback; coroutines become tasks (kept in `tasks` until done so they are not
    garbage-collected mid-flight). A failing callback never breaks the media path."""
    try:
        res = fn(*args)
        if inspect.isawaitable(res):
            fut = asyncio.ensure_future(res)
            tasks.add(fut)
            fut.add_done_callback(tasks.discard)
    except Exception:
        log.exception("media callback %r failed", fn)


class _Rtcp(asyncio.DatagramProtocol):
    def __init__(self, leg: _Leg) -> None:
        self.leg = leg
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
        self.leg.rtcp_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable from a phone that went away: the RTP timeout handles it


class _Leg(asyncio.DatagramProtocol):
    """One leg's RTP endpoint and state. The packet path is `datagram_received`."""

    def __init__(self, backend: LocalMediaBackend, leg_id: str, address: str, port: int) -> None:
        self.backend = backend
        self.leg_id = leg_id
        self.address = address
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None
        self.rtcp = _Rtcp(self)
        self.remote: tuple | None = None  # type: ignore[type-arg]
        self.remote_rtcp: tuple | None = None  # type: ignore[type-arg]
        self.sdp_remote: tuple[str, int] | None = None
        self.latched = False
        self.rtcp_latched = False
        self.neg: Negotiated | None = None
        self.codec = g711.PCMU
        self.pt = 0
        self.te_pt = -1  # -1: no telephone-event negotiated (compares cheaply with an int)
        self.send_enabled = False
        self.expect_rx = False
        self.sender = RtpSender()
        self.stats = ReceiverStats()
        self.rtcp_state = RtcpState()
        self.peer: _Leg | None = None
        self.relay_in = True
        self.fwd_pt = 0
        self.fwd_te = -1
        self.fwd_xlate: bytes | None = None
        self.fwd_plain = True  # forwarded audio needs no PT/payload change
        self.taps: list[_Tap] = []
        self.rx_count = 0
        self.last_count = 0
        self.idle = 0.0
        self.timed_out = False
        self.te_rx = TelephoneEventReceiver()
        self.te_count = 0
        self.te_last_count = 0
        self.inband: InbandDtmfDetector | None = None
        self.playback: _Playback | None = None
        self.dtmf_sending = False
        self.mix_driven = False
        self.last_report_packets = 0

    # -- asyncio protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        pass  # see _Rtcp.error_received

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
        if addr != self.remote and not self._latch(data, addr):
            return
        if len(data) < 12 or data[0] & 0xC0 != 0x80:
            return
        self.rx_count += 1
        pt = data[1] & 0x7F
        if pt == self.pt:
            _b0, _b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
            now = time.monotonic()
            self.stats.update(ssrc, seq, ts, now)
            if self.taps:
                self._tap(data)
            peer = self.peer
            if peer is not None and peer.relay_in and peer.send_enabled:
                buf = bytearray(data)
                if not self.fwd_plain:
                    self._convert(buf, self.fwd_pt)
                peer.sender.relay(buf, now)
                peer.transport.sendto(buf, peer.remote)  # type: ignore[union-attr]
        elif pt == self.te_pt:
            self._telephone_event(data)
            peer = self.peer
            if peer is not None and self.fwd_te >= 0 and peer.relay_in and peer.send_enabled:
                buf = bytearray(data)
                buf[1] = (buf[1] & 0x80) | self.fwd_te
                peer.sender.relay(buf, time.monotonic())
                peer.transport.sendto(buf, peer.remote)  # type: ignore[union-attr]
        # other payload types (comfort noise, unnegotiated codecs) are dropped

    # -- slower paths -------------------------------------------------------------------------

    def _latch(self, data: bytes, addr: tuple) -> bool:  # type: ignore[type-arg]
        """Symmetric RTP: send back to where the phone's packets come from (it may be behind NAT)."""
        if not looks_like_rtp(data):
            return False
        if self.latched and self.idle < self.backend.relatch_after:
            return False  # the latched source is alive: ignore strays and spoofed packets
        pt = data[1] & 0x7F
        if self.neg is not None and pt not in (self.pt, self.te_pt):
            return False
        if self.remote is not None and self.remote != addr:
            log.info("leg %s latched RTP to %s (signalled %s)", self.leg_id, addr, self.remote)
        self.remote = addr
        self.latched = True
        if not self.rtcp_latched:
            self.remote_rtcp = (addr[0], addr[1] + 1)
        self.idle = 0.0
        if self.neg is not None:
            self.send_enabled = self.neg.direction in ("sendrecv", "sendonly")
        return True

    def _convert(self, buf: bytearray, pt: int) -> None:
        buf[1] = (buf[1] & 0x80) | pt
        if self.fwd_xlate is not None:
            off = payload_offset(buf)
            end = len(buf) - (buf[-1] if buf[0] & 0x20 else 0)  # padding octets are not audio
            if off < end:
                buf[off:end] = bytes(buf[off:end]).translate(self.fwd_xlate)

    def _tap(self, data: bytes) -> None:
        _b0, _b1, _seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        try:
            off = payload_offset(data)
        except IndexError:
            return
        end = len(data) - (data[-1] if data[0] & 0x20 else 0)
        if end <= off:
            return
        pcm = g711.decode(self.codec, data[off:end])
        now = self.backend.loop_time()
        for tap in list(self.taps):
            tap(ssrc, ts, pcm, now)

    def _inband_tap(self, ssrc: int, ts: int, pcm: npt.NDArray[np.int16], arrival: float) -> None:
        if self.inband is not None:
            for d in self.inband.feed(pcm):
                self.dtmf(d)

    def _telephone_event(self, data: bytes) -> None:
        try:
            off = payload_offset(data)
        except IndexError:
            return
        self.te_count += 1
        ts = RTP_HEADER.unpack_from(data)[3]
        for d in self.te_rx.feed(ts, bytes(data[off : off + 4])):
            self.dtmf(d)

    def dtmf(self, digit: DtmfDigit) -> None:
        pb = self.playback
        if pb is not None and pb.barge_in:
            pb.finish("barge_in")
        for cb in list(self.backend.dtmf_callbacks):
            _call_soon(self.backend.tasks, cb, self.leg_id, digit)

    def rtcp_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
        if not self.rtcp_latched:
            self.remote_rtcp = addr
            self.rtcp_latched = True
        try:
            packets = parse_rtcp(data)
        except RtpError:
            return
        st = self.rtcp_state
        st.reports_received += 1
        for p in packets:
            if p.packet_type == RTCP_SR and p.sender is not None:
                self.stats.sender_report_received(p.sender.ntp, self.backend.loop_time())
            if p.reports:
                st.last_report = p.reports[0]
            if p.packet_type == RTCP_SDES and p.cname:
                st.cname = p.cname
            if p.packet_type == RTCP_BYE:
                st.bye = True

    def update_relay(self) -> None:
        self.relay_in = self.playback is None and not self.mix_driven and not self.dtmf_sending

    def send_frame(self, payload: bytes, now: float) -> None:
        if self.send_enabled and self.transport is not None and self.remote is not None:
            self.transport.sendto(self.sender.build(self.pt, payload, FRAME_SAMPLES, now), self.remote)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.rtcp.transport is not None:
            self.rtcp.transport.close()


class _Playback(PlaybackHandle):
    """Paces encoded 20 ms frames to a leg from a task, on absolute deadlines (no drift)."""

    def __init__(self, leg: _Leg, frames: list[bytes], *, loop: bool, barge_in: bool) -> None:
        self.leg = leg
        self.frames = frames
        self.loop = loop
        self.barge_in = barge_in
        self._reason = ""
        self._done = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        ev = asyncio.get_running_loop()
        t0 = ev.time()
        k = 0
        try:
            while True:
                for frame in self.frames:
                    if self._done.is_set():
                        return
                    self.leg.send_frame(frame, ev.time())
                    k += 1
                    delay = t0 + k * _FRAME_SECONDS - ev.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    elif delay < -0.2:
                        t0 = ev.time() - k * _FRAME_SECONDS  # the loop stalled: resync, do not burst
                if not self.loop or not self.frames:
                    break
            self.finish("finished")
        except asyncio.CancelledError:
            self.finish("stopped")

    def finish(self, reason: str) -> None:
        if self._done.is_set():
            return
        self._reason = reason
        self._done.set()
        if self.leg.playback is self:
            self.leg.playback = None
            self.leg.update_relay()
        if not self._task.done() and asyncio.current_task() is not self._task:
            self._task.cancel()

    def stop(self) -> None:
        self.finish("stopped")

    async def wait(self) -> str:
        await self._done.wait()
        return self._reason

    @property
    def done(self) -> bool:
        return self._done.is_set()


class PromptCache:
    """Prompt files converted once to 8 kHz mono int16 and, per codec, to 20 ms G.711 frames."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._pcm: dict[tuple[str, int, int], npt.NDArray[np.int16]] = {}
        self._frames: dict[tuple[tuple[str, int, int], str], list[bytes]] = {}
        self.conversions = 0

    async def pcm(self, path: str | Path) -> tuple[tuple[str, int, int], npt.NDArray[np.int16]]:
        p = Path(path)
        absolute, st = await asyncio.to_thread(lambda: (os.path.abspath(p), p.stat()))
        key = (absolute, st.st_mtime_ns, st.st_size)
        hit = self._pcm.get(key)
        if hit is None:
            hit = await asyncio.to_thread(lambda: to_telephony(read_wav(p)))
            self.conversions += 1
            if len(self._pcm) >= self.max_entries:
                old = next(iter(self._pcm))
                del self._pcm[old]
                for k in [k for k in self._frames if k[0] == old]:
                    del self._frames[k]
            self._pcm[key] = hit
        return key, hit

    async def frames(self, path: str | Path, codec: str) -> list[bytes]:
        key, pcm = await self.pcm(path)
        got = self._frames.get((key, codec))
        if got is None:
            got = encode_frames(pcm, codec)
            self._frames[(key, codec)] = got
        return got


def encode_frames(pcm: npt.NDArray[np.int16], codec: str) -> list[bytes]:
    """Split samples into 20 ms G.711 frames, padding the last with silence."""
    n = -(-len(pcm) // FRAME_SAMPLES) * FRAME_SAMPLES
    padded = np.zeros(n, dtype=np.int16)
    padded[: len(pcm)] = pcm
    data = g711.encode(codec, padded)
    return [data[i : i + FRAME_SAMPLES] for i in range(0, len(data), FRAME_SAMPLES)]


class _Recording:
    def __init__(self, call_uuid: str, path: Path, legs: list[_Leg | None], buffer: RecordingBuffer) -> None:
        self.call_uuid = call_uuid
        self.path = path
        self.legs = legs
        self.buffer = buffer
        self.writer = WavAppender(path, buffer.channels)
        self.taps: list[tuple[_Leg, _Tap]] = []
        self.task: asyncio.Task[None] | None = None
        self.stopping = asyncio.Event()


class _Supervision:
    def __init__(self, mode: SuperviseMode, legs: dict[str, _Leg]) -> None:
        self.mixer = Mixer(mode)
        self.legs = legs
        self.queues: dict[str, deque[npt.NDArray[np.int16]]] = {p: deque(maxlen=5) for p in legs}
        self.taps: list[tuple[_Leg, _Tap]] = []
        self.task: asyncio.Task[None] | None = None

    def driven(self) -> set[str]:
        """Parties whose output comes from the mixer; the others keep the direct relay."""
        mode = self.mixer.mode
        if mode == SuperviseMode.LISTEN:
            return {SUPERVISOR}
        if mode == SuperviseMode.WHISPER:
            return {SUPERVISOR, AGENT}
        return {SUPERVISOR, AGENT, CALLER}


class LocalMediaBackend(MediaBackend):
    """MediaBackend on asyncio UDP in this process.

    `address` is where RTP sockets bind and what SDP advertises (`advertise` overrides the latter for
    NAT). `inband_dtmf`: True always, False never, None when the leg has no telephone-event.
    From a node config: `LocalMediaBackend(cfg.media.address, cfg.media.rtp_ports,
    recordings_dir=cfg.media.recordings_dir, bus=bus)`.
    """

    def __init__(
        self,
        address: str = "127.0.0.1",
        rtp_ports: object = "20000-20999",
        *,
        bus: EventBus | None = None,
        rtp_timeout: float = 30.0,
        check_interval: float = 1.0,
        rtcp_interval: float = 5.0,
        relatch_after: float = 2.0,
        recordings_dir: str | Path = "recordings",
        inband_dtmf: bool | None = None,
        advertise: str | None = None,
        prompts: PromptCache | None = None,
        rcvbuf: int | None = 16384,
    ) -> None:
        self.address = address
        self.advertise = advertise or address
        self.pool = PortPool(rtp_ports)
        self.bus = bus
        self.rtp_timeout = rtp_timeout
        self.check_interval = check_interval
        self.rtcp_interval = rtcp_interval
        self.relatch_after = relatch_after
        self.recordings_dir = Path(recordings_dir)
        self.inband_dtmf = inband_dtmf
        self.prompts = prompts or PromptCache()
        self.rcvbuf = rcvbuf
        self.legs: dict[str, _Leg] = {}
        self.dtmf_callbacks: list[DtmfCallback] = []
        self.timeout_callbacks: list[TimeoutCallback] = []
        self._recordings: dict[str, _Recording] = {}
        self._supervisions: dict[str, _Supervision] = {}
        self._checker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rtcp_tick = 0
        self.tasks: set[asyncio.Future[object]] = set()

    def loop_time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _leg(self, leg_id: str) -> _Leg:
        try:
            return self.legs[leg_id]
        except KeyError:
            raise KeyError(f"unknown media leg {leg_id!r}") from None

    # -- endpoints ------------------------------------------------------------------------------

    async def allocate(self, leg_id: str) -> LocalEndpoint:
        if leg_id in self.legs:
            leg = self.legs[leg_id]
            return LocalEndpoint(leg_id, self.advertise, leg.port)
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._checker is None or self._checker.done():
            self._checker = asyncio.ensure_future(self._check_loop())
        tried = 0
        while True:
            port = self.pool.allocate()  # raises PortPoolExhausted when every pair is taken
            leg = _Leg(self, leg_id, self.address, port)
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda leg=leg: leg, local_addr=(self.address, port)
                )
                await loop.create_datagram_endpoint(
                    lambda leg=leg: leg.rtcp, local_addr=(self.address, port + 1)
                )
                if self.rcvbuf:
                    # a small receive buffer bounds how stale queued audio can get if the loop stalls:
                    # late voice is useless, so past ~0.8 s (16 KiB: 39 packets) the kernel drops rather than queues
                    sock = transport.get_extra_info("socket")
                    with contextlib.suppress(OSError, AttributeError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            except OSError:
                # taken by another process: leave it in the pool's queue and try the next pair
                leg.close()
                self.pool.release(port)
                tried += 1
                if tried >= self.pool.capacity:
                    raise PortPoolExhausted("no RTP port pair could be bound") from None
                continue
            self.legs[leg_id] = leg
            return LocalEndpoint(leg_id, self.advertise, port)

    async def set_remote(self, leg_id: str, remote: SessionDescription | Negotiated) -> None:
        leg = self._leg(leg_id)
        neg = remote if isinstance(remote, Negotiated) else negotiate(remote)
        if neg is None:
            raise SdpError("no acceptable audio stream in the remote SDP")
        addr = (neg.remote_address, neg.remote_port)
        if addr != leg.sdp_remote:
            # a new address in a re-INVITE: trust it until the phone's own packets say otherwise
            leg.sdp_remote = addr
            leg.remote = None if neg.remote_address in ("0.0.0.0", "::") or not neg.remote_port else addr
            leg.latched = False
            leg.remote_rtcp = None if leg.remote is None else (neg.remote_address, neg.remote_port + 1)
            leg.rtcp_latched = False
        leg.neg = neg
        leg.codec = neg.codec
        leg.pt = neg.payload_type
        leg.te_pt = -1 if neg.telephone_event_pt is None else neg.telephone_event_pt
        leg.send_enabled = leg.remote is not None and neg.direction in ("sendrecv", "sendonly")
        leg.expect_rx = neg.direction in ("sendrecv", "recvonly")
        leg.idle = 0.0
        leg.timed_out = False
        want_inband = self.inband_dtmf is True or (self.inband_dtmf is None and leg.te_pt < 0)
        if want_inband and leg.inband is None:
            leg.inband = InbandDtmfDetector()
            leg.taps.append(leg._inband_tap)
        elif not want_inband and leg.inband is not None:
            leg.inband = None
            with contextlib.suppress(ValueError):
                leg.taps.remove(leg._inband_tap)
        self._update_forwarding(leg)
        if leg.peer is not None:
            self._update_forwarding(leg.peer)

    @staticmethod
    def _update_forwarding(src: _Leg) -> None:
        dst = src.peer
        if dst is None:
            return
        src.fwd_pt = dst.pt
        src.fwd_te = dst.te_pt
        src.fwd_xlate = None
        if src.codec != dst.codec:
            src.fwd_xlate = g711.ULAW_TO_ALAW if src.codec == g711.PCMU else g711.ALAW_TO_ULAW
        src.fwd_plain = src.fwd_xlate is None and src.fwd_pt == src.pt

    async def bridge(self, leg_a: str, leg_b: str) -> None:
        a, b = self._leg(leg_a), self._leg(leg_b)
        for leg in (a, b):
            if leg.peer is not None and leg.peer not in (a, b):
                leg.peer.peer = None
        a.peer, b.peer = b, a
        self._update_forwarding(a)
        self._update_forwarding(b)

    async def unbridge(self, leg_id: str) -> None:
        leg = self._leg(leg_id)
        if leg.peer is not None:
            leg.peer.peer = None
            leg.peer = None

    # -- prompts ------------------------------------------------------------------------------

    async def play(
        self, leg_id: str, source: PlaySource, *, loop: bool = False, barge_in: bool = False
    ) -> PlaybackHandle:
        leg = self._leg(leg_id)
        if isinstance(source, np.ndarray):
            frames = encode_frames(source.astype(np.int16, copy=False), leg.codec)
        else:
            frames = await self.prompts.frames(source, leg.codec)
        if leg.playback is not None:
            leg.playback.finish("stopped")
        pb = _Playback(leg, frames, loop=loop, barge_in=barge_in)
        leg.playback = pb
        leg.update_relay()
        return pb

    async def stop(self, leg_id: str) -> None:
        leg = self._leg(leg_id)
        if leg.playback is not None:
            leg.playback.finish("stopped")

    async def send_dtmf(self, leg_id: str, digits: str, *, duration_ms: int = 100) -> None:
        leg = self._leg(leg_id)
        loop = asyncio.get_running_loop()
        if leg.te_pt < 0:
            for d in digits:
                tone = np.concatenate(
                    (dtmf_tone(d, duration_ms), np.zeros(FRAME_SAMPLES * 4, dtype=np.int16))
                )
                await (await self.play(leg_id, tone)).wait()
            return
        leg.dtmf_sending = True
        leg.update_relay()
        try:
            for d in digits:
                payloads = telephone_event_payloads(d, duration_ms)
                start_ts = leg.sender.ts
                t0 = loop.time()
                for i, p in enumerate(payloads):
                    if leg.send_enabled and leg.transport is not None and leg.remote is not None:
                        leg.transport.sendto(
                            leg.sender.build_event(leg.te_pt, p, start_ts, loop.time(), marker=i == 0),
                            leg.remote,
                        )
                    await asyncio.sleep(max(0.0, t0 + (i + 1) * _FRAME_SECONDS - loop.time()))
                leg.sender.ts = (start_ts + max(FRAME_SAMPLES, duration_ms * 8)) & 0xFFFFFFFF
                await asyncio.sleep(0.05)  # inter-digit pause
        finally:
            leg.dtmf_sending = False
            leg.update_relay()

    # -- recording ----------------------------------------------------------------------------

    def _recording_path(self, call_uuid: str) -> Path:
        p = self.recordings_dir / f"{call_uuid}.wav"
        n = 2
        while p.exists():
            p = self.recordings_dir / f"{call_uuid}-{n}.wav"
            n += 1
        return p

    async def record_start(
        self,
        call_uuid: str,
        caller_leg: str,
        agent_leg: str | None = None,
        *,
        path: str | Path | None = None,
        stereo: bool = True,
    ) -> Path:
        if call_uuid in self._recordings:
            return self._recordings[call_uuid].path
        legs = [self._leg(caller_leg), self._leg(agent_leg) if agent_leg else None]
        loop = asyncio.get_running_loop()
        rec = _Recording(
            call_uuid,
            Path(path) if path else self._recording_path(call_uuid),
            legs,
            RecordingBuffer(loop.time(), stereo=stereo),
        )
        await rec.writer.open()
        for party, leg in enumerate(legs):
            if leg is None:
                continue

            def tap(
                ssrc: int, ts: int, pcm: npt.NDArray[np.int16], arrival: float, party: int = party
            ) -> None:
                rec.buffer.push(party, arrival, ssrc, ts, pcm)

            leg.taps.append(tap)
            rec.taps.append((leg, tap))
        rec.task = asyncio.ensure_future(self._record_flusher(rec))
        self._recordings[call_uuid] = rec
        return rec.path

    async def _record_flusher(self, rec: _Recording) -> None:
        loop = asyncio.get_running_loop()
        while not rec.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rec.stopping.wait(), 1.0)
            if rec.stopping.is_set():
                break
            await rec.writer.append(rec.buffer.take(loop.time()))

    async def record_stop(self, call_uuid: str) -> RecordingSaved | None:
        rec = self._recordings.pop(call_uuid, None)
        if rec is None:
            return None
        for leg, tap in rec.taps:
            with contextlib.suppress(ValueError):
                leg.taps.remove(tap)
        rec.stopping.set()
        if rec.task is not None:
            await rec.task
        await rec.writer.append(rec.buffer.take(self.loop_time(), final=True))
        digest = await rec.writer.close()
        ev = RecordingSaved(
            ts=time.time(),
            call_uuid=call_uuid,
            path=str(rec.path),
            duration=rec.writer.frames / 8000,
            sha256=digest,
            channels=rec.buffer.channels,
        )
        if self.bus is not None:
            self.bus.publish(ev)
        return ev

    # -- callbacks ------------------------------------------------------------------------------

    def on_dtmf(self, callback: DtmfCallback) -> Callable[[], None]:
        self.dtmf_callbacks.append(callback)
        return lambda: self.dtmf_callbacks.remove(callback) if callback in self.dtmf_callbacks else None

    def on_timeout(self, callback: TimeoutCallback) -> Callable[[], None]:
        self.timeout_callbacks.append(callback)
        return lambda: self.timeout_callbacks.remove(callback) if callback in self.timeout_callbacks else None

    # -- supervision ----------------------------------------------------------------------------

    async def supervise(
        self, mode: SuperviseMode | str, supervisor_leg: str, agent_leg: str, caller_leg: str
    ) -> None:
        mode = SuperviseMode(mode)
        sup = self._supervisions.get(supervisor_leg)
        if sup is not None:
            sup.mixer.mode = mode
            self._apply_supervision(sup)
            return
        legs = {
            SUPERVISOR: self._leg(supervisor_leg),
            AGENT: self._leg(agent_leg),
            CALLER: self._leg(caller_leg),
        }
        sup = _Supervision(mode, legs)
        for party, leg in legs.items():

            def tap(
                ssrc: int, ts: int, pcm: npt.NDArray[np.int16], arrival: float, party: str = party
            ) -> None:
                sup.queues[party].append(pcm)

            leg.taps.append(tap)
            sup.taps.append((leg, tap))
        self._supervisions[supervisor_leg] = sup
        self._apply_supervision(sup)
        sup.task = asyncio.ensure_future(self._mix_loop(sup))

    @staticmethod
    def _apply_supervision(sup: _Supervision) -> None:
        driven = sup.driven()
        for party, leg in sup.legs.items():
            leg.mix_driven = party in driven
            leg.update_relay()

    async def _mix_loop(self, sup: _Supervision) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        k = 0
        while True:
            frames = {p: (q.popleft() if q else None) for p, q in sup.queues.items()}
            out = sup.mixer.mix(frames)
            now = loop.time()
            for party in sup.driven():
                leg = sup.legs[party]
                if leg.playback is None:
                    leg.send_frame(g711.encode(leg.codec, out[party]), now)
            k += 1
            delay = t0 + k * _FRAME_SECONDS - loop.time()
            if delay < -0.2:
                t0, k = loop.time(), 0
                delay = 0
            await asyncio.sleep(max(0.0, delay))

    async def unsupervise(self, supervisor_leg: str) -> None:
        sup = self._supervisions.pop(supervisor_leg, None)
        if sup is None:
            return
        if sup.task is not None:
            sup.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sup.task
        for leg, tap in sup.taps:
            with contextlib.suppress(ValueError):
                leg.taps.remove(tap)
        for leg in sup.legs.values():
            leg.mix_driven = False
            leg.update_relay()

    # -- quality ------------------------------------------------------------------------------

    def stats(self, leg_id: str) -> dict[str, float | int | str]:
        """Per-leg media quality for CDRs and metrics: our receive statistics and the far end's last report."""
        leg = self._leg(leg_id)
        st = leg.stats
        far = leg.rtcp_state.last_report
        return {
            "codec": leg.codec,
            "packets_received": st.received,
            "packets_lost": max(0, st.lost) if st.ssrc is not None else 0,
            "jitter_ms": st.jitter / 8.0,
            "packets_sent": leg.sender.packets,
            "remote": f"{leg.remote[0]}:{leg.remote[1]}" if leg.remote else "",
            "latched": int(leg.latched),
            "remote_fraction_lost": (far.fraction_lost / 256.0) if far else 0.0,
            "remote_jitter_ms": (far.jitter / 8.0) if far else 0.0,
        }

    # -- lifecycle -----------------------------------------------------------------------------

    async def release(self, leg_id: str) -> None:
        leg = self.legs.pop(leg_id, None)
        if leg is None:
            return
        if leg.playback is not None:
            leg.playback.finish("released")
        for sup_id, sup in list(self._supervisions.items()):
            if leg in sup.legs.values():
                await self.unsupervise(sup_id)
        if leg.peer is not None:
            leg.peer.peer = None
            leg.peer = None
        for rec in self._recordings.values():
            for other, tap in list(rec.taps):
                if other is leg:
                    with contextlib.suppress(ValueError):
                        leg.taps.remove(tap)
        leg.close()
        # transports close their sockets on the next loop iteration; free the port after that
        for _ in range(2):
            await asyncio.sleep(0)
        self.pool.release(leg.port)

    async def close(self) -> None:
        for call_uuid in list(self._recordings):
            await self.record_stop(call_uuid)
        for leg_id in list(self.legs):
            await self.release(leg_id)
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
            self._checker = None

    # -- timers: RTP timeout and RTCP --------------------------------------------------------------

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                self._check(self.check_interval)
            except Exception:
                log.exception("media timer failed")

    def _check(self, elapsed: float) -> None:
        """One timer tick: idle accounting, RTP timeouts, RTCP reports. Cost is per leg, not per packet."""
        # RTCP is spread over the interval (each leg in its own tick) so a node with thousands of
        # legs never stalls the relay for one big burst of reports
        self._rtcp_tick += 1
        slots = max(1, round(self.rtcp_interval / self.check_interval))
        for i, leg in enumerate(list(self.legs.values())):
            send_rtcp = (i + self._rtcp_tick) % slots == 0
            if leg.rx_count != leg.last_count:
                leg.last_count = leg.rx_count
                leg.idle = 0.0
                # packets came from the signalled address itself: that is the source to keep
                leg.latched = leg.latched or leg.remote is not None
            else:
                leg.idle += elapsed
            if leg.neg is not None and leg.expect_rx and not leg.timed_out and leg.idle >= self.rtp_timeout:
                leg.timed_out = True
                log.info("leg %s: no RTP for %.1f s", leg.leg_id, leg.idle)
                for cb in list(self.timeout_callbacks):
                    _call_soon(self.tasks, cb, leg.leg_id)
            if leg.te_count == leg.te_last_count:
                for d in leg.te_rx.flush():
                    leg.dtmf(d)  # no event packet for a whole tick and no end packet: report the press anyway
            leg.te_last_count = leg.te_count
            if send_rtcp:
                self._send_rtcp(leg)

    def _send_rtcp(self, leg: _Leg) -> None:
        if leg.rtcp.transport is None or leg.remote_rtcp is None or not leg.send_enabled:
            return
        block = leg.stats.report_block(self.loop_time())
        blocks = (block,) if block is not None else ()
        s = leg.sender
        if s.packets != leg.last_report_packets:
            leg.last_report_packets = s.packets
            pkt = build_sr(s.ssrc, SenderInfo(ntp_timestamp(time.time()), s.ts, s.packets, s.octets), blocks)
        else:
            pkt = build_rr(s.ssrc, blocks)
        pkt += build_sdes(s.ssrc, f"softswitch@{self.advertise}")
        leg.rtcp.transport.sendto(pkt, leg.remote_rtcp)
