"""Sans-IO SIP messages: parsing, accessors, serialisation, responses (RFC 3261 sections 7, 18.3, 20, 25).

Parsing is split into a cheap structural pass that checks the grammar of the headers a UA relies
on (Via, From, To, Contact, CSeq, Call-ID, ...) and lazy accessors that build structured values
(``Via``, ``NameAddr``) only when asked. Nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from softswitch.sip.errors import SipParseError
from softswitch.sip.headers import (
    CANONICAL_NAMES,
    COMPACT_FORMS,
    CSEQ_RE,
    HEADER_INFO,
    LIST_HEADERS,
    SINGLE_HEADERS,
    VALUE_CHECKS,
    Headers,
    header_key,
)
from softswitch.sip.uri import (
    TOKEN,
    AbsoluteURI,
    NameAddr,
    SipURI,
    TelURI,
    Via,
    check_request_uri,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_comma_list,
)

__all__ = [
    "LIST_HEADERS",
    "MAGIC_COOKIE",
    "AbsoluteURI",
    "NameAddr",
    "SipURI",
    "TelURI",
    "Via",
    "REASONS",
    "Headers",
    "KeepAlive",
    "Request",
    "Response",
    "SipParseError",
    "StreamParser",
    "check_request_semantics",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_message",
    "unsupported_extensions",
]

_T = TypeVar("_T")

MAGIC_COOKIE = "z9hG4bK"
DEFAULT_MAX_SIZE = 65536
SIP_VERSION = "SIP/2.0"

REASONS: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority",
    420: "Bad Extension", 421: "Extension Required", 422: "Session Interval Too Small",
    423: "Interval Too Brief", 428: "Use Identity Header", 429: "Provide Referrer Identity",
    433: "Anonymity Disallowed", 436: "Bad Identity-Info", 437: "Unsupported Certificate",
    438: "Invalid Identity Header", 439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded", 469: "Bad Info Package", 470: "Consent Needed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event",
    491: "Request Pending", 493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
    607: "Unwanted", 608: "Rejected",
}

_TOKEN_RE = re.compile(TOKEN)
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
# Folding: a CRLF followed by whitespace continues the previous line (RFC 3261 section 7.3.1).
_FOLD_RE = re.compile(r"[ \t]*\r\n[ \t]+")
_TAG_PARAM_RE = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)
_CSEQ_MAX = 2**31 - 1
# The RFC 3261 compact forms only: later ones (o, u, r, b, x, y) may be unknown to older peers.
_SHORT_NAMES: dict[str, str] = {full: short for short, full in COMPACT_FORMS.items() if short in "imelcfsktv"}


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie plus 64 random bits)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    """A fresh From/To tag (48 random bits)."""
    return secrets.token_hex(6)


def new_call_id(host: str | None = None) -> str:
    """A fresh Call-ID, ``random@host`` when a host is given."""
    rnd = secrets.token_hex(12)
    return f"{rnd}@{host}" if host else rnd


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A CRLF keep-alive seen on a stream (RFC 5626 section 3.5.1): 'ping' (CRLFCRLF) or 'pong' (CRLF)."""

    kind: str


