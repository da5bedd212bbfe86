"""Abuse protection with a fake clock: failure bans and per-source token buckets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.sip.guard import AuthFailureGuard, Ban, RateLimiter, source_key

IP = "203.0.113.7"
OTHER = "198.51.100.9"


# ---------------------------------------------------------------------------------- AuthFailureGuard


def test_ten_failures_within_a_minute_ban_the_address() -> None:
    guard = AuthFailureGuard()
    started = [guard.record_failure(IP, 100.0 + i * 6.0) for i in range(10)]  # last one at +54 s
    assert started == [False] * 9 + [True]
    assert guard.is_banned(IP, 154.0)


def test_ten_failures_in_the_same_instant_ban_the_address() -> None:
    guard = AuthFailureGuard()
    assert [guard.record_failure(IP, 5.0) for _ in range(10)][-1] is True
    assert guard.is_banned(IP, 5.0)


def test_nine_failures_do_not_ban() -> None:
    guard = AuthFailureGuard()
    for i in range(9):
        assert not guard.record_failure(IP, float(i))
    assert not guard.is_banned(IP, 9.0)
    assert guard.failures(IP, 9.0) == 9


def test_ten_failures_spread_over_more_than_a_minute_do_not_ban() -> None:
    guard = AuthFailureGuard()
    for i in range(10):
        assert not guard.record_failure(IP, i * 6.7)  # 0 .. 60.3 s
    assert not guard.is_banned(IP, 60.3)


def test_ten_failures_exactly_one_window_apart_end_to_end_do_not_ban() -> None:
    guard = AuthFailureGuard()
    times = [0.0] + [60.0 - 0.5 * (8 - i) for i in range(8)] + [60.0]
    for t in times:
        assert not guard.record_failure(IP, t)


def test_a_slow_steady_attacker_is_never_banned() -> None:
    guard = AuthFailureGuard()
    for i in range(1000):
        assert not guard.record_failure(IP, i * 6.7)  # nine fit in any minute, never ten
    assert guard.failures(IP, 999 * 6.7) == 9
    assert not guard.is_banned(IP, 999 * 6.7)


def test_sliding_window_catches_a_burst_straddling_window_boundaries() -> None:
    # Five failures late in one minute and five early in the next: a fixed-window counter would miss it.
    guard = AuthFailureGuard()
    for t in (55.0, 56.0, 57.0, 58.0, 59.0, 61.0, 62.0, 63.0, 64.0):
        assert not guard.record_failure(IP, t)
    assert guard.record_failure(IP, 65.0)


def test_ban_lifts_after_ban_seconds() -> None:
    guard = AuthFailureGuard(ban_seconds=600.0)
    for _ in range(10):
        guard.record_failure(IP, 0.0)
    assert guard.is_banned(IP, 599.9)
    assert not guard.is_banned(IP, 600.0)
    assert not guard.is_banned(IP, 10_000.0)


def test_after_a_ban_lifts_the_count_starts_from_zero() -> None:
    guard = AuthFailureGuard()
    for _ in range(10):
        guard.record_failure(IP, 0.0)
    for _ in range(9):
        assert not guard.record_failure(IP, 601.0)
    assert guard.record_failure(IP, 601.0)
    assert guard.is_banned(IP, 1200.0)


def test_failures_while_banned_do_not_extend_the_ban() -> None:
    guard = AuthFailureGuard()
    for _ in range(10):
        guard.record_failure(IP, 0.0)
    for t in range(1, 600, 10):
        assert not guard.record_failure(IP, float(t))
    assert not guard.is_banned(IP, 600.0)


def test_other_addresses_are_unaffected_by_a_ban() -> None:
    guard = AuthFailureGuard()
    for _ in range(9):
        guard.record_failure(OTHER, 0.0)
    for _ in range(10):
        guard.record_failure(IP, 1.0)
    assert guard.is_banned(IP, 2.0)
    assert not guard.is_banned(OTHER, 2.0)
    assert guard.failures(OTHER, 2.0) == 9
    assert not guard.is_banned("2001:db8::1", 2.0)


def test_success_forgets_earlier_failures() -> None:
    guard = AuthFailureGuard()
    for _ in range(9):
        guard.record_failure(IP, 0.0)
    guard.record_success(IP, 1.0)
    assert guard.failures(IP, 1.0) == 0
    for _ in range(9):
        assert not guard.record_failure(IP, 2.0)


def test_success_does_not_lift_a_ban() -> None:
    guard = AuthFailureGuard()
    for _ in range(10):
        guard.record_failure(IP, 0.0)
    guard.record_success(IP, 1.0)
    assert guard.is_banned(IP, 1.0)


def test_exempt_sources_are_never_banned() -> None:
    guard = AuthFailureGuard(exempt=[IP])
    for _ in range(100):
        assert not guard.record_failure(IP, 0.0)
    assert not guard.is_banned(IP, 0.0)


def test_list_bans_shows_active_bans_soonest_expiry_first() -> None:
    guard = AuthFailureGuard(limit=2, ban_seconds=100.0)
    for ip, t in ((IP, 0.0), (OTHER, 50.0)):
        guard.record_failure(ip, t)
        guard.record_failure(ip, t)
    assert guard.list_bans(60.0) == [Ban(IP, 0.0, 100.0), Ban(OTHER, 50.0, 150.0)]
    guard.record_failure("192.0.2.1", 120.0)
    guard.record_failure("192.0.2.1", 120.0)
    assert guard.list_bans(130.0) == [Ban(OTHER, 50.0, 150.0), Ban("192.0.2.1", 120.0, 220.0)]
    assert guard.list_bans(1000.0) == []
    assert guard.ban_count == 0


def test_unban_lifts_a_ban_by_hand() -> None:
    guard = AuthFailureGuard(limit=1)
    guard.record_failure(IP, 0.0)
    assert guard.unban(IP)
    assert not guard.is_banned(IP, 0.0)
    assert not guard.unban(IP)


def test_failure_memory_stays_bounded_under_100k_distinct_sources() -> None:
    guard = AuthFailureGuard(max_sources=1000)
    for i in range(100_000):
        guard.record_failure(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", i * 0.0001)  # all within 10 s
    assert guard.tracked_sources == 1000
    # Oldest-first eviction: the newest sources are still tracked, the first ones are gone.
    assert guard.failures("10.1.134.159", 10.0) == 1  # source 99_999
    assert guard.failures("10.0.0.0", 10.0) == 0


def test_failure_memory_drains_when_the_window_passes() -> None:
    guard = AuthFailureGuard()
    for i in range(5000):
        guard.record_failure(f"source-{i}", 0.0)
    assert guard.tracked_sources == 5000
    guard.record_failure(IP, 61.0)
    assert guard.tracked_sources == 1


def test_ban_memory_stays_bounded_and_drops_the_oldest_ban() -> None:
    guard = AuthFailureGuard(limit=1, max_bans=100)
    for i in range(100_000):
        assert guard.record_failure(f"s{i}", i * 0.001)
    assert guard.ban_count == 100
    assert guard.is_banned("s99999", 100.0)
    assert not guard.is_banned("s0", 100.0)


def test_guard_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        AuthFailureGuard(limit=0)
    with pytest.raises(ValueError):
        AuthFailureGuard(window=0)


@settings(max_examples=150, deadline=None)
@given(gaps=st.lists(st.floats(min_value=0.0, max_value=30.0, allow_nan=False), min_size=1, max_size=40))
def test_ban_starts_exactly_when_a_window_holds_limit_failures(gaps: list[float]) -> None:
    # Reference model: ban on the failure that makes `limit` failures within less than `window` seconds.
    guard = AuthFailureGuard(limit=4, window=20.0, ban_seconds=1e9)
    now = 0.0
    history: list[float] = []
    banned = False
    for gap in gaps:
        now += gap
        if banned:
            assert guard.is_banned(IP, now)
            continue
        history.append(now)
        expected = sum(1 for t in history if t > now - 20.0) >= 4
        assert guard.record_failure(IP, now) is expected
        banned = expected


# ---------------------------------------------------------------------------------------- RateLimiter


def test_burst_is_allowed_then_refused() -> None:
    limiter = RateLimiter(rate=10.0, burst=5)
    assert [limiter.allow(IP, 0.0) for _ in range(7)] == [True] * 5 + [False] * 2


def test_tokens_refill_at_the_configured_rate() -> None:
    limiter = RateLimiter(rate=10.0, burst=5)
    for _ in range(5):
        limiter.allow(IP, 0.0)
    assert not limiter.allow(IP, 0.05)
    assert limiter.allow(IP, 0.1)  # one token after 100 ms at 10/s
    assert not limiter.allow(IP, 0.1)
    assert [limiter.allow(IP, 10.0) for _ in range(6)] == [True] * 5 + [False]  # refill caps at burst


def test_sustained_rate_matches_configuration() -> None:
    limiter = RateLimiter(rate=50.0, burst=10)
    allowed = sum(limiter.allow(IP, i * 0.001) for i in range(10_000))  # 1000 req/s for 10 s
    assert 10 + 50 * 10 - 2 <= allowed <= 10 + 50 * 10 + 1


def test_rate_limit_is_per_source() -> None:
    limiter = RateLimiter(rate=1.0, burst=2)
    assert limiter.allow(IP, 0.0) and limiter.allow(IP, 0.0)
    assert not limiter.allow(IP, 0.0)
    assert limiter.allow(OTHER, 0.0)


def test_limiter_memory_stays_bounded_under_100k_distinct_sources() -> None:
    limiter = RateLimiter(rate=1.0, burst=5, max_sources=1000)
    for i in range(100_000):
        assert limiter.allow(f"src{i}", i * 1e-5)
    assert limiter.tracked_sources == 1000


def test_idle_sources_are_forgotten() -> None:
    limiter = RateLimiter(rate=1.0, burst=5)
    for i in range(3000):
        limiter.allow(f"src{i}", 0.0)
    limiter.allow(IP, 5.1)  # every earlier bucket would be full again by now
    assert limiter.tracked_sources == 1


def test_a_recently_limited_source_is_not_forgotten_by_idle_sweeps() -> None:
    limiter = RateLimiter(rate=1.0, burst=2)
    limiter.allow(IP, 0.0)
    limiter.allow(IP, 0.0)
    limiter.allow(OTHER, 1.0)
    assert not limiter.allow(IP, 0.5)


def test_limiter_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0.0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(rate=1.0, burst=0)


# ----------------------------------------------------------------------------------------- source_key


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("[2001:db8:1:2::9]", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.5", "192.0.2.5"),
        ("not:an:address", "not:an:address"),
        ("ws-client-7", "ws-client-7"),
    ],
)
def test_source_key_groups_ipv6_by_prefix(address: str, key: str) -> None:
    assert source_key(address) == key


def test_source_key_prefix_is_configurable() -> None:
    assert source_key("2001:db8:1:2:3:4:5:6", 128) == "2001:db8:1:2:3:4:5:6/128"
    assert source_key("2001:db8:1:2:3:4:5:6", 48) == "2001:db8:1::/48"
    with pytest.raises(ValueError):
        source_key("2001:db8::1", 129)


def test_rotating_ipv6_addresses_in_one_prefix_get_banned_together() -> None:
    guard = AuthFailureGuard()
    for i in range(9):
        assert not guard.record_failure(source_key(f"2001:db8:0:1::{i + 1:x}"), 0.0)
    assert guard.record_failure(source_key("2001:db8:0:1::ffff"), 0.0)
    assert guard.is_banned(source_key("2001:db8:0:1:abcd::1"), 1.0)
    assert not guard.is_banned(source_key("2001:db8:0:2::1"), 1.0)


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(min_value=0.0, max_value=2.0, allow_nan=False)),
        max_size=60,
    )
)
def test_rate_limiter_matches_a_plain_token_bucket_model(events: list[tuple[str, float]]) -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    model: dict[str, tuple[float, float]] = {}
    now = 0.0
    for source, gap in events:
        now += gap
        tokens, last = model.get(source, (3.0, now))
        tokens = min(3.0, tokens + (now - last) * 2.0)
        expected = tokens >= 1.0
        model[source] = (tokens - 1.0 if expected else tokens, now)
        assert limiter.allow(source, now) is expected
