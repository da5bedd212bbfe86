"""SIP, SIPS and tel URIs, name-addr values and Via values (RFC 3261 sections 19, 20, 25; RFC 5118).

Parsed components hold *unescaped* text (``%75ser`` becomes ``user``); ``str()`` escapes what
the grammar requires, so a round trip yields an equivalent URI, not always the same octets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote as _unquote

from softswitch.sip.errors import SipParseError

# --- RFC 3261 section 25 building blocks, shared with headers.py -------------------------------
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]++"
WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]++"
# qdtext excludes CTLs other than HTAB; quoted-pair may escape any octet but CR and LF.
QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*+"'
_ESC = r"%[0-9A-Fa-f]{2}"
_UNRES = r"A-Za-z0-9\-_.!~*'()"
USER = rf"(?:[{_UNRES}&=+$,;?/]|{_ESC})++"
PASSWORD = rf"(?:[{_UNRES}&=+$,]|{_ESC})*+"
# Hostnames are checked loosely (underscores occur in the wild); IPv6 references accept the
# RFC 5118 section 4.10 three-colon form by design, so only the character set is checked.
HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9\-._]*+))"
PORT = r"[0-9]{1,5}"
_PCHAR = rf"(?:[{_UNRES}\[\]/:&+$]|{_ESC})"
_HCHAR = rf"(?:[{_UNRES}\[\]/?:+$]|{_ESC})"
# pvalue is 1*paramchar, but an empty value (";transport=") is harmless and accepted.
URI_PARAMS = rf"(?:;{_PCHAR}++(?:={_PCHAR}*+)?)*+"
URI_HEADERS = rf"(?:\?{_HCHAR}++={_HCHAR}*+(?:&{_HCHAR}++={_HCHAR}*+)*+)?"
SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"

_SIP_URI_RE = re.compile(
    rf"(?P<scheme>sips?):(?:(?P<user>{USER})(?::(?P<password>{PASSWORD}))?@)?"
    rf"(?P<host>{HOST})(?::(?P<port>{PORT}))?(?P<params>{URI_PARAMS})(?:\?(?P<headers>\S*))?",
    re.IGNORECASE,
)
_SIP_HEADERS_RE = re.compile(URI_HEADERS)
_TEL_RE = re.compile(r"(?P<number>[0-9A-Fa-f*#+\-.()pPwW]+)(?P<params>" + URI_PARAMS + ")")
# absoluteURI characters (uric): everything printable but space, quotes, angle brackets.
_ABS_RE = re.compile(rf"(?P<scheme>{SCHEME}):(?P<rest>[^\s<>\"]+)")

_SAFE_USER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,;?/")
_SAFE_PASSWORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,")
_SAFE_PARAM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()[]/:&+$")
_SAFE_HEADER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()[]/?:+$")


def unescape(text: str) -> str:
    """Decode %HH escapes as UTF-8 (undecodable octets survive as surrogate escapes)."""
    if "%" not in text:
        return text
    return _unquote(text, encoding="utf-8", errors="surrogateescape")


def escape(text: str, safe: frozenset[str]) -> str:
    """%-escape every character of ``text`` not in ``safe`` (UTF-8 octet by octet)."""
    if all(c in safe for c in text):
        return text
    out: list[str] = []
    for c in text:
        if c in safe:
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8", "surrogateescape"))
    return "".join(out)


def _parse_params(text: str) -> dict[str, str | None]:
    """Split validated URI parameters ``;a=b;c`` into an ordered dict with lower-cased names."""
    params: dict[str, str | None] = {}
    if not text:
        return params
    escaped = "%" in text
    for part in text.split(";")[1:]:
        name, eq, value = part.partition("=")
        if escaped:
            params[unescape(name).lower()] = unescape(value) if eq else None
        else:
            params[name.lower()] = value if eq else None
    return params


def _params_str(params: dict[str, str | None], safe: frozenset[str] | None = _SAFE_PARAM) -> str:
    out = []
    for k, v in params.items():
        name = escape(k, safe) if safe else k
        if v is None:
            out.append(f";{name}")
        else:
            out.append(f";{name}={escape(v, safe) if safe else v}")
    return "".join(out)


@dataclass
class SipURI:
    """A sip: or sips: URI; components are unescaped, ``host`` lower-cased (IPv6 in brackets)."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user:  # the grammar has no empty user part: "" means none
            out.append(escape(self.user, _SAFE_USER))
            if self.password is not None:
                out.append(":" + escape(self.password, _SAFE_PASSWORD))
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        if self.params:
            out.append(_params_str(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{escape(k, _SAFE_HEADER)}={escape(v, _SAFE_HEADER)}"
                                      for k, v in self.headers.items()))
        return "".join(out)

    @property
    def transport(self) -> str | None:
        """The transport parameter, lower-cased, or None."""
        t = self.params.get("transport")
        return t.lower() if t else None

    @property
    def lr(self) -> bool:
        """True when the loose-routing flag is present."""
        return "lr" in self.params

    @property
    def host_port(self) -> str:
        """``host[:port]`` as it would appear in the URI."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def equivalent(self, other: object) -> bool:
        """URI comparison per RFC 3261 section 19.1.4."""
        if not isinstance(other, SipURI):
            return False
        if self.scheme.lower() != other.scheme.lower():
            return False
        if (self.user, self.password) != (other.user, other.password):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        for name in ("user", "ttl", "method", "maddr", "transport"):
            a, b = self.params.get(name), other.params.get(name)
            if (name in self.params) != (name in other.params):
                return False
            if a is not None and b is not None and a.lower() != b.lower():
                return False
        for name in self.params.keys() & other.params.keys():
            a, b = self.params[name], other.params[name]
            if (a is None) != (b is None) or (a is not None and b is not None and a.lower() != b.lower()):
                return False
        a_h = {k.lower(): v for k, v in self.headers.items()}
        b_h = {k.lower(): v for k, v in other.headers.items()}
        return a_h == b_h


@dataclass
class TelURI:
    """A tel: URI (RFC 3966); the number keeps its visual separators."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"tel:{self.number}{_params_str(self.params)}"

    @property
    def scheme(self) -> str:
        """Always 'tel'."""
        return "tel"

    def equivalent(self, other: object) -> bool:
        """Compare numbers without visual separators and parameters case-insensitively."""
        if not isinstance(other, TelURI):
            return False
        strip = str.maketrans("", "", "-.()")
        return (self.number.translate(strip).lower() == other.number.translate(strip).lower()
                and {k: (v or "").lower() for k, v in self.params.items()}
                == {k: (v or "").lower() for k, v in other.params.items()})


