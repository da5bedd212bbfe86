"""RTP and RTCP packets (RFC 3550), sans-IO: parse/build, an outbound stream and receiver statistics.

Nothing here reads a clock or touches a socket: callers pass `now` (seconds) where time matters.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

RTP_VERSION = 2
RTP_HEADER = struct.Struct("!BBHII")
_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP or RTCP packet."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet; `payload` excludes padding, `extension` is (profile, data) when present."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    padding: int = 0  # number of padding octets (including the count octet) on the wire

    def build(self) -> bytes:
        """Serialise to wire bytes."""
        if not 0 <= self.payload_type < 128:
            raise RtpError("payload type out of range")
        if len(self.csrcs) > 15:
            raise RtpError("at most 15 CSRCs")
        b0 = (
            (RTP_VERSION << 6)
            | (0x20 if self.padding else 0)
            | (0x10 if self.extension else 0)
            | len(self.csrcs)
        )
        b1 = (0x80 if self.marker else 0) | self.payload_type
        parts = [
            RTP_HEADER.pack(
                b0, b1, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc & 0xFFFFFFFF
            )
        ]
        parts.extend(struct.pack("!I", c) for c in self.csrcs)
        if self.extension is not None:
            profile, data = self.extension
            if len(data) % 4:
                raise RtpError("extension data must be a multiple of 4 octets")
            parts.append(struct.pack("!HH", profile, len(data) // 4) + data)
        parts.append(self.payload)
        if self.padding:
            if not 1 <= self.padding <= 255:
                raise RtpError("padding must be 1..255 octets")
            parts.append(b"\x00" * (self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse wire bytes; raises RtpError on anything malformed."""
        n = len(data)
        if n < 12:
            raise RtpError("shorter than an RTP header")
        b0, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError("not RTP version 2")
        cc = b0 & 0x0F
        off = 12 + 4 * cc
        if off > n:
            raise RtpError("CSRC list truncated")
        csrcs = struct.unpack_from(f"!{cc}I", data, 12) if cc else ()
        ext = None
        if b0 & 0x10:
            if off + 4 > n:
                raise RtpError("extension header truncated")
            profile, words = struct.unpack_from("!HH", data, off)
            end = off + 4 + 4 * words
            if end > n:
                raise RtpError("extension truncated")
            ext = (profile, bytes(data[off + 4 : end]))
            off = end
        pad = 0
        end = n
        if b0 & 0x20:
            pad = data[-1]
            if pad == 0 or off + pad > n:
                raise RtpError("bad padding length")
            end = n - pad
        pt = b1 & 0x7F
        if 72 <= pt <= 76:
            # RFC 5761: these collide with RTCP SR/RR/SDES/BYE/APP when multiplexed
            raise RtpError("payload type reserved for RTCP")
        return cls(
            payload_type=pt,
            sequence=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[off:end]),
            marker=bool(b1 & 0x80),
            csrcs=tuple(csrcs),
            extension=ext,
            padding=pad,
        )


def payload_offset(data: bytes) -> int:
    """Offset of the payload in a packet whose header was already validated (fast path)."""
    b0 = data[0]
    off = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        off += 4 + 4 * int.from_bytes(data[off + 2 : off + 4], "big")
    return off


def looks_like_rtp(data: bytes) -> bool:
    """Cheap check used before latching: version 2, not RTCP, long enough."""
    return len(data) >= 12 and data[0] >> 6 == 2 and not 72 <= (data[1] & 0x7F) <= 76


def random_ssrc() -> int:
    """A random 32-bit SSRC (RFC 3550 8.1)."""
    return int.from_bytes(os.urandom(4), "big")


