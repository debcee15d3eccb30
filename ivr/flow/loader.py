"""Load flow files: YAML with positions → structural check (JSON Schema) → :class:`Flow`.

YAML is composed into nodes (``yaml.compose``) so every key and value keeps its line and
column; syntax errors, duplicate keys and schema violations all come back as
:class:`~ivr.flow.model.FlowError` items with ``file:line:column``. Meaning (targets, prompts,
expressions, reachability) is checked afterwards by :func:`ivr.flow.validate.validate`.

YAML notes for flow authors: mapping keys are taken as written (``1:`` is the key ``"1"`` and
``on:`` is ``"on"``, not a boolean); dates stay text; ``#`` and ``*`` must be quoted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ivr.flow import model as m
from ivr.flow.model import FlowError, Pos
from ivr.flow.schema import structural_errors

FLOW_SUFFIXES = (".yaml", ".yml")
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


class _FlowYamlLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text (flows compare them as strings)."""


_FlowYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

DataPath = tuple[str | int, ...]


@dataclass
class _Document:
    """A flow file's plain data plus where each key and value is written."""

    file: str
    data: Any = None
    values: dict[DataPath, Pos] = field(default_factory=dict)
    keys: dict[DataPath, Pos] = field(default_factory=dict)
    nodes: dict[DataPath, yaml.Node] = field(default_factory=dict)
    errors: list[FlowError] = field(default_factory=list)

    def value_pos(self, path: DataPath) -> Pos:
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, Pos(self.file, 1, 1))

    def key_pos(self, path: DataPath) -> Pos:
        return self.keys.get(path) or self.value_pos(path)


def _pos(file: str, mark: yaml.Mark) -> Pos:
    return Pos(file, mark.line + 1, mark.column + 1)


def _syntax_error(file: str, exc: yaml.YAMLError) -> FlowError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if "'\\t'" in problem:
        reason = "YAML syntax error: tab character; indent with spaces, not tabs"
    else:
        reason = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    pos = _pos(file, mark) if mark else Pos(file, 1, 1)
    return FlowError.at(pos, reason)


