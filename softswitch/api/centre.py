"""What the API needs from the contact centre: the `ContactCentre` protocol and its error types.

The node's ACD shell implements the protocol; the API only calls it and never reaches into the ACD.
Methods may be plain or `async` (the API awaits any awaitable result). Raise `NotFound` for an
unknown agent, call or queue, and `Conflict` for a request the current state does not allow; the API
turns them into 404 and 409 answers (and `NotSupported` into 501) (a `LookupError` or `ValueError` is treated the same way).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, runtime_checkable


class NotFound(LookupError):
    """An agent, call or queue the request names does not exist."""


class Conflict(ValueError):
    """The request is valid but the current state does not allow it (e.g. logging out twice)."""


class NotSupported(Exception):
    """This node cannot do that (yet): the API answers 501."""


SUPERVISE_MODES = ("listen", "whisper", "barge")
FORCE_STATES = ("offline", "available", "paused")


@runtime_checkable
class ContactCentre(Protocol):
    """Operations of agents, supervisors and operators, and the views the API and wallboard read.

    Shapes of the views (plain JSON-ready data):

    - `agent_state(agent)`: {"agent", "state", "reason", "since", "queues": [...], ...}
    - `queues()`: one dict per queue with at least {"queue", "waiting", "longest_wait",
      "service_level" (0..1 or None, today), "answered", "abandoned" (today), "offered",
      "agents": {state: count}, "callers": [{"caller", "wait", ...}]}; see
      `softswitch.api.acdview.queue_rows`, which builds it from an `AcdEngine`.
    - `list_calls()`: one dict per call with at least {"call_uuid", "caller", "callee", "state"}.
    - `call_context(call_uuid)`: what the screen pop shows for a queued call: {"number",
      "customer_id", "variables": {name: value} (from the dialplan, e.g. a CRM lookup),
      "queue", "joined_at" (wall-clock seconds)}, or None when the call is unknown.
    """

    def agent_login(self, agent: str) -> Any | Awaitable[Any]:
        """Log the agent in (they become available)."""
        ...

    def agent_logout(self, agent: str) -> Any | Awaitable[Any]:
        """Log the agent out (after the current call, if any)."""
        ...

    def agent_pause(self, agent: str, reason: str) -> Any | Awaitable[Any]:
        """Pause the agent with a reason (break, lunch, training...)."""
        ...

    def agent_ready(self, agent: str) -> Any | Awaitable[Any]:
        """Make the agent available again (from pause or wrap-up)."""
        ...

    def agent_state(self, agent: str) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        """The agent's current state and reason."""
        ...

    def agents(self) -> list[dict[str, Any]] | Awaitable[list[dict[str, Any]]]:
        """Every agent's state (same shape as `agent_state`)."""
        ...

    def force_agent_state(self, agent: str, state: str, reason: str) -> Any | Awaitable[Any]:
        """A supervisor sets an agent's state: one of `FORCE_STATES`."""
        ...

    def queues(self) -> list[dict[str, Any]] | Awaitable[list[dict[str, Any]]]:
        """Live figures of every queue (see the class docstring)."""
        ...

    def move_caller(self, call_uuid: str, queue: str) -> Any | Awaitable[Any]:
        """Move a waiting caller to another queue; they keep their wait."""
        ...

    def click_to_call(self, agent: str, number: str, customer_id: str, record: bool) -> Any | Awaitable[Any]:
        """Ring the agent's phone, then dial the number and connect them (raises on refusal)."""
        ...

    def supervise(self, mode: str, supervisor: str, call_uuid: str) -> Any | Awaitable[Any]:
        """Connect `supervisor` (a user id) to a call: one of `SUPERVISE_MODES`."""
        ...

    def hangup(self, call_uuid: str) -> bool | Awaitable[bool]:
        """Hang up a call; False when there is no such call."""
        ...

    def list_calls(self) -> list[dict[str, Any]] | Awaitable[list[dict[str, Any]]]:
        """Calls in progress."""
        ...

    def reload_dialplan(self) -> tuple[bool, list[str]] | Awaitable[tuple[bool, list[str]]]:
        """Reload the dialplan: (True, []) or (False, errors naming file and line); the old plan stays."""
        ...

    def call_context(self, call_uuid: str) -> dict[str, Any] | None | Awaitable[dict[str, Any] | None]:
        """What the screen pop shows about a queued call (see the class docstring)."""
        ...
