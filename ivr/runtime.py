"""The flow runtime: runs one call through the steps of a flow snapshot on a :class:`Channel`.

:class:`FlowRunner` executes steps only; the application answers the call before
:meth:`FlowRunner.run` and chooses the flow. ``run`` never raises for a call's troubles: a
caller hanging up (a ``HANGUP`` result or :class:`~drivers.channel.HungUp`) ends it with
result ``hangup``; a guard (``max_steps``, ``max_call_seconds``) ends it with ``guard`` and
hangs up with :attr:`HangupCause.GUARD`; anything unexpected is logged and ends it with
``error``. Results: ``completed`` (the flow ended the call), ``hangup``, ``transferred`` (a
transfer connected the caller to an agent during the call), ``guard``, ``error``.

Events published through ``host.emit``: ``flow.enter`` (flow), ``flow.step`` (flow, step,
action), ``flow.prompt`` (prompt_id — None for read-outs — text, step), ``flow.digits``
(digits, step, terminator, reason), ``workorder.opened`` / ``workorder.submitted`` (number),
``flow.exit`` (result, flow, step).
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from drivers.channel import Channel, HangupCause, HungUp, Playable, Reason, Result
from ivr.flow import model as m
from ivr.flow.expr import evaluate, render_template
from ivr.ports import CallContext, Host, ServiceResult, Services, Speech, TransferResult

log = structlog.get_logger(__name__)

COMPLETED, HANGUP, TRANSFERRED, GUARD, ERROR = (
    "completed",
    "hangup",
    "transferred",
    "guard",
    "error",
)


@dataclass(slots=True)
class CallOutcome:
    """How a call's run through the flows ended."""

    result: str  # completed | hangup | transferred | guard | error
    last_step: str  # "flow:step" in progress when it ended ("" if none ran)
    path: list[str] = field(default_factory=list)  # every executed "flow:step", in order
    keys: str = ""  # every key seen by collect/menu steps, terminators included
    variables: dict[str, Any] = field(default_factory=dict)
    work_order: str | None = None  # the call's work order number, if one was opened


class _CallerGone(Exception):
    """The caller hung up during a step."""


class _GuardTripped(Exception):
    """A call-wide guard (max_steps) fired."""


@dataclass(frozen=True, slots=True)
class _EnterFlow:
    flow_id: str
    resume: str | None  # where the calling flow continues


class _EndCall:
    """The flow hung up (a hangup step, or an input failure with nowhere to go)."""


_END_CALL = _EndCall()

#: What a step returns: the next step's name, None (this flow ends), a sub-flow, or the end.
_Outcome = str | None | _EnterFlow | _EndCall


