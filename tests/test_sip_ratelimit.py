"""Per-source rate limits: the token bucket, the bounded source table, 503 from the UAS."""

from __future__ import annotations

import pytest
from test_sip_uas import request, sdp, statuses

from drivers.sip.message import parse
from drivers.sip.ratelimit import RateLimitError, SourceLimiter, TokenBucket
from drivers.sip.uas import Limited, NewCall, Uas


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == 1
    assert bucket.take(0.5) and not bucket.take(0.5)  # one token back per 0.5 s
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_limits_that_cannot_work_are_refused_with_the_values() -> None:
    with pytest.raises(RateLimitError, match="rate 0"):
        SourceLimiter(0, 5)
    with pytest.raises(RateLimitError, match="max_sources 0"):
        SourceLimiter(1, 5, max_sources=0)


def test_each_source_has_its_own_bucket_and_refusals_are_reported_once_per_window() -> None:
    limiter = SourceLimiter(1.0, 2, log_window=10.0)
    assert [limiter.check("a", 0.0).allowed for _ in range(2)] == [True, True]
    first = limiter.check("a", 0.0)
    assert not first.allowed and first.report and first.refused_since_report == 1
    quiet = [limiter.check("a", 0.1 * n) for n in range(1, 6)]
    assert not any(v.allowed or v.report for v in quiet)
    assert limiter.check("b", 0.5).allowed  # another source is unaffected
    later = [limiter.check("a", 10.0 + 0.01 * n) for n in range(3)]
    assert [v.allowed for v in later] == [True, True, False]  # refilled to the burst
    assert later[2].report and later[2].refused_since_report == 6  # 5 quiet + this one


def test_the_source_table_is_bounded_and_evicts_the_least_recently_seen() -> None:
    limiter = SourceLimiter(1.0, 1, max_sources=100)
    for n in range(10_000):
        limiter.check(f"10.0.{n // 256}.{n % 256}", n * 0.001)
    assert len(limiter) == 100 and limiter.evicted == 9_900
    limiter.check("victim", 20.0)
    for n in range(99):
        limiter.check(f"spoof{n}", 20.0)
        limiter.check("victim", 20.0)  # kept recent: never evicted, still limited
    assert not limiter.check("victim", 20.0).allowed


def test_uas_answers_an_invite_flood_with_503_and_retry_after_other_sources_still_call() -> None:
    uas = Uas("127.0.0.1", 5060, invite_limit=SourceLimiter(1.0, 3, log_window=60.0))
    flooder, caller = ("192.0.2.9", 5060), ("127.0.0.1", 40000)
    out = []
    for n in range(20):
        out.append(uas.receive(request("INVITE", call_id=f"f{n}", body=sdp()), flooder, 0.0))
    assert [statuses(e)[-1] for e in out[:3]] == [180, 180, 180]
    refused = out[3:]
    assert all(statuses(e) == [503] for e in refused)
    assert parse(refused[0][0].data).headers.get("retry-after") == "1"
    assert [type(e).__name__ for e in refused[0]] == ["Send", "Limited"]
    assert sum(isinstance(x, Limited) for e in refused for x in e) == 1  # logged once
    assert len(uas.calls) == 3  # the refused INVITEs left nothing behind
    again = uas.receive(request("INVITE", call_id="f0", body=sdp()), flooder, 0.0)
    assert statuses(again) == [180]  # a retransmission is not counted
    events = uas.receive(request("INVITE", call_id="ok", body=sdp()), caller, 0.0)
    assert any(isinstance(e, NewCall) for e in events)


def test_uas_limits_register_per_source() -> None:
    uas = Uas("127.0.0.1", 5060, register_limit=SourceLimiter(1.0, 2))
    source = ("192.0.2.7", 5070)
    got = [statuses(uas.receive(request("REGISTER", cseq=n), source, 0.0)) for n in range(1, 5)]
    assert got == [[405], [405], [503], [503]]  # 405: no registrar behind this endpoint yet
    assert statuses(uas.receive(request("REGISTER", cseq=9), source, 1.0)) == [405]
