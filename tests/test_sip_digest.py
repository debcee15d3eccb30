"""Server-side digest: RFC test vectors, challenges, nonce expiry, replay and lockout."""

from __future__ import annotations

import hashlib
import re

import pytest

from drivers.sip.digest import (
    Credential,
    DigestAuthenticator,
    DigestError,
    NonceCheck,
    NonceIssuer,
    compute_ha1,
    compute_response,
    parse_authorization,
)

REALM = "95598.example.cn"
URI = "sip:95598.example.cn"
SEATS = {"8001": Credential.from_password("8001", REALM, "s3cret-8001")}


def make_auth(**kwargs) -> DigestAuthenticator:
    counter = iter(range(10**6))
    issuer = NonceIssuer(
        b"server-secret", lifetime=300, random_bytes=lambda n: next(counter).to_bytes(n, "big")
    )
    return DigestAuthenticator(REALM, SEATS.get, issuer, **kwargs)


def client_answer(
    challenge: str,
    *,
    username: str = "8001",
    password: str = "s3cret-8001",
    method: str = "REGISTER",
    uri: str = URI,
    nc: int = 1,
    qop: bool = True,
) -> str:
    """What a phone (baresip, Linphone) sends back for one WWW-Authenticate value."""
    fields = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge))
    algorithm = fields["algorithm"]
    ha1 = compute_ha1(username, fields["realm"], password, algorithm)
    cnonce = "0a4f113b"
    response = compute_response(
        ha1,
        method=method,
        uri=uri,
        nonce=fields["nonce"],
        algorithm=algorithm,
        qop="auth" if qop else None,
        nc=f"{nc:08x}",
        cnonce=cnonce,
    )
    value = (
        f'Digest username="{username}", realm="{fields["realm"]}", nonce="{fields["nonce"]}", '
        f'uri="{uri}", response="{response}", algorithm={algorithm}'
    )
    if qop:
        value += f', qop=auth, nc={nc:08x}, cnonce="{cnonce}"'
    return value


