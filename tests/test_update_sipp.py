"""UPDATE (RFC 3311) inside a relayed call with real SIPp phones: hold by UPDATE with SDP reaches the
other phone, and its answer comes back in the 200."""

from __future__ import annotations

import pytest

from tests.nodes import make_users, node_config, running_node
from tests.peers import require_sipp
from tests.test_calls_sipp import call_through, the_cdr

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _sipp_present() -> None:
    require_sipp()


async def test_hold_by_update_is_relayed_and_answered_through_the_switch(tmp_path):
    users = make_users(2)
    async with running_node(node_config(tmp_path, users=users)) as node:
        # The callee checks the UPDATE carries a=sendonly; the caller checks the 200 carries a=recvonly.
        events = await call_through(node, tmp_path, caller_scenario="uac_update_hold.xml",
                                    callee_scenarios=["uas_answer_update.xml"], users=users)
        assert the_cdr(events).disposition == "answered"
        assert len(node.b2bua) == 0
