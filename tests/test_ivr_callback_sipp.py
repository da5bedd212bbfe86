"""A caller books a callback through the IVR over real SIP: a SIPp caller keys an hour (RFC 4733)
or takes the plan's delay, the `book_callback` step books it with the node's campaigns (in memory
and in the store), the switch confirms and hangs up; when due, the callback rings the booking's
agent first and then the caller's registered phone."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from softswitch.config import load_config
from softswitch.events import CDR
from tests.nodes import DOMAIN, running_node, wait_for, wait_for_cdrs
from tests.peers import require_sipp, run_sipp, start_sipp, write_users_inf
from tests.test_queue_sipp import register_agent
from tests.test_queue_sipp import write_node as queue_node

pytestmark = pytest.mark.integration

JST = ZoneInfo("Asia/Tokyo")

DIALPLAN = """\
version: 1
contexts:
  internal:
    users: all
    routes:
      - name: callback-at-an-hour
        match: {number: "610"}
        steps:
          - answer:
          - gather:
              into: hour
              prompt: {say: "ご希望の時刻を、二桁で入力してください。"}
              max_digits: 2
              timeout: 8
          - book_callback:
              queue: support
              at: "${hour}"
              note: IVR callback
              confirm: "${callback_time}ごろにお電話いたします。"
              on_error:
                - hangup: callback_failed
          - hangup:
      - name: callback-now
        match: {number: "620"}
        steps:
          - answer:
          - book_callback:
              queue: support
              in_minutes: 0
              agent: "2001"
              customer_id: C-42
              note: すぐに折り返し
              confirm: 折り返しお電話いたします。
              on_error:
                - hangup: callback_failed
          - hangup:
      - name: callback-refused
        match: {number: "630"}
        steps:
          - answer:
          - book_callback:
              queue: support
              in_minutes: 5
              number: "x${caller}"
              on_error:
                - say: "申し訳ございません。ご予約できませんでした。"
                - hangup: callback_failed
          - hangup:
"""


def write_node(tmp: Path, agents: list[str], callers: list[str]) -> Path:
    """A node with a `support` queue, its agents, plain callers and the callback dialplan."""
    return queue_node(tmp, agents, callers, plan=DIALPLAN)


def next_jst(hour: int, after: float) -> float:
    """The first `hour`:00 in Tokyo strictly after `after` (worked out here, not by the code under test)."""
    local = dt.datetime.fromtimestamp(after, JST)
    candidate = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if candidate.timestamp() <= after:
        candidate += dt.timedelta(days=1)  # Tokyo has no daylight saving time
    return candidate.timestamp()


async def test_caller_keys_an_hour_and_the_callback_is_booked_for_it_in_memory_and_in_the_store(tmp_path):
    require_sipp()
    config = load_config(write_node(tmp_path, ["2001"], ["3001"]))
    async with running_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        inf = write_users_inf(tmp_path / "caller.csv", [("3001", "pw-3001")], DOMAIN)
        uac = await run_sipp("uac_ivr_callback.xml", node.address("udp"), inf=inf, service="610", timeout=40)
        assert uac.returncode == 0 and uac.successful == 1, uac.explain()
        (cb,) = node.campaigns.callbacks.values()
        assert (cb.number, cb.queue, cb.agent, cb.note, cb.state) == ("3001", "support", "", "IVR callback",
                                                                      "pending")
        assert cb.due == next_jst(14, cb.created)
        assert node.store is not None
        stored = await node.store.scheduled_callbacks(state=None)
        assert [(s.id, s.number, s.due, s.state) for s in stored] == [(cb.id, "3001", cb.due, "pending")]
        (cdr,) = await wait_for_cdrs(events)
        assert cdr.hangup_cause == "normal_clearing"  # the booked branch, not on_error


async def test_a_refused_booking_takes_the_error_branch_and_books_nothing(tmp_path):
    require_sipp()
    config = load_config(write_node(tmp_path, ["2001"], ["3001"]))
    async with running_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        inf = write_users_inf(tmp_path / "caller.csv", [("3001", "pw-3001")], DOMAIN)
        uac = await run_sipp("uac_feature.xml", node.address("udp"), inf=inf, service="630", timeout=40)
        assert uac.returncode == 0 and uac.successful == 1, uac.explain()
        (cdr,) = await wait_for_cdrs(events)
        assert cdr.hangup_cause == "callback_failed"
        assert node.campaigns.callbacks == {}
        assert node.store is not None and await node.store.scheduled_callbacks(state=None) == []


async def test_a_callback_booked_through_the_ivr_rings_the_booking_agent_then_the_caller(tmp_path):
    require_sipp()
    config = load_config(write_node(tmp_path, ["2001"], ["3001"]))
    async with running_node(config) as node:
        events: list = []
        node.bus.subscribe(events.append)
        agent_port = await register_agent(node, tmp_path, "2001")
        # Paused, so the callback falls due and waits for them while the caller's phone hangs up.
        assert node.centre.agent_action("2001", "pause", reason="meeting") is None
        caller_port = await register_agent(node, tmp_path, "3001")  # the caller's phone is registered
        inf = write_users_inf(tmp_path / "caller.csv", [("3001", "pw-3001")], DOMAIN)
        uac = await run_sipp("uac_feature.xml", node.address("udp"), inf=inf, service="620",
                             port=caller_port, timeout=40)
        assert uac.returncode == 0 and uac.successful == 1, uac.explain()
        (cb,) = node.campaigns.callbacks.values()
        assert (cb.number, cb.agent, cb.customer_id, cb.note) == ("3001", "2001", "C-42", "すぐに折り返し")
        assert await wait_for(lambda: node.campaigns.callbacks[cb.id].state == "offered", timeout=10)
        agent = await start_sipp("uas_answer.xml", None, port=agent_port, calls=1, timeout=40)
        customer = await start_sipp("uas_answer_then_bye.xml", None, port=caller_port, calls=1, timeout=40)
        await asyncio.sleep(0.3)
        assert node.centre.agent_action("2001", "ready") is None
        assert (await customer.wait()).successful == 1
        assert (await agent.wait()).successful == 1
        cdrs = await wait_for_cdrs(events, 2, timeout=10)
        assert await wait_for(lambda: node.campaigns.callbacks[cb.id].state == "done")
    callback = [c for c in cdrs if isinstance(c, CDR)][-1]
    assert (callback.agent, callback.queue, callback.customer_id) == ("2001", "support", "C-42")
    assert [leg[2] for leg in callback.legs] == ["2001", "3001"]
