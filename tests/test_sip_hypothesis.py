"""Property-based tests: generated messages round-trip, mutated messages fail only with SipParseError."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softswitch.sip.errors import SipParseError
from softswitch.sip.message import Request, Response, StreamParser, check_request_semantics, parse_message
from softswitch.sip.uri import NameAddr, SipURI, parse_name_addr, parse_uri

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~"
ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
hostnames = st.lists(st.text(ALNUM, min_size=1, max_size=8), min_size=1, max_size=4).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8).map(
    lambda g: "[" + ":".join(f"{x:x}" for x in g) + "]")
hosts = st.one_of(hostnames, ipv4, ipv6)
ports = st.one_of(st.none(), st.integers(1, 65535))
# Any text at all: the URI layer must escape what the grammar forbids.
free_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=10)
param_names = st.text(ALNUM + "-", min_size=1, max_size=8)

sip_uris = st.builds(
    SipURI,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.one_of(st.none(), free_text),
    password=st.none(),
    host=hosts,
    port=ports,
    params=st.dictionaries(param_names, st.one_of(st.none(), free_text), max_size=3),
    headers=st.dictionaries(free_text, st.text(max_size=6).filter(lambda s: "\udc80" not in s), max_size=2),
)
display_names = st.one_of(
    st.none(),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), min_size=1, max_size=15),
)
header_params = st.dictionaries(
    st.text(ALNUM, min_size=1, max_size=6).filter(lambda s: s != "tag"),
    st.one_of(st.none(), tokens), max_size=3)


@SETTINGS
@given(sip_uris)
def test_sip_uri_round_trips_through_text(uri: SipURI) -> None:
    again = parse_uri(str(uri))
    assert again == uri
    assert again.equivalent(uri)


@SETTINGS
@given(display_names, sip_uris.map(lambda u: SipURI(u.scheme, u.user, None, u.host, u.port, u.params)),
       header_params, st.one_of(st.none(), tokens))
def test_name_addr_round_trips_through_text(display: str | None, uri: SipURI,
                                            params: dict[str, str | None], tag: str | None) -> None:
    na = NameAddr(display, uri, dict(params))
    na.tag = tag
    again = parse_name_addr(str(na))
    assert again.uri == na.uri and again.params == na.params
    assert (again.display or None) == (na.display or None)


header_values = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n"), max_size=30
).map(lambda s: s.strip(" \t"))
extension_headers = st.lists(
    st.tuples(st.text(ALNUM + "-", min_size=1, max_size=10).map(lambda s: "X-" + s), header_values),
    max_size=6)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """A well-formed request with random method, Request-URI, headers and body."""
    method = draw(st.one_of(st.sampled_from(["INVITE", "REGISTER", "OPTIONS", "BYE", "MESSAGE"]), tokens))
    ruri = draw(sip_uris)
    ruri.headers = {}  # headers are not allowed in a Request-URI
    vias = draw(st.lists(st.tuples(st.sampled_from(["UDP", "TCP", "TLS", "WS"]), hosts, ports, tokens),
                         min_size=1, max_size=3))
    headers: list[tuple[str, str]] = []
    for transport, host, port, branch in vias:
        hp = host if port is None else f"{host}:{port}"
        headers.append(("Via", f"SIP/2.0/{transport} {hp};branch=z9hG4bK{branch}"))
    headers.append(("Max-Forwards", str(draw(st.integers(0, 255)))))
    headers.append(("From", str(NameAddr(draw(display_names), draw(sip_uris), {"tag": draw(tokens)}))))
    headers.append(("To", str(NameAddr(draw(display_names), draw(sip_uris), {}))))
    headers.append(("Call-ID", draw(tokens) + "@" + draw(hostnames)))
    headers.append(("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"))
    headers.extend(draw(extension_headers))
    body = draw(st.binary(max_size=200))
    return Request(method, str(ruri), headers, body)


@SETTINGS
@given(requests())
def test_generated_requests_round_trip(req: Request) -> None:
    data = req.serialize()
    again = parse_message(data)
    assert isinstance(again, Request)
    assert (again.method, again.uri, again.body) == (req.method, req.uri, req.body)
    assert [(n, v) for n, v in again.headers.items() if n != "Content-Length"] == list(req.headers.items())
    assert again.content_length == len(req.body)
    assert again.ruri == parse_uri(req.uri)
    assert again.from_ == parse_name_addr(req.headers.get("From") or "")
    assert len(again.vias) == len(req.headers.values("Via"))
    assert again.serialize() == data


@SETTINGS
@given(st.integers(100, 699), st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
       st.binary(max_size=100))
def test_generated_responses_round_trip(status: int, reason: str, body: bytes) -> None:
    resp = Response(status, reason, [("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("CSeq", "1 INVITE")], body)
    again = parse_message(resp.serialize())
    assert isinstance(again, Response)
    assert (again.status, again.reason, again.body) == (status, reason, body)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=4), st.data())
def test_stream_parser_recovers_every_message_whatever_the_chunking(reqs: list[Request], data: st.DataObject) -> None:
    stream = b"".join(r.serialize() for r in reqs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    sp = StreamParser()
    out = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        out.extend(sp.feed(stream[prev:cut]))
        prev = cut
    assert [m.serialize() for m in out] == [r.serialize() for r in reqs]


SEEDS = [
    b"INVITE sip:bob@biloxi.example.com;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK776asdhds;rport, SIP/2.0/TCP p.example.com\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: \"Alice \\\"A\\\", X\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com;transport=tcp>;expires=60, sip:x@y;q=0.5\r\n"
    b"Route: <sip:p1.example.com;lr>,\r\n <sip:p2.example.com;lr>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 12\r\n"
    b"\r\n"
    b"v=0\r\ns=-\r\nc=x",
    b"SIP/2.0 200 OK\r\n"
    b"v: SIP/2.0/UDP h;branch=z9hG4bK1;received=2001:db8::9\r\n"
    b"t: <sip:b@x>;tag=2\r\nf: sip:a@x;tag=1\r\ni: c@x\r\nCSeq: 1 INVITE\r\nm: *\r\nl: 0\r\n\r\n",
    b"REGISTER sips:%72egistrar.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS client.example.com:5061;branch=z9hG4bKnashds7\r\n"
    b"To: tel:+81-3-1234-5678;tag=x\r\nFrom: <urn:x:y>;tag=456248\r\nCall-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\nContact: <sip:bob@192.0.2.4>\r\nExpires: 7200\r\n"
    b"Date: Sat, 13 Nov 2010 23:29:00 GMT\r\nContent-Length: 0\r\n\r\n",
]


def _exercise(msg: Request | Response) -> None:
    """Touch every structured accessor and serialise: all may only fail with SipParseError."""
    for attr in ("vias", "top_via", "from_", "to", "contacts", "contact_star", "routes", "record_routes",
                 "cseq", "call_id", "max_forwards", "content_length", "content_type"):
        try:
            getattr(msg, attr)
        except SipParseError:
            pass
    if isinstance(msg, Request):
        try:
            msg.ruri  # noqa: B018
        except SipParseError:
            pass
        # The semantic checks answer with a status; they never raise.
        result = check_request_semantics(msg)
        assert result is None or 400 <= result[0] <= 499
    for name in ("Allow", "Supported", "Accept", "Contact", "Via"):
        msg.headers.get_all(name)
    out = msg.serialize()
    # What was accepted once must be accepted again after serialisation.
    again = parse_message(out, max_size=len(out) + 10)
    assert type(again) is type(msg)


mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate", "dup"]),
              st.integers(0, 10_000), st.integers(0, 255)),
    min_size=1, max_size=6)


def _mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, pos, byte in ops:
        if not buf:
            break
        i = pos % len(buf)
        if op == "flip":
            buf[i] = byte
        elif op == "insert":
            buf.insert(i, byte)
        elif op == "delete":
            del buf[i]
        elif op == "truncate":
            del buf[i:]
        else:
            buf[i:i] = buf[i:i + byte % 40]
    return bytes(buf)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), mutations)
def test_mutated_messages_raise_nothing_but_sip_parse_error(seed: bytes, ops: list[tuple[str, int, int]]) -> None:
    data = _mutate(seed, ops)
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        assert 400 <= exc.status <= 599
        return
    _exercise(msg)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), mutations, st.lists(st.integers(1, 50), max_size=10))
def test_mutated_streams_raise_nothing_but_sip_parse_error(seed: bytes, ops: list[tuple[str, int, int]],
                                                          chunks: list[int]) -> None:
    data = _mutate(seed + seed, ops)
    sp = StreamParser()
    pos = 0
    try:
        for size in [*chunks, len(data)]:
            for msg in sp.feed(data[pos:pos + size]):
                if isinstance(msg, (Request, Response)):
                    _exercise(msg)
            pos += size
    except SipParseError:
        pass


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_raise_nothing_but_sip_parse_error(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError:
        return
    _exercise(msg)


@SETTINGS
@given(st.text(max_size=60))
def test_uri_and_name_addr_parsers_raise_only_sip_parse_error(text: str) -> None:
    for fn in (parse_uri, parse_name_addr):
        try:
            fn(text)
        except SipParseError:
            pass


@SETTINGS
@given(requests(), st.data())
def test_folding_header_values_anywhere_at_whitespace_changes_nothing(req: Request, data: st.DataObject) -> None:
    """Folding (CRLF + whitespace) may replace any linear whitespace in a value (RFC 3261 7.3.1)."""
    plain = parse_message(req.serialize())
    lines = req.serialize().split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    folded = [lines[0]]
    for line in lines[1:]:
        name, _, value = line.partition(b": ")
        words = value.split(b" ")
        if any(not w for w in words):
            folded.append(line)  # runs of spaces: folding would merge them, skip this line
            continue
        seps = [data.draw(st.sampled_from([b" ", b"\r\n ", b"\r\n\t", b" \r\n  "])) for _ in words[1:]]
        out = words[0]
        for sep, word in zip(seps, words[1:], strict=True):
            out += sep + word
        folded.append(name + b": " + out)
    raw = b"\r\n".join(folded) + b"\r\n\r\n" + req.body
    again = parse_message(raw)
    assert list(again.headers.items()) == list(plain.headers.items())
    assert again.body == plain.body


def _conformance_seeds() -> list[bytes]:
    """The RFC 4475 messages that must parse, when the shared folder is present."""
    root = Path(__file__).parents[2] / "shared" / "conformance" / "rfc4475"
    names = ["wsinv.dat", "intmeth.dat", "esc01.dat", "esc02.dat", "escnull.dat", "longreq.dat",
             "semiuri.dat", "mpart01.dat", "unreason.dat", "regescrt.dat", "multi01.dat"]
    return [(root / n).read_bytes() for n in names if (root / n).exists()]


TORTURE_SEEDS = _conformance_seeds()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), mutations)
def test_mutated_torture_messages_raise_nothing_but_sip_parse_error(data: st.DataObject,
                                                                    ops: list[tuple[str, int, int]]) -> None:
    if not TORTURE_SEEDS:
        pytest.skip("RFC 4475 files absent from ../shared/conformance")
    mutated = _mutate(data.draw(st.sampled_from(TORTURE_SEEDS)), ops)
    try:
        msg = parse_message(mutated)
    except SipParseError:
        return
    _exercise(msg)
