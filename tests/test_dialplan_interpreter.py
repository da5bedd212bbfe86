"""The sans-IO dialplan interpreter, driven by a fake call and a fake clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from softswitch.dialplan import commands as c
from softswitch.dialplan.interpreter import Interpreter, expand
from softswitch.dialplan.loader import load_dialplan_text

JST = ZoneInfo("Asia/Tokyo")


def at(y: int, mo: int, d: int, h: int = 10, mi: int = 0, tz: ZoneInfo = JST) -> float:
    return dt.datetime(y, mo, d, h, mi, tzinfo=tz).timestamp()


TUESDAY_10 = at(2026, 11, 24, 10)


def plan_of(steps_yaml: str, extra: str = ""):
    """A one-route plan whose steps are the indented YAML given."""
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
    return load_dialplan_text(text, "test.yaml")


def run(steps_yaml: str, extra: str = "", variables: dict[str, str] | None = None, now: float = TUESDAY_10):
    plan = plan_of(steps_yaml, extra)
    it = Interpreter(plan, plan.contexts["main"].routes[0], variables or {"caller": "0901234567"})
    return it, it.start(now)


def test_answer_then_play_waits_for_playback_before_the_next_step() -> None:
    it, out = run("- answer:\n- play: hello.wav\n- say: bye")
    assert out == [c.Answer(), c.Play("hello.wav")]
    assert it.feed(c.DigitsCollected("1"), TUESDAY_10) == []  # not awaited: ignored
    assert it.feed(c.PlaybackDone(), TUESDAY_10) == [c.Say("bye", "ja", "")]
    assert it.feed(c.PlaybackDone(), TUESDAY_10) == [c.Hangup("normal_clearing")]
    assert it.finished and it.outcome == "completed"


def test_play_paths_resolve_under_the_prompts_folder() -> None:
    plan = plan_of("- play: a/${lang}.wav")
    it = Interpreter(plan, plan.contexts["main"].routes[0], {"lang": "ja"}, prompts_dir=Path("/p"))
    assert it.start(0) == [c.Play("/p/a/ja.wav")]


def test_say_expands_variables_with_language_and_voice() -> None:
    _, out = run("- say: {text: '${name}様、こんにちは', lang: ja, voice: mei}", variables={"name": "山田"})
    assert out == [c.Say("山田様、こんにちは", "ja", "mei")]


def test_set_expands_earlier_values_and_unknown_variables_are_empty() -> None:
    it, _ = run("- set: {a: '1', b: '${a}-${missing}'}\n- hangup:")
    assert it.variables["b"] == "1-"
    assert expand("${x}${y}", {"x": "a b"}, url=True) == "a%20b"


MENU = """
- label: top
  menu:
    prompt: {say: 'メニュー'}
    timeout: 4
    retries: 3
    invalid: bad.wav
    no_input: {say: '聞こえません'}
    options:
      "1": [{set: {picked: one}}]
      "2": [{goto: top}]
    on_failure: [{set: {failed: 'yes'}}]