@dataclass
class AbsoluteURI:
    """Any other URI scheme, kept opaque."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    def equivalent(self, other: object) -> bool:
        """Schemes compare case-insensitively, the rest octet by octet."""
        return (isinstance(other, AbsoluteURI) and self.scheme.lower() == other.scheme.lower()
                and self.opaque == other.opaque)


URI = SipURI | TelURI | AbsoluteURI


def parse_sip_uri(text: str) -> SipURI:
    """Parse a sip:/sips: URI; raise SipParseError when it is malformed."""
    m = _SIP_URI_RE.fullmatch(text)
    if m is None:
        raise SipParseError(f"Bad Request: malformed SIP URI {text[:80]!r}")
    scheme, user, password, host, port, params, headers = m.group(
        "scheme", "user", "password", "host", "port", "params", "headers")
    hdrs: dict[str, str] = {}
    if headers is not None:
        if not _SIP_HEADERS_RE.fullmatch("?" + headers):
            raise SipParseError(f"Bad Request: malformed URI headers in {text[:80]!r}")
        for part in headers.split("&"):
            k, _, v = part.partition("=")
            hdrs[unescape(k)] = unescape(v)
    port_num = None
    if port is not None:
        port_num = int(port)
        if port_num > 65535:
            raise SipParseError(f"Bad Request: port out of range in {text[:80]!r}")
    return SipURI(
        scheme=scheme.lower(),
        user=unescape(user) if user is not None else None,
        password=unescape(password) if password is not None else None,
        host=host.lower(),
        port=port_num,
        params=_parse_params(params),
        headers=hdrs,
    )


def check_request_uri(text: str) -> None:
    """Validate a Request-URI cheaply (no objects built); raise SipParseError when malformed.

    Headers are not allowed in a Request-URI (RFC 3261 section 19.1.1; RFC 4475 3.1.2.11).
    """
    if text[:4].lower() in ("sip:", "sips"):
        m = _SIP_URI_RE.fullmatch(text)
        if m is None:
            raise SipParseError(f"Bad Request: malformed Request-URI {text[:80]!r}")
        if m.group("headers") is not None:
            raise SipParseError("Bad Request: headers in Request-URI")
        port = m.group("port")
        if port is not None and int(port) > 65535:
            raise SipParseError(f"Bad Request: port out of range in {text[:80]!r}")
    else:
        parse_uri(text)


def parse_uri(text: str) -> SipURI | TelURI | AbsoluteURI:
    """Parse any URI: sip/sips and tel are parsed, other schemes are kept opaque."""
    scheme, colon, rest = text.partition(":")
    low = scheme.lower()
    if low in ("sip", "sips"):
        return parse_sip_uri(text)
    if low == "tel":
        m = _TEL_RE.fullmatch(rest)
        if m is None:
            raise SipParseError(f"Bad Request: malformed tel URI {text[:80]!r}")
        return TelURI(number=m.group("number"), params=_parse_params(m.group("params")))
    m = _ABS_RE.fullmatch(text)
    if m is None or not colon:
        raise SipParseError(f"Bad Request: malformed URI {text[:80]!r}")
    return AbsoluteURI(scheme=scheme, opaque=rest)


# --- name-addr / addr-spec --------------------------------------------------------------------
_GENVALUE = rf"(?:[A-Za-z0-9\-.!%*_+`'~:\[\]]++|{QUOTED})"
_HPARAM = rf"[ \t]*+;[ \t]*+({TOKEN})(?:[ \t]*+=[ \t]*+({_GENVALUE}))?"
HEADER_PARAMS = rf"(?:[ \t]*+;[ \t]*+{TOKEN}(?:[ \t]*+=[ \t]*+{_GENVALUE})?)*+"
DISPLAY = rf"(?:{QUOTED}|{TOKEN}(?:[ \t]++{TOKEN})*+)"
# In the addr-spec form ';', ',' and '?' may not appear in the URI (RFC 3261 section 20).
NAME_ADDR = (rf"(?:(?:{DISPLAY})?[ \t]*+<{SCHEME}:[^\s<>\"]*+>|{SCHEME}:[^\s<>\";,?]++)"
             + HEADER_PARAMS)
_NAME_ADDR_RE = re.compile(
    rf"[ \t]*(?:(?P<display>{DISPLAY})?[ \t]*<(?P<uri>[^\s<>\"]*)>|(?P<bare>{SCHEME}:[^\s<>\";,?]+))"
    rf"(?P<params>{HEADER_PARAMS})[ \t]*"
)
_HPARAM_RE = re.compile(_HPARAM)
_QPAIR_RE = re.compile(r"\\(.)", re.DOTALL)


def _parse_header_params(text: str) -> dict[str, str | None]:
    """Split validated header parameters (``;tag=x ; lr``) into a dict with lower-cased names."""
    if not text:
        return {}
    if '"' in text:
        # A quoted value may hold ';' or '=': let the grammar find the boundaries.
        return {m.group(1).lower(): m.group(2) for m in _HPARAM_RE.finditer(text)}
    params: dict[str, str | None] = {}
    for part in text.split(";")[1:]:
        name, eq, value = part.partition("=")
        params[name.strip(" \t").lower()] = value.strip(" \t") if eq else None
    return params


def unquote(text: str) -> str:
    """Strip the quotes of a quoted-string and resolve its quoted-pairs."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        return _QPAIR_RE.sub(r"\1", inner) if "\\" in inner else inner
    return text


