"""Registrar decisions: challenge, bind, refresh, unregister, expiry, NAT, lookups."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from drivers.sip.digest import (
    Credential,
    DigestAuthenticator,
    NonceIssuer,
    compute_ha1,
    compute_response,
)
from drivers.sip.message import Request, Response, parse, serialize
from drivers.sip.registrar import Registrar

REALM = "95598.example.cn"
URI = "sip:95598.example.cn"
PHONE = ("203.0.113.50", 40112)  # the NAT's public side, where packets come from
CREDENTIALS = {
    "8001": Credential.from_password("8001", REALM, "pw-8001"),
    "8002": Credential.from_password("8002", REALM, "pw-8002"),
}


def register(
    seat: str = "8001",
    *,
    cseq: int = 1,
    call_id: str = "reg-1@192.168.1.21",
    contact: str = "<sip:8001@192.168.1.21:5060;transport=udp>",
    expires: int | None = 3600,
    authorization: str | None = None,
    extra: str = "",
) -> Request:
    """A REGISTER as baresip sends it from behind a home router."""
    lines = [
        f"REGISTER {URI} SIP/2.0",
        "Via: SIP/2.0/UDP 192.168.1.21:5060;branch=z9hG4bK" + f"{seat}{cseq}{call_id[:4]};rport",
        "Max-Forwards: 70",
        f"To: <sip:{seat}@95598.example.cn>",
        f"From: <sip:{seat}@95598.example.cn>;tag=3f1c0b7a",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "User-Agent: baresip v1.0.0 (x86_64/linux)",
        "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if authorization:
        lines.append(f"Authorization: {authorization}")
    if extra:
        lines.append(extra)
    lines.append("Content-Length: 0")
    message = parse(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def answer(challenge: str, seat: str, password: str, nc: int = 1) -> str:
    fields = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge))
    algorithm = fields["algorithm"]
    ha1 = compute_ha1(seat, REALM, password, algorithm)
    response = compute_response(
        ha1,
        method="REGISTER",
        uri=URI,
        nonce=fields["nonce"],
        algorithm=algorithm,
        nc=f"{nc:08x}",
        cnonce="c0ffee",
    )
    return (
        f'Digest username="{seat}",realm="{REALM}",nonce="{fields["nonce"]}",uri="{URI}",'
        f'response="{response}",algorithm={algorithm},qop=auth,nc={nc:08x},cnonce="c0ffee"'
    )


@pytest.fixture
def registrar() -> Registrar:
    authenticator = DigestAuthenticator(REALM, CREDENTIALS.get, NonceIssuer(b"k"), max_failures=3)
    return Registrar(authenticator)


def authenticated(registrar: Registrar, now: float, seat: str = "8001", **kwargs) -> Response:
    """Challenge then answer, as a phone does; returns the final response."""
    challenge = registrar.handle_register(register(seat, **kwargs), source=PHONE, now=now).response
    assert challenge.status == 401
    value = challenge.headers.lines("www-authenticate")[1]  # the MD5 one, as baresip 1.0 uses
    kwargs["cseq"] = kwargs.get("cseq", 1) + 1
    result = registrar.handle_register(
        register(seat, authorization=answer(value, seat, f"pw-{seat}"), **kwargs),
        source=PHONE,
        now=now,
    )
    return result.response


def test_first_register_is_challenged(registrar: Registrar) -> None:
    result = registrar.handle_register(register(), source=PHONE, now=0.0)
    response = result.response
    assert response.status == 401 and result.added == []
    assert [c.split(",")[2].strip() for c in response.headers.lines("www-authenticate")] == [
        "algorithm=SHA-256",
        "algorithm=MD5",
    ]
    again = parse(serialize(response))
    assert again.cseq.seq == 1 and again.to.tag
    assert registrar.contact_for("8001", 0.0) is None


def test_register_binds_with_nat_source_and_rport(registrar: Registrar) -> None:
    response = authenticated(registrar, now=100.0)
    assert response.status == 200
    (contact,) = response.contacts
    assert contact.uri == "sip:8001@192.168.1.21:5060;transport=udp"
    assert contact.params == {"expires": "3600"}
    via = response.top_via
    assert via.params["received"] == "203.0.113.50" and via.params["rport"] == "40112"
    binding = registrar.contact_for("8001", 100.0)
    assert binding is not None and binding.behind_nat
    assert binding.target == PHONE
    assert (binding.source_host, binding.source_port, binding.cseq) == ("203.0.113.50", 40112, 2)


def test_refresh_extends_and_expiry_removes(registrar: Registrar) -> None:
    assert authenticated(registrar, now=0.0, expires=120).status == 200
    assert registrar.contact_for("8001", 119.0) is not None
    assert registrar.contact_for("8001", 120.0) is None  # lapsed exactly at expiry
    assert authenticated(registrar, now=200.0, expires=120, cseq=3).status == 200
    response = authenticated(registrar, now=300.0, expires=120, cseq=5)  # refresh before expiry
    assert response.contacts[0].params["expires"] == "120"
    assert registrar.contact_for("8001", 410.0) is not None
    assert [b.seat for b in registrar.expire(421.0)] == ["8001"]
    assert registrar.seats(421.0) == []


def test_expires_rules(registrar: Registrar) -> None:
    too_brief = authenticated(registrar, now=0.0, expires=30)
    assert too_brief.status == 423 and too_brief.headers.get("min-expires") == "60"
    capped = authenticated(registrar, now=0.0, expires=10**12, cseq=3)
    assert capped.contacts[0].params["expires"] == "7200"
    param = authenticated(
        registrar,
        now=0.0,
        expires=None,
        cseq=5,
        contact="<sip:8001@192.168.1.21:5060;transport=udp>;expires=600",
    )
    assert param.contacts[0].params["expires"] == "600"
    default = authenticated(Registrar(registrar.authenticator), now=0.0, expires=None)
    assert default.contacts[0].params["expires"] == "3600"


def test_unregister_one_contact_and_wildcard(registrar: Registrar) -> None:
    authenticated(registrar, now=0.0)
    authenticated(registrar, now=0.0, cseq=3, contact="<sip:8001@192.168.1.21:5070>")
    assert len(registrar.lookup("8001", 1.0)) == 2
    response = authenticated(
        registrar, now=1.0, cseq=5, expires=0, contact="<sip:8001@192.168.1.21:5070>"
    )
    assert response.status == 200 and len(response.contacts) == 1
    response = authenticated(registrar, now=2.0, cseq=7, expires=0, contact="*")
    assert response.status == 200 and response.contacts == []
    assert registrar.contact_for("8001", 2.0) is None


def test_wildcard_needs_expires_zero(registrar: Registrar) -> None:
    assert authenticated(registrar, now=0.0, expires=60, contact="*").status == 400


def test_out_of_order_cseq_on_the_same_call_id_is_refused(registrar: Registrar) -> None:
    authenticated(registrar, now=0.0, cseq=10)  # binding has CSeq 11
    assert authenticated(registrar, now=1.0, cseq=9).status == 500  # answer carries CSeq 10
    assert registrar.contact_for("8001", 1.0).cseq == 11
    other_call = authenticated(registrar, now=1.0, cseq=1, call_id="reboot@192.168.1.21")
    assert other_call.status == 200  # a rebooted phone starts a new Call-ID


def test_query_without_contact_lists_bindings(registrar: Registrar) -> None:
    authenticated(registrar, now=0.0)
    response = authenticated(registrar, now=10.0, cseq=3, contact="", expires=None)
    assert response.status == 200
    assert [c.params["expires"] for c in response.contacts] == ["3590"]


def test_seat_can_only_register_itself(registrar: Registrar) -> None:
    challenge = registrar.handle_register(register("8002"), source=PHONE, now=0.0).response
    value = challenge.headers.lines("www-authenticate")[0]
    result = registrar.handle_register(
        register("8002", cseq=2, authorization=answer(value, "8001", "pw-8001")),
        source=PHONE,
        now=0.0,
    )
    assert result.response.status == 403 and registrar.contact_for("8002", 0.0) is None


def test_wrong_password_then_lockout(registrar: Registrar) -> None:
    challenge = registrar.handle_register(register(), source=PHONE, now=0.0).response
    value = challenge.headers.lines("www-authenticate")[0]
    statuses = [
        registrar.handle_register(
            register(cseq=n, authorization=answer(value, "8001", "wrong")),
            source=PHONE,
            now=float(n),
        ).response.status
        for n in range(2, 6)
    ]
    assert statuses == [401, 401, 403, 403]


def test_lookup_orders_by_q_and_direct_contacts_are_targeted() -> None:
    registrar = Registrar(None)
    lan = ("192.168.1.21", 5060)
    registrar.handle_register(
        register(contact="<sip:8001@192.168.1.21>;q=0.5"), source=lan, now=0.0
    )
    registrar.handle_register(
        register(cseq=2, contact="<sip:8001@192.168.1.21:5070>;q=0.9"),
        source=("192.168.1.21", 5070),
        now=1.0,
    )
    first, second = registrar.lookup("8001", 2.0)
    assert (first.q, second.q) == (0.9, 0.5)
    assert not first.behind_nat and first.target == ("192.168.1.21", 5070)
    assert registrar.remove("8001", first.contact) is first
    assert registrar.contact_for("8001", 2.0) is second


def test_too_many_contacts_keeps_the_newest() -> None:
    registrar = Registrar(None, max_contacts_per_seat=2)
    for n in range(3):
        registrar.handle_register(
            register(cseq=n + 1, contact=f"<sip:8001@10.0.0.{n}>", expires=100 + n),
            source=PHONE,
            now=0.0,
        )
    assert [b.contact for b in registrar.lookup("8001", 0.0)] == [
        "sip:8001@10.0.0.2",
        "sip:8001@10.0.0.1",
    ]


CORPUS = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "rfc4475"


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"RFC 4475 corpus not found at {CORPUS}")
def test_rfc4475_cparam_registrations_keep_parameters_distinct() -> None:
    registrar = Registrar(None)
    for name in ("cparam01", "cparam02"):
        raw = (CORPUS / f"{name}.dat").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        result = registrar.handle_register(parse(raw), source=("192.0.2.1", 5060), now=0.0)
        assert result.response.status == 200
    bindings = {b.contact: b for b in registrar.lookup("watson", 0.0)}
    assert set(bindings) == {
        "sip:+19725552222@gw1.example.net",
        "sip:+19725552222@gw1.example.net;unknownparam",
    }
    assert bindings["sip:+19725552222@gw1.example.net"].params == {"unknownparam": None}
    assert bindings["sip:+19725552222@gw1.example.net;unknownparam"].params == {}


def test_bad_expires_values_are_400() -> None:
    registrar = Registrar(None)
    bad_param = register(contact="<sip:8001@10.0.0.1>;expires=soon", expires=None)
    assert registrar.handle_register(bad_param, source=PHONE, now=0.0).response.status == 400
    bad_header = register(expires=None, extra="Expires: later")
    assert registrar.handle_register(bad_header, source=PHONE, now=0.0).response.status == 400
    assert registrar.contact_for("8001", 0.0) is None