- hangup:
"""


def test_menu_plays_prompt_with_barge_in_and_runs_the_chosen_option() -> None:
    it, out = run(MENU)
    assert out == [c.Say("メニュー", "ja", "", barge_in=True), c.CollectDigits(1, 4.0, "")]
    assert it.feed(c.PlaybackDone(), TUESDAY_10) == []  # the prompt ending does not end the wait for digits
    out = it.feed(c.DigitsCollected("1"), TUESDAY_10)
    assert it.variables["picked"] == "one" and it.variables["menu_choice"] == "1"
    assert out == [c.Hangup("normal_clearing")]


def test_menu_invalid_input_and_timeout_replay_with_their_prompts_then_give_up_after_retries() -> None:
    it, _ = run(MENU)
    assert it.feed(c.DigitsCollected("7"), TUESDAY_10) == [c.Play("bad.wav")]
    assert it.feed(c.PlaybackDone(), TUESDAY_10) == [c.Say("メニュー", "ja", "", barge_in=True),
                                                     c.CollectDigits(1, 4.0, "")]
    assert it.feed(c.Timeout(), TUESDAY_10) == [c.Say("聞こえません", "ja", "")]
    it.feed(c.PlaybackDone(), TUESDAY_10)
    out = it.feed(c.DigitsCollected("", "timeout"), TUESDAY_10)  # third and last try: no sorry prompt
    assert it.variables["failed"] == "yes" and it.variables["menu_choice"] == ""
    assert out == [c.Hangup("normal_clearing")]


def test_menu_option_can_goto_its_own_label_to_start_over() -> None:
    it, _ = run(MENU)
    out = it.feed(c.DigitsCollected("2"), TUESDAY_10)
    assert out == [c.Say("メニュー", "ja", "", barge_in=True), c.CollectDigits(1, 4.0, "")]
    assert it.variables["menu_attempt"] == "1"


def test_gather_stores_digits_and_short_input_counts_as_none() -> None:
    it, out = run("- gather: {into: order, prompt: ask.wav, max_digits: 8, min_digits: 4, timeout: 3}\n"
                  "- gather: {into: pin, max_digits: 4}\n- hangup:")
    assert out == [c.Play("ask.wav", barge_in=True), c.CollectDigits(8, 3.0, "#")]
    assert it.feed(c.DigitsCollected("12345", "terminator"), 1) == [c.CollectDigits(4, 5.0, "#")]
    assert it.variables["order"] == "12345"
    it.feed(c.DigitsCollected("", "timeout"), 2)
    assert it.variables["pin"] == ""
    it2, _ = run("- gather: {into: order, min_digits: 4}\n- hangup:")
    it2.feed(c.DigitsCollected("12"), 1)
    assert it2.variables["order"] == ""


def test_dial_users_and_external_number_and_continue_when_unanswered() -> None:
    it, out = run("- dial: {users: ['1001', '${ext}'], number: '0312345678', trunk: carrier, timeout: 12, "
                  "caller_id: '${did}', strategy: sequential}\n- say: 'no answer'",
                  variables={"ext": "1002", "did": "0120111222"})
    assert out == [c.Dial((c.DialTarget("user", "1001"), c.DialTarget("user", "1002"),
                           c.DialTarget("external", "0312345678", "carrier")), "sequential", 12.0, "0120111222")]
    assert it.feed(c.DialResult("busy"), 1) == [c.Say("no answer", "ja", "")]
    assert it.variables["dial_status"] == "busy"


def test_dial_ring_group_uses_the_group_strategy_and_answer_bridges_and_ends_the_plan() -> None:
    extra = "ring_groups:\n  sales: {members: ['1001', '1002'], strategy: round_robin, timeout: 9}"
    it, out = run("- dial: {group: sales}\n- say: never", extra)
    assert out == [c.Dial((c.DialTarget("user", "1001"), c.DialTarget("user", "1002")), "round_robin", 9.0, None)]
    assert it.feed(c.DialResult("answered", "1002"), 1) == []
    assert it.finished and it.outcome == "bridged" and it.variables["answered_by"] == "1002"


def test_dial_shorthand_is_an_external_number() -> None:
    _, out = run("- dial: '0312345678'")
    assert out == [c.Dial((c.DialTarget("external", "0312345678"),), "ring_all", 30.0, None)]


def test_queue_passes_skills_priority_and_crm_variables_and_answer_bridges() -> None:
    it, out = run("- queue: {name: orders, skills: {orders: 3}, priority: 5, max_wait: 120, max_waiting: 10}",
                  variables={"caller": "090", "customer_id": "C9", "last_agent": "2001"})
    assert out == [c.EnqueueAcd("orders", {"orders": 3}, 5, 120.0, 10,
                                {"customer_id": "C9", "last_agent": "2001", "caller": "090"})]
    assert it.feed(c.QueueResult("answered", "2001"), 60) == []
    assert it.outcome == "bridged" and it.variables["agent"] == "2001"


def test_queue_overflow_runs_on_overflow_steps_then_continues() -> None:
    it, _ = run("- queue: {name: orders, on_overflow: [{dial: {number: '0399', trunk: outsource}}]}\n- hangup: busy")
    out = it.feed(c.QueueResult("overflow"), 120)
    assert out == [c.Dial((c.DialTarget("external", "0399", "outsource"),), "ring_all", 30.0, None)]
    assert it.variables["queue_result"] == "overflow"
    assert it.feed(c.DialResult("no_answer"), 150) == [c.Hangup("busy")]


def test_queue_abandoned_ends_without_more_commands() -> None:
    it, out = run("- queue: orders\n- say: x")
    assert out == [c.EnqueueAcd("orders", variables={"caller": "0901234567"})]
    assert it.feed(c.QueueResult("abandoned"), 30) == [] and it.outcome == "abandoned"


def test_transfer_is_blind_and_ends_the_plan() -> None:
    it, out = run("- transfer: {to: '${target}', trunk: carrier}\n- say: never", variables={"target": "0311"})
    assert out == [c.Transfer("0311", "carrier")]
    assert it.finished and it.outcome == "transferred"


def test_record_start_and_stop_need_no_result() -> None:
    it, out = run("- record: start\n- record: {action: stop}\n- hangup: rejected")
    assert out == [c.StartRecording(), c.StopRecording(), c.Hangup("rejected")]
    assert it.outcome == "hangup"


def test_voicemail_plays_greeting_records_and_publishes_an_event() -> None:
    it, out = run("- voicemail: {box: '1001', greeting: {say: 'どうぞ'}, max_seconds: 60}\n- hangup:",
                  variables={"caller": "0901111", "call_uuid": "u1"})
    assert out == [c.Say("どうぞ", "ja", "")]
    assert it.feed(c.PlaybackDone(), 5) == [c.RecordVoicemail("1001", 60.0, True)]
    out = it.feed(c.VoicemailRecorded("/rec/vm/1001/x.wav", 14.5), 20)
    assert isinstance(out[0], c.Publish) and out[1] == c.Hangup("normal_clearing")
    ev = out[0].event
    assert isinstance(ev, c.VoicemailLeft)
    assert (ev.box, ev.caller, ev.path, ev.duration, ev.call_uuid, ev.ts) == (
        "1001", "0901111", "/rec/vm/1001/x.wav", 14.5, "u1", 20)
    assert it.variables["voicemail_path"] == "/rec/vm/1001/x.wav"


@pytest.mark.parametrize(("when", "variables", "expected"), [
    ("{var: vip, eq: 'true'}", {"vip": "true"}, "then"),
    ("{var: vip, eq: 'true'}", {}, "else"),
    ("{var: vip, ne: 'true'}", {"vip": "false"}, "then"),
    ("{var: tier, in: [gold, silver]}", {"tier": "gold"}, "then"),
    ("{var: score, gt: 5}", {"score": "7.5"}, "then"),
    ("{var: score, lt: 5}", {"score": "abc"}, "else"),
    ("{var: caller, matches: '^090'}", {"caller": "09012"}, "then"),
    ("{var: customer_id, empty: true}", {}, "then"),
    ("{all: [{var: a, eq: '1'}, {var: b, eq: '2'}]}", {"a": "1", "b": "3"}, "else"),
    ("{any: [{var: a, eq: '1'}, {var: b, eq: '2'}]}", {"a": "1", "b": "3"}, "then"),
    ("{not: {var: a, eq: '${b}'}}", {"a": "1", "b": "1"}, "else"),
])
def test_if_chooses_the_branch_by_condition(when: str, variables: dict[str, str], expected: str) -> None:
    it, _ = run(f"- if: {{when: {when}, then: [{{set: {{x: then}}}}], else: [{{set: {{x: else}}}}]}}\n- hangup:",
                variables=variables)
    assert it.variables["x"] == expected


HOURS_PLAN = """
calendars:
  center:
    timezone: Asia/Tokyo
    weekly: {mon-fri: '09:00-18:00'}
    closed: ['12-29..01-03']
