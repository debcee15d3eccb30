"""The plain UAS state machine: INVITE/ACK/CANCEL/BYE/OPTIONS, Timer G/H, malformed input."""

from __future__ import annotations

from drivers.sip.message import parse
from drivers.sip.uas import T1, T2, CallGone, CallState, NewCall, Send, Uas

CALLER = ("127.0.0.1", 40000)
OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40002 RTP/AVP {formats}\r\n{maps}"
)


def sdp(formats: str = "0 101") -> str:
    maps = "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    if formats.startswith("18"):
        maps = "a=rtpmap:18 G729/8000\r\n"
    return OFFER.format(formats=formats, maps=maps)


def request(
    method: str,
    *,
    call_id: str = "c1",
    branch: str = "z9hG4bKa1",
    cseq: int = 1,
    to_tag: str = "",
    body: str = "",
    cseq_method: str | None = None,
) -> bytes:
    to = "<sip:95598@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:95598@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:40000;branch={branch}",
        "Max-Forwards: 70",
        "From: <sip:13800000000@127.0.0.1>;tag=abc",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:13800000000@127.0.0.1:40000>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def statuses(events: list) -> list[int]:
    """Status codes sent (read from the status line: a 400 echoes the bad headers as sent)."""
    out = []
    for e in events:
        if isinstance(e, Send) and e.data.startswith(b"SIP/2.0 "):
            out.append(int(e.data.split(b" ", 2)[1]))
    return out


def invite(uas: Uas, **kw) -> tuple[list, object]:
    events = uas.receive(request("INVITE", body=sdp(), **kw), CALLER, 0.0)
    calls = [e.call for e in events if isinstance(e, NewCall)]
    return events, calls[0] if calls else None


def test_invite_rings_then_answer_sends_200_with_sdp_and_ack_confirms() -> None:
    uas = Uas("127.0.0.1", 5060)
    events, call = invite(uas)
    assert statuses(events) == [100, 180]
    assert call.called == "95598" and call.caller == "13800000000"
    (ok,) = uas.answer(call, b"v=0\r\n", 1.0)
    response = parse(ok.data)
    assert response.status == 200 and response.body == b"v=0\r\n"
    assert response.to.tag == call.to_tag and response.headers.get("contact")
    uas.receive(request("ACK", to_tag=call.to_tag, branch="z9hG4bKack"), CALLER, 1.1)
    assert call.state is CallState.CONFIRMED
    assert uas.tick(10.0) == []


def test_no_common_codec_is_488_and_no_call() -> None:
    uas = Uas("127.0.0.1", 5060)
    events = uas.receive(request("INVITE", body=sdp("18")), CALLER, 0.0)
    assert statuses(events) == [100, 488]
    assert not any(isinstance(e, NewCall) for e in events) and not uas.calls


def test_retransmitted_invite_gets_the_last_response_again() -> None:
    uas = Uas("127.0.0.1", 5060)
    _, call = invite(uas)
    again = uas.receive(request("INVITE", body=sdp()), CALLER, 0.2)
    assert statuses(again) == [180] and not any(isinstance(e, NewCall) for e in again)


def test_cancel_before_answer_is_200_and_487_and_the_call_is_gone() -> None:
    uas = Uas("127.0.0.1", 5060)
    _, call = invite(uas)
    events = uas.receive(request("CANCEL"), CALLER, 0.5)
    assert statuses(events) == [200, 487]
    assert parse(events[1].data).cseq.method == "INVITE"
    assert [e.why for e in events if isinstance(e, CallGone)] == ["cancelled"]
    assert uas.answer(call, b"", 0.6) == []  # too late to answer


def test_cancel_of_unknown_transaction_is_481() -> None:
    uas = Uas("127.0.0.1", 5060)
    assert statuses(uas.receive(request("CANCEL", call_id="nope"), CALLER, 0)) == [481]


def test_bye_from_the_caller_is_200_and_ends_the_call() -> None:
    uas = Uas("127.0.0.1", 5060)
    _, call = invite(uas)
    uas.answer(call, b"", 0.0)
    events = uas.receive(request("BYE", to_tag=call.to_tag, cseq=2), CALLER, 3.0)
    assert statuses(events) == [200]
    assert [e.why for e in events if isinstance(e, CallGone)] == ["bye"]
    assert statuses(uas.receive(request("BYE", to_tag=call.to_tag, cseq=3), CALLER, 3)) == [481]


def test_engine_hangup_sends_bye_in_the_dialog() -> None:
    uas = Uas("127.0.0.1", 5060)
    _, call = invite(uas)
    uas.answer(call, b"", 0.0)
    (bye,) = uas.hangup(call)
    message = parse(bye.data)
    assert message.method == "BYE" and bye.address == ("127.0.0.1", 40000)
    assert message.uri == "sip:13800000000@127.0.0.1:40000"
    assert message.from_.tag == call.to_tag and message.to.tag == "abc"
    assert message.call_id == "c1" and uas.hangup(call) == []


