"""Digest authentication: RFC test vectors, client/server round trips, nonce lifetime and replay, parsing."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.sip.auth import (
    ALGORITHMS,
    AuthError,
    AuthReason,
    DigestClient,
    DigestServer,
    StaticCredentials,
    build_challenge,
    compute_response,
    credentials_subject,
    find_credentials,
    ha1,
    parse_auth_header,
)

SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "pbx.example.jp"
RURI = "sip:pbx.example.jp"

RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def _server(**kwargs: object) -> DigestServer:
    return DigestServer(REALM, SECRET, **kwargs)  # type: ignore[arg-type]


def _users() -> StaticCredentials:
    return StaticCredentials({"alice": "wonderland", "bob": "builder"})


def _login(
    server: DigestServer,
    now: float = 0.0,
    *,
    user: str = "alice",
    password: str = "wonderland",
    client: DigestClient | None = None,
    challenges: list[str] | None = None,
    method: str = "REGISTER",
    uri: str = RURI,
    body: bytes = b"",
) -> str:
    client = client or DigestClient()
    return client.authorization(challenges or server.challenge(now), method, uri, user, password, body)


# ------------------------------------------------------------------------------------------ RFC vectors


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_client_reproduces_rfc7616_section_3_9_1_responses(algorithm: str, expected: str) -> None:
    value = DigestClient().authorization(
        RFC7616_CHALLENGE.format(alg=algorithm),
        "GET",
        "/dir/index.html",
        "Mufasa",
        "Circle of Life",
        cnonce=RFC7616_CNONCE,
    )
    _, params = parse_auth_header(value)
    assert params["response"] == expected
    assert params["nc"] == "00000001"
    assert params["qop"] == "auth"
    assert params["algorithm"] == algorithm
    assert params["opaque"] == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    assert params["cnonce"] == RFC7616_CNONCE


def test_compute_response_matches_rfc7616_sha256_vector_from_ha1() -> None:
    stored = ha1("Mufasa", "http-auth@example.org", "Circle of Life", "SHA-256")
    assert compute_response(
        algorithm="SHA-256",
        ha1_value=stored,
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce=RFC7616_CNONCE,
    ) == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def test_client_reproduces_rfc2617_example_without_algorithm_parameter() -> None:
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = DigestClient().authorization(
        challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b"
    )
    _, params = parse_auth_header(value)
    assert params["response"] == "6629fae49393a05397450978507c4ef1"
    assert "algorithm" not in params  # the challenge had none, MD5 is implied
    assert ha1("Mufasa", "testrealm@host.com", "Circle Of Life") == "939e7578ed9e3c518a452acee763bce9"


def test_response_without_qop_is_the_rfc2069_formula() -> None:
    # RFC 2617 3.2.2.1: with no qop, response = H(HA1 ":" nonce ":" HA2), computed here by hand.
    stored = ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    ha2 = hashlib.md5(b"GET:/dir/index.html").hexdigest()
    expected = hashlib.md5(f"{stored}:dcd98b7102dd2f0e8b11d0f600bfb0c093:{ha2}".encode()).hexdigest()
    assert compute_response(
        algorithm="MD5", ha1_value=stored, nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method="GET", uri="/dir/index.html",
    ) == expected


def test_sess_and_auth_int_follow_rfc7616_formulas() -> None:
    h = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    stored = ha1("u", "r", "p", "SHA-256")
    session = h(f"{stored}:n:c")
    ha2 = h(f"INVITE:sip:x:{hashlib.sha256(b'body').hexdigest()}")
    assert compute_response(
        algorithm="SHA-256-sess", ha1_value=stored, nonce="n", method="INVITE", uri="sip:x",
        qop="auth-int", nc="00000001", cnonce="c", body=b"body",
    ) == h(f"{session}:n:00000001:c:auth-int:{ha2}")


# ---------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("qop", ["auth", "auth-int"])
def test_client_and_server_agree_for_every_algorithm_and_qop(algorithm: str, qop: str) -> None:
    server = _server(algorithms=(algorithm,), qop=qop)
    header = _login(server, 1.0, body=b"v=0\r\n")
    result = server.verify("REGISTER", header, _users(), 2.0, body=b"v=0\r\n", request_uri=RURI)
    assert result.ok, result
    assert result.username == "alice"
    assert result.reason == AuthReason.OK
    assert result.algorithm == algorithm.upper()


def test_auth_int_detects_a_changed_body() -> None:
    server = _server(qop="auth-int")
    header = _login(server, body=b"original")
    result = server.verify("INVITE", header, _users(), 1.0, body=b"tampered")
    assert not result.ok and result.reason == "bad-credentials"


def test_server_that_offers_both_qops_accepts_either() -> None:
    server = _server(qop="auth,auth-int")
    assert 'qop="auth,auth-int"' in server.challenge(0.0)[0]
    assert server.verify("REGISTER", _login(server), _users(), 1.0).ok


def test_challenges_list_sha256_before_md5_with_one_shared_nonce() -> None:
    challenges = _server().challenge(10.0)
    assert len(challenges) == 2
    parsed = [parse_auth_header(c)[1] for c in challenges]
    assert [p["algorithm"] for p in parsed] == ["SHA-256", "MD5"]
    assert parsed[0]["nonce"] == parsed[1]["nonce"]
    assert all(p["realm"] == REALM and p["qop"] == "auth" and "stale" not in p for p in parsed)


def test_stale_challenge_carries_stale_true() -> None:
    for value in _server().challenge(0.0, stale=True):
        assert parse_auth_header(value)[1]["stale"] == "TRUE"


def test_client_picks_the_strongest_offered_algorithm() -> None:
    server = _server(algorithms=("MD5", "SHA-256"))
    header = DigestClient().authorization(server.challenge(0.0), "REGISTER", RURI, "alice", "wonderland")
    assert parse_auth_header(header)[1]["algorithm"] == "SHA-256"


def test_client_ignores_unknown_algorithms_and_schemes() -> None:
    challenges = [
        'Basic realm="x"',
        'Digest realm="r", nonce="n", algorithm=SHA-1024',
        'Digest realm="r", nonce="n2", algorithm=MD5, qop="auth"',
    ]
    header = DigestClient().authorization(challenges, "INVITE", "sip:1@r", "u", "p")
    assert parse_auth_header(header)[1]["nonce"] == "n2"


def test_client_refuses_when_no_challenge_is_answerable() -> None:
    with pytest.raises(AuthError):
        DigestClient().authorization('Digest realm="r", nonce="n", algorithm=SHA-1024', "INVITE", "sip:x", "u", "p")
    with pytest.raises(AuthError):
        DigestClient().authorization('Digest realm="r", nonce="n", qop="auth-conf"', "INVITE", "sip:x", "u", "p")
    with pytest.raises(AuthError):
        DigestClient().authorization("garbage ===", "INVITE", "sip:x", "u", "p")


def test_client_increments_nc_when_reusing_a_nonce_and_server_accepts_each() -> None:
    server = _server()
    client = DigestClient()
    challenges = server.challenge(0.0)
    for expected_nc in (1, 2, 3):
        header = _login(server, client=client, challenges=challenges)
        assert parse_auth_header(header)[1]["nc"] == f"{expected_nc:08x}"
        assert server.verify("REGISTER", header, _users(), 1.0).ok


def test_client_uses_a_fresh_cnonce_per_request() -> None:
    client = DigestClient()
    challenge = _server().challenge(0.0)
    first = parse_auth_header(_login(_server(), client=client, challenges=challenge))[1]["cnonce"]
    second = parse_auth_header(_login(_server(), client=client, challenges=challenge))[1]["cnonce"]
    assert first != second


def test_client_nonce_memory_is_bounded() -> None:
    client = DigestClient(max_nonces=4)
    for i in range(50):
        client.authorization(f'Digest realm="r", nonce="n{i}", qop="auth"', "REGISTER", "sip:r", "u", "p")
    assert len(client._nc) == 4


# ----------------------------------------------------------------------------------- nonce lifetime


def test_expired_nonce_with_right_password_is_stale_not_a_failure() -> None:
    server = _server(nonce_ttl=300)
    header = _login(server, 0.0)
    result = server.verify("REGISTER", header, _users(), 300.5)
    assert not result.ok
    assert result.stale
    assert result.reason == "stale-nonce"
    assert result.username is None


def test_nonce_is_still_fresh_at_exactly_its_ttl() -> None:
    server = _server(nonce_ttl=300)
    assert server.verify("REGISTER", _login(server, 0.0), _users(), 300.0).ok


def test_expired_nonce_with_wrong_password_is_a_plain_failure() -> None:
    server = _server(nonce_ttl=300)
    header = _login(server, 0.0, password="guess")
    result = server.verify("REGISTER", header, _users(), 1000.0)
    assert (result.ok, result.stale, result.reason) == (False, False, "bad-credentials")


def test_nonce_dated_far_in_the_future_is_stale() -> None:
    server = _server(nonce_ttl=300)
    header = _login(server, 10_000.0)
    assert server.verify("REGISTER", header, _users(), 0.0).stale


def test_stale_then_fresh_challenge_lets_the_client_in() -> None:
    server = _server(nonce_ttl=60)
    client = DigestClient()
    old = _login(server, 0.0, client=client)
    result = server.verify("REGISTER", old, _users(), 100.0)
    assert result.stale
    fresh = _login(server, client=client, challenges=server.challenge(100.0, stale=result.stale))
    assert server.verify("REGISTER", fresh, _users(), 100.1).ok


# ------------------------------------------------------------------------------------------- replays


def test_replayed_nonce_count_is_rejected() -> None:
    server = _server()
    header = _login(server)
    assert server.verify("REGISTER", header, _users(), 1.0).ok
    again = server.verify("REGISTER", header, _users(), 2.0)
    assert not again.ok
    assert again.reason == "replay"
    assert again.username is None


def test_lower_nonce_count_after_a_higher_one_is_rejected() -> None:
    server = _server()
    client = DigestClient()
    challenges = server.challenge(0.0)
    first = _login(server, client=client, challenges=challenges)
    second = _login(server, client=client, challenges=challenges)
    assert server.verify("REGISTER", second, _users(), 1.0).ok
    assert server.verify("REGISTER", first, _users(), 1.0).reason == "replay"


def test_nonce_count_zero_is_rejected() -> None:
    server = _server()
    header = _login(server).replace("nc=00000001", "nc=00000000")
    # The response was computed for nc=1, so recompute it honestly for nc=0 to test the nc rule alone.
    params = parse_auth_header(header)[1]
    params["response"] = compute_response(
        algorithm="SHA-256", ha1_value=ha1("alice", REALM, "wonderland", "SHA-256"),
        nonce=params["nonce"], method="REGISTER", uri=RURI, qop="auth", nc="00000000", cnonce=params["cnonce"],
    )
    forged = "Digest " + ", ".join(f'{k}="{v}"' for k, v in params.items())
    assert server.verify("REGISTER", forged, _users(), 1.0).reason == "replay"


def test_a_failed_attempt_does_not_burn_the_nonce_count() -> None:
    # An attacker who saw the nonce sends a huge nc with a wrong digest; the real client must still get in.
    server = _server()
    challenges = server.challenge(0.0)
    attacker = _login(server, password="guess", challenges=challenges).replace("nc=00000001", "nc=ffffffff")
    assert server.verify("REGISTER", attacker, _users(), 1.0).reason == "bad-credentials"
    assert server.verify("REGISTER", _login(server, challenges=challenges), _users(), 1.0).ok


def test_replay_memory_stays_bounded_and_evicted_nonces_are_not_replayable() -> None:
    server = _server(max_tracked_nonces=100)
    first = _login(server, 0.0)
    assert server.verify("REGISTER", first, _users(), 0.0).ok
    for i in range(1, 1000):
        assert server.verify("REGISTER", _login(server, i * 0.01), _users(), i * 0.01).ok
    assert server.tracked_nonces == 100
    # The first nonce's count was forgotten; replaying it must still fail (as stale, so clients recover).
    replay = server.verify("REGISTER", first, _users(), 10.0)
    assert not replay.ok and replay.stale


def test_expired_nonces_are_dropped_from_replay_memory() -> None:
    server = _server(nonce_ttl=10)
    for i in range(50):
        assert server.verify("REGISTER", _login(server, 0.0), _users(), 0.0 + i * 0.001).ok
    assert server.tracked_nonces == 50
    assert server.verify("REGISTER", _login(server, 100.0), _users(), 100.0).ok
    assert server.tracked_nonces == 1


# ----------------------------------------------------------------------------------- forged nonces


def _replace_param(header: str, name: str, value: str) -> str:
    scheme, params = parse_auth_header(header)
    params[name] = value
    return scheme + " " + ", ".join(f'{k}="{v}"' for k, v in params.items())


def test_tampered_nonce_is_rejected() -> None:
    server = _server()
    header = _login(server)
    nonce = parse_auth_header(header)[1]["nonce"]
    for i in range(len(nonce)):
        # Another valid hex digit, so the nonce still looks well formed and only the HMAC can tell.
        swapped = nonce[:i] + ("0" if nonce[i] != "0" else "1") + nonce[i + 1 :]
        # Re-sign with the real password: only the nonce's own integrity can catch this.
        forged = DigestClient().authorization(
            build_challenge(REALM, swapped, algorithm="SHA-256"), "REGISTER", RURI, "alice", "wonderland"
        )
        assert server.verify("REGISTER", forged, _users(), 1.0).reason == "bad-nonce", i


def test_refreshing_an_expired_nonce_timestamp_is_rejected() -> None:
    server = _server(nonce_ttl=300)
    old = parse_auth_header(server.challenge(0.0)[0])[1]["nonce"]
    fresh = parse_auth_header(server.challenge(1000.0)[0])[1]["nonce"]
    forged_nonce = fresh[:16] + old[16:]  # new timestamp, old random part and tag
    forged = DigestClient().authorization(
        build_challenge(REALM, forged_nonce, algorithm="SHA-256"), "REGISTER", RURI, "alice", "wonderland"
    )
    assert server.verify("REGISTER", forged, _users(), 1000.0).reason == "bad-nonce"


def test_nonce_from_another_secret_or_realm_is_rejected() -> None:
    server = _server()
    other_secret = DigestServer(REALM, b"x" * 32)
    other_realm = DigestServer("other.example.jp", SECRET)
    for foreign in (other_secret, other_realm):
        nonce = parse_auth_header(foreign.challenge(0.0)[0])[1]["nonce"]
        forged = DigestClient().authorization(
            build_challenge(REALM, nonce, algorithm="SHA-256"), "REGISTER", RURI, "alice", "wonderland"
        )
        assert server.verify("REGISTER", forged, _users(), 1.0).reason == "bad-nonce"


def test_made_up_nonce_is_rejected_even_with_the_right_password() -> None:
    server = _server()
    for nonce in ("", "abc", "A" * 64, "0" * 64, "g" * 64, "0" * 63):
        forged = DigestClient().authorization(
            build_challenge(REALM, nonce, algorithm="SHA-256"), "REGISTER", RURI, "alice", "wonderland"
        )
        result = server.verify("REGISTER", forged, _users(), 1.0)
        assert (result.ok, result.reason, result.username) == (False, "bad-nonce", None)


def test_foreign_nonce_with_right_password_is_stale_so_phones_recover_after_a_secret_change() -> None:
    before = DigestServer(REALM, b"old-secret-old-secret-old-secret")
    after = DigestServer(REALM, b"new-secret-new-secret-new-secret")
    client = DigestClient()
    result = after.verify("REGISTER", _login(before, client=client), _users(), 1.0)
    assert (result.ok, result.stale, result.reason) == (False, True, "bad-nonce")
    assert after.verify("REGISTER", _login(after, 1.0, client=client), _users(), 1.5).ok


def test_foreign_nonce_with_wrong_password_is_a_plain_failure() -> None:
    other = DigestServer(REALM, b"x" * 32)
    result = _server().verify("REGISTER", _login(other, password="guess"), _users(), 1.0)
    assert (result.ok, result.stale, result.reason) == (False, False, "bad-credentials")


def test_tampered_nonce_with_a_stale_digest_is_a_plain_failure() -> None:
    server = _server()
    header = _login(server)
    nonce = parse_auth_header(header)[1]["nonce"]
    tampered = _replace_param(header, "nonce", ("1" if nonce[0] != "1" else "2") + nonce[1:])
    result = server.verify("REGISTER", tampered, _users(), 1.0)
    assert (result.ok, result.stale, result.reason) == (False, False, "bad-credentials")


# -------------------------------------------------------------------------------- credential checks


def test_wrong_password_and_unknown_user_look_the_same() -> None:
    server = _server()
    wrong = server.verify("REGISTER", _login(server, password="guess"), _users(), 1.0)
    unknown = server.verify("REGISTER", _login(server, user="mallory", password="x"), _users(), 1.0)
    assert wrong.reason == unknown.reason == "bad-credentials"
    assert dataclasses.replace(wrong, claimed_username=None) == dataclasses.replace(unknown, claimed_username=None)
    assert (wrong.ok, wrong.username, wrong.stale) == (False, None, False)
    assert wrong.claimed_username == "alice" and unknown.claimed_username == "mallory"


def test_user_configured_by_ha1_authenticates() -> None:
    lookup = StaticCredentials(
        ha1s={
            ("carol", REALM, "SHA-256"): ha1("carol", REALM, "secret", "SHA-256").upper(),
            ("carol", REALM, "MD5"): ha1("carol", REALM, "secret", "MD5"),
        }
    )
    for algorithm in ("SHA-256", "MD5"):
        server = _server(algorithms=(algorithm,))
        result = server.verify("REGISTER", _login(server, user="carol", password="secret"), lookup, 1.0)
        assert result.ok and result.username == "carol"


def test_ha1_for_another_realm_does_not_authenticate() -> None:
    lookup = StaticCredentials()
    lookup.add_ha1("carol", REALM, "SHA-256", ha1("carol", "elsewhere", "secret", "SHA-256"))
    server = _server()
    assert server.verify("REGISTER", _login(server, user="carol", password="secret"), lookup, 1.0).reason == (
        "bad-credentials"
    )


def test_lookup_receives_base_algorithm_for_sess_variants() -> None:
    seen: list[tuple[str, str, str]] = []

    def lookup(username: str, realm: str, algorithm: str) -> str | None:
        seen.append((username, realm, algorithm))
        return ha1(username, realm, "wonderland", algorithm)

    server = _server(algorithms=("SHA-256-sess",))
    assert server.verify("REGISTER", _login(server), lookup, 1.0).ok
    assert seen == [("alice", REALM, "SHA-256")]


def test_lookup_returning_garbage_is_a_failure_not_a_crash() -> None:
    server = _server()
    assert server.verify("REGISTER", _login(server), lambda u, r, a: "xyz", 1.0).reason == "bad-credentials"


def test_digest_uri_must_match_the_request_uri() -> None:
    server = _server()
    header = _login(server, uri="sip:pbx.example.jp")
    assert server.verify("REGISTER", header, _users(), 1.0, request_uri="sip:other.example.jp").reason == (
        "uri-mismatch"
    )
    assert server.verify("REGISTER", header, _users(), 1.0, request_uri="sip:PBX.example.jp").ok


def test_method_is_covered_by_the_digest() -> None:
    server = _server()
    assert server.verify("INVITE", _login(server, method="REGISTER"), _users(), 1.0).reason == "bad-credentials"


def test_algorithm_not_offered_is_refused() -> None:
    md5_only = _server(algorithms=("MD5",))
    sha = _server(algorithms=("SHA-256",))
    header = _login(md5_only)
    assert sha.verify("REGISTER", header, _users(), 1.0).reason == "unsupported-algorithm"


def test_missing_qop_is_refused_when_qop_was_offered() -> None:
    server = _server()
    nonce = parse_auth_header(server.challenge(0.0)[0])[1]["nonce"]
    legacy = DigestClient().authorization(
        build_challenge(REALM, nonce, algorithm="SHA-256", qop=None), "REGISTER", RURI, "alice", "wonderland"
    )
    assert server.verify("REGISTER", legacy, _users(), 1.0).reason == "unsupported-qop"


def test_qop_token_case_is_hashed_as_sent() -> None:
    server = _server()
    params = parse_auth_header(_login(server))[1]
    params["qop"] = "AUTH"
    params["response"] = compute_response(
        algorithm="SHA-256", ha1_value=ha1("alice", REALM, "wonderland", "SHA-256"), nonce=params["nonce"],
        method="REGISTER", uri=RURI, qop="AUTH", nc=params["nc"], cnonce=params["cnonce"],
    )
    header = "Digest " + ", ".join(f'{k}="{v}"' for k, v in params.items())
    assert server.verify("REGISTER", header, _users(), 1.0).ok


def test_server_without_qop_accepts_rfc2069_clients() -> None:
    server = _server(qop=None)
    assert "qop" not in server.challenge(0.0)[0]
    assert server.verify("REGISTER", _login(server), _users(), 1.0).ok


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "malformed"),
        ("Digest", "malformed"),
        ('Basic dXNlcjpwYXNz', "malformed"),
        ('Bearer token="x"', "wrong-scheme"),
        (f'Digest username="alice", realm="{REALM}", nonce="n", uri="sip:x"', "malformed"),
        ('Digest username="a", realm="other", nonce="n", uri="u", response="r"', "wrong-realm"),
        (
            f'Digest username="a", realm="{REALM}", nonce="n", uri="u", response="r", qop=auth, nc=1, cnonce="c"',
            "malformed",
        ),
        (
            f'Digest username="a", realm="{REALM}", nonce="n", uri="u", response="r", qop=auth, cnonce="c"',
            "malformed",
        ),
    ],
)
def test_malformed_credentials_get_a_reason(header: str, reason: str) -> None:
    result = _server().verify("REGISTER", header, _users(), 1.0)
    assert (result.ok, result.reason) == (False, reason)


def test_extended_username_parameter_is_understood() -> None:
    server = _server()
    lookup = StaticCredentials({"Jäsøn": "pw"})
    header = _login(server, user="Jäsøn", password="pw")
    scheme, params = parse_auth_header(header)
    del params["username"]
    rebuilt = scheme + " username*=UTF-8''J%C3%A4s%C3%B8n, " + ", ".join(f'{k}="{v}"' for k, v in params.items())
    assert server.verify("REGISTER", rebuilt, lookup, 1.0).username == "Jäsøn"


def test_credentials_subject_names_user_realm_and_base_algorithm_for_async_lookups() -> None:
    server = _server(algorithms=("SHA-256-sess",))
    header = _login(server)
    subject = credentials_subject(header)
    assert subject == ("alice", REALM, "SHA-256")
    stored = ha1(*subject[:2], "wonderland", subject[2])
    assert server.verify("REGISTER", header, lambda u, r, a: stored, 1.0).ok
    assert credentials_subject("Basic abc") is None
    assert credentials_subject('Digest realm="r"') is None
    assert credentials_subject('Digest username="u", realm="r", algorithm=ROT13') is None


def test_find_credentials_picks_the_value_for_our_realm() -> None:
    mine = f'Digest username="a", realm="{REALM}", nonce="n", uri="u", response="r"'
    values = ["junk ===", 'Digest username="a", realm="carrier", nonce="n", uri="u", response="r"', mine]
    assert find_credentials(values, REALM) == mine
    assert find_credentials(values[:2], REALM) is None


def test_server_rejects_weak_configuration() -> None:
    with pytest.raises(ValueError):
        DigestServer(REALM, b"short")
    with pytest.raises(ValueError):
        DigestServer(REALM, SECRET, algorithms=())
    with pytest.raises(AuthError):
        DigestServer(REALM, SECRET, algorithms=("SHA-1",))
    with pytest.raises(ValueError):
        DigestServer(REALM, SECRET, qop="auth-conf")


# ------------------------------------------------------------------------------------------- parsing


def test_parse_handles_quotes_escapes_commas_and_case() -> None:
    scheme, params = parse_auth_header(
        'digest  USERNAME="a\\"b, c",realm = "r" ,,  NC=00000001 , qop=auth, empty="", opaque="x\\\\y",'
    )
    assert scheme == "digest"
    assert params == {"username": 'a"b, c', "realm": "r", "nc": "00000001", "qop": "auth", "empty": "", "opaque": "x\\y"}


def test_parse_accepts_utf8_in_quoted_strings() -> None:
    assert parse_auth_header('Digest username="山田", realm="コールセンター"')[1]["username"] == "山田"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "=Digest",
        'Digest username="unterminated',
        'Digest username="a"realm="b"',
        "Digest a=1 b=2",
        "Digest a=",
        "Digest =x",
        'Digest a="x", a="y"',
        'Digest A="x", a="y"',
        'Digest a="line\r\nInjected: yes"',
        "Digest a=\x00",
        'Digest a="\\',
        "Digest " + "a=b, " * 3000,
    ],
)
def test_parse_rejects_garbage_with_auth_error(value: str) -> None:
    with pytest.raises(AuthError):
        parse_auth_header(value)


def test_auth_error_is_a_value_error() -> None:
    assert issubclass(AuthError, ValueError)


def test_build_challenge_refuses_header_injection() -> None:
    with pytest.raises(AuthError):
        build_challenge("evil\r\nVia: x", "n")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parse_never_raises_anything_but_auth_error(text: str) -> None:
    try:
        scheme, params = parse_auth_header(text)
    except AuthError:
        return
    assert scheme and all(name == name.lower() for name in params)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('Digest ,="\\\r\n\tabcnr=01é'), max_size=80))
def test_parse_of_auth_shaped_noise_never_raises_anything_but_auth_error(text: str) -> None:
    try:
        parse_auth_header("Digest " + text)
    except AuthError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_verify_never_raises_on_arbitrary_input(text: str) -> None:
    server = _server()
    result = server.verify("REGISTER", text, _users(), 1.0, request_uri=RURI)
    assert not result.ok


@settings(max_examples=200, deadline=None)
@given(
    realm=st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30),
    nonce=st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30),
)
def test_build_challenge_round_trips_through_parse(realm: str, nonce: str) -> None:
    _, params = parse_auth_header(build_challenge(realm, nonce, algorithm="SHA-256", opaque='o"p'))
    assert params["realm"] == realm
    assert params["nonce"] == nonce
    assert params["opaque"] == 'o"p'


_MUTABLE = ("username", "uri", "nonce", "cnonce", "nc", "response", "realm", "qop", "algorithm")


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(_MUTABLE), position=st.integers(0, 100), char=st.sampled_from("0Az9/+-_.x"))
def test_changing_any_credential_parameter_never_authenticates(name: str, position: int, char: str) -> None:
    server = _server()
    header = _login(server)
    original = parse_auth_header(header)[1][name]
    i = position % len(original)
    if original[i].lower() == char.lower():
        return  # not a change (hex and tokens are case-insensitive)
    mutated = _replace_param(header, name, original[:i] + char + original[i + 1 :])
    assert not server.verify("REGISTER", mutated, _users(), 1.0, request_uri=RURI).ok
