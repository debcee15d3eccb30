"""The trunk registration client as a plain object: bytes in, bytes out, ``now`` passed in.

The far end is the project's own registrar (``drivers.sip.registrar`` with server-side
digest), fed the client's datagrams as bytes, plus hand-written responses for the cases it
does not produce (423, 503, 407, silence).
"""

from __future__ import annotations

import re

import pytest

from drivers.sip.digest import (
    Credential,
    DigestAuthenticator,
    NonceIssuer,
    compute_ha1,
    compute_response,
    parse_authorization,
)
from drivers.sip.message import Request, Response, parse, response_to
from drivers.sip.trunk import (
    Challenge,
    DigestClient,
    TrunkError,
    TrunkEvent,
    TrunkRegistration,
    TrunkState,
    parse_host_port,
    pick_challenge,
)
from drivers.sip.uas import Send

REALM = "pbx.example.cn"
REGISTRAR = ("192.0.2.10", 5060)
ENGINE = ("192.0.2.20", 5070)


def make_trunk(password: str = "trunk-secret", **kwargs: object) -> TrunkRegistration:
    settings: dict[str, object] = {
        "name": "pbx",
        "registrar": REGISTRAR,
        "user": "95598",
        "password": password,
        "contact": ENGINE,
        "domain": REALM,
        "expires": 600,
    }
    settings.update(kwargs)
    return TrunkRegistration(**settings)  # type: ignore[arg-type]


def far_end(algorithms: tuple[str, ...] = ("SHA-256", "MD5")) -> object:
    from drivers.sip.registrar import Registrar

    credentials = {"95598": Credential.from_password("95598", REALM, "trunk-secret")}
    authenticator = DigestAuthenticator(
        REALM, credentials.get, NonceIssuer(b"k"), algorithms=algorithms, max_failures=50
    )
    return Registrar(authenticator, default_expires=600, min_expires=60)


def request_of(out: list[object]) -> Request:
    sends = [o for o in out if isinstance(o, Send)]
    assert len(sends) == 1, out
    assert sends[0].address == REGISTRAR
    message = parse(sends[0].data)
    assert isinstance(message, Request) and message.method == "REGISTER"
    return message


def events(out: list[object]) -> list[TrunkEvent]:
    return [o for o in out if isinstance(o, TrunkEvent)]


def exchange(trunk: TrunkRegistration, registrar: object, out: list[object], now: float) -> list:
    """Send the trunk's REGISTER to the registrar, its answer back to the trunk."""
    result = registrar.handle_register(request_of(out), source=ENGINE, now=now)  # type: ignore[attr-defined]
    return trunk.receive(parse(bytes(result.response)), now)  # type: ignore[arg-type]


def reply(request: Request, status: int, reason: str, *headers: tuple[str, str]) -> Response:
    response = response_to(request, status, reason, "reg-tag")
    for name, value in headers:
        response.headers.add(name, value)
    return parse(bytes(response))  # type: ignore[return-value]


def test_registers_with_sha256_digest_at_a_registrar() -> None:
    registrar, trunk = far_end(), make_trunk()
    first = request_of(trunk.start(0.0))
    assert first.headers.get("authorization") is None
    assert first.uri == f"sip:{REALM}" and first.to.uri == f"sip:95598@{REALM}"
    assert first.contacts[0].uri == "sip:95598@192.0.2.20:5070"
    assert first.expires == 600 and first.top_via.sent_by == "192.0.2.20:5070"
    assert "rport" in first.top_via.params
    out = exchange(trunk, registrar, [Send(bytes(first), REGISTRAR)], 0.0)
    second = request_of(out)
    auth = parse_authorization(second.headers.get("authorization") or "")
    assert (auth.algorithm, auth.qop, auth.nc, auth.uri) == (
        "SHA-256",
        "auth",
        "00000001",
        f"sip:{REALM}",
    )
    assert second.call_id == first.call_id and second.from_.tag == first.from_.tag
    assert second.cseq.seq == first.cseq.seq + 1
    assert second.top_via.branch != first.top_via.branch
    done = exchange(trunk, registrar, out, 0.2)
    assert [(e.kind, e.expires) for e in events(done)] == [("registered", 600)]
    assert trunk.state is TrunkState.REGISTERED and trunk.registered(1.0)
    binding = registrar.contact_for("95598", 1.0)  # type: ignore[attr-defined]
    assert binding is not None and binding.contact == "sip:95598@192.0.2.20:5070"
    assert trunk.status(1.0)["registered"] is True


