"""SDP parse/serialise and offer/answer for G.711 (RFC 4566, RFC 3264, RFC 4475, RFC 5118)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media import sdp

# RFC 4475 "sdp01" (Unacceptable Accept Offering): the SDP body of that INVITE; the 406 is the SIP side's job
RFC4475_SDP01 = "v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n"

# RFC 5118 4.6 "ipv6-in-sdp": IPv6 addresses in o= and c= without brackets
RFC5118_IPV6 = (
    "v=0\r\no=assistant 971731711378798081 0 IN IP6 2001:db8::20\r\ns=Live video feed for today's meeting\r\n"
    "c=IN IP6 2001:db8::20\r\nt=3338481189 3370017201\r\nm=audio 6000 RTP/AVP 2\r\na=rtpmap:2 G726-32/8000\r\n"
    "m=video 6024 RTP/AVP 107\r\na=rtpmap:107 H263-1998/90000\r\n"
)

PHONE_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=call\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)


def test_rfc4475_sdp01_answer_accepts_pcmu_and_rejects_video_with_port_zero() -> None:
    offer = sdp.parse(RFC4475_SDP01)
    assert offer.origin.address == "192.0.2.5" and [m.media for m in offer.media] == ["audio", "video"]
    assert sdp.unacceptable_reason(offer) is None
    answer, neg = sdp.answer(offer, "203.0.113.1", 20000)
    assert (neg.codec, neg.payload_type, neg.telephone_event_pt) == ("PCMU", 0, None)
    assert (neg.remote_address, neg.remote_port, neg.direction) == ("192.0.2.5", 49217, "sendrecv")
    assert [(m.media, m.port) for m in answer.media] == [("audio", 20000), ("video", 0)]
    assert answer.media[0].fmts == ["0"]
    again = sdp.parse(answer.serialize())
    assert [(m.media, m.port, m.fmts) for m in again.media] == [("audio", 20000, ["0"]), ("video", 0, ["31"])]


def test_rfc5118_ipv6_in_sdp_parses_bare_addresses_and_is_rejected_for_g726_only() -> None:
    offer = sdp.parse(RFC5118_IPV6)
    assert offer.connection == sdp.Connection("2001:db8::20", "IP6")
    assert offer.origin.addrtype == "IP6"
    assert sdp.unacceptable_reason(offer) == "No common codec (PCMU or PCMA required)"
    with pytest.raises(sdp.SdpError, match="No common codec"):
        sdp.answer(offer, "2001:db8::1", 20000)


def test_ipv6_offer_with_pcmu_gets_an_ipv6_answer() -> None:
    offer = sdp.parse(RFC5118_IPV6.replace("RTP/AVP 2\r\na=rtpmap:2 G726-32/8000", "RTP/AVP 0"))
    answer, neg = sdp.answer(offer, "2001:db8::1", 20002)
    assert neg.remote_address == "2001:db8::20"
    text = answer.serialize()
    assert "c=IN IP6 2001:db8::1\r\n" in text and "o=softswitch 0 0 IN IP6 2001:db8::1\r\n" in text


def test_answer_honours_the_offerers_codec_order_and_keeps_its_telephone_event_pt() -> None:
    answer, neg = sdp.answer(sdp.parse(PHONE_OFFER), "198.51.100.1", 20004)
    assert (neg.codec, neg.payload_type, neg.telephone_event_pt) == ("PCMA", 8, 101)
    m = answer.media[0]
    assert m.fmts == ["8", "101"]
    assert m.rtpmap() == {8: ("PCMA", 8000), 101: ("telephone-event", 8000)}
    assert m.attr("ptime") == "20" and m.direction == "sendrecv"
    assert answer.serialize().endswith("\r\n") and "\n" not in answer.serialize().replace("\r\n", "")


def test_codec_preference_can_restrict_to_pcmu() -> None:
    _, neg = sdp.answer(sdp.parse(PHONE_OFFER), "198.51.100.1", 20004, codecs=("PCMU",))
    assert neg.codec == "PCMU" and neg.payload_type == 0


def test_dynamic_payload_type_with_rtpmap_is_recognised() -> None:
    body = PHONE_OFFER.replace("RTP/AVP 9 8 0 101", "RTP/AVP 97 96").replace(
        "a=rtpmap:9 G722/8000\r\n", "a=rtpmap:97 pcmu/8000\r\na=rtpmap:96 telephone-event/8000\r\n"
    )
    neg = sdp.negotiate(sdp.parse(body))
    assert neg is not None and (neg.codec, neg.payload_type, neg.telephone_event_pt) == ("PCMU", 97, 96)


@pytest.mark.parametrize(
    ("replace", "by", "hold", "our_direction"),
    [
        ("a=sendrecv", "a=sendonly", True, "recvonly"),
        ("a=sendrecv", "a=inactive", True, "inactive"),
        ("a=sendrecv", "a=recvonly", False, "sendonly"),
        ("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0", True, "recvonly"),
        ("a=sendrecv", "a=sendrecv", False, "sendrecv"),
    ],
)
def test_hold_detection_and_answer_direction(replace: str, by: str, hold: bool, our_direction: str) -> None:
    offer = sdp.parse(PHONE_OFFER.replace(replace, by))
    assert sdp.is_hold(offer) is hold
    answer, neg = sdp.answer(offer, "198.51.100.1", 20004)
    assert neg.direction == our_direction
    assert answer.media[0].direction == our_direction


def test_session_level_direction_applies_when_media_has_none() -> None:
    body = PHONE_OFFER.replace("a=sendrecv\r\n", "").replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n")
    assert sdp.is_hold(sdp.parse(body))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (PHONE_OFFER.replace("RTP/AVP 9 8 0 101", "RTP/AVP 9"), "No common codec (PCMU or PCMA required)"),
        (PHONE_OFFER.replace("m=audio 40000", "m=audio 0"), "No audio stream offered"),
        (PHONE_OFFER.replace("m=audio", "m=video"), "No audio stream offered"),
        (PHONE_OFFER.replace("RTP/AVP", "RTP/SAVP"), "Unsupported media transport (only RTP/AVP)"),
        (PHONE_OFFER.replace("c=IN IP4 192.0.2.10\r\n", ""), "No connection address"),
    ],
)
def test_unacceptable_offers_get_a_488_reason(body: str, reason: str) -> None:
    offer = sdp.parse(body)
    assert sdp.unacceptable_reason(offer) == reason
    assert sdp.negotiate(offer) is None


def test_media_level_connection_overrides_session_level() -> None:
    body = PHONE_OFFER.replace("a=ptime:20", "c=IN IP4 192.0.2.99\r\na=ptime:20")
    neg = sdp.negotiate(sdp.parse(body))
    assert neg is not None and neg.remote_address == "192.0.2.99"


@pytest.mark.parametrize(
    "body",
    [
        "",
        "o=- 1 1 IN IP4 1.2.3.4\r\n",  # no v=
        "v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP9 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP6 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 99999 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nthis is not sdp\r\n",
        b"v=0\r\no=\xff\xfe 1 1 IN IP4 1.2.3.4\r\n",
    ],
)
def test_malformed_sdp_raises_sdp_error(body: str | bytes) -> None:
    with pytest.raises(sdp.SdpError):
        sdp.parse(body)


def test_parse_tolerates_lf_line_ends_and_keeps_unknown_lines() -> None:
    body = PHONE_OFFER.replace("\r\n", "\n").replace("s=call\n", "s=call\ni=info line\nb=AS:64\n")
    offer = sdp.parse(body)
    assert offer.other == ["i=info line", "b=AS:64"]
    assert "i=info line\r\n" in offer.serialize()


def test_our_offer_round_trips_and_negotiates_with_itself() -> None:
    o = sdp.offer("192.0.2.1", 20010, session_id=42, version=3)
    text = o.serialize()
    assert "m=audio 20010 RTP/AVP 0 8 101\r\n" in text and "a=fmtp:101 0-16\r\n" in text
    neg = sdp.negotiate(sdp.parse(text))
    assert neg is not None and (neg.codec, neg.telephone_event_pt, neg.remote_port, neg.remote_rtcp_port) == (
        "PCMU",
        101,
        20010,
        20011,
    )


def test_answer_can_put_the_other_side_on_hold() -> None:
    _, neg = sdp.answer(sdp.parse(PHONE_OFFER), "198.51.100.1", 20004, hold=True)
    assert neg.direction == "sendonly"


_SDP_LINES = st.sampled_from(
    [
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "o=- 1 1 IN IP6 2001:db8::1",
        "s=-",
        "t=0 0",
        "c=IN IP4 192.0.2.1",
        "c=IN IP6 ::",
        "c=IN IP4 0.0.0.0",
        "m=audio 4000 RTP/AVP 0 8 101",
        "m=audio 0 RTP/AVP 0",
        "m=video 5000 RTP/AVP 31",
        "m=audio 4000/2 RTP/AVP 97",
        "a=rtpmap:97 PCMA/8000/1",
        "a=rtpmap:101 telephone-event/8000",
        "a=rtpmap:x y",
        "a=sendonly",
        "a=inactive",
        "a=ptime:30",
        "a=ptime:abc",
        "a=fmtp:101 0-15",
        "b=AS:64",
        "i=x",
        "k=clear:x",
    ]
) | st.text(max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(_SDP_LINES, max_size=14))
def test_arbitrary_sdp_never_raises_anything_but_sdp_error(lines: list[str]) -> None:
    try:
        offer = sdp.parse("\r\n".join(lines))
    except sdp.SdpError:
        return
    reason = sdp.unacceptable_reason(offer)
    neg = sdp.negotiate(offer)
    assert (reason is None) == (neg is not None)
    if reason is None:
        answer, _ = sdp.answer(offer, "192.0.2.9", 20000)
        assert len(answer.media) == len(offer.media)
        sdp.parse(answer.serialize())
    sdp.is_hold(offer)
