"""Engine behaviour around calls: hot reload, crash recovery, the board's control socket."""

from __future__ import annotations

import asyncio
import shutil
import struct
import wave
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from hotline.store.models import CallRecord, Recording
from sim.caller import Caller, LocalLine
from sim.remote import RemoteBoard
from support import FLOWS, make_config, with_engine


async def first_words(engine: Any, line: int = 1) -> str:
    caller = Caller(LocalLine(engine.board.line(line)))
    await caller.dial("13000000001")
    item = await caller.expect("")
    await caller.hang_up()
    await caller.expect_hangup()
    await engine.idle()
    return item["text"]


def test_a_bad_edit_is_rejected_and_the_old_flow_keeps_serving(
    engine_config: Any, tmp_path: Path
) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(FLOWS, flows)
    engine_config.flows_dirs = [str(flows)]
    main = flows / "main.yaml"
    original = main.read_text(encoding="utf-8")

    async def body(engine: Any) -> None:
        assert (await first_words(engine)).startswith("您好，欢迎致电国家电网")
        # an operator's bad edit: a menu key pointing at a step that does not exist
        main.write_text(original.replace('"3": message', '"3": mesage'), encoding="utf-8")
        errors = engine.flows.reload()  # both menus now point at 'mesage'; 'message' is orphaned
        first = errors[0]
        where = f"{main}:{_line_of(original, KEY_3)}:{_col(original)}: "
        assert str(first) == where + first.reason and "'mesage'" in first.reason
        assert len(errors) == 3 and any("unreachable" in e.reason for e in errors)
        assert (await first_words(engine, 2)).startswith("您好，欢迎致电国家电网")
        # the corrected edit goes live for the next call
        main.write_text(
            original.replace("您好，欢迎致电国家电网", "您好，这里是国家电网"), encoding="utf-8"
        )
        assert engine.flows.reload() == []
        engine._flows_reloaded(engine.flows.last_report)  # what the file watcher does
        new_welcome = engine.flows.prompt_texts()["welcome"]
        await asyncio.gather(*[t for t in engine._tasks if t.get_name() == "prompts.warm"])
        assert engine.speech.cache.peek(new_welcome) is not None  # synthesized before any call
        assert (await first_words(engine, 3)).startswith("您好，这里是国家电网")

    with_engine(engine_config, body)


KEY_3 = '"3": message'


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _col(text: str) -> int:
    line = next(ln for ln in text.splitlines() if KEY_3 in ln)
    return line.index("message") + 1


def test_a_recording_cut_off_by_a_crash_is_finished_and_indexed(engine_config: Any) -> None:
    folder = Path(engine_config.path(engine_config.recordings_dir)) / "2026" / "11" / "23"
    folder.mkdir(parents=True)
    part = folder / "board0-t1-000042.wav.part"
    frames = np.arange(16_001, dtype="<i2")  # 8000.5 stereo frames: the last one is torn
    header = (
        b"RIFF"
        + struct.pack("<I", 36)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 2, 8000, 32000, 4, 16)
        + b"data"
        + struct.pack("<I", 0)
    )
    part.write_bytes(header + frames.tobytes())

    async def body(engine: Any) -> list[Any]:
        async with engine.db.session() as session:
            return list((await session.scalars(select(Recording))).all())

    (row,) = with_engine(engine_config, body)
    final = folder / "board0-t1-000042.wav"
    assert not part.exists() and final.exists()
    with wave.open(str(final)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 8000, 8000)
        assert np.array_equal(np.frombuffer(w.readframes(3), "<i2"), np.arange(6))
    assert row.path == str(final) and row.recovered and row.call_id == "board0-t1-000042"


def test_a_tester_drives_the_board_over_the_control_socket(
    tmp_path: Path, engine_template: Path
) -> None:
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    config = make_config(tmp_path, cache=engine_template / "cache")
    config.control.enabled = True
    config.control.port = 0  # any free port on loopback

    async def body(engine: Any) -> tuple[list[str], Any]:
        board = await RemoteBoard("127.0.0.1", engine.control.port).connect()
        try:
            caller = Caller(await board.open_line("4"))
            await caller.dial("13912345678")
            await caller.expect("电费查询请按一")
            await caller.press("1")
            await caller.expect("请输入您的十位户号")
            await caller.press("1234567890#")
            await caller.expect("确认请按一")
            await caller.press("1")
            await caller.expect("一百二十三元四角五分")
            await caller.hang_up("polarity")
            await caller.expect_hangup()
            # a malformed request is answered with an error; the connection stays usable
            try:
                await board.request("ring", line="t99", caller="1")
            except Exception as exc:  # noqa: BLE001 - the message is what matters
                refused = str(exc)
            lines = (await board.request("lines"))["lines"]
        finally:
            await board.close()
        await engine.idle()
        async with engine.db.session() as session:
            record = (await session.scalars(select(CallRecord))).one()
        assert "t99" in refused and len(lines) == config.board.trunks + config.board.stations
        return caller.transcript_text(), record

    heard, record = with_engine(config, body)
    assert heard[0].startswith("您好，欢迎致电")
    assert record.line == "t4" and record.hangup_cause == "polarity_reversal"


def test_an_agent_answers_a_seat_over_the_control_socket(tmp_path: Path,
                                                         engine_template: Path) -> None:
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    config = make_config(tmp_path, cache=engine_template / "cache",
                         acd={"queues_dir": str(FLOWS.parent / "queues")})
    config.control.enabled = True
    config.control.port = 0

    async def body(engine: Any) -> list[str]:
        board = await RemoteBoard("127.0.0.1", engine.control.port).connect()
        try:
            seats = {name: await board.open_line(name) for name in ("s1", "s2", "s3", "s4")}
            caller = Caller(await board.open_line("1"))
            await caller.dial("13912345678")
            await caller.expect("人工服务请按零")
            await caller.press("0")

            def ringing() -> list[str]:
                return [n for n, s in seats.items() if s.status().get("state") == "ringing"]

            assert await seats["s1"].wait_for(lambda: bool(ringing()), 60)
            (rung,) = ringing()
            assert seats[rung].status()["caller"] == "13912345678"
            await seats[rung].off_hook()
            await caller.expect("为您服务")  # 报工号
            await seats[rung].hang_up(None)
            await caller.expect("感谢您的来电")
            await caller.expect_hangup()
        finally:
            await board.close()
        return caller.transcript_text()

    heard = with_engine(config, body)
    assert any(text.startswith("工号") and text.endswith("为您服务。") for text in heard)