"""
HOURS_STEPS = ("- hours: {calendar: center, open: [{set: {b: open}}], closed: [{set: {b: closed}}], "
               "holiday: [{set: {b: holiday}}]}\n- hangup:")


@pytest.mark.parametrize(("now", "branch", "state"), [
    (at(2026, 11, 24, 10), "open", "open"),
    (at(2026, 11, 24, 19), "closed", "closed"),
    (at(2026, 11, 23, 10), "holiday", "holiday"),       # 勤労感謝の日 (a Monday in 2026)
    (at(2026, 12, 30, 10), "closed", "closure"),        # year-end closure falls back to `closed`
    (at(2026, 11, 28, 10), "closed", "closed"),         # Saturday
])
def test_hours_branches_on_the_time_given(now: float, branch: str, state: str) -> None:
    it, _ = run(HOURS_STEPS, HOURS_PLAN, now=now)
    assert it.variables["b"] == branch and it.variables["hours_state"] == state


HTTP = ("- http: {url: 'http://crm/lookup?tel=${caller}', timeout: 2, "
        "set: {customer_id: customer.id, vip: customer.vip, last_agent: history.0.agent}, "
        "on_error: [{set: {fallback: 'yes'}}]}\n- hangup:")


def test_http_fills_variables_from_json_with_the_caller_url_encoded() -> None:
    it, out = run(HTTP, variables={"caller": "+81 90"})
    assert out == [c.HttpLookup("http://crm/lookup?tel=%2B81%2090", 2.0)]
    assert it.deadline == TUESDAY_10 + 2
    it.feed(c.HttpResult(200, {"customer": {"id": 42, "vip": True}, "history": [{"agent": "2001"}]}),
            TUESDAY_10 + 0.3)
    assert (it.variables["customer_id"], it.variables["vip"], it.variables["last_agent"]) == ("42", "true", "2001")
    assert "fallback" not in it.variables and it.finished


def test_http_timeout_runs_the_fallback_and_an_early_timeout_is_ignored() -> None:
    it, _ = run(HTTP)
    assert it.feed(c.Timeout(), TUESDAY_10 + 1) == []  # before the deadline: not a timeout
    assert not it.finished
    assert it.feed(c.Timeout(), TUESDAY_10 + 2) == [c.Hangup("normal_clearing")]
    assert it.variables["fallback"] == "yes" and it.variables["http_status"] == "timeout"
    assert it.variables["customer_id"] == ""


def test_http_error_status_runs_the_fallback() -> None:
    it, _ = run(HTTP)
    it.feed(c.HttpResult(503, None), TUESDAY_10 + 0.1)
    assert it.variables["fallback"] == "yes" and it.variables["http_status"] == "503"


def test_a_goto_loop_without_input_is_stopped_by_the_step_limit() -> None:
    it, out = run("- label: spin\n  set: {n: x}\n- goto: spin", extra="max_steps: 50")
    assert out == [c.Hangup("loop_detected")]
    assert it.finished and it.outcome == "step_limit" and it.steps_run == 51


def test_a_loop_that_waits_for_the_caller_each_round_keeps_running() -> None:
    it, _ = run("- label: hold\n  play: moh.wav\n- goto: hold", extra="max_steps: 10")
    for _ in range(100):
        assert it.feed(c.PlaybackDone(), 1) == [c.Play("moh.wav")]
    assert not it.finished


def test_goto_a_block_runs_its_steps() -> None:
    it, out = run("- goto: closing", extra="blocks:\n  closing: [{say: 'さようなら'}, {hangup: normal_clearing}]")
    assert out == [c.Say("さようなら", "ja", "")]
    assert it.feed(c.PlaybackDone(), 1) == [c.Hangup("normal_clearing")]


def test_caller_hangup_stops_the_plan() -> None:
    it, _ = run("- play: a.wav\n- play: b.wav")
    assert it.feed(c.CallerHangup(), 1) == []
    assert it.finished and it.outcome == "caller_hangup"
    assert it.feed(c.PlaybackDone(), 2) == []


def test_start_twice_is_an_error() -> None:
    it, _ = run("- hangup:")
    with pytest.raises(RuntimeError):
        it.start(0)


def test_route_selection_sets_call_variables_and_named_captures() -> None:
    plan = load_dialplan_text("""
