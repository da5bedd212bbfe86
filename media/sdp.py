"""SDP (RFC 4566) parse/serialise and offer/answer (RFC 3264) for G.711 audio, sans-IO.

Shared with the SIP side: `parse()` a body, `answer()` an offer (or get the 488 reason from
`unacceptable_reason()`), `offer()` to build our own, `is_hold()` to detect hold.
IPv6 connection lines (`c=IN IP6 2001:db8::1`, RFC 5118 4.6) carry the bare address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

PCMU_PT = 0
PCMA_PT = 8
DEFAULT_TE_PT = 101
PTIME_MS = 20

# static payload types that we can name without an rtpmap (RFC 3551)
_STATIC: Mapping[int, tuple[str, int]] = MappingProxyType(
    {
        0: ("PCMU", 8000),
        8: ("PCMA", 8000),
        3: ("GSM", 8000),
        4: ("G723", 8000),
        9: ("G722", 8000),
        18: ("G729", 8000),
    }
)
_SUPPORTED_AUDIO = ("PCMU", "PCMA")
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


class SdpError(ValueError):
    """An SDP body we cannot parse."""


@dataclass(slots=True)
class Connection:
    """A c= line: network type IN, address type IP4/IP6 and the address (no brackets)."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(slots=True)
class Media:
    """One m= section with its own c= (optional) and attributes in order."""

    media: str
    port: int
    proto: str
    fmts: list[str]
    connection: Connection | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    bandwidth: list[str] = field(default_factory=list)
    port_count: int | None = None

    def attr(self, name: str) -> str | None:
        """The first value of attribute `name` (flags give "")."""
        for k, v in self.attributes:
            if k == name:
                return "" if v is None else v
        return None

    def attrs(self, name: str) -> list[str]:
        return [("" if v is None else v) for k, v in self.attributes if k == name]

    @property
    def direction(self) -> str:
        for k, _ in self.attributes:
            if k in _DIRECTIONS:
                return k
        return ""

    def rtpmap(self) -> dict[int, tuple[str, int]]:
        """Payload type -> (encoding name, clock rate), from a=rtpmap and the static table."""
        out: dict[int, tuple[str, int]] = {}
        for f in self.fmts:
            if f.isdigit() and int(f) in _STATIC:
                out[int(f)] = _STATIC[int(f)]
        for v in self.attrs("rtpmap"):
            pt_s, _, enc = v.partition(" ")
            if not pt_s.strip().isdigit():
                continue
            name, _, rest = enc.strip().partition("/")
            rate_s = rest.partition("/")[0]
            out[int(pt_s)] = (name, int(rate_s) if rate_s.isdigit() else 8000)
        return out

    def fmtp(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for v in self.attrs("fmtp"):
            pt_s, _, params = v.partition(" ")
            if pt_s.isdigit():
                out[int(pt_s)] = params.strip()
        return out


@dataclass(slots=True)
class SessionDescription:
    """A parsed SDP body. Unknown lines are kept in order so serialising round-trips them."""

    origin_user: str = "-"
    session_id: str = "0"
    session_version: str = "0"
    origin: Connection = field(default_factory=lambda: Connection("0.0.0.0"))
    session_name: str = "-"
    connection: Connection | None = None
    timing: str = "0 0"
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)
    other: list[str] = field(
        default_factory=list
    )  # session-level lines we do not interpret (i=, u=, e=, b=, ...)

    def serialize(self) -> str:
        """Serialise with CRLF line ends (RFC 4566 5)."""
        lines = [
            "v=0",
            f"o={self.origin_user} {self.session_id} {self.session_version} {self.origin}",
            f"s={self.session_name or '-'}",
        ]
        lines.extend(self.other)
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.append(f"t={self.timing}")
        lines.extend(_attr_line(k, v) for k, v in self.attributes)
        for m in self.media:
            port = f"{m.port}/{m.port_count}" if m.port_count else str(m.port)
            lines.append(f"m={m.media} {port} {m.proto} {' '.join(m.fmts)}".rstrip())
            if m.connection is not None:
                lines.append(f"c={m.connection}")
            lines.extend(f"b={b}" for b in m.bandwidth)
            lines.extend(_attr_line(k, v) for k, v in m.attributes)
        return "\r\n".join(lines) + "\r\n"

    def __bytes__(self) -> bytes:
        return self.serialize().encode()

    def media_connection(self, m: Media) -> Connection | None:
        """The effective connection of a media section (its own c= or the session's)."""
        return m.connection or self.connection

    def audio(self) -> Media | None:
        """The first audio section with a non-zero port, or the first audio section."""
        audios = [m for m in self.media if m.media == "audio"]
        for m in audios:
            if m.port:
                return m
        return audios[0] if audios else None


def _attr_line(k: str, v: str | None) -> str:
    return f"a={k}" if v is None else f"a={k}:{v}"


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"bad c= line: {value!r}")
    nettype, addrtype, addr = parts
    if addrtype not in ("IP4", "IP6"):
        raise SdpError(f"unknown address type {addrtype!r}")
    addr = addr.split("/")[0]  # multicast TTL / count is irrelevant for unicast calls
    if addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]  # tolerate bracketed IPv6 although RFC 4566 forbids it
    if addrtype == "IP6" and ":" not in addr:
        raise SdpError(f"IP6 connection without an IPv6 address: {addr!r}")
    return Connection(addr, addrtype, nettype)


