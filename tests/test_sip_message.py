"""SIP message model: building, serializing, header access, responses, aiosipua hand-over."""

from __future__ import annotations

import pytest

from drivers.sip.message import (
    Headers,
    ParseError,
    Request,
    Response,
    from_aiosipua,
    parse,
    parse_name_addr,
    response_to,
    serialize,
    to_aiosipua,
)

INVITE = (
    b"INVITE sip:95598@engine.example.cn SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.7:5062;rport;branch=z9hG4bK776asdhds\r\n"
    b"v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-proxy-1\r\n"
    b"Max-Forwards: 70\r\n"
    b'f: "Zhang San" <sip:13800000000@trunk.example.cn>;tag=1928301774\r\n'
    b"t: <sip:95598@engine.example.cn>\r\n"
    b"i: a84b4c76e66710@10.0.0.7\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"m: <sip:13800000000@10.0.0.7:5062>;expires=60, <sip:alt@10.0.0.8>\r\n"
    b"Supported:\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n\r\n"
    b"v=0\r\n"
)


def test_compact_forms_and_typed_access() -> None:
    m = parse(INVITE)
    assert isinstance(m, Request)
    assert m.call_id == "a84b4c76e66710@10.0.0.7"
    assert m.cseq.seq == 314159 and m.cseq.method == "INVITE"
    assert [v.branch for v in m.vias] == ["z9hG4bK776asdhds", "z9hG4bK-proxy-1"]
    assert m.top_via.port == 5062 and m.top_via.params["rport"] is None
    assert m.from_.display_name == "Zhang San" and m.from_.tag == "1928301774"
    assert m.to.tag is None
    assert [c.uri for c in m.contacts] == ["sip:13800000000@10.0.0.7:5062", "sip:alt@10.0.0.8"]
    assert m.contacts[0].params == {"expires": "60"}
    assert m.headers.get("Supported") == ""  # an empty header is kept, not a crash
    assert m.headers.get("content-length") == "4" and m.body == b"v=0\r"


def test_serialize_uses_full_names_and_exact_content_length() -> None:
    m = parse(INVITE)
    m.body = b"v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\n"
    wire = serialize(m)
    assert wire.startswith(b"INVITE sip:95598@engine.example.cn SIP/2.0\r\n")
    assert b"\r\nCall-ID: a84b4c76e66710@10.0.0.7\r\n" in wire
    assert b"\r\nContent-Length: 30\r\n\r\n" in wire
    assert parse(wire).body == m.body


def test_response_to_copies_dialog_headers_and_adds_to_tag() -> None:
    request = parse(INVITE)
    assert isinstance(request, Request)
    response = response_to(request, 180, "Ringing", to_tag="as83kd9")
    again = parse(serialize(response))
    assert isinstance(again, Response) and again.status == 180
    assert [v.branch for v in again.vias] == ["z9hG4bK776asdhds", "z9hG4bK-proxy-1"]
    assert again.to.tag == "as83kd9" and again.from_.tag == "1928301774"
    assert again.cseq == request.cseq and again.call_id == request.call_id
    assert response_to(request, 100, "Trying", to_tag="x").to.tag is None


def test_headers_set_replaces_every_line() -> None:
    headers = Headers([("Via", "a"), ("Route", "<sip:r>"), ("v", "b")])
    headers.set("via", "c")
    assert list(headers) == [("Via", "c"), ("Route", "<sip:r>")]
    headers.remove("ROUTE")
    assert "route" not in headers and len(headers) == 1


def test_contact_wildcard_and_errors() -> None:
    assert parse_name_addr("*", allow_wildcard=True).wildcard
    with pytest.raises(ParseError):
        parse_name_addr("*")
    with pytest.raises(ParseError, match="unterminated"):
        parse_name_addr("<sip:a@b")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"INVITE\r\n\r\n",
        b"SIP/2.0\r\n\r\n",
        b"\xff\xfe\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: x OPTIONS\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\n continuation\r\n\r\n",
        b"OPTIONS sip:a@b\r SIP/2.0\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\ry\r\n\r\n",
        "OPTIONS sip:\u00e4@b SIP/2.0\r\n\r\n".encode(),
    ],
)
def test_garbage_raises_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse(data)


def test_aiosipua_hand_over_keeps_the_message() -> None:
    m = parse(INVITE)
    theirs = to_aiosipua(m)
    assert theirs.method == "INVITE" and theirs.call_id == m.call_id
    assert theirs.cseq.seq == 314159
    back = from_aiosipua(theirs)
    assert isinstance(back, Request) and back.cseq == m.cseq and back.body == m.body


def test_stamp_source_adds_received_and_rport() -> None:
    from drivers.sip.message import parse_via, stamp_source

    nat = stamp_source(
        parse_via("SIP/2.0/UDP 192.168.1.21:5060;branch=z9hG4bKx;rport"), "203.0.113.5", 40112
    )
    assert (
        str(nat) == "SIP/2.0/UDP 192.168.1.21:5060;branch=z9hG4bKx;rport=40112;received=203.0.113.5"
    )
    direct = stamp_source(parse_via("SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKy"), "10.0.0.7", 5060)
    assert "received" not in direct.params
    moved = stamp_source(parse_via("SIP/2.0/UDP pbx.example.cn;branch=z9hG4bKz"), "10.0.0.9", 5060)
    assert moved.params["received"] == "10.0.0.9" and "rport" not in moved.params
