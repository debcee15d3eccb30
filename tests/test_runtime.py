"""The flow runtime: what the caller heard, the keys seen, services called, events and results.

Runs flows on a scripted in-memory channel: each ``collect``/``record`` (and any ``play`` that
should end early) takes the next scripted :class:`Result`; other plays finish normally. Speech
returns Playables that carry their text, so assertions read what the caller heard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog

from drivers.channel import Channel, HangupCause, HungUp, Playable, Reason, Result
from drivers.clock import VirtualClockLoop
from ivr.flow.loader import load_flow_text
from ivr.flow.model import FlowSet
from ivr.flow.registry import FlowRegistry
from ivr.flow.validate import validate
from ivr.ports import CallContext, ServiceResult, TransferResult
from ivr.runtime import CallOutcome, FlowRunner

# --------------------------------------------------------------------------- test doubles


class Stall:
    """A scripted operation that never finishes by itself (for the call-time guard)."""


class ScriptedChannel(Channel):
    """A channel whose operations end as scripted, recording everything played."""

    def __init__(self, *script: tuple[str, Result | Stall | Exception]) -> None:
        self.channel_id = "test:1"
        self.call_id = "call-1"
        self.caller = "13800138000"
        self.called = "95598"
        self.line = "t1"
        self.script = list(script)
        self.plays: list[tuple[list[str], str]] = []  # (texts, barge_in) per play call
        self.items: list[Playable] = []
        self.collects: list[dict[str, Any]] = []
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.cleared = 0
        self.cause: HangupCause | None = None
        self.hangups: list[HangupCause] = []

    @property
    def heard(self) -> list[str]:
        return [text for texts, _ in self.plays for text in texts]

    @property
    def hung_up(self) -> bool:
        return self.cause is not None

    @property
    def hangup_cause(self) -> HangupCause | None:
        return self.cause

    async def answer(self) -> None:
        return None

    async def hangup(self, cause: HangupCause = HangupCause.NORMAL) -> None:
        self.hangups.append(cause)
        if self.cause is None:
            self.cause = cause

    async def _next(self, op: str) -> Result:
        if self.cause is not None:
            raise HungUp(self.cause)
        if not self.script or self.script[0][0] != op:
            if op == "play":
                return Result(Reason.DONE)
            raise AssertionError(f"unscripted {op}; script left: {self.script}")
        _, outcome = self.script.pop(0)
        if isinstance(outcome, Stall):
            await asyncio.Event().wait()
        if isinstance(outcome, Exception):
            raise outcome
        assert isinstance(outcome, Result)
        if outcome.reason == Reason.HANGUP:
            self.cause = HangupCause.LOOP_CURRENT_DROP
        return outcome

    async def play(
        self, items: Sequence[Playable], *, barge_in: str = "", max_time: float | None = None
    ) -> Result:
        self.plays.append(([item.text for item in items], barge_in))
        self.items.extend(items)
        return await self._next("play")

    async def collect(self, **kwargs: Any) -> Result:
        self.collects.append(kwargs)
        return await self._next("collect")

    async def record(self, path: str, **kwargs: Any) -> Result:
        self.records.append((path, kwargs))
        return await self._next("record")

    def clear_digits(self) -> None:
        self.cleared += 1

    async def stop(self) -> None:
        return None

    def subscribe(self, sink: Callable[..., None]) -> Callable[[], None]:
        return lambda: None


class FakeSpeech:
    """Playables that carry their text (real synthesis is tested with the speech package)."""

    def __init__(self) -> None:
        self.fail = False

    async def prompt(self, prompt_id: str, text: str) -> Playable:
        if self.fail:
            raise RuntimeError("prompt cache broken")
        return Playable(np.zeros(8, dtype=np.int16), text=text, prompt_id=prompt_id)

    async def readout(self, text: str) -> Playable:
        return Playable(np.zeros(8, dtype=np.int16), text=text, kind="readout")


class FakeServices:
    """Canned service results by name (a callable computes one from the args)."""

    def __init__(self, **results: ServiceResult | Callable[[dict[str, Any]], ServiceResult]):
        self.results = {name.replace("__", "."): r for name, r in results.items()}
        self.calls: list[tuple[str, dict[str, Any], CallContext]] = []
        self.call_ids: list[str | None] = []

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.results)

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> ServiceResult:
        self.calls.append((name, args, ctx))
        self.call_ids.append(structlog.contextvars.get_contextvars().get("call_id"))
        result = self.results[name]
        return result(args) if callable(result) else result


class FakeHost:
    def __init__(self, transfer: TransferResult | None = None, transfer_delay: float = 0) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.transfers: list[tuple[str, int, dict[str, Any]]] = []
        self.transfer_result = transfer or TransferResult("connected")
        self.transfer_delay = transfer_delay
        self.recordings: list[tuple[str, str]] = []

    def emit(self, kind: str, call_id: str, **data: Any) -> None:
        self.events.append((kind, call_id, data))

    def kinds(self, prefix: str = "") -> list[str]:
        return [kind for kind, _, _ in self.events if kind.startswith(prefix)]

    def recording_path(self, call_id: str, purpose: str) -> str:
        self.recordings.append((call_id, purpose))
        return f"/recordings/{call_id}-{purpose}.wav"

    async def transfer(
        self, channel: Channel, queue: str, *, priority: int, data: dict[str, Any]
    ) -> TransferResult:
        self.transfers.append((queue, priority, data))
        if self.transfer_delay:
            await asyncio.sleep(self.transfer_delay)
        return self.transfer_result


def flowset(*texts: str) -> FlowSet:
    flows = {}
    for i, text in enumerate(texts):
        flow, errors = load_flow_text(text, f"flow{i}.yaml")
        assert not errors, [str(e) for e in errors]
        assert flow is not None
        flows[flow.id] = flow
    fs = FlowSet(flows)
    errors = [e for e in validate(fs) if e.is_error]
    assert not errors, [str(e) for e in errors]
    return fs


async def run(
    fs: FlowSet,
    channel: ScriptedChannel,
    services: FakeServices | None = None,
    host: FakeHost | None = None,
    speech: FakeSpeech | None = None,
    flow_id: str | None = None,
) -> CallOutcome:
    runner = FlowRunner(speech or FakeSpeech(), services or FakeServices(), host or FakeHost())
    return await runner.run(channel, fs, flow_id or next(iter(fs)))


def digits(d: str, reason: Reason = Reason.DIGIT, terminator: str = "#") -> tuple[str, Result]:
    detail = {"terminator": terminator} if reason == Reason.DIGIT else {}
    return ("collect", Result(reason, d, detail=detail))


def key(d: str) -> tuple[str, Result]:
    return ("collect", Result(Reason.MAX_DIGITS, d))


NO_INPUT = ("collect", Result(Reason.FIRST_DIGIT_TIMEOUT))
CALLER_HANGS_UP = ("collect", Result(Reason.HANGUP))

# --------------------------------------------------------------------------- flows

MENU = """
flow: main
start: menu
prompts: {welcome: 欢迎致电九五五九八。, menu: 查询电费请按一。, short: 请按一。, invalid: 按键无效。,
          silent: 没有听到按键。, bills: 电费查询。, agent: 正在转人工。, bye: 再见。}
