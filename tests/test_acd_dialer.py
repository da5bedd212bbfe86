"""The outbound dialer core: record states, retries, do-not-call, preview, and predictive pacing (fake clock)."""

from __future__ import annotations

import math

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from acd.dialer import (
    DEFAULT_RETRY_DELAYS,
    Dial,
    Dialer,
    DialerSettings,
    Mode,
    Record,
    RecordState,
    Result,
    _binomial_window,
    _expected_excess,
)
from bench.dialer import Campaign, simulate

AGENTS = [f"a{i}" for i in range(200)]


def records(n: int, start: int = 0) -> list[Record]:
    return [Record(f"r{i}", f"03{i:08d}", customer_id=f"c{i}") for i in range(start, start + n)]


def make(mode: Mode, n: int = 5, **kw: object) -> Dialer:
    return Dialer("camp", DialerSettings(mode=mode, **kw), records(n))  # type: ignore[arg-type]


def train(d: Dialer, answered: int, unanswered: int, now: float = 0.0) -> None:
    """Dial answered + unanswered lines (before min_samples: one per free agent) and report them, answers first."""
    dials = d.pace(now, AGENTS[: answered + unanswered])
    assert len(dials) == answered + unanswered
    for i, dl in enumerate(dials):
        if i < answered:
            d.answered(dl.record_id, now + 5)
            d.dial_result(dl.record_id, Result.CONNECTED, now + 5)
        else:
            d.dial_result(dl.record_id, Result.NO_ANSWER, now + 20)


# ---- records and ordering -----------------------------------------------------------------------


def test_add_records_ignores_duplicate_ids_and_returns_how_many_were_added() -> None:
    d = make(Mode.PROGRESSIVE, 3)
    assert d.add_records([Record("r1", "x"), Record("r9", "0399")]) == 1
    assert sorted(d.records()) == ["r0", "r1", "r2", "r9"]
    assert d.records()["r1"].number == "0300000001"


def test_numbers_on_the_dnc_list_become_dnc_when_added_and_are_never_dialled() -> None:
    d = Dialer("c", DialerSettings(mode=Mode.PROGRESSIVE), records(3), dnc=lambda n: n == "0300000001")
    assert d.records()["r1"].state is RecordState.DNC
    dials = d.pace(0.0, ["a", "b", "c"])
    assert [x.record_id for x in dials] == ["r0", "r2"]


def test_records_loaded_mid_dial_or_preview_are_due_again_and_exhausted_ones_fail() -> None:
    d = Dialer("c", DialerSettings(mode=Mode.PROGRESSIVE, max_attempts=2), [
        Record("a", "1", state=RecordState.DIALLING, attempts=1),
        Record("b", "2", state=RecordState.PREVIEWING),
        Record("c", "3", attempts=2),
        Record("d", "4", state=RecordState.DONE),
        Record("e", "5", state=RecordState.RETRY, attempts=1, next_at=50.0),
    ])
    states = {r.id: r.state for r in d.records().values()}
    assert states == {"a": RecordState.PENDING, "b": RecordState.PENDING, "c": RecordState.FAILED,
                      "d": RecordState.DONE, "e": RecordState.RETRY}
    assert [x.record_id for x in d.pace(0.0, ["x", "y", "z"])] == ["a", "b"]
    assert [x.record_id for x in d.pace(50.0, ["z"])] == ["e"]


def test_progressive_dials_one_record_per_free_agent_in_list_order_and_reserves_the_agent() -> None:
    d = make(Mode.PROGRESSIVE, 5)
    dials = d.pace(10.0, ["a", "b"])
    assert dials == [Dial("r0", "0300000000", 1, "a"), Dial("r1", "0300000001", 1, "b")]
    r0 = d.records()["r0"]
    assert (r0.state, r0.attempts, r0.agent) == (RecordState.DIALLING, 1, "a")
    assert d.in_flight() == 2


def test_progressive_does_not_dial_again_for_an_agent_whose_dial_is_in_flight() -> None:
    d = make(Mode.PROGRESSIVE, 5)
    d.pace(0.0, ["a"])
    assert d.pace(1.0, ["a"]) == []
    assert [x.agent for x in d.pace(2.0, ["a", "b"])] == ["b"]
    d.dial_result("r0", Result.NO_ANSWER, 3.0)
    assert d.pace(3.0, ["a", "b"]) == [Dial("r2", "0300000002", 1, "a")]


