"""The JSON Schema (draft 2020-12) of a flow file, and readable reasons for its violations.

:data:`FLOW_SCHEMA` checks a flow file's structure (keys, types, ranges, name patterns, exactly
one action per step). It is published as ``ivr/flow/flow.schema.json`` for editors; regenerate
that file with ``python -m ivr.flow.schema --write`` after changing this module (a test fails
when it is stale). :func:`structural_errors` turns jsonschema's errors into
:class:`StructuralError` items (a data path and a precise reason) that the loader maps back to
``file:line:column``. Meaning beyond structure (targets, reachability, prompts, expressions)
is checked by :mod:`ivr.flow.validate`.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from ivr.flow.model import ACTIONS, COMMON_KEYS, WORK_ORDER_ACTIONS

SCHEMA_FILE = Path(__file__).with_name("flow.schema.json")
SCHEMA_ID = "https://hotline95598.invalid/schemas/flow.schema.json"

FLOW_ID = r"^[a-z][a-z0-9_]*$"
STEP_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
PROMPT_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
VARIABLE = r"^[A-Za-z][A-Za-z0-9_]*$"
SERVICE = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
STATUS = r"^[a-z][a-z0-9_]*$"
QUEUE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
PHONE_KEY = r"^[0-9*#A-D]$"
PHONE_KEYS = r"^[0-9*#A-D]*$"

#: Which common keys each action takes (``comment`` goes anywhere).
STEP_KEYS: dict[str, frozenset[str]] = {
    "play": frozenset({"next", "barge_in"}),
    "say": frozenset({"next", "barge_in"}),
    "menu": frozenset({"on_failure"}),
    "collect": frozenset({"next", "on_failure"}),
    "lookup": frozenset({"next", "on"}),
    "set": frozenset({"next"}),
    "branch": frozenset({"next"}),
    "record": frozenset({"next", "on_failure"}),
    "work_order": frozenset({"next", "on"}),
    "transfer": frozenset({"next", "on"}),
    "call": frozenset({"next"}),
    "goto": frozenset(),
    "return": frozenset(),
    "hangup": frozenset(),
}


def _named(pattern: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern, "patternErrorMessage": message, **extra}


def _seconds(maximum: float, description: str) -> dict[str, Any]:
    return {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": maximum,
        "description": description,
    }


def _body(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    schema.update(extra)
    return schema


_REF = {name: {"$ref": f"#/$defs/{name}"} for name in (
    "step_name", "prompt", "prompt_id", "template", "expression", "variable", "phone_keys",
    "arguments",
)}  # fmt: skip


def build_schema() -> dict[str, Any]:
    """The flow file schema as a plain dict (what ``flow.schema.json`` holds)."""
    step_name, prompt, template = _REF["step_name"], _REF["prompt"], _REF["template"]
    variable, phone_keys = _REF["variable"], _REF["phone_keys"]
    on_failure = {**step_name, "description": "step to go to when the caller fails"}
    actions: dict[str, Any] = {
        "play": {**prompt, "description": "play prompts (ids or {say: template} items)"},
        "say": {**template, "description": "read a template out: text with {expr:kind} slots"},
        "menu": _body(
            {
                "prompt": prompt,
                "short_prompt": prompt,
                "invalid_prompt": prompt,
                "timeout_prompt": prompt,
                "timeout": _seconds(60, "seconds to wait for a key (default 5)"),
                "max_failures": {"type": "integer", "minimum": 1, "maximum": 10},
                "keys": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {
                        "pattern": PHONE_KEY,
                        "patternErrorMessage": "must be one phone key: 0-9, *, # or A-D",
                    },
                    "additionalProperties": step_name,
                    "description": "phone key -> step",
                },
                "on_failure": on_failure,
            },
            ["prompt", "keys"],
        ),
        "collect": _body(
            {
                "prompt": prompt,
                "min": {"type": "integer", "minimum": 1, "maximum": 64},
                "max": {"type": "integer", "minimum": 1, "maximum": 64},
                "terminators": phone_keys,
                "first_timeout": _seconds(120, "seconds to wait for the first key (default 5)"),
                "inter_timeout": _seconds(60, "seconds allowed between keys (default 3)"),
                "pattern": {"type": "string", "minLength": 1},
                "invalid_prompt": prompt,
                "timeout_prompt": prompt,
                "retries": {"type": "integer", "minimum": 1, "maximum": 10},
                "into": variable,
                "on_failure": on_failure,
            },
            ["max"],
        ),
        "lookup": _body(
            {
                "service": _named(SERVICE, "must be a service name such as billing.current_bill"),
                "args": _REF["arguments"],
                "into": variable,
            },
            ["service"],
        ),
        "set": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {
                "pattern": VARIABLE,
                "patternErrorMessage": "must be a variable name (letters, digits, _)",
            },
            "additionalProperties": _REF["expression"],
            "description": "variable -> expression",
        },
        "branch": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "when": _REF["expression"],
                    "goto": step_name,
                    "else": step_name,
                    "comment": {"type": "string"},
                },
                "additionalProperties": False,
                "dependentRequired": {"when": ["goto"], "goto": ["when"]},
                "anyOf": [{"required": ["when"]}, {"required": ["else"]}],
                "if": {"required": ["else"]},
                "then": {"properties": {"when": False, "goto": False}},
            },
        },
        "record": _body(
            {
                "prompt": prompt,
                "max_time": _seconds(600, "longest recording in seconds (default 60)"),
                "max_silence": _seconds(60, "seconds of silence that end it (default 5)"),
                "terminators": phone_keys,
                "beep": {"type": "boolean"},
                "purpose": _named(VARIABLE, "must be a word such as message"),
                "into": variable,
                "on_failure": on_failure,
            }
        ),
        "work_order": _body(
            {
                "action": {"enum": list(WORK_ORDER_ACTIONS)},
                "type": _named(VARIABLE, "must be a work order type such as fault_repair"),
                "fields": _REF["arguments"],
            },
            ["action"],
            allOf=[
                {
                    "if": {"properties": {"action": {"const": "open"}}},
                    "then": {"required": ["type"]},
                    "else": {"properties": {"type": False}},
                },
                {
                    "if": {"properties": {"action": {"const": "submit"}}},
                    "then": {"properties": {"fields": False}},
                },
            ],
        ),
        "transfer": _body(
            {
                "queue": _named(QUEUE, "must be a queue name (letters, digits, _ . -)"),
                "priority": {"type": "integer", "minimum": 0, "maximum": 100},
                "data": {"type": "array", "items": variable, "uniqueItems": True},
            },
            ["queue"],
        ),
        "call": _named(FLOW_ID, "must be a flow id", description="run another flow"),
        "goto": step_name,
        "return": {"const": True},
        "hangup": {
            "type": ["boolean", "object"],
            "if": {"type": "boolean"},
            "then": {"const": True},
            "else": _body({"prompt": prompt}),
        },
    }
    common: dict[str, Any] = {
        "next": step_name,
        "on_failure": on_failure,
        "on": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {
                "pattern": STATUS,
                "patternErrorMessage": "must be a status such as found, or default",
            },
            "additionalProperties": step_name,
            "description": "status -> step; default catches the rest",
        },
        "barge_in": {
            "type": ["boolean", "string"],
            "pattern": PHONE_KEYS,
            "patternErrorMessage": "must be true, false or the keys that interrupt",
        },
        "comment": {"type": "string"},
    }
    step = {
        "type": "object",
        "properties": {**actions, **common},
        "additionalProperties": False,
        "oneOf": [{"required": [action]} for action in ACTIONS],
        "allOf": [
            {
                "if": {"required": [action]},
                "then": {
                    "properties": {
                        key: False
                        for key in COMMON_KEYS
                        if key != "comment" and key not in STEP_KEYS[action]
                    }
                },
            }
            for action in ACTIONS
        ],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "95598 IVR flow",
        "description": "One flow of the hotline IVR. See docs/flows.md.",
        "type": "object",
        "required": ["flow", "start", "steps"],
        "additionalProperties": False,
        "properties": {
            "flow": _named(
                FLOW_ID, "must be lowercase letters, digits and _, starting with a letter"
            ),
            "title": {"type": "string"},
            "comment": {"type": "string"},
            "start": step_name,
            "on_failure": {**step_name, "description": "default on_failure of input steps"},
            "limits": _body(
                {
                    "max_call_seconds": _seconds(86400, "longest time in the IVR"),
                    "max_steps": {"type": "integer", "minimum": 1, "maximum": 100000},
                }
            ),
            "prompts": {
                "type": "object",
                "propertyNames": {
                    "pattern": PROMPT_ID,
                    "patternErrorMessage": "must be a prompt id (letters, digits, _ -)",
                },
                "additionalProperties": {"type": "string", "minLength": 1},
            },
            "vars": {
                "type": "object",
                "propertyNames": {
                    "pattern": VARIABLE,
                    "patternErrorMessage": "must be a variable name (letters, digits, _)",
                },
            },
            "steps": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": {
                    "pattern": STEP_NAME,
                    "patternErrorMessage": "must be a step name (letters, digits, _)",
                },
                "additionalProperties": {"$ref": "#/$defs/step"},
            },
        },
        "$defs": {
            "step": step,
            "step_name": _named(STEP_NAME, "must be a step name (letters, digits, _)"),
            "prompt_id": _named(PROMPT_ID, "must be a prompt id (letters, digits, _ -)"),
            "prompt": {
                "type": ["string", "array"],
                "pattern": PROMPT_ID,
                "patternErrorMessage": "must be a prompt id (letters, digits, _ -)",
                "minItems": 1,
                "items": {
                    "type": ["string", "object"],
                    "pattern": PROMPT_ID,
                    "patternErrorMessage": "must be a prompt id (letters, digits, _ -)",
                    "properties": {"say": _REF["template"]},
                    "required": ["say"],
                    "additionalProperties": False,
                },
                "description": "a prompt id, or a list of prompt ids and {say: template} items",
            },
            "template": {"type": "string", "minLength": 1},
            "expression": {
                "type": ["string", "number", "boolean", "null"],
                "description": "an expression (text) or a literal number/boolean/null",
            },
            "arguments": {
                "type": "object",
                "propertyNames": {
                    "pattern": VARIABLE,
                    "patternErrorMessage": "must be a name (letters, digits, _)",
                },
                "additionalProperties": _REF["expression"],
            },
            "variable": _named(VARIABLE, "must be a variable name (letters, digits, _)"),
            "phone_keys": _named(PHONE_KEYS, "must be phone keys: 0-9, *, # or A-D"),
        },
    }


FLOW_SCHEMA: dict[str, Any] = build_schema()
_VALIDATOR = Draft202012Validator(FLOW_SCHEMA)

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class StructuralError:
    """A schema violation: where (a data path, at the key or at the value) and why."""

    path: Path_
    reason: str
    at: Literal["key", "value"] = "value"


_TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "object": "a mapping",
    "array": "a list",
    "boolean": "true or false",
    "null": "empty",
}


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "empty" if value is None else type(value).__name__


def _label(path: Path_) -> str:
    """How a reason names the place: ``step 'ask': collect.max`` or ``limits.max_steps``."""
    if not path:
        return "the flow file"
    if path[0] == "steps" and len(path) >= 2:
        rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[2:])[1:]
        return f"step {path[1]!r}" + (f": {rest}" if rest else "")
    return ".".join(str(p) for p in path)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _step_action(data: Any, path: Path_) -> str | None:
    """The action of the step at ``path`` (``("steps", name, ...)``), if it has exactly one."""
    if len(path) < 2 or path[0] != "steps" or not isinstance(data, Mapping):
        return None
    step = data.get("steps", {}).get(path[1]) if isinstance(data.get("steps"), Mapping) else None
    if not isinstance(step, Mapping):
        return None
    present = [key for key in step if key in ACTIONS]
    return present[0] if len(present) == 1 else None


def instance_at(data: Any, path: Path_) -> Any:
    """The value at a data path (None when it is not there)."""
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _schema_at(schema_path: Any) -> Any:
    """Follow an error's absolute schema path through FLOW_SCHEMA (and its $refs)."""
    node: Any = FLOW_SCHEMA
    for part in schema_path:
        while isinstance(node, Mapping) and part not in node and "$ref" in node:
            target: Any = FLOW_SCHEMA
            for name in node["$ref"].removeprefix("#/").split("/"):
                target = target[name]
            node = target
        node = node[part]
    return node