steps:
  menu:
    menu:
      prompt: [welcome, menu]
      short_prompt: short
      invalid_prompt: invalid
      timeout_prompt: silent
      timeout: 6
      max_failures: 3
      keys: {1: bills, "0": agent}
      on_failure: agent
  bills: {play: bills, next: bye}
  agent: {play: agent, next: bye}
  bye: {hangup: {prompt: bye}}
"""


async def test_menu_repeats_with_short_prompt_after_invalid_key_and_timeout() -> None:
    channel = ScriptedChannel(key("9"), NO_INPUT, key("1"))
    host = FakeHost()
    outcome = await run(flowset(MENU), channel, host=host)
    assert channel.heard == [
        "欢迎致电九五五九八。",
        "查询电费请按一。",
        "按键无效。",
        "请按一。",
        "没有听到按键。",
        "请按一。",
        "电费查询。",
        "再见。",
    ]
    assert outcome.result == "completed"
    assert outcome.keys == "91"
    assert outcome.path == ["main:menu", "main:bills", "main:bye"]
    assert channel.collects[0] == {
        "max_digits": 1,
        "terminators": "",
        "first_timeout": 6.0,
        "inter_timeout": 6.0,
    }
    assert channel.plays[0][1] == "any"  # the menu prompt can be interrupted by any key
    assert channel.cleared == 1  # type-ahead after a wrong key is dropped
    assert channel.hangups == [HangupCause.NORMAL]
    digits_events = [d for k, _, d in host.events if k == "flow.digits"]
    assert [(d["digits"], d["step"]) for d in digits_events] == [("9", "menu"), ("1", "menu")]


async def test_menu_max_failures_goes_to_on_failure_without_a_last_notice() -> None:
    channel = ScriptedChannel(key("7"), key("8"), NO_INPUT)
    outcome = await run(flowset(MENU), channel)
    assert channel.heard.count("按键无效。") == 2
    assert "没有听到按键。" not in channel.heard  # the third failure goes straight on
    assert outcome.path == ["main:menu", "main:agent", "main:bye"]
    assert outcome.keys == "78"


async def test_menu_barge_in_on_notice_skips_the_repeat_prompt() -> None:
    channel = ScriptedChannel(key("9"), ("play", Result(Reason.DIGIT, "1")), key("1"))
    outcome = await run(flowset(MENU), channel)
    assert channel.heard[:3] == ["欢迎致电九五五九八。", "查询电费请按一。", "按键无效。"]
    assert channel.heard[3] == "电费查询。"
    assert outcome.path[1] == "main:bills"


async def test_input_failure_without_on_failure_hangs_up() -> None:
    text = """
