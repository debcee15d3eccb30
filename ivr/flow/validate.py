"""Semantic checks of loaded flows, beyond what the JSON Schema can say.

:func:`validate` reports, each at ``file:line:column``: unknown step targets, a missing start
step, unreachable steps, loops that can never reach an exit, prompts used but not defined
(and, as warnings, defined but unused), unknown services and sub-flows, recursive sub-flow
calls, template errors and unknown slot kinds, invalid expressions and unknown variables,
invalid regular expressions, ``min`` > ``max``, misplaced ``else`` cases, ``on:`` branches
with nowhere to send other statuses, and assignments to read-only variables.

An *exit* is a hangup, return or transfer step, a step with no successor (the flow ends
there), or an input step (menu, collect, record) whose failure ends the call — the caller
can always get out of those.
"""

from __future__ import annotations

import difflib
import keyword
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ivr.flow import model as m
from ivr.flow.expr import ExprError, compile_expression, parse_template
from ivr.flow.model import FlowError

# Numbers in spoken text must be written in Chinese: TTS reads "1234" as a quantity.
_ARABIC_NUMERAL = re.compile(r"[0-9０-９]+")


def default_slot_kinds() -> frozenset[str]:
    """The read-out kinds templates may use."""
    from ivr.speech.readout import SLOT_KINDS

    return frozenset(SLOT_KINDS)


def _hint(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True, slots=True)
class Edge:
    """Where a step can go: ``target`` None means the flow or the call ends there."""

    label: str
    target: m.Ref | None


def edges(flow: m.Flow, step: m.Step) -> list[Edge]:
    """Every way control can leave ``step`` (used for targets, reachability and loops)."""
    action = step.action
    out: list[Edge] = []
    if isinstance(action, m.Menu):
        out += [Edge(f"key {key!r}", ref) for key, ref in action.keys]
    elif isinstance(action, m.Branch):
        for i, case in enumerate(action.cases, 1):
            out.append(Edge("else" if case.when is None else f"branch case {i}", case.goto))
    elif isinstance(action, m.Goto):
        out.append(Edge("goto", action.target))
    elif isinstance(action, m.Return | m.Hangup):
        out.append(Edge(step.kind, None))
    out += [Edge(f"on {status!r}", ref) for status, ref in step.on]
    if step.next is not None:
        out.append(Edge("next", step.next))
    elif not isinstance(action, m.Menu | m.Branch | m.Goto | m.Return | m.Hangup) and (
        "default" not in dict(step.on)
    ):
        out.append(Edge("end of flow", None))
    if isinstance(action, m.Menu | m.Collect | m.Record):
        failure = step.on_failure or flow.on_failure
        out.append(Edge("on_failure", failure))
    return out


