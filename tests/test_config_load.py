"""The typed node config: parsing, defaults, path resolution, cross references, the CLI commands."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest

from softswitch.config import (
    ConfigError,
    ListenSpec,
    NodeConfig,
    PortRange,
    demo_config,
    load_config,
    schema_main,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "dialplans"


def write(tmp_path: Path, text: str, name: str = "node.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return exc.value.errors


@pytest.mark.parametrize("name", ["office.node.yaml", "mailorder-ja.node.yaml"])
def test_every_example_node_config_loads_with_its_dialplan(name: str) -> None:
    cfg = load_config(EXAMPLES / name)
    assert cfg.plan is not None and cfg.dialplan is not None and cfg.dialplan.is_absolute()
    assert cfg.media.prompts_dir == EXAMPLES / "prompts"


def test_empty_config_gets_documented_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert cfg.sip.listen == [ListenSpec(transport="udp", host="127.0.0.1", port=5060)]
    assert (cfg.sip.domain, cfg.sip.t1, cfg.sip.t2, cfg.sip.t4) == ("localhost", 0.5, 4.0, 5.0)
    assert (cfg.sip.min_expires, cfg.sip.max_expires, cfg.sip.default_expires) == (60, 7200, 3600)
    assert cfg.security.digest_algorithms == ["SHA-256", "MD5"] and cfg.security.rate_limit == 500
    assert cfg.media.rtp_ports == PortRange(20000, 20999)
    assert cfg.database == f"sqlite:///{tmp_path / 'var/softswitch.db'}"
    assert cfg.sqlite_path == tmp_path / "var/softswitch.db"
    assert cfg.media.recordings_dir == tmp_path / "recordings"
    assert (cfg.api.host, cfg.api.port) == ("127.0.0.1", 8080)
    assert cfg.plan is None


@pytest.mark.parametrize(("text", "expected"), [
    ("udp://127.0.0.1:5070", ("udp", "127.0.0.1", 5070)),
    ("tcp://0.0.0.0", ("tcp", "0.0.0.0", 5060)),
    ("ws://127.0.0.1:8088", ("ws", "127.0.0.1", 8088)),
    ("udp://[::1]:5062", ("udp", "::1", 5062)),
    ("tcp://[::1]", ("tcp", "::1", 5060)),
])
def test_listen_addresses_parse_from_urls(text: str, expected: tuple[str, str, int]) -> None:
    spec = NodeConfig.model_validate({"sip": {"listen": [text]}}).sip.listen[0]
    assert (spec.transport, spec.host, spec.port) == expected


def test_tls_listener_defaults_to_5061_and_requires_existing_cert_and_key(tmp_path: Path) -> None:
    errs = errors_of(write(tmp_path, "sip:\n  listen: ['tls://127.0.0.1']\n"))
    assert errs == ["%s:2:3: sip: a tls:// or wss:// listener needs tls_cert (hint: sip.tls_cert: path to a PEM file)"
                    % (tmp_path / "node.yaml")]
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    cfg = load_config(write(tmp_path, "sip:\n  listen: ['tls://127.0.0.1']\n  tls_cert: c.pem\n  tls_key: k.pem\n"))
    assert cfg.sip.listen[0].port == 5061 and cfg.sip.tls_cert == tmp_path / "c.pem"


def test_bad_listen_transport_suggests_a_known_one(tmp_path: Path) -> None:
    errs = errors_of(write(tmp_path, "sip:\n  listen:\n    - udp://127.0.0.1\n    - tpc://127.0.0.1:5060\n"))
    assert len(errs) == 1 and ":4:7: sip.listen[1]: unknown transport 'tpc' (hint: did you mean 'tcp'?)" in errs[0]


@pytest.mark.parametrize(("ports", "message"), [
    ("20001-20999", "must start on an even port"),
    ("30000-20000", "must have 1024 <= start < end <= 65535"),
    ("lots", "bad port range 'lots'"),
])
def test_bad_rtp_port_ranges_are_rejected(tmp_path: Path, ports: str, message: str) -> None:
    errs = errors_of(write(tmp_path, f"media:\n  rtp_ports: {ports}\n"))
    assert len(errs) == 1 and ":2:14: media.rtp_ports: " in errs[0] and message in errs[0]


def test_unknown_keys_are_errors_with_did_you_mean(tmp_path: Path) -> None:
    errs = errors_of(write(tmp_path, "sip:\n  domian: x\nqueues:\n  - name: q\n    stratgy: random\n"))
    assert [e.split(": ", 1)[1] for e in errs] == [
        "sip.domian: unknown field 'domian' (hint: did you mean 'domain'?)",
        "queues[0].stratgy: unknown field 'stratgy' (hint: did you mean 'strategy'?)"]
    assert ":2:3:" in errs[0] and ":5:5:" in errs[1]  # the unknown key itself is located


def test_literal_choices_get_a_hint(tmp_path: Path) -> None:
    errs = errors_of(write(tmp_path, "queues:\n  - name: q\n    strategy: longest-idle\n"))
    assert len(errs) == 1 and ":3:15: queues[0].strategy:" in errs[0] and "did you mean 'longest_idle'?" in errs[0]


DIRECTORY = """
directory:
  users:
    - {id: 1001, password: a}
    - id: "1002"
      ha1_md5: 0123456789abcdef0123456789abcdef
      agent:
        skills: {japanese: 5}
        queues: [sales, {queue: support, tier: 2, penalty: 1}]
