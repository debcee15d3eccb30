"""Queue and agent-seat definitions from YAML (``queues/*.yaml``), checked with file:line errors.

A queue file holds one queue; its keys are the fields of :class:`acd.queues.QueueConfig`
(``queue`` gives the name) plus what the engine plays to a waiting caller::

    queue: general
    title: 综合服务
    strategy: longest_idle
    skills: {general: 1}
    max_wait: 180
    ring_timeout: 15
    on_timeout: leave_message       # where the flow goes is decided by the flow's ``on:``
    on_no_agent: leave_message      # set: callers leave when no member is logged in
    waiting_prompt: 坐席正忙，请您耐心等待。
    announce_agent: true            # 报工号 on answer
    survey: survey                  # optional: a flow the caller is moved to when the
                                    # agent hangs up first (满意度 survey)

``agents.yaml`` (the same folder) lists the agents and the seat (station line) each sits at::

    agents:
      - {id: "1001", name: 张丽, skills: {general: 5, fault: 8}, seat: s1}

Files are parsed with positions by :func:`ivr.flow.loader.parse_document`; every problem comes
back as an :class:`~ivr.flow.model.FlowError` (``file:line:column: reason``). Nothing here
touches the ACD's runtime; :mod:`hotline.contact_center` builds it from these definitions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acd.agents import Agent
from acd.queues import Announcements, CallbackOffer, ExpertWidening, FamiliarAgent, QueueConfig
from acd.strategies import Strategy
from hotline.seats import is_seat
from ivr.flow.loader import parse_document
from ivr.flow.model import FlowError, Pos

AGENTS_FILE = "agents.yaml"
DEFAULT_WAITING_PROMPT = "坐席正忙，请您耐心等待，我们将尽快为您服务。"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_AGENT_ID = re.compile(r"^[0-9]{3,8}$")

# yaml key -> QueueConfig field, for keys that are renamed
_DESTINATIONS = {
    "on_timeout": "timeout_destination",
    "on_no_agent": "no_agent_destination",
    "on_full": "full_destination",
}
_NUMBERS = {
    "max_wait": True,
    "max_length": True,
    "ring_timeout": False,
    "wrap_up": False,
    "service_level_threshold": False,
    "short_abandon": False,
    "priority_aging": True,
}
_NESTED = {
    "familiar_agent": FamiliarAgent,
    "expert": ExpertWidening,
    "callback": CallbackOffer,
    "announcements": Announcements,
}
_QUEUE_KEYS = (
    {"queue", "title", "strategy", "skills", "waiting_prompt", "announce_agent", "survey"}
    | set(_DESTINATIONS)
    | set(_NUMBERS)
    | set(_NESTED)
)
_AGENT_KEYS = {"id", "name", "skills", "seat", "order"}


@dataclass(frozen=True, slots=True)
class QueueDefinition:
    """A queue as configured: the core's :class:`QueueConfig` plus what callers hear."""

    config: QueueConfig
    title: str = ""
    waiting_prompt: str = DEFAULT_WAITING_PROMPT
    announce_agent: bool = True
    survey: str | None = None  # flow id of the post-call satisfaction survey
    file: str = ""

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True, slots=True)
class SeatedAgent:
    """An agent and the station line of their seat."""

    id: str
    name: str
    skills: dict[str, int] = field(default_factory=dict)
    seat: str = ""
    order: int | None = None

    def to_agent(self) -> Agent:
        return Agent(self.id, self.name, dict(self.skills), seat=self.seat, order=self.order)


@dataclass(slots=True)
class ContactCenterDefinition:
    """Everything loaded from a queues folder."""

    queues: dict[str, QueueDefinition] = field(default_factory=dict)
    agents: dict[str, SeatedAgent] = field(default_factory=dict)


def load_queue_dir(folder: str | Path) -> tuple[ContactCenterDefinition, list[FlowError]]:
    """Load every ``*.yaml`` of ``folder`` (``agents.yaml`` for agents, the rest queues).

    A missing folder means no queues (not an error). Returns what loaded and every problem.
    """
    folder = Path(folder)
    result = ContactCenterDefinition()
    errors: list[FlowError] = []
    if not folder.is_dir():
        return result, errors
    seen: dict[str, str] = {}
    for path in sorted(folder.glob("*.y*ml")):
        if path.name == AGENTS_FILE or path.name == "agents.yml":
            continue
        definition, problems = load_queue_file(path)
        errors.extend(problems)
        if definition is not None:
            if definition.name in seen:
                errors.append(
                    FlowError(
                        str(path),
                        1,
                        1,
                        f"queue {definition.name!r} is already defined in {seen[definition.name]}",
                    )
                )
            else:
                seen[definition.name] = str(path)
                result.queues[definition.name] = definition
    agents_path = folder / AGENTS_FILE
    if agents_path.exists():
        agents, problems = load_agents_file(agents_path)
        result.agents = agents
        errors.extend(problems)
    return result, errors


