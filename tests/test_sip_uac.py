"""The plain UAC (drivers/sip/uac.py): bytes in, bytes and events out, ``now`` passed in.

The far end is written here with the project's parser and ``response_to``: each test reads
what the UAC sent (method, branch, CSeq, Request-URI, SDP) and answers like a phone would.
"""

from __future__ import annotations

from typing import Any

from drivers.sip.message import Request, Response, parse, response_to
from drivers.sip.sdp import Direction, make_offer, parse_sdp, serialize_sdp
from drivers.sip.uac import (
    LegAnswered,
    LegEnded,
    LegFailed,
    LegReinvited,
    LegRinging,
    LegState,
    OptionsResult,
    Uac,
)
from drivers.sip.uas import T1, T2, Send

SEAT = ("127.0.0.1", 40000)
CONTACT = "sip:1001@127.0.0.1:40000;transport=udp"


def offer() -> Any:
    return make_offer(local_address="127.0.0.1", local_port=30000, session_id=77)


def sent(events: list[Any]) -> list[Request | Response]:
    return [parse(e.data) for e in events if isinstance(e, Send)]


def only(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def phone_answer(direction: str = "sendrecv", codec: str = "8 101") -> bytes:
    return (
        "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio 41000 RTP/AVP {codec}\r\na=rtpmap:8 PCMA/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na={direction}\r\n"
    ).encode()


def reply(request: Request, status: int, *, tag: str | None = "seat1", body: bytes = b"") -> bytes:
    response = response_to(request, status, "X", tag)
    if status < 300 and status > 100:
        response.headers.add("Contact", f"<{CONTACT}>")
    if body:
        response.headers.add("Content-Type", "application/sdp")
        response.body = body
    return bytes(response)


def place(uac: Uac, now: float = 0.0) -> tuple[Any, Request]:
    leg, events = uac.invite(
        "sip:1001@127.0.0.1:40000",
        SEAT,
        offer(),
        now,
        to_uri="sip:1001@127.0.0.1",
        caller="13912345678",
    )
    (invite,) = sent(events)
    assert isinstance(invite, Request)
    return leg, invite


def answered(uac: Uac) -> tuple[Any, Request]:
    leg, invite = place(uac)
    uac.receive(reply(invite, 180), SEAT, 0.1)
    events = uac.receive(reply(invite, 200, body=phone_answer()), SEAT, 1.0)
    assert only(events, LegAnswered)
    return leg, invite


def test_invite_carries_the_offer_and_is_retransmitted_by_timer_a_until_timer_b() -> None:
    uac = Uac("127.0.0.1", 5060)
    leg, invite = place(uac)
    assert invite.method == "INVITE" and invite.uri == "sip:1001@127.0.0.1:40000"
    assert invite.cseq.seq == 1 and invite.top_via.rfc3261_branch
    assert invite.from_.tag == leg.local_tag and invite.to.tag is None
    assert '"13912345678"' in (invite.headers.get("from") or "")
    sdp = parse_sdp(invite.body)
    assert sdp.media[0].port == 30000 and sdp.media[0].payload_types() == [8, 0, 101]
    times = []
    now = 0.0
    while now < 40:
        now = round(now + 0.1, 1)
        events = uac.tick(now)
        for message in sent(events):
            assert bytes(message) == bytes(invite)
            times.append(now)
        failed = only(events, LegFailed)
        if failed:
            break
    # Timer A: T1, then doubling (0.5, 1.5, 3.5, 7.5, 15.5, 31.5); Timer B at 64·T1 = 32 s
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert failed[0].status == 408 and now == 32.0
    assert leg.state is LegState.ENDED and not uac.legs


def test_ringing_then_200_is_acked_on_a_new_branch_and_gives_the_plan() -> None:
    uac = Uac("127.0.0.1", 5060)
    leg, invite = place(uac)
    assert uac.receive(reply(invite, 100, tag=None), SEAT, 0.1) == []
    events = uac.receive(reply(invite, 180), SEAT, 0.2)
    assert [e.status for e in only(events, LegRinging)] == [180]
    assert sent(uac.tick(5.0)) == []  # proceeding: no more retransmissions
    events = uac.receive(reply(invite, 200, body=phone_answer()), SEAT, 3.0)
    (ack,) = sent(events)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.uri == CONTACT and ack.cseq.seq == 1 and ack.to.tag == "seat1"
    assert ack.top_via.branch != invite.top_via.branch
    (done,) = only(events, LegAnswered)
    assert (done.plan.codec, done.plan.payload_type, done.plan.event_payload_type) == (
        "PCMA",
        8,
        101,
    )
    assert (done.plan.remote_address, done.plan.remote_port) == ("127.0.0.1", 41000)
    assert leg.state is LegState.CONFIRMED
    # the 200 retransmitted (our ACK was lost): the same ACK again, no second answer
    again = uac.receive(reply(invite, 200, body=phone_answer()), SEAT, 3.5)
    assert [bytes(m) for m in sent(again)] == [bytes(ack)] and not only(again, LegAnswered)


def test_busy_is_acked_on_the_invite_branch_and_fails_the_leg() -> None:
    uac = Uac("127.0.0.1", 5060)
    leg, invite = place(uac)
    events = uac.receive(reply(invite, 486), SEAT, 0.3)
    (ack,) = sent(events)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.top_via.branch == invite.top_via.branch and ack.uri == invite.uri
    assert ack.to.tag == "seat1"
    assert [(f.status) for f in only(events, LegFailed)] == [486]
    assert not uac.legs and uac.tick(40) == []


def test_cancel_while_ringing_then_487() -> None:
    uac = Uac("127.0.0.1", 5060)
    leg, invite = place(uac)
    uac.receive(reply(invite, 180), SEAT, 0.1)
    (cancel,) = sent(uac.cancel(leg, 1.0))
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    assert cancel.top_via.branch == invite.top_via.branch
    assert (cancel.cseq.seq, cancel.cseq.method, cancel.uri) == (1, "CANCEL", invite.uri)
    # the 200 for the CANCEL shares the INVITE's branch: it is not an answer
    assert uac.receive(reply(cancel, 200), SEAT, 1.1) == []
    events = uac.receive(reply(invite, 487), SEAT, 1.2)
    (ack,) = sent(events)
    assert isinstance(ack, Request) and ack.method == "ACK"
    (failed,) = only(events, LegFailed)
    assert (failed.status, failed.reason) == (487, "cancelled")
    assert uac.cancel(leg, 2.0) == []


def test_cancel_before_any_provisional_waits_for_one() -> None:
    uac = Uac("127.0.0.1", 5060)
    leg, invite = place(uac)
    assert uac.cancel(leg, 0.2) == []
    events = uac.receive(reply(invite, 180), SEAT, 0.3)
    assert [m.method for m in sent(events) if isinstance(m, Request)] == ["CANCEL"]
    assert not only(events, LegRinging)


def test_a_200_crossing_the_cancel_is_acked_and_ended_with_bye() -> None:
    uac = Uac("127.0.0.1", 5060)
    leg, invite = place(uac)
    uac.receive(reply(invite, 180), SEAT, 0.1)
    uac.cancel(leg, 1.0)
    events = uac.receive(reply(invite, 200, body=phone_answer()), SEAT, 1.05)
    assert [m.method for m in sent(events) if isinstance(m, Request)] == ["ACK", "BYE"]
    assert not only(events, LegAnswered) and only(events, LegFailed)[0].status == 487


def test_bye_from_the_seat_is_answered_and_ends_the_leg() -> None:
    uac = Uac("127.0.0.1", 5060)
    leg, invite = answered(uac)
    bye = (
        f"BYE sip:95598@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKb1\r\n"
        f"From: <sip:1001@127.0.0.1>;tag=seat1\r\nTo: {invite.headers.get('from')};tag={leg.local_tag}\r\n"
        f"Call-ID: {leg.call_id}\r\nCSeq: 5 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    assert uac.claims(bye)
    events = uac.receive(bye, SEAT, 5.0)
    (ok,) = sent(events)
    assert isinstance(ok, Response) and ok.status == 200
    assert [e.why for e in only(events, LegEnded)] == ["bye"]
    assert not uac.legs and not uac.claims(bye)


def test_bye_with_a_wrong_tag_gets_481() -> None:
    uac = Uac("127.0.0.1", 5060)
    leg, _ = answered(uac)
    bye = (
        f"BYE sip:95598@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKb2\r\n"
        f"From: <sip:1001@127.0.0.1>;tag=seat1\r\nTo: <sip:95598@127.0.0.1>;tag=other\r\n"
        f"Call-ID: {leg.call_id}\r\nCSeq: 5 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    (response,) = sent(uac.receive(bye, SEAT, 5.0))
    assert isinstance(response, Response) and response.status == 481
    assert leg.state is LegState.CONFIRMED


def test_engine_bye_goes_to_the_contact_and_is_retransmitted_until_answered() -> None:
    uac = Uac("127.0.0.1", 5060)
    leg, _ = answered(uac)
    (bye,) = sent(uac.bye(leg, 10.0))
    assert isinstance(bye, Request) and bye.method == "BYE"
    assert (bye.uri, bye.cseq.seq, bye.to.tag) == (CONTACT, 2, "seat1")
    times = [t for t in (10.5, 11.0, 11.5, 12.0) if sent(uac.tick(t))]
    assert times == [10.5, 11.5]  # Timer E: T1, then 2·T1
    assert uac.receive(reply(bye, 200), SEAT, 12.1) == []
    assert uac.tick(20.0) == [] and uac.next_deadline is None


def test_hold_and_resume_send_reinvites_and_give_the_new_plan() -> None:
    uac = Uac("127.0.0.1", 5060)
    leg, _ = answered(uac)
    (reinvite,) = sent(uac.hold(leg, 20.0))
    assert isinstance(reinvite, Request) and reinvite.method == "INVITE"
    assert reinvite.to.tag == "seat1" and reinvite.cseq.seq == 2 and reinvite.uri == CONTACT
    held = parse_sdp(reinvite.body)
    assert held.media[0].direction is Direction.SENDONLY and held.session_version == 2
    assert held.session_id == 77 and held.media[0].port == 30000
    assert uac.hold(leg, 20.1) == []  # one re-INVITE at a time
    events = uac.receive(reply(reinvite, 200, body=phone_answer("recvonly")), SEAT, 20.2)
    (ack,) = sent(events)
    assert isinstance(ack, Request) and (ack.method, ack.cseq.seq) == ("ACK", 2)
    (changed,) = only(events, LegReinvited)
    assert changed.plan.direction is Direction.SENDONLY
    (resume,) = sent(uac.resume(leg, 30.0))
    assert isinstance(resume, Request)
    assert parse_sdp(resume.body).media[0].direction is Direction.SENDRECV
    events = uac.receive(reply(resume, 200, body=phone_answer("sendrecv")), SEAT, 30.1)
    assert only(events, LegReinvited)[0].plan.direction is Direction.SENDRECV


def test_a_reinvite_from_the_seat_is_answered_and_its_retransmission_gets_the_same_200() -> None:
    uac = Uac("127.0.0.1", 5060)
    leg, invite = answered(uac)
    body = phone_answer("sendonly")
    reinvite = (
        f"INVITE sip:95598@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKr1\r\n"
        f"From: <sip:1001@127.0.0.1>;tag=seat1\r\nTo: {invite.headers.get('from')};tag={leg.local_tag}\r\n"
        f"Call-ID: {leg.call_id}\r\nCSeq: 7 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <{CONTACT}>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    events = uac.receive(reinvite, SEAT, 40.0)
    (ok,) = sent(events)
    assert isinstance(ok, Response) and ok.status == 200
    assert parse_sdp(ok.body).media[0].direction is Direction.RECVONLY
    assert only(events, LegReinvited)[0].plan.direction is Direction.RECVONLY
    again = uac.receive(reinvite, SEAT, 40.5)
    assert [e.data for e in again] == [e.data for e in events if isinstance(e, Send)]


def test_an_answer_without_an_offered_codec_ends_the_leg_with_bye() -> None:
    uac = Uac("127.0.0.1", 5060)
    leg, invite = place(uac)
    bad = phone_answer(codec="9").replace(b"a=rtpmap:8 PCMA/8000\r\n", b"")
    events = uac.receive(reply(invite, 200, body=bad), SEAT, 0.5)
    assert [m.method for m in sent(events) if isinstance(m, Request)] == ["ACK", "BYE"]
    assert only(events, LegFailed)[0].status == 488 and not only(events, LegAnswered)


def test_options_keepalive_alive_and_dead() -> None:
    uac = Uac("127.0.0.1", 5060)
    (probe,) = sent(uac.options("1001", CONTACT, SEAT, 0.0, timeout=5.0))
    assert isinstance(probe, Request) and probe.method == "OPTIONS" and probe.uri == CONTACT
    assert uac.claims(reply(probe, 200))
    (result,) = uac.receive(reply(probe, 200), SEAT, 0.1)
    assert result == OptionsResult("1001", True, 200)
    # a phone that does not serve OPTIONS still answers: alive
    (other,) = sent(uac.options("1002", CONTACT, SEAT, 1.0, timeout=5.0))
    assert uac.receive(reply(other, 405), SEAT, 1.1) == [OptionsResult("1002", True, 405)]
    # nothing comes back: retransmitted (Timer E up to T2), then dead
    sent(uac.options("1003", CONTACT, SEAT, 10.0, timeout=12.0))
    resent, results = [], []
    now = 10.0
    while not results and now < 30:
        now = round(now + 0.25, 2)
        events = uac.tick(now)
        resent += [now for _ in sent(events)]
        results += only(events, OptionsResult)
    assert resent == [10.5, 11.5, 13.5, 17.5, 21.5]  # T1, 2·T1, 4·T1, then T2 = 4 s
    assert results == [OptionsResult("1003", False, 0)] and now == 22.0
    assert T2 == 4.0 and T1 == 0.5


def test_claims_only_responses_and_its_own_dialogs() -> None:
    uac = Uac("127.0.0.1", 5060)
    stranger = b"INVITE sip:95598@127.0.0.1 SIP/2.0\r\nCall-ID: abc@x\r\nContent-Length: 0\r\n\r\n"
    assert not uac.claims(stranger)
    leg, _ = place(uac)
    assert uac.claims(stranger.replace(b"abc@x", leg.call_id.encode()))
    assert uac.claims(b"SIP/2.0 200 OK\r\n\r\n")
    # garbage never raises
    assert uac.receive(b"\x00garbage", SEAT, 0.0) == []
    assert uac.receive(serialize_sdp(offer()), SEAT, 0.0) == []
