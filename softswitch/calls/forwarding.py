"""Users' call forwarding (always, on busy, on no answer) as plain decisions, shared by calls
dialled straight to a user (the node) and by dialplan `dial` steps (CallSession)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from softswitch.config import Forwarding

#: Failures of a user's phones that count as busy, and as nobody answering (408: our own timer).
BUSY = frozenset({486, 600})
NO_ANSWER = frozenset({408, 480})


def forward_after(fwd: Forwarding | None, status: int) -> str | None:
    """Where a user's call goes once their phones failed with `status`: the busy or no-answer
    destination, or None (not forwarded: declined, not found, no rule)."""
    if fwd is None:
        return None
    if status in BUSY:
        return fwd.busy
    if status in NO_ANSWER:
        return fwd.no_answer
    return None


def first_ring(fwd: Forwarding | None, dial_timeout: float) -> float:
    """How long a user's own phones ring: until no-answer forwarding takes over, never past the
    dial step's timeout."""
    if fwd is not None and fwd.no_answer:
        return min(dial_timeout, fwd.no_answer_after)
    return dial_timeout


def forward_ring(fwd: Forwarding | None, status: int, dial_timeout: float, elapsed: float) -> tuple[str, float] | None:
    """The one forward a dial step makes after the user's phones failed with `status` after
    `elapsed` seconds: (destination, how long it may ring: what is left of the dial timeout), or
    None when there is no rule for that failure or no time left."""
    number = forward_after(fwd, status)
    left = dial_timeout - elapsed
    if not number or left <= 0:
        return None
    return number, left