flow: main
start: menu
prompts: {menu: 请按一。, one: 一。}
steps:
  menu: {menu: {prompt: menu, keys: {"1": one}, max_failures: 2}}
  one: {play: one}
"""
    channel = ScriptedChannel(NO_INPUT, NO_INPUT)
    outcome = await run(flowset(text), channel)
    assert outcome.result == "completed"
    assert outcome.last_step == "main:menu"
    assert channel.hangups == [HangupCause.NORMAL]


COLLECT = r"""
flow: main
start: ask
prompts: {ask: 请输入十位户号。, bad: 户号有误。, silent: 没有听到。, ok: 好的。, agent: 转人工。}
steps:
  ask:
    collect:
      prompt: ask
      min: 10
      max: 10
      first_timeout: 8
      inter_timeout: 4
      pattern: '^1\d{9}$'
      invalid_prompt: bad
      timeout_prompt: silent
      retries: 3
      into: account
    next: ok
    on_failure: agent
  ok: {play: ok}
  agent: {play: agent}
"""


async def test_collect_retries_until_length_and_pattern_match() -> None:
    channel = ScriptedChannel(digits("123"), digits("9999999999"), digits("1234567890"))
    outcome = await run(flowset(COLLECT), channel)
    assert channel.heard == ["请输入十位户号。", "户号有误。"] * 2 + ["请输入十位户号。", "好的。"]
    assert outcome.variables["account"] == "1234567890"
    assert outcome.variables["last_digits"] == "1234567890"
    assert outcome.keys == "123#9999999999#1234567890#"
    assert channel.collects[0] == {
        "max_digits": 10,
        "terminators": "#",
        "first_timeout": 8.0,
        "inter_timeout": 4.0,
    }
    assert outcome.path == ["main:ask", "main:ok"]
    assert outcome.result == "completed"


async def test_collect_accepts_max_digits_without_terminator() -> None:
    channel = ScriptedChannel(("collect", Result(Reason.MAX_DIGITS, "1234567890")))
    outcome = await run(flowset(COLLECT), channel)
    assert outcome.variables["account"] == "1234567890"
    assert outcome.keys == "1234567890"


async def test_collect_timeouts_play_timeout_prompt_then_on_failure() -> None:
    channel = ScriptedChannel(NO_INPUT, NO_INPUT, NO_INPUT)
    outcome = await run(flowset(COLLECT), channel)
    assert channel.heard == ["请输入十位户号。", "没有听到。"] * 2 + [
        "请输入十位户号。",
        "转人工。",
    ]
    assert outcome.path == ["main:ask", "main:agent"]
    assert "account" not in outcome.variables
    assert outcome.keys == ""


LOOKUP = """
flow: main
start: lookup
vars: {account: "0123456789"}
prompts: {none: 查无此户。, agent: 转人工。}
steps:
  lookup:
    lookup: {service: billing.current_bill, args: {account: account, twice: "len(account) * 2"}, into: bill}
    on: {found: read, not_found: none, default: agent}
  read:
    say: "您的户号{account:digits}，本月电费{bill.charge:amount}，截止日期{bill.due_date:date}。"
  none: {play: none}
  agent: {play: agent}
