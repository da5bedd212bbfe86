"""`softswitch run` as an operator starts it: JSON logs, refusal of an invalid config with
file:line, a clean exit on SIGTERM, and the demo node without a config."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.nodes import spawn_softswitch
from tests.peers import free_port

pytestmark = pytest.mark.integration


def answers_options(port: int, deadline: float) -> bool:
    probe = (
        b"OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKcli;rport\r\n"
        b"From: <sip:t@x>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\nCall-ID: cli\r\nCSeq: 1 OPTIONS\r\n"
        b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.3)
        while time.time() < deadline:
            s.sendto(probe, ("127.0.0.1", port))
            try:
                data, _ = s.recvfrom(65535)
            except TimeoutError:
                continue
            return data.startswith(b"SIP/2.0 200")
    return False


def write_config(tmp: Path, port: int) -> Path:
    path = tmp / "node.yaml"
    path.write_text(
        "sip:\n"
        f"  listen: ['udp://127.0.0.1:{port}', 'tcp://127.0.0.1:{port}']\n"
        "  domain: cli.test\n"
        "database: 'sqlite:///var/node.db'\n"
        f"api: {{listen: '127.0.0.1:{free_port(kind=socket.SOCK_STREAM)}'}}\n"
        "directory:\n  users:\n    - {id: '1001', password: 'pw1001'}\n"
    )
    return path


def test_run_logs_json_lines_and_exits_cleanly_on_sigterm(tmp_path):
    port = free_port()
    config = write_config(tmp_path, port)
    proc = spawn_softswitch("run", "--config", str(config), "--log-format", "json", cwd=tmp_path)
    try:
        assert answers_options(port, time.time() + 20), "node did not come up"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    messages = [r["msg"] for r in records]
    assert any(m.startswith("listening on udp://127.0.0.1") for m in messages)
    assert messages[-1] == "node stopped"
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    # The store was opened next to the config, as relative paths promise.
    assert (tmp_path / "var" / "node.db").exists()


def test_run_refuses_an_invalid_config_and_names_file_and_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("sip:\n  listen: ['udp://127.0.0.1:5060']\n  domian: typo.example\n")
    proc = spawn_softswitch("run", "--config", str(config), cwd=tmp_path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert f"{config}:3:" in err and "domian" in err
    assert "refusing to start" in err


def test_run_without_config_starts_the_demo_node_on_localhost(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", 5060))
        except OSError:
            pytest.skip("127.0.0.1:5060 is taken on this machine; the demo node needs it")
    proc = spawn_softswitch("run", cwd=tmp_path)
    try:
        assert answers_options(5060, time.time() + 20), "demo node did not come up"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert (tmp_path / "var" / "demo").is_dir()
