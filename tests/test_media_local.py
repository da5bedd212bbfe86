"""Real-socket tests of the in-process media backend on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import wave
from pathlib import Path

import numpy as np
import pytest

from media import g711
from media.audio import normalised_xcorr_peak, wav_bytes
from media.dtmf import DtmfDigit, InbandDtmfDetector, dtmf_tone, telephone_event_payloads
from media.local import LocalMediaBackend
from media.ports import PortPoolExhausted
from media.rtp import RtpPacket, RtpSender, parse_rtcp
from media.sdp import Negotiated
from softswitch.events import EventBus, RecordingSaved


class Phone(asyncio.DatagramProtocol):
    """A minimal RTP peer: sends G.711 frames at 20 ms pace and keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[RtpPacket] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.sender = RtpSender()
        self.got = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
        self.received.append(RtpPacket.parse(data))
        self.got.set()

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def send_pcm(self, pcm: np.ndarray, dest: tuple[str, int], codec: str = "PCMU", pt: int = 0) -> None:
        data = g711.encode(codec, pcm)
        assert self.transport is not None
        self.transport.sendto(self.sender.build(pt, data, len(pcm), 0.0), dest)

    async def stream(self, pcm: np.ndarray, dest: tuple[str, int], codec: str = "PCMU", pt: int = 0) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for k, i in enumerate(range(0, len(pcm) - 159, 160)):
            self.send_pcm(pcm[i : i + 160], dest, codec, pt)
            await asyncio.sleep(max(0.0, t0 + (k + 1) * 0.02 - loop.time()))

    def audio(self, codec: str = "PCMU") -> np.ndarray:
        pkts = sorted((p for p in self.received if p.payload_type in (0, 8)), key=lambda p: p.timestamp)
        if not pkts:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([g711.decode(codec, p.payload) for p in pkts])


async def phone() -> Phone:
    loop = asyncio.get_running_loop()
    _, p = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
    return p


def neg(p: Phone, codec: str = "PCMU", te: int | None = 101, direction: str = "sendrecv") -> Negotiated:
    return Negotiated("127.0.0.1", p.port, codec, 0 if codec == "PCMU" else 8, te, direction)