class _Checker:
    def __init__(
        self, flowset: m.FlowSet, services: frozenset[str] | None, slot_kinds: frozenset[str]
    ) -> None:
        self.flowset = flowset
        self.services = services
        self.slot_kinds = slot_kinds
        self.errors: list[FlowError] = []
        self.variables = self._defined_variables()

    def error(self, pos: m.Pos, reason: str) -> None:
        self.errors.append(FlowError.at(pos, reason))

    def warn(self, pos: m.Pos, reason: str) -> None:
        self.errors.append(FlowError.at(pos, reason, warning=True))

    # ------------------------------------------------------------------ variables

    def _assigned(self, flow: m.Flow) -> Iterator[m.Ref]:
        for name, pos in flow.vars_pos.items():
            yield m.Ref(name, pos)
        for step in flow.steps.values():
            action = step.action
            if isinstance(action, m.Set):
                yield from (ref for ref, _ in action.assignments)
            elif isinstance(action, m.Collect | m.Lookup | m.Record) and action.into:
                yield action.into

    def _defined_variables(self) -> frozenset[str]:
        names = set(m.BUILTIN_VARIABLES)
        for flow in self.flowset.values():
            names.update(ref.name for ref in self._assigned(flow))
        return frozenset(names)

    def check_assignments(self, flow: m.Flow) -> None:
        for ref in self._assigned(flow):
            if ref.name in m.READONLY_VARIABLES:
                self.error(ref.pos, f"{ref.name!r} is a built-in variable and cannot be assigned")
            elif keyword.iskeyword(ref.name) or keyword.issoftkeyword(ref.name):
                self.error(ref.pos, f"{ref.name!r} is a reserved word and cannot be a variable")

    # ------------------------------------------------------------------ expressions

    def check_expr(self, source: m.Source, where: str) -> None:
        try:
            compiled = compile_expression(source.text)
        except ExprError as exc:
            self.error(source.pos_at(exc.offset), f"{where}: {exc.message}")
            return
        self._check_names(compiled.names, source, 0, where)

    def _check_names(
        self, names: Iterable[tuple[str, int]], source: m.Source, base: int, where: str
    ) -> None:
        for name, offset in names:
            if name not in self.variables and name not in ("True", "False", "None"):
                hint = _hint(name, self.variables)
                self.error(
                    source.pos_at(base + offset),
                    f"{where}: unknown variable {name!r} (not built in, not in vars, never set"
                    f" by a step){hint}",
                )

    def check_template(self, template: m.Template, where: str) -> None:
        try:
            segments = parse_template(template.text)
        except ExprError as exc:
            self.error(template.pos_at(exc.offset), f"{where}: template error: {exc.message}")
            return
        for slot in segments:
            if isinstance(slot, str):
                numeral = _ARABIC_NUMERAL.search(slot)
                if numeral:
                    self.error(
                        template.pos_at(template.text.find(numeral[0])),
                        f"{where}: Arabic numeral {numeral[0]!r} in spoken text; write it in "
                        "Chinese (一, 二…) or read a value through a slot such as {x:digits}",
                    )
                continue
            if slot.kind not in self.slot_kinds:
                self.error(
                    template.pos_at(slot.kind_offset),
                    f"{where}: unknown slot kind {slot.kind!r} in {{{slot.expression}:{slot.kind}}}"
                    f" (kinds: {', '.join(sorted(self.slot_kinds))})",
                )
            try:
                compiled = compile_expression(slot.expression)
            except ExprError as exc:
                self.error(template.pos_at(slot.offset + exc.offset), f"{where}: {exc.message}")
                continue
            self._check_names(compiled.names, template, slot.offset, where)

    # ------------------------------------------------------------------ prompts

    def prompts_of(self, step: m.Step) -> Iterator[m.Prompt]:
        action = step.action
        if isinstance(action, m.Play | m.Record | m.Hangup):
            yield action.prompt
        elif isinstance(action, m.Menu):
            yield from (action.prompt, action.short_prompt, action.invalid_prompt)
            yield action.timeout_prompt
        elif isinstance(action, m.Collect):
            yield from (action.prompt, action.invalid_prompt, action.timeout_prompt)

    def check_prompts(self, flow: m.Flow) -> None:
        used: set[str] = set()
        for step in flow.steps.values():
            for prompt in self.prompts_of(step):
                for item in prompt:
                    if item.say is not None:
                        self.check_template(item.say, f"step {step.name!r}")
                        continue
                    assert item.prompt is not None
                    used.add(item.prompt.name)
                    if item.prompt.name not in flow.prompts:
                        self.error(
                            item.prompt.pos,
                            f"step {step.name!r}: prompt {item.prompt.name!r} is not defined in"
                            f" the prompts of flow {flow.id!r}"
                            f"{_hint(item.prompt.name, flow.prompts)}",
                        )
        for prompt_id, prompt in flow.prompts.items():
            numeral = _ARABIC_NUMERAL.search(prompt.text)
            if numeral:
                self.error(
                    prompt.pos,
                    f"prompt {prompt_id!r}: Arabic numeral {numeral[0]!r} in spoken text; write"
                    " numbers in Chinese (一, 二…): text-to-speech reads numerals as quantities",
                )
            if prompt_id not in used:
                self.warn(prompt.pos, f"prompt {prompt_id!r} is defined but never used")

    def check_shared_prompt_texts(self) -> None:
        seen: dict[str, tuple[m.Flow, m.PromptText]] = {}
        for flow in self.flowset.values():
            for prompt_id, prompt in flow.prompts.items():
                if prompt_id in seen and seen[prompt_id][1].text != prompt.text:
                    other = seen[prompt_id][0]
                    self.warn(
                        prompt.pos,
                        f"prompt {prompt_id!r} has a different text in flow {other.id!r}"
                        f" ({seen[prompt_id][1].pos}); prompts are cached and recorded by id",
                    )
                seen.setdefault(prompt_id, (flow, prompt))

    # ------------------------------------------------------------------ steps

    def check_steps(self, flow: m.Flow) -> None:
        for step in flow.steps.values():
            self.check_targets(flow, step)
            self.check_action(flow, step)

    def check_targets(self, flow: m.Flow, step: m.Step) -> None:
        for edge in edges(flow, step):
            if edge.target is flow.on_failure and step.on_failure is None:
                continue  # the flow's own on_failure is checked once, where it is written
            if edge.target is not None and edge.target.name not in flow.steps:
                self.error(
                    edge.target.pos,
                    f"step {step.name!r}: {edge.label} goes to unknown step"
                    f" {edge.target.name!r}{_hint(edge.target.name, flow.steps)}",
                )
        if step.on and "default" not in dict(step.on) and step.next is None:
            statuses = ", ".join(status for status, _ in step.on)
            self.error(
                step.action_pos,
                f"step {step.name!r}: 'on' has no 'default' and the step has no 'next', so"
                f" statuses other than {statuses} have nowhere to go",
            )
        if "default" in dict(step.on) and step.next is not None:
            self.warn(
                step.next.pos,
                f"step {step.name!r}: 'next' is never used because 'on' has a 'default'",
            )

    def check_action(self, flow: m.Flow, step: m.Step) -> None:
        action = step.action
        where = f"step {step.name!r}"
        if isinstance(action, m.Say):
            self.check_template(action.template, where)
        elif isinstance(action, m.Collect):
            if action.min > action.max:
                self.error(
                    step.pos_of("min"),
                    f"{where}: collect min ({action.min}) is greater than max ({action.max})",
                )
            if action.pattern is not None:
                try:
                    re.compile(action.pattern.text)
                except re.error as exc:
                    self.error(
                        action.pattern.pos_at(exc.pos or 0),
                        f"{where}: invalid pattern {action.pattern.text!r}: {exc.msg}",
                    )
        elif isinstance(action, m.Lookup):
            self.check_service(action.service.name, action.service.pos, where)
            for name, expr in action.args:
                self.check_expr(expr, f"{where}: args.{name}")
        elif isinstance(action, m.WorkOrder):
            self.check_service(action.service, step.pos_of("action"), where)
            for name, expr in action.fields:
                self.check_expr(expr, f"{where}: fields.{name}")
        elif isinstance(action, m.Set):
            for ref, expr in action.assignments:
                self.check_expr(expr, f"{where}: set {ref.name}")
        elif isinstance(action, m.Branch):
            self.check_branch(step, action)
        elif isinstance(action, m.Transfer) and action.data:
            for ref in action.data:
                if ref.name not in self.variables:
                    self.error(ref.pos, f"{where}: unknown variable {ref.name!r} in transfer data")
        elif isinstance(action, m.CallFlow) and action.flow.name not in self.flowset:
            self.error(
                action.flow.pos,
                f"{where}: calls unknown flow {action.flow.name!r}"
                f"{_hint(action.flow.name, self.flowset)}",
            )

    def check_branch(self, step: m.Step, action: m.Branch) -> None:
        where = f"step {step.name!r}"
        for i, case in enumerate(action.cases):
            if case.when is not None:
                self.check_expr(case.when, f"{where}: branch case {i + 1}")
            if i and action.cases[i - 1].when is None:
                self.error(
                    case.pos, f"{where}: branch case {i + 1} follows 'else' and can never be used"
                )
        if all(case.when is not None for case in action.cases) and step.next is None:
            self.error(
                step.action_pos,
                f"{where}: branch has no 'else' case and no 'next', so when no case matches"
                " the flow has nowhere to go",
            )

    def check_service(self, name: str, pos: m.Pos, where: str) -> None:
        if self.services is not None and name not in self.services:
            self.error(pos, f"{where}: unknown service {name!r}{_hint(name, self.services)}")

    # ------------------------------------------------------------------ graph

    def check_graph(self, flow: m.Flow) -> None:
        if flow.start.name not in flow.steps:
            self.error(
                flow.start.pos,
                f"start step {flow.start.name!r} does not exist in flow {flow.id!r}"
                f"{_hint(flow.start.name, flow.steps)}",
            )
            return
        if flow.on_failure is not None and flow.on_failure.name not in flow.steps:
            self.error(
                flow.on_failure.pos,
                f"on_failure goes to unknown step {flow.on_failure.name!r}"
                f"{_hint(flow.on_failure.name, flow.steps)}",
            )
        graph = {
            name: [e.target.name if e.target else None for e in edges(flow, step)]
            for name, step in flow.steps.items()
        }
        graph = {
            name: [t for t in targets if t is None or t in flow.steps]
            for name, targets in graph.items()
        }
        reachable = _reach(flow.start.name, graph)
        for name, step in flow.steps.items():
            if name not in reachable:
                self.error(
                    step.pos, f"step {name!r} is unreachable from start step {flow.start.name!r}"
                )
        exits = {
            name
            for name, step in flow.steps.items()
            if step.kind in m.TERMINAL_KINDS or None in graph[name]
        }
        can_exit = _reverse_reach(exits, graph)
        stuck = [name for name in flow.steps if name in reachable and name not in can_exit]
        for loop in _cycles(stuck, graph):
            first = min(loop, key=lambda n: (flow.steps[n].pos.line, flow.steps[n].pos.column))
            names = ", ".join(sorted(loop, key=lambda n: flow.steps[n].pos.line))
            self.error(
                flow.steps[first].pos,
                f"loop with no exit: steps {names} can never reach a hangup, return, transfer"
                " or an input step whose failure ends the call",
            )

    def check_call_recursion(self) -> None:
        calls: dict[str, list[tuple[str, m.Ref]]] = {}
        for flow in self.flowset.values():
            calls[flow.id] = [
                (step.name, step.action.flow)
                for step in flow.steps.values()
                if isinstance(step.action, m.CallFlow) and step.action.flow.name in self.flowset
            ]
        for flow_id, flow_calls in calls.items():
            for _step, ref in flow_calls:
                chain = _call_path(ref.name, flow_id, calls)
                if chain is not None:
                    route = " → ".join([flow_id, *chain])
                    self.error(
                        ref.pos,
                        f"flow {flow_id!r} calls itself through {route}; sub-flows cannot recurse",
                    )

    def run(self) -> list[FlowError]:
        self.check_shared_prompt_texts()
        for flow in self.flowset.values():
            self.check_assignments(flow)
            self.check_graph(flow)
            self.check_steps(flow)
            self.check_prompts(flow)
        self.check_call_recursion()
        return sorted(set(self.errors), key=FlowError.sort_key)