def parse(body: str | bytes) -> SessionDescription:
    """Parse an SDP body, tolerating LF line ends, trailing blanks and unknown lines."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SdpError("SDP is not UTF-8") from e
    sd = SessionDescription()
    seen_v = seen_o = False
    current: Media | None = None
    for raw in body.replace("\r\n", "\n").split("\n"):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"malformed SDP line {line!r}")
        typ, value = line[0], line[2:]
        if typ == "v":
            if value.strip() != "0":
                raise SdpError("unsupported SDP version")
            seen_v = True
        elif typ == "o":
            parts = value.split()
            if len(parts) != 6:
                raise SdpError(f"bad o= line: {value!r}")
            sd.origin_user, sd.session_id, sd.session_version = parts[0], parts[1], parts[2]
            sd.origin = _parse_connection(" ".join(parts[3:]))
            seen_o = True
        elif typ == "s" and current is None:
            sd.session_name = value
        elif typ == "t":
            sd.timing = value
        elif typ == "c":
            conn = _parse_connection(value)
            if current is None:
                sd.connection = conn
            else:
                current.connection = conn
        elif typ == "m":
            parts = value.split()
            if len(parts) < 3:
                raise SdpError(f"bad m= line: {value!r}")
            port_s, _, count_s = parts[1].partition("/")
            if not port_s.isdigit() or int(port_s) > 65535 or (count_s and not count_s.isdigit()):
                raise SdpError(f"bad m= port: {parts[1]!r}")
            current = Media(
                parts[0], int(port_s), parts[2], parts[3:], port_count=int(count_s) if count_s else None
            )
            sd.media.append(current)
        elif typ == "a":
            name, sep, val = value.partition(":")
            entry = (name, val if sep else None)
            (current.attributes if current is not None else sd.attributes).append(entry)
        elif typ == "b" and current is not None:
            current.bandwidth.append(value)
        elif current is None:
            sd.other.append(line)
        # media-level i=/k= lines are dropped: nothing in a call depends on them
    if not seen_v or not seen_o:
        raise SdpError("SDP without v= or o= line")
    return sd


def _session_direction(sd: SessionDescription) -> str:
    for k, _ in sd.attributes:
        if k in _DIRECTIONS:
            return k
    return ""


def direction(sd: SessionDescription, m: Media | None = None) -> str:
    """The effective direction of a media section (media level, else session level, else sendrecv)."""
    m = m or sd.audio()
    return (m.direction if m else "") or _session_direction(sd) or "sendrecv"


def is_hold(sd: SessionDescription) -> bool:
    """True when the offer puts us on hold: sendonly/inactive, or the RFC 2543 c=0.0.0.0 style."""
    m = sd.audio()
    if m is None:
        return False
    conn = sd.media_connection(m)
    if conn is not None and conn.address in ("0.0.0.0", "::"):
        return True
    return direction(sd, m) in ("sendonly", "inactive")


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What both sides agreed for the audio stream of a leg."""

    remote_address: str
    remote_port: int
    codec: str  # PCMU | PCMA
    payload_type: int
    telephone_event_pt: int | None
    direction: str  # our direction: sendrecv | sendonly | recvonly | inactive
    ptime: int = PTIME_MS

    @property
    def remote_rtcp_port(self) -> int:
        return self.remote_port + 1


_ANSWER_DIRECTION: Mapping[str, str] = MappingProxyType(
    {
        "sendrecv": "sendrecv",
        "sendonly": "recvonly",
        "recvonly": "sendonly",
        "inactive": "inactive",
    }
)


def _choose(m: Media, prefer: tuple[str, ...]) -> tuple[int, str, int | None] | None:
    rtpmap = m.rtpmap()
    audio_pt = None
    # RFC 3264 6.1: honour the offerer's order among the codecs we support
    for f in m.fmts:
        if not f.isdigit():
            continue
        pt = int(f)
        name, rate = rtpmap.get(pt, ("", 0))
        if name.upper() in prefer and rate == 8000:
            audio_pt = (pt, name.upper())
            break
    if audio_pt is None:
        return None
    te = None
    for f in m.fmts:
        if f.isdigit():
            name, rate = rtpmap.get(int(f), ("", 0))
            if name.lower() == "telephone-event" and rate == 8000:
                te = int(f)
                break
    return audio_pt[0], audio_pt[1], te


def unacceptable_reason(
    offer: SessionDescription, *, codecs: tuple[str, ...] = _SUPPORTED_AUDIO
) -> str | None:
    """None when the offer has an audio stream we can accept; otherwise a 488 reason phrase."""
    audios = [m for m in offer.media if m.media == "audio" and m.port]
    if not audios:
        return "No audio stream offered"
    for m in audios:
        if m.proto.upper() != "RTP/AVP":
            continue
        conn = offer.media_connection(m)
        if conn is None:
            continue
        if _choose(m, codecs) is not None:
            return None
    if all(m.proto.upper() != "RTP/AVP" for m in audios):
        return "Unsupported media transport (only RTP/AVP)"
    if all(offer.media_connection(m) is None for m in audios):
        return "No connection address"
    return "No common codec (PCMU or PCMA required)"