"""


@pytest.mark.parametrize(
    ("result", "heard"),
    [
        (
            ServiceResult("found", {"charge": 230.0, "due_date": "2026-11-23"}),
            "您的户号零幺二，三四五，六七八九，本月电费二百三十元整，截止日期二〇二六年十一月二十三日。",
        ),
        (ServiceResult("not_found"), "查无此户。"),
        (ServiceResult("error", {"message": "db down"}), "转人工。"),
    ],
)
async def test_lookup_branches_on_status(result: ServiceResult, heard: str) -> None:
    services = FakeServices(billing__current_bill=result)
    channel = ScriptedChannel()
    outcome = await run(flowset(LOOKUP), channel, services=services)
    assert channel.heard == [heard]
    name, args, ctx = services.calls[0]
    assert (name, args) == ("billing.current_bill", {"account": "0123456789", "twice": 20})
    assert ctx == CallContext("call-1", "13800138000", "95598", "t1")
    assert outcome.variables["bill"] == result.data


async def test_say_is_one_readout_playable_per_step() -> None:
    services = FakeServices(
        billing__current_bill=ServiceResult("found", {"charge": "12.05", "due_date": "2026-01-05"})
    )
    channel = ScriptedChannel()
    await run(flowset(LOOKUP), channel, services=services)
    assert len(channel.plays) == 1 and len(channel.items) == 1
    assert channel.items[0].kind == "readout"
    assert "十二元零五分" in channel.items[0].text
    assert channel.plays[0][1] == ""  # say steps are not interrupted by default


async def test_service_that_raises_is_an_error_status() -> None:
    def broken(args: dict[str, Any]) -> ServiceResult:
        raise ConnectionError("billing database unreachable")

    channel = ScriptedChannel()
    outcome = await run(
        flowset(LOOKUP), channel, services=FakeServices(billing__current_bill=broken)
    )
    assert channel.heard == ["转人工。"]
    assert outcome.variables["bill"] == {"message": "ConnectionError: billing database unreachable"}
    assert outcome.result == "completed"


SET_BRANCH = """
flow: main
start: count
vars: {tries: 0}
prompts: {done: 好了。}
steps:
  count:
    set: {tries: "tries + 1", label: "'第' + str(tries) + '次'"}
    next: check
  check:
    branch:
      - {when: "tries >= 3", goto: done}
      - {else: again}
  again: {goto: count}
  done: {say: "{label:text}", next: bye}
  bye: {hangup: true}
"""


async def test_set_and_branch_loop_until_condition() -> None:
    channel = ScriptedChannel()
    outcome = await run(flowset(SET_BRANCH), channel)
    assert outcome.variables["tries"] == 3
    assert outcome.variables["label"] == "第3次"
    assert outcome.path == ["main:count", "main:check", "main:again"] * 2 + [
        "main:count",
        "main:check",
        "main:done",
        "main:bye",
    ]
    assert channel.heard == ["第3次"]
    assert outcome.result == "completed"


MAIN_CALLS_SUB = """
flow: main
start: sub
prompts: {after: 回到主流程。}
steps:
  sub: {call: bill, next: after}
  after: {say: "{greeting:text}", next: again}
  again: {call: short, next: bye}
  bye: {hangup: true}
"""
SUB = """
flow: bill
start: hello
vars: {greeting: 子流程。}
prompts: {hello: 电费子流程。}
steps:
  hello: {play: hello, next: back}
  back: {return: true}
"""
SHORT = """
flow: short
start: only
prompts: {only: 最后一句。}
steps:
  only: {play: only}
