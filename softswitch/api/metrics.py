"""Prometheus metrics of one node, in a registry of its own (never the global default one).

Figures that are state (active calls, registrations, queues, agents) are read when scraped; counts
come from the event bus. RTP gauges are exposed for the media layer to set.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from softswitch.events import CallStarted, Event, EventBus

RATE_WINDOW = 60.0  # seconds over which `softswitch_call_rate` averages new calls
LAG_INTERVAL = 0.25  # how often the event-loop lag probe wakes


class _Live(Collector):
    """State read at scrape time from the node and the last contact-centre snapshot."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        now = time.time()
        yield _gauge("softswitch_active_calls", "Calls in progress.", m.active_calls())
        yield _gauge("softswitch_registrations", "Live SIP registrations (bindings).", m.registrations(now))
        starts = m.call_starts
        while starts and starts[0] < now - RATE_WINDOW:
            starts.popleft()
        yield _gauge("softswitch_call_rate", f"New calls per second over the last {RATE_WINDOW:g} s.",
                     len(starts) / RATE_WINDOW)
        waiting = GaugeMetricFamily("softswitch_queue_waiting", "Callers waiting in the queue.", labels=["queue"])
        longest = GaugeMetricFamily("softswitch_queue_longest_wait_seconds", "Longest current wait.",
                                    labels=["queue"])
        sl = GaugeMetricFamily("softswitch_queue_service_level",
                               "Today's service level (answered within threshold / answered + abandoned).",
                               labels=["queue"])
        abandoned = GaugeMetricFamily("softswitch_queue_abandoned_today", "Calls abandoned today.",
                                      labels=["queue"])
        agents = GaugeMetricFamily("softswitch_queue_agents", "Member agents of the queue by state.",
                                   labels=["queue", "state"])
        for q in m.queues:
            name = str(q.get("queue", ""))
            waiting.add_metric([name], float(q.get("waiting", 0)))
            longest.add_metric([name], float(q.get("longest_wait", 0.0)))
            if q.get("service_level") is not None:
                sl.add_metric([name], float(q["service_level"]))
            abandoned.add_metric([name], float(q.get("abandoned", 0)))
            for state, n in dict(q.get("agents", {})).items():
                agents.add_metric([name, str(state)], float(n))
        yield from (waiting, longest, sl, abandoned, agents)
        by_state = GaugeMetricFamily("softswitch_agents", "Agents by state.", labels=["state"])
        counts: dict[str, int] = {}
        for a in m.agents:
            counts[str(a.get("state", ""))] = counts.get(str(a.get("state", "")), 0) + 1
        for state, n in sorted(counts.items()):
            by_state.add_metric([state], float(n))
        yield by_state
        yield _gauge("softswitch_bus_events_dropped", "Events dropped for slow bus consumers.", m.bus.dropped)
        if m.campaigns is not None:
            yield from _campaign_metrics(m.campaigns())


def _campaign_metrics(campaigns: list[dict[str, Any]]) -> Iterator[Metric]:
    records = GaugeMetricFamily("softswitch_campaign_records", "Call-list records by state.",
                                labels=["campaign", "state"])
    running = GaugeMetricFamily("softswitch_campaign_running", "1 while the campaign dials.", labels=["campaign"])
    calls = GaugeMetricFamily("softswitch_campaign_calls", "Campaign calls in progress.", labels=["campaign"])
    abandon = GaugeMetricFamily("softswitch_campaign_abandon_rate",
                                "Answered calls that found no agent in time / answered calls.", labels=["campaign"])
    answered = GaugeMetricFamily("softswitch_campaign_answered", "Calls answered by customers.", labels=["campaign"])
    lines = GaugeMetricFamily("softswitch_campaign_lines_per_agent", "Lines dialled per free agent (last decision).",
                              labels=["campaign"])
    for c in campaigns:
        cid = str(c["id"])
        stats = dict(c.get("stats") or {})
        for state, n in dict(stats.get("states") or {}).items():
            records.add_metric([cid, str(state)], float(n))
        running.add_metric([cid], 1.0 if c.get("state") == "running" else 0.0)
        calls.add_metric([cid], float(c.get("calls_in_progress", 0)))
        abandon.add_metric([cid], float(stats.get("abandon_rate") or 0.0))
        answered.add_metric([cid], float(stats.get("answered") or 0))
        lines.add_metric([cid], float(stats.get("lines_per_agent") or 0.0))
    yield from (records, running, calls, abandon, answered, lines)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


