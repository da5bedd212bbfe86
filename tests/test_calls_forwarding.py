"""Forwarding decisions shared by direct calls and dialplan dial steps (pure functions)."""

from __future__ import annotations

import pytest

from softswitch.calls.forwarding import first_ring, forward_after, forward_ring
from softswitch.config import Forwarding


@pytest.mark.parametrize("status", [486, 600])
def test_busy_answers_go_to_the_busy_destination(status: int) -> None:
    fwd = Forwarding(busy="2002", no_answer="09011112222")
    assert forward_after(fwd, status) == "2002"


@pytest.mark.parametrize("status", [408, 480])
def test_nobody_answering_goes_to_the_no_answer_destination(status: int) -> None:
    fwd = Forwarding(busy="2002", no_answer="09011112222")
    assert forward_after(fwd, status) == "09011112222"


@pytest.mark.parametrize("status", [603, 404, 488, 503, 487])
def test_declines_and_errors_are_not_forwarded(status: int) -> None:
    assert forward_after(Forwarding(busy="2002", no_answer="2003"), status) is None


def test_no_rule_for_the_failure_or_no_rules_at_all_means_no_forward() -> None:
    assert forward_after(Forwarding(no_answer="2003"), 486) is None
    assert forward_after(Forwarding(busy="2002"), 408) is None
    assert forward_after(None, 486) is None


def test_the_users_phones_ring_until_no_answer_after_but_never_past_the_dial_timeout() -> None:
    assert first_ring(Forwarding(no_answer="2002", no_answer_after=8), 30.0) == 8
    assert first_ring(Forwarding(no_answer="2002", no_answer_after=45), 30.0) == 30.0
    assert first_ring(Forwarding(busy="2002", no_answer_after=8), 30.0) == 30.0  # no no-answer rule
    assert first_ring(None, 30.0) == 30.0


def test_the_forward_rings_for_what_is_left_of_the_dial_timeout() -> None:
    fwd = Forwarding(busy="2002", no_answer="2003", no_answer_after=8)
    assert forward_ring(fwd, 486, 30.0, 2.5) == ("2002", 27.5)
    assert forward_ring(fwd, 408, 30.0, 8.0) == ("2003", 22.0)


def test_no_forward_once_the_dial_timeout_is_spent() -> None:
    fwd = Forwarding(no_answer="2003", no_answer_after=30)
    assert forward_ring(fwd, 408, 30.0, 30.0) is None
    assert forward_ring(fwd, 486, 30.0, 1.0) is None  # and none without a busy rule