def test_a_record_in_flight_is_never_handed_out_twice() -> None:
    d = make(Mode.PROGRESSIVE, 1)
    assert len(d.pace(0.0, ["a", "b"])) == 1
    assert d.pace(1.0, ["b", "c"]) == []
    assert d.preview_next("c", 1.0) is None


def test_duplicate_free_agents_get_one_dial() -> None:
    d = make(Mode.PROGRESSIVE, 5)
    assert len(d.pace(0.0, ["a", "a"])) == 1


@pytest.mark.parametrize("mode", [Mode.PROGRESSIVE, Mode.PREDICTIVE])
def test_a_closed_schedule_dials_nothing_until_it_opens(mode: Mode) -> None:
    d = make(mode, 5)
    assert d.pace(0.0, ["a", "b"], open=False) == []
    assert d.in_flight() == 0
    assert len(d.pace(1.0, ["a", "b"], open=True)) == 2


def test_preview_mode_never_dials_by_itself() -> None:
    d = make(Mode.PREVIEW, 5)
    assert d.pace(0.0, ["a", "b", "c"]) == []
    assert d.in_flight() == 0


# ---- results, retries and limits -----------------------------------------------------------------


def test_a_connected_result_makes_the_record_done_and_frees_the_agent_reservation() -> None:
    d = make(Mode.PROGRESSIVE, 3)
    d.pace(0.0, ["a"])
    d.answered("r0", 8.0)
    d.connected("r0", "a", 8.5)
    rec = d.dial_result("r0", "connected", 8.5)
    assert (rec.state, rec.last_result, rec.agent, rec.attempts) == (RecordState.DONE, "connected", "a", 1)
    assert d.in_flight() == 0
    assert [x.record_id for x in d.pace(200.0, ["a"])] == ["r1"]


@pytest.mark.parametrize("result", [Result.BUSY, Result.NO_ANSWER, Result.REJECTED, Result.UNREACHABLE,
                                    Result.ABANDONED])
def test_an_unsuccessful_attempt_is_retried_after_the_delay_for_its_result(result: Result) -> None:
    d = make(Mode.PROGRESSIVE, 1)
    d.pace(100.0, ["a"])
    rec = d.dial_result("r0", result, 130.0)
    delay = DEFAULT_RETRY_DELAYS[result]
    assert (rec.state, rec.next_at, rec.last_result) == (RecordState.RETRY, 130.0 + delay, result.value)
    assert d.next_deadline() == 130.0 + delay
    assert d.pace(130.0 + delay - 0.001, ["a"]) == []
    assert d.pace(130.0 + delay, ["a"]) == [Dial("r0", "0300000000", 2, "a")]
    assert d.next_deadline() is None


def test_retry_delays_can_be_set_per_result() -> None:
    d = make(Mode.PROGRESSIVE, 2, retry_delays={"busy": 60.0})
    d.pace(0.0, ["a", "b"])
    assert d.dial_result("r0", Result.BUSY, 10.0).next_at == 70.0
    # a result missing from the campaign's table falls back to the default delay
    assert d.dial_result("r1", Result.NO_ANSWER, 10.0).next_at == 10.0 + DEFAULT_RETRY_DELAYS["no_answer"]


def test_a_record_fails_when_its_attempts_reach_max_attempts() -> None:
    d = make(Mode.PROGRESSIVE, 1, max_attempts=2, retry_delays={"busy": 10.0})
    assert d.pace(0.0, ["a"])[0].attempt == 1
    assert d.dial_result("r0", Result.BUSY, 1.0).state is RecordState.RETRY
    assert d.pace(11.0, ["a"])[0].attempt == 2
    rec = d.dial_result("r0", Result.BUSY, 12.0)
    assert (rec.state, rec.attempts) == (RecordState.FAILED, 2)
    assert d.pace(1e6, ["a"]) == []
    assert d.finished()


def test_results_for_unknown_records_or_without_a_dial_in_flight_are_refused() -> None:
    d = make(Mode.PROGRESSIVE, 2)
    with pytest.raises(KeyError):
        d.dial_result("nope", Result.BUSY, 0.0)
    with pytest.raises(ValueError):
        d.dial_result("r0", Result.BUSY, 0.0)
    d.pace(0.0, ["a"])
    with pytest.raises(ValueError):
        d.dial_result("r0", "hung-up", 1.0)
    d.dial_result("r0", Result.BUSY, 1.0)
    with pytest.raises(ValueError):  # a second result for the same attempt
        d.dial_result("r0", Result.BUSY, 2.0)


