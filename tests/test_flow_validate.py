"""Flow validation: the malformed corpus (tests/flows_bad) and the semantic rules one by one.

Every corpus file starts with ``# expect: <line>:<column>: <text>`` and must yield exactly one
error, at that position, whose reason contains that text. A directory in the corpus is loaded
as one set (for problems that need two files, like a duplicate flow id).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ivr.flow.loader import load_flow_text
from ivr.flow.model import FlowError, FlowSet
from ivr.flow.registry import load_flows
from ivr.flow.validate import validate

BAD = Path(__file__).parent / "flows_bad"
SERVICES = frozenset(
    {
        "billing.current_bill",
        "voice_messages.store",
        "work_orders.open",
        "work_orders.update",
        "work_orders.submit",
    }
)
EXPECT = re.compile(r"# expect: (\d+):(\d+): (.+)")


def _cases() -> list[Path]:
    files = sorted(BAD.glob("*.yaml"))
    dirs = sorted(p for p in BAD.iterdir() if p.is_dir())
    return files + dirs


def _expectation(case: Path) -> tuple[str, int, int, str]:
    files = [case] if case.is_file() else sorted(case.glob("*.yaml"))
    for file in files:
        first = file.read_text(encoding="utf-8").splitlines()[:1]
        match = EXPECT.match(first[0]) if first else None
        if match:
            return str(file), int(match[1]), int(match[2]), match[3]
    raise AssertionError(f"{case} has no '# expect:' line")


def test_corpus_is_large_enough() -> None:
    assert len(_cases()) >= 30


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.stem)
def test_bad_flow_reports_its_one_problem_at_its_position(case: Path) -> None:
    file, line, column, text = _expectation(case)
    _, problems = load_flows([case] if case.is_file() else case, SERVICES)
    errors = [p for p in problems if p.is_error]
    assert [(e.file, e.line, e.column) for e in errors] == [(file, line, column)], errors
    assert text in errors[0].reason
    assert str(errors[0]) == f"{file}:{line}:{column}: {errors[0].reason}"


def check(text: str, *more: str, services: frozenset[str] | None = SERVICES) -> list[FlowError]:
    """Load flow texts (file names a.yaml, b.yaml…) and validate them together."""
    flows = {}
    problems: list[FlowError] = []
    for i, source in enumerate((text, *more)):
        flow, errors = load_flow_text(source, f"{'abcdef'[i]}.yaml")
        problems += errors
        if flow is not None:
            flows[flow.id] = flow
    return problems + validate(FlowSet(flows), services)


def errors_of(*texts: str, **kw: frozenset[str] | None) -> list[str]:
    return [str(p) for p in check(*texts, **kw) if p.is_error]


def warnings_of(*texts: str) -> list[str]:
    return [str(p) for p in check(*texts) if not p.is_error]


FULL = r"""
flow: bill_lookup
title: 电费查询
start: greet
limits: {max_call_seconds: 1200, max_steps: 300}
on_failure: to_agent
prompts:
  welcome: 欢迎致电九五五九八。
  ask_account: 请输入您的十位户号，以井号键结束。
  bad_account: 户号有误。
  no_input: 没有听到您的按键。
  confirm_account: 确认请按一，重新输入请按二。
  confirm_short: 请按一或二。
  invalid_key: 按键无效。
  no_such_account: 查无此户。
  record_after_beep: 请在提示音后留言，按井号键结束。
  goodbye: 感谢您的来电，再见。