class _Composer:
    """Turns a composed node tree into plain data, recording positions as it goes."""

    def __init__(self, doc: _Document) -> None:
        self.doc = doc
        self._constructor = yaml.SafeLoader("")
        self._active: set[int] = set()

    def convert(self, node: yaml.Node, path: DataPath) -> Any:
        self.doc.values[path] = _pos(self.doc.file, node.start_mark)
        self.doc.nodes[path] = node
        if id(node) in self._active:
            self.doc.errors.append(FlowError.at(self.doc.values[path], "recursive YAML alias"))
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
            return self._scalar(node)
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: DataPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first: dict[str, Pos] = {}
        for key_node, value_node in node.value:
            key_pos = _pos(self.doc.file, key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                self.doc.errors.append(FlowError.at(key_pos, "a mapping key must be plain text"))
                continue
            key = key_node.value
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.doc.errors.append(FlowError.at(key_pos, "merge keys ('<<') are not supported"))
                continue
            if key in first:
                self.doc.errors.append(
                    FlowError.at(
                        key_pos, f"duplicate key {key!r} (first at line {first[key].line})"
                    )
                )
                continue
            first[key] = key_pos
            self.doc.keys[path + (key,)] = key_pos
            result[key] = self.convert(value_node, path + (key,))
        return result

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag not in _SCALAR_TAGS:
            if node.tag == _TIMESTAMP:
                return node.value
            pos = _pos(self.doc.file, node.start_mark)
            self.doc.errors.append(FlowError.at(pos, f"unsupported YAML tag {node.tag!r}"))
            return None
        return self._constructor.construct_object(node)


def parse_document(text: str, file: str) -> _Document:
    """Parse YAML text into data with positions (errors in ``doc.errors``)."""
    doc = _Document(file)
    try:
        root = yaml.compose(text, Loader=_FlowYamlLoader)
    except yaml.YAMLError as exc:
        doc.errors.append(_syntax_error(file, exc))
        return doc
    if root is None:
        doc.errors.append(
            FlowError(file, 1, 1, "the file is empty; a flow needs flow, start and steps")
        )
        return doc
    doc.data = _Composer(doc).convert(root, ())
    return doc


def _source(cls: type[m.Source], doc: _Document, path: DataPath, value: Any) -> m.Source:
    """An expression/template/pattern with the position of its first character."""
    node = doc.nodes.get(path)
    pos = doc.value_pos(path)
    if not isinstance(value, str):
        text = "None" if value is None else repr(value)
        return cls(text, pos, False)
    if isinstance(node, yaml.ScalarNode) and node.start_mark.line == node.end_mark.line:
        quote = 1 if node.style in ("'", '"') else 0
        buffer = node.start_mark.buffer
        if node.style in (None, "'", '"') and buffer is not None:
            raw = buffer[node.start_mark.pointer + quote : node.end_mark.pointer - quote]
            if raw == value:
                return cls(value, pos.shifted(quote), True)
    return cls(value, pos, False)


class _Builder:
    """Builds the :class:`Flow` of a structurally valid document."""

    def __init__(self, doc: _Document) -> None:
        self.doc = doc
        self.file = doc.file

    def ref(self, path: DataPath, value: str) -> m.Ref:
        return m.Ref(value, self.doc.value_pos(path))

    def expr(self, path: DataPath, value: Any) -> m.Expr:
        return _source(m.Expr, self.doc, path, value)  # type: ignore[return-value]

    def template(self, path: DataPath, value: str) -> m.Template:
        return _source(m.Template, self.doc, path, value)  # type: ignore[return-value]

    def prompt(self, path: DataPath, value: Any) -> m.Prompt:
        if value is None:
            return ()
        if isinstance(value, str):
            return (m.PromptItem(prompt=self.ref(path, value)),)
        items = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                items.append(m.PromptItem(prompt=self.ref(path + (i,), item)))
            else:
                items.append(m.PromptItem(say=self.template(path + (i, "say"), item["say"])))
        return tuple(items)

    def named_exprs(self, path: DataPath, mapping: Mapping[str, Any] | None) -> tuple:
        return tuple(
            (name, self.expr(path + (name,), value)) for name, value in (mapping or {}).items()
        )

    def maybe_ref(self, path: DataPath, value: str | None) -> m.Ref | None:
        return None if value is None else self.ref(path, value)

    def flow(self) -> m.Flow:
        data = self.doc.data
        steps = {name: self.step(name, body) for name, body in data["steps"].items()}
        limits = data.get("limits", {})
        return m.Flow(
            id=data["flow"],
            file=self.file,
            pos=self.doc.value_pos(("flow",)),
            start=self.ref(("start",), data["start"]),
            steps=m.frozen_mapping(steps),
            prompts=m.frozen_mapping(
                {
                    pid: m.PromptText(text, self.doc.key_pos(("prompts", pid)))
                    for pid, text in data.get("prompts", {}).items()
                }
            ),
            vars=m.frozen_mapping(data.get("vars", {})),
            vars_pos=m.frozen_mapping(
                {name: self.doc.key_pos(("vars", name)) for name in data.get("vars", {})}
            ),
            limits=m.Limits(
                max_call_seconds=float(limits.get("max_call_seconds", m.DEFAULT_MAX_CALL_SECONDS)),
                max_steps=int(limits.get("max_steps", m.DEFAULT_MAX_STEPS)),
            ),
            on_failure=self.maybe_ref(("on_failure",), data.get("on_failure")),
            title=data.get("title"),
        )

    def step(self, name: str, body: Mapping[str, Any]) -> m.Step:
        path: DataPath = ("steps", name)
        kind = next(key for key in body if key in m.ACTIONS)
        apath = path + (kind,)
        value = body[kind]
        action = self.action(kind, apath, value)
        on_failure = body.get("on_failure")
        failure_path = path + ("on_failure",)
        if isinstance(value, Mapping) and "on_failure" in value:
            if on_failure is not None:
                self.doc.errors.append(
                    FlowError.at(
                        self.doc.key_pos(apath + ("on_failure",)),
                        f"step {name!r}: on_failure is given both in {kind} and on the step",
                    )
                )
            on_failure, failure_path = value["on_failure"], apath + ("on_failure",)
        barge_in = body.get("barge_in", False)
        positions = {}
        if isinstance(value, Mapping):
            positions = {key: self.doc.value_pos(apath + (key,)) for key in value}
        return m.Step(
            name=name,
            action=action,
            pos=self.doc.key_pos(path),
            action_pos=self.doc.key_pos(apath),
            next=self.maybe_ref(path + ("next",), body.get("next")),
            on_failure=self.maybe_ref(failure_path, on_failure),
            on=tuple(
                (status, self.ref(path + ("on", status), target))
                for status, target in body.get("on", {}).items()
            ),
            barge_in="any" if barge_in is True else (barge_in or ""),
            comment=body.get("comment"),
            positions=m.frozen_mapping(positions),
        )

    def action(self, kind: str, path: DataPath, value: Any) -> m.Action:
        v = value if isinstance(value, Mapping) else {}
        if kind == "play":
            return m.Play(self.prompt(path, value))
        if kind == "say":
            return m.Say(self.template(path, value))
        if kind == "menu":
            return m.Menu(
                prompt=self.prompt(path + ("prompt",), v["prompt"]),
                keys=tuple(
                    (key, self.ref(path + ("keys", key), target))
                    for key, target in v["keys"].items()
                ),
                short_prompt=self.prompt(path + ("short_prompt",), v.get("short_prompt")),
                invalid_prompt=self.prompt(path + ("invalid_prompt",), v.get("invalid_prompt")),
                timeout_prompt=self.prompt(path + ("timeout_prompt",), v.get("timeout_prompt")),
                timeout=float(v.get("timeout", 5.0)),
                max_failures=int(v.get("max_failures", 3)),
            )
        if kind == "collect":
            pattern = v.get("pattern")
            return m.Collect(
                max=int(v["max"]),
                prompt=self.prompt(path + ("prompt",), v.get("prompt")),
                min=int(v.get("min", 1)),
                terminators=v.get("terminators", "#"),
                first_timeout=float(v.get("first_timeout", 5.0)),
                inter_timeout=float(v.get("inter_timeout", 3.0)),
                pattern=_source(m.Pattern, self.doc, path + ("pattern",), pattern)  # type: ignore[arg-type]
                if pattern is not None
                else None,
                invalid_prompt=self.prompt(path + ("invalid_prompt",), v.get("invalid_prompt")),
                timeout_prompt=self.prompt(path + ("timeout_prompt",), v.get("timeout_prompt")),
                retries=int(v.get("retries", 3)),
                into=self.maybe_ref(path + ("into",), v.get("into")),
            )
        if kind == "lookup":
            return m.Lookup(
                service=self.ref(path + ("service",), v["service"]),
                args=self.named_exprs(path + ("args",), v.get("args")),
                into=self.maybe_ref(path + ("into",), v.get("into")),
            )
        if kind == "set":
            return m.Set(
                tuple(
                    (m.Ref(name, self.doc.key_pos(path + (name,))), self.expr(path + (name,), expr))
                    for name, expr in value.items()
                )
            )
        if kind == "branch":
            cases = []
            for i, case in enumerate(value):
                cpath = path + (i,)
                if "else" in case:
                    cases.append(
                        m.Case(
                            None,
                            self.ref(cpath + ("else",), case["else"]),
                            self.doc.value_pos(cpath),
                        )
                    )
                else:
                    cases.append(
                        m.Case(
                            self.expr(cpath + ("when",), case["when"]),
                            self.ref(cpath + ("goto",), case["goto"]),
                            self.doc.value_pos(cpath),
                        )
                    )
            return m.Branch(tuple(cases))
        if kind == "record":
            return m.Record(
                prompt=self.prompt(path + ("prompt",), v.get("prompt")),
                max_time=float(v.get("max_time", 60.0)),
                max_silence=float(v["max_silence"]) if "max_silence" in v else 5.0,
                terminators=v.get("terminators", "#"),
                beep=bool(v.get("beep", True)),
                purpose=v.get("purpose", "message"),
                into=self.maybe_ref(path + ("into",), v.get("into")),
            )
        if kind == "work_order":
            return m.WorkOrder(
                action=v["action"],
                type=v.get("type"),
                fields=self.named_exprs(path + ("fields",), v.get("fields")),
            )
        if kind == "transfer":
            data = v.get("data")
            return m.Transfer(
                queue=v["queue"],
                priority=int(v.get("priority", 0)),
                data=None
                if data is None
                else tuple(self.ref(path + ("data", i), name) for i, name in enumerate(data)),
            )
        if kind == "call":
            return m.CallFlow(self.ref(path, value))
        if kind == "goto":
            return m.Goto(self.ref(path, value))
        if kind == "return":
            return m.Return()
        if kind == "hangup":
            return m.Hangup(self.prompt(path + ("prompt",), v.get("prompt")))
        raise AssertionError(f"unhandled action {kind}")


def load_flow_text(text: str, file: str) -> tuple[m.Flow | None, list[FlowError]]:
    """Load one flow from YAML text; ``file`` names it in errors."""
    doc = parse_document(text, file)
    if doc.data is None and doc.errors:
        return None, sorted(doc.errors, key=FlowError.sort_key)
    for problem in structural_errors(doc.data):
        pos = doc.key_pos(problem.path) if problem.at == "key" else doc.value_pos(problem.path)
        doc.errors.append(FlowError.at(pos, problem.reason))
    if doc.errors:
        return None, sorted(set(doc.errors), key=FlowError.sort_key)
    flow = _Builder(doc).flow()
    if doc.errors:
        return None, sorted(set(doc.errors), key=FlowError.sort_key)
    return flow, []


def load_flow_file(path: str | Path) -> tuple[m.Flow | None, list[FlowError]]:
    """Load one flow file; the flow is None when the file has errors."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, [FlowError(file, 1, 1, f"the file is not UTF-8 text ({exc.reason})")]
    except OSError as exc:
        return None, [FlowError(file, 1, 1, f"cannot read the file: {exc.strerror or exc}")]
    return load_flow_text(text, file)


def flow_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The flow files named by ``paths``: files as given, directories' ``*.yaml``/``*.yml``."""
    if isinstance(paths, str | Path):
        paths = [paths]
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(
                sorted(p for p in path.iterdir() if p.suffix in FLOW_SUFFIXES and p.is_file())
            )
        else:
            files.append(path)
    return files


def load_flow_dir(paths: str | Path | Iterable[str | Path]) -> tuple[m.FlowSet, list[FlowError]]:
    """Load every flow file under ``paths`` (directories or files) into a :class:`FlowSet`.

    Files load in sorted order per directory; a flow id already loaded from an earlier file is
    an error at the later file's ``flow:`` value. Meaning is not checked here (see
    :func:`ivr.flow.validate.validate`).
    """
    flows: dict[str, m.Flow] = {}
    errors: list[FlowError] = []
    for file in flow_files(paths):
        flow, file_errors = load_flow_file(file)
        errors.extend(file_errors)
        if flow is None:
            continue
        if flow.id in flows:
            first = flows[flow.id]
            errors.append(
                FlowError.at(flow.pos, f"flow id {flow.id!r} is already defined at {first.pos}")
            )
            continue
        flows[flow.id] = flow
    return m.FlowSet(flows), sorted(errors, key=FlowError.sort_key)