def test_md5_only_registrar_gets_an_md5_answer_it_accepts() -> None:
    registrar, trunk = far_end(("MD5",)), make_trunk()
    out = exchange(trunk, registrar, trunk.start(0.0), 0.0)
    auth = parse_authorization(request_of(out).headers.get("authorization") or "")
    assert auth.algorithm == "MD5"
    assert [e.kind for e in events(exchange(trunk, registrar, out, 0.0))] == ["registered"]


def test_refreshes_before_expiry_on_the_same_call_id() -> None:
    registrar, trunk = far_end(), make_trunk()
    exchange(trunk, registrar, exchange(trunk, registrar, trunk.start(0.0), 0.0), 0.0)
    assert trunk.refresh_at == pytest.approx(480.0)  # min(80 %, 600 - 30)
    assert trunk.next_wakeup() == pytest.approx(480.0)
    assert trunk.tick(479.0) == []
    refresh = trunk.tick(480.0)
    request = request_of(refresh)
    assert request.call_id == trunk.call_id and request.expires == 600
    out = exchange(trunk, registrar, refresh, 480.0)
    assert [e.kind for e in events(exchange(trunk, registrar, out, 480.0))] == ["refreshed"]
    assert trunk.expires_at == pytest.approx(1080.0) and trunk.registrations == 2
    binding = registrar.contact_for("95598", 1000.0)  # type: ignore[attr-defined]
    assert binding is not None  # without the refresh it would have lapsed at 600


@pytest.mark.parametrize(("granted", "refresh_in"), [(600, 480), (120, 90), (40, 20), (3600, 2880)])
def test_refresh_interval(granted: int, refresh_in: float) -> None:
    trunk = make_trunk()
    request = request_of(trunk.start(0.0))
    trunk.receive(
        reply(request, 200, "OK", ("Contact", f"<{trunk.contact_uri}>;expires={granted}")), 0.0
    )
    assert trunk.granted == granted and trunk.refresh_at == pytest.approx(refresh_in)


def test_granted_interval_comes_from_our_contact_then_expires_header() -> None:
    trunk = make_trunk()
    request = request_of(trunk.start(0.0))
    ok = reply(
        request,
        200,
        "OK",
        ("Contact", "<sip:95598@198.51.100.7:5060>;expires=3000"),  # someone else's binding
        ("Contact", f"<{trunk.contact_uri}>;expires=300"),
        ("Expires", "900"),
    )
    trunk.receive(ok, 0.0)
    assert trunk.granted == 300
    trunk2 = make_trunk()
    request = request_of(trunk2.start(0.0))
    trunk2.receive(reply(request, 200, "OK", ("Expires", "900")), 0.0)
    assert trunk2.granted == 900


def test_wrong_password_is_reported_and_retried_with_growing_backoff() -> None:
    registrar, trunk = far_end(), make_trunk(password="wrong-password", retry_base=5, retry_max=20)
    out = exchange(trunk, registrar, trunk.start(0.0), 0.0)
    assert request_of(out).headers.get("authorization")
    failed = exchange(trunk, registrar, out, 0.0)
    (event,) = events(failed)
    assert event.kind == "auth_failed" and event.status == 401
    assert "refused the credentials of user 95598" in event.reason and event.retry_in == 5
    assert [o for o in failed if isinstance(o, Send)] == []  # no third try in the same attempt
    assert trunk.state is TrunkState.WAITING and not trunk.registered(1.0)
    delays = [event.retry_in]
    now = 0.0
    for _ in range(3):
        now = trunk.retry_at  # type: ignore[assignment]
        assert trunk.tick(now - 0.01) == []
        out = exchange(trunk, registrar, trunk.tick(now), now)
        delays += [e.retry_in for e in events(exchange(trunk, registrar, out, now))]
    assert delays == [5, 10, 20, 20]
    assert trunk.failures == 4 and trunk.status(now)["last_status"] == 401