"""


async def test_subflow_call_returns_to_next_and_shares_variables() -> None:
    channel = ScriptedChannel()
    host = FakeHost()
    outcome = await run(flowset(MAIN_CALLS_SUB, SUB, SHORT), channel, host=host, flow_id="main")
    assert channel.heard == ["电费子流程。", "子流程。", "最后一句。"]
    assert outcome.path == [
        "main:sub",
        "bill:hello",
        "bill:back",
        "main:after",
        "main:again",
        "short:only",
        "main:bye",
    ]
    entered = [d["flow"] for k, _, d in host.events if k == "flow.enter"]
    assert entered == ["main", "bill", "short"]
    assert outcome.result == "completed"


WORK_ORDER = """
flow: repair
start: open
vars: {account: "0123456789"}
prompts: {dup: 该区域已有停电工单。, fail: 抱歉。}
steps:
  open:
    work_order: {action: open, type: fault_repair, fields: {account: account, contact_phone: caller}}
    on: {ok: describe, default: fail}
  describe:
    work_order: {action: update, fields: {fault_type: "'area_outage'"}}
    next: submit
  submit:
    work_order: {action: submit}
    on: {ok: tell, duplicate: dup, default: fail}
  tell: {say: "您的工单号是{work_order.number:digits}。", next: bye}
  dup: {play: dup, next: bye}
  fail: {play: fail, next: bye}
  bye: {hangup: true}
"""


async def test_work_order_open_update_submit() -> None:
    services = FakeServices(
        work_orders__open=ServiceResult("ok", {"number": "2026001", "status": "draft"}),
        work_orders__update=ServiceResult("ok", {"number": "2026001", "fault_type": "area_outage"}),
        work_orders__submit=ServiceResult("ok", {"number": "2026001", "status": "submitted"}),
    )
    host = FakeHost()
    channel = ScriptedChannel()
    outcome = await run(flowset(WORK_ORDER), channel, services=services, host=host)
    assert [(name, args) for name, args, _ in services.calls] == [
        (
            "work_orders.open",
            {
                "type": "fault_repair",
                "fields": {"account": "0123456789", "contact_phone": "13800138000"},
            },
        ),
        ("work_orders.update", {"number": "2026001", "fields": {"fault_type": "area_outage"}}),
        ("work_orders.submit", {"number": "2026001"}),
    ]
    assert outcome.variables["work_order"] == {
        "number": "2026001",
        "status": "submitted",
        "fault_type": "area_outage",
    }
    assert outcome.work_order == "2026001"
    assert [(k, d) for k, _, d in host.events if k.startswith("workorder.")] == [
        ("workorder.opened", {"number": "2026001"}),
        ("workorder.submitted", {"number": "2026001"}),
    ]
    assert channel.heard == ["您的工单号是二零二，六零零幺。"]


async def test_work_order_duplicate_status_branches() -> None:
    services = FakeServices(
        work_orders__open=ServiceResult("ok", {"number": "2026002"}),
        work_orders__update=ServiceResult("ok", {"number": "2026002"}),
        work_orders__submit=ServiceResult(
            "duplicate", {"number": "TD9", "draft_number": "2026002"}
        ),
    )
    host = FakeHost()
    channel = ScriptedChannel()
    outcome = await run(flowset(WORK_ORDER), channel, services=services, host=host)
    assert channel.heard == ["该区域已有停电工单。"]
    assert host.kinds("workorder.") == ["workorder.opened"]
    assert outcome.variables["work_order"]["draft_number"] == "2026002"


RECORD = """
flow: message
start: rec
prompts: {beep: 请在提示音后留言。, thanks: 谢谢。, none: 没有录到。}
steps:
  rec:
    record: {prompt: beep, max_time: 30, max_silence: 4, terminators: "#", beep: true, purpose: message, into: message}
    next: thanks
    on_failure: none
  thanks: {play: thanks}
  none: {play: none}
"""


async def test_record_sets_variable_and_uses_host_path() -> None:
    host = FakeHost()
    channel = ScriptedChannel(("record", Result(Reason.SILENCE, duration=7.5)))
    outcome = await run(flowset(RECORD), channel, host=host)
    assert host.recordings == [("call-1", "message")]
    assert channel.records == [
        (
            "/recordings/call-1-message.wav",
            {"max_time": 30.0, "max_silence": 4.0, "terminators": "#", "beep": True},
        )
    ]
    assert outcome.variables["message"] == {
        "path": "/recordings/call-1-message.wav",
        "seconds": 7.5,
        "reason": "silence",
    }
    assert channel.heard == ["请在提示音后留言。", "谢谢。"]


async def test_record_nothing_goes_to_on_failure() -> None:
    channel = ScriptedChannel(("record", Result(Reason.SILENCE, duration=0.0)))
    outcome = await run(flowset(RECORD), channel)
    assert channel.heard[-1] == "没有录到。"
    assert "message" not in outcome.variables


async def test_caller_hanging_up_while_recording_keeps_the_message() -> None:
    channel = ScriptedChannel(("record", Result(Reason.HANGUP, duration=3.0)))
    outcome = await run(flowset(RECORD), channel)
    assert outcome.result == "hangup"
    assert outcome.last_step == "message:rec"
    assert outcome.variables["message"]["seconds"] == 3.0


TRANSFER = """
flow: main
start: ask
prompts: {ask: 请输入户号。, bye: 再见。, leave: 请留言。}
steps:
  ask: {collect: {prompt: ask, max: 10, into: account}, next: agent}
  agent:
    transfer: {queue: general, priority: 5, data: [account]}
    on: {connected: bye, default: leave}
  leave: {play: leave}
  bye: {hangup: {prompt: bye}}