_QUOTE_RE = re.compile(r'[\\"\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def quote(text: str) -> str:
    """Make a quoted-string of ``text``; CR and LF cannot be quoted and become spaces."""
    text = text.replace("\r", " ").replace("\n", " ")
    return '"' + _QUOTE_RE.sub(lambda m: "\\" + m.group(0), text) + '"'


@dataclass
class NameAddr:
    """A From/To/Contact/Route value: optional display name, URI and header parameters.

    Parameter values are kept as written (quoted strings keep their quotes).
    """

    display: str | None
    uri: SipURI | TelURI | AbsoluteURI
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        """The tag parameter (From/To), or None."""
        return self.params.get("tag")

    @tag.setter
    def tag(self, value: str | None) -> None:
        if value is None:
            self.params.pop("tag", None)
        else:
            self.params["tag"] = value

    @property
    def expires(self) -> int | None:
        """The Contact expires parameter as an int, or None."""
        v = self.params.get("expires")
        return int(v) if v is not None and v.isdigit() and len(v) <= 10 else None

    @property
    def q(self) -> float | None:
        """The Contact q parameter as a float, or None."""
        v = self.params.get("q")
        try:
            return float(v) if v is not None else None
        except ValueError:
            return None

    def __str__(self) -> str:
        disp = f"{quote(self.display)} " if self.display else ""
        return f"{disp}<{self.uri}>{_params_str(self.params, None)}"


def parse_name_addr(text: str) -> NameAddr:
    """Parse one name-addr or addr-spec with header parameters; raise SipParseError if malformed."""
    m = _NAME_ADDR_RE.fullmatch(text)
    if m is None:
        raise SipParseError(f"Bad Request: malformed name-addr {text[:80]!r}")
    display, uri, bare, params = m.group("display", "uri", "bare", "params")
    if display is not None:
        display = unquote(display) if display.startswith('"') else display
    return NameAddr(display=display, uri=parse_uri(uri if bare is None else bare),
                    params=_parse_header_params(params))


# --- Via ---------------------------------------------------------------------------------------
VIA_PARM = (rf"{TOKEN}[ \t]*+/[ \t]*+{TOKEN}[ \t]*+/[ \t]*+{TOKEN}[ \t]++{HOST}(?:[ \t]*+:[ \t]*+{PORT})?"
            + HEADER_PARAMS)
_VIA_RE = re.compile(
    rf"[ \t]*(?P<proto>{TOKEN})[ \t]*/[ \t]*(?P<ver>{TOKEN})[ \t]*/[ \t]*(?P<transport>{TOKEN})[ \t]+"
    rf"(?P<host>{HOST})(?:[ \t]*:[ \t]*(?P<port>{PORT}))?(?P<params>{HEADER_PARAMS})[ \t]*"
)


@dataclass
class Via:
    """One Via entry (RFC 3261 section 20.42)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        """The branch parameter, or None."""
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The received parameter, or None."""
        return self.params.get("received")

    @property
    def rport(self) -> int | bool | None:
        """The rport value: an int, True when present without a value, None when absent."""
        if "rport" not in self.params:
            return None
        v = self.params["rport"]
        if v is None or v == "":
            return True
        return int(v) if v.isdigit() and len(v) <= 5 else True

    @property
    def maddr(self) -> str | None:
        """The maddr parameter, or None."""
        return self.params.get("maddr")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """(host, port) as sent."""
        return self.host, self.port

    @property
    def rfc3261_branch(self) -> bool:
        """True when the branch carries the RFC 3261 magic cookie (section 8.1.1.7)."""
        b = self.branch
        return b is not None and b.startswith("z9hG4bK")

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{_params_str(self.params, None)}"


def split_comma_list(value: str, *, keep_empty: bool = False) -> list[str]:
    """Split a header value at top-level commas (not inside quotes or angle brackets)."""
    if "," not in value:
        return [value.strip()]
    parts: list[str] = []
    start = 0
    in_quote = in_angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quote:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == "," and not in_angle:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return parts if keep_empty else [p for p in parts if p]


def parse_via(text: str) -> list[Via]:
    """Parse a Via header value, which may hold several comma-separated entries."""
    out: list[Via] = []
    for part in split_comma_list(text, keep_empty=True):
        m = _VIA_RE.fullmatch(part)
        if m is None:
            raise SipParseError(f"Bad Request: malformed Via {part[:80]!r}")
        proto, ver, transport, host, port, params = m.group(
            "proto", "ver", "transport", "host", "port", "params")
        port_num = int(port) if port is not None else None
        if port_num is not None and port_num > 65535:
            raise SipParseError(f"Bad Request: Via port out of range {part[:80]!r}")
        out.append(Via(transport=transport.upper(), host=host.lower(), port=port_num,
                       params=_parse_header_params(params), protocol=f"{proto.upper()}/{ver}"))
    if not out:
        raise SipParseError("Bad Request: empty Via")
    return out