class RtpSender:
    """The outbound RTP stream of one leg: one SSRC with continuous sequence and timestamps.

    The leg's audio may come from prompts (built here) or from another leg (relayed packets whose
    header is rewritten in place). When the source changes the sequence continues by one and the
    timestamp advances by the wall time since the last packet, so the far end's jitter buffer sees
    one continuous stream with a marker bit at each new talkspurt.
    """

    __slots__ = (
        "_last_now",
        "_last_ts_in",
        "_seq_off",
        "_src",
        "_ts_off",
        "clock_rate",
        "octets",
        "packets",
        "seq",
        "ssrc",
        "ts",
    )

    def __init__(
        self,
        ssrc: int | None = None,
        *,
        clock_rate: int = 8000,
        seq: int | None = None,
        ts: int | None = None,
    ) -> None:
        self.ssrc = random_ssrc() if ssrc is None else ssrc
        self.clock_rate = clock_rate
        rnd = os.urandom(6)
        self.seq = (int.from_bytes(rnd[:2], "big") if seq is None else seq) & 0xFFFF  # next seq to send
        self.ts = (int.from_bytes(rnd[2:], "big") if ts is None else ts) & 0xFFFFFFFF  # ts of next frame
        self.packets = 0
        self.octets = 0
        self._src: int | None = None  # SSRC of the relayed source we are locked to, None = local
        self._seq_off = 0
        self._ts_off = 0
        self._last_now: float | None = None
        self._last_ts_in = 0

    def _advance_for_gap(self, now: float) -> int:
        """Timestamp for a packet sent at `now` after a source change, at least the next frame."""
        if self._last_now is None:
            return self.ts
        gap = int(round((now - self._last_now) * self.clock_rate))
        return (self.ts + max(0, gap - 160)) & 0xFFFFFFFF if gap > 160 else self.ts

    def build(
        self, payload_type: int, payload: bytes, samples: int, now: float, *, marker: bool = False
    ) -> bytes:
        """Build the next locally generated packet carrying `samples` samples of audio."""
        if self._src is not None:
            self._src = None
            marker = True
            ts = self._advance_for_gap(now)
        else:
            ts = self.ts
        hdr = RTP_HEADER.pack(0x80, (0x80 if marker else 0) | payload_type, self.seq, ts, self.ssrc)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (ts + samples) & 0xFFFFFFFF
        self._last_now = now
        self.packets += 1
        self.octets += len(payload)
        return hdr + payload

    def build_event(
        self, payload_type: int, payload: bytes, ts: int, now: float, *, marker: bool = False
    ) -> bytes:
        """Build an RFC 4733 event packet with an explicit timestamp (the event's start)."""
        hdr = RTP_HEADER.pack(
            0x80, (0x80 if marker else 0) | payload_type, self.seq, ts & 0xFFFFFFFF, self.ssrc
        )
        self.seq = (self.seq + 1) & 0xFFFF
        self._last_now = now
        self.packets += 1
        self.octets += len(payload)
        return hdr + payload

    def relay(self, buf: bytearray, now: float) -> None:
        """Rewrite a relayed packet's SSRC, sequence and timestamp in place (header already checked)."""
        _b0, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(buf)
        if ssrc != self._src:
            # a new source (first packet, bridge after prompt, or the peer restarted its stream)
            gap_ts = self._advance_for_gap(now)
            self._seq_off = (self.seq - seq) & 0xFFFF
            self._ts_off = (gap_ts - ts) & 0xFFFFFFFF
            self._src = ssrc
            b1 |= 0x80
        out_seq = (seq + self._seq_off) & 0xFFFF
        out_ts = (ts + self._ts_off) & 0xFFFFFFFF
        RTP_HEADER.pack_into(buf, 0, buf[0], b1, out_seq, out_ts, self.ssrc)
        # keep `seq`/`ts` pointing past the newest packet so a later switch continues from it
        if ((out_seq - self.seq) & 0xFFFF) < 0x8000:
            self.seq = (out_seq + 1) & 0xFFFF
        if ((out_ts - self.ts) & 0xFFFFFFFF) < 0x80000000:
            self.ts = (out_ts + 160) & 0xFFFFFFFF
        self._last_now = now
        self.packets += 1
        self.octets += len(buf) - 12


