"""The post-call satisfaction survey (满意度) on the board: the agent hangs up first, the caller
is moved to flows/survey.yaml, presses a key, and the score is stored with the call (table
call_surveys) and as a SURVEY line of the queue event log. A caller who hangs up first is not
surveyed; a queue naming a missing survey flow is rejected."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from drivers.simboard.line import FarEnd
from hotline.queue_config import check_references, load_queue_dir
from hotline.services import surveys
from hotline.services.queue_log import load_rows
from hotline.store.models import CallRecord
from sim.caller import Caller, LocalLine
from support import REPO, make_config, with_engine

GENERAL_WITH_SURVEY = (REPO / "queues" / "general.yaml").read_text(encoding="utf-8") + (
    "survey: survey\n"
)


@pytest.fixture
def queues_dir(tmp_path: Path) -> Path:
    queues = tmp_path / "queues"
    queues.mkdir()
    for name in ("agents.yaml", "fault.yaml"):
        shutil.copy(REPO / "queues" / name, queues / name)
    (queues / "general.yaml").write_text(GENERAL_WITH_SURVEY, encoding="utf-8")
    return queues


@pytest.fixture
def survey_config(engine_template: Path, tmp_path: Path, queues_dir: Path) -> Any:
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    return make_config(
        tmp_path, cache=engine_template / "cache", acd={"queues_dir": str(queues_dir)}
    )


def ringing(far: FarEnd) -> bool:
    return far.call is not None and far.call.answered is None and far.call.ended is None


async def talk_to_agent(engine: Any, trunk: int) -> tuple[Caller, FarEnd]:
    caller = Caller(LocalLine(engine.board.line(trunk)))
    await caller.dial("13912345678")
    await caller.expect("人工服务请按零")
    await caller.press("0")
    seat = engine.board.line("s1").far_end
    assert await seat.wait_for(lambda: ringing(seat), 30)
    seat.off_hook()
    await caller.expect("为您服务")
    return caller, seat


def test_agent_hangs_up_first_and_the_caller_scores_the_service(survey_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        caller, seat = await talk_to_agent(engine, 1)
        seat.hang_up("loop")
        await caller.expect("请对本次服务进行评价，满意请按一，基本满意请按二，不满意请按三")
        await caller.press("2")
        await caller.expect("感谢您的评价")
        await caller.expect_hangup()
        await engine.idle()
        (call_id,) = engine.outcomes
        async with engine.db.session() as session:
            record = await session.scalar(select(CallRecord).where(CallRecord.call_id == call_id))
        return {
            "call_id": call_id,
            "scores": await surveys.for_call(engine.db, call_id),
            "log": await load_rows(engine.db, call_id=call_id),
            "record": record,
            "outcome": engine.outcomes[call_id],
        }

    got = with_engine(survey_config, body)
    (score,) = got["scores"]
    assert (score["score"], score["label"], score["queue"], score["agent_id"]) == (
        2,
        "基本满意",
        "general",
        "1001",
    )
    kinds = [row.kind for row in got["log"]]
    assert kinds.index("CONNECT") < kinds.index("COMPLETE_AGENT") < kinds.index("SURVEY")
    (survey_row,) = [row for row in got["log"] if row.kind == "SURVEY"]
    assert survey_row.data == {"score": 2, "label": "基本满意"}
    assert (survey_row.queue, survey_row.agent_id) == ("general", "1001")
    assert "survey:store" in got["record"].flow_path
    assert got["outcome"].result == "transferred"


def test_a_caller_who_hangs_up_first_is_not_surveyed(survey_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        caller, seat = await talk_to_agent(engine, 1)
        await caller.hang_up("polarity")
        assert await seat.wait_for(lambda: seat.call.ended is not None, 10)
        await engine.idle()
        (call_id,) = engine.outcomes
        return {
            "scores": await surveys.for_call(engine.db, call_id),
            "log": await load_rows(engine.db, call_id=call_id),
        }

    got = with_engine(survey_config, body)
    assert got["scores"] == []
    assert "SURVEY" not in [row.kind for row in got["log"]]
    assert "COMPLETE_CALLER" in [row.kind for row in got["log"]]


def test_a_survey_that_is_not_a_flow_is_rejected(queues_dir: Path) -> None:
    (queues_dir / "general.yaml").write_text(
        GENERAL_WITH_SURVEY.replace("survey: survey", "survey: no_such_flow"), encoding="utf-8"
    )
    definition, errors = load_queue_dir(queues_dir)
    assert errors == []
    assert definition.queues["general"].survey == "no_such_flow"
    (error,) = check_references(definition, ["main", "to_agent", "leave_message", "survey"])
    assert "survey 'no_such_flow' is not a flow" in str(error)


@pytest.mark.parametrize(
    ("value", "score"), [("1", 1), (2, 2), (" 3 ", 3), ("4", None), ("", None), (True, None)]
)
def test_scores_are_one_two_or_three(value: object, score: int | None) -> None:
    assert surveys.parse_score(value) == score