def test_due_retries_and_pending_records_go_out_in_next_at_then_arrival_order() -> None:
    d = make(Mode.PROGRESSIVE, 3, retry_delays={"busy": 10.0, "no_answer": 5.0})
    d.pace(0.0, ["a", "b"])
    d.dial_result("r0", Result.BUSY, 1.0)  # due at 11
    d.dial_result("r1", Result.NO_ANSWER, 1.0)  # due at 6
    d.add_records(records(1, start=3))
    order = [x.record_id for x in d.pace(20.0, ["a", "b", "c", "d"])]
    assert order == ["r2", "r3", "r1", "r0"]


def test_next_deadline_is_the_earliest_retry_time() -> None:
    d = make(Mode.PROGRESSIVE, 2, retry_delays={"busy": 10.0, "rejected": 30.0})
    assert d.next_deadline() is None
    d.pace(0.0, ["a", "b"])
    d.dial_result("r0", Result.REJECTED, 1.0)
    assert d.next_deadline() == 31.0
    d.dial_result("r1", Result.BUSY, 2.0)
    assert d.next_deadline() == 12.0
    d.pace(12.0, ["a"])
    assert d.next_deadline() == 31.0


def test_next_deadline_with_now_leaves_out_retries_already_due_and_waiting_for_an_agent() -> None:
    d = make(Mode.PROGRESSIVE, 2, retry_delays={"busy": 10.0, "rejected": 30.0})
    d.pace(0.0, ["a", "b"])
    d.dial_result("r0", Result.BUSY, 1.0)  # due at 11
    d.dial_result("r1", Result.REJECTED, 1.0)  # due at 31
    assert d.pace(20.0, []) == []  # r0 is due but nobody is free
    assert d.next_deadline() == 11.0
    assert d.next_deadline(20.0) == 31.0  # a timer for 11 would fire at once, and again
    assert d.stats(20.0)["due"] == 1
    assert d.pace(21.0, ["a"]) == [Dial("r0", "0300000000", 2, "a")]  # the agent frees: it goes out
    assert d.next_deadline(21.0) == 31.0
    assert d.next_deadline(40.0) is None
    assert d.next_deadline() == 31.0


def test_finished_only_when_no_record_can_be_dialled_again() -> None:
    d = make(Mode.PROGRESSIVE, 2, max_attempts=1)
    assert not d.finished()
    d.pace(0.0, ["a", "b"])
    d.dial_result("r0", Result.CONNECTED, 5.0)
    assert not d.finished()  # r1 still in flight
    d.dial_result("r1", Result.NO_ANSWER, 5.0)
    assert d.finished()


def test_a_skipped_result_for_a_dial_does_not_count_the_attempt() -> None:
    d = make(Mode.PROGRESSIVE, 2)
    d.pace(0.0, ["a"])
    rec = d.dial_result("r0", Result.SKIPPED, 1.0)
    assert (rec.state, rec.attempts) == (RecordState.PENDING, 0)
    assert d.stats(1.0)["attempts"] == 0
    assert [x.record_id for x in d.pace(2.0, ["a", "b"])] == ["r1", "r0"]


# ---- do-not-call ----------------------------------------------------------------------------------


def test_block_moves_every_record_not_yet_final_with_that_number_to_dnc() -> None:
    d = Dialer("c", DialerSettings(mode=Mode.PREVIEW), [
        Record("pending", "111"), Record("retry", "111", state=RecordState.RETRY, attempts=1, next_at=99.0),
        Record("done", "111", state=RecordState.DONE), Record("other", "222"), Record("previewed", "111"),
    ])
    assert d.preview_next("ag", 0.0).id == "pending"  # type: ignore[union-attr]
    changed = d.block("111")
    assert sorted(r.id for r in changed) == ["pending", "previewed", "retry"]
    states = {r.id: r.state for r in d.records().values()}
    assert states["done"] is RecordState.DONE and states["other"] is RecordState.PENDING
    assert d.next_deadline() is None
    with pytest.raises(ValueError):
        d.preview_dial("ag", "pending", 1.0)
    assert d.preview_next("ag", 1.0).id == "other"  # type: ignore[union-attr]


