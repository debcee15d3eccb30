"""Agents at SIP softphones: the engine's outbound leg (B2BUA) to a registered seat.

Agent 1001 sits at ``sip:1001`` (agents.yaml rewritten for the test), the others at board
stations. A raw-socket softphone (``tests/sip_seat_phone.py``) registers as seat 1001 with
the demo password, the ACD rings it with an INVITE from the engine, and the test checks what
each side heard, the stereo recording, and what the ACD did: ring timeout → CANCEL and the
caller re-offered, BYE from the seat and from the caller, the phone unregistering or going
silent (OPTIONS keepalive) → reconciliation. And the toll-fraud rule: nothing an outside
INVITE carries makes the engine dial.
"""

from __future__ import annotations

import asyncio
import shutil
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sip_seat_phone import SeatPhone
from test_contact_center import ask_for_agent, ringing, seat_rings
from test_sip_calls import SipCaller, listen, said, wait_for

from drivers.media.g711 import ulaw_decode
from drivers.media.tones import sine
from drivers.sip.channel import OutboundSipChannel
from drivers.sip.outbound import DialRefused
from drivers.sip.sdp import parse_sdp
from hotline.services.sip_seats import DEMO_PASSWORD
from ivr.speech.readout import say
from support import REPO, dominant_hz, make_config, queue_events, with_engine

OTHERS = ("1002", "1003", "1004")


@pytest.fixture
def seat_config(engine_template: Path, tmp_path: Path) -> Any:
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    queues = tmp_path / "queues"
    queues.mkdir()
    for name in ("general.yaml", "fault.yaml"):
        shutil.copy(REPO / "queues" / name, queues / name)
    agents = (REPO / "queues" / "agents.yaml").read_text(encoding="utf-8")
    (queues / "agents.yaml").write_text(agents.replace("seat: s1}", "seat: sip:1001}"), "utf-8")
    config = make_config(tmp_path, cache=engine_template / "cache", acd={"queues_dir": str(queues)})
    config.sip.answer_after = 0.2
    return config


async def seat_phone(engine: Any, user: str = "1001") -> SeatPhone:
    phone = SeatPhone(engine.sip.port, user, DEMO_PASSWORD)
    await phone.open()
    response = await phone.register()
    assert response.status == 200, response.status
    return phone


def only_1001(engine: Any) -> None:
    for agent_id in OTHERS:
        engine.set_agent_not_ready(agent_id, "busy")


async def phone_rings(phone: SeatPhone, timeout: float = 30) -> None:
    await wait_for(lambda: phone.invite is not None, timeout)


async def exchange_tones(
    engine: Any, caller: SipCaller, phone: SeatPhone
) -> tuple[np.ndarray, np.ndarray]:
    """Once the SIP caller and the seat are bridged (the agent id read out first), the seat
    says 1400 Hz and the caller 600 Hz for a second: what each side received meanwhile."""

    def bridged() -> bool:
        legs = engine.sip.channels.values()
        return sum(type(ch.operation).__name__ == "_Bridge" for ch in legs) == 2

    await wait_for(bridged, 30)
    await asyncio.sleep(0.3)
    mark_caller, mark_seat = len(caller.received), len(phone.received)
    phone.say(sine(1400, 1000, -10))
    caller.say(sine(600, 1000, -10))
    await asyncio.sleep(1.2)
    to_caller = ulaw_decode(bytes(caller.received[mark_caller:]))
    to_seat = ulaw_decode(bytes(phone.received[mark_seat:]))
    return to_caller, to_seat