def negotiate(offer: SessionDescription, *, codecs: tuple[str, ...] = _SUPPORTED_AUDIO) -> Negotiated | None:
    """What we would use for an offer (also applies to an answer to our offer), or None."""
    for m in offer.media:
        if m.media != "audio" or not m.port or m.proto.upper() != "RTP/AVP":
            continue
        conn = offer.media_connection(m)
        chosen = _choose(m, codecs)
        if conn is None or chosen is None:
            continue
        pt, codec, te = chosen
        remote_dir = direction(offer, m)
        ours = _ANSWER_DIRECTION.get(remote_dir, "sendrecv")
        if conn.address in ("0.0.0.0", "::") and ours == "sendrecv":
            ours = "recvonly"
        ptime_s = m.attr("ptime")
        ptime = int(ptime_s) if ptime_s and ptime_s.strip().isdigit() else PTIME_MS
        return Negotiated(conn.address, m.port, codec, pt, te, ours, ptime)
    return None


def _addrtype(address: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:
        return "IP4"


def offer(
    address: str,
    port: int,
    *,
    codecs: tuple[str, ...] = _SUPPORTED_AUDIO,
    telephone_event_pt: int | None = DEFAULT_TE_PT,
    direction: str = "sendrecv",
    session_id: int = 0,
    version: int = 0,
    user: str = "softswitch",
) -> SessionDescription:
    """Our own offer: one audio stream with the given codecs (in preference order) and DTMF events."""
    pts = {"PCMU": PCMU_PT, "PCMA": PCMA_PT}
    fmts = [str(pts[c]) for c in codecs]
    attrs: list[tuple[str, str | None]] = [("rtpmap", f"{pts[c]} {c}/8000") for c in codecs]
    if telephone_event_pt is not None:
        fmts.append(str(telephone_event_pt))
        attrs.append(("rtpmap", f"{telephone_event_pt} telephone-event/8000"))
        attrs.append(("fmtp", f"{telephone_event_pt} 0-16"))
    attrs.append(("ptime", str(PTIME_MS)))
    attrs.append((direction, None))
    conn = Connection(address, _addrtype(address))
    return SessionDescription(
        origin_user=user,
        session_id=str(session_id),
        session_version=str(version),
        origin=replace(conn),
        session_name="softswitch",
        connection=conn,
        media=[Media("audio", port, "RTP/AVP", fmts, attributes=attrs)],
    )


def answer(
    offer_sd: SessionDescription,
    address: str,
    port: int,
    *,
    codecs: tuple[str, ...] = _SUPPORTED_AUDIO,
    session_id: int = 0,
    version: int = 0,
    user: str = "softswitch",
    hold: bool = False,
) -> tuple[SessionDescription, Negotiated]:
    """Build the answer to an offer (RFC 3264 6): one m= per offered m=, unused ones rejected with port 0.

    Raises SdpError with the 488 reason when nothing is acceptable (check `unacceptable_reason` first
    to avoid the exception).
    """
    reason = unacceptable_reason(offer_sd, codecs=codecs)
    if reason is not None:
        raise SdpError(reason)
    neg = negotiate(offer_sd, codecs=codecs)
    assert neg is not None  # guaranteed by unacceptable_reason
    if hold:
        neg = replace(
            neg, direction={"sendrecv": "sendonly", "recvonly": "inactive"}.get(neg.direction, neg.direction)
        )
    conn = Connection(address, _addrtype(address))
    media: list[Media] = []
    used = False
    for m in offer_sd.media:
        accept = (
            not used
            and m.media == "audio"
            and m.port
            and m.proto.upper() == "RTP/AVP"
            and _choose(m, codecs) is not None
            and offer_sd.media_connection(m) is not None
        )
        if not accept:
            # RFC 3264 6: a rejected stream keeps its m= line with port zero and a format from the offer
            media.append(Media(m.media, 0, m.proto, m.fmts[:1] or ["0"]))
            continue
        used = True
        fmts = [str(neg.payload_type)]
        attrs: list[tuple[str, str | None]] = [("rtpmap", f"{neg.payload_type} {neg.codec}/8000")]
        if neg.telephone_event_pt is not None:
            fmts.append(str(neg.telephone_event_pt))
            attrs.append(("rtpmap", f"{neg.telephone_event_pt} telephone-event/8000"))
            attrs.append(("fmtp", f"{neg.telephone_event_pt} 0-16"))
        attrs.append(("ptime", str(PTIME_MS)))
        attrs.append((neg.direction, None))
        media.append(Media("audio", port, "RTP/AVP", fmts, attributes=attrs))
    sd = SessionDescription(
        origin_user=user,
        session_id=str(session_id),
        session_version=str(version),
        origin=replace(conn),
        session_name="softswitch",
        connection=conn,
        timing=offer_sd.timing,
        media=media,
    )
    return sd, neg
