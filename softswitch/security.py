"""Who may talk to the node: per-source rate limits, brute-force bans and digest authentication.

An unknown user and a wrong password get the same answer, so the node never tells an attacker
which extensions exist. Sans-IO: `now` is passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from softswitch.events import AuthFailed, Event
from softswitch.sip.auth import DigestServer, find_credentials, ha1
from softswitch.sip.guard import AuthFailureGuard, RateLimiter
from softswitch.sip.message import Request, Response, make_response, new_tag

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the directory knows of one user's secret: plain password or precomputed HA1s."""

    user: str
    password: str | None = None
    ha1_md5: str | None = None
    ha1_sha256: str | None = None


class Authenticator:
    """Challenges and verifies requests from phones against the directory."""

    def __init__(
        self,
        realm: str,
        users: Iterable[Credentials],
        *,
        secret: bytes,
        nonce_ttl: float = 300.0,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        fail_limit: int = 10,
        fail_window: float = 60.0,
        ban_seconds: float = 600.0,
        rate: float = 500.0,
        burst: int = 1000,
        publish: Callable[[Event], None] = lambda e: None,
    ) -> None:
        self.realm = realm
        self.digest = DigestServer(realm=realm, secret=secret, nonce_ttl=nonce_ttl, algorithms=algorithms)
        self.guard = AuthFailureGuard(limit=fail_limit, window=fail_window, ban_seconds=ban_seconds)
        self.limiter = RateLimiter(rate=rate, burst=burst)
        self.publish = publish
        self._ha1: dict[tuple[str, str], str] = {}
        self.set_users(users)

    def set_users(self, users: Iterable[Credentials]) -> None:
        """Replace the directory (on reload); HA1s are computed once here, not per request."""
        table: dict[tuple[str, str], str] = {}
        for c in users:
            if c.password is not None:
                table[(c.user, "MD5")] = ha1(c.user, self.realm, c.password, "MD5")
                table[(c.user, "SHA-256")] = ha1(c.user, self.realm, c.password, "SHA-256")
            if c.ha1_md5:
                table[(c.user, "MD5")] = c.ha1_md5.lower()
            if c.ha1_sha256:
                table[(c.user, "SHA-256")] = c.ha1_sha256.lower()
        self._ha1 = table

    def _lookup(self, username: str, realm: str, algorithm: str) -> str | None:
        if realm != self.realm:
            return None
        return self._ha1.get((username, algorithm.upper().removesuffix("-SESS")))

    def admit(self, source_ip: str, now: float) -> bool:
        """Rate limit per source address; False means drop the request silently."""
        return self.limiter.allow(source_ip, now)

    def banned(self, source_ip: str, now: float) -> bool:
        return self.guard.is_banned(source_ip, now)

    def authenticate(self, req: Request, source_ip: str, now: float) -> str | Response:
        """The authenticated user name, or the response to send (401 challenge or 403 ban)."""
        if self.guard.is_banned(source_ip, now):
            return make_response(req, 403, "Forbidden", to_tag=new_tag())
        offered = req.headers.values("Authorization") + req.headers.values("Proxy-Authorization")
        # One set of credentials (the usual case) goes straight to verify(), which checks the realm.
        header = offered[0] if len(offered) == 1 else find_credentials(offered, self.realm)
        if header is None:
            return self._challenge(req, now, stale=False)
        # The digest-uri is not compared with the Request-URI: phones and test tools fill it from
        # their outbound proxy or registrar address, and the nonce-count already stops replays.
        result = self.digest.verify(req.method, header, self._lookup, now, body=req.body)
        if result.ok and result.username is not None:
            self.guard.record_success(source_ip, now)
            return result.username
        if result.stale:
            return self._challenge(req, now, stale=True)
        banned = self.guard.record_failure(source_ip, now)
        log.info("authentication failed from %s for %r: %s%s", source_ip, result.claimed_username,
                 result.reason, " (address banned)" if banned else "")
        self.publish(
            AuthFailed(
                ts=now,
                source=source_ip,
                username=result.claimed_username or "",
                method=req.method,
                banned=banned,
            )
        )
        if banned:
            return make_response(req, 403, "Forbidden", to_tag=new_tag())
        # Same answer for an unknown user and a wrong password: a fresh challenge.
        return self._challenge(req, now, stale=False)

    def _challenge(self, req: Request, now: float, *, stale: bool) -> Response:
        resp = make_response(req, 401, "Unauthorized", to_tag=new_tag())
        for value in self.digest.challenge(now, stale=stale):
            resp.headers.add("WWW-Authenticate", value)
        return resp
