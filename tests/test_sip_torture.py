"""RFC 4475 torture messages through the SIP message parser and the UAS screening.

Each file of ``../shared/conformance/rfc4475/`` gets the outcome its README gives: valid
messages parse with the right values, invalid ones raise ``ParseError`` with a reason (and
nothing else), application-layer ones get the response RFC 4475 names.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from drivers.sip.message import (
    ParseError,
    Request,
    Response,
    error_response,
    parse,
    parse_sip_uri,
    screen_request,
    serialize,
    to_aiosipua,
    transaction_key,
)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "rfc4475"
AS_STORED = {"intmeth", "mpart01"}  # already CRLF / binary body: used as they are

pytestmark = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"RFC 4475 corpus not found at {CORPUS}"
)

VALID = [
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
]
INVALID = [
    "badinv01",
    "clerr",
    "ncl",
    "scalar02",
    "scalarlg",
    "quotbal",
    "ltgtruri",
    "lwsruri",
    "lwsstart",
    "trws",
    "escruri",
    "baddate",
    "regbadct",
    "badaspec",
    "baddn",
    "badvers",
    "mismatch01",
    "mismatch02",
    "bigcode",
]
# Application layer (RFC 4475 §3.3): parse, then the response the UAS owes (None = process).
# The corpus README swaps the labels of sdp01 and multi01; the files follow the RFC:
# sdp01 carries "Accept: text/nobodyKnowsThis" (406), multi01 repeats CSeq/Call-ID/To/From (400).
APPLICATION = {
    "insuf": 400,
    "unkscm": 416,
    "novelsc": 416,
    "unksm2": None,
    "bext01": 420,
    "invut": 415,
    "regescrt": None,
    "sdp01": 406,
    "multi01": 400,
    "zeromf": None,  # addressed to us: a UAS answers; 483 applies only when forwarding
    "cparam01": None,
    "cparam02": None,
    "regaut01": None,  # well-formed; the registrar answers the unknown scheme with 401
    "badbranch": None,
    "inv2543": None,
}


def load(name: str) -> bytes:
    raw = (CORPUS / f"{name}.dat").read_bytes()
    if name in AS_STORED:
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_corpus_is_complete() -> None:
    names = {p.stem for p in CORPUS.glob("*.dat")}
    assert names == set(VALID) | set(INVALID) | set(APPLICATION) | {"bcast", "mcl01"}


@pytest.mark.parametrize("name", VALID)
def test_valid_message_parses_and_round_trips(name: str) -> None:
    message = parse(load(name))
    again = parse(serialize(message))
    assert type(again) is type(message)

    def fields(m: Request | Response) -> list[tuple[str, str]]:
        return [(n, v) for n, v in m.headers if n != "Content-Length"]

    assert fields(again) == fields(message)
    assert again.body == message.body
    if isinstance(message, Request):
        assert screen_request(message) is None or name == "mpart01"


@pytest.mark.parametrize("name", INVALID)
def test_invalid_message_raises_parse_error(name: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(load(name))
    assert caught.value.reason
    assert caught.value.status in (400, 505)


@pytest.mark.parametrize("name", INVALID)
def test_invalid_request_gets_an_error_response_when_one_can_be_formed(name: str) -> None:
    raw = load(name)
    with pytest.raises(ParseError) as caught:
        parse(raw)
    answer = error_response(raw, caught.value)
    if name in ("scalarlg", "bigcode"):  # responses are dropped, never answered
        assert answer is None
        return
    assert answer is not None
    status_line, _, rest = answer.partition(b"\r\n")
    expected = (
        b"SIP/2.0 505 Version Not Supported" if name == "badvers" else b"SIP/2.0 400 Bad Request"
    )
    assert status_line == expected
    call_id = next(line for line in raw.split(b"\r\n") if line.lower().startswith(b"call-id"))
    assert call_id.split(b":", 1)[1].strip() in rest
    assert b"Warning: 399 engine" in rest


def test_invalid_messages_fail_for_the_right_reason() -> None:
    expected = {
        "badinv01": "empty",
        "clerr": "exceeds",
        "ncl": "non-negative",
        "scalar02": "2**31",
        "scalarlg": "2**31",
        "quotbal": "unterminated quoted",
        "ltgtruri": "enclosed",
        "lwsruri": "request line",
        "lwsstart": "request line",
        "trws": "request line",
        "escruri": "headers",
        "baddate": "GMT",
        "regbadct": "enclosed in <>",
        "badaspec": "whitespace inside",
        "baddn": "display name",
        "badvers": "version",
        "mismatch01": "CSeq method",
        "mismatch02": "CSeq method",
        "bigcode": "three digits",
    }
    for name, words in expected.items():
        with pytest.raises(ParseError) as caught:
            parse(load(name))
        assert words in caught.value.reason or words in str(caught.value), (name, caught.value)


@pytest.mark.parametrize("name", sorted(APPLICATION))
def test_application_layer_outcome(name: str) -> None:
    request = parse(load(name))
    assert isinstance(request, Request)
    rejection = screen_request(request)
    assert (rejection.status if rejection else None) == APPLICATION[name]


def test_mcl01_conflicting_content_length_is_a_400() -> None:
    with pytest.raises(ParseError, match="conflicting Content-Length") as caught:
        parse(load("mcl01"))
    assert caught.value.status == 400


def test_bext01_lists_the_unsupported_extensions() -> None:
    rejection = screen_request(parse(load("bext01")))
    assert rejection is not None
    assert (
        dict(rejection.headers)["Unsupported"] == "nothingSupportsThis, nothingSupportsThisEither"
    )


def test_wsinv_values_despite_whitespace() -> None:
    m = parse(load("wsinv"))
    assert isinstance(m, Request)
    assert m.method == "INVITE"
    assert m.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert m.cseq.seq == 9 and m.cseq.method == "INVITE"
    assert m.max_forwards == 68
    assert m.to.tag == "1918181833n"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.from_.tag == "98asjd8"
    vias = m.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("subject") == ""
    assert len(m.body) == 150 and m.content_type == "application/sdp"


def test_intmeth_unusual_method_and_uri() -> None:
    m = parse(load("intmeth"))
    assert isinstance(m, Request)
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.cseq.method == m.method
    uri = parse_sip_uri(m.uri)
    assert uri.host == "example.com" and uri.headers == ""
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"


def test_escaped_values_kept_as_sent() -> None:
    esc01 = parse(load("esc01"))
    assert esc01.uri == "sip:sips%3Auser%40example.com@example.net"
    assert parse_sip_uri(esc01.uri).user == "sips%3Auser%40example.com"
    assert esc01.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # from compact "i:"
    assert esc01.content_type == "application/sdp"  # compact "C:"
    assert parse_sip_uri(esc01.contacts[0].uri).params == {
        "%6c%72": None,
        "n%61me": "v%61lue%25%34%31",
    }
    escnull = parse(load("escnull"))
    assert [c.uri for c in escnull.contacts] == [
        "sip:%00@host5.example.com",
        "sip:%00%00@host5.example.com",
    ]
    esc02 = parse(load("esc02"))
    assert isinstance(esc02, Request) and esc02.method == "RE%47IST%45R"
    assert len(esc02.contacts) == 2  # "C%6Fntact" is another header, not Contact
    assert esc02.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert esc02.to.display_name == "%Z%45"


def test_lwsdisp_longreq_semiuri_transports() -> None:
    assert parse(load("lwsdisp")).from_.display_name == "caller"
    longreq = parse(load("longreq"))
    assert len(longreq.vias) == 34
    to_params = parse_sip_uri(longreq.to.uri).params
    assert to_params["longparam" + "name" * 25] == "shortvalue"
    assert longreq.to.uri.startswith("sip:user@example.com:6000;")
    semiuri = parse_sip_uri(parse(load("semiuri")).uri)
    assert semiuri.user == "user;par=u%40example.net" and semiuri.host == "example.com"
    assert len(parse(load("semiuri")).headers.values("accept")) == 6
    transports = [v.transport for v in parse(load("transports")).vias]
    assert transports == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_dblreq_keeps_only_the_first_request() -> None:
    m = parse(load("dblreq"))
    assert isinstance(m, Request) and m.method == "REGISTER" and m.body == b""


def test_mpart01_binary_body_intact() -> None:
    raw = load("mpart01")
    m = parse(raw)
    assert m.content_type == "multipart/mixed"
    assert len(m.body) == int(m.headers.get("content-length") or 0)
    assert raw.endswith(m.body)


def test_responses_with_odd_reason_phrases() -> None:
    unreason = parse(load("unreason"))
    assert isinstance(unreason, Response) and unreason.status == 200
    assert unreason.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    noreason = parse(load("noreason"))
    assert isinstance(noreason, Response) and noreason.status == 100 and noreason.reason == ""


def test_bcast_response_parses_for_the_transaction_layer_to_discard() -> None:
    m = parse(load("bcast"))
    assert isinstance(m, Response)
    assert [v.host for v in m.vias] == ["192.0.2.198", "255.255.255.255"]


def test_badbranch_uses_rfc2543_matching() -> None:
    m = parse(load("badbranch"))
    assert isinstance(m, Request)
    assert not m.top_via.rfc3261_branch
    key = transaction_key(m)
    assert key[0] == "2543" and "badbranch.sadonfo23i420jv0as0derf3j3n" in key
    assert transaction_key(parse(load("transports")))[:2] == ("3261", "z9hG4bKkdjuw")


def test_cparam_uri_and_header_parameters_stay_distinct() -> None:
    (header_param,) = parse(load("cparam01")).contacts
    assert header_param.uri == "sip:+19725552222@gw1.example.net"
    assert header_param.params == {"unknownparam": None}
    (uri_param,) = parse(load("cparam02")).contacts
    assert uri_param.params == {}
    assert parse_sip_uri(uri_param.uri).params == {"unknownparam": None}


def test_regescrt_keeps_escaped_header_in_contact_uri() -> None:
    (contact,) = parse(load("regescrt")).contacts
    assert parse_sip_uri(contact.uri).headers == "Route=%3Csip:sip.example.com%3E"


def test_inv2543_and_unknown_schemes_in_headers() -> None:
    inv = parse(load("inv2543"))
    assert inv.top_via.branch is None and inv.top_via.host == "iftgw.example.com"
    unksm2 = parse(load("unksm2"))
    assert unksm2.to.uri == "isbn:2983792873"
    assert unksm2.contacts[0].uri == "name:John_Smith"


def test_parser_survives_every_corpus_prefix_and_byte_flip() -> None:
    """Truncations and byte damage give a message or ParseError (and at most an error
    response), nothing else."""
    for path in sorted(CORPUS.glob("*.dat")):
        raw = load(path.stem)
        for cut in range(0, len(raw), 7):
            for data in (
                raw[:cut],
                raw[:cut] + b"\x00" + raw[cut + 1 :],
                raw[:cut] + b":" + raw[cut:],
            ):
                try:
                    parse(data)
                except ParseError as exc:
                    answer = error_response(data, exc)
                    assert answer is None or answer.startswith(b"SIP/2.0 ")


def test_mutated_corpus_parses_round_trips_and_hands_over_or_raises_parse_error() -> None:
    """Seeded random damage (byte changes, cuts, duplicated runs) across the whole corpus."""
    rng = random.Random(4475)
    corpus = [load(p.stem) for p in sorted(CORPUS.glob("*.dat"))]
    parsed = 0
    for _ in range(4000):
        data = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(data))
            roll = rng.random()
            if roll < 0.4:
                data[pos] = rng.choice(b' :;,<>"=\\/0123456789\r\n\t@?%\xff*')
            elif roll < 0.7:
                del data[pos : pos + rng.randint(1, 8)]
            else:
                data[pos:pos] = data[rng.randrange(len(data)) :][: rng.randint(1, 30)]
        try:
            message = parse(bytes(data))
        except ParseError as exc:
            error_response(bytes(data), exc)
            continue
        parsed += 1
        again = parse(serialize(message))
        assert again.body == message.body
        if isinstance(message, Request):
            screen_request(message)
            assert to_aiosipua(message).method == message.method
    assert parsed > 500  # the damage leaves plenty of valid messages to exercise
