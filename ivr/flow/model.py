"""The flow language's object model: immutable flows, steps and the values they carry.

A :class:`Flow` is what one YAML file describes; a :class:`FlowSet` maps flow ids to flows and
is the immutable snapshot a call runs against. Every step, reference, expression and template
carries the :class:`Pos` it came from so that validation reports ``file:line:column``.

A step is a :class:`Step` (its name, common keys and position) holding exactly one action,
one of the action classes below (:class:`Play`, :class:`Menu`, …); ``Step.kind`` names it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal

#: The action keys, in the order the language reference lists them.
ACTIONS: tuple[str, ...] = (
    "play",
    "say",
    "menu",
    "collect",
    "lookup",
    "set",
    "branch",
    "record",
    "work_order",
    "transfer",
    "call",
    "goto",
    "return",
    "hangup",
)

#: Keys a step may carry besides its action (which of them apply depends on the action).
COMMON_KEYS: tuple[str, ...] = ("next", "on_failure", "on", "barge_in", "comment")

#: Variables every call has; flows may read them but not assign them.
READONLY_VARIABLES: frozenset[str] = frozenset({"caller", "called", "line", "call_id", "now"})

#: Variables the runtime sets itself (besides ``into`` targets).
BUILTIN_VARIABLES: frozenset[str] = READONLY_VARIABLES | {"last_digits", "work_order", "transfer"}

DEFAULT_MAX_CALL_SECONDS = 1800.0
DEFAULT_MAX_STEPS = 500


@dataclass(frozen=True, slots=True)
class Pos:
    """A place in a flow file; ``line`` and ``column`` are 1-based."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def shifted(self, columns: int) -> Pos:
        return Pos(self.file, self.line, self.column + columns)


@dataclass(frozen=True, slots=True)
class FlowError:
    """One problem found in a flow file. ``str()`` gives ``file:line:column: reason``."""

    file: str
    line: int
    column: int
    reason: str
    severity: Literal["error", "warning"] = "error"

    @classmethod
    def at(cls, pos: Pos, reason: str, *, warning: bool = False) -> FlowError:
        return cls(pos.file, pos.line, pos.column, reason, "warning" if warning else "error")

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.column, self.reason)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Ref:
    """A name written in a flow (a step, prompt, flow, service or variable) and where."""

    name: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class Source:
    """Text written in a flow that is parsed further (an expression, template or regex).

    ``exact`` is true when every character of ``text`` sits in the file at ``pos`` plus its
    offset (a one-line scalar without escapes), so errors can point inside the text.
    """

    text: str
    pos: Pos
    exact: bool = False

    def pos_at(self, offset: int) -> Pos:
        return self.pos.shifted(offset) if self.exact else self.pos


class Expr(Source):
    """An expression (simpleeval syntax), e.g. ``tries + 1``."""

    __slots__ = ()


class Template(Source):
    """A say template: text with ``{expression:kind}`` slots and ``{{``/``}}`` for braces."""

    __slots__ = ()