class ReceiverStats:
    """Receiver statistics for one source (RFC 3550 A.1, A.3 and A.8) feeding RTCP reports."""

    __slots__ = (
        "base_seq",
        "bad_seq",
        "clock_rate",
        "cycles",
        "expected_prior",
        "jitter",
        "last_sr_arrival",
        "last_sr_ntp",
        "max_seq",
        "received",
        "received_prior",
        "ssrc",
        "transit",
    )

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.ssrc: int | None = None
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0
        self.received = 0
        self.bad_seq = -1
        self.expected_prior = 0
        self.received_prior = 0
        self.transit: float | None = None
        self.jitter = 0.0  # in timestamp units
        self.last_sr_ntp = 0  # middle 32 bits of the last SR's NTP timestamp
        self.last_sr_arrival: float | None = None

    def update(self, ssrc: int, seq: int, ts: int, arrival: float) -> None:
        """Account for one received packet (arrival in seconds). On the relay path: kept lean."""
        if ssrc == self.ssrc:
            max_seq = self.max_seq
            delta = (seq - max_seq) & 0xFFFF
            if delta < 3000:
                if seq < max_seq:
                    self.cycles += _SEQ_MOD
                self.max_seq = seq
            elif delta <= 0xFFFF - 100:
                # a big jump: accept it on the second consecutive packet (A.1 resync)
                if seq != self.bad_seq:
                    self.bad_seq = (seq + 1) & 0xFFFF
                    return
                self._restart(ssrc, seq)
            # else a duplicate or reordered packet: counted, no max change
        else:
            self._restart(ssrc, seq)
        self.received += 1
        transit = arrival * self.clock_rate - ts
        last = self.transit
        self.transit = transit
        if last is not None:
            d = transit - last
            if d < 0:
                d = -d
            if d < 2147483648.0:
                self.jitter += (d - self.jitter) * 0.0625

    def _restart(self, ssrc: int, seq: int) -> None:
        """A new source, or the same one after a sequence discontinuity."""
        self.ssrc = ssrc
        self.base_seq = self.max_seq = seq
        self.cycles = 0
        self.received = 0
        self.expected_prior = self.received_prior = 0
        self.transit = None
        self.jitter = 0.0

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def report_block(self, now: float) -> ReportBlock | None:
        """A report block for an RR/SR, advancing the interval counters; None before any packet."""
        if self.ssrc is None:
            return None
        expected = self.expected
        exp_int = expected - self.expected_prior
        rec_int = self.received - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received
        lost_int = exp_int - rec_int
        fraction = 0 if exp_int == 0 or lost_int <= 0 else min(255, (lost_int << 8) // exp_int)
        dlsr = 0
        if self.last_sr_arrival is not None:
            dlsr = int((now - self.last_sr_arrival) * 65536) & 0xFFFFFFFF
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            cumulative_lost=max(-(1 << 23), min((1 << 23) - 1, self.lost)),
            highest_seq=self.extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter),
            lsr=self.last_sr_ntp,
            dlsr=dlsr,
        )

    def sender_report_received(self, ntp: int, now: float) -> None:
        """Remember an SR from this source for the LSR/DLSR fields."""
        self.last_sr_ntp = (ntp >> 16) & 0xFFFFFFFF
        self.last_sr_arrival = now


