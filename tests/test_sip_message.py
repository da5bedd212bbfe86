"""SIP message parsing, headers, serialisation, stream framing and responses (RFC 3261 sections 7, 8, 18, 20)."""

from __future__ import annotations

import pytest

from softswitch.sip.errors import SipParseError
from softswitch.sip.message import (
    MAGIC_COOKIE,
    REASONS,
    Headers,
    KeepAlive,
    Request,
    Response,
    StreamParser,
    check_request_semantics,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
)
from softswitch.sip.uri import SipURI

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def invite(body: bytes = SDP, extra: str = "", content_length: int | None = None) -> bytes:
    """A well-formed INVITE; ``extra`` holds more header lines (each ending in CRLF)."""
    cl = len(body) if content_length is None else content_length
    head = (
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
        "Max-Forwards: 70\r\n"
        "To: Bob <sip:bob@biloxi.example.com>\r\n"
        'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        "CSeq: 314159 INVITE\r\n"
        "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
        "Content-Type: application/sdp\r\n"
        f"{extra}"
        f"Content-Length: {cl}\r\n"
        "\r\n"
    )
    return head.encode() + body


def ok_response(body: bytes = b"") -> bytes:
    """A well-formed 200 OK to the INVITE above."""
    return (
        "SIP/2.0 200 OK\r\n"
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n"
        "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        "CSeq: 314159 INVITE\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode() + body


# --- Headers ------------------------------------------------------------------------------------
def test_headers_names_are_case_insensitive_and_compact_forms_map_to_full_names() -> None:
    h = Headers([("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/UDP b"), ("i", "x@y"), ("l", "0")])
    assert h.get("Via") == "SIP/2.0/UDP a"
    assert h.get_all("via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    assert h.get("call-id") == "x@y" and h.get("I") == "x@y"
    assert "content-length" in h and "Content-Type" not in h
    assert [n for n, _ in h.items()] == ["Via", "Via", "Call-ID", "Content-Length"]


@pytest.mark.parametrize(("compact", "full"), [
    ("i", "Call-ID"), ("m", "Contact"), ("e", "Content-Encoding"), ("l", "Content-Length"),
    ("c", "Content-Type"), ("f", "From"), ("s", "Subject"), ("k", "Supported"), ("t", "To"),
    ("v", "Via"), ("o", "Event"), ("u", "Allow-Events"), ("r", "Refer-To"), ("b", "Referred-By"),
    ("x", "Session-Expires"), ("y", "Identity"),
])
def test_every_compact_form_is_known(compact: str, full: str) -> None:
    h = Headers([(compact.upper(), "value")])
    assert h.get(full) == "value" and next(iter(h.items()))[0] == full


def test_get_all_splits_list_headers_but_not_others() -> None:
    h = Headers([
        ("Contact", '"Doe, J" <sip:a@b>, <sip:c@d>'),
        ("Allow", "INVITE, ACK,BYE"),
        ("WWW-Authenticate", 'Digest realm="x", nonce="y"'),
        ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
    ])
    assert h.get_all("Contact") == ['"Doe, J" <sip:a@b>', "<sip:c@d>"]
    assert h.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    assert h.get_all("WWW-Authenticate") == ['Digest realm="x", nonce="y"']
    assert h.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]


def test_headers_set_replaces_all_in_place_add_first_and_remove() -> None:
    h = Headers([("Route", "<sip:a>"), ("To", "t"), ("Route", "<sip:b>")])
    h.set("route", "<sip:c>")
    assert list(h.items()) == [("Route", "<sip:c>"), ("To", "t")]
    h.add("Route", "<sip:d>", first=True)
    h.add("Route", "<sip:e>")
    assert h.values("Route") == ["<sip:d>", "<sip:c>", "<sip:e>"]
    assert h.remove_first("Route") == "<sip:d>"
    h.remove("ROUTE")
    assert list(h.items()) == [("To", "t")] and h.count("route") == 0
    h.set("X-New", "1")
    assert h.get("x-new") == "1"


def test_headers_refuse_values_with_line_breaks() -> None:
    h = Headers()
    with pytest.raises(ValueError):
        h.add("Subject", "hi\r\nVia: evil")
    with pytest.raises(ValueError):
        h.set("Subject", "a\nb")


def test_headers_copy_is_independent() -> None:
    h = Headers([("To", "a")])
    c = h.copy()
    c.set("To", "b")
    assert h.get("To") == "a" and c == Headers([("to", "b")])


# --- parsing --------------------------------------------------------------------------------------
def test_parse_request_fields_and_lazy_accessors() -> None:
    msg = parse_message(invite())
    assert isinstance(msg, Request)
    assert (msg.method, msg.uri, msg.version) == ("INVITE", "sip:bob@biloxi.example.com", "SIP/2.0")
    assert isinstance(msg.ruri, SipURI) and msg.ruri.user == "bob"
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.cseq == (314159, "INVITE")
    assert msg.top_via is not None and msg.top_via.branch == "z9hG4bK776asdhds"
    assert msg.from_.display == "Alice" and msg.from_tag == "1928301774"
    assert msg.to.display == "Bob" and msg.to_tag is None
    assert [str(c.uri) for c in msg.contacts] == ["sip:alice@pc33.atlanta.example.com"]
    assert not msg.contact_star
    assert msg.max_forwards == 70 and msg.content_length == len(SDP)
    assert msg.content_type == "application/sdp" and msg.body == SDP


def test_parse_response_fields() -> None:
    msg = parse_message(ok_response(b"hello"))
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (200, "OK") and msg.body == b"hello"
    assert msg.to.tag == "a6c85cf" and msg.top_via.received == "192.0.2.1"


def test_response_reason_may_be_empty_or_contain_utf8() -> None:
    assert parse_message(ok_response().replace(b"200 OK", b"180 ")).reason == ""
    msg = parse_message(ok_response().replace(b"200 OK", "200 了解しました".encode()))
    assert msg.reason == "了解しました"


def test_compact_and_odd_cased_header_names_parse() -> None:
    data = invite().replace(b"Call-ID:", b"i:").replace(b"Via:", b"v :").replace(b"CSeq:", b"cSEQ  :")
    msg = parse_message(data)
    assert msg.call_id.startswith("a84b") and msg.cseq == (314159, "INVITE") and len(msg.vias) == 1


def test_folded_header_lines_are_joined_with_one_space() -> None:
    data = invite(extra="Subject: first part\r\n   second part\r\n\tthird\r\n")
    assert parse_message(data).headers.get("Subject") == "first part second part third"


def test_folded_via_list_spanning_lines() -> None:
    data = invite().replace(
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n",
        b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,\r\n SIP/2.0/TCP\r\n  b.example.com;branch=z9hG4bK2\r\n")
    assert [v.host for v in parse_message(data).vias] == ["a.example.com", "b.example.com"]


def test_multiple_header_lines_and_comma_lists_give_all_vias_in_order() -> None:
    data = invite().replace(
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n",
        b"Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\nVia: SIP/2.0/TCP c;branch=z9hG4bK3\r\n")
    msg = parse_message(data)
    assert [v.host for v in msg.vias] == ["a", "b", "c"] and msg.top_via.host == "a"


def test_quoted_display_names_with_commas_do_not_split_contacts() -> None:
    data = invite().replace(b"Contact: <sip:alice@pc33.atlanta.example.com>",
                            b'Contact: "Sato, Hanako" <sip:h@x>;q=0.7, "A \\"B\\", C" <sip:c@y>')
    contacts = parse_message(data).contacts
    assert [c.display for c in contacts] == ["Sato, Hanako", 'A "B", C']
    assert contacts[0].q == 0.7


def test_contact_star() -> None:
    data = invite(b"").replace(b"Contact: <sip:alice@pc33.atlanta.example.com>", b"Contact: *")
    msg = parse_message(data)
    assert msg.contact_star and msg.contacts == []


def test_escapes_in_request_uri_and_headers() -> None:
    data = invite().replace(b"INVITE sip:bob@", b"INVITE sip:b%6Fb@").replace(
        b"To: Bob <sip:bob@", b"To: Bob <sip:%62ob@")
    msg = parse_message(data)
    assert msg.uri == "sip:b%6Fb@biloxi.example.com" and msg.ruri.user == "bob" and msg.to.uri.user == "bob"


def test_ipv6_in_request_uri_via_and_contact() -> None:
    data = (invite().replace(b"INVITE sip:bob@biloxi.example.com", b"INVITE sip:bob@[2001:db8::1]:5070")
            .replace(b"pc33.atlanta.example.com;branch", b"[2001:db8::2]:5060;branch")
            .replace(b"<sip:alice@pc33.atlanta.example.com>", b"<sip:alice@[2001:db8::2]>"))
    msg = parse_message(data)
    assert (msg.ruri.host, msg.ruri.port) == ("[2001:db8::1]", 5070)
    assert (msg.top_via.host, msg.top_via.port) == ("[2001:db8::2]", 5060)
    assert msg.contacts[0].uri.host == "[2001:db8::2]"


def test_content_length_larger_than_body_is_a_400_with_a_partial_request() -> None:
    with pytest.raises(SipParseError) as err:
        parse_message(invite(content_length=len(SDP) + 1))
    assert err.value.status == 400 and "Content-Length" in err.value.reason
    assert isinstance(err.value.partial, Request) and err.value.partial.call_id is not None


def test_content_length_smaller_than_datagram_ignores_the_excess() -> None:
    msg = parse_message(invite(content_length=10))
    assert msg.body == SDP[:10]


def test_missing_content_length_on_a_datagram_takes_the_rest() -> None:
    data = invite().replace(f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    assert parse_message(data).body == SDP


def test_leading_crlf_before_the_start_line_is_ignored() -> None:
    assert parse_message(b"\r\n\r\n" + invite()).method == "INVITE"


def test_oversize_datagram_is_refused_with_513() -> None:
    data = invite(b"x" * 70000)
    with pytest.raises(SipParseError) as err:
        parse_message(data)
    assert err.value.status == 513
    assert parse_message(data, max_size=80000).body == b"x" * 70000


@pytest.mark.parametrize(("data", "status"), [
    (b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n", 400),  # no empty line
    (b"\r\n\r\n", 400),
    (b"INVITE sip:bob@biloxi.example.com SIP/3.0\r\nTo: <sip:a@b>\r\n\r\n", 505),
    (b"INVITE sip:bob@biloxi.example.com HTTP/1.1\r\n\r\n", 400),
    (b"SIP/2.0 2000 OK\r\n\r\n", 400),
    (b"SIP/2.0 099 Low\r\n\r\n", 400),
    (b"SIP/2.0 700 Beyond\r\n\r\n", 400),
    (b"SIP/2.0\r\n\r\n", 400),
    (b"INV ITE sip:a@b SIP/2.0\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nNo colon here\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nSubject: a\nVia: SIP/2.0/UDP evil\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nCSeq: 1 BYE\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nCSeq: 2147483648 INVITE\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nMax-Forwards: 256\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nFrom: <sip:a@b\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nContact: <sip:a@b>;;\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nRoute: sip:a@b\r\n\r\n", 400),  # Route needs angle brackets
    (b"INVITE sip:a@b SIP/2.0\r\nCall-ID: a b\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nDate: Sat, 13 Nov 2010 23:29:00 JST\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nExpires: 4294967296\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nContent-Type: sdp\r\n\r\n", 400),
])
def test_malformed_messages_raise_with_the_right_status(data: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as err:
        parse_message(data)
    assert err.value.status == status


def test_malformed_request_carries_a_partial_request_for_the_400() -> None:
    data = invite().replace(b"Max-Forwards: 70", b"Max-Forwards: lots")
    with pytest.raises(SipParseError) as err:
        parse_message(data)
    partial = err.value.partial
    assert partial is not None and partial.method == "INVITE"
    resp = make_response(partial, 400, err.value.reason)
    assert resp.headers.get("Call-ID") == "a84b4c76e66710@pc33.atlanta.example.com"
    assert parse_message(resp.serialize()).status == 400


def test_partial_request_never_copies_bare_line_breaks_into_the_response() -> None:
    data = invite().replace(b"To: Bob <sip:bob@biloxi.example.com>", b"To: Bob <sip:b@x>\nX-Evil: 1")
    with pytest.raises(SipParseError) as err:
        parse_message(data)
    assert err.value.partial is not None
    out = make_response(err.value.partial, 400).serialize()
    assert b"X-Evil" not in out and parse_message(out).status == 400


def test_unsupported_version_carries_a_partial_request_for_the_505() -> None:
    data = invite().replace(b"SIP/2.0\r\nVia", b"SIP/2.1\r\nVia")
    with pytest.raises(SipParseError) as err:
        parse_message(data)
    assert err.value.status == 505 and err.value.partial is not None


def test_malformed_response_has_no_partial() -> None:
    with pytest.raises(SipParseError) as err:
        parse_message(ok_response().replace(b"CSeq: 314159", b"CSeq: x"))
    assert err.value.partial is None


def test_accessors_raise_sip_parse_error_for_missing_headers() -> None:
    msg = Request("OPTIONS", "sip:a@b")
    assert msg.top_via is None and msg.vias == [] and msg.max_forwards is None
    for attr in ("cseq", "from_", "to"):
        with pytest.raises(SipParseError):
            getattr(msg, attr)


def test_non_utf8_octets_survive_a_round_trip() -> None:
    data = invite(extra="X-Raw: RAW\r\n").replace(b"RAW", b"\xff\xfe")
    msg = parse_message(data)
    assert b"X-Raw: \xff\xfe\r\n" in msg.serialize()


# --- serialisation ------------------------------------------------------------------------------
def test_serialize_round_trips_a_parsed_message_byte_for_byte() -> None:
    data = invite()
    assert parse_message(data).serialize() == data


def test_serialize_recomputes_content_length_and_expands_compact_names() -> None:
    msg = parse_message(invite(content_length=5).replace(b"Call-ID:", b"i:"))
    out = msg.serialize()
    assert b"Content-Length: 5\r\n" in out and b"Call-ID: a84b" in out
    msg.body = b"0123456789"
    assert msg.serialize().endswith(b"Content-Length: 10\r\n\r\n0123456789")


def test_serialize_adds_content_length_when_missing() -> None:
    req = Request("OPTIONS", "sip:a@b", [("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("CSeq", "1 OPTIONS")])
    assert req.serialize() == (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                               b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    assert bytes(req) == req.serialize()


def test_compact_serialisation_uses_rfc3261_short_names_and_parses_back() -> None:
    msg = parse_message(invite(extra="Event: presence\r\n"))
    out = msg.serialize(compact=True)
    assert b"\r\nv: SIP/2.0/UDP" in out and b"\r\ni: a84b" in out and b"\r\nl: %d\r\n" % len(SDP) in out
    assert b"\r\nEvent: presence" in out  # RFC 3265's "o" is not assumed to be understood
    assert len(out) < len(msg.serialize())
    again = parse_message(out)
    assert list(again.headers.items()) == list(msg.headers.items()) and again.body == msg.body


def test_copy_is_independent_of_the_original() -> None:
    msg = parse_message(invite())
    c = msg.copy()
    c.headers.set("Max-Forwards", "69")
    c.uri = "sip:carol@example.com"
    assert msg.max_forwards == 70 and c.max_forwards == 69
    assert c.ruri.user == "carol" and msg.ruri.user == "bob"


# --- StreamParser ---------------------------------------------------------------------------------
def test_stream_parser_frames_a_message_split_at_every_byte_boundary() -> None:
    data = invite()
    for cut in range(1, len(data)):
        sp = StreamParser()
        out = sp.feed(data[:cut]) + sp.feed(data[cut:])
        assert len(out) == 1 and isinstance(out[0], Request), cut
        assert out[0].body == SDP and sp.buffered == 0


def test_stream_parser_one_byte_at_a_time() -> None:
    data = invite() + ok_response(b"abc")
    sp = StreamParser()
    out = [m for i in range(len(data)) for m in sp.feed(data[i:i + 1])]
    assert [type(m) for m in out] == [Request, Response] and out[1].body == b"abc"


def test_stream_parser_several_messages_and_keepalives_in_one_chunk() -> None:
    sp = StreamParser()
    out = sp.feed(b"\r\n\r\n" + invite() + ok_response() + b"\r\n" + invite(b"") + b"\r\n\r\n")
    kinds = [m.kind if isinstance(m, KeepAlive) else type(m).__name__ for m in out]
    assert kinds == ["ping", "Request", "Response", "pong", "Request", "ping"]
    assert out[4].body == b""


def test_stream_parser_keepalive_split_across_feeds_is_one_ping() -> None:
    sp = StreamParser()
    assert sp.feed(b"\r\n\r") == []
    assert sp.feed(b"\n") == [KeepAlive("ping")]
    assert sp.feed(b"\r\n") == [KeepAlive("pong")]


def test_stream_parser_requires_content_length() -> None:
    sp = StreamParser()
    data = invite().replace(f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    with pytest.raises(SipParseError) as err:
        sp.feed(data)
    assert err.value.status == 400 and err.value.partial is not None
    with pytest.raises(SipParseError):
        sp.feed(invite())  # the stream is no longer in sync: it stays broken


def test_stream_parser_refuses_conflicting_content_lengths() -> None:
    with pytest.raises(SipParseError):
        StreamParser().feed(invite(extra="Content-Length: 3\r\n"))


def test_stream_parser_refuses_oversize_headers_and_bodies() -> None:
    with pytest.raises(SipParseError) as err:
        StreamParser(max_size=1000).feed(b"INVITE sip:a@b SIP/2.0\r\nX: " + b"a" * 2000)
    assert err.value.status == 513
    with pytest.raises(SipParseError) as err:
        StreamParser(max_size=1000).feed(invite(content_length=5000))
    assert err.value.status == 513


def test_stream_parser_waits_for_the_whole_body() -> None:
    sp = StreamParser()
    data = invite()
    assert sp.feed(data[:-1]) == []
    assert sp.buffered == len(data) - 1
    assert len(sp.feed(data[-1:])) == 1


# --- responses ----------------------------------------------------------------------------------
def test_make_response_copies_the_rfc3261_8_2_6_headers_and_adds_a_to_tag() -> None:
    req = parse_message(invite().replace(
        b"Via: SIP/2.0/UDP pc33", b"Via: SIP/2.0/UDP proxy;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP pc33"))
    resp = make_response(req, 486, to_tag="xyz", headers=[("Retry-After", "30")])
    assert (resp.status, resp.reason) == (486, "Busy Here")
    assert resp.headers.values("Via") == req.headers.values("Via")
    assert resp.headers.get("From") == req.headers.get("From")
    assert resp.headers.get("Call-ID") == req.call_id and resp.cseq == req.cseq
    assert resp.to.tag == "xyz" and resp.headers.get("Retry-After") == "30"
    assert "Contact" not in resp.headers and "Content-Type" not in resp.headers
    again = parse_message(resp.serialize())
    assert isinstance(again, Response) and again.to.tag == "xyz"


def test_make_response_keeps_an_existing_to_tag_and_100_gets_none() -> None:
    req = parse_message(invite().replace(b"To: Bob <sip:bob@biloxi.example.com>",
                                         b"To: Bob <sip:bob@biloxi.example.com>;tag=old"))
    assert make_response(req, 200, to_tag="new").to.tag == "old"
    fresh = parse_message(invite(extra="Timestamp: 54\r\n"))
    trying = make_response(fresh, 100, to_tag="new")
    assert trying.to.tag is None and trying.headers.get("Timestamp") == "54"
    assert make_response(fresh, 180, "Ringing here").reason == "Ringing here"


def test_reason_phrases_and_random_helpers() -> None:
    assert REASONS[200] == "OK" and REASONS[483] == "Too Many Hops" and REASONS[505] == "Version Not Supported"
    b1, b2 = new_branch(), new_branch()
    assert b1.startswith(MAGIC_COOKIE) and b1 != b2 and len(b1) > len(MAGIC_COOKIE) + 8
    assert new_tag() != new_tag()
    assert new_call_id("pbx.example.jp").endswith("@pbx.example.jp") and "@" not in new_call_id()


# --- semantic checks ------------------------------------------------------------------------------
def _sem(data: bytes, **kw: object) -> tuple[int, str] | None:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return check_request_semantics(msg, **kw)  # type: ignore[arg-type]


def test_a_plain_invite_passes_the_semantic_checks() -> None:
    assert _sem(invite()) is None


@pytest.mark.parametrize("header", ["To", "From", "Call-ID", "CSeq", "Via"])
def test_missing_required_header_is_400(header: str) -> None:
    lines = [ln for ln in invite().split(b"\r\n") if not ln.lower().startswith(header.lower().encode() + b":")]
    result = _sem(b"\r\n".join(lines))
    assert result is not None and result[0] == 400 and header in result[1]


def test_duplicate_single_valued_header_is_400() -> None:
    assert _sem(invite(extra="To: <sip:carol@example.com>\r\n"))[0] == 400
    assert _sem(invite(extra="Content-Length: 3\r\n"))[0] == 400


def test_unsupported_request_uri_scheme_is_416() -> None:
    assert _sem(invite().replace(b"INVITE sip:bob@biloxi.example.com", b"INVITE mailto:bob@example.com"))[0] == 416
    assert _sem(invite().replace(b"INVITE sip:bob@biloxi.example.com", b"INVITE tel:+81312345678")) is None
    assert _sem(invite().replace(b"INVITE sip:bob@biloxi.example.com", b"INVITE tel:+81312345678"),
                uri_schemes={"sip"})[0] == 416


def test_max_forwards_zero_is_483() -> None:
    assert _sem(invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 0"))[0] == 483


def test_require_is_checked_against_supported_extensions() -> None:
    data = invite(extra="Require: 100rel, timer\r\n")
    assert _sem(data)[0] == 420
    assert _sem(data, supported={"100rel", "timer"}) is None


def test_unknown_content_type_or_encoding_is_415() -> None:
    assert _sem(invite().replace(b"application/sdp", b"application/x-unknown"))[0] == 415
    assert _sem(invite(extra="Content-Encoding: gzip\r\n"))[0] == 415
    assert _sem(invite(b"").replace(b"application/sdp", b"application/x-unknown")) is None  # no body


def test_invite_whose_accept_excludes_sdp_is_406() -> None:
    assert _sem(invite(extra="Accept: text/plain\r\n"))[0] == 406
    assert _sem(invite(extra="Accept: text/plain, application/sdp;level=1\r\n")) is None
    assert _sem(invite(extra="Accept: */*\r\n")) is None
    assert _sem(invite(extra="Accept: text/plain\r\n"), accept_sdp=False) is None
