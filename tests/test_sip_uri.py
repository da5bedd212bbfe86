"""SIP/SIPS/tel URIs, name-addr and Via values (RFC 3261 sections 19, 20, 25; RFC 5118)."""

from __future__ import annotations

import pytest

from softswitch.sip.errors import SipParseError
from softswitch.sip.uri import (
    AbsoluteURI,
    NameAddr,
    SipURI,
    TelURI,
    Via,
    check_request_uri,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_comma_list,
)


def test_sip_uri_components_are_split_and_host_lower_cased() -> None:
    uri = parse_uri("sip:alice:secret@Atlanta.Example.COM:5070;transport=TCP;lr?Subject=hi&Priority=urgent")
    assert isinstance(uri, SipURI)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sip", "alice", "secret", "atlanta.example.com", 5070)
    assert uri.params == {"transport": "TCP", "lr": None}
    assert uri.transport == "tcp" and uri.lr
    assert uri.headers == {"Subject": "hi", "Priority": "urgent"}


def test_sips_scheme_is_case_insensitive_and_normalised() -> None:
    uri = parse_uri("SIPS:bob@biloxi.example.com")
    assert isinstance(uri, SipURI) and uri.scheme == "sips"


def test_uri_without_user_part() -> None:
    uri = parse_uri("sip:registrar.example.com")
    assert isinstance(uri, SipURI) and uri.user is None and uri.host == "registrar.example.com"
    assert str(uri) == "sip:registrar.example.com"


def test_percent_escapes_are_decoded_and_re_escaped_on_output() -> None:
    uri = parse_uri("sip:%61lice%20smith@example.com;n%61me=v%25")
    assert isinstance(uri, SipURI)
    assert uri.user == "alice smith" and uri.params == {"name": "v%"}
    assert str(uri) == "sip:alice%20smith@example.com;name=v%25"
    assert parse_uri(str(uri)) == uri


def test_utf8_escapes_decode_to_text() -> None:
    uri = parse_uri("sip:%E5%B1%B1%E7%94%B0@example.jp")
    assert isinstance(uri, SipURI) and uri.user == "山田"
    assert str(uri) == "sip:%E5%B1%B1%E7%94%B0@example.jp"


def test_ipv6_reference_keeps_brackets_and_port() -> None:
    uri = parse_uri("sip:alice@[2001:DB8::10]:5070")
    assert isinstance(uri, SipURI) and uri.host == "[2001:db8::10]" and uri.port == 5070
    assert uri.host_port == "[2001:db8::10]:5070"
    assert str(uri) == "sip:alice@[2001:db8::10]:5070"


def test_bare_ipv6_host_is_rejected() -> None:
    with pytest.raises(SipParseError):
        parse_uri("sip:2001:db8::10")


@pytest.mark.parametrize("text", [
    "sip:",
    "sip:alice@",
    "sip:alice@host:99999",
    "sip:alice@host:port",
    "sip:ali ce@host",
    "sip:alice@host;=x",
    "sip:<alice@host>",
    "sip:alice@host?noequals",
    "nocolon",
    "tel:",
])
def test_malformed_uris_raise_sip_parse_error(text: str) -> None:
    with pytest.raises(SipParseError) as err:
        parse_uri(text)
    assert err.value.status == 400


def test_tel_uri_with_parameters() -> None:
    uri = parse_uri("tel:+81-3-1234-5678;phone-context=example.jp")
    assert isinstance(uri, TelURI)
    assert uri.number == "+81-3-1234-5678" and uri.params == {"phone-context": "example.jp"}
    assert str(uri) == "tel:+81-3-1234-5678;phone-context=example.jp"
    assert uri.equivalent(parse_uri("tel:+81312345678;PHONE-CONTEXT=Example.JP"))


def test_unknown_schemes_are_kept_opaque() -> None:
    uri = parse_uri("urn:service:sos")
    assert isinstance(uri, AbsoluteURI) and uri.scheme == "urn" and uri.opaque == "service:sos"
    assert str(uri) == "urn:service:sos"


def test_request_uri_may_not_carry_headers() -> None:
    check_request_uri("sip:alice@example.com;lr")
    with pytest.raises(SipParseError):
        check_request_uri("sip:alice@example.com?Route=%3Csip:x%3E")


# RFC 3261 section 19.1.4: equivalent and non-equivalent pairs taken from the RFC.
@pytest.mark.parametrize(("a", "b"), [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
])
def test_equivalent_uris(a: str, b: str) -> None:
    ua, ub = parse_uri(a), parse_uri(b)
    assert ua.equivalent(ub) and ub.equivalent(ua)


@pytest.mark.parametrize(("a", "b"), [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:alice@example.com", "sips:alice@example.com"),
])
def test_non_equivalent_uris(a: str, b: str) -> None:
    ua, ub = parse_uri(a), parse_uri(b)
    assert not ua.equivalent(ub) and not ub.equivalent(ua)


