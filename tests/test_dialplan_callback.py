"""The `book_callback` step: when a callback falls due (pure functions, fake `now`), the sans-IO
interpreter's commands and branches, and the schema's errors with file:line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from softswitch.config import ConfigError, load_config
from softswitch.dialplan import commands as c
from softswitch.dialplan.callback_time import (
    MAX_DELAY_MINUTES,
    CallbackTimeError,
    due_at,
    due_in,
    local_time,
    parse_time_of_day,
)
from softswitch.dialplan.interpreter import Interpreter
from softswitch.dialplan.loader import References, load_dialplan_text

JST = ZoneInfo("Asia/Tokyo")


def at(y: int, mo: int, d: int, h: int = 10, mi: int = 0, s: int = 0, tz: ZoneInfo = JST) -> float:
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=tz).timestamp()


TUESDAY_10 = at(2026, 11, 24, 10)

# --- when a callback falls due --------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("14", (14, 0)), ("9", (9, 0)), ("09", (9, 0)), ("0", (0, 0)), ("23", (23, 0)),
    ("14:30", (14, 30)), ("9:05", (9, 5)), ("1430", (14, 30)), ("930", (9, 30)), (" 18:00 ", (18, 0)),
])
def test_a_time_of_day_is_read_from_hours_with_or_without_minutes(text: str, expected: tuple[int, int]) -> None:
    assert parse_time_of_day(text) == expected


@pytest.mark.parametrize("text", ["", "24", "99", "14:60", "2400", "1:5", "12345", "-1", "14.30", "abc", "午後2時"])
def test_text_that_is_not_a_time_of_day_is_refused_with_a_message(text: str) -> None:
    with pytest.raises(CallbackTimeError, match="is not a time of day"):
        parse_time_of_day(text)


def test_an_hour_still_ahead_is_today_in_the_zone() -> None:
    assert due_at("14", TUESDAY_10) == at(2026, 11, 24, 14)
    assert due_at("10:01", TUESDAY_10) == at(2026, 11, 24, 10, 1)


def test_an_hour_already_past_or_now_is_tomorrow() -> None:
    assert due_at("9:30", TUESDAY_10) == at(2026, 11, 25, 9, 30)
    assert due_at("10", TUESDAY_10) == at(2026, 11, 25, 10)  # exactly now has passed too
    assert due_at("10", TUESDAY_10 + 1) == at(2026, 11, 25, 10)


def test_tomorrow_crosses_the_month_and_year_in_the_zone() -> None:
    assert due_at("0:10", at(2026, 12, 31, 23, 50)) == at(2027, 1, 1, 0, 10)
    # 23:50 in Tokyo is still 14:50 the same day in UTC: the date is the zone's, not UTC's.
    assert due_at("9", at(2026, 11, 30, 23, 50)) == at(2026, 12, 1, 9)


def test_the_zone_decides_which_hour_is_meant() -> None:
    utc = ZoneInfo("UTC")
    assert due_at("14", TUESDAY_10, "UTC") == at(2026, 11, 24, 14, tz=utc)  # 10:00 JST is 01:00 UTC
    assert due_at("14", TUESDAY_10, "UTC") - due_at("14", TUESDAY_10) == 9 * 3600


def test_an_hour_that_daylight_saving_skips_lands_after_the_gap_not_before_now() -> None:
    paris = ZoneInfo("Europe/Paris")
    now = at(2026, 3, 28, 12, tz=paris)  # 02:00-03:00 does not exist on 2026-03-29 in Paris
    due = due_at("2:30", now, "Europe/Paris")
    assert due > now
    assert dt.datetime.fromtimestamp(due, paris).strftime("%Y-%m-%d %H:%M") == "2026-03-29 03:30"


def test_a_delay_is_minutes_from_now_up_to_a_week() -> None:
    assert due_in("30", TUESDAY_10) == TUESDAY_10 + 1800
    assert due_in("0", TUESDAY_10) == TUESDAY_10
    assert due_in("1.5", TUESDAY_10) == TUESDAY_10 + 90
    assert due_in(str(MAX_DELAY_MINUTES), TUESDAY_10) == TUESDAY_10 + 7 * 86400
    with pytest.raises(CallbackTimeError, match="more than a week"):
        due_in(str(MAX_DELAY_MINUTES + 1), TUESDAY_10)
    for bad in ("", "-5", "1e3", "soon", "nan", "inf"):
        with pytest.raises(CallbackTimeError, match="is not a number of minutes"):
            due_in(bad, TUESDAY_10)


def test_local_time_gives_the_date_and_clock_time_in_the_zone() -> None:
    assert local_time(at(2026, 11, 24, 14, 5)) == ("2026-11-24", "14:05")
    assert local_time(at(2026, 11, 24, 14, 5), "UTC") == ("2026-11-24", "05:05")


# --- the interpreter (sans-IO) --------------------------------------------------------------------


def plan_of(steps_yaml: str, extra: str = "", refs: References | None = None):
    body = "\n".join("          " + line for line in steps_yaml.strip("\n").splitlines())
    text = f"""
{extra}
contexts:
  main:
    users: all
    routes:
      - name: r
        steps:
{body}
"""
    return load_dialplan_text(text, "test.yaml", refs)


def run(steps_yaml: str, extra: str = "", variables: dict[str, str] | None = None, now: float = TUESDAY_10):
    plan = plan_of(steps_yaml, extra)
    it = Interpreter(plan, plan.contexts["main"].routes[0], {"caller": "0901234567"} if variables is None
                     else variables)
    return it, it.start(now)


BY_HOUR = """
- gather: {into: hour, max_digits: 4, timeout: 8}
- book_callback:
    queue: support
    at: "${hour}"
    agent: "${last_agent}"
    note: "IVR ${hour}"
    confirm: {text: "${callback_time}ごろにお電話いたします。", voice: mei}
    on_error:
      - say: "${callback_status}"
