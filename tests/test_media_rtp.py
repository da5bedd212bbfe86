"""RTP/RTCP packets, the outbound stream's continuity and receiver statistics (sans-IO)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.rtp import (
    RTCP_BYE,
    RTCP_RR,
    RTCP_SDES,
    RTCP_SR,
    ReceiverStats,
    ReportBlock,
    RtpError,
    RtpPacket,
    RtpSender,
    SenderInfo,
    build_bye,
    build_rr,
    build_sdes,
    build_sr,
    looks_like_rtp,
    ntp_timestamp,
    parse_rtcp,
    payload_offset,
)


def test_minimal_packet_parses_known_bytes() -> None:
    data = bytes.fromhex("80e0 0102 00000a00 deadbeef".replace(" ", "")) + b"\xff" * 160
    p = RtpPacket.parse(data)
    assert (p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc) == (
        96,
        True,
        0x0102,
        0xA00,
        0xDEADBEEF,
    )
    assert p.payload == b"\xff" * 160 and p.csrcs == () and p.extension is None and p.padding == 0


def test_csrc_extension_and_padding_round_trip() -> None:
    p = RtpPacket(
        8,
        65535,
        2**32 - 1,
        7,
        b"abc",
        marker=True,
        csrcs=(1, 2, 3),
        extension=(0xBEDE, b"\x10\x01\x00\x00"),
        padding=5,
    )
    wire = p.build()
    assert wire[0] == 0x80 | 0x20 | 0x10 | 3
    assert len(wire) == 12 + 12 + 8 + 3 + 5
    assert RtpPacket.parse(wire) == p
    assert payload_offset(wire) == 12 + 12 + 8


@settings(max_examples=150, deadline=None)
@given(
    pt=st.integers(0, 127).filter(lambda x: not 72 <= x <= 76),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    ext=st.none()
    | st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=12).map(lambda b: b + b"\x00" * (-len(b) % 4))),
    padding=st.integers(0, 255),
    marker=st.booleans(),
)
def test_any_valid_packet_round_trips(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    payload: bytes,
    csrcs: list[int],
    ext: tuple[int, bytes] | None,
    padding: int,
    marker: bool,
) -> None:
    p = RtpPacket(pt, seq, ts, ssrc, payload, marker, tuple(csrcs), ext, padding)
    assert RtpPacket.parse(p.build()) == p


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "short"),
        (b"\x80\x00" + b"\x00" * 9, "11 octets"),
        (b"\x40\x00" + b"\x00" * 10, "version 1"),
        (b"\x82\x00" + b"\x00" * 10 + b"\x00" * 4, "CSRC count 2 but one CSRC"),
        (b"\x90\x00" + b"\x00" * 10 + b"\x00\x00", "extension header cut"),
        (b"\x90\x00" + b"\x00" * 10 + b"\xbe\xde\x00\x02" + b"\x00" * 4, "extension length beyond end"),
        (b"\xa0\x00" + b"\x00" * 10 + b"\x00", "padding count zero"),
        (b"\xa0\x00" + b"\x00" * 10 + b"\x01\x02\x03\x20", "padding longer than the packet"),
        (b"\x80\xc8" + b"\x00" * 10, "RTCP SR payload type"),
    ],
)
def test_malformed_packets_raise_rtp_error(data: bytes, why: str) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_anything_but_rtp_error(data: bytes) -> None:
    try:
        RtpPacket.parse(data)
    except RtpError:
        pass


def test_build_rejects_out_of_range_fields() -> None:
    with pytest.raises(RtpError):
        RtpPacket(128, 0, 0, 0).build()
    with pytest.raises(RtpError):
        RtpPacket(0, 0, 0, 0, extension=(1, b"abc")).build()
    with pytest.raises(RtpError):
        RtpPacket(0, 0, 0, 0, csrcs=tuple(range(16))).build()


def test_looks_like_rtp_rejects_rtcp_and_stun() -> None:
    assert looks_like_rtp(RtpPacket(0, 1, 2, 3, b"x").build())
    assert not looks_like_rtp(build_rr(1))
    assert not looks_like_rtp(b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x42" + b"\x00" * 12)  # STUN binding


def _relay(sender: RtpSender, pkt: RtpPacket, now: float) -> RtpPacket:
    buf = bytearray(pkt.build())
    sender.relay(buf, now)
    return RtpPacket.parse(bytes(buf))


def test_sender_keeps_ssrc_sequence_and_timestamp_continuous_from_prompt_to_bridge_to_prompt() -> None:
    s = RtpSender(ssrc=0x11111111, seq=65534, ts=2**32 - 320)
    out = [RtpPacket.parse(s.build(0, b"\xff" * 160, 160, now=0.02 * i)) for i in range(3)]
    # the bridged source has its own ssrc/seq/ts; the far end must see none of it
    for i in range(3):
        out.append(
            _relay(s, RtpPacket(0, 100 + i, 50_000 + 160 * i, 0x22222222, b"\x00" * 160), now=0.06 + 0.02 * i)
        )
    out += [RtpPacket.parse(s.build(0, b"\xff" * 160, 160, now=0.12 + 0.02 * i)) for i in range(2)]
    assert {p.ssrc for p in out} == {0x11111111}
    assert [p.sequence for p in out] == [65534, 65535, 0, 1, 2, 3, 4, 5]
    deltas = [(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in zip(out, out[1:], strict=False)]
    assert deltas == [160] * 7
    assert [p.marker for p in out] == [False, False, False, True, False, False, True, False]


def test_sender_advances_timestamp_by_the_silence_between_sources() -> None:
    s = RtpSender(ssrc=1, seq=0, ts=0)
    s.build(0, b"\xff" * 160, 160, now=1.0)
    p = _relay(s, RtpPacket(0, 7, 9999, 2, b"\x00" * 160), now=1.52)  # 520 ms later
    assert p.timestamp == 160 + int(0.5 * 8000)
    assert p.sequence == 1


def test_relay_keeps_the_sources_own_gaps_and_handles_a_source_restart() -> None:
    s = RtpSender(ssrc=1, seq=10, ts=1000)
    a = _relay(s, RtpPacket(0, 500, 80_000, 2, b""), 0.0)
    b = _relay(s, RtpPacket(0, 502, 80_320, 2, b""), 0.04)  # one packet lost upstream
    assert (b.sequence - a.sequence, b.timestamp - a.timestamp) == (2, 320)
    c = _relay(s, RtpPacket(0, 1, 5, 3, b""), 0.06)  # peer restarted its stream
    assert c.sequence == b.sequence + 1 and c.marker


def test_receiver_stats_count_loss_wrap_and_jitter() -> None:
    st_ = ReceiverStats()
    seqs = [65530 + i for i in range(6)] + list(range(0, 10))
    del seqs[8]  # lose one packet across the wrap
    for k, seq in enumerate(seqs):
        st_.update(99, seq & 0xFFFF, 160 * k, arrival=0.02 * k)
    assert st_.received == 15 and st_.lost == 1
    assert st_.extended_max == 65536 + 9
    assert st_.jitter < 1.0  # perfectly paced
    block = st_.report_block(now=1.0)
    assert block is not None and block.cumulative_lost == 1 and block.fraction_lost == 256 // 16


def test_receiver_stats_jitter_grows_with_irregular_arrival() -> None:
    st_ = ReceiverStats()
    for k in range(200):
        st_.update(5, k, 160 * k, arrival=0.02 * k + (0.01 if k % 2 else 0.0))
    assert 60 < st_.jitter < 90  # 10 ms alternation -> |D| = 80 timestamp units


def test_receiver_stats_resync_after_a_big_sequence_jump_on_the_second_packet() -> None:
    st_ = ReceiverStats()
    for k in range(5):
        st_.update(5, k, 160 * k, 0.02 * k)
    st_.update(5, 40000, 0, 0.2)
    assert st_.max_seq == 4
    st_.update(5, 40001, 160, 0.22)
    assert st_.max_seq == 40001 and st_.lost == 0


def test_rtcp_compound_round_trips_sr_sdes_and_bye() -> None:
    block = ReportBlock(
        ssrc=7, fraction_lost=12, cumulative_lost=-3, highest_seq=70000, jitter=44, lsr=0x1234, dlsr=0x10000
    )
    info = SenderInfo(ntp=ntp_timestamp(1_700_000_000.5), rtp_ts=160, packets=50, octets=8000)
    wire = build_sr(1, info, (block,)) + build_sdes(1, "softswitch@127.0.0.1") + build_bye(1, "hangup")
    assert len(wire) % 4 == 0
    sr, sdes, bye = parse_rtcp(wire)
    assert sr.packet_type == RTCP_SR and sr.sender == info and sr.reports == (block,)
    assert sdes.packet_type == RTCP_SDES and sdes.cname == "softswitch@127.0.0.1"
    assert bye.packet_type == RTCP_BYE and bye.ssrcs == (1,) and bye.reason == "hangup"
    rr = parse_rtcp(build_rr(9, (block,)))[0]
    assert rr.packet_type == RTCP_RR and rr.ssrc == 9 and rr.reports == (block,)


def test_ntp_timestamp_of_the_unix_epoch() -> None:
    assert ntp_timestamp(0.0) == 2208988800 << 32
    assert ntp_timestamp(0.5) & 0xFFFFFFFF == 1 << 31


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\xc9\x00",
        b"\x40\xc9\x00\x01" + b"\x00" * 4,
        b"\x81\xc9\x00\x01" + b"\x00" * 4,
        b"\x80\xc8\x00\x09" + b"\x00" * 8,
    ],
)
def test_malformed_rtcp_raises_rtp_error(data: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtcp(data)


def test_unknown_rtcp_types_are_skipped() -> None:
    app = struct.pack("!BBHI4s", 0x80, 204, 2, 1, b"name")
    assert [p.packet_type for p in parse_rtcp(app + build_rr(3))] == [RTCP_RR]
