"""Reliable provisionals towards callers (RFC 3262 UAS side) with real SIPp phones: a caller that
requires 100rel gets its 183 reliably, PRACKs it, and only then gets the 200; one that never PRACKs
has its call failed with a 5xx after 64*T1."""

from __future__ import annotations

import pytest

from tests.nodes import make_users, node_config, running_node, wait_for
from tests.peers import require_sipp
from tests.test_calls_sipp import call_through, the_cdr

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _sipp_present() -> None:
    require_sipp()


async def test_caller_requiring_100rel_gets_a_reliable_183_and_the_200_waits_for_its_prack(tmp_path):
    users = make_users(2)
    async with running_node(node_config(tmp_path, users=users)) as node:
        # The callee answers 0.2 s after its early media; the caller lets the 183 be resent and
        # PRACKs it late, and fails if the 200 reaches it before the PRACK's answer.
        events = await call_through(node, tmp_path, caller_scenario="uac_100rel_prack.xml",
                                    callee_scenarios=["uas_early_media.xml"], users=users)
        cdr = the_cdr(events)
        assert cdr.disposition == "answered" and cdr.hangup_side == "caller"
        assert await wait_for(lambda: len(node.b2bua) == 0)


async def test_caller_that_never_pracks_gets_a_5xx_and_the_callee_is_cancelled(tmp_path):
    users = make_users(2)
    async with running_node(node_config(tmp_path, users=users, sip={"t1": 0.1})) as node:
        events = await call_through(node, tmp_path, caller_scenario="uac_100rel_no_prack.xml",
                                    callee_scenarios=["uas_ring_until_cancel.xml"], users=users)
        cdr = the_cdr(events)
        assert cdr.disposition == "failed" and cdr.hangup_cause == "no-prack"
        assert await wait_for(lambda: len(node.b2bua) == 0)