class Pattern(Source):
    """A regular expression the collected digits must match."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class PromptItem:
    """One thing to play: a prompt id (``prompt``) or a spoken template (``say``)."""

    prompt: Ref | None = None
    say: Template | None = None


#: A prompt reference: what a ``prompt:`` key or a ``play`` step lists, played back to back.
Prompt = tuple[PromptItem, ...]


@dataclass(frozen=True, slots=True)
class Play:
    KIND: ClassVar[str] = "play"
    prompt: Prompt


@dataclass(frozen=True, slots=True)
class Say:
    KIND: ClassVar[str] = "say"
    template: Template


@dataclass(frozen=True, slots=True)
class Menu:
    KIND: ClassVar[str] = "menu"
    prompt: Prompt
    keys: tuple[tuple[str, Ref], ...]
    short_prompt: Prompt = ()
    invalid_prompt: Prompt = ()
    timeout_prompt: Prompt = ()
    timeout: float = 5.0
    max_failures: int = 3


@dataclass(frozen=True, slots=True)
class Collect:
    KIND: ClassVar[str] = "collect"
    max: int
    prompt: Prompt = ()
    min: int = 1
    terminators: str = "#"
    first_timeout: float = 5.0
    inter_timeout: float = 3.0
    pattern: Pattern | None = None
    invalid_prompt: Prompt = ()
    timeout_prompt: Prompt = ()
    retries: int = 3
    into: Ref | None = None


@dataclass(frozen=True, slots=True)
class Lookup:
    KIND: ClassVar[str] = "lookup"
    service: Ref
    args: tuple[tuple[str, Expr], ...] = ()
    into: Ref | None = None


@dataclass(frozen=True, slots=True)
class Set:
    KIND: ClassVar[str] = "set"
    assignments: tuple[tuple[Ref, Expr], ...]


@dataclass(frozen=True, slots=True)
class Case:
    """One branch case: ``when`` is None for the ``else`` case."""

    when: Expr | None
    goto: Ref
    pos: Pos


@dataclass(frozen=True, slots=True)
class Branch:
    KIND: ClassVar[str] = "branch"
    cases: tuple[Case, ...]


@dataclass(frozen=True, slots=True)
class Record:
    KIND: ClassVar[str] = "record"
    prompt: Prompt = ()
    max_time: float = 60.0
    max_silence: float | None = 5.0
    terminators: str = "#"
    beep: bool = True
    purpose: str = "message"
    into: Ref | None = None


WORK_ORDER_ACTIONS: tuple[str, ...] = ("open", "update", "submit")


@dataclass(frozen=True, slots=True)
class WorkOrder:
    KIND: ClassVar[str] = "work_order"
    action: str
    type: str | None = None
    fields: tuple[tuple[str, Expr], ...] = ()

    @property
    def service(self) -> str:
        return f"work_orders.{self.action}"


@dataclass(frozen=True, slots=True)
class Transfer:
    KIND: ClassVar[str] = "transfer"
    queue: str
    priority: int = 0
    data: tuple[Ref, ...] | None = None  # variables handed to the agent; None: all flow variables


@dataclass(frozen=True, slots=True)
class CallFlow:
    KIND: ClassVar[str] = "call"
    flow: Ref


@dataclass(frozen=True, slots=True)
class Goto:
    KIND: ClassVar[str] = "goto"
    target: Ref


@dataclass(frozen=True, slots=True)
class Return:
    KIND: ClassVar[str] = "return"


@dataclass(frozen=True, slots=True)
class Hangup:
    KIND: ClassVar[str] = "hangup"
    prompt: Prompt = ()


Action = (
    Play
    | Say
    | Menu
    | Collect
    | Lookup
    | Set
    | Branch
    | Record
    | WorkOrder
    | Transfer
    | CallFlow
    | Goto
    | Return
    | Hangup
)

#: Action kinds that end the flow or hand the caller on (exits for the loop check).
TERMINAL_KINDS: frozenset[str] = frozenset({"hangup", "return", "transfer"})


def frozen_mapping(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class Step:
    """A named step: one action plus the keys that say where the flow goes next."""

    name: str
    action: Action
    pos: Pos  # the step's name in the file
    action_pos: Pos  # the action key
    next: Ref | None = None
    on_failure: Ref | None = None
    on: tuple[tuple[str, Ref], ...] = ()
    barge_in: str = ""  # keys that stop a play/say: "" none, "any", or a set of keys
    comment: str | None = None
    positions: Mapping[str, Pos] = field(default_factory=frozen_mapping)  # action body key -> value

    def pos_of(self, key: str) -> Pos:
        """Where a key of the action body is written (the action key when absent)."""
        return self.positions.get(key, self.action_pos)

    @property
    def kind(self) -> str:
        return self.action.KIND

    def on_target(self, status: str) -> str | None:
        """Where an ``on:`` branch sends ``status`` (``default`` catches the rest), else next."""
        table = dict((key, ref.name) for key, ref in self.on)
        if status in table:
            return table[status]
        if "default" in table:
            return table["default"]
        return self.next.name if self.next else None


@dataclass(frozen=True, slots=True)
class Limits:
    """Call-wide guards; only the entry flow's limits apply to a call."""

    max_call_seconds: float = DEFAULT_MAX_CALL_SECONDS
    max_steps: int = DEFAULT_MAX_STEPS


@dataclass(frozen=True, slots=True)
class PromptText:
    text: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class Flow:
    """One flow file."""

    id: str
    file: str
    pos: Pos  # the flow id value
    start: Ref
    steps: Mapping[str, Step] = field(default_factory=frozen_mapping)
    prompts: Mapping[str, PromptText] = field(default_factory=frozen_mapping)
    vars: Mapping[str, Any] = field(default_factory=frozen_mapping)
    vars_pos: Mapping[str, Pos] = field(default_factory=frozen_mapping)
    limits: Limits = Limits()
    on_failure: Ref | None = None  # default failure target of menu/collect/record steps
    title: str | None = None

    def failure_target(self, step: Step) -> str | None:
        """Where a failed input step goes; None means hang up."""
        ref = step.on_failure or self.on_failure
        return ref.name if ref else None


class FlowSet(Mapping[str, Flow]):
    """An immutable snapshot of loaded flows, by flow id."""

    __slots__ = ("_flows",)

    def __init__(self, flows: Mapping[str, Flow] | None = None) -> None:
        self._flows: Mapping[str, Flow] = MappingProxyType(dict(flows or {}))

    def __getitem__(self, flow_id: str) -> Flow:
        return self._flows[flow_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._flows)

    def __len__(self) -> int:
        return len(self._flows)

    def __repr__(self) -> str:
        return f"FlowSet({sorted(self._flows)})"

    def prompts(self) -> Iterator[tuple[str, str]]:
        """Every (prompt id, text) pair, for synthesizing prompts ahead of calls."""
        for flow in self._flows.values():
            for prompt_id, prompt in flow.prompts.items():
                yield prompt_id, prompt.text
