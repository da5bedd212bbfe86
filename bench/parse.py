"""Parse and serialise rates of the SIP message layer for a typical INVITE with SDP.

Run: .venv/bin/python bench/parse.py [iterations]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from softswitch.sip.message import StreamParser, parse_message

SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:0312345678@pbx.example.jp;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:0312345678@pbx.example.jp;user=phone>\r\n"
    b"From: \"Yamada Taro\" <sip:1001@pbx.example.jp>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.10\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:1001@192.0.2.10:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, INFO, UPDATE\r\n"
    b"Supported: replaces, timer, 100rel\r\n"
    b"User-Agent: ExamplePhone/1.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)


def rate(label: str, fn: Callable[[], object], n: int, rounds: int = 5) -> float:
    """Run ``fn`` n times in ``rounds`` rounds; print wall-clock (perf_counter) and CPU-time rates.

    The CPU-time rate (process_time) is what the code costs when other processes share the CPUs.
    """
    per_round = max(1, n // rounds)
    rates, cpu_rates = [], []
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(per_round):
            fn()
        t1, c1 = time.perf_counter(), time.process_time()
        rates.append(per_round / (t1 - t0))
        cpu_rates.append(per_round / max(c1 - c0, 1e-9))
    best, median = max(rates), statistics.median(rates)
    print(f"{label:<44} best {best:>9,.0f}/s ({1e6 / best:6.2f} us)  median {median:>9,.0f}/s  "
          f"cpu-time best {max(cpu_rates):>9,.0f}/s")
    return best


def main() -> None:
    """Print parse, parse+access and serialise rates."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    msg = parse_message(INVITE)
    assert msg.serialize() == INVITE, "round trip changed the message"
    print(f"typical INVITE with SDP: {len(INVITE)} octets, {len(msg.headers)} headers; "
          f"{n:,} iterations per case; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    rate("parse_message", lambda: parse_message(INVITE), n)
    rate("serialize", msg.serialize, n)

    def parse_and_route() -> None:
        m = parse_message(INVITE)
        m.top_via.branch  # noqa: B018 - what a transaction layer reads
        m.cseq  # noqa: B018
        m.call_id  # noqa: B018

    rate("parse + top_via.branch + cseq + call_id", parse_and_route, n // 2)

    def stream() -> None:
        StreamParser().feed(STREAM)

    STREAM = INVITE * 10
    best = rate("StreamParser, 10 INVITEs per chunk (chunks)", stream, n // 20)
    print(f"{'  = StreamParser messages':<44} best {best * 10:>9,.0f}/s")

    def full_access() -> None:
        m = parse_message(INVITE)
        m.vias, m.from_, m.to, m.contacts, m.cseq, m.ruri  # noqa: B018

    rate("parse + every structured accessor", full_access, n // 4)


if __name__ == "__main__":
    main()