queues:
  - name: sales
  - name: support
    escalation:
      - {after: 30, relax_proficiency: 2, add_queues: [sales]}
      - {after: 120, overflow: {number: '0311112222', trunk: partner}}
trunks:
  - {name: partner, host: 10.0.0.5, addresses: [10.0.0.0/24, 10.1.1.1], prefixes: ['0']}
"""


def test_directory_agents_queues_and_trunks_parse_with_plain_string_memberships(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, DIRECTORY))
    u = cfg.users_by_id["1002"]
    assert cfg.users_by_id["1001"].password is not None
    assert cfg.users_by_id["1001"].password.get_secret_value() == "a"
    assert u.agent is not None and [(m.queue, m.tier, m.penalty) for m in u.agent.queues] == [
        ("sales", 1, 0), ("support", 2, 1)]
    assert cfg.trunks[0].addresses == [ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("10.1.1.1/32")]
    assert cfg.queues_by_name["support"].escalation[1].overflow is not None


def test_cross_references_in_the_config_are_checked_with_lines(tmp_path: Path) -> None:
    text = (DIRECTORY.replace("[sales, {queue: support", "[sale, {queue: support")
            .replace("add_queues: [sales]", "add_queues: [nope]").replace("trunk: partner}", "trunk: partnr}")
            + "  - {name: partner, host: 10.0.0.6}\n")
    errs = errors_of(write(tmp_path, text))
    tail = [e.split(": ", 1)[1] for e in errs]
    assert tail == [
        "trunks[1].name: duplicate trunk name 'partner'",
        "directory.users[1].agent.queues[0].queue: unknown queue 'sale' (hint: did you mean 'sales'?)",
        "queues[1].escalation[0].add_queues[0]: unknown queue 'nope' (hint: known queues: sales, support)",
        "queues[1].escalation[1].overflow.trunk: unknown trunk 'partnr' (hint: did you mean 'partner'?)",
    ]
    assert errs[1].split(": ")[0].endswith(":9:18")


def test_user_without_credential_and_duplicate_ids_are_errors(tmp_path: Path) -> None:
    errs = errors_of(write(tmp_path, "directory:\n  users:\n    - {id: '1'}\n"))
    assert errs == [f"{tmp_path / 'node.yaml'}:3:7: directory.users[0]: user 1 has no credential "
                    "(hint: give password, ha1_md5 or ha1_sha256)"]
    errs = errors_of(write(tmp_path, "directory:\n  users:\n    - {id: '1', password: a}\n    - {id: '1', password: b}\n"))
    assert len(errs) == 1 and ":4:12: directory.users[1].id: duplicate user id '1'" in errs[0]


def test_dialplan_path_resolves_against_the_config_folder_and_must_exist(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    errs = errors_of(write(sub, "dialplan: plans/main.yaml\n"))
    assert len(errs) == 1 and f"dialplan file {sub / 'plans/main.yaml'} not found" in errs[0]


def test_postgres_urls_are_kept_and_other_schemes_refused(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "database: postgresql://postgres@127.0.0.1/test\n"))
    assert cfg.database == "postgresql://postgres@127.0.0.1/test" and cfg.sqlite_path is None
    errs = errors_of(write(tmp_path, "database: mysql://x\n"))
    assert "unsupported database URL 'mysql://x'" in errs[0]


def test_demo_config_matches_the_documented_demo_node(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    assert [str(x) for x in cfg.sip.listen] == ["udp://127.0.0.1:5060", "tcp://127.0.0.1:5060"]
    assert cfg.sip.domain == "demo.local" and cfg.api.listen == "127.0.0.1:8080"
    assert cfg.sqlite_path == tmp_path / "softswitch.db"
    assert sorted(cfg.users_by_id) == ["1001", "1002", "1003", "1004"]
    for uid, user in cfg.users_by_id.items():
        assert user.password is not None and user.password.get_secret_value() == "secret" + uid
    assert [u for u, x in cfg.users_by_id.items() if x.agent] == ["1003", "1004"]
    assert cfg.plan is not None and cfg.dialplan == EXAMPLES / "office.yaml"


def test_office_example_node_config_defines_the_same_users_as_the_demo(tmp_path: Path) -> None:
    demo, office = demo_config(tmp_path), load_config(EXAMPLES / "office.node.yaml")
    assert {u: x.model_dump(exclude={"password"}) for u, x in demo.users_by_id.items()} == {
        u: x.model_dump(exclude={"password"}) for u, x in office.users_by_id.items()}


def test_schema_main_writes_json_schemas_editors_can_use(tmp_path: Path) -> None:
    assert schema_main("dialplan", str(tmp_path / "d.json")) == 0
    assert schema_main("config", str(tmp_path / "c.json")) == 0
    assert schema_main("nonsense", None) == 2
    d = json.loads((tmp_path / "d.json").read_text())
    c = json.loads((tmp_path / "c.json").read_text())
    assert d["required"] == ["contexts"] and {"MenuStep", "QueueSpec", "Calendar"} <= set(d["$defs"])
    assert d["$defs"]["QueueStep"]["properties"]["queue"]["anyOf"][0] == {"type": "string"}  # `- queue: orders`
    assert c["properties"]["sip"]["$ref"] == "#/$defs/SipSettings"
    assert c["$defs"]["SipSettings"]["additionalProperties"] is False


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "softswitch.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_check_command_accepts_every_example_with_exit_code_0() -> None:
    for name in ("office.node.yaml", "mailorder-ja.node.yaml", "office.yaml", "mailorder-ja.yaml"):
        res = cli("check", f"dialplans/{name}")
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith(f"OK dialplans/{name}") and res.stderr == ""


def test_check_command_reports_errors_on_stderr_with_exit_code_1(tmp_path: Path) -> None:
    bad = write(tmp_path, "sip:\n  listen: [udp://127.0.0.1:99999]\nqueues: [{name: q, max_wait: -1}]\n")
    res = cli("check", str(bad))
    assert res.returncode == 1 and res.stdout == ""
    lines = res.stderr.splitlines()
    assert lines[0] == f"{bad}:2:12: sip.listen[0]: port 99999 out of range (hint: 1-65535)"
    assert lines[1].startswith(f"{bad}:3:30: queues[0].max_wait: Input should be greater than 0")
    assert lines[-1] == f"2 error(s) in {bad}"
    res = cli("check", str(tmp_path / "missing.yaml"))
    assert res.returncode == 1 and "file not found" in res.stderr


def test_schema_command_prints_the_dialplan_schema() -> None:
    res = cli("schema", "--kind", "dialplan")
    assert res.returncode == 0 and json.loads(res.stdout)["title"] == "Dialplan"


def test_examples_validate_against_the_generated_json_schemas() -> None:
    jsonschema = pytest.importorskip("jsonschema")  # not a project dependency: skipped where absent
    import yaml

    from softswitch.dialplan.model import Dialplan

    for model, names in ((Dialplan, ["office.yaml", "mailorder-ja.yaml"]),
                         (NodeConfig, ["office.node.yaml", "mailorder-ja.node.yaml"])):
        validator = jsonschema.Draft202012Validator(model.model_json_schema())
        for name in names:
            data = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
            assert [e.message for e in validator.iter_errors(data)] == [], name


def test_trunk_registration_needs_credentials_and_api_tokens_name_known_agents(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "trunks:\n  - {name: t, host: h, register: true, username: u, password: p}\n"))
    assert cfg.trunks[0].register is True and cfg.trunks_by_name["t"].register_expires == 600
    errs = errors_of(write(tmp_path, "trunks:\n  - {name: t, host: h, register: true}\n"))
    assert errs == [f"{tmp_path / 'node.yaml'}:2:5: trunks[0]: register: true needs username and password"]
    errs = errors_of(write(tmp_path, "api:\n  tokens:\n    - {token: abc, role: agent, agent: '1001'}\n"
                                     "    - {token: def, role: root}\n"))
    assert [e.split(": ", 1)[1] for e in errs] == [
        "api.tokens[1].role: Input should be 'agent', 'supervisor' or 'admin'"]
    errs = errors_of(write(tmp_path, "api:\n  tokens:\n    - {token: abc, role: agent, agent: '1001'}\n"))
    assert [e.split(": ", 1)[1] for e in errs] == ["api.tokens[0].agent: unknown user '1001'"]
