"""API benchmark: CTI fan-out latency, screen-pop latency and REST throughput on one node.

    .venv/bin/python bench/api.py                      # 50 WebSocket listeners, 2000 events
    .venv/bin/python bench/api.py --clients 200 --events 5000 --requests 5000

Figures:
1. CTI fan-out: agent-state events published on the bus at a steady rate reach every supervisor
   WebSocket client (separate connections over 127.0.0.1); latency publish -> receipt (p50/p99/max)
   and messages delivered per second;
2. screen pop: an ACD offer (QueueEvent 'offered') -> the agent's WebSocket receiving the screen
   pop, with the caller's history read from the node's SQLite store (500 earlier CDRs in it);
3. REST: GET /api/queues and POST pause/ready pairs, requests per second at a given concurrency.
The node, the API server and the clients share one event loop (as in the tests); the clients'
own work is part of the cost, so the figures are a lower bound of what the server alone does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from websockets.asyncio.client import connect

from acd.engine import AcdEngine
from acd.events import to_bus_events
from acd.model import AgentConfig, QueueConfig
from softswitch.api import ApiServer
from softswitch.api.acdview import agent_rows, queue_rows
from softswitch.app import Node
from softswitch.config import NodeConfig
from softswitch.events import CDR, AgentStateChanged, QueueEvent


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchCentre:
    """Just enough of a ContactCentre: a real AcdEngine for the views, agent pause/ready."""

    def __init__(self, node: Node, engine: AcdEngine) -> None:
        self.node, self.engine = node, engine
        self.contexts: dict[str, dict[str, Any]] = {}

    def _apply(self, decisions: list[Any]) -> None:
        for d in decisions:
            for ev in to_bus_events(d, time.time()):
                self.node.bus.publish(ev)

    def agent_pause(self, agent: str, reason: str) -> None:
        self._apply(self.engine.agent_paused(agent, reason, time.time()))

    def agent_ready(self, agent: str) -> None:
        self._apply(self.engine.agent_ready(agent, time.time()))

    def agent_state(self, agent: str) -> dict[str, Any]:
        return next(a for a in agent_rows(self.engine, time.time()) if a["agent"] == agent)

    def agents(self) -> list[dict[str, Any]]:
        return agent_rows(self.engine, time.time())

    def queues(self) -> list[dict[str, Any]]:
        return queue_rows(self.engine, time.time())

    def call_context(self, call_uuid: str) -> dict[str, Any] | None:
        return self.contexts.get(call_uuid)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def ms(values: list[float]) -> str:
    return (f"p50 {statistics.median(values) * 1e3:.2f} ms, p99 {pct(values, 99) * 1e3:.2f} ms, "
            f"max {max(values) * 1e3:.2f} ms")


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    agents = [f"a{i:03d}" for i in range(20)]
    config = NodeConfig.model_validate({
        "sip": {"listen": [f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}"], "domain": "bench.local"},
        "database": f"sqlite:///{tmp / 'node.db'}",
        "api": {"listen": f"127.0.0.1:{free_port(socket.SOCK_STREAM)}",
                "tokens": [{"token": "sup", "role": "supervisor"},
                           {"token": "a000", "role": "agent", "agent": "a000"}]},
        "directory": {"users": [{"id": a, "password": "pw"} for a in agents]},
    })
    node = Node(config)
    await node.start()
    engine = AcdEngine([QueueConfig("support"), QueueConfig("sales")],
                       [AgentConfig(a, queues={"support": 1}) for a in agents])
    now = time.time()
    for a in agents:
        engine.agent_logged_in(a, now)
    centre = BenchCentre(node, engine)
    api = ApiServer(node, centre, config.api)  # type: ignore[arg-type]
    await api.start()
    try:
        await fanout(api, node, args.clients, args.events, args.rate)
        await screen_pop(api, node, centre, args.pops)
        await rest(api, args.requests, args.concurrency)
    finally:
        await api.stop()
        await node.stop()


async def listen(url: str, clients: int, expected: int, timeout: float) -> dict[str, Any]:
    """Run `clients` WebSocket listeners (in the client process) until each got `expected` messages."""
    conns = [await connect(url, max_queue=None) for _ in range(clients)]
    latencies: list[float] = []
    counts = [0] * clients
    first: list[float] = []

    async def reader(i: int, ws: Any) -> None:
        while counts[i] < expected:
            msg = json.loads(await ws.recv())
            if msg.get("kind") != "agent_state":
                continue
            now = time.time()
            if not first:
                first.append(now)
            latencies.append(now - msg["ts"])
            counts[i] += 1

    print("ready", flush=True)
    try:
        await asyncio.wait_for(asyncio.gather(*(reader(i, ws) for i, ws in enumerate(conns))), timeout)
    except TimeoutError:
        pass
    last = time.time()
    for ws in conns:
        await ws.close()
    return {"latencies": latencies, "span": last - (first[0] if first else last)}


async def fanout(api: ApiServer, node: Node, clients: int, events: int, rate: float) -> None:
    """Clients in a separate process (its own core): the figures are the server's."""
    url = f"ws://127.0.0.1:{api.port}/ws/events?token=sup&kinds=agent_state"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--listen", url, "--clients", str(clients), "--events", str(events),
        stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"ready"
    await asyncio.sleep(0.5)
    t0 = time.perf_counter()
    for i in range(events):
        node.bus.publish(AgentStateChanged(ts=time.time(), agent=f"x{i}", state="available"))
        await asyncio.sleep(1.0 / rate)
    publish = time.perf_counter() - t0
    result = json.loads(await proc.stdout.read())
    await proc.wait()
    latencies = result["latencies"]
    expected = clients * events
    dropped = sum(c.dropped for c in api.hub.clients)
    print(f"CTI fan-out: {events} events published at {events / publish:,.0f}/s to {clients} WebSocket clients "
          f"(another process): {len(latencies)}/{expected} delivered ({dropped} dropped), "
          f"{len(latencies) / max(result['span'], 1e-9):,.0f} messages/s; latency {ms(latencies)}")