def test_a_stale_nonce_is_answered_again_without_counting_a_failure() -> None:
    trunk = make_trunk()
    first = request_of(trunk.start(0.0))
    challenge = 'Digest realm="pbx.example.cn", nonce="n1", algorithm=MD5, qop="auth"'
    second = request_of(
        trunk.receive(reply(first, 401, "Unauthorized", ("WWW-Authenticate", challenge)), 0.0)
    )
    stale = 'Digest realm="pbx.example.cn", nonce="n2", algorithm=MD5, qop="auth", stale=true'
    third = request_of(
        trunk.receive(reply(second, 401, "Unauthorized", ("WWW-Authenticate", stale)), 0.0)
    )
    assert parse_authorization(third.headers.get("authorization") or "").nonce == "n2"
    assert trunk.failures == 0 and trunk.state is TrunkState.REGISTERING


def test_proxy_challenge_gets_proxy_authorization() -> None:
    trunk = make_trunk()
    first = request_of(trunk.start(0.0))
    challenge = 'Digest realm="proxy", nonce="p1", qop="auth", opaque="op"'
    second = request_of(
        trunk.receive(
            reply(first, 407, "Proxy Authentication Required", ("Proxy-Authenticate", challenge)),
            0.0,
        )
    )
    auth = parse_authorization(second.headers.get("proxy-authorization") or "")
    assert second.headers.get("authorization") is None
    assert (auth.realm, auth.opaque, auth.algorithm) == ("proxy", "op", "MD5")
    ha1 = compute_ha1("95598", "proxy", "trunk-secret")
    expected = compute_response(
        ha1, method="REGISTER", uri=auth.uri, nonce="p1", nc=auth.nc, cnonce=auth.cnonce
    )
    assert auth.response == expected


def test_no_answer_retransmits_register_then_fails_with_backoff() -> None:
    trunk = make_trunk(retry_base=5)
    data = trunk.start(0.0)[0].data  # type: ignore[union-attr]
    sent_at = []
    now = 0.0
    while now < 40 and trunk.state is TrunkState.REGISTERING:
        now = round(now + 0.05, 2)
        for out in trunk.tick(now):
            if isinstance(out, Send):
                assert out.data == data and out.address == REGISTRAR
                sent_at.append(now)
            else:
                failure = out
    assert sent_at[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]  # Timer E: T1, 2T1, 4T1, then T2
    assert all(b - a == pytest.approx(4.0) for a, b in zip(sent_at[3:], sent_at[4:], strict=False))
    assert failure.kind == "failed" and failure.status == 408 and now == pytest.approx(32.0)
    assert trunk.retry_at == pytest.approx(37.0)
    again = request_of(trunk.tick(37.0))
    assert again.cseq.seq == 2 and again.call_id == trunk.call_id


def test_a_provisional_response_slows_retransmission_to_t2() -> None:
    trunk = make_trunk()
    request = request_of(trunk.start(0.0))
    trunk.receive(reply(request, 100, "Trying"), 0.1)
    assert trunk.tick(0.6) == [] and trunk.tick(4.0) == []
    assert len(trunk.tick(4.1)) == 1


def test_interval_too_brief_asks_again_with_min_expires() -> None:
    trunk = make_trunk(expires=30)
    request = request_of(trunk.start(0.0))
    again = request_of(
        trunk.receive(reply(request, 423, "Interval Too Brief", ("Min-Expires", "120")), 0.0)
    )
    assert again.expires == 120 and trunk.expires == 120


