"""Digest access authentication for SIP (RFC 3261 section 22, RFC 7616, RFC 8760), sans-IO.

Server side: :class:`DigestServer` issues stateless, HMAC-protected nonces and verifies credentials
with nonce-count replay protection.  Client side: :class:`DigestClient` answers 401/407 challenges
(registering to a carrier, calling through a trunk).  Nothing here reads a clock or touches the network:
the current time is always an argument.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from urllib.parse import unquote

__all__ = [
    "ALGORITHMS",
    "AuthError",
    "AuthReason",
    "AuthResult",
    "CredentialsLookup",
    "DigestClient",
    "DigestServer",
    "StaticCredentials",
    "build_challenge",
    "compute_response",
    "credentials_subject",
    "find_credentials",
    "ha1",
    "parse_auth_header",
]


class AuthError(ValueError):
    """An Authorization / WWW-Authenticate value that cannot be parsed or answered."""


# --------------------------------------------------------------------------------------------- hashing


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha512_256(data: bytes) -> str:
    return hashlib.new("sha512_256", data).hexdigest()


def _hash_table() -> Mapping[str, Callable[[bytes], str]]:
    table: dict[str, Callable[[bytes], str]] = {"MD5": _md5, "SHA-256": _sha256}
    # SHA-512/256 depends on the OpenSSL build; offer it only where hashlib really has it.
    if "sha512_256" in hashlib.algorithms_available:
        table["SHA-512-256"] = _sha512_256
    return MappingProxyType(table)


_HASHES = _hash_table()

#: Every algorithm token this module can compute, strongest first (RFC 8760 preference order).
ALGORITHMS: tuple[str, ...] = tuple(
    name
    for base in ("SHA-512-256", "SHA-256", "MD5")
    if base in _HASHES
    for name in (base, base + "-sess")
)


def _algorithm_table() -> Mapping[str, tuple[str, bool]]:
    table: dict[str, tuple[str, bool]] = {}
    for base in _HASHES:
        table[base] = (base, False)
        table[base + "-SESS"] = (base, True)
    return MappingProxyType(table)


# Upper-cased algorithm token -> (base hash name, is-session-variant); a dict hit is the hot path.
_ALGORITHM_TABLE = _algorithm_table()


def _split_algorithm(algorithm: str) -> tuple[str, bool]:
    """Return (base hash name, is-session-variant) for an algorithm token, or raise AuthError."""
    found = _ALGORITHM_TABLE.get(algorithm.upper())
    if found is None:
        raise AuthError(f"unsupported digest algorithm {algorithm!r}")
    return found


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username:realm:password) for the algorithm's hash (the value to store instead of a password).

    For a ``-sess`` algorithm this is the stored part only; the per-nonce step happens at verify time.
    """
    base, _ = _split_algorithm(algorithm)
    return _HASHES[base](f"{username}:{realm}:{password}".encode())


