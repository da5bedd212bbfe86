"""The mail-order example operators copy, end to end: SIPp as the carrier calls the 0120 DID,
the caller hears the Japanese IVR, presses 1 for orders and is placed in the orders queue, where a
registered SIPp agent answers. Outside business hours the caller hears the closed message and can
leave a voicemail instead. The CRM lookup goes to a real HTTP server."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
import yaml

from softswitch.config import load_config
from softswitch.events import CDR, QueueEvent
from tests.nodes import running_node, wait_for_cdrs
from tests.peers import free_port, require_sipp, run_sipp, start_sipp, write_users_inf

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[1] / "dialplans"
CARRIER_IP = "127.0.0.5"


async def crm_server() -> tuple[asyncio.AbstractServer, int, list[str]]:
    """A tiny real CRM: knows nobody (404), records what was asked."""
    asked: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readuntil(b"\r\n\r\n")).decode()
        asked.append(request.split(" ", 2)[1])
        body = json.dumps({"error": "not found"}).encode()
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], asked


def copy_example(tmp: Path, *, open_now: bool, crm_port: int, tts_cache: Path) -> Path:
    """The mail-order example with test ports, a calendar that is open (or closed) right now, and
    the carrier on 127.0.0.5."""
    shutil.copytree(EXAMPLES / "prompts", tmp / "prompts")
    plan = yaml.safe_load((EXAMPLES / "mailorder-ja.yaml").read_text())
    # Today may be a public holiday (the suite runs any day): the open calendar ignores them.
    plan["calendars"]["center"] = {"timezone": "Asia/Tokyo", "public_holidays": "none",
                                   "weekly": {"mon-sun": "00:00-24:00"} if open_now else {}}
    route = plan["contexts"]["inbound"]["routes"][0]
    route["steps"][1]["http"]["url"] = f"http://127.0.0.1:{crm_port}/crm/customers?tel=${{caller}}"
    (tmp / "mailorder-ja.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False))
    node = yaml.safe_load((EXAMPLES / "mailorder-ja.node.yaml").read_text())
    port = free_port()
    rtp = 10000 + (free_port() % 20000) // 2 * 2
    node["sip"]["listen"] = [f"udp://127.0.0.1:{port}"]
    node["security"] = {"digest_algorithms": ["MD5"]}
    node["media"].update({"rtp_ports": f"{rtp}-{rtp + 199}", "recordings_dir": str(tmp / "rec"),
                          "tts_cache_dir": str(tts_cache)})
    node["database"] = f"sqlite:///{tmp / 'node.db'}"
    node["api"] = {"listen": f"127.0.0.1:{free_port()}"}
    for trunk in node["trunks"]:
        trunk["addresses"] = [f"{CARRIER_IP}/32"] if trunk["name"] == "ntt" else ["127.0.0.6/32"]
        trunk["host"] = CARRIER_IP if trunk["name"] == "ntt" else "127.0.0.6"
    path = tmp / "mailorder-ja.node.yaml"
    path.write_text(yaml.safe_dump(node, allow_unicode=True, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def tts_cache(tmp_path_factory) -> Path:
    """Shared between the two tests: each prompt is rendered once."""
    return tmp_path_factory.mktemp("tts")


async def test_carrier_call_to_0120_presses_1_and_waits_in_the_orders_queue(tmp_path, tts_cache):
    require_sipp()
    crm, crm_port, asked = await crm_server()
    config = load_config(copy_example(tmp_path, open_now=True, crm_port=crm_port, tts_cache=tts_cache))
    try:
        async with running_node(config) as node:
            events: list = []
            node.bus.subscribe(events.append)
            agent_port = free_port()
            reg = await run_sipp("register_only.xml", node.address("udp"), port=agent_port,
                                 inf=write_users_inf(tmp_path / "agent.csv", [("2002", "agent-2002-pw")],
                                                     "sakura-tsuhan.example"))
            assert reg.returncode == 0 and reg.successful == 1, reg.explain()
            agent = await start_sipp("uas_answer.xml", None, port=agent_port, calls=1, timeout=40)
            carrier = await run_sipp("carrier_ivr.xml", node.address("udp"), local_ip=CARRIER_IP,
                                     service="0120123456", timeout=90, extra=["-d", "16000"])
            assert carrier.returncode == 0 and carrier.successful == 1, carrier.explain()
            assert (await agent.wait()).successful == 1
            await wait_for_cdrs(events)
            (cdr,) = [e for e in events if isinstance(e, CDR)]
            assert (cdr.trunk, cdr.did, cdr.caller) == ("ntt", "0120123456", "09012345678")
            assert cdr.queue == "orders" and cdr.agent == "2002"
            joined = [e for e in events if isinstance(e, QueueEvent) and e.event == "joined"]
            assert [e.queue for e in joined] == ["orders"]
            assert asked and asked[0].endswith("tel=09012345678")
    finally:
        crm.close()


async def test_outside_business_hours_the_caller_hears_the_closed_message_and_voicemail(tmp_path, tts_cache):
    require_sipp()
    crm, crm_port, _ = await crm_server()
    config = load_config(copy_example(tmp_path, open_now=False, crm_port=crm_port, tts_cache=tts_cache))
    try:
        async with running_node(config) as node:
            events: list = []
            node.bus.subscribe(events.append)
            carrier = await run_sipp("carrier_ivr.xml", node.address("udp"), local_ip=CARRIER_IP,
                                     service="0120123456", timeout=90, extra=["-d", "12000"])
            assert carrier.returncode == 0 and carrier.successful == 1, carrier.explain()
            await wait_for_cdrs(events)
            (cdr,) = [e for e in events if isinstance(e, CDR)]
            assert cdr.queue == "" and cdr.agent == ""
            assert not [e for e in events if isinstance(e, QueueEvent)]
            closed = ("お電話ありがとうございます。さくら通販です。本日の受付は終了しました。受付時間は、"
                      "平日午前9時から午後8時、土日は午前10時から午後6時までです。")
            assert node.tts.cached_path(closed, lang="ja").exists(), "the closed message was not spoken"
            messages = list((tmp_path / "rec" / "voicemail").glob("9000-*.wav"))
            assert messages, "no voicemail recording was started"
    finally:
        crm.close()
