"""Trunk logic without sockets: routing both ways, the INVITE a carrier sees, answering its
challenge, and the carrier registration state machine on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.calls.trunks import (
    OutboundAuth,
    OutboundRoute,
    TrunkRegistration,
    TrunkRegistrationChanged,
    TrunkRouter,
    Trunks,
    calling_number,
    resend_with,
    shape_outbound,
)
from softswitch.config import Trunk
from softswitch.events import Event
from softswitch.security import Authenticator, Credentials
from softswitch.sip.auth import DigestClient, compute_response, ha1, parse_auth_header
from softswitch.sip.message import Request, Response, make_response
from softswitch.yamlconf import ConfigError
from tests.nodes import node_config

USERS = ["1001", "01", "u0001", "alice"]


def trunk(**kw: Any) -> Trunk:
    data: dict[str, Any] = {"name": "carrier", "host": "192.0.2.10", **kw}
    return Trunk.model_validate(data)


def invite(ruri: str = "sip:0312345678@192.0.2.1", *, to: str | None = None, from_: str = "<sip:09011112222@c>",
           privacy: str | None = None) -> Request:
    req = Request("INVITE", ruri)
    h = req.headers
    h.add("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKabc;rport")
    h.add("Max-Forwards", "70")
    h.add("From", f"{from_};tag=f1")
    h.add("To", to or f"<{ruri}>")
    h.add("Call-ID", "c1@x")
    h.add("CSeq", "1 INVITE")
    if privacy:
        h.add("Privacy", privacy)
    return req


# -- inbound ---------------------------------------------------------------------------------------


def test_a_source_inside_a_trunks_networks_belongs_to_that_trunk():
    router = TrunkRouter([trunk(addresses=["192.0.2.0/28", "2001:db8::/64"]),
                          trunk(name="other", addresses=["198.51.100.7/32"])], USERS)
    assert router.trunk_for_source("192.0.2.5").name == "carrier"
    assert router.trunk_for_source("[2001:db8::1]").name == "carrier"
    assert router.trunk_for_source("198.51.100.7").name == "other"
    assert router.trunk_for_source("192.0.2.16") is None
    assert router.trunk_for_source("198.51.100.8") is None
    assert router.trunk_for_source("carrier.example") is None


def test_the_did_is_the_request_uri_number_in_national_form():
    router = TrunkRouter([trunk()], USERS)
    t = router.trunks[0]
    assert router.did_of(t, invite("sip:+81312345678@192.0.2.1")) == "0312345678"
    assert router.did_of(t, invite("tel:+81-3-1234-5678", to="<sip:x@y>")) == "0312345678"


def test_the_did_comes_from_to_when_the_request_uri_is_the_registration_user():
    router = TrunkRouter([trunk(username="acme", password="pw")], USERS)
    req = invite("sip:acme@192.0.2.1:5060", to="<sip:0355550001@carrier>")
    assert router.did_of(router.trunks[0], req) == "0355550001"


def test_a_mapped_did_reaches_its_user_and_others_reach_the_user_their_last_digits_spell():
    router = TrunkRouter([trunk(dids=["03-5555-0001=u0001", "0355551001"])], USERS)
    t = router.trunks[0]
    assert router.user_for_did(t, "0355550001") == "u0001"
    assert router.user_for_did(t, "0355551001") == "1001"  # longest matching id, not "01"
    assert router.user_for_did(t, "0355559999") is None  # not one of the trunk's numbers


def test_a_trunk_without_dids_takes_any_number_and_routes_by_last_digits():
    router = TrunkRouter([trunk()], USERS)
    t = router.trunks[0]
    assert router.user_for_did(t, "0312341001") == "1001"
    assert router.user_for_did(t, "0312340001") == "01"
    assert router.user_for_did(t, "0312349999") is None
    assert router.user_for_did(t, "alice") == "alice"


def test_inbound_decision_refuses_an_unknown_did_with_404():
    router = TrunkRouter([trunk(dids=["0355550001=u0001"])], USERS)
    t = router.trunks[0]
    ok = router.inbound(t, invite("sip:0355550001@me"))
    assert (ok.user, ok.did, ok.caller, ok.status) == ("u0001", "0355550001", "09011112222", 0)
    refused = router.inbound(t, invite("sip:0355550002@me"))
    assert (refused.user, refused.status) == (None, 404)


def test_dids_with_a_bad_number_or_an_unknown_user_are_config_errors():
    with pytest.raises(ConfigError) as err:
        TrunkRouter([trunk(dids=["03-5555=u0001", "0355550001=nobody"])], USERS)
    text = str(err.value)
    assert "'03-5555=u0001'" in text and "have 10 digits" in text
    assert "unknown user 'nobody'" in text


@pytest.mark.parametrize(
    ("from_", "privacy", "expected"),
    [
        ("<sip:+819011112222@c>", None, "09011112222"),
        ("<sip:0311112222@c>", None, "0311112222"),
        ("<sip:0311112222@c>", "id", "anonymous"),
        ('"Anonymous" <sip:anonymous@anonymous.invalid>', None, "anonymous"),
        ("<sip:c>", None, "anonymous"),
        ("<sip:gateway7@c>", None, "gateway7"),
    ],
)
def test_the_calling_number_is_normalised_or_anonymous_when_withheld(from_, privacy, expected):
    assert calling_number(invite(from_=from_, privacy=privacy)) == expected


def test_the_asserted_identity_gives_the_number_when_from_has_none_but_never_unmasks_a_withheld_call():
    req = invite(from_="<sip:gateway7@c>")
    req.headers.add("P-Asserted-Identity", "<sip:+81311112222@carrier>, <tel:+81311112222>")
    assert calling_number(req) == "0311112222"
    withheld = invite(from_='"Anonymous" <sip:anonymous@anonymous.invalid>', privacy="id")
    withheld.headers.add("P-Asserted-Identity", "<sip:+81311112222@carrier>")
    assert calling_number(withheld) == "anonymous"
    broken = invite(from_="<sip:gateway7@c>")
    broken.headers.add("P-Asserted-Identity", "<<<")
    assert calling_number(broken) == "gateway7"


# -- outbound routing and shaping ------------------------------------------------------------------


def test_the_longest_prefix_picks_the_trunk_and_its_form():
    router = TrunkRouter([trunk(name="national", prefixes=["0"]),
                          trunk(name="mobile", prefixes=["090", "080"]),
                          trunk(name="e164", prefixes=["+8112"])], USERS)
    assert router.route_number("03-1234-5678").trunk.name == "national"
    assert router.route_number("090-1234-5678").trunk.name == "mobile"
    route = router.route_number("0120-123-456")
    assert route.trunk.name == "e164" and route.e164 and route.dialled == "+81120123456"
    assert router.route_number("1840312345678").number.national == "0312345678"


def test_numbers_no_trunk_carries_and_non_numbers_are_not_routed():
    router = TrunkRouter([trunk(prefixes=["03"])], USERS)
    assert router.route_number("0612345678") is None
    assert router.route_number("alice") is None
    assert router.route_number("031234") is None  # refused as a number, so never sent out


def test_a_named_trunk_carries_the_number_in_the_form_its_prefixes_are_written_in():
    router = TrunkRouter([trunk(name="national", prefixes=["0"]), trunk(name="e164", prefixes=["+81"]),
                          trunk(name="bare")], USERS)
    assert router.route_number("0312345678", via="e164").dialled == "+81312345678"
    assert router.route_number("+81312345678", via="national").dialled == "0312345678"
    via_bare = router.route_number("0312345678", via="bare")
    assert via_bare.trunk.name == "bare" and via_bare.dialled == "0312345678"
    assert router.route_number("0312345678", via="missing") is None
    assert router.route_number("not a number", via="national") is None


def test_on_equal_prefixes_the_first_trunk_wins():
    router = TrunkRouter([trunk(name="a", prefixes=["0"]), trunk(name="b", prefixes=["0"])], USERS)
    assert router.route_number("0312345678").trunk.name == "a"


def route_for(dialled: str, **kw: Any) -> OutboundRoute:
    route = TrunkRouter([trunk(**kw)], USERS).route_number(dialled)
    assert route is not None
    return route


def phone_invite() -> Request:
    req = invite("sip:0312345678@192.0.2.10", from_='"Op 1" <sip:u0001@pbx>')
    req.headers.add("P-Asserted-Identity", "<sip:u0001@pbx>")
    req.headers.add("Contact", "<sip:u0001@192.0.2.1:5060>")
    return req


def test_the_carrier_sees_the_trunk_caller_id_in_national_form_and_an_asserted_identity():
    req = phone_invite()
    shape_outbound(req, route_for("03-1234-5678", prefixes=["0"], caller_id="+81-3-5555-0000"), "u0001",
                   "<sip:0355550000@192.0.2.1:5060>")
    assert req.uri == "sip:0312345678@192.0.2.10"
    assert req.to.uri.user == "0312345678"
    assert str(req.from_.uri) == "sip:0355550000@192.0.2.10" and req.from_.tag == "f1"
    assert req.headers.values("P-Asserted-Identity") == ["<sip:0355550000@192.0.2.10>"]
    assert "Privacy" not in req.headers
    assert req.headers.get("Contact") == "<sip:0355550000@192.0.2.1:5060>"


def test_184_sends_an_anonymous_from_with_privacy_id_and_keeps_the_identity_for_the_carrier():
    req = phone_invite()
    shape_outbound(req, route_for("184 03 1234 5678", prefixes=["+81"], caller_id="0355550000"), "u0001",
                   "<sip:anonymous@192.0.2.1:5060>")
    assert req.uri == "sip:+81312345678@192.0.2.10"
    assert req.from_.uri.user == "anonymous" and req.from_.tag == "f1"
    assert req.headers.get("Privacy") == "id"
    assert req.headers.values("P-Asserted-Identity") == ["<sip:+81355550000@192.0.2.10>"]


def test_186_presents_the_caller_id():
    req = phone_invite()
    shape_outbound(req, route_for("1860312345678", prefixes=["0"], caller_id="0355550000"), "u0001", "<sip:x@h>")
    assert req.from_.uri.user == "0355550000" and "Privacy" not in req.headers


def test_a_trunk_on_another_port_and_transport_is_named_in_the_request_uri():
    req = phone_invite()
    shape_outbound(req, route_for("0312345678", prefixes=["0"], port=5080, transport="tcp"), "u0001", "<sip:x@h>")
    assert req.uri == "sip:0312345678@192.0.2.10:5080;transport=tcp"


def test_without_caller_id_the_trunk_username_then_the_caller_is_presented():
    assert route_for("0312345678", prefixes=["0"], username="acme", password="pw").presented("u1") == "acme"
    assert route_for("0312345678", prefixes=["0"]).presented("u1") == "u1"


# -- answering the carrier's challenge ---------------------------------------------------------------


def challenge(req: Request, status: int = 401, *, stale: bool = False, nonce: str = "n1") -> Response:
    resp = make_response(req, status, to_tag="carrier")
    header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    resp.headers.add(header, f'Digest realm="carrier.example", nonce="{nonce}", algorithm=MD5'
                             + (", stale=true" if stale else ""))
    return resp


def test_a_401_is_answered_with_credentials_next_cseq_new_branch_same_call():
    first = phone_invite()
    auth = OutboundAuth("acme", "s3cret")
    again = auth(first, challenge(first))
    assert again is not None
    assert again.call_id == first.call_id and again.from_.tag == first.from_.tag
    assert again.cseq == (2, "INVITE")
    assert again.top_via.branch != first.top_via.branch and again.top_via.branch.startswith("z9hG4bK")
    assert len(again.headers.values("Via")) == 1
    _, params = parse_auth_header(again.headers.get("Authorization"))
    expected = compute_response(algorithm="MD5", ha1_value=ha1("acme", "carrier.example", "s3cret"),
                                nonce="n1", method="INVITE", uri=first.uri)
    assert params["response"] == expected and params["username"] == "acme"
    assert "Authorization" not in first.headers  # the original is untouched


def test_a_407_is_answered_with_proxy_authorization():
    first = phone_invite()
    again = OutboundAuth("acme", "s3cret")(first, challenge(first, 407))
    assert again is not None and "Proxy-Authorization" in again.headers and "Authorization" not in again.headers


def test_a_second_challenge_means_wrong_credentials_unless_the_nonce_was_stale():
    first = phone_invite()
    auth = OutboundAuth("acme", "s3cret")
    second = auth(first, challenge(first))
    assert auth(second, challenge(second, nonce="n2")) is None

    auth = OutboundAuth("acme", "s3cret")
    second = auth(first, challenge(first))
    third = auth(second, challenge(second, stale=True, nonce="n2"))
    assert third is not None and third.cseq == (3, "INVITE")
    assert auth(third, challenge(third, stale=True, nonce="n3")) is None  # bounded


def test_a_challenge_without_a_digest_header_or_another_status_is_not_answered():
    first = phone_invite()
    assert OutboundAuth("a", "b")(first, make_response(first, 401, to_tag="x")) is None
    assert OutboundAuth("a", "b")(first, make_response(first, 403, to_tag="x")) is None


def test_resend_with_sets_the_header_once():
    first = phone_invite()
    first.headers.add("Authorization", "old")
    again = resend_with(first, "Authorization", "new")
    assert again.headers.values("Authorization") == ["new"]


# -- registration --------------------------------------------------------------------------------------


def registration(**kw: Any) -> TrunkRegistration:
    args: dict[str, Any] = {
        "trunk": "carrier", "registrar": "sip:192.0.2.10", "aor": "sip:acme@192.0.2.10", "username": "acme",
        "password": "s3cret", "contact": "<sip:acme@192.0.2.1:5060>", "via": "SIP/2.0/UDP 192.0.2.1:5060",
        "expires": 600, "retry_base": 5.0, "retry_max": 60.0, **kw,
    }
    return TrunkRegistration(**args)


def ok(req: Request, expires: int | None = None, *, contact_expires: int | None = None) -> Response:
    resp = make_response(req, 200, to_tag="r")
    if contact_expires is not None:
        resp.headers.add("Contact", f"<sip:acme@192.0.2.1:5060>;expires={contact_expires}")
    if expires is not None:
        resp.headers.add("Expires", str(expires))
    return resp


def registered(reg: TrunkRegistration, now: float = 0.0, granted: int = 600) -> Request:
    first = reg.start(now)
    second = reg.on_response(challenge(first), now)
    assert second is not None
    assert reg.on_response(ok(second, contact_expires=granted), now) is None
    return second


def test_the_first_register_names_the_aor_contact_and_requested_expiry():
    reg = registration()
    req = reg.start(0.0)
    assert req.method == "REGISTER" and req.uri == "sip:192.0.2.10"
    assert str(req.from_.uri) == str(req.to.uri) == "sip:acme@192.0.2.10"
    assert req.headers.get("Contact") == "<sip:acme@192.0.2.1:5060>"
    assert req.headers.get("Expires") == "600" and req.cseq == (1, "REGISTER")
    assert reg.state == "registering"


def test_the_challenge_is_answered_in_the_same_call_id_and_the_grant_sets_the_refresh_time():
    reg = registration()
    first = reg.start(100.0)
    second = reg.on_response(challenge(first), 100.0)
    assert second is not None and second.call_id == first.call_id and second.cseq == (2, "REGISTER")
    assert second.from_.tag == first.from_.tag
    _, params = parse_auth_header(second.headers.get("Authorization"))
    assert params["uri"] == "sip:192.0.2.10"
    reg.on_response(ok(second, contact_expires=300), 101.0)
    assert (reg.state, reg.expires, reg.status) == ("registered", 300, 200)
    assert reg.deadline == 101.0 + 270.0  # 30 s before expiry


def test_a_short_grant_is_refreshed_halfway_and_the_refresh_starts_without_credentials():
    reg = registration()
    registered(reg, 0.0, granted=2)
    assert reg.deadline == 1.0
    assert reg.on_timer(0.9) is None
    refresh = reg.on_timer(1.0)
    assert refresh is not None and refresh.cseq == (3, "REGISTER") and "Authorization" not in refresh.headers
    assert reg.state == "registered"  # still registered while the refresh is under way
    assert reg.on_timer(5.0) is None  # one REGISTER at a time


def test_the_grant_falls_back_to_the_expires_header_then_to_the_request():
    reg = registration()
    req = reg.start(0.0)
    reg.on_response(ok(req, expires=120), 0.0)
    assert reg.expires == 120
    reg = registration(expires=90)
    req = reg.start(0.0)
    reg.on_response(ok(req), 0.0)
    assert reg.expires == 90


def test_wrong_credentials_back_off_exponentially_up_to_the_cap_and_success_resets():
    reg = registration(retry_base=5.0, retry_max=30.0)
    now = 0.0
    waits = []
    for _ in range(5):
        req = reg.start(now) if reg.state == "idle" else reg.on_timer(now)
        assert req is not None
        again = reg.on_response(challenge(req), now)
        assert again is not None
        assert reg.on_response(challenge(again, nonce="other"), now) is None
        assert reg.state == "retrying" and reg.status == 401
        waits.append(reg.retry_in)
        now = reg.deadline
    assert waits == [5.0, 10.0, 20.0, 30.0, 30.0]
    req = reg.on_timer(now)
    assert req is not None
    reg.on_response(ok(req), now)
    assert reg.state == "registered" and reg.failures == 0


def test_a_timeout_retries_after_the_back_off_with_status_408():
    reg = registration()
    reg.start(0.0)
    reg.on_timeout(32.0)
    assert (reg.state, reg.status, reg.deadline) == ("retrying", 408, 37.0)
    assert reg.on_timer(36.9) is None
    assert reg.on_timer(37.0) is not None


def test_retry_after_from_the_carrier_is_respected():
    reg = registration()
    req = reg.start(0.0)
    resp = make_response(req, 503, to_tag="r")
    resp.headers.add("Retry-After", "120")
    reg.on_response(resp, 0.0)
    assert reg.retry_in == 120.0 and reg.deadline == 120.0


def test_interval_too_brief_is_retried_at_once_with_min_expires():
    reg = registration(expires=60)
    req = reg.start(0.0)
    resp = make_response(req, 423, to_tag="r")
    resp.headers.add("Min-Expires", "3600")
    again = reg.on_response(resp, 0.0)
    assert again is not None and again.headers.get("Expires") == "3600"


def test_a_late_answer_to_an_earlier_register_is_ignored():
    reg = registration()
    first = reg.start(0.0)
    second = reg.on_response(challenge(first), 0.0)
    assert second is not None
    assert reg.on_response(ok(first), 0.0) is None  # CSeq 1 is no longer ours
    assert reg.state == "registering"


def test_stopping_unregisters_with_expires_zero_only_when_registered():
    reg = registration()
    registered(reg)
    bye = reg.stop(10.0)
    assert bye is not None and bye.headers.get("Expires") == "0" and reg.state == "stopped"
    assert reg.on_timer(1e9) is None
    idle = registration()
    idle.start(0.0)
    assert idle.stop(1.0) is None


@settings(max_examples=100, deadline=None)
@given(st.floats(0.1, 60.0), st.floats(1.0, 3600.0), st.integers(1, 40))
def test_back_off_never_shrinks_and_never_exceeds_the_cap(base, cap, failures):
    reg = registration(retry_base=base, retry_max=cap)
    reg.start(0.0)
    previous = 0.0
    for _ in range(failures):
        reg.on_timeout(0.0)
        assert previous <= reg.retry_in <= max(cap, base)
        previous = reg.retry_in
        assert reg.on_timer(reg.deadline) is not None


def test_the_registration_event_round_trips_through_its_dict():
    event = TrunkRegistrationChanged(ts=1.0, trunk="carrier", state="registered", status=200, expires=60)
    assert Event.from_dict(event.to_dict()) == event



# -- recognising a carrier by its login -----------------------------------------------------------------


def answered_invite(auth: Authenticator, username: str, password: str) -> Request:
    req = invite("sip:0355550001@test.local")
    challenge_resp = auth.authenticate(req, "198.51.100.9", 0.0)
    assert isinstance(challenge_resp, Response) and challenge_resp.status == 401
    value = DigestClient().authorization(challenge_resp.headers.values("WWW-Authenticate"), "INVITE", req.uri,
                                         username, password)
    again = resend_with(req, "Authorization", value)
    return again


def test_a_trunk_login_in_answer_to_the_challenge_identifies_the_trunk_but_a_user_id_never_does(tmp_path):
    config = node_config(tmp_path, users=[("u0001", "pw1"), ("shared", "pw2")], trunks=[
        {"name": "carrier", "host": "192.0.2.10", "username": "acme", "password": "s3cret"},
        {"name": "clash", "host": "192.0.2.11", "username": "shared", "password": "trunkpw"},
    ])
    auth = Authenticator("test.local", [Credentials("u0001", "pw1"), Credentials("shared", "pw2")],
                         secret=b"k" * 32, algorithms=("MD5",))
    trunks = Trunks(None, config, publish=lambda e: None)  # type: ignore[arg-type]  # no calls placed
    found = trunks.by_digest(answered_invite(auth, "acme", "s3cret"), auth, 0.0)
    assert found is not None and found.name == "carrier"
    assert trunks.by_digest(answered_invite(auth, "acme", "wrong"), auth, 0.0) is None
    assert trunks.by_digest(answered_invite(auth, "shared", "trunkpw"), auth, 0.0) is None
    assert trunks.by_digest(invite(), auth, 0.0) is None  # no credentials at all
