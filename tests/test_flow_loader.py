"""Loading flow files: positions of everything, YAML quirks, structural errors, directories,
and the published JSON Schema file."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from ivr.flow import model as m
from ivr.flow.loader import load_flow_dir, load_flow_file, load_flow_text
from ivr.flow.schema import FLOW_SCHEMA, SCHEMA_FILE, schema_json

FLOW = r"""flow: bill_lookup
title: 电费查询
start: ask
prompts:
  ask: 请输入户号。
  bad: 户号有误。
vars: {tries: 0, since: 2026-01-01}
steps:
  ask:
    collect:
      prompt: [ask, {say: "第{tries:integer}次"}]
      max: 10
      pattern: '^\d{10}$'
      into: account
    next: menu
    on_failure: bye
  menu:
    menu:
      prompt: bad
      keys: {1: read, 0: bye, "#": menu}
  read:
    say: "户号{account:digits}"
    on: {}
    next: bye
  bye: {hangup: true}
"""


def load(text: str) -> m.Flow:
    flow, errors = load_flow_text(text, "f.yaml")
    assert errors == [], [str(e) for e in errors]
    assert flow is not None
    return flow


def test_steps_and_references_keep_their_positions() -> None:
    flow = load(FLOW.replace("    on: {}\n", ""))
    assert flow.pos == m.Pos("f.yaml", 1, 7)
    assert flow.start == m.Ref("ask", m.Pos("f.yaml", 3, 8))
    ask = flow.steps["ask"]
    assert ask.pos == m.Pos("f.yaml", 9, 3)
    assert ask.action_pos == m.Pos("f.yaml", 10, 5)
    assert ask.next == m.Ref("menu", m.Pos("f.yaml", 15, 11))
    assert ask.on_failure == m.Ref("bye", m.Pos("f.yaml", 16, 17))
    assert ask.pos_of("max") == m.Pos("f.yaml", 12, 12)
    assert flow.prompts["bad"] == m.PromptText("户号有误。", m.Pos("f.yaml", 6, 3))


def test_sources_point_at_their_first_character() -> None:
    flow = load(FLOW.replace("    on: {}\n", ""))
    collect = flow.steps["ask"].action
    assert isinstance(collect, m.Collect)
    # single-quoted: the pattern starts one column after the quote
    assert collect.pattern == m.Pattern(r"^\d{10}$", m.Pos("f.yaml", 13, 17), True)
    say_item = collect.prompt[1].say
    assert say_item is not None and say_item.pos == m.Pos("f.yaml", 11, 28)
    assert say_item.pos_at(1) == m.Pos("f.yaml", 11, 29)  # the '{' of the slot


def test_escaped_or_multiline_text_points_at_the_scalar() -> None:
    text = FLOW.replace("    on: {}\n", "").replace(
        'say: "户号{account:digits}"', 'say: "户号\\t{account:digits}"'
    )
    say = load(text).steps["read"].action
    assert isinstance(say, m.Say)
    assert not say.template.exact
    assert say.template.pos_at(5) == say.template.pos == m.Pos("f.yaml", 22, 10)


def test_yaml_quirks_keys_as_written_dates_as_text() -> None:
    flow = load(FLOW.replace("    on: {}\n", ""))
    menu = flow.steps["menu"].action
    assert isinstance(menu, m.Menu)
    assert [key for key, _ in menu.keys] == ["1", "0", "#"]
    assert flow.vars["since"] == "2026-01-01"
    assert flow.vars["tries"] == 0


def test_on_key_is_not_a_boolean() -> None:
    text = FLOW.replace("    on: {}\n    next: bye\n", "    on: {found: bye, default: bye}\n")
    text = text.replace('say: "户号{account:digits}"', "lookup: {service: billing.current_bill}")
    read = load(text).steps["read"]
    assert [status for status, _ in read.on] == ["found", "default"]
    assert read.on_target("found") == "bye" and read.on_target("other") == "bye"


def test_misplaced_and_empty_on_are_structural_errors() -> None:
    _, errors = load_flow_text(FLOW, "f.yaml")
    assert [str(e) for e in errors] == [
        "f.yaml:23:5: step 'read': 'on' does not apply to a say step",
        "f.yaml:23:9: step 'read': on must not be empty",
    ]


def test_yaml_syntax_error_has_position() -> None:
    flow, errors = load_flow_text("flow: a\nstart: [b\nsteps: {}\n", "f.yaml")
    assert flow is None
    assert len(errors) == 1
    assert errors[0].reason.startswith("YAML syntax error: ")
    assert (errors[0].line, errors[0].column) == (3, 6)


def test_duplicate_keys_are_errors() -> None:
    _, errors = load_flow_text("flow: a\nstart: s\nflow: b\nsteps: {s: {hangup: true}}\n", "f.yaml")
    assert [str(e) for e in errors] == ["f.yaml:3:1: duplicate key 'flow' (first at line 1)"]


def test_merge_keys_and_custom_tags_are_refused() -> None:
    text = (
        "flow: a\nstart: s\nsteps:\n  s: &bye {hangup: true}\n"
        "  t:\n    <<: *bye\n  u: {play: !env HOME}\n"
    )
    _, errors = load_flow_text(text, "f.yaml")
    reasons = [str(e) for e in errors]
    assert "f.yaml:6:5: merge keys ('<<') are not supported" in reasons
    assert "f.yaml:7:13: unsupported YAML tag '!env'" in reasons


def test_several_structural_errors_in_one_file() -> None:
    text = """flow: a
