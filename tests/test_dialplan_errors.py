"""Broken copies of the example dialplans: every error names the right file, line, field and hint."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from softswitch.config import ConfigError, load_config
from softswitch.dialplan.loader import load_dialplan_text

EXAMPLES = Path(__file__).resolve().parent.parent / "dialplans"


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A private copy of dialplans/ that a test may break."""
    dest = tmp_path / "dialplans"
    shutil.copytree(EXAMPLES, dest)
    return dest


def break_line(path: Path, old: str, new: str) -> int:
    """Replace the first line containing `old` (substring) and return its 1-based number."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for i, line in enumerate(lines):
        if old in line:
            lines[i] = line.replace(old, new)
            path.write_text("".join(lines), encoding="utf-8")
            return i + 1
    raise AssertionError(f"{old!r} not in {path}")


def errors_of(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(config)
    return exc.value.errors


def test_wrong_step_name_points_at_the_step_with_did_you_mean(examples: Path) -> None:
    line = break_line(examples / "mailorder-ja.yaml", "- record: start", "- recrod: start")
    errors = errors_of(examples / "mailorder-ja.node.yaml")
    assert len(errors) == 1
    assert re.match(rf".*mailorder-ja\.yaml:{line}:13: contexts\.inbound\.routes\[0\]\.steps\[3\]: "
                    r"unknown step 'recrod' \(hint: did you mean 'record'\?\)$", errors[0]), errors


def test_unknown_queue_names_the_line_and_suggests_the_closest_queue(examples: Path) -> None:
    path = examples / "mailorder-ja.yaml"
    line = break_line(path, "name: enquiries", "name: enquires")
    errors = errors_of(examples / "mailorder-ja.node.yaml")
    assert len(errors) == 1
    assert f"mailorder-ja.yaml:{line}:" in errors[0]
    assert "blocks.enquiries[1].queue.name: unknown queue 'enquires'" in errors[0]
    assert "did you mean 'enquiries'?" in errors[0]


def test_bad_indentation_is_a_yaml_error_at_the_offending_line(examples: Path) -> None:
    path = examples / "office.yaml"
    line = break_line(path, "    timezone: Asia/Tokyo", "      timezone: Asia/Tokyo")
    errors = errors_of(examples / "office.node.yaml")
    assert len(errors) == 1
    m = re.match(r"(.*office\.yaml):(\d+):(\d+): \(YAML\): (.*)$", errors[0])
    assert m, errors
    assert int(m.group(2)) in (line, line + 1)  # PyYAML reports where the mapping becomes impossible
    assert "indentation" in m.group(4)


def test_bad_time_range_names_the_calendar_line_with_a_hint(examples: Path) -> None:
    line = break_line(examples / "mailorder-ja.yaml", '"09:00-20:00"', '"20:00-09:00"')
    errors = errors_of(examples / "mailorder-ja.node.yaml")
    assert len(errors) == 1
    assert f"mailorder-ja.yaml:{line}:" in errors[0]
    assert "calendars.center.weekly.mon-fri" in errors[0]
    assert "the end is not after the start" in errors[0] and "hint: to span midnight" in errors[0]


def test_missing_prompt_file_is_reported_where_it_is_used(examples: Path) -> None:
    (examples / "prompts" / "office-invalid.wav").unlink()
    lines = (examples / "office.yaml").read_text(encoding="utf-8").splitlines()
    line = next(i + 1 for i, text in enumerate(lines) if "invalid: office-invalid.wav" in text)
    errors = errors_of(examples / "office.node.yaml")
    assert len(errors) == 1
    assert f"office.yaml:{line}:24: contexts.from-carrier.routes[0].steps[2].menu.invalid" in errors[0]
    assert "prompt file 'office-invalid.wav' not found" in errors[0]


def test_unknown_user_trunk_calendar_and_goto_target_are_all_reported(examples: Path) -> None:
    path = examples / "office.yaml"
    l_user = break_line(path, '- voicemail: "1002"', '- voicemail: "1020"')
    l_trunk = break_line(path, "trunk: carrier", "trunk: carier")
    l_cal = break_line(path, "calendar: office", "calendar: ofice")
    l_goto = break_line(path, "- goto: menu", "- goto: mneu")
    errors = errors_of(examples / "office.node.yaml")
    text = "\n".join(errors)
    assert len(errors) == 4, text
    assert f"office.yaml:{l_user}:" in text and "unknown user '1020'" in text
    assert f"office.yaml:{l_trunk}:" in text and "unknown trunk 'carier' (hint: did you mean 'carrier'?)" in text
    assert f"office.yaml:{l_cal}:" in text and "unknown calendar 'ofice'" in text
    assert f"office.yaml:{l_goto}:" in text and "unknown goto target 'mneu' (hint: did you mean 'menu'?)" in text


def test_unknown_field_in_a_step_suggests_the_right_name() -> None:
    text = "contexts:\n  c:\n    routes:\n      - name: r\n        steps:\n          - queue: {name: q, skils: {a: 1}}\n"
    with pytest.raises(ConfigError) as exc:
        load_dialplan_text(text, "x.yaml")
    assert exc.value.errors == [
        "x.yaml:6:30: contexts.c.routes[0].steps[0].queue.skils: unknown field 'skils' "
        "(hint: did you mean 'skills'?)"]


def test_duplicate_keys_and_missing_fields_are_located() -> None:
    text = "contexts:\n  c:\n    routes:\n      - name: r\n        name: s\n        steps: []\n      - steps: []\n"
    with pytest.raises(ConfigError) as exc:
        load_dialplan_text(text, "x.yaml")
    assert exc.value.errors[0].startswith("x.yaml:5:9: contexts.c.routes[0].name: duplicate key 'name'")
    text = "contexts:\n  c:\n    routes:\n      - steps: []\n"
    with pytest.raises(ConfigError) as exc:
        load_dialplan_text(text, "x.yaml")
    assert exc.value.errors == ["x.yaml:4:9: contexts.c.routes[0].name: missing required field 'name'"]


@pytest.mark.parametrize(("snippet", "message"), [
    ("match: {number: '_01[20'}", "bad pattern '_01[20': unclosed '['"),
    ("match: {number: 're:(('}", "bad pattern 're:((': bad regular expression"),
    ("steps: [{menu: {prompt: a.wav, options: {'x': []}}}]", "menu option 'x' is not digits"),
    ("steps: [{play: a.wav, say: b}]", "one step per list item, found play, say"),
    ("steps: [{dial: {timeout: 3}}]", "dial needs 'users', 'group' or 'number'"),
    ("steps: [{set: {'1x': a}}]", "bad variable name '1x'"),
    ("steps: [{if: {when: {var: a}, then: []}}]", "a condition on 'var' needs exactly one test"),
    ("steps: [{say: {text: hi, lang: yes}}]", "hint: YAML reads yes/no/on/off/true/false as booleans"),
])
def test_invalid_dialplan_snippets_are_rejected_with_a_clear_message(snippet: str, message: str) -> None:
    parts = snippet.split(": ", 1)
    route = {"match": f"{snippet}\n        steps: []", "steps": snippet}[parts[0]]
    text = f"contexts:\n  c:\n    routes:\n      - name: r\n        {route}\n"
    with pytest.raises(ConfigError) as exc:
        load_dialplan_text(text, "x.yaml")
    assert any(message in e and e.startswith("x.yaml:5:") for e in exc.value.errors), exc.value.errors
