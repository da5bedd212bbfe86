"""Number patterns (exact, prefix, `_0120XXXXXX`, regex) and business-hours calendars."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from softswitch.dialplan.calendar import Calendar, parse_days
from softswitch.dialplan.patterns import PatternError, compile_pattern

JST = ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(("pattern", "number", "matches"), [
    ("1001", "1001", True),
    ("1001", "10011", False),
    ("prefix:0120", "0120123456", True),
    ("prefix:0120", "0312345678", False),
    ("_0120XXXXXX", "0120123456", True),
    ("_0120XXXXXX", "012012345", False),      # one digit short
    ("_0120XXXXXX", "01201234567", False),    # one digit long
    ("_0120XXXXXX", "0120abc456", False),
    ("_0120-XXX-XXX", "0120123456", True),    # dashes are only visual
    ("_NXXX", "2000", True),
    ("_NXXX", "1000", False),
    ("_ZXX", "100", True),
    ("_ZXX", "012", False),
    ("_0[36]XXXXXXXX", "0312345678", True),
    ("_0[36]XXXXXXXX", "0412345678", False),
    ("_[1-5]XX", "599", True),
    ("_[1-5]XX", "699", False),
    ("_9.", "90", True),
    ("_9.", "9", False),                      # '.' needs at least one more character
    ("_9!", "9", True),
    ("_*X#", "*5#", True),
    ("re:^0(70|80|90)\\d{8}$", "09012345678", True),
    ("re:^0(70|80|90)\\d{8}$", "0312345678", False),
    ("*", "", True),
])
def test_patterns_match_as_documented(pattern: str, number: str, matches: bool) -> None:
    assert (compile_pattern(pattern).match(number) is not None) is matches


def test_regex_named_groups_are_captured() -> None:
    assert compile_pattern(r"re:^0(?P<area>\d)").match("0312") == {"area": "3"}


@pytest.mark.parametrize("bad", ["", "_", "_12[3", "_1[a-z]", "_12?", "re:(", "prefix:"])
def test_malformed_patterns_are_refused(bad: str) -> None:
    with pytest.raises(PatternError):
        compile_pattern(bad)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789", min_size=0, max_size=14))
def test_tollfree_pattern_agrees_with_a_plain_regex(number: str) -> None:
    assert (compile_pattern("_0120XXXXXX").match(number) is not None) == bool(re.fullmatch(r"0120\d{6}", number))


def at(y: int, mo: int, d: int, h: int, mi: int = 0, tz: ZoneInfo = JST) -> float:
    return dt.datetime(y, mo, d, h, mi, tzinfo=tz).timestamp()


CENTER = Calendar.model_validate({
    "timezone": "Asia/Tokyo",
    "weekly": {"mon-fri": ["09:00-12:00", "13:00-18:00"], "sat": "10:00-15:00"},
    "closed": ["12-29..01-03", "2026-08-13..2026-08-16", "2026-10-01"],
    "open": {"2026-12-29": "10:00-12:00"},
})


@pytest.mark.parametrize(("when", "state"), [
    (at(2026, 11, 24, 9, 0), "open"),         # Tuesday opening minute
    (at(2026, 11, 24, 8, 59), "closed"),
    (at(2026, 11, 24, 12, 30), "closed"),     # lunch break
    (at(2026, 11, 24, 17, 59), "open"),
    (at(2026, 11, 24, 18, 0), "closed"),      # the end minute is excluded
    (at(2026, 11, 23, 10), "holiday"),        # 2026-11-23 勤労感謝の日 (Monday)
    (at(2026, 11, 3, 10), "holiday"),         # 文化の日
    (at(2026, 11, 28, 11), "open"),           # Saturday hours
    (at(2026, 11, 29, 11), "closed"),         # Sunday
    (at(2026, 12, 30, 10), "closure"),        # year-end closure, across the new year
    (at(2027, 1, 2, 10), "closure"),
    (at(2027, 1, 4, 10), "open"),
    (at(2026, 12, 29, 11), "open"),           # a special open day overrides the closure
    (at(2026, 12, 29, 13), "closed"),
    (at(2026, 8, 14, 10), "closure"),         # summer closure range
    (at(2026, 10, 1, 10), "closure"),         # a single closed day
])
def test_calendar_states_in_tokyo(when: float, state: str) -> None:
    assert CENTER.state(when) == state
    assert CENTER.is_open(when) is (state == "open")


def test_calendar_evaluates_in_its_own_zone_whatever_zone_the_time_was_written_in() -> None:
    utc_1am = at(2026, 11, 24, 1, 0, ZoneInfo("UTC"))  # 10:00 in Tokyo
    assert CENTER.state(utc_1am) == "open"
    ny = Calendar.model_validate({"timezone": "America/New_York", "weekly": {"weekdays": "09:00-17:00"},
                                  "public_holidays": "none"})
    assert ny.state(utc_1am) == "closed"       # 20:00 the evening before in New York
    monday_9am_ny = at(2026, 11, 23, 23)       # 23:00 on the Tokyo holiday is 09:00 Monday in New York
    assert ny.state(monday_9am_ny) == "open" and CENTER.state(monday_9am_ny) == "holiday"


def test_day_specs_expand_ranges_and_aliases() -> None:
    assert parse_days("mon-fri") == [0, 1, 2, 3, 4]
    assert parse_days("sat,sun") == parse_days("weekend") == [5, 6]
    assert parse_days("fri-mon") == [4, 5, 6, 0]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("weekly", {"mon": "18:00-09:00"}, "the end is not after the start"),
    ("weekly", {"mon": "9-18"}, "write HH:MM-HH:MM"),
    ("weekly", {"mon": "09:00-25:00"}, "out of range"),
    ("weekly", {"mnday": "09:00-18:00"}, "bad day 'mnday'"),
    ("closed", ["13-40"], "bad closed day '13-40'"),
    ("closed", ["2026-08-16..2026-08-13"], "bad closed day"),
    ("open", {"2026-13-01": "10:00-12:00"}, "bad date '2026-13-01'"),
    ("timezone", "Asia/Tokio", "unknown time zone 'Asia/Tokio'"),
])
def test_bad_calendars_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Calendar.model_validate({field: value})
    assert message in str(exc.value)