def load_queue_file(path: str | Path) -> tuple[QueueDefinition | None, list[FlowError]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [FlowError(str(path), 1, 1, f"cannot read the queue file: {exc}")]
    return load_queue_text(text, str(path))


def load_queue_text(text: str, file: str) -> tuple[QueueDefinition | None, list[FlowError]]:
    doc = parse_document(text, file)
    errors = [e for e in doc.errors if "the file is empty" not in e.reason]
    data = doc.data
    if errors:
        return None, errors
    if not isinstance(data, dict):
        return None, [FlowError(file, 1, 1, "a queue file must be a mapping with at least 'queue'")]
    for key in data:
        if key not in _QUEUE_KEYS:
            errors.append(
                FlowError.at(
                    doc.key_pos((key,)),
                    f"unknown queue setting {key!r} (known: {', '.join(sorted(_QUEUE_KEYS))})",
                )
            )

    def bad(key: str | tuple, reason: str) -> None:
        errors.append(
            FlowError.at(doc.value_pos(key if isinstance(key, tuple) else (key,)), reason)
        )

    name = data.get("queue")
    if not isinstance(name, str) or not _NAME.match(name):
        where: Pos = doc.value_pos(("queue",)) if "queue" in data else Pos(file, 1, 1)
        errors.append(
            FlowError.at(
                where,
                "'queue' must name the queue in lower case letters, digits and _ (e.g. general)",
            )
        )
        return None, errors
    kwargs: dict[str, Any] = {"name": name}
    if "strategy" in data:
        try:
            kwargs["strategy"] = Strategy(data["strategy"])
        except ValueError:
            bad(
                "strategy",
                f"unknown strategy {data['strategy']!r} "
                f"(one of {', '.join(s.value for s in Strategy)})",
            )
    if "skills" in data:
        kwargs["skills"] = _skills(data["skills"], ("skills",), doc, errors, "minimum level")
    for key, optional in _NUMBERS.items():
        if key not in data:
            continue
        value = data[key]
        if value is None and optional:
            kwargs[key] = None
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            bad(
                key,
                f"{key} must be a number of {'calls' if key == 'max_length' else 'seconds'}"
                f" >= 0{' or null' if optional else ''}",
            )
        else:
            kwargs[key] = value
    for key, target in _DESTINATIONS.items():
        if key in data:
            if data[key] is not None and not isinstance(data[key], str):
                bad(key, f"{key} must be a flow id or a queue name")
            else:
                kwargs[target] = data[key]
    for key, cls in _NESTED.items():
        if key not in data:
            continue
        value = data[key]
        known = set(cls.__dataclass_fields__)
        if not isinstance(value, dict):
            bad(key, f"{key} must be a mapping of {', '.join(sorted(known))}")
            continue
        unknown = sorted(set(value) - known)
        for k in unknown:
            errors.append(
                FlowError.at(
                    doc.key_pos((key, k)),
                    f"unknown {key} setting {k!r} (known: {', '.join(sorted(known))})",
                )
            )
        if not unknown:
            try:
                kwargs[key] = cls(**value)
            except (TypeError, ValueError) as exc:
                bad(key, f"{key}: {exc}")
    extras: dict[str, Any] = {"file": file}
    for key, kind in (
        ("title", str),
        ("waiting_prompt", str),
        ("announce_agent", bool),
        ("survey", str),
    ):
        if key in data:
            if key == "survey" and data[key] is None:
                continue
            if not isinstance(data[key], kind):
                bad(key, f"{key} must be {'text' if kind is str else 'true or false'}")
            else:
                extras[key] = data[key]
    if errors:
        return None, errors
    try:
        config = QueueConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        return None, [FlowError.at(doc.value_pos(("queue",)), str(exc))]
    return QueueDefinition(config, **extras), []


def load_agents_file(path: str | Path) -> tuple[dict[str, SeatedAgent], list[FlowError]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [FlowError(str(path), 1, 1, f"cannot read the agents file: {exc}")]
    return load_agents_text(text, str(path))


def load_agents_text(text: str, file: str) -> tuple[dict[str, SeatedAgent], list[FlowError]]:
    doc = parse_document(text, file)
    if doc.errors:
        return {}, [e for e in doc.errors if "the file is empty" not in e.reason]
    data = doc.data
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("agents"), list)
        or set(data) - {"agents"}
    ):
        return {}, [
            FlowError(
                file,
                1,
                1,
                "an agents file is a mapping with one key, 'agents': "
                "a list of {id, name, skills, seat}",
            )
        ]
    agents: dict[str, SeatedAgent] = {}
    errors: list[FlowError] = []
    seats: dict[str, str] = {}
    for i, entry in enumerate(data["agents"]):
        here = ("agents", i)
        if not isinstance(entry, dict):
            errors.append(
                FlowError.at(doc.value_pos(here), "an agent is a mapping of id, name, skills, seat")
            )
            continue
        problems: list[FlowError] = []
        for key in entry:
            if key not in _AGENT_KEYS:
                problems.append(
                    FlowError.at(
                        doc.key_pos(here + (key,)),
                        f"unknown agent setting {key!r} (known: {', '.join(sorted(_AGENT_KEYS))})",
                    )
                )
        agent_id = str(entry.get("id", ""))
        if not _AGENT_ID.match(agent_id):
            problems.append(
                FlowError.at(
                    doc.value_pos(here + ("id",)),
                    'agent id (工号) must be 3 to 8 digits, e.g. "1001"',
                )
            )
        elif agent_id in agents:
            problems.append(
                FlowError.at(doc.value_pos(here + ("id",)), f"agent {agent_id} is listed twice")
            )
        name = entry.get("name", "")
        if not isinstance(name, str):
            problems.append(FlowError.at(doc.value_pos(here + ("name",)), "name must be text"))
        seat = entry.get("seat")
        if not is_seat(seat):
            problems.append(
                FlowError.at(
                    doc.value_pos(here + ("seat",)),
                    "seat must be a station line of the board (s1) or a SIP seat (sip:1001)",
                )
            )
        elif seat in seats:
            problems.append(
                FlowError.at(
                    doc.value_pos(here + ("seat",)),
                    f"seat {seat} is already taken by agent {seats[seat]}",
                )
            )
        order = entry.get("order")
        if order is not None and (isinstance(order, bool) or not isinstance(order, int)):
            problems.append(
                FlowError.at(doc.value_pos(here + ("order",)), "order must be a whole number")
            )
        skills = _skills(entry.get("skills", {}), here + ("skills",), doc, problems, "level")
        errors.extend(problems)
        if not problems:
            seats[seat] = agent_id
            agents[agent_id] = SeatedAgent(agent_id, name, skills, seat, order)
    return agents, errors