def test_a_dial_blocked_in_flight_keeps_its_result_but_the_record_stays_dnc() -> None:
    d = make(Mode.PROGRESSIVE, 3)
    d.pace(0.0, ["a"])
    assert [r.id for r in d.block("0300000000")] == ["r0"]
    rec = d.dial_result("r0", Result.BUSY, 5.0)
    assert (rec.state, rec.last_result, rec.attempts) == (RecordState.DNC, "busy", 1)
    assert d.next_deadline() is None and d.in_flight() == 0
    assert d.stats(5.0)["results"]["busy"] == 1  # type: ignore[index]
    assert [x.record_id for x in d.pace(6.0, ["a"])] == ["r1"]  # the agent's reservation ended


def test_numbers_put_on_the_dnc_list_after_import_are_checked_before_dialling() -> None:
    blocked: set[str] = set()
    d = Dialer("c", DialerSettings(mode=Mode.PROGRESSIVE), records(3), dnc=blocked.__contains__)
    blocked.add("0300000000")
    assert [x.record_id for x in d.pace(0.0, ["a"])] == ["r1"]
    assert d.records()["r0"].state is RecordState.DNC


def test_a_blocked_number_stays_blocked_for_records_added_later() -> None:
    d = make(Mode.PROGRESSIVE, 1)
    d.block("0399")
    d.add_records([Record("late", "0399")])
    assert d.records()["late"].state is RecordState.DNC


# ---- preview --------------------------------------------------------------------------------------


def test_preview_next_reserves_a_record_for_one_agent_until_they_use_it() -> None:
    d = make(Mode.PREVIEW, 3)
    first = d.preview_next("a", 0.0)
    assert first is not None and (first.id, first.state, first.agent) == ("r0", RecordState.PREVIEWING, "a")
    assert d.preview_next("a", 1.0) is first  # asking again shows the same record
    assert d.preview_next("b", 1.0).id == "r1"  # type: ignore[union-attr]


def test_preview_dial_counts_the_attempt_and_reserves_the_agent() -> None:
    d = make(Mode.PREVIEW, 3)
    d.preview_next("a", 0.0)
    d.preview_next("b", 0.0)
    with pytest.raises(ValueError):
        d.preview_dial("a", "r1", 1.0)  # b's record
    with pytest.raises(ValueError):
        d.preview_dial("c", "r0", 1.0)
    assert d.preview_dial("a", "r0", 1.0) == Dial("r0", "0300000000", 1, "a")
    with pytest.raises(ValueError):
        d.preview_dial("a", "r0", 1.0)  # already dialled
    assert d.records()["r0"].state is RecordState.DIALLING
    assert d.in_flight() == 1


def test_a_skipped_preview_goes_back_after_the_other_due_records_without_an_attempt() -> None:
    d = make(Mode.PREVIEW, 3)
    d.preview_next("a", 0.0)
    rec = d.preview_skip("a", "r0", 5.0)
    assert (rec.state, rec.attempts, rec.last_result, rec.agent) == (RecordState.PENDING, 0, "skipped", "")
    seen = []
    for _ in range(3):
        r = d.preview_next("a", 6.0)
        assert r is not None
        seen.append(r.id)
        d.preview_skip("a", r.id, 6.0)
    assert seen == ["r1", "r2", "r0"]
    with pytest.raises(ValueError):
        d.preview_skip("b", "r1", 7.0)


def test_a_skipped_preview_goes_after_retries_already_due_too() -> None:
    d = make(Mode.PREVIEW, 2, retry_delays={"busy": 10.0})
    d.preview_next("a", 0.0)
    d.preview_dial("a", "r0", 0.0)
    d.dial_result("r0", Result.BUSY, 1.0)  # due again at 11
    d.preview_next("a", 20.0)  # r1
    d.preview_skip("a", "r1", 20.0)
    assert d.preview_next("b", 21.0).id == "r0"  # type: ignore[union-attr]
    assert d.preview_next("c", 21.0).id == "r1"  # type: ignore[union-attr]


def test_a_skipped_dial_result_on_a_previewed_record_is_a_skip() -> None:
    d = make(Mode.PREVIEW, 2)
    d.preview_next("a", 0.0)
    rec = d.dial_result("r0", Result.SKIPPED, 1.0)
    assert (rec.state, rec.attempts) == (RecordState.PENDING, 0)
    assert d.preview_next("a", 2.0).id == "r1"  # type: ignore[union-attr]