- hangup:
"""


def test_keyed_hour_books_a_callback_for_the_caller_and_says_the_confirmation() -> None:
    it, out = run(BY_HOUR, variables={"caller": "0901234567", "last_agent": "2001", "customer_id": "C7"})
    assert out == [c.CollectDigits(4, 8.0, "#")]
    out = it.feed(c.DigitsCollected("14", "terminator"), TUESDAY_10 + 5)
    due = at(2026, 11, 24, 14)
    assert out == [c.BookCallback("0901234567", due, "support", "2001", "C7", "IVR 14")]
    assert it.feed(c.PlaybackDone(), TUESDAY_10 + 6) == []  # not what the step waits for
    out = it.feed(c.CallbackBooked(ok=True, id="cb1", due=due), TUESDAY_10 + 6)
    assert out == [c.Say("14:00ごろにお電話いたします。", "ja", "mei")]
    v = it.variables
    assert (v["callback_status"], v["callback_error"], v["callback_id"]) == ("booked", "", "cb1")
    assert (v["callback_due"], v["callback_date"], v["callback_time"]) == (str(int(due)), "2026-11-24", "14:00")
    assert it.feed(c.PlaybackDone(), TUESDAY_10 + 9) == [c.Hangup("normal_clearing")]
    assert it.outcome == "hangup"


def test_a_delay_books_without_confirmation_and_continues_with_the_next_step() -> None:
    it, out = run("- book_callback: {queue: support, in_minutes: 30, number: '0312345678', customer_id: ''}\n"
                  "- say: done")
    assert out == [c.BookCallback("0312345678", TUESDAY_10 + 1800, "support", "", "", "")]
    assert it.feed(c.CallbackBooked(ok=True, id="x", due=TUESDAY_10 + 1800), TUESDAY_10) == [c.Say("done")]
    assert it.variables["callback_time"] == "10:30"


def test_a_keyed_time_that_is_not_a_time_takes_the_error_branch_without_booking() -> None:
    it, _ = run(BY_HOUR)
    out = it.feed(c.DigitsCollected("99"), TUESDAY_10)
    assert out == [c.Say("bad_time")]
    assert "'99' is not a time of day" in it.variables["callback_error"]
    assert it.variables["callback_id"] == "" and it.variables["callback_time"] == ""
    assert it.feed(c.PlaybackDone(), TUESDAY_10) == [c.Hangup("normal_clearing")]  # then the plan goes on


def test_no_digits_is_a_bad_time_too() -> None:
    it, _ = run(BY_HOUR)
    assert it.feed(c.Timeout(), TUESDAY_10) == [c.Say("bad_time")]


def test_a_booking_the_switch_refuses_takes_the_error_branch_with_the_reason() -> None:
    it, _ = run(BY_HOUR)
    it.feed(c.DigitsCollected("15"), TUESDAY_10)
    out = it.feed(c.CallbackBooked(ok=False, error="database unavailable"), TUESDAY_10)
    assert out == [c.Say("failed")]
    assert it.variables["callback_error"] == "database unavailable" and it.variables["callback_id"] == ""
    assert it.variables["callback_time"] == "15:00"  # the time was understood


def test_an_unknown_caller_number_is_not_booked() -> None:
    it, out = run("- book_callback: {queue: support, in_minutes: 5, on_error: [{hangup: busy}]}", variables={})
    assert out == [c.Hangup("busy")]
    assert it.variables["callback_status"] == "no_number"


CENTER = """
calendars:
  center:
    timezone: Asia/Tokyo
    weekly: {mon-fri: "09:00-18:00"}