start: s
limits: {max_steps: 0, max_call_secs: 10}
steps:
  s: {play: [], next: t}
  t: {goto: s, next: s}
"""
    _, errors = load_flow_text(text, "f.yaml")
    assert [str(e) for e in errors] == [
        "f.yaml:3:21: limits.max_steps must be at least 1 (got 0)",
        "f.yaml:3:24: limits: unknown key 'max_call_secs'; did you mean 'max_call_seconds'?",
        "f.yaml:5:13: step 's': play must not be empty",
        "f.yaml:6:16: step 't': 'next' does not apply to a goto step",
    ]


def test_load_flow_file_reports_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    flow, errors = load_flow_file(missing)
    assert flow is None and errors[0].reason.startswith("cannot read the file")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("flow: caf\xe9\n".encode("latin-1"))
    _, errors = load_flow_file(latin)
    assert str(errors[0]).startswith(f"{latin}:1:1: the file is not UTF-8 text")


def test_load_flow_dir_loads_yaml_files_in_order(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("flow: b\nstart: s\nsteps: {s: {hangup: true}}\n")
    (tmp_path / "a.yml").write_text("flow: a\nstart: s\nsteps: {s: {call: b}}\n")
    (tmp_path / "notes.txt").write_text("not a flow")
    (tmp_path / "c.yaml").write_text("flow: a\nstart: s\nsteps: {s: {hangup: true}}\n")
    flowset, errors = load_flow_dir(tmp_path)
    assert sorted(flowset) == ["a", "b"]
    assert flowset["a"].file == str(tmp_path / "a.yml")
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'c.yaml'}:1:7: flow id 'a' is already defined at {tmp_path / 'a.yml'}:1:7"
    ]


def test_flowset_is_an_immutable_mapping() -> None:
    flow = load(FLOW.replace("    on: {}\n", ""))
    flowset = m.FlowSet({flow.id: flow})
    assert dict(flowset) == {"bill_lookup": flow}
    assert list(flowset.prompts()) == [("ask", "请输入户号。"), ("bad", "户号有误。")]
    try:
        flow.steps["x"] = flow.steps["ask"]  # type: ignore[index]
    except TypeError:
        pass
    else:
        raise AssertionError("steps must be read-only")


def test_published_schema_file_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_json(), (
        "regenerate with: python -m ivr.flow.schema --write"
    )
    published = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(published)
    assert published == FLOW_SCHEMA


def test_schema_accepts_the_flow_as_an_editor_would_see_it() -> None:
    data = yaml.safe_load(FLOW.replace("    on: {}\n", "").replace("since: 2026-01-01", "since: x"))
    data["steps"]["menu"]["menu"]["keys"] = {"1": "read", "0": "bye", "#": "menu"}
    jsonschema.validate(data, FLOW_SCHEMA)