def test_release_returns_a_previewed_record_to_its_place_in_line() -> None:
    d = make(Mode.PREVIEW, 3)
    d.preview_next("a", 0.0)
    d.release("a", 1.0)
    assert d.records()["r0"].state is RecordState.PENDING
    assert d.preview_next("b", 2.0).id == "r0"  # type: ignore[union-attr]
    d.release("nobody", 2.0)  # nothing held: nothing happens


def test_preview_then_results_retry_like_any_dial() -> None:
    d = make(Mode.PREVIEW, 1, retry_delays={"no_answer": 60.0})
    d.preview_next("a", 0.0)
    d.preview_dial("a", "r0", 0.0)
    assert d.dial_result("r0", Result.NO_ANSWER, 30.0).state is RecordState.RETRY
    assert d.preview_next("a", 89.0) is None
    assert d.preview_next("a", 90.0).id == "r0"  # type: ignore[union-attr]
    assert d.preview_dial("a", "r0", 90.0).attempt == 2


# ---- predictive pacing ----------------------------------------------------------------------------


def test_predictive_dials_one_line_per_free_agent_before_min_samples() -> None:
    d = make(Mode.PREDICTIVE, 50, min_samples=20)
    dials = d.pace(0.0, ["a", "b", "c"])
    assert len(dials) == 3 and all(x.agent is None for x in dials)
    assert d.pace(1.0, ["a", "b", "c"]) == []  # three lines already ring for three agents
    assert len(d.pace(2.0, ["a", "b", "c", "d"])) == 1
    assert d.stats(2.0)["lines_per_agent"] == 1.0


def test_predictive_with_no_free_agent_dials_nothing() -> None:
    d = make(Mode.PREDICTIVE, 200, min_samples=5)
    train(d, answered=10, unanswered=90)
    assert d.trusted()
    assert d.pace(100.0, []) == []


def brute_excess(n: int, p: float, k: int, busy: int = 0, q: float = 0.0) -> float:
    """E[max(0, X - k - Y)] summed over every outcome."""
    total = 0.0
    for x in range(n + 1):
        px = math.comb(n, x) * p**x * (1 - p) ** (n - x)
        for y in range(busy + 1):
            py = math.comb(busy, y) * q**y * (1 - q) ** (busy - y)
            total += px * py * max(0, x - k - y)
    return total


@pytest.mark.parametrize(("n", "p", "k", "busy", "q"), [
    (10, 0.3, 2, 0, 0.0), (40, 0.35, 10, 0, 0.0), (60, 0.2, 5, 30, 0.1), (200, 0.5, 90, 50, 0.3),
    (5, 0.9, 1, 3, 0.5), (300, 0.05, 3, 10, 0.02), (12, 1.0, 4, 0, 0.0),
])
def test_expected_excess_matches_the_sum_over_every_outcome(n: int, p: float, k: int, busy: int, q: float) -> None:
    y_lo, y_pmf = _binomial_window(busy, q)
    assert _expected_excess(n, p, k, y_lo, y_pmf) == pytest.approx(brute_excess(n, p, k, busy, q), rel=1e-9, abs=1e-15)


def test_binomial_window_holds_all_but_a_negligible_tail() -> None:
    lo, pmf = _binomial_window(2000, 0.35)
    assert lo > 0 and len(pmf) < 2000
    assert sum(pmf) == pytest.approx(1.0, abs=1e-12)


def test_predictive_dials_the_most_lines_that_keep_expected_abandonment_under_the_ceiling() -> None:
    d = make(Mode.PREDICTIVE, 300, min_samples=20, abandon_ceiling=0.03)
    train(d, answered=25, unanswered=75)  # p = 0.25, nobody connected: no agent is about to be free
    assert d.answer_rate() == 0.25
    dials = d.pace(100.0, ["a", "b", "c", "d"])
    n = len(dials)
    assert n > 4  # several lines per free agent when few calls answer
    assert all(x.agent is None for x in dials)
    assert brute_excess(n, 0.25, 4) <= 0.03 * n * 0.25
    assert n == 12 or brute_excess(n + 1, 0.25, 4) > 0.03 * (n + 1) * 0.25  # 12 = 3 lines x 4 agents
    assert d.stats(100.0)["lines_per_agent"] == n / 4