def test_rfc2617_section_3_5_vector() -> None:
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert (
        compute_response(
            ha1,
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_section_3_9_1_vectors(algorithm: str, expected: str) -> None:
    ha1 = compute_ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    assert (
        compute_response(
            ha1,
            method="GET",
            uri="/dir/index.html",
            nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            nc="00000001",
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            algorithm=algorithm,
        )
        == expected
    )


def test_sha256_for_a_sip_register_computed_independently() -> None:
    def h(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    ha1 = h(f"8001:{REALM}:s3cret-8001")
    assert Credential.from_password("8001", REALM, "s3cret-8001").ha1["SHA-256"] == ha1
    expected = h(f"{ha1}:abc:00000002:xyz:auth:{h('REGISTER:' + URI)}")
    assert (
        compute_response(
            ha1,
            method="REGISTER",
            uri=URI,
            nonce="abc",
            algorithm="SHA-256",
            nc="00000002",
            cnonce="xyz",
        )
        == expected
    )


def test_challenge_offers_sha256_then_md5_with_qop_auth() -> None:
    sha, md5 = make_auth().challenges(now=1000.0)
    assert sha.startswith(f'Digest realm="{REALM}", nonce="') and "algorithm=SHA-256" in sha
    assert 'qop="auth"' in sha and "algorithm=MD5" in md5 and "stale" not in md5


@pytest.mark.parametrize("which", [0, 1])
def test_phone_answering_either_challenge_is_accepted(which: int) -> None:
    auth = make_auth()
    challenge = auth.challenges(1000.0)[which]
    decision = auth.verify(
        method="REGISTER",
        request_uri=URI,
        authorization=client_answer(challenge),
        source="192.0.2.7:5060",
        now=1001.0,
    )
    assert decision.accepted and decision.username == "8001"


def test_missing_credentials_get_a_challenge_without_counting_a_failure() -> None:
    decision = make_auth().verify(
        method="REGISTER", request_uri=URI, authorization=None, source="192.0.2.7:5060", now=0.0
    )
    assert (decision.accepted, decision.status, decision.counted_failure) == (False, 401, False)
    assert len(decision.challenges) == 2


def test_wrong_password_unknown_user_and_foreign_nonce_are_refused() -> None:
    auth = make_auth()
    challenge = auth.challenges(10.0)[1]
    cases = {
        "wrong password": client_answer(challenge, password="guess"),
        "unknown user": client_answer(challenge, username="9999"),
        "not issued here": client_answer(challenge.replace('nonce="', 'nonce="f'), password="x"),
        "not the Request-URI": client_answer(challenge, uri="sip:elsewhere.example.cn"),
        "not Digest": "Basic ODAwMTpzM2NyZXQ=",
        "lacks": 'Digest username="8001"',
    }
    for words, value in cases.items():
        decision = auth.verify(
            method="REGISTER", request_uri=URI, authorization=value, source=f"src-{words}", now=11.0
        )
        assert not decision.accepted and decision.status == 401, words
        assert words in decision.reason and decision.counted_failure, (words, decision.reason)


def test_unknown_scheme_of_rfc4475_regaut01_is_challenged() -> None:
    decision = make_auth().verify(
        method="REGISTER",
        request_uri="sip:example.com",
        authorization="NoOneKnowsThisScheme opaque-data=here",
        source="192.0.2.253",
        now=0.0,
    )
    assert decision.status == 401 and decision.challenges


def test_expired_nonce_with_right_password_is_stale_not_a_failure() -> None:
    auth = make_auth()
    old = auth.challenges(1000.0)[0]
    decision = auth.verify(
        method="REGISTER",
        request_uri=URI,
        authorization=client_answer(old),
        source="a",
        now=1000.0 + 301,
    )
    assert decision.status == 401 and decision.reason == "stale nonce"
    assert not decision.counted_failure and all("stale=true" in c for c in decision.challenges)
    fresh = decision.challenges[0]
    assert auth.verify(
        method="REGISTER",
        request_uri=URI,
        authorization=client_answer(fresh),
        source="a",
        now=1302.0,
    ).accepted


def test_nonce_issuer_states() -> None:
    issuer = NonceIssuer(b"k", lifetime=60)
    nonce = issuer.issue(100.0)
    assert issuer.check(nonce, 150.0) == NonceCheck.VALID
    assert issuer.check(nonce, 161.0) == NonceCheck.STALE
    assert issuer.check(nonce + "0", 150.0) == NonceCheck.INVALID
    assert issuer.check("zz.yy.xx", 150.0) == NonceCheck.INVALID
    assert NonceIssuer(b"other").check(nonce, 150.0) == NonceCheck.INVALID


def test_nonce_count_must_increase() -> None:
    auth = make_auth()
    challenge = auth.challenges(0.0)[0]
    first = client_answer(challenge, nc=1)
    assert auth.verify(
        method="REGISTER", request_uri=URI, authorization=first, source="a", now=1.0
    ).accepted
    replay = auth.verify(
        method="REGISTER", request_uri=URI, authorization=first, source="a", now=2.0
    )
    assert not replay.accepted and "replayed" in replay.reason
    assert auth.verify(
        method="REGISTER",
        request_uri=URI,
        authorization=client_answer(challenge, nc=2),
        source="a",
        now=3.0,
    ).accepted


def test_rfc2069_answer_without_qop_unless_required() -> None:
    challenge = make_auth().challenges(0.0)[1]
    value = client_answer(challenge, qop=False)  # as pyVoIP 1.6 answers
    auth = make_auth()
    assert auth.verify(
        method="REGISTER", request_uri=URI, authorization=value, source="a", now=1.0
    ).accepted
    strict = make_auth(require_qop=True)
    decision = strict.verify(
        method="REGISTER", request_uri=URI, authorization=value, source="a", now=1.0
    )
    assert not decision.accepted and "qop=auth required" in decision.reason


def test_lockout_after_repeated_failures_per_source() -> None:
    auth = make_auth(max_failures=3, failure_window=60, lockout=300)
    challenge = auth.challenges(0.0)[0]
    bad = client_answer(challenge, password="guess")
    statuses = [
        auth.verify(
            method="REGISTER", request_uri=URI, authorization=bad, source="198.51.100.9:5060", now=t
        ).status
        for t in (1.0, 2.0, 3.0)
    ]
    assert statuses == [401, 401, 403]
    good = client_answer(challenge)
    locked = auth.verify(
        method="REGISTER",
        request_uri=URI,
        authorization=good,
        source="198.51.100.9:5060",
        now=100.0,
    )
    assert locked.status == 403 and "locked out" in locked.reason and not locked.challenges
    other = auth.verify(
        method="REGISTER", request_uri=URI, authorization=good, source="192.0.2.1:5060", now=100.0
    )
    assert other.accepted  # other sources are not affected
    fresh = auth.challenges(400.0)[0]
    assert auth.verify(
        method="REGISTER",
        request_uri=URI,
        authorization=client_answer(fresh, nc=5),
        source="198.51.100.9:5060",
        now=400.0,
    ).accepted


def test_failures_outside_the_window_do_not_accumulate() -> None:
    auth = make_auth(max_failures=3, failure_window=10)
    bad = client_answer(auth.challenges(0.0)[0], password="guess")
    statuses = [
        auth.verify(method="REGISTER", request_uri=URI, authorization=bad, source="s", now=t).status
        for t in (1.0, 20.0, 40.0, 60.0)
    ]
    assert statuses == [401, 401, 401, 401]
    auth.forget_expired(500.0)
    assert not auth.locked("s", 500.0)


def test_parse_authorization_fields_and_errors() -> None:
    parsed = parse_authorization(
        'Digest username="8001",realm="r", nonce="n", uri="sip:r", response="ABCDEF", '
        'algorithm=sha-256, qop=auth, nc=00000001, cnonce="c\\"x", opaque="o"'
    )
    assert (parsed.algorithm, parsed.response, parsed.cnonce, parsed.opaque) == (
        "SHA-256",
        "abcdef",
        'c"x',
        "o",
    )
    for bad in (
        'Digest username="a',
        'Digest username="a", username="b"',
        "Digest realm",
        'Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth',
    ):
        with pytest.raises(DigestError):
            parse_authorization(bad)