"""


def test_a_time_when_the_named_calendar_is_closed_is_refused() -> None:
    steps = ("- gather: {into: hour}\n- book_callback: {queue: s, at: '${hour}', calendar: center,"
             " on_error: [{say: '${callback_time} ${callback_status}'}]}")
    it, _ = run(steps, CENTER)
    assert it.feed(c.DigitsCollected("20"), TUESDAY_10) == [c.Say("20:00 closed")]
    assert "closed" in it.variables["callback_error"]
    it, _ = run(steps, CENTER)
    assert it.feed(c.DigitsCollected("17"), TUESDAY_10) == [
        c.BookCallback("0901234567", at(2026, 11, 24, 17), "s", "", "", "")]
    it, _ = run(steps, CENTER, now=at(2026, 11, 27, 18))  # Friday evening: 9:00 tomorrow is a Saturday
    assert it.feed(c.DigitsCollected("9"), at(2026, 11, 27, 18)) == [c.Say("09:00 closed")]


def test_the_calendar_zone_is_used_for_the_hour() -> None:
    extra = "calendars:\n  ny: {timezone: America/New_York, weekly: {daily: '00:00-24:00'}, public_holidays: none}"
    it, out = run("- book_callback: {queue: s, at: '14', calendar: ny}", extra)
    assert out == [c.BookCallback("0901234567", at(2026, 11, 24, 14, tz=ZoneInfo("America/New_York")), "s",
                                  "", "", "")]


def test_the_caller_hanging_up_while_booking_ends_the_plan() -> None:
    it, _ = run("- book_callback: {queue: s, in_minutes: 1}\n- say: never")
    assert it.feed(c.CallerHangup(), TUESDAY_10) == []
    assert it.finished and it.outcome == "caller_hangup"


# --- the schema -----------------------------------------------------------------------------------


def errors_of(step: str, extra: str = "", refs: References | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        plan_of(step, extra, refs)
    return exc.value.errors


@pytest.mark.parametrize(("step", "message"), [
    ("- book_callback: {queue: s}", "book_callback needs exactly one of 'at' or 'in_minutes'"),
    ("- book_callback: {queue: s, at: '10', in_minutes: 5}", "book_callback needs exactly one of 'at' or 'in_minutes'"),
    ("- book_callback: {queue: s, at: '25:00'}", "'25:00' is not a time of day: hours are 0-23 and minutes 0-59 "
                                                 "(hint: a time of day on a 24-hour clock"),
    ("- book_callback: {queue: s, at: noon}", "'noon' is not a time of day"),
    ("- book_callback: {queue: s, in_minutes: soon}", "'soon' is not a number of minutes (hint: minutes from now"),
    ("- book_callback: {queue: s, in_minutes: '99999'}", "more than a week ahead"),
    ("- book_callback: {queue: s, at: '9', timezone: Mars/Base}", "unknown time zone 'Mars/Base'"),
    ("- book_callback: {at: '9'}", "queue: missing required field 'queue'"),
    ("- book_callback: {queue: s, at: '9', when: '9'}", "unknown field 'when'"),
    ("- book_calback: {queue: s, at: '9'}", "unknown step 'book_calback' (hint: did you mean 'book_callback'?)"),
])
def test_invalid_book_callback_steps_are_rejected_at_their_line(step: str, message: str) -> None:
    errors = errors_of(step)
    assert len(errors) == 1 and errors[0].startswith("test.yaml:9:"), errors
    assert message in errors[0], errors


def test_times_with_variables_are_checked_when_the_call_runs_not_when_loaded() -> None:
    plan_of("- book_callback: {queue: s, at: '${hour}:${minute}'}\n- book_callback: {queue: s, in_minutes: '${m}'}")


def test_unknown_queue_calendar_and_agent_are_reported_where_they_are_used() -> None:
    steps = """