def _reach(start: str, graph: dict[str, list[str | None]]) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for target in graph[todo.pop()]:
            if target is not None and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _reverse_reach(targets: set[str], graph: dict[str, list[str | None]]) -> set[str]:
    parents: dict[str, set[str]] = {name: set() for name in graph}
    for name, outs in graph.items():
        for target in outs:
            if target is not None:
                parents[target].add(name)
    seen = set(targets)
    todo = list(targets)
    while todo:
        for parent in parents[todo.pop()]:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def _cycles(names: list[str], graph: dict[str, list[str | None]]) -> list[frozenset[str]]:
    """The cyclic strongly connected groups among ``names`` (edges kept inside ``names``)."""
    inside = set(names)
    sub = {n: [t for t in graph[n] if t in inside] for n in names}
    after = {n: _successors(n, sub) for n in names}
    groups: list[frozenset[str]] = []
    done: set[str] = set()
    for n in names:
        if n in done or n not in after[n]:
            continue
        group = frozenset(x for x in after[n] if n in after[x])
        done |= group
        groups.append(group)
    return groups


def _successors(start: str, graph: dict[str, list[str]]) -> set[str]:
    """Nodes reachable from ``start`` in one or more moves."""
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def _call_path(
    current: str, target: str, calls: dict[str, list[tuple[str, m.Ref]]]
) -> list[str] | None:
    """Flows from ``current`` back to ``target`` through call steps, or None."""
    todo: list[tuple[str, list[str]]] = [(current, [current])]
    seen: set[str] = set()
    while todo:
        flow_id, route = todo.pop()
        if flow_id == target:
            return route
        if flow_id in seen:
            continue
        seen.add(flow_id)
        todo.extend((ref.name, [*route, ref.name]) for _, ref in calls.get(flow_id, ()))
    return None


def validate(
    flowset: m.FlowSet,
    services: frozenset[str] | None = None,
    *,
    slot_kinds: frozenset[str] | None = None,
) -> list[FlowError]:
    """Check the meaning of every flow; errors and warnings sorted by file, line, column.

    ``services`` is the set of service names the engine offers (None: not checked);
    ``slot_kinds`` defaults to the read-out kinds of :mod:`ivr.speech.readout`.
    """
    kinds = slot_kinds if slot_kinds is not None else default_slot_kinds()
    return _Checker(flowset, services, kinds).run()