def test_predictive_never_exceeds_max_lines_per_agent() -> None:
    d = make(Mode.PREDICTIVE, 400, min_samples=5, max_lines_per_agent=2.0)
    train(d, answered=5, unanswered=195)  # p = 0.025: the ceiling alone would allow many lines
    assert len(d.pace(100.0, ["a", "b", "c"])) == 6


def test_predictive_counts_lines_ringing_and_answered_calls_waiting_for_an_agent() -> None:
    d = make(Mode.PREDICTIVE, 300, min_samples=20)
    train(d, answered=25, unanswered=75)
    first = d.pace(100.0, ["a", "b", "c", "d"])
    assert d.pace(100.0, ["a", "b", "c", "d"]) == []  # the lines already ringing are enough
    # Two of them answer and wait for an agent: four free agents now cover only two more answers.
    d.answered(first[0].record_id, 105.0)
    d.answered(first[1].record_id, 105.0)
    assert d.pace(105.0, ["a", "b", "c", "d"]) == []
    for x in first[2:]:
        d.dial_result(x.record_id, Result.NO_ANSWER, 120.0)
    again = d.pace(120.0, ["a", "b", "c", "d"])
    n, p = len(again), d.answer_rate()
    assert 2 <= n < len(first)
    assert brute_excess(n, p, 2) <= 0.03 * n * p
    assert n == 6 or brute_excess(n + 1, p, 2) > 0.03 * (n + 1) * p


def test_agents_about_to_be_free_are_counted_and_raise_the_lines() -> None:
    def lines(busy: int) -> int:
        d = make(Mode.PREDICTIVE, 2000, min_samples=20)
        train(d, answered=25, unanswered=75)
        dials = d.pace(0.0, [f"b{i}" for i in range(busy)])
        for i, x in enumerate(dials):
            if i < busy:  # b{i} takes the call, then wraps up
                d.answered(x.record_id, 1.0)
                d.connected(x.record_id, f"b{i}", 1.0)
                d.dial_result(x.record_id, Result.CONNECTED, 1.0, agent=f"b{i}")
                d.handle_ended(x.record_id, 2.0)
            else:
                d.dial_result(x.record_id, Result.NO_ANSWER, 2.0)
        assert d.stats(2.0)["busy_agents"] == busy
        return len(d.pace(2.0, ["a", "b"]))

    assert lines(0) <= 6 < lines(100)


def test_measured_answer_rate_waits_for_earlier_dials_so_quick_results_do_not_skew_it() -> None:
    d = make(Mode.PREDICTIVE, 50, min_samples=1)
    dials = d.pace(0.0, AGENTS[:10])
    for x in dials[1:6]:
        d.dial_result(x.record_id, Result.BUSY, 2.0)  # quick results, but the first dial is still ringing
    assert not d.trusted()
    d.answered(dials[0].record_id, 10.0)
    assert d.trusted()
    # the first answered and the next five were busy: dials 7-10 are still unknown
    assert d.answer_rate() == pytest.approx(1 / 6)
    assert d.stats(10.0)["answer_delay"] == 10.0


def test_feedback_tightens_the_target_while_measured_abandonment_exceeds_the_ceiling() -> None:
    def lines_after(abandoned: int) -> tuple[Dialer, int]:
        d = make(Mode.PREDICTIVE, 300, min_samples=10, abandon_ceiling=0.03)
        assert d.abandon_target() == 0.03
        for i, x in enumerate(d.pace(0.0, AGENTS[:80])):
            if i < 40:  # half answer: p = 0.5
                d.answered(x.record_id, 5.0)
                d.dial_result(x.record_id, Result.ABANDONED if i < abandoned else Result.CONNECTED, 7.0)
            else:
                d.dial_result(x.record_id, Result.NO_ANSWER, 7.0)
        return d, len(d.pace(8.0, AGENTS[100:110]))

    calm, calm_lines = lines_after(0)
    assert calm.abandon_target() == 0.03
    assert calm_lines > 10
    burst, burst_lines = lines_after(10)
    assert burst.stats(8.0)["abandon_rate"] == 0.25
    assert burst.abandon_target() == 0.0
    # at a zero target (and no agent counted as about to be free) only the tails below 1e-12 are allowed
    assert burst_lines == 10


