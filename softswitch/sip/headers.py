"""The SIP header multimap: ordered, case-insensitive names, compact forms (RFC 3261 section 7.3)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

from softswitch.sip.uri import (
    DISPLAY,
    HEADER_PARAMS,
    HOST,
    NAME_ADDR,
    QUOTED,
    SCHEME,
    TOKEN,
    VIA_PARM,
    WORD,
    split_comma_list,
)

# RFC 3261 section 7.3.3 plus the compact forms registered later (RFC 3265, 3515, 3892, 4028).
COMPACT_FORMS: dict[str, str] = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via",
    "o": "event", "u": "allow-events", "r": "refer-to", "b": "referred-by", "x": "session-expires",
    "y": "identity",
}

# Canonical spelling used when serialising; unknown names keep the spelling they arrived with.
CANONICAL_NAMES: dict[str, str] = {n.lower(): n for n in (
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact", "Content-Disposition",
    "Content-Encoding", "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date",
    "Error-Info", "Event", "Expires", "From", "Identity", "In-Reply-To", "Max-Forwards",
    "Min-Expires", "Min-SE", "MIME-Version", "Organization", "P-Asserted-Identity",
    "P-Preferred-Identity", "Path", "Priority", "Privacy", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-To",
    "Referred-By", "Replaces", "Reply-To", "Require", "Retry-After", "Route", "RSeq", "Server",
    "Service-Route", "Session-Expires", "Subject", "Subscription-State", "Supported", "Timestamp",
    "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
)}

# Headers whose values are comma-separated lists (RFC 3261 section 7.3.1). The authentication
# headers, Date, To, From etc. contain commas but are not lists and are deliberately absent.
LIST_HEADERS: frozenset[str] = frozenset({
    "accept", "accept-encoding", "accept-language", "alert-info", "allow", "allow-events",
    "call-info", "contact", "content-encoding", "content-language", "error-info", "in-reply-to",
    "p-asserted-identity", "p-preferred-identity", "path", "privacy", "proxy-require", "reason",
    "record-route", "require", "route", "service-route", "supported", "unsupported", "via",
    "warning",
})

# Headers that may appear at most once (RFC 3261 section 7.3.1 / 20); used by semantic checks.
SINGLE_HEADERS: frozenset[str] = frozenset({
    "call-id", "content-length", "content-type", "cseq", "from", "max-forwards", "to",
})


def header_key(name: str) -> str:
    """The lookup key of a header name: lower-case full form."""
    info = HEADER_INFO.get(name)
    if info is not None:
        return info[0]
    low = name.lower()
    return COMPACT_FORMS.get(low, low)


def canonical_name(name: str) -> str:
    """The serialised spelling of a header name (compact forms expanded)."""
    low = name.lower()
    key = COMPACT_FORMS.get(low, low)
    return CANONICAL_NAMES.get(key, name if key == low else key)


def _clean(value: object) -> str:
    text = str(value)
    if "\r" in text or "\n" in text:
        raise ValueError("header values may not contain CR or LF")
    return text


class Headers:
    """Ordered multimap of SIP headers with case-insensitive names and compact forms.

    Values are kept as raw text; structured values are parsed on access by the message.
    """

    __slots__ = ("_items", "version")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        # Each entry is (key, name-as-serialised, value).
        self._items: list[tuple[str, str, str]] = [
            (header_key(n), canonical_name(n), _clean(v)) for n, v in items
        ]
        # Bumped by every change, so messages can cache what they parsed out of the headers.
        self.version = 0

    @classmethod
    def _from_triples(cls, triples: list[tuple[str, str, str]]) -> Headers:
        h = cls.__new__(cls)
        h._items = triples
        h.version = 0
        return h

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first raw value of ``name``, or ``default``."""
        key = header_key(name)
        for k, _, v in self._items:
            if k == key:
                return v
        return default

    def values(self, name: str) -> list[str]:
        """Every raw value of ``name``, one per header line, lists not split."""
        key = header_key(name)
        return [v for k, _, v in self._items if k == key]

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``; for list headers, comma-separated values are split."""
        key = header_key(name)
        vals = [v for k, _, v in self._items if k == key]
        if key not in LIST_HEADERS:
            return vals
        out: list[str] = []
        for v in vals:
            out.extend(split_comma_list(v))
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` header by one with ``value`` (at the first one's position)."""
        key = header_key(name)
        new = (key, canonical_name(name), _clean(value))
        self.version += 1
        items = self._items
        for i, (k, _, _) in enumerate(items):
            if k == key:
                items[i] = new
                self._items = items[: i + 1] + [t for t in items[i + 1:] if t[0] != key]
                return
        items.append(new)

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Append a header, or insert it before the other headers of that name if ``first``."""
        key = header_key(name)
        new = (key, canonical_name(name), _clean(value))
        self.version += 1
        if first:
            for i, (k, _, _) in enumerate(self._items):
                if k == key:
                    self._items.insert(i, new)
                    return
        self._items.append(new)

    def remove(self, name: str) -> None:
        """Remove every header called ``name``."""
        key = header_key(name)
        self.version += 1
        self._items = [t for t in self._items if t[0] != key]

    def remove_first(self, name: str) -> str | None:
        """Remove the first header called ``name`` and return its value (e.g. popping a Route)."""
        key = header_key(name)
        for i, (k, _, v) in enumerate(self._items):
            if k == key:
                del self._items[i]
                self.version += 1
                return v
        return None

    def count(self, name: str) -> int:
        """How many header lines called ``name`` there are."""
        key = header_key(name)
        return sum(1 for k, _, _ in self._items if k == key)

    def key_counts(self) -> dict[str, int]:
        """How many lines each header key has (one pass, for checks of many headers at once)."""
        counts: dict[str, int] = {}
        for k, _, _ in self._items:
            counts[k] = counts.get(k, 0) + 1
        return counts

    def items(self) -> Iterator[tuple[str, str]]:
        """(name, raw value) pairs in order."""
        return ((n, v) for _, n, v in self._items)

    def copy(self) -> Headers:
        """A shallow copy (values are immutable strings)."""
        return Headers._from_triples(list(self._items))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = header_key(name)
        return any(k == key for k, _, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return self.items()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({[(n, v) for _, n, v in self._items]!r})"


# --- header value grammar checked at parse time (RFC 3261 section 25) ---------------------------
_CONTACT_RE = re.compile(rf"\*|{NAME_ADDR}(?:[ \t]*+,[ \t]*+{NAME_ADDR})*+")
_NAME_ADDR_HDR_RE = re.compile(NAME_ADDR)
_ROUTE_ITEM = rf"(?:{DISPLAY})?[ \t]*+<{SCHEME}:[^\s<>\"]*+>{HEADER_PARAMS}"
_ROUTE_RE = re.compile(rf"{_ROUTE_ITEM}(?:[ \t]*+,[ \t]*+{_ROUTE_ITEM})*+")
_VIA_LIST_RE = re.compile(rf"{VIA_PARM}(?:[ \t]*+,[ \t]*+{VIA_PARM})*+")
CSEQ_RE = re.compile(rf"([0-9]{{1,10}})[ \t]++({TOKEN})")
_CALL_ID_RE = re.compile(rf"{WORD}(?:@{WORD})?")
_DIGITS_RE = re.compile(r"[0-9]{1,10}")
_DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)
_RETRY_AFTER_RE = re.compile(r"([0-9]{1,10})(?:[ \t]*+\([^)]*\))?(?:[ \t]*+;.*)?")
_CONTENT_TYPE_RE = re.compile(
    rf"{TOKEN}[ \t]*+/[ \t]*+{TOKEN}(?:[ \t]*+;[ \t]*+{TOKEN}[ \t]*+=[ \t]*+(?:{TOKEN}|{QUOTED}))*+"
)
_HOST_RE = re.compile(HOST)
_UINT32 = 2**32 - 1


def _check_uint(value: str, limit: int) -> bool:
    return value.isdigit() and value.isascii() and len(value) <= 10 and int(value) <= limit


def _check_max_forwards(value: str) -> bool:
    return value.isdigit() and value.isascii() and len(value) <= 10 and int(value) <= 255


def _check_expires(value: str) -> bool:
    return value.isdigit() and value.isascii() and len(value) <= 10 and int(value) <= _UINT32


def _check_content_length(value: str) -> bool:
    return value.isdigit() and value.isascii() and len(value) <= 10


def _check_retry_after(value: str) -> bool:
    m = _RETRY_AFTER_RE.fullmatch(value)
    return m is not None and int(m.group(1)) <= _UINT32


# key -> predicate on the raw value; a False result makes the message a 400 (RFC 4475 3.1.2).
VALUE_CHECKS: dict[str, Callable[[str], object]] = {
    "via": _VIA_LIST_RE.fullmatch,
    "from": _NAME_ADDR_HDR_RE.fullmatch,
    "to": _NAME_ADDR_HDR_RE.fullmatch,
    "contact": _CONTACT_RE.fullmatch,
    "route": _ROUTE_RE.fullmatch,
    "record-route": _ROUTE_RE.fullmatch,
    "call-id": _CALL_ID_RE.fullmatch,
    "max-forwards": _check_max_forwards,
    "content-length": _check_content_length,
    "expires": _check_expires,
    "min-expires": _check_expires,
    "date": _DATE_RE.fullmatch,
    "retry-after": _check_retry_after,
    "content-type": _CONTENT_TYPE_RE.fullmatch,
}


HeaderInfo = tuple[str, str, "Callable[[str], object] | None"]


def _header_info_table() -> dict[str, HeaderInfo]:
    """(key, canonical name, value check) for every usual spelling of the known header names."""
    table: dict[str, HeaderInfo] = {}
    for key, canon in CANONICAL_NAMES.items():
        for spelling in (canon, key, canon.upper()):
            table[spelling] = (key, canon, VALUE_CHECKS.get(key))
    for short, key in COMPACT_FORMS.items():
        for spelling in (short, short.upper()):
            table[spelling] = (key, CANONICAL_NAMES[key], VALUE_CHECKS.get(key))
    return table


# Read-only after import: saves the lower()/compact/canonical look-ups on the parser's hot path.
HEADER_INFO: dict[str, HeaderInfo] = _header_info_table()