def test_engine_hangup_before_answer_is_480() -> None:
    uas = Uas("127.0.0.1", 5060)
    _, call = invite(uas)
    assert statuses(uas.hangup(call)) == [480]


def test_200_is_retransmitted_timer_g_until_timer_h_then_bye() -> None:
    uas = Uas("127.0.0.1", 5060)
    _, call = invite(uas)
    uas.answer(call, b"", 0.0)
    resent, now, interval = [], T1, T1
    while now < 64 * T1:
        events = uas.tick(now)
        resent += [now for e in events if isinstance(e, Send)]
        interval = min(2 * interval, T2)
        now += interval
    assert resent[:4] == [T1, 3 * T1, 7 * T1, 15 * T1]
    events = uas.tick(64 * T1)
    assert [parse(e.data).method for e in events if isinstance(e, Send)] == ["BYE"]
    assert [e.why for e in events if isinstance(e, CallGone)] == ["no_ack"]


def test_options_is_200_with_allow() -> None:
    uas = Uas("127.0.0.1", 5060)
    (reply,) = uas.receive(request("OPTIONS"), CALLER, 0)
    response = parse(reply.data)
    assert response.status == 200 and "INVITE" in response.headers.get("allow")


def test_malformed_requests_get_400_or_are_dropped_and_calls_survive() -> None:
    uas = Uas("127.0.0.1", 5060)
    _, call = invite(uas)
    bad = request("INVITE", call_id="c2", body=sdp()).replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE")
    assert statuses(uas.receive(bad, CALLER, 0.1)) == [400]
    assert uas.receive(b"\x00\xff garbage", CALLER, 0.1) == []
    wrong_method = request("INVITE", call_id="c3", body=sdp(), cseq_method="BYE")
    assert statuses(uas.receive(wrong_method, CALLER, 0.1)) == [400]
    bad_sdp = request("INVITE", call_id="c4", body="v=0\r\nnonsense\r\n")
    assert 488 in statuses(uas.receive(bad_sdp, CALLER, 0.1))
    assert list(uas.calls) == ["c1"] and call.state is CallState.RINGING
    assert parse(uas.answer(call, b"", 0.2)[0].data).status == 200


def test_unknown_method_is_405() -> None:
    uas = Uas("127.0.0.1", 5060)
    assert statuses(uas.receive(request("SUBSCRIBE"), CALLER, 0)) == [405]


def test_thousands_of_damaged_requests_never_raise_and_leave_no_ringing_call_behind() -> None:
    import random

    rng = random.Random(4475)
    uas = Uas("127.0.0.1", 5060)
    _, call = invite(uas)
    seeds = [
        request("INVITE", call_id="f", body=sdp()),
        request("BYE", call_id="other", to_tag="x"),
        request("CANCEL", call_id="other"),
        request("OPTIONS"),
        request("ACK", call_id="c1"),
    ]
    answered = 0
    for n in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            op = rng.random()
            if op < 0.4:
                data[pos] = rng.randrange(256)
            elif op < 0.7:
                del data[pos : pos + rng.randint(1, 8)]
            else:
                data[pos:pos] = rng.choice([b":", b";", b"\r\n", b" ", b"\x00", b"<", b"0"])
        events = uas.receive(
            bytes(data).replace(b"Call-ID: f", f"Call-ID: f{n}".encode()), CALLER, n
        )
        for new in [e.call for e in events if isinstance(e, NewCall)]:
            answered += 1
            uas.answer(new, b"", n)
            uas.hangup(new)
    assert "c1" in uas.calls and call.state is CallState.RINGING  # never harmed
    assert all(c.call_id == "c1" for c in uas.calls.values())
    assert answered > 0  # some damaged INVITEs were still acceptable calls


def confirmed_call(uas: Uas) -> object:
    from drivers.sip.sdp import answer_offer, parse_sdp, serialize_sdp

    _, call = invite(uas)
    answer, plan = answer_offer(
        parse_sdp(sdp()), local_address="127.0.0.1", local_port=30000, session_id=77
    )
    uas.answer(call, serialize_sdp(answer), 0.0, plan=plan)
    uas.receive(request("ACK", to_tag=call.to_tag, branch="z9hG4bKack"), CALLER, 0.1)
    assert call.state is CallState.CONFIRMED
    return call


def reinvite(uas: Uas, call, direction: str, cseq: int, now: float = 1.0) -> list:
    body = sdp() + (f"a={direction}\r\n" if direction else "")
    data = request("INVITE", to_tag=call.to_tag, cseq=cseq, branch=f"z9hG4bKre{cseq}", body=body)
    return uas.receive(data, CALLER, now)