def test_feedback_allows_the_full_ceiling_while_abandonment_is_low() -> None:
    d = make(Mode.PREDICTIVE, 300, min_samples=10, abandon_ceiling=0.05)
    train(d, answered=30, unanswered=70)
    assert d.abandon_target() == 0.05


# ---- statistics -----------------------------------------------------------------------------------


def test_stats_count_states_attempts_outcomes_and_measured_times() -> None:
    d = make(Mode.PROGRESSIVE, 4, retry_delays={"busy": 100.0})
    d.pace(0.0, ["a", "b", "c"])
    d.answered("r0", 10.0)
    d.connected("r0", "a", 10.0)
    d.dial_result("r0", Result.CONNECTED, 10.0)
    d.answered("r1", 12.0)
    d.dial_result("r1", Result.ABANDONED, 14.0)
    d.dial_result("r2", Result.BUSY, 3.0)
    d.handle_ended("r0", 130.0)
    d.pace(145.0, ["a"])  # a is free again after 15 s of wrap-up
    s = d.stats(150.0)
    assert s["states"] == {"pending": 0, "dialling": 1, "previewing": 0, "retry": 2, "done": 1, "failed": 0,
                           "dnc": 0}
    assert s["retry"] == 2 and s["records"] == 4
    assert (s["attempts"], s["completed_attempts"], s["in_flight"]) == (4, 3, 1)
    assert (s["answered"], s["connected"], s["abandoned"]) == (2, 1, 1)
    assert s["abandon_rate"] == 0.5
    assert s["answer_rate"] == pytest.approx(2 / 3)
    assert s["handle_time"] == 120.0
    assert s["wrap_up_time"] == 15.0
    assert s["lines_per_agent"] == 1.0
    assert s["due"] == 1  # r2's busy retry at 103


# ---- simulation -----------------------------------------------------------------------------------


def test_simulated_predictive_campaign_keeps_abandonment_under_the_ceiling_and_beats_progressive() -> None:
    predictive = simulate(Campaign(50, answer_rate=0.25, hours=1.5, seed=11))
    progressive = simulate(Campaign(50, mode=Mode.PROGRESSIVE, answer_rate=0.25, hours=1.5, seed=11))
    assert predictive.dialled > 3000 and predictive.answered > 700
    assert predictive.abandon_rate <= 0.03 + 0.005
    assert predictive.abandoned > 0  # it does use its budget
    assert predictive.lines_per_agent > 1.5
    assert predictive.occupancy > progressive.occupancy + 0.05
    assert progressive.abandoned == 0 and progressive.lines_per_agent <= 1.0
    stats = predictive.stats
    assert stats is not None
    assert stats["abandoned"] == predictive.abandoned and stats["answered"] == predictive.answered
    assert stats["measured_answer_rate"] == pytest.approx(0.25, abs=0.05)
    assert stats["handle_time"] == pytest.approx(180, rel=0.2)


# ---- property: random interleavings ---------------------------------------------------------------


NUMBERS = ["n0", "n1", "n2", "n3", "n4", "n5"]
MAX_ATTEMPTS = 3


