"""Hot reload: a valid plan replaces the running one, an invalid one is refused, calls keep their plan."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from softswitch.config import load_config
from softswitch.dialplan import commands as c
from softswitch.dialplan.holder import DialplanHolder
from softswitch.dialplan.interpreter import Interpreter

EXAMPLES = Path(__file__).resolve().parent.parent / "dialplans"


@pytest.fixture
def node(tmp_path: Path) -> Path:
    dest = tmp_path / "dialplans"
    shutil.copytree(EXAMPLES, dest)
    return dest / "office.node.yaml"


def test_reload_swaps_in_a_valid_plan_while_a_running_call_keeps_its_own(node: Path) -> None:
    holder = DialplanHolder.from_config(load_config(node))
    assert holder.watch_paths() == [node.parent / "office.yaml"] and holder.generation == 1
    old = holder.plan
    assert old is not None
    m = old.route("internal", "600", caller="1001", now=0)
    assert m is not None
    call = Interpreter(old, m)
    assert call.start(0)[0] == c.Dial((c.DialTarget("user", "1001"), c.DialTarget("user", "1002")),
                                      "ring_all", 20.0, None)

    path = node.parent / "office.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("- hangup: busy", "- voicemail: \"1002\""),
                    encoding="utf-8")
    result = holder.reload()
    assert result.ok and result.errors == [] and holder.plan is result.plan and holder.plan is not old
    assert holder.generation == 2
    # the call in progress still runs the plan it started with
    assert call.feed(c.DialResult("no_answer"), 25) == [c.Hangup("busy")]
    # a new call gets the new plan
    new = holder.plan
    assert new is not None
    m2 = new.route("internal", "600", caller="1001", now=0)
    assert m2 is not None
    call2 = Interpreter(new, m2)
    call2.start(0)
    assert call2.feed(c.DialResult("no_answer"), 25) == [c.RecordVoicemail("1002", 120.0, True)]


def test_reload_refuses_a_broken_plan_logs_it_and_keeps_the_running_one(
        node: Path, caplog: pytest.LogCaptureFixture) -> None:
    holder = DialplanHolder.from_config(load_config(node))
    running = holder.plan
    text = (node.parent / "office.yaml").read_text(encoding="utf-8").replace("- queue: support", "- queue: sales")
    with caplog.at_level(logging.ERROR, logger="softswitch.dialplan.holder"):
        result = holder.reload(text)
    assert not result.ok and holder.plan is running and result.plan is running and holder.generation == 1
    assert len(result.errors) == 2 and all("unknown queue 'sales'" in e for e in result.errors)
    assert "dialplan reload refused" in caplog.text and "unknown queue 'sales'" in caplog.text


def test_reload_of_a_missing_file_or_syntax_error_is_refused(node: Path) -> None:
    holder = DialplanHolder.from_config(load_config(node))
    assert not holder.reload(node.parent / "nope.yaml").ok
    assert not holder.reload("contexts:\n  a: [\n").ok
    assert not DialplanHolder().reload().ok
    assert DialplanHolder().watch_paths() == []