def test_reinvite_hold_inactive_and_resume_answer_directions_with_new_sdp_versions() -> None:
    from drivers.sip.sdp import Direction, parse_sdp
    from drivers.sip.uas import Reinvited

    uas = Uas("127.0.0.1", 5060)
    call = confirmed_call(uas)
    seen = []
    for cseq, (offered, answered) in enumerate(
        [("sendonly", "recvonly"), ("inactive", "inactive"), ("sendrecv", "sendrecv")], 2
    ):
        events = reinvite(uas, call, offered, cseq, now=cseq)
        assert statuses(events) == [100, 200]
        ok = parse(next(e.data for e in events if isinstance(e, Send) and b" 200 " in e.data[:12]))
        assert ok.cseq.seq == cseq and ok.to.tag == call.to_tag
        answer = parse_sdp(ok.body)
        assert answer.media[0].direction == Direction(answered)
        assert answer.media[0].port == 30000 and answer.session_id == 77
        seen.append(answer.session_version)
        (changed,) = [e for e in events if isinstance(e, Reinvited)]
        assert changed.plan.direction == Direction(answered)
        assert changed.plan.direction.sends == (answered == "sendrecv")
        assert call.state is CallState.ANSWERED  # the 200 waits for its ACK
        ack = request("ACK", to_tag=call.to_tag, cseq=cseq, branch=f"z9hG4bKack{cseq}")
        assert uas.receive(ack, CALLER, cseq + 0.1) == []
        assert call.state is CallState.CONFIRMED and uas.tick(cseq + 5) == []
    assert seen == [2, 3, 4]  # each answer is a new SDP version


def test_reinvite_200_is_retransmitted_until_ack_and_a_retransmitted_reinvite_gets_it_again() -> (
    None
):
    uas = Uas("127.0.0.1", 5060)
    call = confirmed_call(uas)
    first = reinvite(uas, call, "sendonly", 2)
    again = reinvite(uas, call, "sendonly", 2, now=1.2)
    assert statuses(again) == [200] and again[0].data == first[1].data
    assert statuses(uas.tick(1.0 + T1)) == [200]
    uas.receive(request("ACK", to_tag=call.to_tag, cseq=2, branch="z9hG4bKx"), CALLER, 1.6)
    assert uas.tick(10.0) == [] and call.state is CallState.CONFIRMED


def test_unacceptable_reinvite_is_488_and_the_call_goes_on_unchanged() -> None:
    uas = Uas("127.0.0.1", 5060)
    call = confirmed_call(uas)
    plan = call.plan
    data = request("INVITE", to_tag=call.to_tag, cseq=2, branch="z9hG4bKg", body=sdp("18"))
    assert statuses(uas.receive(data, CALLER, 1.0)) == [100, 488]
    assert call.state is CallState.CONFIRMED and call.plan is plan
    assert statuses(reinvite(uas, call, "sendonly", 3)) == [100, 200]


def test_reinvite_pending_old_cseq_and_unknown_dialog() -> None:
    uas = Uas("127.0.0.1", 5060)
    call = confirmed_call(uas)
    reinvite(uas, call, "sendonly", 2)
    assert statuses(reinvite(uas, call, "sendrecv", 3)) == [491]  # first 200 not ACKed yet
    uas.receive(request("ACK", to_tag=call.to_tag, cseq=2, branch="z9hG4bKy"), CALLER, 1.5)
    assert statuses(reinvite(uas, call, "sendrecv", 1)) == [500]
    stray = request("INVITE", to_tag="other", cseq=5, body=sdp())
    assert statuses(uas.receive(stray, CALLER, 2.0)) == [481]


def test_reinvite_without_sdp_offers_the_current_description() -> None:
    from drivers.sip.sdp import parse_sdp

    uas = Uas("127.0.0.1", 5060)
    call = confirmed_call(uas)
    data = request("INVITE", to_tag=call.to_tag, cseq=2, branch="z9hG4bKn")
    events = uas.receive(data, CALLER, 1.0)
    assert statuses(events) == [100, 200]
    assert parse_sdp(parse(events[1].data).body).media[0].port == 30000


def test_without_rfc4733_a_reinvite_offering_telephone_event_is_answered_without_it() -> None:
    from drivers.sip.sdp import parse_sdp
    from drivers.sip.uas import Reinvited

    for accepted in (True, False):
        uas = Uas("127.0.0.1", 5060, telephone_event=accepted)
        call = confirmed_call(uas)
        events = reinvite(uas, call, "sendrecv", 2)
        ok = parse(next(e.data for e in events if isinstance(e, Send) and b" 200 " in e.data[:12]))
        (changed,) = [e for e in events if isinstance(e, Reinvited)]
        formats = parse_sdp(ok.body).media[0].formats
        assert ("101" in formats) is accepted
        assert (b"telephone-event" in ok.body) is accepted
        assert changed.plan.event_payload_type == (101 if accepted else None)