async def screen_pop(api: ApiServer, node: Node, centre: BenchCentre, pops: int) -> None:
    now = time.time()
    for i in range(500):
        node.bus.publish(CDR(ts=now - 86400 + i, call_uuid=f"old-{i}", caller=f"03{i % 50:08d}", callee="support",
                             start=now - 86400 + i, answer=now - 86390 + i, end=now - 86300 + i,
                             disposition="answered", hangup_cause="normal", hangup_side="caller",
                             queue="support", agent="a001", customer_id=""))
    assert node.writer is not None
    await node.writer.drain()
    latencies: list[float] = []
    async with connect(f"ws://127.0.0.1:{api.port}/ws/events?token=a000&kinds=screen_pop") as ws:
        for i in range(pops):
            call = f"c{i}"
            centre.contexts[call] = {"number": f"03{i % 50:08d}", "customer_id": "", "queue": "support",
                                     "variables": {"crm_name": "山田"}, "joined_at": time.time() - 5}
            t = time.time()
            node.bus.publish(QueueEvent(ts=t, queue="support", call_uuid=call, event="offered", agent="a000"))
            msg = json.loads(await ws.recv())
            latencies.append(time.time() - t)
            assert msg["call_uuid"] == call and len(msg["history"]) == 5
    print(f"screen pop: offer -> agent's WebSocket with 5 history rows from SQLite (500 CDRs): "
          f"{pops} pops, {ms(latencies)}")


async def rest(api: ApiServer, requests: int, concurrency: int) -> None:
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": "Bearer sup"},
                                 limits=httpx.Limits(max_connections=concurrency)) as http:
        for label, call in (
            ("GET /api/queues", lambda i: http.get("/api/queues")),
            ("POST pause/ready", lambda i: http.post(f"/api/agents/a{i % 20:03d}/pause", json={"reason": "b"})
             if i % 2 == 0 else http.post(f"/api/agents/a{i % 20:03d}/ready")),
        ):
            sem = asyncio.Semaphore(concurrency)
            statuses: list[int] = []

            async def one(i: int, call: Any = call, sem: asyncio.Semaphore = sem,
                          statuses: list[int] = statuses) -> None:
                async with sem:
                    statuses.append((await call(i)).status_code)

            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(requests)))
            took = time.perf_counter() - t0
            ok = sum(1 for s in statuses if s == 200)
            print(f"REST {label}: {requests} requests, concurrency {concurrency}: {requests / took:,.0f} req/s "
                  f"({ok} x 200)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second published")
    parser.add_argument("--pops", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--listen", help=argparse.SUPPRESS)  # internal: run the WebSocket clients only
    args = parser.parse_args()
    if args.listen:
        out = asyncio.run(listen(args.listen, args.clients, args.events, 60.0))
        sys.stdout.write(json.dumps(out))
    else:
        asyncio.run(main(args))
