"""Events published by the API layer: the CTI screen pop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from softswitch.events import Event, register_event


@register_event
@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenPop(Event):
    """A call is being offered to `agent`: who calls, what the dialplan learnt, and their history.

    Published when the ACD offers the call, so it reaches the agent's desktop while the phone rings.
    `history` holds the caller's previous calls, newest first: dicts with call_uuid, start, answer,
    end, disposition, queue and agent (who handled it).
    """

    kind: ClassVar[str] = "screen_pop"
    call_uuid: str
    agent: str
    queue: str
    caller: str
    customer_id: str = ""
    wait: float = 0.0
    variables: dict[str, str] = field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()
