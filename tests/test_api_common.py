"""Shared pieces of the API tests: a ContactCentre over a REAL AcdEngine and a real Node.

`EngineCentre` is what the node's ACD shell does, cut down for tests: it feeds the engine real
events with wall-clock time, publishes every decision on the node's bus with `to_bus_events`, runs
the engine's deadlines on the loop, and hangs calls up through the node's B2BUA.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from acd.engine import AcdEngine
from acd.events import to_bus_events
from acd.model import AgentConfig, AgentState, Decision, QueueConfig
from softswitch.api import ApiServer, Conflict, NotFound
from softswitch.api.acdview import agent_rows, queue_rows
from softswitch.app import Node
from softswitch.config import ConfigError
from softswitch.dialplan.loader import load_dialplan
from softswitch.events import QueueEvent
from tests.nodes import make_users, node_config, running_node

TOKENS = {
    "agent": "tok-agent-0001",
    "agent2": "tok-agent-0002",
    "supervisor": "tok-supervisor",
    "admin": "tok-admin",
}


class EngineCentre:
    """ContactCentre over a real AcdEngine and a real Node (see the module docstring)."""

    def __init__(self, node: Node, engine: AcdEngine, dialplan: Path | None = None) -> None:
        self.node = node
        self.engine = engine
        self.dialplan = dialplan
        self.contexts: dict[str, dict[str, Any]] = {}
        self.supervisions: list[tuple[str, str, str]] = []
        self._timer: asyncio.TimerHandle | None = None

    def now(self) -> float:
        return time.time()

    def apply(self, decisions: list[Decision]) -> None:
        """Publish the engine's decisions as bus events and re-arm its deadline."""
        ts = self.now()
        for d in decisions:
            for ev in to_bus_events(d, ts):
                self.node.bus.publish(ev)
        if self._timer is not None:
            self._timer.cancel()
        deadline = self.engine.next_deadline()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, deadline - self.now()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.apply(self.engine.tick(self.now()))

    def _agent(self, agent: str) -> None:
        if agent not in {a["agent"] for a in self.engine.snapshot(self.now())["agents"]}:
            raise NotFound(f"no agent {agent}")

    # -- callers (what the dialplan's queue step does in the node) ---------------------------

    def enqueue(self, call_uuid: str, queue: str, number: str, *, customer_id: str = "",
                variables: dict[str, str] | None = None) -> None:
        now = self.now()
        self.contexts[call_uuid] = {"number": number, "customer_id": customer_id, "queue": queue,
                                    "variables": dict(variables or {}), "joined_at": now}
        self.node.bus.publish(QueueEvent(ts=now, queue=queue, call_uuid=call_uuid, event="joined", caller=number))
        self.apply(self.engine.caller_joined(call_uuid, queue, now, number=number, customer_id=customer_id))

    def answered(self, call_uuid: str, agent: str) -> None:
        self.apply(self.engine.offer_accepted(call_uuid, agent, self.now()))

    def left(self, call_uuid: str) -> None:
        """The caller hung up while waiting (an abandon), logged like the node's centre does."""
        ctx = self.contexts[call_uuid]
        now = self.now()
        self.node.bus.publish(QueueEvent(ts=now, queue=ctx["queue"], call_uuid=call_uuid, event="abandoned",
                                         caller=ctx["number"], wait=now - ctx["joined_at"]))
        self.apply(self.engine.caller_left(call_uuid, now))

    def ended(self, call_uuid: str) -> None:
        self.apply(self.engine.call_ended(call_uuid, self.now()))

    # -- the ContactCentre protocol ----------------------------------------------------------

    def agent_login(self, agent: str) -> None:
        self._agent(agent)
        if self.engine.agent_state(agent) is not AgentState.OFFLINE:
            raise Conflict(f"agent {agent} is already logged in")
        self.apply(self.engine.agent_logged_in(agent, self.now()))

    def agent_logout(self, agent: str) -> None:
        self._agent(agent)
        if self.engine.agent_state(agent) is AgentState.OFFLINE:
            raise Conflict(f"agent {agent} is not logged in")
        self.apply(self.engine.agent_logged_out(agent, self.now()))

    def agent_pause(self, agent: str, reason: str) -> None:
        self._agent(agent)
        if self.engine.agent_state(agent) is AgentState.OFFLINE:
            raise Conflict(f"agent {agent} must log in before pausing")
        self.apply(self.engine.agent_paused(agent, reason, self.now()))

    def agent_ready(self, agent: str) -> None:
        self._agent(agent)
        self.apply(self.engine.agent_ready(agent, self.now()))

    def agent_state(self, agent: str) -> dict[str, Any]:
        for row in agent_rows(self.engine, self.now()):
            if row["agent"] == agent:
                return row
        raise NotFound(f"no agent {agent}")

    def agents(self) -> list[dict[str, Any]]:
        return agent_rows(self.engine, self.now())

    def force_agent_state(self, agent: str, state: str, reason: str) -> None:
        self._agent(agent)
        now = self.now()
        if state == "offline":
            self.apply(self.engine.agent_logged_out(agent, now))
        elif state == "available":
            self.apply(self.engine.agent_ready(agent, now))
        else:
            if self.engine.agent_state(agent) is AgentState.OFFLINE:
                self.apply(self.engine.agent_logged_in(agent, now))
            self.apply(self.engine.agent_paused(agent, reason, now))

    def queues(self) -> list[dict[str, Any]]:
        return queue_rows(self.engine, self.now())

    def move_caller(self, call_uuid: str, queue: str) -> dict[str, Any]:
        if queue not in {q["queue"] for q in self.queues()}:
            raise NotFound(f"no queue {queue}")
        if self.engine.caller_state(call_uuid) != "waiting":
            raise Conflict(f"call {call_uuid} is not waiting in a queue")
        self.contexts[call_uuid]["queue"] = queue
        self.apply(self.engine.caller_moved(call_uuid, queue, self.now()))
        return {"position": self.engine.position(call_uuid)}

    def supervise(self, mode: str, supervisor: str, call_uuid: str) -> dict[str, Any]:
        if call_uuid not in self.node.b2bua.calls:
            raise NotFound(f"no call {call_uuid}")
        self.supervisions.append((mode, supervisor, call_uuid))
        return {"supervisor": supervisor}

    def hangup(self, call_uuid: str) -> bool:
        return self.node.b2bua.hangup(call_uuid, "admin")

    def list_calls(self) -> list[dict[str, Any]]:
        return [
            {"call_uuid": c.uuid, "caller": c.caller, "callee": c.callee, "state": c.state,
             "start": c.start, "answer": c.answer}
            for c in self.node.b2bua.calls.values()
        ]

    async def reload_dialplan(self) -> tuple[bool, list[str]]:
        if self.dialplan is None:
            return False, ["no dialplan configured"]
        try:
            await asyncio.to_thread(load_dialplan, self.dialplan)
        except ConfigError as exc:
            return False, list(exc.errors)
        return True, []

    def call_context(self, call_uuid: str) -> dict[str, Any] | None:
        return self.contexts.get(call_uuid)