"""


async def test_transfer_connected_result_and_data() -> None:
    host = FakeHost(TransferResult("connected", {"agent": "1001"}))
    channel = ScriptedChannel(digits("0123456789"))
    outcome = await run(flowset(TRANSFER), channel, host=host)
    assert host.transfers == [
        (
            "general",
            5,
            {
                "path": ["main:ask", "main:agent"],
                "keys": "0123456789#",
                "variables": {"account": "0123456789"},
            },
        )
    ]
    assert outcome.variables["transfer"] == {"status": "connected", "agent": "1001"}
    assert channel.heard[-1] == "再见。"
    assert outcome.result == "transferred"


async def test_transfer_without_agent_takes_default_branch() -> None:
    host = FakeHost(TransferResult("no_agent"))
    channel = ScriptedChannel(digits("0123456789"))
    outcome = await run(flowset(TRANSFER), channel, host=host)
    assert channel.heard[-1] == "请留言。"
    assert outcome.result == "completed"


async def test_caller_hanging_up_in_queue_ends_with_hangup() -> None:
    host = FakeHost(TransferResult("hangup"))
    channel = ScriptedChannel(digits("0123456789"))
    outcome = await run(flowset(TRANSFER), channel, host=host)
    assert (outcome.result, outcome.last_step) == ("hangup", "main:agent")


async def test_hangup_mid_collect_ends_cleanly_with_last_step() -> None:
    host = FakeHost()
    channel = ScriptedChannel(CALLER_HANGS_UP)
    outcome = await run(flowset(COLLECT), channel, host=host)
    assert outcome.result == "hangup"
    assert outcome.last_step == "main:ask"
    assert channel.hangups == []  # nothing to hang up: the caller already left
    assert host.events[-1] == (
        "flow.exit",
        "call-1",
        {"result": "hangup", "flow": "main", "step": "main:ask"},
    )


async def test_hungup_exception_from_driver_ends_with_hangup() -> None:
    channel = ScriptedChannel(("play", HungUp(HangupCause.REMOTE_BYE)))
    outcome = await run(flowset(MENU), channel)
    assert (outcome.result, outcome.last_step) == ("hangup", "main:menu")


async def test_play_step_barge_in_option() -> None:
    text = """
flow: main
start: a
prompts: {a: 一。, b: 二。}
steps:
  a: {play: a, barge_in: true, next: b}
  b: {play: [b, {say: "{caller:phone}"}], barge_in: "#"}
"""
    channel = ScriptedChannel()
    await run(flowset(text), channel)
    assert [barge for _, barge in channel.plays] == ["any", "#"]
    assert len(channel.plays[1][0]) == 2


GUARDED = """
flow: main
start: a
limits: {max_steps: 10}
vars: {n: 0}
steps:
  a: {set: {n: "n + 1"}, next: b}
  b:
    branch:
      - {when: "n > 1000", goto: done}
      - {else: a}
  done: {hangup: true}
"""


async def test_max_steps_guard_hangs_up_with_guard_cause() -> None:
    fs = flowset(GUARDED)
    channel = ScriptedChannel()
    outcome = await run(fs, channel)
    assert outcome.result == "guard"
    assert len(outcome.path) == 10
    assert outcome.last_step == "main:b"
    assert channel.hangups == [HangupCause.GUARD]


def on_virtual_clock(coro: Coroutine[Any, Any, CallOutcome]) -> tuple[CallOutcome, float]:
    """Run a call on the virtual-clock loop; returns its outcome and the virtual seconds used."""
    loop = VirtualClockLoop()
    try:
        started = loop.time()
        outcome = loop.run_until_complete(coro)
        return outcome, loop.time() - started
    finally:
        loop.close()


def test_max_call_seconds_guard_interrupts_a_step() -> None:
    text = """
