"""Engine decisions become bus events that the store can replay."""

from __future__ import annotations

import json

from acd.engine import AcdEngine
from acd.events import to_bus_events
from acd.model import AgentConfig, OverflowTarget, QueueConfig, Strategy, TargetKind
from softswitch.events import AgentStateChanged, Event, QueueEvent


def test_decisions_map_to_queue_log_lines_and_agent_states() -> None:
    q = QueueConfig("q", strategy=Strategy.RING_ALL, announce_every=30, max_size=1,
                    overflow=OverflowTarget(TargetKind.TRUNK, "outsourcer"))
    eng = AcdEngine([q], [AgentConfig("a", queues={"q": 0}), AgentConfig("b", queues={"q": 0})])
    ds = eng.agent_logged_in("a", 0.0) + eng.agent_logged_in("b", 0.0)
    ds += eng.caller_joined("call-1", "q", 1.0)
    ds += eng.offer_accepted("call-1", "b", 2.0)
    ds += eng.caller_joined("call-2", "q", 3.0)
    ds += eng.caller_joined("call-3", "q", 4.0)  # waits (announced)
    ds += eng.caller_joined("call-4", "q", 5.0)  # beyond max_size: overflows
    events = [e for d in ds for e in to_bus_events(d, 1_700_000_000.0)]
    log = [(e.event, e.call_uuid, e.agent) for e in events if isinstance(e, QueueEvent)]
    assert ("offered", "call-1", "a") in log and ("offered", "call-1", "b") in log
    assert ("offer_cancelled", "call-1", "a") in log
    assert ("answered", "call-1", "b") in log
    assert ("offered", "call-2", "a") in log
    assert ("announced", "call-3", "") in log
    assert ("overflowed", "call-4", "") in log
    over = [e for e in events if isinstance(e, QueueEvent) and e.event == "overflowed"]
    assert [json.loads(e.data) for e in over] == [{"kind": "trunk", "target": "outsourcer"}]
    states = [(e.agent, e.previous, e.state) for e in events if isinstance(e, AgentStateChanged)]
    assert ("b", "offered", "on_call") in states
    for e in events:
        assert e.reason if isinstance(e, QueueEvent) else True
        assert Event.from_dict(e.to_dict()) == e