class _Message:
    """Shared accessors of requests and responses. Structured values are parsed on each access."""

    __slots__ = ("_cache", "body", "headers", "version")

    headers: Headers
    body: bytes
    version: str

    # -- accessors ------------------------------------------------------------------------------
    @property
    def call_id(self) -> str | None:
        """The Call-ID, or None."""
        return self.headers.get("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method) of the CSeq header."""
        raw = self.headers.get("CSeq")
        if raw is None:
            raise SipParseError("Bad Request: missing CSeq")
        m = CSEQ_RE.fullmatch(raw)
        if m is None or int(m.group(1)) > _CSEQ_MAX:
            raise SipParseError(f"Bad Request: malformed CSeq {raw[:40]!r}")
        return int(m.group(1)), m.group(2)

    def _cached(self, name: str, parse: Callable[[], _T]) -> _T:
        """A parsed header value, kept until the headers change (then parsed again).

        Callers treat the result as read-only: to change a header, set it on ``headers``.
        """
        headers = self.headers
        cache = self._cache
        if cache is None:
            cache = self._cache = {}
        hit = cache.get(name)
        if hit is not None and hit[0] is headers and hit[1] == headers.version:
            return hit[2]  # type: ignore[no-any-return]
        value = parse()
        cache[name] = (headers, headers.version, value)
        return value

    @property
    def vias(self) -> list[Via]:
        """Every Via entry, top first."""
        return self._cached("vias", self._parse_vias)

    def _parse_vias(self) -> list[Via]:
        out: list[Via] = []
        for v in self.headers.values("Via"):
            out.extend(parse_via(v))
        return out

    @property
    def top_via(self) -> Via | None:
        """The topmost Via entry, or None when there is no Via."""
        return self._cached("top_via", self._parse_top_via)

    def replace_top_via(self, via: Via) -> None:
        """Rewrite the topmost Via (e.g. received/rport stamped by the transport), keeping the
        parsed values cached so nothing parses the Vias again."""
        vias = self.vias
        raw = self.headers.values("Via")
        rest = split_comma_list(raw[0])[1:] + raw[1:] if raw else []
        self.headers.remove("Via")
        self.headers.add("Via", str(via))
        for value in rest:
            self.headers.add("Via", value)
        headers = self.headers
        cache = self._cache if self._cache is not None else {}
        self._cache = cache
        cache["top_via"] = (headers, headers.version, via)
        cache["vias"] = (headers, headers.version, [via, *vias[1:]])

    def _parse_top_via(self) -> Via | None:
        raw = self.headers.get("Via")
        if raw is None:
            return None
        return parse_via(split_comma_list(raw)[0])[0]

    def _name_addr(self, name: str) -> NameAddr:
        return self._cached(name, lambda: self._parse_name_addr(name))

    def _parse_name_addr(self, name: str) -> NameAddr:
        raw = self.headers.get(name)
        if raw is None:
            raise SipParseError(f"Bad Request: missing {name}")
        return parse_name_addr(raw)

    @property
    def from_(self) -> NameAddr:
        """The From header as a NameAddr."""
        return self._name_addr("From")

    @property
    def to(self) -> NameAddr:
        """The To header as a NameAddr."""
        return self._name_addr("To")

    @property
    def from_tag(self) -> str | None:
        """The From tag, or None."""
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        """The To tag, or None."""
        return self.to.tag

    @property
    def contact_star(self) -> bool:
        """True when the Contact header is the '*' wildcard (REGISTER removing all bindings)."""
        raw = self.headers.get("Contact")
        return raw is not None and raw.strip() == "*"

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact entry (empty for none or for the '*' wildcard)."""
        return self._cached("contacts", lambda: [parse_name_addr(v) for v in self.headers.get_all("Contact")
                                                 if v != "*"])

    @property
    def routes(self) -> list[NameAddr]:
        """Every Route entry, top first."""
        return [parse_name_addr(v) for v in self.headers.get_all("Route")]

    @property
    def record_routes(self) -> list[NameAddr]:
        """Every Record-Route entry, top first."""
        return [parse_name_addr(v) for v in self.headers.get_all("Record-Route")]

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards as an int, or None when absent."""
        raw = self.headers.get("Max-Forwards")
        if raw is None:
            return None
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
            raise SipParseError(f"Bad Request: malformed Max-Forwards {raw[:40]!r}")
        return int(raw)

    @property
    def content_length(self) -> int | None:
        """The Content-Length header value, or None when absent (serialize() always sets it)."""
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
            raise SipParseError(f"Bad Request: malformed Content-Length {raw[:40]!r}")
        return int(raw)

    @property
    def content_type(self) -> str | None:
        """The media type (lower-case ``type/subtype``, parameters dropped), or None."""
        raw = self.headers.get("Content-Type")
        if raw is None:
            return None
        return raw.split(";", 1)[0].replace(" ", "").replace("\t", "").lower()

    # -- serialisation --------------------------------------------------------------------------
    def _start_line(self) -> str:
        raise NotImplementedError

    def serialize(self, *, compact: bool = False) -> bytes:
        """The message as bytes, with Content-Length set to the body's length.

        ``compact`` uses the short header names (RFC 3261 7.3.3), e.g. to keep a UDP request
        under the path MTU (section 18.1.1).
        """
        body = self.body
        parts = [self._start_line()]
        short = _SHORT_NAMES if compact else None
        cl_name = "l" if compact else "Content-Length"
        cl_done = False
        for k, n, v in self.headers._items:
            if k == "content-length":
                if not cl_done:
                    parts.append(f"{cl_name}: {len(body)}")
                    cl_done = True
                continue
            if short is not None:
                n = short.get(k, n)
            parts.append(f"{n}: {v}")
        if not cl_done:
            parts.append(f"{cl_name}: {len(body)}")
        parts.append("\r\n")
        return "\r\n".join(parts).encode("utf-8", "surrogateescape") + body

    def __bytes__(self) -> bytes:
        return self.serialize()


class Request(_Message):
    """A SIP request. ``uri`` is the raw (validated) Request-URI; ``ruri`` parses it."""

    __slots__ = ("_ruri", "method", "uri")

    def __init__(self, method: str, uri: str, headers: Headers | Iterable[tuple[str, str]] | None = None,
                 body: bytes = b"", version: str = SIP_VERSION) -> None:
        self.method = method
        self.uri = str(uri)
        self.version = version
        self.headers = headers if isinstance(headers, Headers) else Headers(headers or ())
        self._cache: dict[str, tuple[Headers, int, Any]] | None = None
        self.body = body
        self._ruri: tuple[str, SipURI | TelURI | AbsoluteURI] | None = None

    @property
    def ruri(self) -> SipURI | TelURI | AbsoluteURI:
        """The Request-URI parsed (cached while ``uri`` is unchanged)."""
        cached = self._ruri
        if cached is not None and cached[0] == self.uri:
            return cached[1]
        parsed = parse_uri(self.uri)
        self._ruri = (self.uri, parsed)
        return parsed

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def copy(self) -> Request:
        """A copy whose headers can be changed without touching this one."""
        return Request(self.method, self.uri, self.headers.copy(), self.body, self.version)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.call_id!r}>"