def speechlike(seconds: float, seed: int = 1) -> np.ndarray:
    """Band-limited noise with a syllable envelope: correlates only with itself."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 8000)
    x = np.convolve(rng.normal(0, 1, n), np.ones(4) / 4, mode="same")
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(n) / 8000) ** 2
    return (x * env * 6000).astype(np.int16)


@pytest.fixture
async def backend(tmp_path: Path):
    b = LocalMediaBackend(
        "127.0.0.1",
        "31000-31099",
        recordings_dir=tmp_path,
        bus=EventBus(),
        check_interval=0.1,
        rtp_timeout=0.5,
    )
    yield b
    await b.close()


async def test_two_phones_relay_through_backend_both_ways_with_rewritten_ssrc(
    backend: LocalMediaBackend,
) -> None:
    a, b = await phone(), await phone()
    ea, eb = await backend.allocate("a"), await backend.allocate("b")
    assert ea.port % 2 == 0 and eb.port % 2 == 0
    await backend.set_remote("a", neg(a))
    await backend.set_remote("b", neg(b))
    await backend.bridge("a", "b")
    tone = speechlike(0.4)
    await asyncio.gather(a.stream(tone, ("127.0.0.1", ea.port)), b.stream(tone, ("127.0.0.1", eb.port)))
    await asyncio.sleep(0.1)
    assert len(b.received) == 20 and len(a.received) == 20
    assert {p.ssrc for p in b.received} == {backend.legs["b"].sender.ssrc}
    st = backend.stats("a")
    assert (st["packets_received"], st["packets_lost"], st["packets_sent"], st["codec"]) == (
        20,
        0,
        20,
        "PCMU",
    )
    assert b.received[0].ssrc != a.sender.ssrc
    seqs = [p.sequence for p in b.received]
    assert all((y - x) & 0xFFFF == 1 for x, y in zip(seqs, seqs[1:], strict=False))
    assert np.array_equal(b.audio(), g711.ulaw_decode(g711.ulaw_encode(tone[: 20 * 160])))


async def test_relay_converts_pcmu_to_pcma_between_legs_with_different_laws(
    backend: LocalMediaBackend,
) -> None:
    a, b = await phone(), await phone()
    ea, _ = await backend.allocate("a"), await backend.allocate("b")
    await backend.set_remote("a", neg(a, "PCMU"))
    await backend.set_remote("b", neg(b, "PCMA"))
    await backend.bridge("a", "b")
    tone = speechlike(0.2)
    await a.stream(tone, ("127.0.0.1", ea.port))
    await asyncio.sleep(0.05)
    assert {p.payload_type for p in b.received} == {8}
    got = b.audio("PCMA")
    c, _lag = normalised_xcorr_peak(got, tone[: len(got)], max_lag=10)
    assert c > 0.99


async def test_symmetric_rtp_latches_to_the_source_address_instead_of_the_sdp_address(
    backend: LocalMediaBackend,
) -> None:
    natted, b = await phone(), await phone()
    ea, eb = await backend.allocate("a"), await backend.allocate("b")
    # the SDP names an unreachable private address; the packets come from `natted`
    await backend.set_remote("a", Negotiated("127.0.0.1", 9, "PCMU", 0, 101, "sendrecv"))
    await backend.set_remote("b", neg(b))
    await backend.bridge("a", "b")
    natted.send_pcm(np.zeros(160, np.int16), ("127.0.0.1", ea.port))
    await asyncio.sleep(0.05)
    b.send_pcm(np.zeros(160, np.int16), ("127.0.0.1", eb.port))
    await asyncio.wait_for(natted.got.wait(), 1.0)
    assert backend.legs["a"].remote == ("127.0.0.1", natted.port)
    # a stray source is ignored while the latched one is alive
    stray = await phone()
    stray.send_pcm(np.zeros(160, np.int16), ("127.0.0.1", ea.port))
    await asyncio.sleep(0.05)
    assert backend.legs["a"].remote == ("127.0.0.1", natted.port)


async def test_rtp_timeout_reports_a_leg_whose_media_stopped(backend: LocalMediaBackend) -> None:
    a = await phone()
    ea = await backend.allocate("a")
    await backend.set_remote("a", neg(a))
    dead: list[str] = []
    backend.on_timeout(dead.append)
    a.send_pcm(np.zeros(160, np.int16), ("127.0.0.1", ea.port))
    await asyncio.sleep(0.3)
    assert dead == []
    await asyncio.sleep(0.6)
    assert dead == ["a"]


async def test_port_pool_exhaustion_raises_and_a_release_frees_a_pair(tmp_path: Path) -> None:
    b = LocalMediaBackend("127.0.0.1", "31200-31205", recordings_dir=tmp_path)
    try:
        eps = [await b.allocate(f"l{i}") for i in range(3)]
        assert sorted(e.port for e in eps) == [31200, 31202, 31204]
        with pytest.raises(PortPoolExhausted):
            await b.allocate("l3")
        await b.release("l1")
        assert (await b.allocate("l3")).port == 31202
    finally:
        await b.close()


async def test_recording_of_a_relayed_call_matches_the_sent_audio(
    backend: LocalMediaBackend, tmp_path: Path
) -> None:
    a, b = await phone(), await phone()
    ea, eb = await backend.allocate("a"), await backend.allocate("b")
    await backend.set_remote("a", neg(a))
    await backend.set_remote("b", neg(b))
    await backend.bridge("a", "b")
    saved: list[RecordingSaved] = []
    assert backend.bus is not None
    backend.bus.subscribe(saved.append, RecordingSaved)
    path = await backend.record_start("call-1", "a", "b")
    caller, agent = speechlike(1.5, seed=1), speechlike(1.5, seed=2)
    await asyncio.gather(a.stream(caller, ("127.0.0.1", ea.port)), b.stream(agent, ("127.0.0.1", eb.port)))
    ev = await backend.record_stop("call-1")
    assert ev is not None and saved == [ev]
    assert ev.path == str(path) and ev.channels == 2
    assert ev.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert abs(ev.duration - frames.shape[0] / 8000) < 1e-9
    assert 1.3 < ev.duration < 2.0
    left_c, _ = normalised_xcorr_peak(frames[:, 0], caller)
    right_c, _ = normalised_xcorr_peak(frames[:, 1], agent)
    cross_c, _ = normalised_xcorr_peak(frames[:, 0], agent)
    assert left_c >= 0.9 and right_c >= 0.9
    assert cross_c < 0.3


async def test_inband_dtmf_sent_as_rtp_audio_is_detected_and_reported_once(
    backend: LocalMediaBackend,
) -> None:
    a = await phone()
    ea = await backend.allocate("a")
    await backend.set_remote("a", neg(a, te=None))  # no telephone-event: in-band detection is on
    digits: list[tuple[str, DtmfDigit]] = []
    backend.on_dtmf(lambda leg, d: digits.append((leg, d)))
    gap = np.zeros(800, np.int16)
    audio = np.concatenate([gap, dtmf_tone("7", 120), gap, dtmf_tone("#", 120), gap])
    await a.stream(audio, ("127.0.0.1", ea.port))
    assert [(leg, d.digit, d.source) for leg, d in digits] == [("a", "7", "inband"), ("a", "#", "inband")]


async def test_rfc4733_end_packets_are_reported_once_and_stop_a_barge_in_prompt(
    backend: LocalMediaBackend,
) -> None:
    a = await phone()
    ea = await backend.allocate("a")
    await backend.set_remote("a", neg(a))
    digits: list[DtmfDigit] = []
    backend.on_dtmf(lambda leg, d: digits.append(d))
    handle = await backend.play("a", np.full(8000 * 5, 1000, np.int16), barge_in=True)
    await asyncio.sleep(0.1)
    assert a.transport is not None
    for i, payload in enumerate(telephone_event_payloads("5", 100)):
        a.transport.sendto(
            a.sender.build_event(101, payload, 1234, 0.0, marker=i == 0), ("127.0.0.1", ea.port)
        )
        await asyncio.sleep(0.005)
    assert await asyncio.wait_for(handle.wait(), 1.0) == "barge_in"
    assert digits == [DtmfDigit("5", 100, "rfc4733")]


async def test_prompt_then_bridge_then_prompt_keeps_one_continuous_stream(
    backend: LocalMediaBackend, tmp_path: Path
) -> None:
    a, b = await phone(), await phone()
    _, eb = await backend.allocate("a"), await backend.allocate("b")
    await backend.set_remote("a", neg(a))
    await backend.set_remote("b", neg(b))
    prompt = tmp_path / "p.wav"
    t = np.arange(int(0.1 * 44100)) / 44100
    prompt.write_bytes(wav_bytes((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 44100))
    h = await backend.play("a", prompt)
    assert await asyncio.wait_for(h.wait(), 1.0) == "finished"
    await backend.bridge("a", "b")
    await b.stream(speechlike(0.1), ("127.0.0.1", eb.port))
    await asyncio.sleep(0.03)
    h = await backend.play("a", prompt)
    await h.wait()
    assert backend.prompts.conversions == 1
    pkts = a.received
    assert len(pkts) == 15 and len({p.ssrc for p in pkts}) == 1
    seqs = [p.sequence for p in pkts]
    assert all((y - x) & 0xFFFF == 1 for x, y in zip(seqs, seqs[1:], strict=False))
    tss = [p.timestamp for p in pkts]
    assert all(0 < (y - x) & 0xFFFFFFFF < 8000 for x, y in zip(tss, tss[1:], strict=False))
    # a marker bit at each change of source
    assert [i for i, p in enumerate(pkts) if p.marker] == [5, 10]


async def test_supervisor_listen_whisper_and_barge_route_audio_as_specified(
    backend: LocalMediaBackend,
) -> None:
    caller, agent, sup = await phone(), await phone(), await phone()
    eps = {}
    for leg, p in (("c", caller), ("ag", agent), ("s", sup)):
        eps[leg] = await backend.allocate(leg)
        await backend.set_remote(leg, neg(p))
    await backend.bridge("c", "ag")

    async def talk(mode: str) -> dict[str, float]:
        await backend.supervise(mode, "s", "ag", "c")
        for p in (caller, agent, sup):
            p.received.clear()
        tones = {"c": 500.0, "ag": 1000.0, "s": 1500.0}
        n = 0.4
        tt = np.arange(int(n * 8000)) / 8000
        await asyncio.gather(
            *(
                p.stream(
                    (6000 * np.sin(2 * np.pi * tones[leg] * tt)).astype(np.int16),
                    ("127.0.0.1", eps[leg].port),
                )
                for leg, p in (("c", caller), ("ag", agent), ("s", sup))
            )
        )
        await asyncio.sleep(0.1)
        out = {}
        for name, p in (("caller", caller), ("agent", agent), ("sup", sup)):
            x = p.audio().astype(float)
            spec = np.abs(np.fft.rfft(x))
            f = np.fft.rfftfreq(x.size, 1 / 8000)
            for fr, who in ((500, "c"), (1000, "ag"), (1500, "s")):
                out[f"{name}<-{who}"] = (
                    float(spec[np.abs(f - fr) < 20].max() / (spec.max() + 1e-9)) if x.size else 0.0
                )
        return out

    heard = await talk("listen")
    assert heard["sup<-c"] > 0.3 and heard["sup<-ag"] > 0.3
    assert heard["caller<-s"] < 0.05 and heard["agent<-s"] < 0.05
    heard = await talk("whisper")
    assert heard["agent<-s"] > 0.3 and heard["agent<-c"] > 0.3
    assert heard["caller<-s"] < 0.05
    heard = await talk("barge")
    assert heard["caller<-s"] > 0.3 and heard["agent<-s"] > 0.3 and heard["sup<-c"] > 0.3
    await backend.unsupervise("s")
    assert backend.legs["c"].relay_in and backend.legs["ag"].relay_in


async def test_rtcp_sender_and_receiver_reports_are_sent_to_the_peer(tmp_path: Path) -> None:
    b = LocalMediaBackend(
        "127.0.0.1", "31300-31309", recordings_dir=tmp_path, check_interval=0.05, rtcp_interval=0.1
    )
    try:
        loop = asyncio.get_running_loop()
        a = await phone()
        rtcp_rx: asyncio.Queue[bytes] = asyncio.Queue()

        class Sink(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
                rtcp_rx.put_nowait(data)

        await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", a.port + 1))
        ea = await b.allocate("a")
        await b.set_remote("a", neg(a))
        await (await b.play("a", np.zeros(800, np.int16))).wait()
        a.send_pcm(np.zeros(160, np.int16), ("127.0.0.1", ea.port))
        pkts = parse_rtcp(await asyncio.wait_for(rtcp_rx.get(), 2.0))
        assert pkts[0].packet_type == 200 and pkts[0].sender is not None
        assert pkts[0].sender.packets == 5
        assert pkts[1].cname.startswith("softswitch@")
        # once the phone's packets are in, reports carry a reception block about its stream
        for _ in range(3):
            a.send_pcm(np.zeros(160, np.int16), ("127.0.0.1", ea.port))
            await asyncio.sleep(0.02)
        while not (report := parse_rtcp(await asyncio.wait_for(rtcp_rx.get(), 2.0))[0]).reports:
            pass
        assert report.packet_type == 201  # nothing sent since the SR: a receiver report
        assert report.reports[0].ssrc == a.sender.ssrc and report.reports[0].cumulative_lost == 0
        assert report.reports[0].highest_seq & 0xFFFF == (a.sender.seq - 1) & 0xFFFF
    finally:
        await b.close()


async def test_music_on_hold_loops_until_stopped(backend: LocalMediaBackend) -> None:
    a = await phone()
    await backend.allocate("a")
    await backend.set_remote("a", neg(a))
    handle = await backend.play("a", np.full(320, 500, np.int16), loop=True)  # a 40 ms loop
    await asyncio.sleep(0.3)
    assert not handle.done
    await backend.stop("a")
    assert await handle.wait() == "stopped"
    n = len(a.received)
    assert n >= 10
    await asyncio.sleep(0.1)
    assert len(a.received) == n


async def test_hold_stops_sending_to_the_held_phone_and_resume_restarts(backend: LocalMediaBackend) -> None:
    a, b = await phone(), await phone()
    _, eb = await backend.allocate("a"), await backend.allocate("b")
    await backend.set_remote("a", neg(a))
    await backend.set_remote("b", neg(b))
    await backend.bridge("a", "b")
    await backend.set_remote("a", neg(a, direction="inactive"))  # a re-INVITE put the call on hold
    await b.stream(speechlike(0.1), ("127.0.0.1", eb.port))
    await asyncio.sleep(0.05)
    assert a.received == []
    await backend.set_remote("a", neg(a))
    await b.stream(speechlike(0.1), ("127.0.0.1", eb.port))
    await asyncio.sleep(0.05)
    assert len(a.received) == 5


async def test_recording_can_stop_and_restart_mid_call_into_a_second_mono_file(
    backend: LocalMediaBackend,
) -> None:
    a, b = await phone(), await phone()
    ea, _ = await backend.allocate("a"), await backend.allocate("b")
    await backend.set_remote("a", neg(a))
    await backend.set_remote("b", neg(b))
    await backend.bridge("a", "b")
    first = await backend.record_start("c2", "a", "b")
    await a.stream(speechlike(0.2), ("127.0.0.1", ea.port))
    ev1 = await backend.record_stop("c2")
    assert await backend.record_stop("c2") is None
    second = await backend.record_start("c2", "a", "b", stereo=False)
    await a.stream(speechlike(0.2, seed=5), ("127.0.0.1", ea.port))
    ev2 = await backend.record_stop("c2")
    assert ev1 is not None and ev2 is not None
    assert first != second and second.name == "c2-2.wav"
    assert (ev1.channels, ev2.channels) == (2, 1)
    assert ev1.sha256 != ev2.sha256


async def test_a_key_press_whose_end_packets_are_lost_is_reported_by_the_timer(
    backend: LocalMediaBackend,
) -> None:
    a = await phone()
    ea = await backend.allocate("a")
    await backend.set_remote("a", neg(a))
    got: list[DtmfDigit] = []
    backend.on_dtmf(lambda leg, d: got.append(d))
    assert a.transport is not None
    for p in telephone_event_payloads("9", 100)[:4]:
        a.transport.sendto(a.sender.build_event(101, p, 777, 0.0), ("127.0.0.1", ea.port))
    await asyncio.sleep(0.35)
    assert got == [DtmfDigit("9", 80, "rfc4733")]


async def test_send_dtmf_uses_rfc4733_events_or_inband_tones_as_negotiated(
    backend: LocalMediaBackend,
) -> None:
    a, b = await phone(), await phone()
    await backend.allocate("a")
    await backend.allocate("b")
    await backend.set_remote("a", neg(a))
    await backend.set_remote("b", neg(b, te=None))
    await backend.send_dtmf("a", "1")
    events = [p for p in a.received if p.payload_type == 101]
    assert len(events) == 7 and len({p.timestamp for p in events}) == 1 and events[0].marker
    assert {bytes(p.payload[:1]) for p in events} == {b"\x01"}
    await backend.send_dtmf("b", "4")
    assert [d.digit for d in InbandDtmfDetector().feed(b.audio())] == ["4"]


async def test_a_stray_source_cannot_hijack_a_phone_sending_from_its_signalled_address(
    backend: LocalMediaBackend,
) -> None:
    a, b, stray = await phone(), await phone(), await phone()
    ea, eb = await backend.allocate("a"), await backend.allocate("b")
    await backend.set_remote("a", neg(a))
    await backend.set_remote("b", neg(b))
    await backend.bridge("a", "b")
    a.send_pcm(np.zeros(160, np.int16), ("127.0.0.1", ea.port))
    await asyncio.sleep(0.25)  # a timer tick sees the phone's traffic
    stray.send_pcm(np.zeros(160, np.int16), ("127.0.0.1", ea.port))
    await asyncio.sleep(0.05)
    b.send_pcm(np.zeros(160, np.int16), ("127.0.0.1", eb.port))
    await asyncio.wait_for(a.got.wait(), 1.0)
    assert stray.received == [] and backend.legs["a"].remote == ("127.0.0.1", a.port)


async def test_relay_keeps_csrc_extension_and_padding_while_converting_the_law(
    backend: LocalMediaBackend,
) -> None:
    a, b = await phone(), await phone()
    ea, _ = await backend.allocate("a"), await backend.allocate("b")
    await backend.set_remote("a", neg(a, "PCMU"))
    await backend.set_remote("b", neg(b, "PCMA"))
    await backend.bridge("a", "b")
    payload = g711.ulaw_encode(speechlike(0.02))
    pkt = RtpPacket(0, 1, 160, 42, payload, csrcs=(7, 8), extension=(0xBEDE, b"\x10\xaa\x00\x00"), padding=4)
    assert a.transport is not None
    a.transport.sendto(pkt.build(), ("127.0.0.1", ea.port))
    await asyncio.wait_for(b.got.wait(), 1.0)
    got = b.received[0]
    assert (got.payload_type, got.csrcs, got.extension, got.padding) == (
        8,
        (7, 8),
        (0xBEDE, b"\x10\xaa\x00\x00"),
        4,
    )
    assert got.payload == payload.translate(g711.ULAW_TO_ALAW)