class DialerMachine(RuleBasedStateMachine):
    """Random pace / preview / result sequences never hand one record to two holders or exceed max_attempts."""

    @initialize(mode=st.sampled_from(list(Mode)), n=st.integers(1, 12))
    def setup(self, mode: Mode, n: int) -> None:
        self.now = 0.0
        self.d = Dialer("p", DialerSettings(mode=mode, max_attempts=MAX_ATTEMPTS, min_samples=2,
                                            retry_delays=dict.fromkeys(DEFAULT_RETRY_DELAYS, 5.0)),
                        [Record(f"r{i}", NUMBERS[i % len(NUMBERS)]) for i in range(n)])
        self.flight: dict[str, Dial] = {}
        self.previews: dict[str, str] = {}
        self.talking: set[str] = set()
        self.dials: dict[str, int] = {}  # record -> attempts counted by the model

    def take(self, dial: Dial) -> None:
        assert dial.record_id not in self.flight
        assert dial.record_id not in self.previews.values()
        if dial.agent is not None:
            assert all(x.agent != dial.agent for x in self.flight.values())
        self.dials[dial.record_id] = self.dials.get(dial.record_id, 0) + 1
        assert dial.attempt == self.dials[dial.record_id] <= MAX_ATTEMPTS
        self.flight[dial.record_id] = dial

    @rule(dt=st.floats(0, 10))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule(agents=st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=4), open=st.booleans())
    def pace(self, agents: list[str], open: bool) -> None:
        for dial in self.d.pace(self.now, agents, open=open):
            assert open
            self.take(dial)

    @rule(agent=st.sampled_from(["a", "b", "c"]))
    def preview_next(self, agent: str) -> None:
        rec = self.d.preview_next(agent, self.now)
        if rec is None:
            return
        if agent in self.previews:
            assert self.previews[agent] == rec.id
        else:
            assert rec.id not in self.flight and rec.id not in self.previews.values()
            self.previews[agent] = rec.id

    @precondition(lambda self: self.previews)
    @rule(data=st.data(), skip=st.booleans())
    def preview_act(self, data: st.DataObject, skip: bool) -> None:
        agent = data.draw(st.sampled_from(sorted(self.previews)))
        rid = self.previews[agent]
        if skip:
            del self.previews[agent]
            self.d.preview_skip(agent, rid, self.now)
        elif any(x.agent == agent for x in self.flight.values()):
            with pytest.raises(ValueError):  # one dial at a time per agent
                self.d.preview_dial(agent, rid, self.now)
        else:
            del self.previews[agent]
            self.take(self.d.preview_dial(agent, rid, self.now))

    @precondition(lambda self: self.flight)
    @rule(data=st.data(), result=st.sampled_from(list(Result)), answer=st.booleans())
    def result(self, data: st.DataObject, result: Result, answer: bool) -> None:
        rid = data.draw(st.sampled_from(sorted(self.flight)))
        dial = self.flight.pop(rid)
        if answer:
            self.d.answered(rid, self.now)
            if result is Result.CONNECTED:
                self.d.connected(rid, dial.agent or "z", self.now)
                self.talking.add(rid)
        rec = self.d.dial_result(rid, result, self.now)
        if result is Result.SKIPPED:
            self.dials[rid] -= 1
        if rec.state is not RecordState.DNC:
            expected = {Result.CONNECTED: RecordState.DONE, Result.SKIPPED: RecordState.PENDING}.get(
                result, RecordState.FAILED if rec.attempts >= MAX_ATTEMPTS else RecordState.RETRY)
            assert rec.state is expected

    @rule(number=st.sampled_from(NUMBERS))
    def block(self, number: str) -> None:
        for rec in self.d.block(number):
            assert rec.number == number and rec.state is RecordState.DNC
            self.previews = {a: r for a, r in self.previews.items() if r != rec.id}

    @precondition(lambda self: self.talking)
    @rule(data=st.data())
    def handle_ended(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.talking)))
        self.talking.discard(rid)
        self.d.handle_ended(rid, self.now)

    @rule(agent=st.sampled_from(["a", "b", "c"]))
    def release(self, agent: str) -> None:
        self.d.release(agent, self.now)
        self.previews.pop(agent, None)

    @invariant()
    def consistent(self) -> None:
        recs = self.d.records()
        assert self.d.in_flight() == len(self.flight)
        for rid in self.flight:
            assert recs[rid].state in (RecordState.DIALLING, RecordState.DNC)
        for agent, rid in self.previews.items():
            assert recs[rid].state in (RecordState.PREVIEWING, RecordState.DNC)
            if recs[rid].state is RecordState.PREVIEWING:
                assert recs[rid].agent == agent
        for rid, count in self.dials.items():
            assert 0 <= count <= MAX_ATTEMPTS, rid
        for rec in recs.values():
            assert rec.attempts <= MAX_ATTEMPTS
            assert rec.attempts == self.dials.get(rec.id, 0)
            if rec.state is RecordState.DIALLING:
                assert rec.id in self.flight
            if rec.state is RecordState.PREVIEWING:
                assert rec.id in self.previews.values()
        stats = self.d.stats(self.now)
        assert stats["states"] == {s.value: sum(1 for r in recs.values() if r.state is s) for s in RecordState}
        assert self.d.finished() == all(
            r.state in (RecordState.DONE, RecordState.FAILED, RecordState.DNC) for r in recs.values())


TestDialerInterleavings = DialerMachine.TestCase
TestDialerInterleavings.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