vars: {tries: 0}
steps:
  greet: {play: welcome, next: ask_account}
  ask_account:
    collect:
      prompt: ask_account
      min: 10
      max: 10
      terminators: "#"
      first_timeout: 8
      inter_timeout: 4
      pattern: '^\d{10}$'
      invalid_prompt: bad_account
      timeout_prompt: no_input
      retries: 3
      into: account
    next: confirm
  confirm:
    menu:
      prompt: [confirm_account, {say: "您输入的户号是{account:digits}"}]
      short_prompt: confirm_short
      invalid_prompt: invalid_key
      timeout_prompt: no_input
      timeout: 6
      max_failures: 3
      keys: {1: lookup, "2": count, "*": confirm}
  count:
    set: {tries: "tries + 1", label: "'x'"}
    next: check
  check:
    branch:
      - {when: "tries >= 3", goto: to_agent}
      - {else: ask_account}
  lookup:
    lookup:
      service: billing.current_bill
      args: {account: account}
      into: bill
    on: {found: read_bill, not_found: no_such_account, default: to_agent}
  read_bill:
    say: "您的户号{account:digits}，本月电费{bill.charge:amount}，缴费截止日期{bill.due_date:date}。{{完}}"
    barge_in: false
    next: arrears
  arrears:
    branch:
      - {when: "bill.arrears > 0", goto: open_order}
    next: bye
  no_such_account: {play: no_such_account, next: ask_account}
  open_order:
    work_order: {action: open, type: fault_repair, fields: {account: account, contact_phone: caller}}
    on: {ok: submit_order, default: to_agent}
  submit_order:
    work_order: {action: submit}
    on: {ok: bye, duplicate: bye, default: to_agent}
  to_agent:
    transfer: {queue: general, priority: 0}
    on: {connected: bye, default: leave_message}
  leave_message:
    record:
      prompt: record_after_beep
      max_time: 60
      max_silence: 5
      terminators: "#"
      beep: true
      purpose: message
      into: message
    next: store
    on_failure: bye
  store:
    lookup: {service: voice_messages.store, args: {path: message.path, seconds: message.seconds}}
    next: bye
  bye:
    hangup: {prompt: goodbye}
"""


def test_the_reference_example_is_valid() -> None:
    assert check(FULL) == []


def test_flow_error_str_is_file_line_column_reason() -> None:
    error = FlowError("flows/a.yaml", 3, 7, "start step 'x' does not exist")
    assert str(error) == "flows/a.yaml:3:7: start step 'x' does not exist"


def test_errors_are_sorted_by_file_then_line() -> None:
    a = """
flow: a
start: s
steps:
  s: {goto: nowhere}
  t: {goto: s}
"""
    b = """
flow: b
start: missing
steps:
  s: {hangup: true}
"""
    assert errors_of(b, a) == [
        "a.yaml:3:8: start step 'missing' does not exist in flow 'b'",
        "b.yaml:5:13: step 's': goto goes to unknown step 'nowhere'",
        "b.yaml:6:3: step 't' is unreachable from start step 's'",
    ]


def test_unused_prompt_is_a_warning_not_an_error() -> None:
    text = """
flow: a
start: s
prompts: {used: 用。, spare: 备用。}
steps:
  s: {hangup: {prompt: used}}
"""
    assert errors_of(text) == []
    assert warnings_of(text) == ["a.yaml:4:21: prompt 'spare' is defined but never used"]


def test_same_prompt_id_with_other_text_in_another_flow_is_a_warning() -> None:
    a = "flow: a\nstart: s\nprompts: {bye: 再见。}\nsteps:\n  s: {hangup: {prompt: bye}}\n"
    b = "flow: b\nstart: s\nprompts: {bye: 再会。}\nsteps:\n  s: {hangup: {prompt: bye}}\n"
    assert errors_of(a, b) == []
    assert warnings_of(a, b) == [
        "b.yaml:3:11: prompt 'bye' has a different text in flow 'a' (a.yaml:3:11);"
        " prompts are cached and recorded by id"
    ]


def test_services_are_not_checked_without_a_service_list() -> None:
    text = """
flow: a
start: s
steps:
  s: {lookup: {service: crm.customer}, next: t}
  t: {hangup: true}
"""
    assert errors_of(text, services=None) == []
    assert errors_of(text) == ["a.yaml:5:25: step 's': unknown service 'crm.customer'"]


def test_work_order_action_needs_its_service() -> None:
    text = """
flow: a
start: s
steps:
  s: {work_order: {action: update, fields: {area: "'east'"}}, next: t}
  t: {hangup: true}
"""
    assert errors_of(text, services=frozenset({"work_orders.open"})) == [
        "a.yaml:5:28: step 's': unknown service 'work_orders.update';"
        " did you mean 'work_orders.open'?"
    ]


def test_menu_loop_is_fine_when_its_failure_hangs_up() -> None:
    text = """
flow: a
start: menu
prompts: {menu: 请按键。, info: 说明。}
steps:
  menu: {menu: {prompt: menu, keys: {"1": info, "9": menu}}}
  info: {play: info, next: menu}