contexts:
  in:
    trunks: [ntt]
    routes:
      - {name: tollfree, match: {did: _0120XXXXXX, trunk: ntt}, steps: [{hangup: }]}
      - {name: area, match: {number: 're:^0(?P<area>[36])\\d{8}$'}, steps: [{hangup: }]}
      - {name: vip-caller, match: {caller: ['prefix:090', '080']}, steps: [{hangup: }]}
  staff:
    users: ['1001']
    routes:
      - {name: any, steps: [{hangup: }]}
default_context: in
""", "r.yaml")
    assert plan.context_for(trunk="ntt") == "in" and plan.context_for(user="1001") == "staff"
    assert plan.context_for(user="9999") == "in"
    m = plan.route("in", "0120123456", did="0120123456", trunk="ntt", caller="0311112222", now=0)
    assert m is not None and m.route.name == "tollfree" and m.variables["did"] == "0120123456"
    assert plan.route("in", "0120123456", did="0120123456", trunk="other", now=0) is None
    m = plan.route("in", "0612345678", now=0)
    assert m is not None and m.route.name == "area" and m.variables["area"] == "6"
    m = plan.route("in", "111", caller="09011112222", now=0)
    assert m is not None and m.route.name == "vip-caller"
    assert plan.route("in", "111", caller="0701", now=0) is None


def test_routes_can_depend_on_the_time_of_the_call() -> None:
    plan = load_dialplan_text("""
