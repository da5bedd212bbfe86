"""Bad input never crashes the loaders: any YAML gives a plan or a ConfigError, never another exception."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softswitch.config import ConfigError, load_config
from softswitch.dialplan.loader import load_dialplan_text
from softswitch.dialplan.model import STEP_TYPES

EXAMPLE = (Path(__file__).resolve().parent.parent / "dialplans" / "mailorder-ja.yaml").read_text(encoding="utf-8")

keys = st.sampled_from([*STEP_TYPES, "contexts", "routes", "steps", "name", "match", "when", "then", "else",
                        "options", "prompt", "calendar", "weekly", "label", "var", "eq", "x"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.text(max_size=12),
                    st.sampled_from(["09:00-18:00", "_0120XXXXXX", "re:(", "${caller}", "mon-fri"]))
data = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(keys, inner, max_size=4)), max_leaves=25)


@settings(max_examples=150, deadline=None)
@given(data)
def test_random_structures_are_accepted_or_refused_with_config_errors(value: object) -> None:
    text = yaml.safe_dump({"contexts": {"c": {"routes": [{"name": "r", "steps": [value]}]}}}, allow_unicode=True)
    try:
        load_dialplan_text(text, "f.yaml")
    except ConfigError as exc:
        assert exc.errors and all(e.startswith("f.yaml:") for e in exc.errors)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(EXAMPLE) - 1), st.integers(1, 40), st.text(max_size=6))
def test_mangled_example_text_is_accepted_or_refused_with_config_errors(start: int, length: int, junk: str) -> None:
    text = EXAMPLE[:start] + junk + EXAMPLE[start + length:]
    try:
        load_dialplan_text(text, "m.yaml")
    except ConfigError as exc:
        assert exc.errors and all(e.startswith("m.yaml:") for e in exc.errors)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data)
def test_random_node_configs_never_crash(tmp_path: Path, value: object) -> None:
    for top in ("sip", "media", "directory", "queues", "trunks", "api", "security"):
        p = tmp_path / "n.yaml"
        p.write_text(yaml.safe_dump({top: value}), encoding="utf-8")
        try:
            load_config(p)
        except ConfigError as exc:
            assert exc.errors