def _forbidden_keys(error: ValidationError, instance: Any) -> list[str]:
    """Keys of ``instance`` whose schema is ``false`` where the error was raised."""
    properties = _schema_at(list(error.absolute_schema_path))
    if not isinstance(properties, Mapping) or not isinstance(instance, Mapping):
        return []
    return [key for key, sub in properties.items() if sub is False and key in instance]


def _reasons(error: ValidationError, data: Any) -> Iterator[StructuralError]:
    path: Path_ = tuple(error.absolute_path)
    label = _label(path)
    kind = error.validator
    value = error.validator_value
    instance = error.instance
    schema: Any = error.schema
    is_step = len(path) == 2 and path[0] == "steps"
    if kind == "required":
        for key in value:
            if isinstance(instance, Mapping) and key not in instance:
                yield StructuralError(path, f"{label} is missing {key!r}", "key")
    elif kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        for key in instance:
            if key in allowed:
                continue
            if is_step:
                hint = _suggest(key, allowed) or (
                    f" (actions: {', '.join(ACTIONS)}; other keys: {', '.join(COMMON_KEYS)})"
                )
                yield StructuralError(
                    path + (key,), f"step {path[1]!r}: unknown action or key {key!r}{hint}", "key"
                )
            else:
                hint = _suggest(key, allowed) or f" (expected: {', '.join(allowed)})"
                yield StructuralError(path + (key,), f"{label}: unknown key {key!r}{hint}", "key")
    elif kind == "oneOf" and is_step:
        present = [key for key in instance if key in ACTIONS]
        if not present and any(key not in schema["properties"] for key in instance):
            pass  # the unknown key (a misspelt action) is reported instead
        elif not present:
            yield StructuralError(
                path, f"step {path[1]!r} has no action (one of: {', '.join(ACTIONS)})", "key"
            )
        else:
            yield StructuralError(
                path + (present[1],),
                f"step {path[1]!r} has {len(present)} actions ({', '.join(present)});"
                " a step has exactly one",
                "key",
            )
    elif kind == "type":
        expected = value if isinstance(value, list) else [value]
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in expected)
        yield StructuralError(path, f"{label} must be {words}, not {_type_of(instance)}")
    elif kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        bound = {
            "minimum": "at least",
            "exclusiveMinimum": "greater than",
            "maximum": "at most",
            "exclusiveMaximum": "less than",
        }[kind]
        yield StructuralError(path, f"{label} must be {bound} {value} (got {_show(instance)})")
    elif kind == "pattern" and "propertyNames" in error.absolute_schema_path:
        message = schema.get("patternErrorMessage", f"must match {value}")
        yield StructuralError(path + (instance,), f"{label}: key {instance!r} {message}", "key")
    elif kind == "pattern":
        message = schema.get("patternErrorMessage", f"must match {value}")
        yield StructuralError(path, f"{label}: {_show(instance)} {message}")
    elif kind == "enum":
        choices = ", ".join(str(c) for c in value)
        yield StructuralError(path, f"{label} must be one of {choices} (got {_show(instance)})")
    elif kind == "const":
        yield StructuralError(path, f"{label} must be {_show(value)} (got {_show(instance)})")
    elif kind in ("minProperties", "minItems", "minLength"):
        yield StructuralError(path, f"{label} must not be empty")
    elif kind == "uniqueItems":
        yield StructuralError(path, f"{label} lists a name twice")
    elif kind == "dependentRequired" and "else" not in instance:
        for key, needed in value.items():
            if key in instance:
                for other in needed:
                    if other not in instance:
                        yield StructuralError(path, f"{label}: {key!r} needs {other!r}", "key")
    elif kind == "dependentRequired":
        pass  # a case with 'else' and 'when'/'goto' is reported as a forbidden key
    elif kind == "anyOf" and "branch" in path:
        yield StructuralError(path, f"{label}: a case needs 'when' and 'goto', or 'else'", "key")
    elif schema is False:  # keys the schema forbids here
        action = _step_action(data, path)
        container = instance_at(data, path)
        for key in _forbidden_keys(error, container):
            if is_step and action:
                reason = f"step {path[1]!r}: {key!r} does not apply to a {action} step"
            elif path[-1:] == ("work_order",):
                reason = f"{label}: {key!r} does not apply to action {container.get('action')!r}"
            elif "branch" in path:
                reason = f"{label}: {key!r} cannot be combined with 'else'"
            else:
                reason = f"{label}: {key!r} is not allowed here"
            yield StructuralError(path + (key,), reason, "key")
    else:
        yield StructuralError(path, f"{label}: {error.message}")


def structural_errors(data: Any) -> list[StructuralError]:
    """Every schema violation of a flow file's data, as readable reasons."""
    found: list[StructuralError] = []
    for error in _VALIDATOR.iter_errors(data):
        found.extend(_reasons(error, data))
    unique = dict.fromkeys(found)
    return list(unique)


def main(argv: list[str] | None = None) -> int:
    """``python -m ivr.flow.schema [--write]``: print (or write) ``flow.schema.json``."""
    text = schema_json()
    if "--write" in (argv if argv is not None else sys.argv[1:]):
        SCHEMA_FILE.write_text(text, encoding="utf-8")
        print(f"wrote {SCHEMA_FILE}")
    else:
        sys.stdout.write(text)
    return 0


def schema_json() -> str:
    """The published schema file's exact text."""
    return json.dumps(FLOW_SCHEMA, ensure_ascii=False, indent=2) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
