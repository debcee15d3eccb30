"""Scenario files: regression tests of flows that testers and operators write in YAML.

A scenario is one call, written the way a person would describe it::

    name: 电费查询 — 户号正确
    line: 3                      # trunk line number (or "t3")
    caller: "13912345678"
    steps:
      - expect: 欢迎致电
      - press: "1"
      - expect: 请输入
      - press: "1234567890#"
      - expect: 一百二十三元四角五分
      - hangup: loop               # loop | busy | polarity
    end:                           # optional: how the call must end
      within: 10                   # seconds after the last step

Steps: ``expect`` (text, or a mapping with ``text``/``prompt``/``timeout``), ``press``
(keys, sent as DTMF tones), ``speak`` (a WAV next to the scenario file), ``silence`` (seconds),
``wait_quiet`` (until the current prompt ends), ``hangup`` (signal) and ``expect_hangup``
(the engine must end the call, e.g. after its goodbye).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sim.caller import Caller, ExpectationFailed, LineHandle

STEP_KINDS = ("expect", "press", "speak", "silence", "wait_quiet", "hangup", "expect_hangup")


class ScenarioError(ValueError):
    """A scenario file that cannot be run (bad YAML, unknown step, bad value)."""


@dataclass(slots=True)
class Scenario:
    name: str
    path: Path
    line: str
    caller: str
    called: str
    steps: list[tuple[str, Any]]
    end_within: float | None = None


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    ok: bool
    error: str = ""
    transcript: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping with name, line, caller and steps")
    unknown = set(doc) - {"name", "line", "caller", "called", "steps", "end"}
    if unknown:
        raise ScenarioError(f"{path}: unknown keys {sorted(unknown)}")
    steps_doc = doc.get("steps")
    if not isinstance(steps_doc, list) or not steps_doc:
        raise ScenarioError(f"{path}: 'steps' must be a non-empty list")
    steps: list[tuple[str, Any]] = []
    for number, step in enumerate(steps_doc, 1):
        if isinstance(step, str) and step in ("wait_quiet", "expect_hangup", "hangup"):
            step = {step: None}
        if not isinstance(step, dict) or len(step) != 1:
            raise ScenarioError(f"{path}: step {number}: one of {', '.join(STEP_KINDS)}")
        ((kind, value),) = step.items()
        if kind not in STEP_KINDS:
            raise ScenarioError(f"{path}: step {number}: unknown step {kind!r}")
        if kind == "press":
            value = str(value)
            if not value or any(c not in "0123456789*#ABCD" for c in value):
                raise ScenarioError(f"{path}: step {number}: press {value!r}: keys are 0-9 * # A-D")
        if kind == "speak":
            value = _inside(path.parent, str(value), path, number)
        steps.append((kind, value))
    line = str(doc.get("line", 1))
    end = doc.get("end") or {}
    return Scenario(
        name=str(doc.get("name", path.stem)),
        path=path,
        line=line if line.startswith(("t", "s")) else f"t{line}",
        caller=str(doc.get("caller", "")),
        called=str(doc.get("called", "95598")),
        steps=steps,
        end_within=end.get("within") if isinstance(end, dict) else None,
    )


def _inside(base: Path, name: str, path: Path, number: int) -> Path:
    target = (base / name).resolve()
    if not target.is_relative_to(base.resolve()):
        raise ScenarioError(f"{path}: step {number}: {name!r} is outside the scenario's folder")
    return target


def find_scenarios(paths: list[str | Path]) -> list[Path]:
    found: list[Path] = []
    for p in map(Path, paths):
        found.extend(sorted(p.rglob("*.yaml")) if p.is_dir() else [p])
    return found


async def run_scenario(
    scenario: Scenario, open_line: Callable[[str], Awaitable[LineHandle]]
) -> ScenarioResult:
    """Play one scenario on a line; never raises for a failed expectation."""
    started = time.perf_counter()
    line = await open_line(scenario.line)
    caller = Caller(line)
    try:
        await caller.dial(scenario.caller, scenario.called)
        for kind, value in scenario.steps:
            await _step(caller, kind, value)
        if scenario.end_within is not None:
            await caller.expect_hangup(float(scenario.end_within))
        return ScenarioResult(
            scenario, True, transcript=caller.transcript, seconds=time.perf_counter() - started
        )
    except ExpectationFailed as exc:
        if line.status().get("state") not in ("ended", "idle"):
            await caller.hang_up()
        return ScenarioResult(
            scenario, False, str(exc), caller.transcript, time.perf_counter() - started
        )


async def _step(caller: Caller, kind: str, value: Any) -> None:
    if kind == "expect":
        if isinstance(value, dict):
            await caller.expect(
                str(value.get("text", "")),
                prompt_id=value.get("prompt"),
                timeout=float(value.get("timeout", 30)),
            )
        else:
            await caller.expect(str(value))
    elif kind == "press":
        await caller.press(value)
    elif kind == "speak":
        await caller.speak(value)
    elif kind == "silence":
        await caller.silence(float(value))
    elif kind == "wait_quiet":
        await caller.wait_quiet()
    elif kind == "hangup":
        await caller.hang_up(value)
    elif kind == "expect_hangup":
        await caller.expect_hangup(float(value or 30))
