"""`NodeCentre`: the `ContactCentre` protocol over a running `Node` (its ACD centre, B2BUA and
dialplan holder), so that `ApiServer(node, NodeCentre(node), config.api)` is all the node needs.

Agent actions go through the centre's `agent_action` (the same path as the phones' feature codes;
decisions are published on the bus and executed: offers ring phones). Supervision from the API
needs the centre to ring the supervisor's phone (`centre.supervise(mode, supervisor, call_uuid)`);
until it has one the API answers 501 and phones use the feature codes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from softswitch.api.acdview import agent_rows, queue_rows
from softswitch.api.centre import Conflict, NotFound

if TYPE_CHECKING:
    from softswitch.app import Node


class NodeCentre:
    """The API's view of a node's contact centre."""

    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def _engine(self) -> Any:
        return self.node.centre.engine

    def _known(self, agent: str) -> None:
        if agent not in self.node.centre.agents:
            raise NotFound(f"no agent {agent}")

    def _state(self, agent: str) -> str:
        self._known(agent)
        return str(self._engine.agent_state(agent).value)

    # -- agents ----------------------------------------------------------------------------

    def _act(self, agent: str, action: str, reason: str = "") -> None:
        """An agent action through the node centre (which also keeps reachability and deliberate
        logouts right, exactly as the phones' feature codes do)."""
        problem = self.node.centre.agent_action(agent, action, reason=reason)
        if problem == "not-an-agent":
            raise NotFound(f"no agent {agent}")
        if problem:
            raise Conflict(f"agent {agent}: {problem}")

    def agent_login(self, agent: str) -> None:
        if self._state(agent) != "offline":
            raise Conflict(f"agent {agent} is already logged in")
        self._act(agent, "login")

    def agent_logout(self, agent: str) -> None:
        if self._state(agent) == "offline":
            raise Conflict(f"agent {agent} is not logged in")
        self._act(agent, "logout")

    def agent_pause(self, agent: str, reason: str) -> None:
        if self._state(agent) == "offline":
            raise Conflict(f"agent {agent} must log in before pausing")
        self._act(agent, "pause", reason)

    def agent_ready(self, agent: str) -> None:
        if self._state(agent) == "offline":
            raise Conflict(f"agent {agent} must log in first")
        self._act(agent, "ready")

    def agent_state(self, agent: str) -> dict[str, Any]:
        self._known(agent)
        for row in agent_rows(self._engine, time.time()):
            if row["agent"] == agent:
                return row
        raise NotFound(f"no agent {agent}")

    def agents(self) -> list[dict[str, Any]]:
        return agent_rows(self._engine, time.time())

    def force_agent_state(self, agent: str, state: str, reason: str) -> None:
        current = self._state(agent)
        if state == "offline":
            if current != "offline":
                self._act(agent, "logout")
            return
        if current == "offline":
            self._act(agent, "login")
        self._act(agent, "ready" if state == "available" else "pause", reason)

    # -- queues and calls -------------------------------------------------------------------

    def queues(self) -> list[dict[str, Any]]:
        return queue_rows(self._engine, time.time())

    def move_caller(self, call_uuid: str, queue: str) -> dict[str, Any]:
        centre = self.node.centre
        if queue not in {q.name for q in self.node.config.queues}:
            raise NotFound(f"no queue {queue}")
        w = centre.waiting.get(call_uuid)
        if w is None or self._engine.caller_state(call_uuid) != "waiting":
            raise Conflict(f"call {call_uuid} is not waiting in a queue")
        call = w.session.call
        w.queue = queue
        call.queue = queue
        centre.apply(self._engine.caller_moved(call_uuid, queue, time.time()))
        return {"position": self._engine.position(call_uuid)}

    def supervise(self, mode: str, supervisor: str, call_uuid: str) -> Any:
        if call_uuid not in self.node.b2bua.calls:
            raise NotFound(f"no call {call_uuid}")
        # The node rings the supervisor's phone and mixes it in once answered (phones can also
        # dial the feature codes *31-*33 + the agent's extension).
        problem = self.node.centre.supervise(mode, supervisor, call_uuid)
        if problem is not None:
            raise Conflict(f"cannot {mode}: {problem}")
        return {"ringing": supervisor}

    def click_to_call(self, agent: str, number: str, customer_id: str, record: bool) -> Any:
        problem = self.node.centre.click_to_call(agent, number, customer_id=customer_id, record=record)
        if problem is not None:
            raise Conflict(f"cannot call {number} for {agent}: {problem}")
        return {"ringing": agent}

    def hangup(self, call_uuid: str) -> bool:
        return bool(self.node.b2bua.hangup(call_uuid, "admin"))

    def list_calls(self) -> list[dict[str, Any]]:
        return [
            {"call_uuid": c.uuid, "caller": c.caller, "callee": c.callee, "state": c.state, "start": c.start,
             "answer": c.answer, "queue": getattr(c, "queue", ""), "agent": getattr(c, "agent", ""),
             "trunk": c.trunk, "did": c.did}
            for c in self.node.b2bua.calls.values()
        ]

    def reload_dialplan(self) -> tuple[bool, list[str]]:
        result = self.node.reload_dialplan("API")
        return result.ok, list(result.errors)

    def call_context(self, call_uuid: str) -> dict[str, Any] | None:
        centre = self.node.centre
        w = centre.waiting.get(call_uuid)
        if w is None:
            cb = centre.callbacks.get(call_uuid)
            if cb is None:
                return None
            # Nobody is on the line yet: the screen pop says why the agent is being called.
            return {"number": cb.number, "customer_id": cb.customer_id, "queue": cb.queue,
                    "variables": {"reason": cb.reason or "callback"}}
        call = w.session.call
        interp = getattr(w.session, "interp", None)
        variables = {**w.variables, **dict(getattr(interp, "variables", {}) or {})}
        return {"number": w.number or call.caller, "customer_id": call.customer_id, "queue": w.queue,
                "variables": variables, "joined_at": w.joined}