class NodeMetrics:
    """The metrics of one node. `render()` gives the Prometheus text exposition."""

    def __init__(
        self,
        bus: EventBus,
        *,
        active_calls: Callable[[], int],
        registrations: Callable[[float], int],
        media_legs: Callable[[], list[dict[str, Any]]] | None = None,
        campaigns: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.bus = bus
        self.campaigns = campaigns  # described campaigns, read at scrape time
        self.active_calls = active_calls
        self.registrations = registrations
        self.media_legs = media_legs  # per-leg stats of the media backend, read at scrape time
        self._rtp_seen: dict[str, tuple[int, int]] = {}
        self._by_kind: dict[str, Any] = {}  # label children, looked up once per kind
        self.registry = CollectorRegistry(auto_describe=False)
        self.queues: list[dict[str, Any]] = []
        self.agents: list[dict[str, Any]] = []
        self.call_starts: deque[float] = deque()
        r = self.registry
        self.calls_total = Counter("softswitch_calls", "Calls started.", registry=r)
        self.events_total = Counter("softswitch_events", "Events published on the bus, by kind.", ["kind"],
                                    registry=r)
        self.rtp_streams = Gauge("softswitch_rtp_streams", "RTP streams being relayed or terminated.", registry=r)
        self.rtp_packets = Counter("softswitch_rtp_packets", "RTP packets received.", registry=r)
        self.rtp_packets_lost = Counter("softswitch_rtp_packets_lost", "RTP packets lost (from sequence gaps).",
                                        registry=r)
        self.rtp_loss_ratio = Gauge("softswitch_rtp_packet_loss_ratio",
                                    "Packet loss over the last reporting interval (0..1).", registry=r)
        self.loop_lag = Gauge("softswitch_event_loop_lag_seconds", "Latest event-loop lag (late wake-up).",
                              registry=r)
        self.loop_lag_hist = Histogram(
            "softswitch_event_loop_lag", "Event-loop lag (late wake-ups) in seconds.", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        r.register(_Live(self))
        self._unsubscribe: Callable[[], None] | None = None
        self._lag_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Count events from the bus and start the event-loop lag probe."""
        self._unsubscribe = self.bus.subscribe(self._on_event)
        self._lag_task = asyncio.get_running_loop().create_task(self._probe_lag())

    async def stop(self) -> None:
        """Stop counting and probing."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
            self._lag_task = None

    def _on_event(self, event: Event) -> None:
        counter = self._by_kind.get(event.kind)
        if counter is None:
            counter = self._by_kind[event.kind] = self.events_total.labels(event.kind)
        counter.inc()
        if isinstance(event, CallStarted):
            self.calls_total.inc()
            self.call_starts.append(event.ts)

    async def _probe_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_INTERVAL)
            lag = max(0.0, loop.time() - before - LAG_INTERVAL)
            self.loop_lag.set(lag)
            self.loop_lag_hist.observe(lag)

    def render(self, queues: Iterable[dict[str, Any]], agents: Iterable[dict[str, Any]]) -> bytes:
        """The exposition text, with the contact centre's current queues and agents."""
        self.queues = list(queues)
        self.agents = list(agents)
        if self.media_legs is not None:
            self._sample_rtp(self.media_legs())
        return generate_latest(self.registry)

    def _sample_rtp(self, legs: list[dict[str, Any]]) -> None:
        """Streams now; packets and losses counted as they grew since the last scrape."""
        self.rtp_streams.set(len(legs))
        seen: dict[str, tuple[int, int]] = {}
        received = lost = 0
        for leg in legs:
            key = str(leg.get("leg", ""))
            rx, ls = int(leg.get("packets_received", 0)), int(leg.get("packets_lost", 0))
            before = self._rtp_seen.get(key, (0, 0))
            received += max(0, rx - before[0])
            lost += max(0, ls - before[1])
            seen[key] = (rx, ls)
        self._rtp_seen = seen
        if received:
            self.rtp_packets.inc(received)
        if lost:
            self.rtp_packets_lost.inc(lost)
        self.rtp_loss_ratio.set(lost / (received + lost) if received + lost else 0.0)