"""
    assert errors_of(text) == []


def test_menu_loop_with_failure_back_into_the_loop_has_no_exit() -> None:
    text = """
flow: a
start: menu
prompts: {menu: 请按键。, info: 说明。}
steps:
  menu: {menu: {prompt: menu, keys: {"1": info}, on_failure: info}}
  info: {play: info, next: menu}
"""
    assert errors_of(text) == [
        "a.yaml:6:3: loop with no exit: steps menu, info can never reach a hangup, return,"
        " transfer or an input step whose failure ends the call"
    ]


def test_steps_leading_into_a_stuck_loop_are_not_reported_twice() -> None:
    text = """
flow: a
start: s
steps:
  s: {set: {n: "1"}, next: p}
  p: {goto: q}
  q: {goto: p}
"""
    errors = errors_of(text)
    assert len(errors) == 1 and "steps p, q" in errors[0]


def test_flow_running_off_the_end_is_an_exit() -> None:
    text = """
flow: sub
start: s
steps:
  s: {set: {n: "1"}}
"""
    assert errors_of(text) == []


def test_unused_next_beside_default_is_a_warning() -> None:
    text = """
flow: a
start: s
steps:
  s:
    lookup: {service: billing.current_bill}
    on: {default: t}
    next: t
  t: {hangup: true}
"""
    assert errors_of(text) == []
    assert warnings_of(text) == [
        "a.yaml:8:11: step 's': 'next' is never used because 'on' has a 'default'"
    ]


def test_template_slots_are_checked_as_expressions() -> None:
    text = """
flow: a
start: s
vars: {n: 1}
steps:
  s: {say: "共{n + :integer}户，{{不是槽}}，{m:integer}。", next: t}
  t: {hangup: true}
"""
    assert errors_of(text) == [
        "a.yaml:6:15: step 's': invalid expression 'n +': invalid syntax",
        "a.yaml:6:39: step 's': unknown variable 'm'"
        " (not built in, not in vars, never set by a step)",
    ]


def test_say_items_in_prompt_lists_are_checked() -> None:
    text = """
flow: a
start: s
prompts: {p: 您好。}
steps:
  s: {play: [p, {say: "{caller:phon}"}], next: t}
  t: {hangup: true}
"""
    errors = errors_of(text)
    assert len(errors) == 1
    assert errors[0].startswith("a.yaml:6:32: step 's': unknown slot kind 'phon'")


def test_transfer_data_names_must_be_variables() -> None:
    text = """
flow: a
start: s
steps:
  s: {transfer: {queue: general, data: [account]}}
"""
    assert errors_of(text) == ["a.yaml:5:41: step 's': unknown variable 'account' in transfer data"]


def test_reserved_word_cannot_be_a_variable() -> None:
    text = """
flow: a
start: s
steps:
  s: {set: {class: "1"}}
"""
    assert errors_of(text) == ["a.yaml:5:13: 'class' is a reserved word and cannot be a variable"]


def test_variables_set_in_another_flow_are_known() -> None:
    main = """
flow: main
start: s
steps:
  s: {call: sub, next: t}
  t: {say: "{account:digits}"}
"""
    sub = """
flow: sub
start: ask
steps:
  ask: {collect: {max: 10, into: account}}
"""
    assert errors_of(main, sub) == []


def test_mutual_sub_flow_recursion_is_reported_in_both_flows() -> None:
    a = "flow: a\nstart: s\nsteps:\n  s: {call: b}\n"
    b = "flow: b\nstart: s\nsteps:\n  s: {call: a}\n"
    assert errors_of(a, b) == [
        "a.yaml:4:13: flow 'a' calls itself through a → b → a; sub-flows cannot recurse",
        "b.yaml:4:13: flow 'b' calls itself through b → a → b; sub-flows cannot recurse",
    ]


def test_on_failure_inside_menu_and_on_step_is_an_error() -> None:
    text = """
flow: a
start: m
prompts: {p: 请按键。}
steps:
  m:
    menu: {prompt: p, keys: {"1": t}, on_failure: t}
    on_failure: t
  t: {hangup: true}
"""
    assert errors_of(text) == [
        "a.yaml:7:39: step 'm': on_failure is given both in menu and on the step"
    ]