def check_references(
    definition: ContactCenterDefinition, flow_ids: Iterable[str]
) -> list[FlowError]:
    """Destinations (``on_timeout``, ``on_no_agent``, ``on_full``) must name a flow or a queue;
    ``survey`` must name a flow."""
    flow_ids = set(flow_ids)
    targets = flow_ids | set(definition.queues)
    errors: list[FlowError] = []
    for q in definition.queues.values():
        for key, attr in _DESTINATIONS.items():
            value = getattr(q.config, attr)
            if value is not None and value not in targets:
                errors.append(
                    FlowError(
                        q.file,
                        1,
                        1,
                        f"queue {q.name}: {key} {value!r} is neither a flow nor a queue",
                    )
                )
        if q.survey is not None and q.survey not in flow_ids:
            errors.append(
                FlowError(q.file, 1, 1, f"queue {q.name}: survey {q.survey!r} is not a flow")
            )
    return errors


def seats_missing(definition: ContactCenterDefinition, station_lines: Iterable[str]) -> list[str]:
    """Agents whose seat is not a station line of this board (they cannot take calls here).
    SIP seats (``sip:1001``) are never missing: they ring once their phone registers."""
    lines = set(station_lines)
    return [
        agent.id
        for agent in definition.agents.values()
        if agent.seat not in lines and not agent.seat.startswith("sip:")
    ]


def _skills(
    value: Any, path: tuple, doc: Any, errors: list[FlowError], what: str
) -> dict[str, int]:
    if not isinstance(value, dict):
        errors.append(
            FlowError.at(doc.value_pos(path), f"skills must map a skill to a {what} 1-10")
        )
        return {}
    skills: dict[str, int] = {}
    for skill, level in value.items():
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 10:
            errors.append(
                FlowError.at(
                    doc.value_pos(path + (skill,)),
                    f"skill {skill!r}: {what} must be a whole number 1-10",
                )
            )
        else:
            skills[str(skill)] = level
    return skills