def support_engine(agents: list[str]) -> AcdEngine:
    """One 'support' queue and a 'sales' queue; every agent is in support."""
    return AcdEngine(
        [QueueConfig("support", ring_timeout=30.0, service_level=20.0), QueueConfig("sales")],
        [AgentConfig(a, skills={"support": 5}, queues={"support": 1}) for a in agents],
    )


def api_tokens(agents: list[str]) -> list[dict[str, Any]]:
    return [
        {"token": TOKENS["agent"], "role": "agent", "agent": agents[0]},
        {"token": TOKENS["agent2"], "role": "agent", "agent": agents[1]},
        {"token": TOKENS["supervisor"], "role": "supervisor", "agent": agents[2]},
        {"token": TOKENS["admin"], "role": "admin"},
    ]


@contextlib.asynccontextmanager
async def api_node(tmp_path: Path, *, users: list[tuple[str, str]] | None = None,
                   dialplan: Path | None = None) -> AsyncIterator[tuple[Node, EngineCentre, ApiServer]]:
    """A running node with users u0000.. (u0000 and u0001 are agents), an EngineCentre and the API."""
    users = users or make_users(4)
    ids = [u for u, _ in users]
    config = node_config(tmp_path, users=users, api={"tokens": api_tokens(ids)})
    async with running_node(config) as node:
        centre = EngineCentre(node, support_engine(ids[:2]), dialplan)
        # The node's own API (over its own centre) makes way for one over the test centre, so that
        # screen pops are made once.
        if node.api is not None:
            await node.api.stop()
            node.api = None
        api = ApiServer(node, centre, config.api)
        await api.start()
        try:
            yield node, centre, api
        finally:
            await api.stop()


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}