class Response(_Message):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str | None = None,
                 headers: Headers | Iterable[tuple[str, str]] | None = None, body: bytes = b"",
                 version: str = SIP_VERSION) -> None:
        self.status = status
        self.reason = REASONS.get(status, "Unknown") if reason is None else reason
        self.version = version
        self.headers = headers if isinstance(headers, Headers) else Headers(headers or ())
        self._cache: dict[str, tuple[Headers, int, Any]] | None = None
        self.body = body

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def copy(self) -> Response:
        """A copy whose headers can be changed without touching this one."""
        return Response(self.status, self.reason, self.headers.copy(), self.body, self.version)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.call_id!r}>"


# --- parsing ------------------------------------------------------------------------------------
def _loose_headers(lines: list[str]) -> Headers:
    """Best-effort headers for a partial request: every line with a colon, unchecked.

    Lines holding a bare CR or LF are dropped: make_response copies values verbatim, and they
    would otherwise inject headers into our own error response.
    """
    triples = []
    for line in lines:
        name, sep, value = line.partition(":")
        name = name.strip(" \t")
        if sep and name and "\r" not in line and "\n" not in line:
            triples.append((header_key(name), CANONICAL_NAMES.get(header_key(name), name),
                            value.strip(" \t")))
    return Headers._from_triples(triples)


def _check_version(version: str, start: str) -> None:
    if version == SIP_VERSION:
        return
    if _VERSION_RE.fullmatch(version):
        if version.upper() == SIP_VERSION:
            return
        raise SipParseError(f"Version Not Supported: {version[:20]!r}", 505)
    raise SipParseError(f"Bad Request: malformed start line {start[:80]!r}")


def _parse_head(head: str) -> Request | Response:
    """Parse the start line and headers (without the blank line); the body is left empty."""
    if "\r\n " in head or "\r\n\t" in head:
        head = _FOLD_RE.sub(" ", head)
    lines = head.split("\r\n")
    if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1:
        # A bare CR or LF inside a value would let a header be smuggled past other parsers.
        raise SipParseError("Bad Request: bare CR or LF in the headers", 400, _partial(lines))
    try:
        return _parse_lines(lines)
    except SipParseError as exc:
        if exc.partial is None and exc.status != 513 and not lines[0].startswith("SIP/"):
            exc.partial = _partial(lines)
        raise