flow: main
start: wait
limits: {max_call_seconds: 1200}
steps:
  wait: {collect: {max: 4}}
"""
    channel = ScriptedChannel(("collect", Stall()))  # a caller whose hangup is never signalled
    outcome, seconds = on_virtual_clock(run(flowset(text), channel))
    assert (outcome.result, outcome.last_step) == ("guard", "main:wait")
    assert seconds == pytest.approx(1200)
    assert channel.hangups == [HangupCause.GUARD]


def test_time_with_the_agent_does_not_count_against_the_guard() -> None:
    text = """
flow: main
start: agent
limits: {max_call_seconds: 1200}
steps:
  agent: {transfer: {queue: general}, next: ask}
  ask: {collect: {max: 4}}
"""
    host = FakeHost(TransferResult("connected"), transfer_delay=3600)
    channel = ScriptedChannel(("collect", Stall()))
    outcome, seconds = on_virtual_clock(run(flowset(text), channel, host=host))
    assert (outcome.result, outcome.last_step) == ("guard", "main:ask")
    assert seconds == pytest.approx(3600 + 1200)  # the guard resumed after the transfer


async def test_unexpected_exception_is_an_error_result_and_hangs_up() -> None:
    speech = FakeSpeech()
    speech.fail = True
    host = FakeHost()
    channel = ScriptedChannel()
    outcome = await run(flowset(MENU), channel, host=host, speech=speech)
    assert (outcome.result, outcome.last_step) == ("error", "main:menu")
    assert channel.hangups == [HangupCause.ERROR]
    assert host.kinds("flow.exit") == ["flow.exit"]


async def test_expression_failing_at_run_time_is_an_error() -> None:
    text = """
flow: main
start: s
vars: {bill: {}}
steps:
  s: {set: {x: "bill.charge + 1"}}
"""
    outcome = await run(flowset(text), ScriptedChannel())
    assert (outcome.result, outcome.last_step) == ("error", "main:s")


async def test_events_and_bound_call_id() -> None:
    services = FakeServices(billing__current_bill=ServiceResult("not_found"))
    host = FakeHost()
    await run(flowset(LOOKUP), ScriptedChannel(), services=services, host=host)
    assert services.call_ids == ["call-1"]
    assert {call_id for _, call_id, _ in host.events} == {"call-1"}
    assert host.events == [
        ("flow.enter", "call-1", {"flow": "main"}),
        ("flow.step", "call-1", {"flow": "main", "step": "lookup", "action": "lookup"}),
        ("flow.step", "call-1", {"flow": "main", "step": "none", "action": "play"}),
        ("flow.prompt", "call-1", {"prompt_id": "none", "text": "查无此户。", "step": "none"}),
        ("flow.exit", "call-1", {"result": "completed", "flow": "main", "step": "main:none"}),
    ]
    assert structlog.contextvars.get_contextvars().get("call_id") is None


async def test_call_keeps_its_snapshot_across_a_reload(tmp_path: Path) -> None:
    flow_file = tmp_path / "main.yaml"
    flow_file.write_text(COLLECT, encoding="utf-8")
    registry = FlowRegistry(tmp_path)
    assert registry.load() == []
    gate = asyncio.Event()

    class GatedChannel(ScriptedChannel):
        async def collect(self, **kwargs: Any) -> Result:
            await gate.wait()  # the caller is still typing while the operator reloads
            return await super().collect(**kwargs)

    channel = GatedChannel(digits("1234567890"))
    call = asyncio.create_task(run(registry.current, channel))
    flow_file.write_text(COLLECT.replace("好的。", "已更新。"), encoding="utf-8")
    assert registry.reload() == []
    gate.set()
    outcome = await call
    assert channel.heard[-1] == "好的。"  # the call finished on the flows it started with
    new_call = ScriptedChannel(digits("1234567890"))
    await run(registry.current, new_call)
    assert new_call.heard[-1] == "已更新。"
    assert outcome.result == "completed"
