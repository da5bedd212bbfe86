"""Hot reload on a running node: a changed dialplan file is picked up, a broken one is refused while
the running plan stays, and SIGHUP reloads `softswitch run`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from softswitch.config import load_config
from tests.nodes import running_node, spawn_softswitch, wait_for
from tests.peers import free_port

pytestmark = pytest.mark.integration

PLAN = """\
version: 1
contexts:
  internal:
    users: all
    routes:
{routes}
"""
ROUTE = """\
      - name: r{n}
        match: {{number: "{n}"}}
        steps:
          - hangup: busy
"""


def plan_text(*numbers: int) -> str:
    return PLAN.format(routes="".join(ROUTE.format(n=n) for n in numbers))


def write_node(tmp: Path) -> Path:
    (tmp / "plan.yaml").write_text(plan_text(700))
    path = tmp / "node.yaml"
    path.write_text(
        f"sip: {{listen: ['udp://127.0.0.1:{free_port()}'], domain: reload.test}}\n"
        f"database: 'sqlite:///{tmp / 'node.db'}'\n"
        f"api: {{listen: '127.0.0.1:{free_port(kind=socket.SOCK_STREAM)}'}}\n"
        "directory: {users: [{id: '1001', password: 'pw'}]}\n"
        "dialplan: plan.yaml\n"
    )
    return path


def route_names(node) -> list[str]:
    return [r.name for r in node.dialplan.plan.contexts["internal"].routes]


async def test_changed_dialplan_file_is_reloaded_and_a_broken_one_is_refused(tmp_path):
    config = load_config(write_node(tmp_path))
    async with running_node(config) as node:
        first = node.dialplan.plan
        assert route_names(node) == ["r700"]
        await asyncio.sleep(0.3)  # the watcher is up
        # Editors replace files: write a new file and move it over the old one.
        tmp = tmp_path / ".plan.yaml.swp"
        tmp.write_text(plan_text(700, 701))
        os.replace(tmp, tmp_path / "plan.yaml")
        assert await wait_for(lambda: node.dialplan.generation == 2), "the change was not picked up"
        assert route_names(node) == ["r700", "r701"]
        assert first.contexts["internal"].routes[0].name == "r700"  # calls started earlier keep theirs
        second = node.dialplan.plan
        (tmp_path / "plan.yaml").write_text(plan_text(700).replace("hangup: busy", "hangup_typo: busy"))
        await asyncio.sleep(1.0)
        assert node.dialplan.plan is second and route_names(node) == ["r700", "r701"]
        result = node.reload_dialplan("test")
        assert not result.ok and any("plan.yaml:" in e and "hangup_typo" in e for e in result.errors)


def test_sighup_reloads_the_dialplan_of_a_running_node(tmp_path):
    config = write_node(tmp_path)
    proc = spawn_softswitch("run", "--config", str(config), cwd=tmp_path)
    try:
        deadline = time.time() + 20
        while time.time() < deadline and not (tmp_path / "node.db").exists():
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "reloading the dialplan (SIGHUP)" in err
    assert "dialplan reloaded (generation 2)" in err
