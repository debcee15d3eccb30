"""Expressions and say templates: checked when a flow loads, evaluated safely during a call.

Expressions are Python-like (``tries + 1``, ``bill.arrears > 0``, ``len(account) == 10``) and
are evaluated by simpleeval: no imports, no private attributes, no method calls, and only the
functions in :data:`FUNCTIONS`. Dict values (service data, records) are wrapped in
:class:`DataView` so ``bill.charge`` and ``bill["charge"]`` both work.

Templates are text with slots ``{expression:kind}``; ``{{`` and ``}}`` stand for literal
braces. A slot's value is turned into Chinese words by the read-out function for ``kind``.
"""

from __future__ import annotations

import ast
import functools
import keyword
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import simpleeval

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "int": int,
    "str": str,
    "float": float,
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
}

_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Attribute, ast.Subscript, ast.Slice,
    ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Call, ast.keyword,
    ast.Tuple, ast.List, ast.Dict,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,
    ast.UAdd, ast.USub, ast.Not, ast.And, ast.Or,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Is, ast.IsNot,
)  # fmt: skip

_NODE_NAMES: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.NamedExpr: "':=' assignment",
    ast.Starred: "'*' unpacking",
    ast.JoinedStr: "an f-string",
    ast.Set: "a set literal",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.BitAnd: "'&'",
    ast.BitOr: "'|'",
    ast.BitXor: "'^'",
    ast.Invert: "'~'",
    ast.LShift: "'<<'",
    ast.RShift: "'>>'",
    ast.MatMult: "'@'",
}


class ExprError(ValueError):
    """An expression or template that cannot be used; ``offset`` is 0-based in its text."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class Compiled:
    """A checked expression: its tree and the variable names it reads."""

    text: str
    tree: ast.expr
    names: tuple[tuple[str, int], ...]  # variables read, with their offsets in ``text``

    @property
    def variables(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.names)


def _offset(text: str, node: ast.AST) -> int:
    """0-based offset of ``node`` in ``text`` (first line only; else 0)."""
    if getattr(node, "lineno", 1) != 1:
        return 0
    return getattr(node, "col_offset", 0)


@functools.lru_cache(maxsize=4096)
def compile_expression(text: str) -> Compiled:
    """Parse and check an expression; raises :class:`ExprError` with a precise reason."""
    if not text.strip():
        raise ExprError("empty expression")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        offset = (exc.offset or 1) - 1 if (exc.lineno or 1) == 1 else 0
        raise ExprError(f"invalid expression {text!r}: {exc.msg}", max(offset, 0)) from None
    names: list[tuple[str, int]] = []
    callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        where = _offset(text, node)
        if not isinstance(node, _ALLOWED_NODES):
            what = _NODE_NAMES.get(type(node), type(node).__name__)
            raise ExprError(f"{what} is not allowed in expressions ({text!r})", where)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FUNCTIONS:
                continue
            called = func.id if isinstance(func, ast.Name) else ast.unparse(func)
            raise ExprError(
                f"cannot call {called!r}: only {', '.join(FUNCTIONS)} may be called", where
            )
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExprError(f"attribute {node.attr!r} is not allowed (starts with '_')", where)
        if isinstance(node, ast.Name):
            if node.id.startswith("_"):
                raise ExprError(f"name {node.id!r} is not allowed (starts with '_')", where)
            if id(node) not in callees:
                names.append((node.id, where))
    return Compiled(text, tree.body, tuple(names))


def is_variable_name(name: str) -> bool:
    """Whether ``name`` can be a flow variable (an identifier an expression can read)."""
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")


class DataView:
    """Read-only view of a dict that allows ``view.key`` as well as ``view["key"]``.

    Nested dicts and lists come back wrapped too. It has no public methods of its own, so no
    key (``items``, ``keys``…) is hidden behind a method name.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        try:
            return wrap(self._data[name])
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: Any) -> Any:
        return wrap(self._data[key])

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        return unwrap(self) == unwrap(other)

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"DataView({self._data!r})"


def wrap(value: Any) -> Any:
    """Make dicts (also inside lists) readable with attribute access."""
    if isinstance(value, DataView):
        return value
    if isinstance(value, Mapping):
        return DataView(value)
    if isinstance(value, list | tuple):
        return tuple(wrap(item) for item in value)
    return value


