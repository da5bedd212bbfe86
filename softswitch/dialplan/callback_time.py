"""When a callback booked through the IVR falls due: a time of day the caller chose, or a delay.

Pure functions of the text and `now` (epoch seconds); no clock is read here. A caller keys a time
on the phone, so besides ``14`` and ``14:30`` the digits-only ``1430`` and ``930`` are times too.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

MAX_DELAY_MINUTES = 7 * 24 * 60  # a delay longer than a week is surely a keying mistake
_HOUR = re.compile(r"^(\d{1,2})$")
_HOUR_MINUTE = re.compile(r"^(\d{1,2}):?(\d{2})$")
_MINUTES = re.compile(r"^\d{1,6}(\.\d{1,3})?$")


class CallbackTimeError(ValueError):
    """The text is not a time of day or a delay a callback can be booked for."""


def parse_time_of_day(text: str) -> tuple[int, int]:
    """(hour, minute) from 'H', 'HH', 'H:MM', 'HH:MM', 'HMM' or 'HHMM' on a 24-hour clock."""
    t = text.strip()
    if m := _HOUR.match(t):
        hour, minute = int(m.group(1)), 0
    elif m := _HOUR_MINUTE.match(t):
        hour, minute = int(m.group(1)), int(m.group(2))
    else:
        raise CallbackTimeError(f"{text!r} is not a time of day: write HH, HH:MM or HHMM on a 24-hour clock")
    if hour > 23 or minute > 59:
        raise CallbackTimeError(f"{text!r} is not a time of day: hours are 0-23 and minutes 0-59")
    return hour, minute


def due_at(text: str, now: float, timezone: str = "Asia/Tokyo") -> float:
    """The next time it is `text` o'clock in `timezone`: today if still ahead of `now`, else tomorrow."""
    hour, minute = parse_time_of_day(text)
    zone = ZoneInfo(timezone)
    day = dt.datetime.fromtimestamp(now, zone).date()
    while True:  # at most twice; a day that skips the hour (a DST gap) lands an hour off, never earlier
        due = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=zone).timestamp()
        if due > now:
            return due
        day += dt.timedelta(days=1)


def due_in(text: str, now: float) -> float:
    """`now` plus a delay in minutes ('30', '1.5'), at most a week."""
    t = text.strip()
    if not _MINUTES.match(t):
        raise CallbackTimeError(f"{text!r} is not a number of minutes")
    minutes = float(t)
    if minutes > MAX_DELAY_MINUTES:
        raise CallbackTimeError(f"{text!r} minutes is more than a week ahead")
    return now + minutes * 60.0


def local_time(when: float, timezone: str = "Asia/Tokyo") -> tuple[str, str]:
    """(date 'YYYY-MM-DD', time 'HH:MM') of an epoch time in `timezone`, for prompts and variables."""
    local = dt.datetime.fromtimestamp(when, ZoneInfo(timezone))
    return local.date().isoformat(), local.strftime("%H:%M")
