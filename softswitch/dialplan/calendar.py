"""Business-hours calendars: weekly hours in a time zone, Japanese public holidays, closures.

A calendar is evaluated at an epoch time passed in by the caller (sans-IO: no clock is read here).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jpholiday
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_ALIASES = {"weekdays": "mon-fri", "weekend": "sat-sun", "daily": "mon-sun", "everyday": "mon-sun"}
_TIME_RANGE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
_MONTH_DAY = re.compile(r"^(\d{1,2})-(\d{1,2})$")

HoursState = Literal["open", "closed", "holiday", "closure"]


def parse_days(spec: str) -> list[int]:
    """Weekday numbers (Mon=0) from 'mon', 'mon-fri', 'sat,sun', 'weekdays', 'weekend'."""
    out: list[int] = []
    for part in spec.lower().replace(" ", "").split(","):
        part = _DAY_ALIASES.get(part, part)
        if "-" in part:
            a, b = part.split("-", 1)
            if a not in DAYS or b not in DAYS:
                raise ValueError(part)
            i, j = DAYS.index(a), DAYS.index(b)
            out.extend(DAYS.index(DAYS[k % 7]) for k in range(i, (j if j >= i else j + 7) + 1))
        elif part in DAYS:
            out.append(DAYS.index(part))
        else:
            raise ValueError(part)
    return out


def parse_time_range(text: str) -> tuple[int, int]:
    """Minutes since midnight (start, end) from '09:00-18:00'; end may be 24:00, must follow start."""
    m = _TIME_RANGE.match(str(text).strip())
    if not m:
        raise PydanticCustomError("time_range", "bad time range '{text}': write HH:MM-HH:MM",
                                  {"text": text, "hint": "for example '09:00-18:00'"})
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
        raise PydanticCustomError("time_range", "bad time range '{text}': hour or minute out of range",
                                  {"text": text, "hint": "hours are 00-23 (24:00 ends a day), minutes 00-59"})
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        raise PydanticCustomError(
            "time_range", "bad time range '{text}': the end is not after the start",
            {"text": text, "hint": "to span midnight, write 22:00-24:00 on one day and 00:00-06:00 on the next"})
    return start, end


def _time_range_text(v: str) -> str:
    parse_time_range(v)
    return v


TimeRange = Annotated[str, AfterValidator(_time_range_text)]


def _closed_text(v: str) -> str:
    try:
        _closed_matcher(v)
    except ValueError:
        raise PydanticCustomError(
            "closed_day", "bad closed day '{item}'",
            {"item": v, "hint": "'2026-08-14', '2026-08-13..2026-08-16' or yearly '12-29..01-03'"}) from None
    return v


ClosedDay = Annotated[str, AfterValidator(_closed_text)]
# one range may be written without a list: `sat: "10:00-15:00"`
TimeRanges = Annotated[list[TimeRange], BeforeValidator(lambda v: [v] if isinstance(v, str) else ([] if v is None else v),
                                                        json_schema_input_type=str | list[str] | None)]


class Calendar(BaseModel):
    """Opening hours: `weekly` ranges per day, minus public holidays and `closed` days, plus `open` days."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = Field("Asia/Tokyo", description="IANA zone the hours are written in")
    weekly: dict[str, TimeRanges] = Field(
        default_factory=dict,
        description="day or day range ('mon-fri', 'sat', 'weekdays') -> time ranges ('09:00-18:00')")
    public_holidays: Literal["japan", "none"] = Field(
        "japan", description="'japan' closes on Japanese public holidays (jpholiday)")
    closed: list[ClosedDay] = Field(
        default_factory=list,
        description="closed days: '2026-08-14', a range '2026-08-13..2026-08-16' or a yearly '12-29..01-03'")
    open: dict[str, TimeRanges] = Field(
        default_factory=dict, description="special opening hours for a date ('2026-12-27') overriding the rest")

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError("timezone", "unknown time zone '{zone}'",
                                      {"zone": v, "hint": "an IANA name such as 'Asia/Tokyo'"}) from None
        return v

    @field_validator("weekly", mode="after")
    @classmethod
    def _check_weekly(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for day in v:
            try:
                parse_days(day)
            except ValueError:
                raise PydanticCustomError(
                    "day", "bad day '{day}'",
                    {"day": day, "hint": "use mon..sun, a range like mon-fri, weekdays or weekend"}) from None
        return v

    @field_validator("open", mode="after")
    @classmethod
    def _check_open(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for day in v:
            try:
                dt.date.fromisoformat(day)
            except ValueError:
                raise PydanticCustomError("date", "bad date '{day}'", {"day": day, "hint": "YYYY-MM-DD"}) from None
        return v

    def local(self, now: float) -> dt.datetime:
        """`now` (epoch seconds) as a local time in the calendar's zone."""
        return dt.datetime.fromtimestamp(now, ZoneInfo(self.timezone))

    def state(self, now: float) -> HoursState:
        """'open', 'closed' (outside hours), 'holiday' (public holiday) or 'closure' (a closed day)."""
        local = self.local(now)
        day = local.date()
        minute = local.hour * 60 + local.minute
        special = self.open.get(day.isoformat())
        if special is not None:
            return "open" if _in_ranges(minute, special) else "closed"
        if any(_closed_matcher(c)(day) for c in self.closed):
            return "closure"
        if self.public_holidays == "japan" and jpholiday.is_holiday(day):
            return "holiday"
        for days, ranges in self.weekly.items():
            if local.weekday() in parse_days(days) and _in_ranges(minute, ranges):
                return "open"
        return "closed"

    def is_open(self, now: float) -> bool:
        """True when the calendar is open at `now`."""
        return self.state(now) == "open"


def _in_ranges(minute: int, ranges: list[str]) -> bool:
    for r in ranges:
        start, end = parse_time_range(r)
        if start <= minute < end:
            return True
    return False


def _closed_matcher(item: str) -> Callable[[dt.date], bool]:
    """A predicate date -> bool for one `closed` entry; ValueError when malformed."""
    text = str(item).strip()
    if ".." in text:
        a, b = (x.strip() for x in text.split("..", 1))
    else:
        a = b = text
    if _MONTH_DAY.match(a) and _MONTH_DAY.match(b):
        ma, da = (int(x) for x in a.split("-"))
        mb, db = (int(x) for x in b.split("-"))
        dt.date(2000, ma, da), dt.date(2000, mb, db)  # raises ValueError for 13-40 (2000 is a leap year)
        lo, hi = (ma, da), (mb, db)
        if lo <= hi:
            return lambda d: lo <= (d.month, d.day) <= hi
        return lambda d: (d.month, d.day) >= lo or (d.month, d.day) <= hi  # wraps the new year
    start, end = dt.date.fromisoformat(a), dt.date.fromisoformat(b)
    if end < start:
        raise ValueError(text)
    return lambda d: start <= d <= end