def unwrap(value: Any) -> Any:
    """Plain data back from :func:`wrap` (what a variable stores)."""
    if isinstance(value, DataView):
        return {key: unwrap(item) for key, item in value._data.items()}
    if isinstance(value, Mapping):
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [unwrap(item) for item in value]
    return value


class _Names(Mapping[str, Any]):
    """Variables as an expression sees them (dicts wrapped on access)."""

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self._variables = variables

    def __getitem__(self, name: str) -> Any:
        if name in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[name]
        return wrap(self._variables[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)


class _Evaluator(simpleeval.EvalWithCompoundTypes):
    def __init__(self, variables: Mapping[str, Any]) -> None:
        super().__init__(names=_Names(variables))
        self.functions = dict(FUNCTIONS)

    def _eval_call(self, node: ast.Call) -> Any:
        if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            raise simpleeval.FeatureNotAvailable("only whitelisted functions may be called")
        return super()._eval_call(node)


class EvaluationError(Exception):
    """An expression failed while a call ran (unknown variable, missing key, bad operand)."""


def evaluate(text: str, variables: Mapping[str, Any]) -> Any:
    """Evaluate a checked expression against the call's variables; returns plain data."""
    compiled = compile_expression(text)
    try:
        return unwrap(_Evaluator(variables).eval(text, previously_parsed=compiled.tree))
    except simpleeval.NameNotDefined as exc:
        raise EvaluationError(f"{text!r}: variable {exc.name!r} is not set") from None
    except simpleeval.AttributeDoesNotExist as exc:
        raise EvaluationError(f"{text!r}: no field {exc.attr!r}") from None
    except Exception as exc:  # operands of the wrong type, missing keys, division by zero…
        raise EvaluationError(f"{text!r}: {type(exc).__name__}: {exc}") from None


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True, slots=True)
class Slot:
    """``{expression:kind}`` in a template; ``offset`` is where the expression starts."""

    expression: str
    kind: str
    offset: int
    kind_offset: int


Segment = str | Slot


@functools.lru_cache(maxsize=4096)
def parse_template(text: str) -> tuple[Segment, ...]:
    """Split a template into literal text and slots; raises :class:`ExprError`."""
    segments: list[Segment] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if text.startswith("{{", i) or text.startswith("}}", i):
            literal.append(char)
            i += 2
            continue
        if char == "}":
            raise ExprError("'}' without a matching '{' (write '}}' for a literal brace)", i)
        if char != "{":
            literal.append(char)
            i += 1
            continue
        close = text.find("}", i + 1)
        reopen = text.find("{", i + 1)
        if close < 0 or 0 <= reopen < close:
            raise ExprError("'{' is never closed (write '{{' for a literal brace)", i)
        body = text[i + 1 : close]
        colon = body.rfind(":")
        if not body.strip():
            raise ExprError("empty slot '{}'", i)
        if colon < 0:
            raise ExprError(f"slot {{{body}}} has no kind: write {{{body.strip()}:kind}}", i)
        expression, kind = body[:colon], body[colon + 1 :]
        if not expression.strip():
            raise ExprError(f"slot {{{body}}} has no expression", i)
        if not kind.strip():
            raise ExprError(f"slot {{{body}}} has an empty kind", i + 1 + colon)
        if literal:
            segments.append("".join(literal))
            literal = []
        lead = len(expression) - len(expression.lstrip())
        kind_lead = len(kind) - len(kind.lstrip())
        segments.append(
            Slot(expression.strip(), kind.strip(), i + 1 + lead, i + 2 + colon + kind_lead)
        )
        i = close + 1
    if literal:
        segments.append("".join(literal))
    return tuple(segments)


def render_template(text: str, variables: Mapping[str, Any], say: Callable[[str, Any], str]) -> str:
    """Fill a template's slots with read-out words; ``say(kind, value)`` does the wording."""
    parts: list[str] = []
    for segment in parse_template(text):
        if isinstance(segment, str):
            parts.append(segment)
        else:
            parts.append(say(segment.kind, evaluate(segment.expression, variables)))
    return "".join(parts)