def _parse_lines(lines: list[str]) -> Request | Response:
    start = lines[0]
    msg: Request | Response
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2:
            raise SipParseError(f"Bad Request: malformed status line {start[:80]!r}")
        _check_version(parts[0], start)
        code = parts[1]
        # Status classes 1xx to 6xx exist (RFC 3261 section 21); anything else is malformed.
        if len(code) != 3 or not (code.isascii() and code.isdigit()) or not "1" <= code[0] <= "6":
            raise SipParseError(f"Bad Request: malformed status code {code[:20]!r}")
        msg = Response(int(code), parts[2] if len(parts) == 3 else "", Headers._from_triples([]))
        method = None
    else:
        parts = start.split(" ")
        if len(parts) != 3:
            raise SipParseError(f"Bad Request: malformed request line {start[:80]!r}")
        method, uri, version = parts
        if not _TOKEN_RE.fullmatch(method):
            raise SipParseError(f"Bad Request: malformed method {method[:40]!r}")
        _check_version(version, start)
        check_request_uri(uri)
        msg = Request(method, uri, Headers._from_triples([]), b"")

    triples: list[tuple[str, str, str]] = []
    append = triples.append
    info_table = HEADER_INFO
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise SipParseError(f"Bad Request: header line without colon {line[:80]!r}")
        info = info_table.get(name)
        if info is None:
            info = _header_info(name)
        key, canon, check = info
        value = value.strip(" \t")
        if check is not None and not check(value):
            raise SipParseError(f"Bad Request: malformed {canon} {value[:80]!r}")
        if key == "cseq":
            m = CSEQ_RE.fullmatch(value)
            if m is None or len(m.group(1)) > 10 or int(m.group(1)) > _CSEQ_MAX:
                raise SipParseError(f"Bad Request: malformed CSeq {value[:80]!r}")
            if method is not None and m.group(2) != method:
                raise SipParseError("Bad Request: CSeq method does not match the request method")
        append((key, canon, value))
    msg.headers._items = triples
    return msg


def _header_info(name: str) -> tuple[str, str, Callable[[str], object] | None]:
    """Key, serialised name and value check of a header name not in HEADER_INFO's spellings."""
    stripped = name.rstrip(" \t")
    info = HEADER_INFO.get(stripped)
    if info is not None:
        return info
    low = stripped.lower()
    key = COMPACT_FORMS.get(low, low)
    canon = CANONICAL_NAMES.get(key)
    if canon is None:
        if not _TOKEN_RE.fullmatch(stripped):
            raise SipParseError(f"Bad Request: malformed header name {name[:80]!r}")
        canon = stripped
    return key, canon, VALUE_CHECKS.get(key)


def _partial(lines: list[str]) -> Request | None:
    """A best-effort request from a malformed head, so that a 400/505 can still be sent.

    The request line only has to look like one: a method token first and a SIP version last
    (a Request-URI with spaces in it, RFC 4475 3.1.2.8, is still answered).
    """
    parts = lines[0].split()
    if len(parts) < 3 or not _TOKEN_RE.fullmatch(parts[0]) or not parts[-1].upper().startswith("SIP/"):
        return None
    return Request(parts[0], parts[1], _loose_headers(lines[1:]), b"", SIP_VERSION)


def _content_length(msg: Request | Response) -> int | None:
    for k, _, v in msg.headers._items:
        if k == "content-length":
            return int(v)
    return None


