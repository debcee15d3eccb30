"""What the flow runtime needs from the world, as protocols the application implements.

The runtime in :mod:`ivr.runtime` depends only on these and on :mod:`drivers.channel`; the
application package wires real implementations (speech with the prompt cache, services on the
store, the ACD for transfers, the event bus).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from drivers.channel import Channel, Playable


@dataclass(slots=True)
class ServiceResult:
    """What a named service returned to a flow.

    ``status`` is what flows branch on; every service documents its statuses (``found`` /
    ``not_found``, ``ok``, ``error``…). ``data`` becomes the step's ``into`` variable.
    """

    status: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CallContext:
    """Facts about the call a service may use (who called, on which line, which call)."""

    call_id: str
    caller: str
    called: str
    line: str


class Services(Protocol):
    """Named services flow steps call (``lookup``, ``work_order``, voice messages…)."""

    @property
    def names(self) -> frozenset[str]: ...

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> ServiceResult: ...


class Speech(Protocol):
    """Turns prompt ids and Chinese text into playable audio."""

    async def prompt(self, prompt_id: str, text: str) -> Playable:
        """A static prompt: a recorded file that overrides ``prompt_id``, else cached TTS."""

    async def readout(self, text: str) -> Playable:
        """Dynamic Chinese text (a rendered template): recorded units or TTS."""


@dataclass(slots=True)
class TransferResult:
    """How a transfer to a queue ended: ``connected``, ``no_agent``, ``timeout``, ``hangup``."""

    status: str
    data: dict[str, Any] = field(default_factory=dict)


class Host(Protocol):
    """The rest of the engine as the runtime sees it."""

    def emit(self, kind: str, call_id: str, **data: Any) -> None:
        """Publish an event (``flow.step``, ``flow.digits``…) on the engine's bus."""

    def recording_path(self, call_id: str, purpose: str) -> str:
        """A fresh path under the recordings directory for a voice message/description."""

    async def transfer(
        self, channel: Channel, queue: str, *, priority: int, data: dict[str, Any]
    ) -> TransferResult:
        """Hand the caller to a queue; returns when the caller comes back (or hangs up)."""
