"""The exact Chinese text of every read-out the shipped flows produce for the demo data.

Each read-out is heard through a real call on the simulated board (in-band keys, the real
flows, the demo database); the expected sentences are written out by hand.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from hotline.store.models import Outage, WorkOrder
from sim.caller import Caller, LocalLine
from support import with_engine


def due_date_text() -> str:
    today = dt.date.today()
    months = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "十一", "十二"]
    year = "".join("〇一二三四五六七八九"[int(c)] for c in str(today.year))
    return f"{year}年{months[today.month - 1]}月二十五日"


BILLS = {
    "1234567890": [
        "您输入的户号是幺二三，四五六，七八九零。",
        "您的户号幺二三，四五六，七八九零，本月电费为一百二十三元四角五分。",
        "您的账户余额为零元整，缴费截止日期为{due}。",
    ],
    "2345678901": [
        "您输入的户号是二三四，五六七，八九零幺。",
        "您的户号二三四，五六七，八九零幺，本月电费为八十八元整。",
        "您目前欠费三十五元二角，请在{due}前缴清，以免影响正常用电。",
    ],
    "1111111111": [
        "您输入的户号是幺幺幺，幺幺幺，幺幺幺幺。",
        "您的户号幺幺幺，幺幺幺，幺幺幺幺，本月电费为二百三十元整。",
        "您的账户余额为十二元零五分，缴费截止日期为{due}。",
    ],
}


async def _walk(
    engine: Any, line: int, caller_no: str, steps: list[tuple[str, str]], last: str
) -> list[str]:
    caller = Caller(LocalLine(engine.board.line(line)))
    await caller.dial(caller_no)
    for prompt, keys in steps:
        await caller.expect(prompt)
        await caller.press(keys)
    await caller.expect(last)
    await caller.hang_up()
    await caller.expect_hangup()
    return [item["text"] for item in caller.transcript if item["prompt_id"] is None]


@pytest.mark.parametrize("account", sorted(BILLS))
def test_bill_read_outs(engine_config: Any, account: str) -> None:
    async def body(engine: Any) -> list[str]:
        return await _walk(
            engine,
            1,
            "13000000000",
            [
                ("电费查询请按一", "1"),
                ("请输入您的十位户号", account + "#"),
                ("确认请按一", "1"),
            ],
            "重听请按一",
        )

    heard = with_engine(engine_config, body)
    assert heard == [text.format(due=due_date_text()) for text in BILLS[account]]


def _digits(number: str) -> str:
    from ivr.speech.readout import digits

    return digits("".join(c for c in number if c.isdigit()))


def test_fault_read_outs(engine_config: Any) -> None:
    fault = [("故障报修请按二", "2"), ("按户号报修请按一", "1")]

    async def body(engine: Any) -> dict[str, list[str]]:
        heard = {
            "order": await _walk(
                engine,
                1,
                "13100000001",
                fault
                + [
                    ("请输入您的十位户号", "1234567890#"),
                    ("整个小区", "2"),
                    ("如需录音", "2"),
                ],
                "还需要其他服务吗",
            ),
            "danger": await _walk(
                engine,
                2,
                "13100000002",
                fault
                + [
                    ("请输入您的十位户号", "1111111111#"),
                    ("整个小区", "3"),
                ],
                "还需要其他服务吗",
            ),
            "outage": await _walk(
                engine,
                3,
                "13100000003",
                fault
                + [
                    ("请输入您的十位户号", "3456789012#"),
                    ("如果您仍需报修", "1"),
                    ("整个小区", "1"),
                    ("如需录音", "2"),
                ],
                "还需要其他服务吗",
            ),
        }
        async with engine.db.session() as session:
            orders = {o.account_no: o for o in (await session.scalars(select(WorkOrder))).all()}
            outage = (await session.scalars(select(Outage).where(Outage.area == "城西区"))).one()
        heard["numbers"] = [orders["1234567890"].number, orders["1111111111"].number, outage.number]
        heard["restored"] = [outage.expected_end]
        return heard

    heard = with_engine(engine_config, body)
    order_no, danger_no, outage_no = heard["numbers"]
    assert heard["order"] == [
        f"您的报修已受理，工单号{_digits(order_no)}，抢修人员将在规定时间内到达现场，请保持电话畅通。"
    ]
    assert heard["danger"] == [
        f"坐席正忙，已为您紧急派发抢修工单，工单号{_digits(danger_no)}，抢修人员将尽快到达现场。"
    ]
    restored = heard["restored"][0].astimezone(dt.timezone(dt.timedelta(hours=8)))
    from ivr.speech.readout import date, time

    assert heard["outage"] == [
        f"您所在的区域因线路故障正在停电抢修，预计{date(restored)}{time(restored)}恢复供电，"
        "给您带来不便，敬请谅解。",
        f"您所在区域的停电已在抢修中，工单号{_digits(outage_no)}，无需重复报修，感谢您的配合。",
    ]
