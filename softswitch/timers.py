"""The asyncio side of a sans-IO core's timers: one timer armed for its earliest deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class DeadlineTimer:
    """Keeps one `call_later` armed for the earliest deadline a core reports.

    `clock` is the clock the core's deadlines are on (the loop's for SIP transactions, wall time
    for the ACD). Arming a later deadline than the armed one is a no-op: the earlier timer fires,
    the core ticks, and the caller re-arms with the core's next deadline.
    """

    def __init__(self, fire: Callable[[], None], clock: Callable[[], float]) -> None:
        self._fire_cb = fire
        self._clock = clock
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    def arm(self, deadline: float | None) -> None:
        if deadline is None:
            return
        if self._handle is not None and self._at is not None and self._at <= deadline:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._at = deadline
        delay = max(0.0, deadline - self._clock())
        self._handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._at = None
        self._fire_cb()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._at = None
