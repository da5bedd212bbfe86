"""Throughput of the SIP transaction layer alone (messages pre-parsed), and with parsing + serialising.

Scenarios, each over UDP with the real timers running (J, G/H, L, K ... fire inside the run):
  register-uas   REGISTER in, 200 out (non-INVITE server; timer J keeps each alive 32 s)
  register-uac   REGISTER out, 200 in (non-INVITE client; E cancelled, K fires)
  call-uas       INVITE in, 100, 180, 200 out, ACK (2xx) in, BYE in, 200 out (two server transactions)
Rates are per second of one core; the ``+parse`` figures include parse_message of every received
message, which is what the node pays.

Run: .venv/bin/python bench/sip_transaction.py [count]
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from softswitch.sip.message import Request, make_response, parse_message
from softswitch.sip.transaction import Addr, Send, TransactionLayer

PEER = Addr("udp", "192.0.2.10", 5060)


def register(i: int) -> bytes:
    return (
        "REGISTER sip:pbx.example.jp SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{i:016x};rport\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:1001@pbx.example.jp>\r\n"
        f"From: <sip:1001@pbx.example.jp>;tag={i:x}\r\n"
        f"Call-ID: reg{i}@192.0.2.10\r\n"
        "CSeq: 2 REGISTER\r\n"
        "Contact: <sip:1001@192.0.2.10:5060>;expires=3600\r\n"
        "User-Agent: ExamplePhone/1.0\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def call_messages(i: int) -> tuple[bytes, bytes, bytes]:
    common = (
        "Max-Forwards: 70\r\n"
        "To: <sip:0312345678@pbx.example.jp>{to}\r\n"
        f"From: \"Yamada\" <sip:1001@pbx.example.jp>;tag=f{i:x}\r\n"
        f"Call-ID: call{i}@192.0.2.10\r\n"
    )
    invite = (
        "INVITE sip:0312345678@pbx.example.jp SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKi{i:016x};rport\r\n"
        + common.format(to="") +
        "CSeq: 1 INVITE\r\nContact: <sip:1001@192.0.2.10:5060>\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    ack = (
        "ACK sip:1001@192.0.2.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa{i:016x};rport\r\n"
        + common.format(to=";tag=t") + "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    bye = (
        "BYE sip:1001@192.0.2.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKb{i:016x};rport\r\n"
        + common.format(to=";tag=t") + "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    return invite, ack, bye


def rate(label: str, n: int, seconds: float, unit: str) -> None:
    print(f"{label:<28} {n / seconds:>10,.0f} {unit}/s  ({seconds * 1e6 / n:.1f} us each)")


def bench_register_uas(n: int, parse: bool) -> None:
    layer = TransactionLayer()
    raw = [register(i) for i in range(n)]
    pre = [parse_message(r) for r in raw]
    t0 = time.perf_counter()
    for i in range(n):
        now = i / 3000.0  # 3,000 REGISTER/s of simulated time, so J timers overlap realistically
        req = parse_message(raw[i]) if parse else pre[i]
        (received,) = layer.receive(req, PEER, now)
        resp = make_response(req, 200, to_tag="t")  # type: ignore[arg-type]
        layer.send_response(resp, now, tx=received.server_tx)  # type: ignore[union-attr]
        layer.tick(now)
    layer.tick(n / 3000.0 + 100)
    dt = time.perf_counter() - t0
    assert len(layer) == 0
    rate(f"register-uas{'+parse' if parse else ''}", n, dt, "REGISTER")


def bench_register_uac(n: int) -> None:
    layer = TransactionLayer()
    reqs = [parse_message(register(i)) for i in range(n)]
    oks = [parse_message(make_response(r, 200, to_tag="t").serialize()) for r in reqs]  # type: ignore[arg-type]
    t0 = time.perf_counter()
    for i in range(n):
        now = i / 3000.0
        layer.send_request(reqs[i], PEER, now)  # type: ignore[arg-type]
        layer.receive(oks[i], PEER, now)
        layer.tick(now)
    layer.tick(n / 3000.0 + 100)
    dt = time.perf_counter() - t0
    assert len(layer) == 0
    rate("register-uac", n, dt, "REGISTER")


def bench_call_uas(n: int, parse: bool) -> None:
    layer = TransactionLayer()
    raw = [call_messages(i) for i in range(n)]
    pre = [tuple(parse_message(m) for m in msgs) for msgs in raw]
    t0 = time.perf_counter()
    for i in range(n):
        now = i / 500.0
        invite, ack, bye = (tuple(parse_message(m) for m in raw[i]) if parse else pre[i])
        assert isinstance(invite, Request) and isinstance(bye, Request)
        out = layer.receive(invite, PEER, now)
        tx = out[-1].server_tx  # type: ignore[union-attr]
        for status in (100, 180, 200):
            layer.send_response(make_response(invite, status, to_tag="t"), now, tx=tx)
        layer.receive(ack, PEER, now)  # type: ignore[arg-type]
        out = layer.receive(bye, PEER, now)
        layer.send_response(make_response(bye, 200), now, tx=out[-1].server_tx)  # type: ignore[union-attr]
        layer.tick(now)
    layer.tick(n / 500.0 + 100)
    dt = time.perf_counter() - t0
    assert len(layer) == 0
    rate(f"call-uas{'+parse' if parse else ''}", n, dt, "call")


def memory_per_transaction(n: int) -> None:
    """Bytes held per live non-INVITE server transaction in Completed (the 32 s J window)."""
    layer = TransactionLayer()
    raw = [register(i) for i in range(n)]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i, r in enumerate(raw):
        req = parse_message(r)
        (received,) = layer.receive(req, PEER, i * 1e-4)
        out = layer.send_response(make_response(req, 200, to_tag="t"), i * 1e-4,  # type: ignore[arg-type]
                                  tx=received.server_tx)  # type: ignore[union-attr]
        assert isinstance(out[0], Send)
        del req, received, out
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(f"{'memory per REGISTER tx':<28} {used / n:>10,.0f} bytes (Completed, awaiting timer J)")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30000
    bench_register_uas(n, parse=False)
    bench_register_uas(n, parse=True)
    bench_register_uac(n)
    bench_call_uas(n // 5, parse=False)
    bench_call_uas(n // 5, parse=True)
    memory_per_transaction(min(n, 20000))


if __name__ == "__main__":
    main()