def parse_message(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Request | Response:
    """Parse one SIP message from a datagram; bytes beyond Content-Length are ignored (RFC 3261 18.3)."""
    if len(data) > max_size:
        raise SipParseError(f"Message Too Large: {len(data)} octets (limit {max_size})", 513)
    if not isinstance(data, bytes):
        data = bytes(data)
    if data[:1] in (b"\r", b"\n"):
        # CRLFs before the start line are ignored (RFC 3261 section 7.5).
        data = data.lstrip(b"\r\n")
    idx = data.find(b"\r\n\r\n")
    if idx < 0:
        head = data.decode("utf-8", "surrogateescape").rstrip("\r\n").split("\r\n")
        partial = None if head[0].startswith("SIP/") else _partial(head)
        raise SipParseError("Bad Request: no empty line after the headers", 400, partial)
    if idx == 0:
        raise SipParseError("Bad Request: empty message")
    msg = _parse_head(data[:idx].decode("utf-8", "surrogateescape"))
    rest = data[idx + 4:]
    n = _content_length(msg)
    if n is None:
        # Datagram without Content-Length: the body runs to the end (RFC 3261 section 18.3).
        msg.body = rest
    elif n > len(rest):
        raise SipParseError("Bad Request: Content-Length larger than body", 400,
                            msg if isinstance(msg, Request) else None)
    else:
        msg.body = rest if n == len(rest) else rest[:n]
    return msg


class StreamParser:
    """Frames SIP messages on a stream (TCP/TLS) by Content-Length; sans-IO, feed it bytes.

    After it raises SipParseError the stream is unusable and the connection should be closed.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._scan_from = 0
        self._pending: tuple[Request | Response, int, int] | None = None  # (msg, body start, end)
        self._broken: SipParseError | None = None

    @property
    def buffered(self) -> int:
        """Octets received but not yet framed."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Request | Response | KeepAlive]:
        """Add received bytes; return every complete message and keep-alive they finish."""
        if self._broken is not None:
            raise self._broken
        try:
            return self._feed(data)
        except SipParseError as exc:
            self._broken = exc
            self._buf.clear()
            raise

    def _feed(self, data: bytes) -> list[Request | Response | KeepAlive]:
        buf = self._buf
        buf += data
        size = len(buf)
        pos = 0  # consumed octets; the buffer is compacted once, at the end
        out: list[Request | Response | KeepAlive] = []
        try:
            while pos < size:
                if self._pending is None:
                    if buf[pos] == 0x0D:
                        if buf[pos:pos + 4] == b"\r\n\r\n":
                            out.append(KeepAlive("ping"))
                            pos += 4
                            continue
                        if size - pos < 2:
                            break
                        if buf[pos + 1] != 0x0A:
                            raise SipParseError("Bad Request: stray CR on stream")
                        if size - pos == 3 and buf[pos + 2] == 0x0D:
                            break  # could be the start of a CRLFCRLF ping: wait for the next octet
                        out.append(KeepAlive("pong"))
                        pos += 2
                        continue
                    idx = buf.find(b"\r\n\r\n", max(pos, self._scan_from))
                    if idx < 0:
                        if size - pos > self.max_size:
                            raise SipParseError("Message Too Large: headers exceed the size limit", 513)
                        self._scan_from = max(pos, size - 3)
                        break
                    if idx + 4 - pos > self.max_size:
                        raise SipParseError("Message Too Large: headers exceed the size limit", 513)
                    msg = _parse_head(buf[pos:idx].decode("utf-8", "surrogateescape"))
                    partial = msg if isinstance(msg, Request) else None
                    lengths = {int(v) for k, _, v in msg.headers._items if k == "content-length"}
                    if not lengths:
                        raise SipParseError("Bad Request: missing Content-Length on a stream", 400, partial)
                    if len(lengths) > 1:
                        raise SipParseError("Bad Request: conflicting Content-Length values", 400, partial)
                    total = idx + 4 - pos + lengths.pop()
                    if total > self.max_size:
                        raise SipParseError(f"Message Too Large: {total} octets (limit {self.max_size})",
                                            513, partial)
                    self._pending = (msg, idx + 4 - pos, total)
                msg, body_start, total = self._pending
                if size - pos < total:
                    break
                msg.body = bytes(buf[pos + body_start:pos + total])
                pos += total
                self._pending = None
                out.append(msg)
        finally:
            if pos:
                del buf[:pos]
                self._scan_from = max(0, self._scan_from - pos)
        return out


# --- responses ----------------------------------------------------------------------------------
def make_response(req: Request, status: int, reason: str | None = None, *, to_tag: str | None = None,
                  headers: Iterable[tuple[str, str]] = ()) -> Response:
    """Build a response to ``req`` copying Via, From, To (adding ``to_tag``), Call-ID, CSeq (RFC 3261 8.2.6)."""
    triples: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for item in req.headers._items:
        k = item[0]
        if k == "via":
            triples.append(item)
        elif k in ("from", "call-id", "cseq") and k not in seen:
            seen.add(k)
            triples.append(item)
        elif k == "to" and k not in seen:
            seen.add(k)
            value = item[2]
            if to_tag is not None and status != 100:
                tail = value[value.rfind(">") + 1:] if ">" in value else value
                if not _TAG_PARAM_RE.search(tail):
                    value = f"{value};tag={to_tag}"
            triples.append(("to", "To", value))
        elif k == "timestamp" and status == 100 and k not in seen:
            seen.add(k)
            triples.append(item)  # RFC 3261 8.2.6.1: a 100 echoes the Timestamp
    resp = Response(status, reason, Headers._from_triples(triples))
    for name, value in headers:
        resp.headers.add(name, value)
    return resp


# --- semantic checks (RFC 3261 8.2 and 16.3, RFC 4475 section 3.3) ------------------------------
DEFAULT_CONTENT_TYPES: frozenset[str] = frozenset({
    "application/sdp", "multipart/mixed", "multipart/alternative", "message/sipfrag",
    "application/dtmf-relay", "application/dtmf", "text/plain",
})
_REQUIRED = ("Via", "To", "From", "Call-ID", "CSeq")


def unsupported_extensions(req: Request, supported: Iterable[str] = frozenset()) -> list[str]:
    """Option tags in Require that are not in ``supported`` (for the Unsupported header of a 420)."""
    sup = {s.lower() for s in supported}
    return [t for t in req.headers.get_all("Require") if t.lower() not in sup]


def check_request_semantics(req: Request, *, supported: Iterable[str] = frozenset(), accept_sdp: bool = True,
                            uri_schemes: Iterable[str] = ("sip", "sips", "tel"),
                            content_types: Iterable[str] = DEFAULT_CONTENT_TYPES,
                            addressed_here: bool = False) -> tuple[int, str] | None:
    """The error status a UAS should answer a well-formed ``req`` with, or None when it may proceed.

    ``supported``: option tags we implement (Require checks, 420). ``accept_sdp``: we will answer an
    INVITE with SDP, so its Accept must allow it (406). ``addressed_here``: the Request-URI is this
    node, so an OPTIONS with Max-Forwards 0 may be answered instead of 483.
    """
    h = req.headers
    counts = h.key_counts()
    for name in _REQUIRED:
        if header_key(name) not in counts:
            return 400, f"Missing {name} header"
    if counts.get("content-length", 0) > 1:
        return 400, "Multiple Content-Length headers"
    for key in SINGLE_HEADERS:
        if counts.get(key, 0) > 1:
            return 400, f"Multiple {CANONICAL_NAMES[key]} headers"
    try:
        if req.ruri.scheme.lower() not in {s.lower() for s in uri_schemes}:
            return 416, "Unsupported URI Scheme"
        mf = req.max_forwards
        req.from_, req.to, req.cseq  # noqa: B018 - parse them: malformed values mean 400
        vias = req.vias
    except SipParseError as exc:
        return 400, exc.reason
    if not vias:
        return 400, "Missing Via header"
    if mf == 0 and not (req.method == "OPTIONS" and addressed_here):
        return 483, "Too Many Hops"
    if req.method not in ("ACK", "CANCEL") and unsupported_extensions(req, supported):
        return 420, "Bad Extension"
    if req.body:
        ctype = req.content_type
        if ctype is None or ctype not in {c.lower() for c in content_types}:
            return 415, "Unsupported Media Type"
        enc = [e.lower() for e in h.get_all("Content-Encoding")]
        if any(e != "identity" for e in enc):
            return 415, "Unsupported Media Type"
    if req.method == "INVITE" and accept_sdp and "Accept" in h:
        accepted = {a.split(";", 1)[0].strip().lower() for a in h.get_all("Accept")}
        if not accepted & {"application/sdp", "application/*", "*/*"}:
            return 406, "Not Acceptable"
    return None