def test_service_unavailable_waits_at_least_retry_after() -> None:
    trunk = make_trunk(retry_base=5)
    request = request_of(trunk.start(0.0))
    (event,) = events(
        trunk.receive(reply(request, 503, "Service Unavailable", ("Retry-After", "120")), 0.0)
    )
    assert event.kind == "failed" and event.retry_in == 120 and trunk.retry_at == 120


def test_forbidden_is_a_failure_with_backoff() -> None:
    trunk = make_trunk(retry_base=7)
    request = request_of(trunk.start(0.0))
    (event,) = events(trunk.receive(reply(request, 403, "Forbidden"), 0.0))
    assert (event.kind, event.status, event.retry_in) == ("failed", 403, 7)


def test_late_or_foreign_responses_are_ignored() -> None:
    trunk = make_trunk()
    first = request_of(trunk.start(0.0))
    trunk.tick(32.0)  # timed out; now waiting
    assert trunk.receive(reply(first, 200, "OK"), 33.0) == []
    assert trunk.state is TrunkState.WAITING
    second = request_of(trunk.tick(trunk.retry_at))  # type: ignore[arg-type]
    assert trunk.receive(reply(first, 200, "OK"), 40.0) == []  # old CSeq and branch
    assert [e.kind for e in events(trunk.receive(reply(second, 200, "OK"), 40.0))] == ["registered"]


def test_failed_refresh_retries_before_the_binding_lapses() -> None:
    trunk = make_trunk(retry_base=300, retry_max=600)
    request = request_of(trunk.start(0.0))
    trunk.receive(reply(request, 200, "OK", ("Expires", "600")), 0.0)
    refresh = request_of(trunk.tick(480.0))
    (event,) = events(trunk.receive(reply(refresh, 500, "Server Internal Error"), 480.0))
    assert event.kind == "failed" and trunk.registered(481.0)
    assert trunk.retry_at == pytest.approx(540.0)  # half the remaining 120 s, not 300 s


def test_stop_unregisters_the_binding() -> None:
    registrar, trunk = far_end(), make_trunk()
    exchange(trunk, registrar, exchange(trunk, registrar, trunk.start(0.0), 0.0), 0.0)
    out = trunk.stop(10.0)
    request = request_of(out)
    assert request.expires == 0 and request.contacts[0].uri == trunk.contact_uri
    assert trunk.state is TrunkState.UNREGISTERING
    out = exchange(trunk, registrar, out, 10.0)  # challenged again, then answered
    assert [e.kind for e in events(exchange(trunk, registrar, out, 10.0))] == ["unregistered"]
    assert trunk.state is TrunkState.STOPPED and trunk.next_wakeup() is None
    assert registrar.contact_for("95598", 11.0) is None  # type: ignore[attr-defined]
    assert trunk.stop(12.0) == [] and trunk.tick(1000.0) == []


def test_stop_without_a_binding_sends_nothing() -> None:
    trunk = make_trunk()
    assert trunk.stop(0.0) == [] and trunk.state is TrunkState.STOPPED


def test_unregister_without_answer_gives_up() -> None:
    trunk = make_trunk()
    request = request_of(trunk.start(0.0))
    trunk.receive(reply(request, 200, "OK"), 0.0)
    trunk.stop(1.0)
    (event,) = events(trunk.tick(33.0))
    assert event.kind == "unregister_failed" and trunk.state is TrunkState.STOPPED


def test_digest_client_counts_nonce_uses_with_fresh_cnonces() -> None:
    cnonces = iter(["aa", "bb", "cc"])
    client = DigestClient("95598", "trunk-secret", cnonce=lambda: next(cnonces))
    challenge = Challenge(REALM, "n1", "SHA-256", ("auth",))
    values = [client.authorization(challenge, method="REGISTER", uri="sip:x") for _ in range(2)]
    parsed = [parse_authorization(v) for v in values]
    assert [(p.nc, p.cnonce) for p in parsed] == [("00000001", "aa"), ("00000002", "bb")]
    other = parse_authorization(
        client.authorization(
            Challenge(REALM, "n2", "MD5", ("auth",)), method="REGISTER", uri="sip:x"
        )
    )
    assert other.nc == "00000001"
    ha1 = compute_ha1("95598", REALM, "trunk-secret", "SHA-256")
    assert parsed[1].response == compute_response(
        ha1,
        method="REGISTER",
        uri="sip:x",
        nonce="n1",
        algorithm="SHA-256",
        nc="00000002",
        cnonce="bb",
    )