class FlowRunner:
    """Runs calls through flows, using speech for audio, services for lookups, host for the rest."""

    def __init__(
        self,
        speech: Speech,
        services: Services,
        host: Host,
        *,
        say: Callable[[str, Any], str] | None = None,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        if say is None:
            from ivr.speech.readout import say as readout_say

            say = readout_say
        self.speech = speech
        self.services = services
        self.host = host
        self.say = say
        self.clock = clock

    async def run(self, channel: Channel, flowset: m.FlowSet, flow_id: str) -> CallOutcome:
        """Run ``flow_id`` of ``flowset`` on an answered ``channel`` until the call ends."""
        with structlog.contextvars.bound_contextvars(call_id=channel.call_id):
            return await _Call(self, channel, flowset).run(flow_id)


class _Call:
    """One call's state while it runs."""

    def __init__(self, runner: FlowRunner, channel: Channel, flowset: m.FlowSet) -> None:
        self.runner = runner
        self.channel = channel
        self.flowset = flowset
        self.call_id = channel.call_id
        self.ctx = CallContext(channel.call_id, channel.caller, channel.called, channel.line)
        self.variables: dict[str, Any] = {
            "caller": channel.caller,
            "called": channel.called,
            "line": channel.line,
            "call_id": channel.call_id,
            "now": runner.clock(),
            "last_digits": "",
        }
        self.path: list[str] = []
        self.keys: list[str] = []
        self.steps_run = 0
        self.transferred = False
        self.current = ""
        self.flow: m.Flow | None = None
        self.guard: asyncio.Timeout | None = None

    def emit(self, kind: str, **data: Any) -> None:
        self.runner.host.emit(kind, self.call_id, **data)

    # ------------------------------------------------------------------ the call

    async def run(self, flow_id: str) -> CallOutcome:
        result = ERROR
        try:
            entry = self.flowset[flow_id]
            self.guard = asyncio.timeout(entry.limits.max_call_seconds)
            try:
                async with self.guard:
                    result = await self.run_steps(entry)
            except TimeoutError:
                if not self.guard.expired():
                    raise
                log.warning("flow.guard", guard="max_call_seconds", step=self.current)
                result = GUARD
        except (_CallerGone, HungUp):
            result = HANGUP
        except _GuardTripped as exc:
            log.warning("flow.guard", guard=str(exc), step=self.current)
            result = GUARD
        except Exception:
            log.exception("flow.failed", step=self.current, flow_id=flow_id)
            result = ERROR
        if self.transferred and result in (COMPLETED, HANGUP):
            result = TRANSFERRED
        await self.finish(result)
        self.emit("flow.exit", result=result, flow=flow_id, step=self.current)
        work_order = self.variables.get("work_order")
        return CallOutcome(
            result=result,
            last_step=self.current,
            path=list(self.path),
            keys="".join(self.keys),
            variables=dict(self.variables),
            work_order=work_order.get("number") if isinstance(work_order, Mapping) else None,
        )

    async def finish(self, result: str) -> None:
        """Hang up unless the caller already has."""
        if self.channel.hung_up:
            return
        cause = {GUARD: HangupCause.GUARD, ERROR: HangupCause.ERROR}.get(result, HangupCause.NORMAL)
        try:
            await self.channel.hangup(cause)
        except Exception:
            log.exception("flow.hangup_failed", step=self.current)

    async def run_steps(self, entry: m.Flow) -> str:
        stack: list[tuple[m.Flow, str | None]] = []
        flow = self.enter(entry)
        name: str | None = flow.start.name
        while True:
            if name is None:  # this flow ended: back to the caller, or the call is complete
                if not stack:
                    return COMPLETED
                flow, name = stack.pop()
                self.flow = flow
                continue
            step = flow.steps[name]
            self.steps_run += 1
            if self.steps_run > entry.limits.max_steps:
                raise _GuardTripped(f"max_steps ({entry.limits.max_steps})")
            self.current = f"{flow.id}:{step.name}"
            self.path.append(self.current)
            self.variables["now"] = self.runner.clock()
            self.emit("flow.step", flow=flow.id, step=step.name, action=step.kind)
            outcome = await self.execute(flow, step)
            if isinstance(outcome, _EnterFlow):
                stack.append((flow, outcome.resume))
                flow = self.enter(self.flowset[outcome.flow_id])
                name = flow.start.name
            elif isinstance(outcome, _EndCall):
                if not self.channel.hung_up:
                    await self.channel.hangup(HangupCause.NORMAL)
                return COMPLETED
            else:
                name = outcome

    def enter(self, flow: m.Flow) -> m.Flow:
        self.flow = flow
        self.variables.update(copy.deepcopy(dict(flow.vars)))
        self.emit("flow.enter", flow=flow.id)
        return flow

    # ------------------------------------------------------------------ helpers

    def expect(self, result: Result) -> Result:
        if result.reason == Reason.HANGUP:
            raise _CallerGone()
        return result

    def eval(self, expr: m.Expr) -> Any:
        return evaluate(expr.text, self.variables)

    def failure(self, flow: m.Flow, step: m.Step) -> _Outcome:
        target = flow.failure_target(step)
        return _END_CALL if target is None else target

    @staticmethod
    def following(step: m.Step) -> str | None:
        return step.next.name if step.next else None

    async def playables(self, flow: m.Flow, prompt: m.Prompt, step: m.Step) -> list[Playable]:
        items: list[Playable] = []
        for item in prompt:
            if item.prompt is not None:
                text = flow.prompts[item.prompt.name].text
                items.append(await self.runner.speech.prompt(item.prompt.name, text))
                self.emit("flow.prompt", prompt_id=item.prompt.name, text=text, step=step.name)
            elif item.say is not None:
                text = render_template(item.say.text, self.variables, self.runner.say)
                items.append(await self.runner.speech.readout(text))
                self.emit("flow.prompt", prompt_id=None, text=text, step=step.name)
        return items

    async def play(
        self, flow: m.Flow, prompt: m.Prompt, step: m.Step, *, barge_in: str = ""
    ) -> Result | None:
        """Play a prompt list back to back; None when there is nothing to play."""
        if not prompt:
            return None
        items = await self.playables(flow, prompt, step)
        return self.expect(await self.channel.play(items, barge_in=barge_in))

    def saw_keys(self, step: m.Step, result: Result, digits: str) -> None:
        terminator = result.detail.get("terminator", "") or ""
        if not digits and not terminator:
            return
        self.keys.append(digits + terminator)
        self.variables["last_digits"] = digits
        self.emit(
            "flow.digits",
            digits=digits,
            step=step.name,
            terminator=terminator,
            reason=str(result.reason),
        )

    async def call_service(self, name: str, args: dict[str, Any]) -> ServiceResult:
        try:
            return await self.runner.services.call(name, args, self.ctx)
        except Exception as exc:  # a broken service must not drop the caller
            log.exception("flow.service_failed", service=name, step=self.current)
            return ServiceResult("error", {"message": f"{type(exc).__name__}: {exc}"})

    # ------------------------------------------------------------------ steps

    async def execute(self, flow: m.Flow, step: m.Step) -> _Outcome:
        handler = getattr(self, f"do_{step.kind}")
        return await handler(flow, step, step.action)

    async def do_play(self, flow: m.Flow, step: m.Step, action: m.Play) -> _Outcome:
        await self.play(flow, action.prompt, step, barge_in=step.barge_in)
        return self.following(step)

    async def do_say(self, flow: m.Flow, step: m.Step, action: m.Say) -> _Outcome:
        await self.play(flow, (m.PromptItem(say=action.template),), step, barge_in=step.barge_in)
        return self.following(step)

    async def do_menu(self, flow: m.Flow, step: m.Step, action: m.Menu) -> _Outcome:
        keys = dict((key, ref.name) for key, ref in action.keys)
        prompt = action.prompt
        failures = 0
        while True:
            await self.play(flow, prompt, step, barge_in="any")
            result = self.expect(
                await self.channel.collect(
                    max_digits=1,
                    terminators="",
                    first_timeout=action.timeout,
                    inter_timeout=action.timeout,
                )
            )
            digit = result.digits[:1]
            self.saw_keys(step, result, digit)
            if digit in keys:
                return keys[digit]
            failures += 1
            if failures >= action.max_failures:
                return self.failure(flow, step)
            if digit:
                self.channel.clear_digits()
            notice = action.invalid_prompt if digit else action.timeout_prompt
            played = await self.play(flow, notice, step, barge_in="any")
            barged = played is not None and played.reason == Reason.DIGIT
            prompt = () if barged else (action.short_prompt or action.prompt)

    async def do_collect(self, flow: m.Flow, step: m.Step, action: m.Collect) -> _Outcome:
        prompt = action.prompt
        for attempt in range(1, action.retries + 1):
            await self.play(flow, prompt, step, barge_in="any")
            result = self.expect(
                await self.channel.collect(
                    max_digits=action.max,
                    terminators=action.terminators,
                    first_timeout=action.first_timeout,
                    inter_timeout=action.inter_timeout,
                )
            )
            digits = result.digits
            self.saw_keys(step, result, digits)
            pressed = bool(digits) or bool(result.detail.get("terminator"))
            if pressed and self.digits_ok(action, digits):
                if action.into is not None:
                    self.variables[action.into.name] = digits
                return self.following(step)
            if attempt == action.retries:
                break
            if pressed:
                self.channel.clear_digits()
            notice = action.invalid_prompt if pressed else action.timeout_prompt
            played = await self.play(flow, notice, step, barge_in="any")
            barged = played is not None and played.reason == Reason.DIGIT
            prompt = () if barged else action.prompt
        return self.failure(flow, step)

    @staticmethod
    def digits_ok(action: m.Collect, digits: str) -> bool:
        if not action.min <= len(digits) <= action.max:
            return False
        return action.pattern is None or re.fullmatch(action.pattern.text, digits) is not None

    async def do_lookup(self, flow: m.Flow, step: m.Step, action: m.Lookup) -> _Outcome:
        args = {name: self.eval(expr) for name, expr in action.args}
        result = await self.call_service(action.service.name, args)
        if action.into is not None:
            self.variables[action.into.name] = copy.deepcopy(dict(result.data))
        return step.on_target(result.status)

    async def do_set(self, flow: m.Flow, step: m.Step, action: m.Set) -> _Outcome:
        for ref, expr in action.assignments:
            self.variables[ref.name] = self.eval(expr)
        return self.following(step)

    async def do_branch(self, flow: m.Flow, step: m.Step, action: m.Branch) -> _Outcome:
        for case in action.cases:
            if case.when is None or self.eval(case.when):
                return case.goto.name
        return self.following(step)

    async def do_record(self, flow: m.Flow, step: m.Step, action: m.Record) -> _Outcome:
        await self.play(flow, action.prompt, step)
        path = self.runner.host.recording_path(self.call_id, action.purpose)
        result = await self.channel.record(
            path,
            max_time=action.max_time,
            max_silence=action.max_silence,
            terminators=action.terminators,
            beep=action.beep,
        )
        if result.duration > 0 and action.into is not None:
            self.variables[action.into.name] = {
                "path": path,
                "seconds": result.duration,
                "reason": str(result.reason),
            }
        self.expect(result)
        if result.duration <= 0:
            return self.failure(flow, step)
        return self.following(step)

    async def do_work_order(self, flow: m.Flow, step: m.Step, action: m.WorkOrder) -> _Outcome:
        current = self.variables.get("work_order")
        number = current.get("number") if isinstance(current, Mapping) else None
        fields = {name: self.eval(expr) for name, expr in action.fields}
        if action.action == "open":
            args: dict[str, Any] = {"type": action.type, "fields": fields}
        elif action.action == "update":
            args = {"number": number, "fields": fields}
        else:
            args = {"number": number}
        result = await self.call_service(action.service, args)
        if result.status != "error" and result.data:
            merged = {} if action.action == "open" or current is None else dict(current)
            self.variables["work_order"] = {**merged, **copy.deepcopy(dict(result.data))}
        if result.status == "ok" and action.action in ("open", "submit"):
            kind = "workorder.opened" if action.action == "open" else "workorder.submitted"
            self.emit(kind, number=result.data.get("number"))
        return step.on_target(result.status)

    async def do_transfer(self, flow: m.Flow, step: m.Step, action: m.Transfer) -> _Outcome:
        names = (
            [ref.name for ref in action.data]
            if action.data is not None
            else [n for n in self.variables if n not in m.READONLY_VARIABLES | {"transfer"}]
        )
        data = {
            "path": list(self.path),
            "keys": "".join(self.keys),
            "variables": {
                n: copy.deepcopy(self.variables[n]) for n in names if n in self.variables
            },
        }
        assert self.guard is not None
        loop = asyncio.get_running_loop()
        deadline = self.guard.when()
        left = None if deadline is None else deadline - loop.time()
        self.guard.reschedule(None)  # time with the ACD and the agent is not IVR time
        try:
            outcome = await self.runner.host.transfer(
                self.channel, action.queue, priority=action.priority, data=data
            )
        except HungUp:
            raise
        except Exception as exc:
            log.exception("flow.transfer_failed", queue=action.queue, step=self.current)
            outcome = TransferResult("error", {"message": f"{type(exc).__name__}: {exc}"})
        finally:
            if left is not None:
                self.guard.reschedule(loop.time() + max(left, 0.0))
        self.variables["transfer"] = {"status": outcome.status, **outcome.data}
        if outcome.status == "connected":
            self.transferred = True
        if outcome.status == "hangup" or self.channel.hung_up:
            raise _CallerGone()
        return step.on_target(outcome.status)

    async def do_call(self, flow: m.Flow, step: m.Step, action: m.CallFlow) -> _Outcome:
        return _EnterFlow(action.flow.name, self.following(step))

    async def do_goto(self, flow: m.Flow, step: m.Step, action: m.Goto) -> _Outcome:
        return action.target.name

    async def do_return(self, flow: m.Flow, step: m.Step, action: m.Return) -> _Outcome:
        return None

    async def do_hangup(self, flow: m.Flow, step: m.Step, action: m.Hangup) -> _Outcome:
        await self.play(flow, action.prompt, step)
        return _END_CALL