def test_name_addr_with_quoted_display_and_params() -> None:
    na = parse_name_addr('"Yamada, Taro \\"boss\\"" <sip:taro@example.jp;transport=udp>;tag=abc;expires=60')
    assert na.display == 'Yamada, Taro "boss"'
    assert isinstance(na.uri, SipURI) and na.uri.params == {"transport": "udp"}
    assert na.tag == "abc" and na.expires == 60
    again = parse_name_addr(str(na))
    assert again == na


def test_name_addr_with_token_display_name() -> None:
    na = parse_name_addr("Taro  Yamada <sip:taro@example.jp>")
    assert na.display == "Taro  Yamada"


def test_addr_spec_params_belong_to_the_header() -> None:
    na = parse_name_addr("sip:taro@example.jp;tag=xyz")
    assert na.display is None and na.tag == "xyz" and isinstance(na.uri, SipURI) and na.uri.params == {}


def test_name_addr_tag_setter_and_q() -> None:
    na = parse_name_addr("<sip:a@b>;q=0.5")
    assert na.q == 0.5 and na.tag is None
    na.tag = "t1"
    assert str(na) == "<sip:a@b>;q=0.5;tag=t1"
    na.tag = None
    assert "tag" not in na.params


def test_name_addr_quoted_param_value_is_kept_verbatim() -> None:
    na = parse_name_addr('<sip:a@b>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"')
    assert na.params["+sip.instance"] == '"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"'


@pytest.mark.parametrize("text", [
    '"unbalanced <sip:a@b>',
    "< sip:a@b >",
    "Bell, Alexander <sip:a@b>",
    "sip:a@b?x=y",
    "<sip:a@b",
    "<sip:a@b>;;",
    "",
])
def test_malformed_name_addr_raises(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_name_addr(text)


def test_name_addr_str_quotes_display() -> None:
    assert str(NameAddr("Sato", parse_uri("sip:s@x"), {"tag": "1"})) == '"Sato" <sip:s@x>;tag=1'


def test_via_fields_and_params() -> None:
    (via,) = parse_via("SIP/2.0/udp Host.Example.com:5062;branch=z9hG4bK77;received=192.0.2.1;rport=4000")
    assert (via.transport, via.host, via.port) == ("UDP", "host.example.com", 5062)
    assert via.branch == "z9hG4bK77" and via.received == "192.0.2.1" and via.rport == 4000
    assert via.rfc3261_branch and via.sent_by == ("host.example.com", 5062)
    assert str(via) == "SIP/2.0/UDP host.example.com:5062;branch=z9hG4bK77;received=192.0.2.1;rport=4000"


def test_via_rport_without_value_is_true_and_absent_is_none() -> None:
    assert parse_via("SIP/2.0/UDP h;rport;branch=z9hG4bKx")[0].rport is True
    assert parse_via("SIP/2.0/UDP h;branch=z9hG4bKx")[0].rport is None


def test_via_header_with_several_entries_and_spaces() -> None:
    vias = parse_via("SIP / 2.0 / TCP a.example.com ; branch = z9hG4bK1 , SIP/2.0/WS [2001:db8::1]:8080;branch=z9hG4bK2")
    assert [(v.transport, v.host, v.port, v.branch) for v in vias] == [
        ("TCP", "a.example.com", None, "z9hG4bK1"), ("WS", "[2001:db8::1]", 8080, "z9hG4bK2")]


def test_via_without_magic_cookie_is_an_rfc2543_branch() -> None:
    assert not parse_via("SIP/2.0/UDP h;branch=1234")[0].rfc3261_branch


@pytest.mark.parametrize("text", [
    "SIP/2.0/UDP",
    "SIP/2.0 host",
    "SIP/2.0/UDP host;;",
    "SIP/2.0/UDP host:99999",
    "SIP/2.0/UDP host;branch=a,",
])
def test_malformed_via_raises(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(text)


def test_via_dataclass_serialises_without_port() -> None:
    assert str(Via("TLS", "example.com", None, {"branch": "z9hG4bKa"})) == "SIP/2.0/TLS example.com;branch=z9hG4bKa"


def test_comma_split_ignores_commas_in_quotes_and_angle_brackets() -> None:
    value = '"Doe, John" <sip:j@x;a=1,2>;q=1, <sip:k@y>, sip:l@z'
    assert split_comma_list(value) == ['"Doe, John" <sip:j@x;a=1,2>;q=1', "<sip:k@y>", "sip:l@z"]
    assert split_comma_list('"a\\", b" <sip:x@y>, <sip:z@w>') == ['"a\\", b" <sip:x@y>', "<sip:z@w>"]