def compute_response(
    *,
    algorithm: str,
    ha1_value: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The digest ``response`` value (RFC 7616 section 3.4.1), given the stored HA1.

    ``qop`` None computes the RFC 2069 form, which has no nonce count or client nonce.
    """
    base, sess = _split_algorithm(algorithm)
    h = _HASHES[base]
    key = ha1_value.lower()
    if sess:
        if cnonce is None:
            raise AuthError("a -sess algorithm needs a cnonce")
        key = h(f"{key}:{nonce}:{cnonce}".encode())
    if qop is not None and qop.lower() == "auth-int":
        ha2 = h(f"{method}:{uri}:{h(body)}".encode())
    else:
        ha2 = h(f"{method}:{uri}".encode())
    if qop is None:
        return h(f"{key}:{nonce}:{ha2}".encode())
    if nc is None or cnonce is None:
        raise AuthError("qop needs nc and cnonce")
    return h(f"{key}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())


# --------------------------------------------------------------------------------------------- parsing

_MAX_HEADER = 8192
# RFC 7230 tchar; scheme names and parameter names are tokens.
_TOKEN = r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+"
_WS = r"[ \t\r\n]*"
_SCHEME_RE = re.compile(rf"{_WS}({_TOKEN})(?:[ \t\r\n]+|\Z)")
# Quoted strings allow quoted-pairs and UTF-8 but no control characters (a CR/LF there is an attack).
# Written as an unrolled loop (plain run, then escape + plain run) because a per-character
# alternation is several times slower in the re engine.
_QDTEXT = r'[^"\\\x00-\x08\x0a-\x1f\x7f]*'
_QUOTED_BODY = rf"{_QDTEXT}(?:\\[^\x00-\x08\x0a-\x1f\x7f]{_QDTEXT})*"
_UNQUOTED_BODY = r'[^\s,"\\\x00-\x1f\x7f]+'
_PARAM_RE = re.compile(rf'({_TOKEN}){_WS}={_WS}(?:"({_QUOTED_BODY})"|({_UNQUOTED_BODY}))')
# The whole parameter list, validated in one C-level pass: params separated by commas (empty list
# elements allowed, as the RFC 7230 #rule permits).  Each quantified piece is followed by a disjoint
# character class, so matching stays linear even on hostile input.
_PARAM_NC = rf'{_TOKEN}{_WS}={_WS}(?:"{_QUOTED_BODY}"|{_UNQUOTED_BODY})'
_COMMAS = rf"(?:,{_WS})*"
_LIST_RE = re.compile(rf"{_WS}{_COMMAS}(?:{_PARAM_NC}{_WS}(?:,{_WS}{_COMMAS}{_PARAM_NC}{_WS})*{_COMMAS})?")
_UNESCAPE_RE = re.compile(r"\\(.)")


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Split a credentials or challenge value into (scheme, params); parameter names are lower-cased.

    Quoted values are unquoted and unescaped.  Raises AuthError on anything malformed, including a
    repeated parameter (an attacker could otherwise make two components disagree about which one counts).
    """
    if not isinstance(value, str):
        raise AuthError("header value must be a str")
    if len(value) > _MAX_HEADER:
        raise AuthError("authentication header too long")
    m = _SCHEME_RE.match(value)
    if m is None:
        raise AuthError("missing authentication scheme")
    pos = m.end()
    if _LIST_RE.fullmatch(value, pos) is None:
        raise AuthError("malformed auth-param list")
    params: dict[str, str] = {}
    # Validated above, so consecutive matches are exactly the parameters (separators cannot start one).
    for name, quoted, token in _PARAM_RE.findall(value, pos):
        key = name.lower()
        if key in params:
            raise AuthError(f"duplicate auth-param {key!r}")
        if token:
            params[key] = token
        else:
            params[key] = _UNESCAPE_RE.sub(r"\1", quoted) if "\\" in quoted else quoted
    return m.group(1), params


def _quote(text: str) -> str:
    if "\r" in text or "\n" in text or "\x00" in text:
        # Never let a configured or echoed value inject a header line.
        raise AuthError("control character in an authentication parameter")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_challenge(
    realm: str,
    nonce: str,
    *,
    algorithm: str | None = "MD5",
    qop: str | None = "auth",
    opaque: str | None = None,
    stale: bool = False,
    domain: str | None = None,
) -> str:
    """A WWW-Authenticate / Proxy-Authenticate value: ``Digest realm="...", nonce="...", ...``."""
    parts = [f"realm={_quote(realm)}"]
    if domain is not None:
        parts.append(f"domain={_quote(domain)}")
    parts.append(f"nonce={_quote(nonce)}")
    if opaque is not None:
        parts.append(f"opaque={_quote(opaque)}")
    if stale:
        parts.append("stale=TRUE")
    if algorithm is not None:
        _split_algorithm(algorithm)
        parts.append(f"algorithm={algorithm}")
    if qop is not None:
        parts.append(f"qop={_quote(qop)}")
    return "Digest " + ", ".join(parts)


def find_credentials(values: Sequence[str], realm: str) -> str | None:
    """Pick the Authorization / Proxy-Authorization value meant for ``realm`` among several, if any."""
    for value in values:
        try:
            scheme, params = parse_auth_header(value)
        except AuthError:
            continue
        if scheme.lower() == "digest" and params.get("realm") == realm:
            return value
    return None


# --------------------------------------------------------------------------------------------- server

#: credentials_lookup(username, realm, base algorithm such as "MD5" or "SHA-256") -> HA1 hex, or None.
CredentialsLookup = Callable[[str, str, str], "str | None"]


class AuthReason(StrEnum):
    """Why verify() accepted or refused credentials (compares equal to its plain string value)."""

    OK = "ok"
    MALFORMED = "malformed"
    WRONG_SCHEME = "wrong-scheme"
    WRONG_REALM = "wrong-realm"
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"
    UNSUPPORTED_QOP = "unsupported-qop"
    URI_MISMATCH = "uri-mismatch"
    BAD_NONCE = "bad-nonce"
    STALE_NONCE = "stale-nonce"
    REPLAY = "replay"
    BAD_CREDENTIALS = "bad-credentials"


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome of DigestServer.verify.

    ``username`` is set only when ``ok``.  ``stale`` means the client knew the password but the nonce
    is no longer usable (expired, replayed, or not ours): answer with ``challenge(now, stale=True)``
    and do not count a failure.
    ``claimed_username`` is for logs only; an unknown user and a wrong password give the same result.
    """

    ok: bool
    username: str | None
    stale: bool
    reason: AuthReason
    claimed_username: str | None = None
    algorithm: str | None = None


_NONCE_RAW = 8 + 8  # signed millisecond timestamp + random
_NONCE_TAG = 16  # truncated HMAC-SHA-256
_NONCE_LEN = 2 * (_NONCE_RAW + _NONCE_TAG)  # lower-case hex: canonical, and fromhex is the fastest decoder
_NONCE_RE = re.compile(r"[0-9a-f]{64}\Z")
_NC_RE = re.compile(r"[0-9a-fA-F]{8}\Z")


class DigestServer:
    """Challenges and verifies Digest credentials for one realm.

    Nonces carry their issue time and an HMAC under ``secret``, so any node sharing the secret can
    check them without storage.  The highest nonce-count seen per nonce is remembered (per instance,
    bounded by ``max_tracked_nonces``) to refuse replays.  Thread-unsafe by design: one event loop.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        nonce_ttl: float = 300.0,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        qop: str | None = "auth",
        *,
        max_tracked_nonces: int = 65536,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("secret must be at least 16 bytes")
        if not algorithms:
            raise ValueError("at least one algorithm is required")
        if max_tracked_nonces < 1:
            raise ValueError("max_tracked_nonces must be positive")
        self.realm = realm
        self.nonce_ttl = float(nonce_ttl)
        self._secret = bytes(secret)
        self._realm_prefix = realm.encode() + b"\x00"
        canonical: dict[str, str] = {}
        for alg in algorithms:
            _split_algorithm(alg)
            canonical[alg.upper()] = alg
        self._algorithms: tuple[str, ...] = tuple(canonical.values())
        self._algorithm_keys = frozenset(canonical)
        qops = tuple(q.strip().lower() for q in qop.split(",")) if qop else ()
        for q in qops:
            if q not in ("auth", "auth-int"):
                raise ValueError(f"unsupported qop {q!r}")
        self._qops = frozenset(qops)
        self._qop_param = ",".join(qops) if qops else None
        self._max_tracked = max_tracked_nonces
        # nonce tag -> [highest nc, issue time]; kept in first-use order so the front is the oldest.
        self._seen: OrderedDict[bytes, list[float]] = OrderedDict()
        # Issue time (ms) of the newest nonce ever evicted for room: an untracked nonce issued at or
        # before it may have been used already, so it is answered as stale rather than trusted.
        self._evicted_floor_ms = -(2**63)
        # Used for unknown users so they cost the same hashing as known ones.
        self._dummy_ha1 = {base: h(secrets.token_bytes(16)) for base, h in _HASHES.items()}

    # ----------------------------------------------------------------------------------------- nonces

    def new_nonce(self, now: float) -> str:
        """A fresh nonce stamped with ``now``."""
        raw = struct.pack(">q", int(now * 1000)) + secrets.token_bytes(8)
        tag = hmac.digest(self._secret, self._realm_prefix + raw, "sha256")[:_NONCE_TAG]
        return (raw + tag).hex()

    def _decode_nonce(self, nonce: str) -> tuple[bytes, int] | None:
        """(tag, issue time in ms) for a nonce this server issued, else None."""
        if len(nonce) != _NONCE_LEN or _NONCE_RE.match(nonce) is None:
            return None
        blob = bytes.fromhex(nonce)
        raw, tag = blob[:_NONCE_RAW], blob[_NONCE_RAW:]
        expected = hmac.digest(self._secret, self._realm_prefix + raw, "sha256")[:_NONCE_TAG]
        if not hmac.compare_digest(tag, expected):
            return None
        return tag, struct.unpack(">q", raw[:8])[0]

    def _is_stale(self, issued_ms: int, now: float) -> bool:
        age = now - issued_ms / 1000.0
        # A nonce "from the future" (clock stepped back, or a peer node with skew) is as suspect as an old one.
        return age > self.nonce_ttl or age < -self.nonce_ttl

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            tag, entry = next(iter(seen.items()))
            if not self._is_stale(int(entry[1]), now):
                break
            del seen[tag]

    @property
    def tracked_nonces(self) -> int:
        """How many nonces currently have a remembered nonce-count (for metrics and tests)."""
        return len(self._seen)

    # -------------------------------------------------------------------------------------- challenge

    def challenge(self, now: float, stale: bool = False) -> list[str]:
        """One challenge value per configured algorithm, in preference order, sharing one nonce.

        Send each as its own WWW-Authenticate (401) or Proxy-Authenticate (407) header line.
        """
        nonce = self.new_nonce(now)
        return [
            build_challenge(self.realm, nonce, algorithm=alg, qop=self._qop_param, stale=stale)
            for alg in self._algorithms
        ]

    # ----------------------------------------------------------------------------------------- verify

    def verify(
        self,
        method: str,
        header_value: str,
        credentials_lookup: CredentialsLookup,
        now: float,
        body: bytes = b"",
        request_uri: str | None = None,
    ) -> AuthResult:
        """Check an Authorization / Proxy-Authorization value for a request; never raises on bad input.

        ``credentials_lookup`` receives the base algorithm ("MD5", "SHA-256", ...; never a -sess name)
        and returns the stored HA1 in hex, or None for an unknown user.  ``request_uri`` (the
        Request-URI as received) is compared with the digest ``uri`` parameter when given.
        Exceptions raised by ``credentials_lookup`` propagate: a store outage is not a wrong password.
        """
        try:
            scheme, p = parse_auth_header(header_value)
        except AuthError:
            return _FAIL_MALFORMED
        if scheme.lower() != "digest":
            return _FAIL_SCHEME
        username = p.get("username")
        if username is None and "username*" in p:
            username = _decode_ext_value(p["username*"])
        realm = p.get("realm")
        nonce = p.get("nonce")
        uri = p.get("uri")
        response = p.get("response")
        if username is None or realm is None or nonce is None or uri is None or response is None:
            return _FAIL_MALFORMED
        if realm != self.realm:
            return _FAIL_REALM
        algorithm = p.get("algorithm", "MD5").upper()
        if algorithm not in self._algorithm_keys:
            return _FAIL_ALGORITHM
        base, sess = _split_algorithm(algorithm)

        qop = p.get("qop")
        nc = p.get("nc")
        cnonce = p.get("cnonce")
        if qop is not None:
            if qop.lower() not in self._qops:
                return _FAIL_QOP
            if nc is None or cnonce is None or _NC_RE.match(nc) is None:
                return _FAIL_MALFORMED
        elif self._qops:
            # We always offer qop; a client that drops it would also drop replay protection.
            return _FAIL_QOP
        if sess and cnonce is None:
            return _FAIL_MALFORMED
        if request_uri is not None and not _uri_matches(uri, request_uri):
            return _FAIL_URI

        # Checked after the digest: a client holding a nonce we cannot vouch for (issued before a
        # restart or secret rotation, or by another node) but the right password gets stale=true
        # and silently retries, as RFC 7616 3.3 intends; a wrong digest is a failure either way.
        decoded = self._decode_nonce(nonce)

        stored = credentials_lookup(username, realm, base)
        dummy = self._dummy_ha1[base]
        known = isinstance(stored, str) and len(stored) == len(dummy)
        key: str = stored if known and stored is not None else dummy
        try:
            expected = compute_response(
                algorithm=algorithm,
                ha1_value=key,
                nonce=nonce,
                method=method,
                uri=uri,
                qop=qop,
                nc=nc,
                cnonce=cnonce,
                body=body,
            ).encode("ascii")
            given = response.lower().encode("ascii")
        except (UnicodeEncodeError, AuthError):
            # Non-ASCII response or unencodable text: treat like a wrong digest, not a crash.
            expected, given = b"0", b"1"
        if not (hmac.compare_digest(expected, given) and known):
            return AuthResult(False, None, False, AuthReason.BAD_CREDENTIALS, username, algorithm)

        # From here the client proved it knows the password; problems are about freshness only.
        if decoded is None:
            return AuthResult(False, None, True, AuthReason.BAD_NONCE, username, algorithm)
        tag, issued_ms = decoded
        if self._is_stale(issued_ms, now):
            return AuthResult(False, None, True, AuthReason.STALE_NONCE, username, algorithm)
        if nc is not None:
            count = int(nc, 16)
            self._expire(now)
            entry = self._seen.get(tag)
            if entry is None:
                if count < 1 or issued_ms <= self._evicted_floor_ms:
                    return AuthResult(False, None, True, AuthReason.REPLAY, username, algorithm)
                if len(self._seen) >= self._max_tracked:
                    _, evicted = self._seen.popitem(last=False)
                    self._evicted_floor_ms = max(self._evicted_floor_ms, int(evicted[1]))
                self._seen[tag] = [count, issued_ms]
            elif count <= entry[0]:
                return AuthResult(False, None, True, AuthReason.REPLAY, username, algorithm)
            else:
                entry[0] = count
        return AuthResult(True, username, False, AuthReason.OK, username, algorithm)


_FAIL_MALFORMED = AuthResult(False, None, False, AuthReason.MALFORMED)
_FAIL_SCHEME = AuthResult(False, None, False, AuthReason.WRONG_SCHEME)
_FAIL_REALM = AuthResult(False, None, False, AuthReason.WRONG_REALM)
_FAIL_ALGORITHM = AuthResult(False, None, False, AuthReason.UNSUPPORTED_ALGORITHM)
_FAIL_QOP = AuthResult(False, None, False, AuthReason.UNSUPPORTED_QOP)
_FAIL_URI = AuthResult(False, None, False, AuthReason.URI_MISMATCH)


def _uri_matches(digest_uri: str, request_uri: str) -> bool:
    # Scheme and host are case-insensitive in SIP URIs; the response hash already pins the exact text,
    # so case-folding here only avoids refusing honest clients, it cannot help an attacker.
    return digest_uri == request_uri or digest_uri.strip().lower() == request_uri.strip().lower()


def _decode_ext_value(value: str) -> str | None:
    """RFC 8187 ``UTF-8''percent-encoded`` (username*), or None if it is not that."""
    charset, sep, rest = value.partition("'")
    if not sep or charset.lower() != "utf-8":
        return None
    _lang, sep, encoded = rest.partition("'")
    if not sep:
        return None
    if not encoded.isascii():
        return None
    try:
        return unquote(encoded, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return None


def credentials_subject(header_value: str) -> tuple[str, str, str] | None:
    """(username, realm, base algorithm) named by a credentials value, or None if it is unusable.

    For shells whose user store is asynchronous: await the HA1 for these, then call
    ``DigestServer.verify`` with a lookup that returns it.
    """
    try:
        scheme, p = parse_auth_header(header_value)
        if scheme.lower() != "digest":
            return None
        username = p.get("username")
        if username is None and "username*" in p:
            username = _decode_ext_value(p["username*"])
        realm = p.get("realm")
        if username is None or realm is None:
            return None
        return username, realm, _split_algorithm(p.get("algorithm", "MD5"))[0]
    except AuthError:
        return None


class StaticCredentials:
    """An in-memory credentials_lookup: plain passwords and/or pre-computed HA1 values.

    HA1s are keyed by (username, realm, base algorithm) because an HA1 is only valid for the realm
    it was computed with; a plain password serves every realm and algorithm.
    """

    def __init__(
        self,
        passwords: Mapping[str, str] | None = None,
        ha1s: Mapping[tuple[str, str, str], str] | None = None,
    ) -> None:
        self._passwords: dict[str, str] = dict(passwords or {})
        self._ha1s: dict[tuple[str, str, str], str] = {
            (u, r, a.upper()): v.lower() for (u, r, a), v in (ha1s or {}).items()
        }

    def add_password(self, username: str, password: str) -> None:
        """Configure a user by plain-text password."""
        self._passwords[username] = password

    def add_ha1(self, username: str, realm: str, algorithm: str, value: str) -> None:
        """Configure a user by HA1 (hex) for one realm and base algorithm."""
        self._ha1s[(username, realm, algorithm.upper())] = value.lower()

    def __call__(self, username: str, realm: str, algorithm: str) -> str | None:
        """Return the HA1 for this user, realm and base algorithm, or None if unknown."""
        found = self._ha1s.get((username, realm, algorithm.upper()))
        if found is not None:
            return found
        password = self._passwords.get(username)
        if password is None:
            return None
        try:
            return ha1(username, realm, password, algorithm)
        except UnicodeEncodeError:
            return None


# --------------------------------------------------------------------------------------------- client


_STRENGTH = {name.upper(): rank for rank, name in enumerate(reversed(ALGORITHMS))}


class DigestClient:
    """Answers Digest challenges for outbound requests (carrier registration, trunk calls).

    Keeps a nonce-count per nonce so re-using a challenge for later requests increments ``nc``.
    """

    def __init__(self, *, max_nonces: int = 64) -> None:
        self._nc: OrderedDict[str, int] = OrderedDict()
        self._max_nonces = max_nonces

    def authorization(
        self,
        challenge_value: str | Sequence[str],
        method: str,
        uri: str,
        username: str,
        password: str,
        body: bytes = b"",
        *,
        cnonce: str | None = None,
    ) -> str:
        """The Authorization / Proxy-Authorization value answering the strongest offered challenge.

        ``challenge_value`` is one WWW-Authenticate / Proxy-Authenticate value or all of them.
        ``cnonce`` is for reproducible tests; by default a random one is drawn.  Raises AuthError if no
        challenge can be answered.
        """
        values = [challenge_value] if isinstance(challenge_value, str) else list(challenge_value)
        best: tuple[int, str, dict[str, str]] | None = None
        for value in values:
            try:
                scheme, params = parse_auth_header(value)
            except AuthError:
                continue
            if scheme.lower() != "digest" or "realm" not in params or "nonce" not in params:
                continue
            alg = params.get("algorithm", "MD5").upper()
            rank = _STRENGTH.get(alg)
            if rank is None:
                continue
            if best is None or rank > best[0]:
                best = (rank, alg, params)
        if best is None:
            raise AuthError("no Digest challenge with a supported algorithm")
        _, algorithm, params = best
        realm = params["realm"]
        nonce = params["nonce"]

        qop: str | None = None
        if "qop" in params:
            offered = {q.strip().lower() for q in params["qop"].split(",")}
            if "auth" in offered:
                qop = "auth"
            elif "auth-int" in offered:
                qop = "auth-int"
            else:
                raise AuthError(f"no supported qop in {params['qop']!r}")
        sess = algorithm.endswith("-SESS")
        nc_text: str | None = None
        if qop is not None or sess:
            cnonce = cnonce if cnonce is not None else secrets.token_hex(12)
        if qop is not None:
            count = self._nc.pop(nonce, 0) + 1
            self._nc[nonce] = count
            if len(self._nc) > self._max_nonces:
                self._nc.popitem(last=False)
            nc_text = f"{count:08x}"

        response = compute_response(
            algorithm=algorithm,
            ha1_value=ha1(username, realm, password, algorithm),
            nonce=nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc_text,
            cnonce=cnonce,
            body=body,
        )
        parts = [
            f"username={_quote(username)}",
            f"realm={_quote(realm)}",
            f"nonce={_quote(nonce)}",
            f"uri={_quote(uri)}",
            f"response={_quote(response)}",
        ]
        if "algorithm" in params:
            # Echo the token as offered: some servers compare it byte for byte.
            parts.append(f"algorithm={params['algorithm']}")
        if cnonce is not None and (qop is not None or sess):
            parts.append(f"cnonce={_quote(cnonce)}")
        if "opaque" in params:
            parts.append(f"opaque={_quote(params['opaque'])}")
        if qop is not None:
            parts.append(f"qop={qop}")
            parts.append(f"nc={nc_text}")
        return "Digest " + ", ".join(parts)