def test_a_sip_seat_rings_answers_and_both_sides_hear_each_other(seat_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        events = queue_events(engine)
        before = engine.agent_status("1001")  # logged in at start, phone not registered yet
        phone = await seat_phone(engine)
        registered = engine.agent_status("1001")
        only_1001(engine)
        try:
            caller = await ask_for_agent(engine)
            await phone_rings(phone)
            invite = phone.invite
            assert engine.agent_status("1001")["state"] == "reserved"
            phone.answer()
            await caller.expect(f"工号{say('digits', '1001')}为您服务")
            await caller.wait_quiet()
            far_caller = engine.board.line(1).far_end
            far_caller.capture_audio = True
            await asyncio.sleep(0.3)
            mark = len(phone.received)
            answered = far_caller.call.answered
            t_send = asyncio.get_running_loop().time()
            phone.say(sine(1400, 1000, -10))
            await far_caller.send(sine(600, 1000, -10))
            await asyncio.sleep(0.2)
            far_caller.capture_audio = False
            on_call = engine.agent_status("1001")
            phone.bye()  # the agent hangs up: the caller goes back to the flow
            await caller.expect("感谢您的来电")
            await caller.expect_hangup()
            await engine.idle()
            return {
                "before": before,
                "registered": registered,
                "invite": invite,
                "on_call": on_call,
                "after": engine.agent_status("1001"),
                "agent_heard": ulaw_decode(bytes(phone.received[mark:])),
                "caller_heard": far_caller.heard_audio(),
                "offset": t_send - answered,
                "events": events,
                "channels": dict(engine.sip.channels),
            }
        finally:
            phone.close()

    got = with_engine(seat_config, body)
    assert (got["before"]["status"], got["before"]["reason"]) == ("not_ready", "unregistered")
    assert got["registered"]["status"] == "ready"
    invite = got["invite"]
    assert invite.uri.startswith("sip:1001@127.0.0.1:")
    assert '"13912345678"' in invite.headers.get("from")  # the caller's number on the phone
    assert got["on_call"]["state"] == "on_call"
    assert got["after"]["state"] == "wrap_up"
    assert dominant_hz(got["agent_heard"][-8000:]) == pytest.approx(600, abs=5)
    assert dominant_hz(got["caller_heard"]) == pytest.approx(1400, abs=5)
    assert np.abs(got["caller_heard"]).max() > 5000
    kinds = [k for k, _, _ in got["events"]]
    (pop,) = [d for k, _, d in got["events"] if k == "queue.screen_pop"]
    assert (pop["agent_id"], pop["seat"]) == ("1001", "sip:1001")
    assert "queue.complete_agent" in kinds
    assert got["channels"] == {}  # no SIP leg left behind
    # the caller's recording: the caller's 600 Hz left, the SIP agent's 1400 Hz right
    (recording,) = sorted(seat_config.path(seat_config.recordings_dir).rglob("*-t1-*.wav"))
    with wave.open(str(recording)) as w:
        stereo = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    start = int((got["offset"] + 0.2) * 8000)
    window = stereo[start : start + 4800]
    assert dominant_hz(window[:, 0]) == pytest.approx(600, abs=5)
    assert dominant_hz(window[:, 1]) == pytest.approx(1400, abs=5)
    # the seat leg is not recorded on its own
    assert len(list(seat_config.path(seat_config.recordings_dir).rglob("*.wav"))) == 1


def test_ring_timeout_cancels_the_seat_and_reoffers_the_caller(seat_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        events = queue_events(engine)
        phone = await seat_phone(engine)
        only_1001(engine)
        try:
            caller = await ask_for_agent(engine)
            await phone_rings(phone)
            engine.set_agent_ready("1002")
            second = await seat_rings(engine, "s2", timeout=20)  # after the 15 s ring timeout
            missed = engine.agent_status("1001")
            await wait_for(lambda: "ACK" in phone.methods(), 5)  # the 487 was acknowledged
            second.off_hook()
            await caller.expect(f"工号{say('digits', '1002')}为您服务")
            await caller.hang_up()
            await engine.idle()
            return {"missed": missed, "methods": phone.methods(), "events": events}
        finally:
            phone.close()

    got = with_engine(seat_config, body)
    assert (got["missed"]["status"], got["missed"]["reason"]) == ("not_ready", "missed")
    assert got["methods"] == ["INVITE", "CANCEL", "ACK"]
    offers = [agent for kind, agent, _ in got["events"] if kind == "queue.offer"]
    assert offers == ["1001", "1002"]
    no_answer = [d for kind, _, d in got["events"] if kind == "queue.ring_no_answer"]
    assert len(no_answer) == 1 and no_answer[0]["cause"] == "timeout"


def test_a_sip_caller_s_bye_reaches_the_sip_seat_and_the_recording_has_both_sides(
    seat_config: Any,
) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        plays = listen(engine)
        phone = await seat_phone(engine)
        only_1001(engine)
        caller = SipCaller(engine.sip.port)
        await caller.open()
        try:
            await caller.call()
            await wait_for(lambda: said(plays, "人工服务请按零"))
            caller.press("0")
            await phone_rings(phone, 60)
            phone.answer()
            await wait_for(lambda: said(plays, "为您服务"))

            to_caller, to_seat = await exchange_tones(engine, caller, phone)
            caller.bye()
            await wait_for(lambda: "BYE" in phone.methods(), 10)
            await engine.idle()
            return {
                "to_caller": to_caller,
                "to_seat": to_seat,
                "methods": phone.methods(),
                "after": engine.agent_status("1001"),
                "channels": dict(engine.sip.channels),
            }
        finally:
            caller.close()
            phone.close()

    got = with_engine(seat_config, body)
    assert dominant_hz(got["to_caller"][-4000:]) == pytest.approx(1400, abs=5)
    assert dominant_hz(got["to_seat"][-4000:]) == pytest.approx(600, abs=5)
    assert got["methods"] == ["INVITE", "ACK", "BYE"]
    assert got["after"]["state"] == "wrap_up" and got["channels"] == {}
    # one recording (the SIP caller's): caller left, agent right, each on its own channel
    (recording,) = list(seat_config.path(seat_config.recordings_dir).rglob("*.wav"))
    with wave.open(str(recording)) as w:
        stereo = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    both = (np.abs(stereo[:, 0]) > 3000) & (np.abs(stereo[:, 1]) > 3000)
    assert both.sum() > 4000  # the two tones overlap in time
    start = int(np.argmax(both)) + 400
    window = stereo[start : start + 3200]
    assert dominant_hz(window[:, 0]) == pytest.approx(600, abs=5)
    assert dominant_hz(window[:, 1]) == pytest.approx(1400, abs=5)


def test_unregistering_while_ringing_or_idle_reconciles_the_agent(seat_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        events = queue_events(engine)
        phone = await seat_phone(engine)
        only_1001(engine)
        try:
            caller = await ask_for_agent(engine)
            await phone_rings(phone)
            engine.set_agent_ready("1002")
            gone = await phone.register(expires=0)  # the agent signs the phone off
            unregistered = engine.agent_status("1001")
            second = await seat_rings(engine, "s2", timeout=5)  # re-offered at once
            await wait_for(lambda: "CANCEL" in phone.methods(), 5)
            with pytest.raises(DialRefused, match="not registered"):
                engine.sip.dial_seat("1001")
            second.off_hook()
            await caller.expect(f"工号{say('digits', '1002')}为您服务")
            back = await phone.register()
            restored = engine.agent_status("1001")
            await phone.register(expires=0)  # idle this time
            idle_gone = engine.agent_status("1001")
            await caller.hang_up()
            await engine.idle()
            return {
                "gone": gone.status,
                "back": back.status,
                "unregistered": unregistered,
                "restored": restored,
                "idle_gone": idle_gone,
                "events": events,
            }
        finally:
            phone.close()

    got = with_engine(seat_config, body)
    assert got["gone"] == got["back"] == 200
    assert (got["unregistered"]["status"], got["unregistered"]["reason"]) == (
        "not_ready",
        "unregistered",
    )
    assert got["restored"]["status"] == "ready"
    assert (got["idle_gone"]["status"], got["idle_gone"]["reason"]) == ("not_ready", "unregistered")
    offers = [agent for kind, agent, _ in got["events"] if kind == "queue.offer"]
    assert offers == ["1001", "1002"]
    assert "queue.ring_no_answer" not in [k for k, _, _ in got["events"]]  # not a miss


def test_a_seat_that_stops_answering_keepalives_is_unregistered(seat_config: Any) -> None:
    seat_config.sip.keepalive_interval = 10.0
    seat_config.sip.keepalive_failures = 3

    async def body(engine: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        seat_events: list[dict[str, Any]] = []
        engine.bus.subscribe("line.service", lambda e: seat_events.append(dict(e.data)))
        phone = await seat_phone(engine)
        try:
            await asyncio.sleep(35)
            alive = engine.agent_status("1001")
            probes = phone.methods().count("OPTIONS")
            phone.alive = False  # the phone crashed without unregistering
            start = loop.time()
            await wait_for(lambda: engine.agent_status("1001")["status"] == "not_ready", 120)
            took = loop.time() - start
            return {
                "alive": alive,
                "probes": probes,
                "took": took,
                "dead": engine.agent_status("1001"),
                "binding": engine.sip.registrar.contact_for("1001", loop.time()),
                "seat_events": seat_events,
            }
        finally:
            phone.close()

    got = with_engine(seat_config, body)
    assert got["alive"]["status"] == "ready" and got["probes"] == 3
    assert (got["dead"]["status"], got["dead"]["reason"]) == ("not_ready", "unregistered")
    assert got["binding"] is None
    # three probes unanswered (10 s apart, 8 s each to time out): about 30 s
    assert 20 <= got["took"] <= 45, got["took"]
    assert [(e["line"], e["in_service"], e["reason"]) for e in got["seat_events"]] == [
        ("sip:1001", True, "registered"),
        ("sip:1001", False, "keepalive"),
    ]


def test_an_incoming_invite_cannot_make_the_engine_dial_out(seat_config: Any) -> None:
    """Toll fraud: INVITEs naming a registered seat or an outside number reach flows only."""

    async def body(engine: Any) -> dict[str, Any]:
        plays = listen(engine)
        phone = await seat_phone(engine)
        for agent_id in ("1001", *OTHERS):  # no agent may be rung by the ACD either
            engine.set_agent_not_ready(agent_id, "busy")
        callers = []
        try:
            for called in ("1001", f"1001@{phone.port}", "013800138000", "95598"):
                caller = SipCaller(engine.sip.port, called=called.split("@")[0])
                await caller.open()
                callers.append(caller)
                await caller.call()
            await wait_for(lambda: sum(said([p], "人工服务请按零") for p in plays) >= 4, 60)
            callers[0].press("0")  # one even asks for an agent: all are busy
            await asyncio.sleep(5)
            refused = []
            for target in ("sip:013800138000@127.0.0.1:5070", "tel:+8613800138000", "bogus"):
                with pytest.raises(DialRefused) as info:
                    engine.sip.dial(target)
                refused.append(str(info.value))
            for caller in callers:
                caller.bye()
            await engine.idle()
            return {
                "invites_at_phone": phone.methods().count("INVITE"),
                "dialled": engine.sip.outbound.dialled,
                "refused": refused,
            }
        finally:
            for caller in callers:
                caller.close()
            phone.close()

    got = with_engine(seat_config, body)
    assert got["invites_at_phone"] == 0 and got["dialled"] == 0
    assert "not in sip.outbound_allowed" in got["refused"][0]
    assert "cannot dial" in got["refused"][1] and "cannot dial" in got["refused"][2]


def test_an_allowed_uri_is_dialled_and_login_at_another_seat_rings_it(seat_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        other = await seat_phone(engine, "1002")  # 1002's softphone, 1002 sits at s2 in yaml
        outside = SeatPhone(engine.sip.port, "ops", "")
        await outside.open()
        uri = f"sip:ops@127.0.0.1:{outside.port}"
        engine.sip.outbound.allowed.clear()
        from drivers.sip.outbound import uri_key

        engine.sip.outbound.allowed[uri_key(uri)] = uri
        try:
            leg = engine.sip.dial(uri, caller="95598")
            await wait_for(lambda: outside.invite is not None, 5)
            outside.answer()
            await asyncio.wait_for(leg.answer(), 5)
            await leg.hangup()
            await wait_for(lambda: "BYE" in outside.methods(), 5)
            # agent 1002 moves to the softphone: the ACD now rings sip:1002
            for agent_id in ("1001", "1003", "1004"):
                engine.set_agent_not_ready(agent_id, "busy")
            engine.logout_agent("1002")
            engine.login_agent("1002", seat="sip:1002")
            with pytest.raises(ValueError, match="seat"):
                engine.contact_center.login("1003", seat="s9x")
            caller = await ask_for_agent(engine)
            await phone_rings(other)
            status = engine.agent_status("1002")
            other.answer()
            await caller.expect(f"工号{say('digits', '1002')}为您服务")
            await caller.hang_up()
            await wait_for(lambda: "BYE" in other.methods(), 10)
            await engine.idle()
            return {
                "outside": outside.methods(),
                "status": status,
                "board_s2_rang": ringing(engine.board.line("s2").far_end),
            }
        finally:
            other.close()
            outside.close()

    got = with_engine(seat_config, body)
    assert got["outside"] == ["INVITE", "ACK", "BYE"]
    assert got["status"]["seat"] == "sip:1002" and got["status"]["state"] == "reserved"


def test_the_engine_holds_and_resumes_the_seat_leg_with_reinvites(seat_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        phone = await seat_phone(engine)
        only_1001(engine)
        try:
            caller = await ask_for_agent(engine)
            await phone_rings(phone)
            phone.answer()
            await caller.expect(f"工号{say('digits', '1001')}为您服务")
            (leg,) = [
                ch for ch in engine.sip.channels.values() if isinstance(ch, OutboundSipChannel)
            ]
            await asyncio.sleep(0.5)
            await leg.hold()
            await wait_for(lambda: leg.on_hold, 5)
            held = leg.stream.plan.direction
            await leg.resume()
            await wait_for(lambda: not leg.on_hold, 5)
            resumed = leg.stream.plan.direction
            mark = len(phone.received)
            await asyncio.sleep(1.0)
            flowing = len(phone.received) - mark
            await caller.hang_up()
            await engine.idle()
            return {
                "held": held,
                "resumed": resumed,
                "flowing": flowing,
                "requests": list(phone.requests),
            }
        finally:
            phone.close()

    got = with_engine(seat_config, body)
    assert (str(got["held"]), str(got["resumed"])) == ("sendonly", "sendrecv")
    assert got["flowing"] >= 7000  # about a second of PCMU to the seat after resume
    reinvites = [r for r in got["requests"] if r.method == "INVITE" and r.to.tag]
    assert [str(parse_sdp(r.body).media[0].direction) for r in reinvites] == [
        "sendonly",
        "sendrecv",
    ]
    acks = [r.cseq.seq for r in got["requests"] if r.method == "ACK"]
    assert acks == [1, 2, 3]  # the first 200 and each re-INVITE's 200 acknowledged
    assert [r.method for r in got["requests"]][-1] == "BYE"


def test_a_seat_behind_nat_is_rung_at_the_address_its_register_came_from(
    seat_config: Any,
) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        phone = SeatPhone(engine.sip.port, "1001", DEMO_PASSWORD, contact_host="10.20.30.40")
        await phone.open()
        try:
            assert (await phone.register()).status == 200
            only_1001(engine)
            caller = await ask_for_agent(engine)
            await phone_rings(phone)
            invite = phone.invite
            phone.answer()
            await caller.expect(f"工号{say('digits', '1001')}为您服务")
            await caller.hang_up()
            await wait_for(lambda: "BYE" in phone.methods(), 10)
            await engine.idle()
            return {"invite": invite, "methods": phone.methods(), "port": phone.port}
        finally:
            phone.close()

    got = with_engine(seat_config, body)
    # the Request-URI is the registered Contact; the datagrams went to the REGISTER's source
    assert got["invite"].uri == f"sip:1001@10.20.30.40:{got['port']}"
    assert got["methods"] == ["INVITE", "ACK", "BYE"]


def test_a_hot_reload_keeps_agents_at_sip_seats(seat_config: Any) -> None:
    async def body(engine: Any) -> Any:
        queues = Path(seat_config.acd.queues_dir)
        general = (queues / "general.yaml").read_text(encoding="utf-8")
        (queues / "general.yaml").write_text(general.replace("wrap_up: 10", "wrap_up: 12"))
        report = engine.queue_reloader.reload()
        return report, "1001" in engine.contact_center.acd.agents

    report, present = with_engine(seat_config, body)
    assert report.swapped and present
    assert not [line for line in (*report.applied, *report.deferred) if "agent 1001" in line]


def test_an_engine_without_the_board_queues_sip_callers_to_sip_seats(
    engine_template: Path, tmp_path: Path
) -> None:
    """SIP only: every agent at a softphone, no voice card; no callback is offered (no trunk)."""
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    queues = tmp_path / "queues"
    queues.mkdir()
    for name in ("general.yaml", "fault.yaml"):
        shutil.copy(REPO / "queues" / name, queues / name)
    agents = (REPO / "queues" / "agents.yaml").read_text(encoding="utf-8")
    for n in range(1, 5):
        agents = agents.replace(f"seat: s{n}}}", f"seat: sip:100{n}}}")
    (queues / "agents.yaml").write_text(agents, "utf-8")
    config = make_config(tmp_path, cache=engine_template / "cache", acd={"queues_dir": str(queues)})
    config.board.enabled = False
    config.sip.answer_after = 0.2

    async def body(engine: Any) -> dict[str, Any]:
        assert engine.board is None and engine.contact_center is not None
        plays = listen(engine)
        phone = await seat_phone(engine, "1002")
        caller = SipCaller(engine.sip.port)
        await caller.open()
        try:
            await caller.call()
            await wait_for(lambda: said(plays, "人工服务请按零"))
            caller.press("0")
            await phone_rings(phone, 60)
            ringing_status = engine.agent_status("1002")
            phone.answer()
            await wait_for(lambda: said(plays, f"工号{say('digits', '1002')}为您服务"), 30)
            on_call = engine.agent_status("1002")
            caller.bye()
            await wait_for(lambda: "BYE" in phone.methods(), 10)
            await engine.idle()
            return {
                "ringing": ringing_status,
                "on_call": on_call,
                "others": [engine.agent_status(a)["reason"] for a in ("1001", "1003", "1004")],
                "channels": dict(engine.sip.channels),
            }
        finally:
            caller.close()
            phone.close()

    got = with_engine(config, body)
    assert got["ringing"]["state"] == "reserved"
    assert got["on_call"]["state"] == "on_call"
    assert got["others"] == ["unregistered"] * 3  # their phones never registered
    assert got["channels"] == {}


def test_sip_agent_holds_then_blind_transfers_the_caller_to_another_sip_seat(
    seat_config: Any,
) -> None:
    """Re-bridge over SIP: 1001 answers, holds (the caller hears music), resumes, transfers to
    1002; 1001's phone gets BYE, 1002's rings and then talks with the caller (tones asserted)."""
    agents_file = Path(seat_config.acd.queues_dir) / "agents.yaml"
    agents_file.write_text(
        agents_file.read_text("utf-8").replace("seat: s2}", "seat: sip:1002}"), "utf-8"
    )

    async def body(engine: Any) -> dict[str, Any]:
        plays = listen(engine)
        first = await seat_phone(engine, "1001")
        second = await seat_phone(engine, "1002")
        engine.set_agent_not_ready("1002", "busy")
        for agent_id in ("1003", "1004"):
            engine.set_agent_not_ready(agent_id, "busy")
        events = queue_events(engine)
        caller = SipCaller(engine.sip.port)
        await caller.open()
        center = engine.contact_center
        try:
            await caller.call()
            await wait_for(lambda: said(plays, "人工服务请按零"))
            caller.press("0")
            await phone_rings(first, 60)
            first.answer()
            await wait_for(lambda: said(plays, f"工号{say('digits', '1001')}为您服务"), 30)
            await wait_for(lambda: engine.agent_status("1001")["state"] == "on_call", 10)
            music_before = sum(p.get("prompt_id") == "queue.music" for p in plays)
            center.hold("1001")
            await wait_for(
                lambda: sum(p.get("prompt_id") == "queue.music" for p in plays) > music_before, 10
            )
            held = engine.agent_status("1001")["state"]
            center.resume("1001")
            await wait_for(lambda: engine.agent_status("1001")["state"] == "on_call", 10)
            engine.set_agent_ready("1002")
            center.transfer_call("1001", "1002")
            await wait_for(lambda: "BYE" in first.methods(), 10)
            await phone_rings(second, 30)
            second.answer()
            await wait_for(lambda: engine.agent_status("1002")["state"] == "on_call", 30)
            await wait_for(lambda: said(plays, f"工号{say('digits', '1002')}为您服务"), 30)
            to_caller, to_seat = await exchange_tones(engine, caller, second)
            caller.bye()
            await wait_for(lambda: "BYE" in second.methods(), 10)
            await engine.idle()
            return {
                "held": held,
                "first_after": engine.agent_status("1001")["state"],
                "to_caller": to_caller,
                "to_seat": to_seat,
                "events": events,
                "channels": dict(engine.sip.channels),
            }
        finally:
            caller.close()
            first.close()
            second.close()

    got = with_engine(seat_config, body)
    assert got["held"] == "on_hold"
    assert got["first_after"] == "wrap_up"
    assert dominant_hz(got["to_caller"][-4000:]) == pytest.approx(1400, abs=5)
    assert dominant_hz(got["to_seat"][-4000:]) == pytest.approx(600, abs=5)
    kinds = [(k, d.get("agent_id")) for k, _, d in got["events"]]
    assert ("queue.transfer", "1001") in kinds
    assert [a for k, a in kinds if k == "queue.connect"] == ["1001", "1002"]
    assert got["channels"] == {}
