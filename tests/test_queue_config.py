"""Queue and agent files: the shipped ones load; mistakes come back as file:line:column errors."""

from __future__ import annotations

from acd.strategies import Strategy
from hotline.queue_config import (
    check_references,
    load_agents_text,
    load_queue_dir,
    load_queue_text,
    seats_missing,
)
from support import REPO


def test_shipped_queues_and_agents_load_and_reference_real_flows_and_seats() -> None:
    definition, errors = load_queue_dir(REPO / "queues")
    assert errors == []
    assert set(definition.queues) == {"general", "fault"}
    general, fault = definition.queues["general"], definition.queues["fault"]
    assert general.config.strategy is Strategy.LONGEST_IDLE
    assert fault.config.strategy is Strategy.EXPERT and fault.config.expert.start_level == 8
    assert general.config.no_agent_destination == "leave_message"
    assert general.waiting_prompt and general.announce_agent
    assert [a.seat for a in definition.agents.values()] == ["s1", "s2", "s3", "s4"]
    assert definition.agents["1001"].skills == {"general": 5, "fault": 8}
    flows = {"main", "to_agent", "leave_message", "fault_report", "bill_lookup"}
    assert check_references(definition, flows) == []
    problems = check_references(definition, {"main"})
    assert any(
        "on_timeout 'leave_message' is neither a flow nor a queue" in str(p) for p in problems
    )
    assert seats_missing(definition, ["s1", "s2", "s3", "s4"]) == []
    assert seats_missing(definition, ["s1", "s2"]) == ["1003", "1004"]


def test_queue_mistakes_are_reported_with_positions() -> None:
    text = "\n".join(
        [
            "queue: general",
            "strategy: fastest",
            "skills: {general: 11}",
            "max_wait: -3",
            "ring_timout: 15",
            "expert: {start_level: 5, min_level: 7}",
            "announce_agent: yes please",
        ]
    )
    definition, errors = load_queue_text(text, "queues/general.yaml")
    assert definition is None
    got = sorted(str(e) for e in errors)
    assert any(e.startswith("queues/general.yaml:2:11: unknown strategy 'fastest'") for e in got)
    assert any(e.startswith("queues/general.yaml:3:19: skill 'general'") for e in got)
    assert any(e.startswith("queues/general.yaml:4:11: max_wait must be") for e in got)
    assert any(
        e.startswith("queues/general.yaml:5:1: unknown queue setting 'ring_timout'") for e in got
    )
    assert any(e.startswith("queues/general.yaml:6:9: expert:") for e in got)
    assert any(
        e.startswith("queues/general.yaml:7:17: announce_agent must be true or false") for e in got
    )
    _, errors = load_queue_text("title: x\n", "q.yaml")
    assert [str(e) for e in errors] == [
        "q.yaml:1:1: 'queue' must name the queue in lower case letters, digits and _ (e.g. general)"
    ]
    _, errors = load_queue_text("queue: a\n  b: [", "q.yaml")
    assert errors and "YAML syntax error" in str(errors[0])


def test_agent_mistakes_are_reported_with_positions() -> None:
    text = "\n".join(
        [
            "agents:",
            '  - {id: "1001", name: 张丽, skills: {general: 5}, seat: s1}',
            '  - {id: "1001", name: 王强, skills: {general: 6}, seat: s2}',
            '  - {id: "ab", name: 李娜, skills: {general: 4}, seat: s1}',
            '  - {id: "1004", name: 赵敏, skills: {general: 0}, seat: t1, desk: 3}',
        ]
    )
    agents, errors = load_agents_text(text, "queues/agents.yaml")
    assert list(agents) == ["1001"]
    got = [str(e) for e in errors]
    assert "queues/agents.yaml:3:10: agent 1001 is listed twice" in got
    assert any(
        e.startswith("queues/agents.yaml:4:10: agent id (工号) must be 3 to 8 digits") for e in got
    )
    assert "queues/agents.yaml:4:54: seat s1 is already taken by agent 1001" in got
    assert any(e.startswith("queues/agents.yaml:5:") and "skill 'general'" in e for e in got)
    assert any(
        e.startswith("queues/agents.yaml:5:") and "seat must be a station line" in e for e in got
    )
    assert any("unknown agent setting 'desk'" in e for e in got)
