"""Store pieces that need no database server: URLs, rows, the spool, the `softswitch db` command."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.events import CDR, Event, QueueEvent, RegistrationChanged
from softswitch.store import StoreError, parse_url
from softswitch.store.base import event_json
from softswitch.store.cli import db_main
from softswitch.store.rows import split
from softswitch.store.schema import LATEST
from softswitch.store.spool import Spool
from softswitch.store.testing import sample_attempt, sample_call, sample_misc

T0 = 1_790_000_000.0


def test_sqlite_urls_resolve_relative_paths_against_the_base_dir(tmp_path: Path) -> None:
    assert parse_url("sqlite:///data/x.db", base_dir=tmp_path) == ("sqlite", str(tmp_path / "data" / "x.db"))
    assert parse_url("sqlite:////var/lib/x.db", base_dir=tmp_path) == ("sqlite", "/var/lib/x.db")
    assert parse_url("sqlite:///:memory:", base_dir=tmp_path) == ("sqlite", ":memory:")
    pg = "postgresql://app@db.example:5432/softswitch"
    assert parse_url(pg, base_dir=tmp_path) == ("postgresql", pg)
    assert parse_url("postgres://app@db/ss", base_dir=tmp_path)[0] == "postgresql"


@pytest.mark.parametrize(
    "url", ["", "   ", "mysql://x/y", "sqlite://relative.db", "sqlite:///", "postgresql://", "db.sqlite"]
)
def test_a_bad_database_url_is_a_store_error(url: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        parse_url(url, base_dir=tmp_path)


def test_event_json_is_the_json_of_to_dict_and_round_trips() -> None:
    for ev in sample_call(7, ts=T0) + sample_misc(7, ts=T0) + [sample_attempt(6, ts=T0)]:
        text = event_json(ev)
        assert json.loads(text) == json.loads(json.dumps(ev.to_dict()))
        assert Event.from_dict(json.loads(text)) == ev


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.floats(0, 100), st.integers(0, 120)), max_size=30
    )
)
def test_one_batch_keeps_the_newest_update_of_each_binding(
    updates: list[tuple[int, int, float, int]],
) -> None:
    evs = [
        RegistrationChanged(ts=T0 + t, aor=f"sip:{a}@x", contact=f"sip:{c}@h", expires=e, source="udp:h:5060")
        for a, c, t, e in updates
    ]
    rows = split(evs)
    newest: dict[tuple[str, str], float] = {}
    for ev in evs:
        key = (ev.aor, ev.contact)
        newest[key] = max(newest.get(key, ev.ts), ev.ts)
    assert {(r[0], r[1]): r[5] for r in rows.registrations} == newest
    assert len(rows.registrations) == len(newest)


def test_split_maps_a_cdr_to_one_row_and_one_row_per_leg() -> None:
    evs = sample_call(1, ts=T0)
    rows = split(evs + evs)  # the same events twice in one batch
    cdr = next(e for e in evs if isinstance(e, CDR))
    assert [r[0] for r in rows.cdrs] == [cdr.id]
    assert [(r[1], r[3]) for r in rows.legs] == [(0, cdr.legs[0][0]), (1, cdr.legs[1][0])]
    assert len(rows.queue) == sum(isinstance(e, QueueEvent) for e in evs)
    assert [r[2] for r in rows.log] == ["call_started"]


def test_spool_keeps_batches_in_order_across_segments_and_restarts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=2000)
    batches = [sample_call(i, ts=T0 + i) for i in range(6)]
    for b in batches[:3]:
        spool.append(b)
    spool.close()
    again = Spool(tmp_path, segment_bytes=2000)  # a restart continues the numbering
    for b in batches[3:]:
        again.append(b)
    segments = again.roll()
    assert len(segments) > 2
    replayed = [e for seg in segments for chunk in again.read(seg, 4) for e in chunk]
    assert replayed == [e for b in batches for e in b]
    for seg in segments:
        again.remove(seg)
    assert not again.pending() and again.roll() == []


def test_db_command_upgrades_the_database_named_in_a_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text("database: sqlite:///state/node.db\n", encoding="utf-8")
    assert db_main("status", config=str(cfg), database=None) == 1  # pending migrations
    assert db_main("upgrade", config=str(cfg), database=None) == 0
    assert db_main("status", config=str(cfg), database=None) == 0
    out = capsys.readouterr().out
    assert f"schema version: {LATEST} (latest {LATEST})" in out
    with sqlite3.connect(tmp_path / "state" / "node.db") as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (LATEST,)


def test_db_command_reports_a_bad_url_and_an_unreachable_database(capsys: pytest.CaptureFixture[str]) -> None:
    assert db_main("status", config=None, database="mysql://nope/db") == 2
    assert db_main("upgrade", config=None, database="postgresql://nobody@127.0.0.1:9/none") == 2
    err = capsys.readouterr().err
    assert "unsupported database URL" in err and "unavailable" in err


REPO = Path(__file__).resolve().parents[1]


def test_the_docker_node_config_validates_where_compose_mounts_it(tmp_path: Path) -> None:
    from softswitch.config import load_config

    # compose.yaml mounts docker/node.yaml and ../dialplans side by side in /var/lib/softswitch.
    (tmp_path / "node.yaml").write_text((REPO / "docker" / "node.yaml").read_text(encoding="utf-8"))
    (tmp_path / "dialplans").symlink_to(REPO / "dialplans")
    cfg = load_config(tmp_path / "node.yaml")
    assert parse_url(cfg.database, base_dir=tmp_path)[0] == "postgresql"
    assert cfg.plan is not None


def test_the_compose_stack_mounts_existing_files_and_builds_from_the_dockerfile() -> None:
    import yaml

    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text(encoding="utf-8"))
    node, migrate = compose["services"]["node"], compose["services"]["migrate"]
    context = (REPO / "docker" / migrate["build"]["context"]).resolve()
    assert context == REPO and (context / migrate["build"]["dockerfile"]).is_file()
    for mount in node["volumes"]:
        source = mount.split(":", 1)[0]
        if source.startswith("."):
            assert (REPO / "docker" / source).resolve().exists(), mount
    assert node["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
