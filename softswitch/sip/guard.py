"""Abuse protection for the SIP front door, sans-IO: authentication-failure bans and per-source rate limits.

Both structures key on the source address string, take ``now`` as an argument and keep memory bounded
under a flood from many addresses (oldest entries are dropped first), so a scanner spraying from a
/64 cannot exhaust the node.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["AuthFailureGuard", "Ban", "RateLimiter", "source_key"]


def source_key(address: str, ipv6_prefix: int = 64) -> str:
    """The key to count a source under: an IPv4 address as is, an IPv6 address by its prefix.

    One IPv6 subscriber usually holds a whole /64, so keying on the full address would let a single
    attacker rotate through 2**64 identities.  IPv4-mapped IPv6 addresses count as their IPv4 form.
    Text that is not an IP address is returned unchanged.
    """
    if ":" not in address:
        return address  # IPv4 (transports hand over canonical dotted quads) or a name
    try:
        ip = ipaddress.IPv6Address(address.strip("[]"))
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if not 0 <= ipv6_prefix <= 128:
        raise ValueError("ipv6_prefix must be within 0..128")
    host_bits = 128 - ipv6_prefix
    # Plain integer masking: building an IPv6Network object costs several times more.
    return f"{ipaddress.IPv6Address(int(ip) >> host_bits << host_bits)}/{ipv6_prefix}"


@dataclass(frozen=True, slots=True)
class Ban:
    """One active ban, as listed for the API."""

    source: str
    since: float
    until: float


class AuthFailureGuard:
    """Bans a source after ``limit`` authentication failures within ``window`` seconds.

    A failure is counted if it happened less than ``window`` seconds before the failure being
    recorded, so ``limit`` failures spread over ``window`` seconds or more never trigger a ban.
    A ban lasts ``ban_seconds`` and is not extended by failures recorded while it is active (a
    banned source should be dropped before reaching authentication at all).
    """

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        ban_seconds: float = 600.0,
        *,
        max_sources: int = 65536,
        max_bans: int = 65536,
        exempt: Iterable[str] = (),
    ) -> None:
        if limit < 1 or window <= 0 or ban_seconds <= 0 or max_sources < 1 or max_bans < 1:
            raise ValueError("limit, window, ban_seconds, max_sources and max_bans must be positive")
        self.limit = limit
        self.window = float(window)
        self.ban_seconds = float(ban_seconds)
        self._max_sources = max_sources
        self._max_bans = max_bans
        self._exempt = frozenset(exempt)
        # source -> recent failure times (fewer than limit: reaching it bans and drops the history);
        # dict order = least recently failed first.
        self._failures: dict[str, list[float]] = {}
        # source -> (since, until); all bans last equally long, so insertion order = expiry order.
        self._bans: dict[str, tuple[float, float]] = {}

    @property
    def tracked_sources(self) -> int:
        """Sources with a failure history currently remembered (for metrics and tests)."""
        return len(self._failures)

    @property
    def ban_count(self) -> int:
        """Bans currently stored, including ones that expired but were not yet swept."""
        return len(self._bans)

    def _sweep(self, now: float) -> None:
        # Amortised O(1): both dicts are ordered by age, so stop at the first live entry.
        failures = self._failures
        horizon = now - self.window
        while failures:
            source = next(iter(failures))
            if failures[source][-1] > horizon:
                break
            del failures[source]
        bans = self._bans
        while bans:
            source = next(iter(bans))
            if bans[source][1] > now:
                break
            del bans[source]

    def is_banned(self, source_ip: str, now: float) -> bool:
        """True while ``source_ip`` is banned."""
        ban = self._bans.get(source_ip)
        if ban is None:
            return False
        if ban[1] > now:
            return True
        del self._bans[source_ip]
        return False

    def record_failure(self, source_ip: str, now: float) -> bool:
        """Count one failed authentication; True exactly when this failure starts a ban."""
        if source_ip in self._exempt or self.is_banned(source_ip, now):
            return False
        self._sweep(now)
        horizon = now - self.window
        times = self._failures.pop(source_ip, None)
        if times is None:
            times = []
        elif times[0] <= horizon:
            times = [t for t in times if t > horizon]
        times.append(now)
        if len(times) >= self.limit:
            if len(self._bans) >= self._max_bans:
                # Full: drop the ban closest to expiry rather than refuse to ban a fresh attacker.
                del self._bans[next(iter(self._bans))]
            self._bans[source_ip] = (now, now + self.ban_seconds)
            return True
        if len(self._failures) >= self._max_sources:
            del self._failures[next(iter(self._failures))]
        self._failures[source_ip] = times
        return False

    def record_success(self, source_ip: str, now: float) -> None:
        """Forget the failure history of a source that just authenticated (bans are kept)."""
        self._failures.pop(source_ip, None)
        self._sweep(now)

    def unban(self, source_ip: str) -> bool:
        """Lift a ban by hand (API); True if there was one."""
        self._failures.pop(source_ip, None)
        return self._bans.pop(source_ip, None) is not None

    def failures(self, source_ip: str, now: float) -> int:
        """Failures of ``source_ip`` that still count toward a ban."""
        horizon = now - self.window
        return sum(1 for t in self._failures.get(source_ip, ()) if t > horizon)

    def list_bans(self, now: float) -> list[Ban]:
        """Active bans, soonest to expire first."""
        self._sweep(now)
        return [Ban(source, since, until) for source, (since, until) in self._bans.items() if until > now]


class RateLimiter:
    """Token bucket per source: ``rate`` requests per second sustained, bursts of up to ``burst``.

    A source idle long enough to refill its bucket is indistinguishable from an unknown one, so such
    entries are dropped; when ``max_sources`` is reached the least recently seen source is forgotten
    (it then starts again with a full bucket, the price of bounded memory).
    """

    def __init__(self, rate: float, burst: int, *, max_sources: int = 65536) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate, burst and max_sources must be positive")
        self.rate = float(rate)
        self.burst = float(burst)
        self._max_sources = max_sources
        self._refill_time = self.burst / self.rate
        # source -> [tokens, last update]; dict order = least recently seen first.
        self._buckets: dict[str, list[float]] = {}

    @property
    def tracked_sources(self) -> int:
        """Sources whose bucket is currently remembered (for metrics and tests)."""
        return len(self._buckets)

    def allow(self, source_ip: str, now: float) -> bool:
        """Take one token for ``source_ip``; False means drop or reject the request."""
        buckets = self._buckets
        bucket = buckets.pop(source_ip, None)
        if bucket is None:
            horizon = now - self._refill_time
            while buckets:
                oldest = next(iter(buckets))
                if buckets[oldest][1] > horizon and len(buckets) < self._max_sources:
                    break
                del buckets[oldest]
            bucket = [self.burst, now]
        else:
            elapsed = now - bucket[1]
            if elapsed > 0:
                bucket[0] = min(self.burst, bucket[0] + elapsed * self.rate)
                bucket[1] = now
        buckets[source_ip] = bucket
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return True
        return False