# ---------------------------------------------------------------------------------------- RTCP

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 6.4.1)."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    jitter: int
    lsr: int = 0
    dlsr: int = 0

    def build(self) -> bytes:
        lost = self.cumulative_lost & 0xFFFFFF
        return struct.pack(
            "!IIIIII",
            self.ssrc,
            (self.fraction_lost << 24) | lost,
            self.highest_seq,
            self.jitter,
            self.lsr,
            self.dlsr,
        )

    @classmethod
    def parse(cls, data: bytes, off: int) -> ReportBlock:
        ssrc, fl, hs, jit, lsr, dlsr = struct.unpack_from("!IIIIII", data, off)
        lost = fl & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        return cls(ssrc, fl >> 24, lost, hs, jit, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderInfo:
    """The sender information of an SR."""

    ntp: int  # 64-bit NTP timestamp
    rtp_ts: int
    packets: int
    octets: int


@dataclass(frozen=True, slots=True)
class RtcpPacket:
    """One RTCP packet of a compound: SR, RR, SDES (CNAME only kept) or BYE."""

    packet_type: int
    ssrc: int
    sender: SenderInfo | None = None
    reports: tuple[ReportBlock, ...] = ()
    cname: str = ""
    ssrcs: tuple[int, ...] = ()  # BYE sources
    reason: str = ""


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp for a Unix time."""
    secs = int(unix_time)
    frac = int((unix_time - secs) * (1 << 32)) & 0xFFFFFFFF
    return ((secs + _NTP_EPOCH_OFFSET) << 32) | frac


def _rtcp_header(pt: int, count: int, body_len: int) -> bytes:
    # length in 32-bit words minus one, including the 4-octet header
    return struct.pack("!BBH", 0x80 | count, pt, (body_len + 4) // 4 - 1)


def build_sr(ssrc: int, sender: SenderInfo, reports: tuple[ReportBlock, ...] = ()) -> bytes:
    """A Sender Report."""
    body = struct.pack(
        "!IQII", ssrc, sender.ntp, sender.rtp_ts & 0xFFFFFFFF, sender.packets & 0xFFFFFFFF
    ) + struct.pack("!I", sender.octets & 0xFFFFFFFF)
    body += b"".join(r.build() for r in reports[:31])
    return _rtcp_header(RTCP_SR, len(reports[:31]), len(body)) + body


def build_rr(ssrc: int, reports: tuple[ReportBlock, ...] = ()) -> bytes:
    """A Receiver Report."""
    body = struct.pack("!I", ssrc) + b"".join(r.build() for r in reports[:31])
    return _rtcp_header(RTCP_RR, len(reports[:31]), len(body)) + body


def build_sdes(ssrc: int, cname: str) -> bytes:
    """An SDES packet with one CNAME item."""
    c = cname.encode()[:255]
    item = struct.pack("!IBB", ssrc, 1, len(c)) + c + b"\x00"
    item += b"\x00" * (-len(item) % 4)
    return _rtcp_header(RTCP_SDES, 1, len(item)) + item


def build_bye(ssrc: int, reason: str = "") -> bytes:
    """A BYE packet for one source."""
    body = struct.pack("!I", ssrc)
    if reason:
        r = reason.encode()[:255]
        body += bytes([len(r)]) + r
        body += b"\x00" * (-len(body) % 4)
    return _rtcp_header(RTCP_BYE, 1, len(body)) + body


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP datagram; unknown packet types are skipped, malformed raise RtcpError."""
    out: list[RtcpPacket] = []
    off = 0
    n = len(data)
    if n < 8:
        raise RtpError("shorter than an RTCP packet")
    while off < n:
        if off + 4 > n:
            raise RtpError("RTCP header truncated")
        b0, pt, length = struct.unpack_from("!BBH", data, off)
        if b0 >> 6 != 2:
            raise RtpError("not RTCP version 2")
        end = off + 4 * (length + 1)
        if end > n:
            raise RtpError("RTCP packet truncated")
        count = b0 & 0x1F
        body = off + 4
        if pt in (RTCP_SR, RTCP_RR):
            need = 4 + (20 if pt == RTCP_SR else 0) + 24 * count
            if body + need > end:
                raise RtpError("report truncated")
            (ssrc,) = struct.unpack_from("!I", data, body)
            sender = None
            p = body + 4
            if pt == RTCP_SR:
                ntp, rts, pk, oc = struct.unpack_from("!QIII", data, p)
                sender = SenderInfo(ntp, rts, pk, oc)
                p += 20
            reports = tuple(ReportBlock.parse(data, p + 24 * i) for i in range(count))
            out.append(RtcpPacket(pt, ssrc, sender=sender, reports=reports))
        elif pt == RTCP_SDES:
            if count and body + 4 <= end:
                (ssrc,) = struct.unpack_from("!I", data, body)
                cname = ""
                p = body + 4
                while p + 2 <= end and data[p] != 0:
                    typ, ln = data[p], data[p + 1]
                    if typ == 1:
                        cname = bytes(data[p + 2 : p + 2 + ln]).decode("utf-8", "replace")
                    p += 2 + ln
                out.append(RtcpPacket(pt, ssrc, cname=cname))
        elif pt == RTCP_BYE:
            if body + 4 * count > end:
                raise RtpError("BYE truncated")
            ssrcs = struct.unpack_from(f"!{count}I", data, body)
            reason = ""
            p = body + 4 * count
            if p < end:
                ln = data[p]
                reason = bytes(data[p + 1 : p + 1 + ln]).decode("utf-8", "replace")
            out.append(RtcpPacket(pt, ssrcs[0] if ssrcs else 0, ssrcs=tuple(ssrcs), reason=reason))
        off = end
    return out


@dataclass(slots=True)
class RtcpState:
    """What an endpoint learned from the far end's RTCP (for logs and quality metrics)."""

    cname: str = ""
    last_report: ReportBlock | None = None
    bye: bool = False
    reports_received: int = 0
    extra: dict[str, float] = field(default_factory=dict)