- answer:
- book_callback:
    queue: suport
    at: "10"
    calendar: centre
    agent: "2009"
"""
    errors = errors_of(steps, CENTER, References(users={"2001", "3001"}, queues={"support", "sales"}))
    text = "\n".join(errors)
    assert len(errors) == 3, text
    assert "test.yaml:16:22: contexts.main.routes[0].steps[1].book_callback.queue: unknown queue 'suport' " \
           "(hint: did you mean 'support'?)" in text
    assert "test.yaml:18:25: contexts.main.routes[0].steps[1].book_callback.calendar: " \
           "unknown calendar 'centre' (hint: did you mean 'center'?)" in text
    assert "test.yaml:19:22: contexts.main.routes[0].steps[1].book_callback.agent: unknown user '2009'" in text


def test_a_calendar_and_a_timezone_together_are_refused() -> None:
    (error,) = errors_of("- book_callback: {queue: s, at: '9', calendar: center, timezone: UTC}", CENTER)
    assert "give 'calendar' or 'timezone', not both" in error


# --- the mail-order example -----------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "dialplans"


def busy_mailorder_call(now: float) -> Interpreter:
    """A known customer of the mail-order example picks enquiries, the queue overflows and they
    choose a callback (2) at the menu that follows."""
    plan = load_config(EXAMPLES / "mailorder-ja.node.yaml").plan
    assert plan is not None
    m = plan.route("inbound", "0120123456", caller="09011112222", did="0120123456", trunk="ntt", now=now)
    assert m is not None
    it = Interpreter(plan, m)
    it.start(now)
    it.feed(c.HttpResult(200, {"customer": {"id": "C7", "name": "山田", "vip": False, "last_agent": "2001"}}), now)
    it.feed(c.PlaybackDone(), now)                               # greeting
    it.feed(c.DigitsCollected("2"), now)                         # enquiries
    out = it.feed(c.PlaybackDone(), now)
    assert [type(x) for x in out] == [c.EnqueueAcd]
    it.feed(c.QueueResult("timeout"), now)                       # nobody free: busy-voicemail
    it.feed(c.PlaybackDone(), now)                               # "混み合っております"
    out = it.feed(c.DigitsCollected("2"), now)                   # a callback, please
    assert [type(x) for x in out] == [c.Say, c.CollectDigits]
    return it


def test_mailorder_busy_caller_books_a_callback_with_their_last_agent_at_the_time_they_key() -> None:
    it = busy_mailorder_call(TUESDAY_10)
    out = it.feed(c.DigitsCollected("1430", "terminator"), TUESDAY_10 + 60)
    assert out == [c.BookCallback("09011112222", at(2026, 11, 24, 14, 30), "orders", "2001", "C7", "混雑時にIVRで予約")]
    out = it.feed(c.CallbackBooked(ok=True, id="cb9", due=at(2026, 11, 24, 14, 30)), TUESDAY_10 + 61)
    assert out == [c.Say("14:30ごろに、担当者からお電話いたします。ご利用ありがとうございました。")]
    assert it.feed(c.PlaybackDone(), TUESDAY_10 + 65) == [c.Hangup("normal_clearing")]


def test_mailorder_callback_outside_the_centre_hours_falls_back_to_a_voicemail() -> None:
    it = busy_mailorder_call(TUESDAY_10)
    out = it.feed(c.DigitsCollected("2130", "terminator"), TUESDAY_10 + 60)  # the centre closes at 20:00
    assert out == [c.Say("申し訳ございません。そのお時間ではご予約をお受けできません。")]
    assert it.variables["callback_status"] == "closed"
    assert it.feed(c.PlaybackDone(), TUESDAY_10 + 62) == [
        c.Say("お名前とお電話番号、ご用件をお話しください。折り返しご連絡いたします。")]
