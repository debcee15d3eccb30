"""Whole calls on the simulated board: what the caller heard, what was stored, the recording.

Every shipped scenario is run against a real engine (SQLite store, espeak prompts, the board's
in-band DTMF detection) on a virtual clock; then the store and the recording are checked.
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hotline.store.models import CallRecord, Recording, VoiceMessage, WorkOrder
from sim.caller import Caller, LocalLine
from sim.scenario import load_scenario, run_scenario
from support import SCENARIOS, with_engine

SCENARIO_FILES = sorted(SCENARIOS.glob("*.yaml"))


async def rows(engine: Any, model: Any, **where: Any) -> list[Any]:
    async with engine.db.session() as session:
        query = select(model).filter_by(**where)
        return list((await session.execute(query)).scalars())


def wav_seconds(path: str | Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[p.stem for p in SCENARIO_FILES])
def test_shipped_scenario(engine_config: Any, path: Path) -> None:
    scenario = load_scenario(path)

    async def body(engine: Any) -> Any:
        line = LocalLine(engine.board.line(scenario.line))
        result = await run_scenario(scenario, lambda _name: _ready(line))
        await engine.idle()
        return result, line

    result, line = with_engine(engine_config, body)
    assert result.ok, f"{result.error}\ntranscript: {[i['text'] for i in result.transcript]}"

    async def check(engine: Any) -> None:
        (record,) = await rows(engine, CallRecord)
        assert record.caller == scenario.caller and record.line == scenario.line
        assert record.ended_at is not None and record.flow_path
        (recording,) = await rows(engine, Recording, call_id=record.call_id)
        talk = (record.ended_at - record.answered_at).total_seconds()
        assert Path(recording.path).exists()
        assert wav_seconds(recording.path) == pytest.approx(talk, abs=0.5)
        assert record.recording_path == recording.path

    with_engine(engine_config, check)


async def _ready(line: LocalLine) -> LocalLine:
    return line


def test_bill_lookup_read_out_keys_and_call_record(engine_config: Any) -> None:
    async def body(engine: Any) -> list[str]:
        caller = Caller(LocalLine(engine.board.line(1)))
        await caller.dial("13912345678")
        await caller.expect("电费查询请按一")
        await caller.press("1")
        await caller.expect("请输入您的十位户号")
        await caller.press("1234567890#")
        await caller.expect("确认请按一")
        await caller.press("1")
        await caller.expect("缴费截止日期")
        await caller.hang_up("loop")
        await caller.expect_hangup()
        return caller.transcript_text()

    heard = with_engine(engine_config, body)
    from ivr.speech.readout import say

    assert heard[0] == "您好，欢迎致电国家电网九五五九八供电服务热线。"
    assert f"您输入的户号是{say('digits', '1234567890')}。" in heard
    assert f"您的户号{say('digits', '1234567890')}，本月电费为一百二十三元四角五分。" in heard
    assert any(h.startswith("您的账户余额为零元") for h in heard), heard

    async def check(engine: Any) -> None:
        (record,) = await rows(engine, CallRecord)
        assert record.keys == "112345678901"
        assert record.result == "hangup"
        assert record.hangup_cause == "loop_current_drop"
        assert record.flow_path[:3] == ["main:welcome", "main:menu", "main:bill"]
        assert "bill_lookup:read_balance" in record.flow_path

    with_engine(engine_config, check)


def test_fault_report_work_order_is_stored_and_read_back(engine_config: Any) -> None:
    async def body(engine: Any) -> str:
        caller = Caller(LocalLine(engine.board.line(2)))
        await caller.dial("13912345678")
        for prompt, keys in [
            ("故障报修请按二", "2"),
            ("使用来电号码报修请按二", "2"),
            ("仅您家中停电请按二", "2"),
            ("如需录音描述故障情况", "2"),
        ]:
            await caller.expect(prompt)
            await caller.press(keys)
        item = await caller.expect("您的报修已受理，工单号")
        await caller.hang_up()
        return item["text"]

    text = with_engine(engine_config, body)
    from ivr.speech.readout import say

    async def check(engine: Any) -> None:
        (order,) = await rows(engine, WorkOrder)
        assert (order.type, order.status, order.fault_type) == (
            "fault_repair",
            "submitted",
            "own_house",
        )
        assert order.account_no == "1234567890" and order.caller == "13912345678"
        assert order.due_at is not None and order.call_id
        digits = "".join(c for c in order.number if c.isdigit())
        assert say("digits", digits) in text
        (record,) = await rows(engine, CallRecord)
        assert record.work_order_number == order.number

    with_engine(engine_config, check)


def test_voice_message_is_stored_with_its_audio(engine_config: Any) -> None:
    async def body(engine: Any) -> None:
        caller = Caller(LocalLine(engine.board.line(3)))
        await caller.dial("13500000007")
        await caller.expect("留言请按三")
        await caller.press("3")
        await caller.expect("请在提示音后留言")
        await caller.wait_quiet()
        await caller.speak(SCENARIOS / "caller_voice.wav")
        await caller.press("#")
        await caller.expect("确认保存请按一")
        await caller.press("1")
        await caller.expect("您的留言已保存")
        await caller.hang_up()

    with_engine(engine_config, body)

    async def check(engine: Any) -> None:
        (message,) = await rows(engine, VoiceMessage)
        assert message.caller == "13500000007"
        assert Path(message.path).exists()
        assert message.seconds == pytest.approx(wav_seconds(message.path), abs=0.05)
        assert 4.0 < message.seconds < 5.5  # the 5.2 s of speech, less the beep overlap

    with_engine(engine_config, check)


# --- hanging up anywhere ---------------------------------------------------------------------
FAULT_WALK = [
    ("故障报修请按二", "2", "main:menu"),
    ("按户号报修请按一", "1", "fault_report:how_identify"),
    ("请输入您的十位户号", "1234567890#", "fault_report:ask_account"),
    ("整个小区或片区停电请按一", "2", "fault_report:fault_type"),
    ("如需录音描述故障情况", "1", "fault_report:describe"),
    ("请在提示音后说明故障情况", None, "fault_report:record_description"),
]


@pytest.mark.parametrize("signal", ["loop", "busy", "polarity"])
@pytest.mark.parametrize("stop_at", range(len(FAULT_WALK)))
def test_hanging_up_at_any_step_leaves_a_clean_record(
    engine_config: Any, signal: str, stop_at: int
) -> None:
    async def body(engine: Any) -> None:
        caller = Caller(LocalLine(engine.board.line(1)))
        await caller.dial("13600000001")
        for prompt, keys, _step in FAULT_WALK[: stop_at + 1]:
            await caller.expect(prompt)
            if keys and _step != FAULT_WALK[stop_at][2]:
                await caller.press(keys)
        if FAULT_WALK[stop_at][1] is None:
            await caller.wait_quiet()
            await caller.speak(SCENARIOS / "caller_voice.wav")
        await caller.hang_up(signal)
        await caller.expect_hangup()

    with_engine(engine_config, body)
    expected_step = FAULT_WALK[stop_at][2]

    async def check(engine: Any) -> None:
        (record,) = await rows(engine, CallRecord)
        assert record.result == "hangup"
        assert record.last_step == expected_step
        assert (
            record.hangup_cause
            == {"loop": "loop_current_drop", "busy": "busy_tone", "polarity": "polarity_reversal"}[
                signal
            ]
        )
        (recording,) = await rows(engine, Recording, call_id=record.call_id)
        assert wav_seconds(recording.path) == pytest.approx(
            (record.ended_at - record.answered_at).total_seconds(), abs=0.5
        )
        orders = await rows(engine, WorkOrder)
        if stop_at >= 3:  # the order is opened once the account is known
            (order,) = orders
            assert order.status == "draft" and order.account_no == "1234567890"
            if stop_at >= 4:
                assert order.fault_type == "own_house"
        else:
            assert orders == []

    with_engine(engine_config, check)


def test_calls_on_all_lines_at_once(engine_config: Any) -> None:
    async def one(engine: Any, n: int) -> str:
        caller = Caller(LocalLine(engine.board.line(n)))
        await caller.dial(f"1380000000{n}")
        await caller.expect("电费查询请按一")
        await caller.press("1")
        await caller.expect("请输入您的十位户号")
        await caller.press("1111111111#")
        await caller.expect("确认请按一")
        await caller.press("1")
        item = await caller.expect("本月电费为")
        await caller.hang_up()
        return item["text"]

    async def body(engine: Any) -> list[str]:
        return await asyncio.gather(*(one(engine, n) for n in range(1, 9)))

    texts = with_engine(engine_config, body)
    assert all("本月电费为二百三十元整" in t for t in texts)
