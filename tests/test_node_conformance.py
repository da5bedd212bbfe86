"""The RFC 4475 and RFC 5118 torture messages sent to a running node over real UDP.

Each message gets what /work/shared/conformance/verdicts.json says, and after each one the node
still answers an OPTIONS probe: bad input never stops it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.nodes import UdpClient, node_config, options_request, running_node, status_of
from tests.test_sip_conformance_parser import _load

CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance"
VERDICTS = CONFORMANCE / "verdicts.json"

pytestmark = pytest.mark.integration


def _cases() -> list[tuple[str, str, dict]]:
    if not VERDICTS.exists():
        return []
    verdicts = json.loads(VERDICTS.read_text())
    cases = []
    for suite in ("rfc4475", "rfc5118"):
        for name, verdict in verdicts[suite].items():
            if verdict.get("expect") != "ignore":
                cases.append((suite, name, verdict))
    return cases


_BRANCH = re.compile(rb"(branch=z9hG4bK[^;\s,]+)")


def load_message(suite: str, name: str, serial: int = 0) -> bytes:
    """The message as sent on the wire (RFC 5118's LF files fixed up as verdicts.json says).

    Most torture messages share a few Via branches, and a running node rightly takes a repeated
    branch for a retransmission of the same transaction; a suffix keeps them apart. A bare-cookie
    branch (RFC 2543 matching, badbranch.dat) is left as it is.
    """
    return _BRANCH.sub(lambda m: m.group(1) + b"-%d" % serial, _load(suite, name), count=1)


def _is_response(data: bytes) -> bool:
    return data.startswith(b"SIP/")


_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(.*?)[ \t\r]*$", re.I | re.M)


def call_id_of(data: bytes) -> bytes | None:
    m = _CALL_ID.search(data.split(b"\r\n\r\n", 1)[0])
    return m.group(1) if m else None


async def next_reply(client: UdpClient, timeout: float, call_id: bytes | None = None) -> bytes | None:
    """The next final response (for `call_id` only, when given)."""
    while True:
        reply = await client.recv(timeout=timeout)
        if reply is None:
            return None
        if 100 <= status_of(reply) < 200 or (call_id is not None and call_id_of(reply) != call_id):
            continue
        return reply


@pytest.fixture(scope="module")
def cases() -> list[tuple[str, str, dict]]:
    found = _cases()
    if not found:
        pytest.skip(f"conformance messages not found at {CONFORMANCE} (shared/ must sit beside the repo)")
    return found


async def test_torture_messages_get_their_verdicts_and_the_node_keeps_serving(tmp_path, cases):
    async with running_node(node_config(tmp_path, transports=("udp",))) as node:
        host, port = node.address("udp")
        failures: list[str] = []
        for i, (suite, name, verdict) in enumerate(cases):
            # A socket per message, so retransmitted answers to earlier ones never get mixed in.
            client = await UdpClient.open()
            try:
                data = load_message(suite, name, i)
                client.send(data, (host, port))
                expect = verdict["expect"]
                reply = await next_reply(client, 0.5 if _is_response(data) else 2.0)
                got = status_of(reply) if reply is not None else None
                if _is_response(data):
                    if got is not None:
                        failures.append(f"{suite}/{name}: a response was answered with {got}")
                elif expect == "reject-400" and got != 400:
                    failures.append(f"{suite}/{name}: expected 400, got {got}")
                elif expect == "reject" and got != verdict["status"]:
                    failures.append(f"{suite}/{name}: expected {verdict['status']}, got {got}")
                elif expect == "semantic":
                    allowed = {verdict["status"]}
                    if name == "zeromf.dat":
                        allowed.add(200)
                    if got not in allowed:
                        failures.append(f"{suite}/{name}: expected {sorted(allowed)}, got {got}")
                elif expect in ("parse", "tolerate") and (got is None or got in (400, 505)):
                    failures.append(f"{suite}/{name}: expected it processed, got {got}")
                # The node must still answer after every message.
                client.send(options_request(client.port, branch=f"z9hG4bKprobe{i}", call_id=f"p{i}"), (host, port))
                probe = await next_reply(client, 2.0, call_id=f"p{i}".encode())
                if probe is None or status_of(probe) != 200:
                    failures.append(f"{suite}/{name}: node stopped answering OPTIONS afterwards")
                    break
            finally:
                client.close()
        assert not failures, "\n".join(failures)