def test_rfc2069_answer_when_no_qop_is_offered() -> None:
    client = DigestClient("u", "p")
    value = client.authorization(Challenge("r", "n"), method="REGISTER", uri="sip:x")
    assert "qop" not in value and "cnonce" not in value
    assert re.search(r'response="[0-9a-f]{32}"', value)


def test_challenge_choice_prefers_sha256_and_skips_unusable() -> None:
    picked = pick_challenge(
        [
            'Basic realm="x"',
            'Digest realm="r", nonce="a", algorithm=MD5, qop="auth"',
            'Digest realm="r", nonce="b", algorithm=SHA-512-256, qop="auth"',
            'Digest realm="r", nonce="c", algorithm=SHA-256, qop="auth,auth-int"',
        ]
    )
    assert picked is not None and picked.nonce == "c"
    assert pick_challenge(['Digest realm="r", nonce="d", qop="auth-int"']) is None


def test_no_usable_challenge_is_a_clear_failure() -> None:
    trunk = make_trunk()
    request = request_of(trunk.start(0.0))
    (event,) = events(
        trunk.receive(
            reply(request, 401, "Unauthorized", ("WWW-Authenticate", 'Basic realm="x"')), 0.0
        )
    )
    assert event.kind == "failed" and "no usable Digest challenge" in event.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [("pbx.example.cn:5080", ("pbx.example.cn", 5080)), ("10.0.0.1", ("10.0.0.1", 5060))],
)
def test_registrar_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["", "pbx:port", "pbx:0", "pbx:70000", ":5060"])
def test_bad_registrar_address(text: str) -> None:
    with pytest.raises(TrunkError, match="registrar must be host:port"):
        parse_host_port(text)


def test_bad_settings() -> None:
    with pytest.raises(TrunkError, match="user is missing"):
        make_trunk(user="")


def test_trunk_settings_from_the_configuration() -> None:
    from drivers.sip.trunk_client import registrations_from_settings
    from hotline.config import ConfigError, TrunkSettings, load_config

    trunk = {"name": "pbx", "registrar": "192.0.2.10:5080", "user": "95598", "password_env": "PW"}
    config = load_config(None, overrides={"sip": {"trunks": [trunk]}})
    assert config.sip.trunks == [
        TrunkSettings("pbx", "192.0.2.10:5080", "95598", password_env="PW")
    ]
    (registration,) = registrations_from_settings(
        config.sip.trunks, host="192.0.2.20", port=5070, environ={"PW": "from-env"}
    )
    assert registration.password == "from-env" and registration.registrar == ("192.0.2.10", 5080)
    assert registration.contact_uri == "sip:95598@192.0.2.20:5070"
    assert registration.aor == "sip:95598@192.0.2.10" and registration.expires == 600
    with pytest.raises(TrunkError, match="environment variable PW is not set"):
        registrations_from_settings(config.sip.trunks, host="h", port=1, environ={})
    with pytest.raises(TrunkError, match="set password or password_env"):
        registrations_from_settings(
            [TrunkSettings("pbx", "h:1", "u")], host="h", port=1, environ={}
        )
    with pytest.raises(TrunkError, match="used twice"):
        twice = [TrunkSettings("pbx", "h:1", "u", password="p")] * 2
        registrations_from_settings(twice, host="h", port=1, environ={})
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(None, overrides={"sip": {"trunks": [dict(trunk, secret="x")]}})
    with pytest.raises(ConfigError, match="registrar"):
        load_config(None, overrides={"sip": {"trunks": [{"name": "pbx", "user": "u"}]}})
