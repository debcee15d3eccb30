"""Session timers (RFC 4028) in the UAS: negotiation, refresh by re-INVITE and UPDATE, expiry.

Plain-object tests with ``now`` passed in, plus one call on the running endpoint (virtual
clock) whose caller never refreshes and is hung up by the engine.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select
from test_sip_calls import SipCaller, wait_for
from test_sip_uas import CALLER, request, sdp, statuses

from drivers.channel import HangupCause
from drivers.sip.message import Request, Response, parse
from drivers.sip.session_timer import SessionTimer, SessionTimerRejected, expiry, negotiate
from drivers.sip.uas import ALLOW, CallGone, NewCall, Reinvited, Send, Uas
from hotline.store.models import CallRecord
from support import with_engine


def with_headers(data: bytes, *headers: str) -> bytes:
    head, sep, body = data.partition(b"\r\n")
    return head + sep + "".join(h + "\r\n" for h in headers).encode() + body


def answered(*headers: str, uas: Uas | None = None, now: float = 0.0) -> tuple[Uas, Any, Response]:
    """An INVITE carrying ``headers``, answered by the engine at ``now`` and ACKed."""
    uas = uas or Uas("127.0.0.1", 5060)
    events = uas.receive(with_headers(request("INVITE", body=sdp()), *headers), CALLER, now)
    (call,) = [e.call for e in events if isinstance(e, NewCall)]
    (ok,) = uas.answer(call, sdp().encode(), now)
    uas.receive(request("ACK", to_tag=call.to_tag, branch="z9hG4bKack"), CALLER, now)
    return uas, call, parse(ok.data)  # type: ignore[return-value]


def sent(events: list) -> list[Request | Response]:
    return [parse(e.data) for e in events if isinstance(e, Send)]


def byes(events: list) -> list[Request]:
    return [m for m in sent(events) if isinstance(m, Request) and m.method == "BYE"]


def update(call: Any, cseq: int, *headers: str, body: str = "") -> bytes:
    return with_headers(
        request("UPDATE", to_tag=call.to_tag, cseq=cseq, branch=f"z9hG4bKu{cseq}", body=body),
        *headers,
    )


def test_offered_session_timer_is_accepted_with_the_caller_refreshing() -> None:
    _, call, ok = answered("Session-Expires: 1800", "Supported: timer")
    assert ok.headers.get("session-expires") == "1800;refresher=uac"
    assert ok.headers.get("require") == "timer" and "timer" in ok.headers.values("supported")
    assert "UPDATE" in ok.headers.get("allow") and "UPDATE" in ALLOW
    assert call.session_ends_at == pytest.approx(1800 - 32)
    assert call.refresh_at is None


def test_no_session_expires_means_no_timer() -> None:
    uas, call, ok = answered()
    assert ok.headers.get("session-expires") is None and ok.headers.get("require") is None
    assert call.session_ends_at is None and uas.next_session_timer() is None
    assert uas.tick(100_000.0) == []


def test_too_small_interval_gets_422_with_min_se_and_no_call() -> None:
    uas = Uas("127.0.0.1", 5060)
    data = with_headers(request("INVITE", body=sdp()), "Session-Expires: 60", "Supported: timer")
    events = uas.receive(data, CALLER, 0.0)
    assert statuses(events) == [100, 422] and not any(isinstance(e, NewCall) for e in events)
    (refusal,) = [m for m in sent(events) if isinstance(m, Response) and m.status == 422]
    assert refusal.headers.get("min-se") == "90"
    assert uas.calls == {}


def test_the_caller_may_ask_the_engine_to_refresh() -> None:
    _, call, ok = answered("Session-Expires: 600;refresher=uas", "Supported: timer")
    assert ok.headers.get("session-expires") == "600;refresher=uas"
    assert call.refresh_at == pytest.approx(300.0)


def test_a_caller_without_timer_support_leaves_refreshing_to_the_engine() -> None:
    _, call, ok = answered("Session-Expires: 600")  # inserted by a proxy
    assert ok.headers.get("session-expires") == "600;refresher=uas"
    assert ok.headers.get("require") is None
    assert call.refresh_at == pytest.approx(300.0)


def test_unrefreshed_session_ends_with_bye() -> None:
    uas, call, _ = answered("Session-Expires: 120", "Supported: timer", now=10.0)
    deadline = 10.0 + 120 - 32  # interval minus min(32, interval / 3)
    assert uas.next_session_timer() == pytest.approx(deadline)
    assert uas.tick(deadline - 0.1) == []
    events = uas.tick(deadline)
    (bye,) = byes(events)
    assert bye.call_id == call.call_id
    assert [e.why for e in events if isinstance(e, CallGone)] == ["session_expired"]
    assert uas.calls == {} and uas.next_session_timer() is None


def test_update_without_sdp_refreshes_the_session() -> None:
    uas, call, _ = answered("Session-Expires: 120", "Supported: timer")
    events = uas.receive(update(call, 2, "Session-Expires: 120", "Supported: timer"), CALLER, 60.0)
    (ok,) = sent(events)
    assert isinstance(ok, Response) and ok.status == 200 and ok.body == b""
    assert ok.headers.get("session-expires") == "120;refresher=uac"
    assert uas.tick(88.0) == []  # the first deadline has passed: refreshed
    assert byes(uas.tick(60.0 + 88.0))
    # a retransmitted UPDATE gets the same answer, an old CSeq 500, another dialog 481
    uas2, call2, _ = answered("Session-Expires: 120", "Supported: timer")
    first = uas2.receive(update(call2, 5), CALLER, 1.0)
    assert uas2.receive(update(call2, 5), CALLER, 1.5) == first
    assert statuses(uas2.receive(update(call2, 4), CALLER, 2.0)) == [500]
    stranger = request("UPDATE", call_id="other", to_tag="zz", cseq=9)
    assert statuses(uas2.receive(stranger, CALLER, 2.0)) == [481]


def test_update_without_session_expires_stops_the_timer() -> None:
    uas, call, _ = answered("Session-Expires: 120", "Supported: timer")
    (ok,) = sent(uas.receive(update(call, 2), CALLER, 30.0))
    assert ok.headers.get("session-expires") is None  # type: ignore[union-attr]
    assert uas.next_session_timer() is None and uas.tick(10_000.0) == []


def test_reinvite_refreshes_the_session() -> None:
    uas, call, _ = answered("Session-Expires: 120", "Supported: timer")
    reinvite = with_headers(
        request("INVITE", to_tag=call.to_tag, cseq=2, branch="z9hG4bKre", body=sdp()),
        "Session-Expires: 150",
        "Supported: timer",
    )
    events = uas.receive(reinvite, CALLER, 80.0)
    (ok,) = [m for m in sent(events) if isinstance(m, Response) and m.status == 200]
    assert ok.headers.get("session-expires") == "150;refresher=uac"
    uas.receive(request("ACK", to_tag=call.to_tag, cseq=2, branch="z9hG4bKack2"), CALLER, 80.1)
    assert byes(uas.tick(120.0)) == []
    assert call.session_ends_at == pytest.approx(80.0 + 150 - 32)


def test_reinvite_with_too_small_interval_gets_422_and_keeps_the_call() -> None:
    uas, call, _ = answered("Session-Expires: 120", "Supported: timer")
    reinvite = with_headers(
        request("INVITE", to_tag=call.to_tag, cseq=2, branch="z9hG4bKre", body=sdp()),
        "Session-Expires: 30",
    )
    assert statuses(uas.receive(reinvite, CALLER, 5.0)) == [422]
    assert call.call_id in uas.calls and call.session_ends_at == pytest.approx(88.0)


def test_update_with_an_offer_is_answered_like_a_reinvite() -> None:
    uas, call, _ = answered("Session-Expires: 120", "Supported: timer")
    hold = sdp() + "a=sendonly\r\n"
    events = uas.receive(update(call, 2, "Session-Expires: 120", body=hold), CALLER, 10.0)
    (ok,) = sent(events)
    assert isinstance(ok, Response) and ok.status == 200
    assert b"a=recvonly" in ok.body and ok.headers.get("content-type") == "application/sdp"
    (changed,) = [e for e in events if isinstance(e, Reinvited)]
    assert str(changed.plan.direction) == "recvonly"  # the engine stops sending
    bad = uas.receive(update(call, 3, body=sdp("18")), CALLER, 11.0)
    assert statuses(bad) == [488] and call.call_id in uas.calls


def test_engine_refreshes_with_update_and_restarts_on_200() -> None:
    uas, call, _ = answered("Session-Expires: 600;refresher=uas", "Supported: timer")
    assert uas.tick(299.0) == []
    (out,) = uas.tick(300.0)
    refresh = parse(out.data)
    assert isinstance(refresh, Request) and refresh.method == "UPDATE" and refresh.body == b""
    assert refresh.headers.get("session-expires") == "600;refresher=uas"
    assert refresh.to.tag == "abc" and refresh.from_.tag == call.to_tag
    assert len(uas.tick(300.5)) == 1  # Timer E: retransmitted after T1
    ok = (
        f"SIP/2.0 200 OK\r\nVia: {refresh.headers.get('via')}\r\n"
        f"From: {refresh.headers.get('from')}\r\nTo: {refresh.headers.get('to')}\r\n"
        f"Call-ID: {refresh.call_id}\r\nCSeq: {refresh.headers.get('cseq')}\r\n"
        "Session-Expires: 600;refresher=uas\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    assert uas.receive(ok, CALLER, 301.0) == []
    assert call.update is None and call.refresh_at == pytest.approx(601.0)
    assert call.session_ends_at == pytest.approx(301.0 + 600 - 32)
    assert uas.tick(310.0) == []


def test_engine_refresh_answered_481_or_unanswered_ends_the_call() -> None:
    uas, call, _ = answered("Session-Expires: 600;refresher=uas", "Supported: timer")
    refresh = parse(uas.tick(300.0)[0].data)
    gone = (
        f"SIP/2.0 481 Call Does Not Exist\r\nVia: {refresh.headers.get('via')}\r\n"
        f"From: {refresh.headers.get('from')}\r\nTo: {refresh.headers.get('to')}\r\n"
        f"Call-ID: {refresh.call_id}\r\nCSeq: {refresh.headers.get('cseq')}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    events = uas.receive(gone, CALLER, 300.2)
    assert byes(events) and [e.why for e in events if isinstance(e, CallGone)] == [
        "session_expired"
    ]
    uas2, call2, _ = answered("Session-Expires: 600;refresher=uas", "Supported: timer")
    uas2.tick(300.0)
    now, ended = 300.0, []
    while not ended and now < 400:
        now += 0.5
        ended = [e for e in uas2.tick(now) if isinstance(e, CallGone)]
    assert now == pytest.approx(332.0)  # Timer F: 64 * T1 without an answer


def test_negotiation_rules() -> None:
    def req(*headers: str) -> Request:
        return parse(with_headers(request("INVITE", body=sdp()), *headers))  # type: ignore[return-value]

    assert negotiate(req("Session-Expires: 90", "Supported: timer")) == SessionTimer(
        90, "uac", True
    )
    assert negotiate(req("x: 1000;refresher=uas", "k: timer")) == SessionTimer(1000, "uas", True)
    assert negotiate(req("Session-Expires: 1000", "Require: timer")).uac_supports is True
    with pytest.raises(SessionTimerRejected) as small:
        negotiate(req("Session-Expires: 60", "Min-SE: 120"))
    assert (small.value.status, small.value.headers) == (422, (("Min-SE", "120"),))
    with pytest.raises(SessionTimerRejected) as bad:
        negotiate(req("Session-Expires: soon"))
    assert bad.value.status == 400


def test_expiry_is_the_interval_minus_a_third_or_32_seconds() -> None:
    assert expiry(SessionTimer(90, "uac", True), 0.0) == pytest.approx(60.0)
    assert expiry(SessionTimer(1800, "uac", True), 0.0) == pytest.approx(1768.0)


def test_a_caller_that_never_refreshes_is_hung_up_by_the_engine(engine_config: Any) -> None:
    """On the running endpoint (virtual clock): BYE after 90 - 30 s without refresh."""

    async def body(engine: Any) -> Any:
        channels: list[Any] = []
        incoming = engine.sip.on_incoming
        engine.sip.on_incoming = lambda ch: (channels.append(ch), incoming(ch))
        caller = SipCaller(engine.sip.port)
        await caller.open()
        ended_at: list[float] = []
        loop = asyncio.get_running_loop()
        try:
            caller.send(with_headers(caller.invite_bytes(), "Session-Expires: 90", "k: timer"))
            ok = await caller.response(200)
            start = loop.time()
            caller.to_header = ok.headers.get("to") or ""
            caller.send(
                (
                    f"ACK sip:95598@127.0.0.1:{engine.sip.port} SIP/2.0\r\n"
                    + caller.headers("ACK", 1, branch="z9hG4bKack", to=caller.to_header)
                    + "Content-Length: 0\r\n\r\n"
                ).encode()
            )
            caller._tick()
            await wait_for(lambda: any(r.method == "BYE" for r in caller.requests), 120)
            ended_at.append(loop.time() - start)
            await asyncio.wait_for(engine.idle(), 30)
        finally:
            caller.close()
        async with engine.db.session() as session:
            (record,) = (await session.execute(select(CallRecord))).scalars()
        return ok, ended_at[0], channels[0].hangup_cause, record

    ok, ended_after, cause, record = with_engine(engine_config, body)
    assert ok.headers.get("session-expires") == "90;refresher=uac"
    assert 60.0 <= ended_after < 61.0
    assert cause is HangupCause.SESSION_EXPIRED
    assert record.hangup_cause == "session_expired" and record.answered_at is not None