calendars:
  c: {weekly: {mon-fri: '09:00-18:00'}}
contexts:
  in:
    routes:
      - {name: day, match: {open_in: c}, steps: [{hangup: }]}
      - {name: night, match: {closed_in: c}, steps: [{hangup: }]}
""", "t.yaml")
    assert plan.route("in", "1", now=TUESDAY_10).route.name == "day"  # type: ignore[union-attr]
    assert plan.route("in", "1", now=at(2026, 11, 24, 21)).route.name == "night"  # type: ignore[union-attr]
    assert plan.route("nope", "1", now=TUESDAY_10) is None


EXAMPLES = Path(__file__).resolve().parent.parent / "dialplans"


def mailorder_call(now: float, peak: bool = False) -> tuple[Interpreter, list[c.Command]]:
    from softswitch.config import load_config

    plan = load_config(EXAMPLES / "mailorder-ja.node.yaml").plan
    assert plan is not None
    m = plan.route(plan.context_for(trunk="ntt") or "", "0120123456", caller="09011112222",
                   did="0120123456", trunk="ntt", now=now)
    assert m is not None and m.route.name == "freedial"
    it = Interpreter(plan, m, {"peak_season": "true"} if peak else None)
    return it, it.start(now)


def test_mailorder_vip_found_by_crm_goes_to_the_vip_queue_with_priority() -> None:
    it, out = mailorder_call(TUESDAY_10)
    assert out == [c.Answer(), c.HttpLookup("http://127.0.0.1:8099/crm/customers?tel=09011112222", 2.0)]
    out = it.feed(c.HttpResult(200, {"customer": {"id": "C7", "name": "山田", "vip": True, "last_agent": "2001"}}),
                  TUESDAY_10 + 0.2)
    assert out == [c.StartRecording(), c.Say("山田様、いつもご利用いただき誠にありがとうございます。担当者におつなぎします。")]
    out = it.feed(c.PlaybackDone(), TUESDAY_10 + 5)
    assert out == [c.EnqueueAcd("vip", {}, 10, None, None, {"customer_id": "C7", "vip": "true",
                                                            "last_agent": "2001", "caller": "09011112222"})]


def test_mailorder_in_peak_season_overflows_orders_to_the_outsourced_centre_over_its_trunk() -> None:
    it, _ = mailorder_call(TUESDAY_10, peak=True)
    it.feed(c.Timeout(), TUESDAY_10 + 2)                # the CRM did not answer: a normal caller
    it.feed(c.PlaybackDone(), TUESDAY_10 + 4)           # greeting
    assert it.feed(c.DigitsCollected("1"), TUESDAY_10 + 6) == [
        c.Say("ご注文の担当者におつなぎします。順番におつなぎしますので、このままお待ちください。")]
    out = it.feed(c.PlaybackDone(), TUESDAY_10 + 9)
    assert out == [c.EnqueueAcd("orders", {"orders": 3}, None, 120.0, 15,
                                {"vip": "false", "caller": "09011112222"})]
    assert it.feed(c.QueueResult("overflow"), TUESDAY_10 + 129) == [
        c.Say("ただいま大変混み合っております。提携窓口におつなぎします。")]
    assert it.feed(c.PlaybackDone(), TUESDAY_10 + 133) == [
        c.Dial((c.DialTarget("external", "0367891234", "outsource"),), "ring_all", 30.0, None)]
    assert it.feed(c.DialResult("answered", "0367891234"), TUESDAY_10 + 140) == []
    assert it.outcome == "bridged"


@pytest.mark.parametrize(("now", "first"), [
    (at(2026, 11, 23, 10), "本日は祝日のため、お休みをいただいております。"),      # 勤労感謝の日
    (at(2026, 12, 31, 10), "誠に勝手ながら、ただいま休業期間中です。"),            # year-end closure
    (at(2026, 11, 24, 22), None),                                               # after hours
])
def test_mailorder_outside_hours_plays_a_message_and_takes_voicemail(now: float, first: str | None) -> None:
    it, _ = mailorder_call(now)
    out = it.feed(c.HttpResult(404, None), now + 0.1)
    said: list[str] = []
    while True:
        assert len(out) == 1
        if isinstance(out[0], c.RecordVoicemail):
            break
        assert isinstance(out[0], c.Say)
        said.append(out[0].text)
        out = it.feed(c.PlaybackDone(), now + 1)
    if first is not None:
        assert said[0] == first
    assert said[-2].endswith("本日の受付は終了しました。受付時間は、平日午前9時から午後8時、土日は午前10時から午後6時までです。")
    assert out == [c.RecordVoicemail("9000", 90.0, True)]


def test_yaml_booleans_become_the_same_text_as_json_booleans() -> None:
    it, _ = run("- set: {a: true, b: no, c: ~, d: 7}\n- if: {when: {var: a, eq: true}, then: [{set: {ok: 'y'}}]}"
                "\n- hangup:")
    assert [it.variables[k] for k in "abcd"] == ["true", "false", "", "7"] and it.variables["ok"] == "y"


def test_a_plan_built_in_code_with_a_broken_reference_fails_the_call_not_the_caller_of_feed() -> None:
    from softswitch.dialplan.model import Dialplan

    plan = Dialplan.model_validate({"contexts": {"c": {"routes": [
        {"name": "r", "steps": [{"hours": {"calendar": "missing"}}]},
        {"name": "g", "steps": [{"goto": "nowhere"}]}]}}})
    for route in plan.contexts["c"].routes:
        it = Interpreter(plan, route)
        assert it.start(0) == [c.Hangup("dialplan_error")]
        assert it.finished and it.outcome == "error"
