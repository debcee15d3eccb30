"""Clocks for the engine: the shared 20 ms media clock and a virtual-time event loop.

:class:`MediaClock` drives every media stream of a driver from one timer with absolute
deadlines (``start + n × 20 ms``), so lateness does not accumulate and one callback serves
all lines (one task per stream costs 2–3× the CPU).

:class:`VirtualClockLoop` is an asyncio event loop whose ``time()`` is virtual: when nothing is
ready to run it jumps straight to the next timer instead of waiting, so a three-minute call
on the simulated board runs in a fraction of a second and timeouts behave exactly as in real
time. Work that really happens outside the loop (a TTS subprocess, a database thread) must
not see virtual time race ahead of it: executor jobs and subprocesses are tracked
automatically, and any other awaited outside work is wrapped in :func:`real_work`. While such
work is pending the loop waits in real time and virtual time stands still.

:class:`DeadlineTimer` keeps one loop timer at a plain object's next deadline (the ACD core's,
the SIP client transactions'), re-arming it only when that deadline moves.

It is written here rather than taken from a test plugin because the scenario runner and the
load benchmark use it outside pytest, with the same loop the engine runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
from collections.abc import AsyncIterator, Callable
from typing import Any

FRAME_SECONDS = 0.020


class MediaClock:
    """Calls ``on_tick(n)`` every 20 ms on absolute deadlines.

    If the loop falls more than ``max_lag`` behind (a stall, a debugger), the schedule is
    re-anchored instead of firing a burst of catch-up ticks; ``late_ticks`` counts ticks that
    ran later than ``late_threshold`` and ``lateness`` keeps recent lateness samples (s).
    """

    def __init__(
        self,
        on_tick: Callable[[int], None],
        *,
        period: float = FRAME_SECONDS,
        max_lag: float = 0.2,
        late_threshold: float = 0.005,
    ) -> None:
        self._on_tick = on_tick
        self.period = period
        self.max_lag = max_lag
        self.late_threshold = late_threshold
        self.ticks = 0
        self.late_ticks = 0
        self.resyncs = 0
        self.lateness: list[float] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self.deadline = 0.0  # of the tick being run (loop time)

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self.ticks = 0
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        assert self._loop is not None
        deadline = self._start + (self.ticks + 1) * self.period
        self._handle = self._loop.call_at(deadline, self._fire, deadline)

    def _fire(self, deadline: float) -> None:
        assert self._loop is not None
        late = self._loop.time() - deadline
        if late > self.late_threshold:
            self.late_ticks += 1
        if len(self.lateness) < 100_000:
            self.lateness.append(late)
        self.ticks += 1
        if late > self.max_lag:
            self.resyncs += 1
            self._start = self._loop.time() - self.ticks * self.period
            deadline = self._start + self.ticks * self.period
        self.deadline = deadline
        try:
            self._on_tick(self.ticks)
        finally:
            if self._handle is not None:
                self._schedule()


class _FastForwardSelector(selectors.BaseSelector):
    """Wraps the real selector; turns "wait up to T" into "advance virtual time by T"."""

    def __init__(self, loop: VirtualClockLoop, real: selectors.BaseSelector) -> None:
        self._loop = loop
        self._real = real

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if self._loop.real_work_pending():
            # Something outside the loop is working: wait for it in real time.
            wait = 0.05 if timeout is None else min(timeout, 0.05)
            return self._real.select(wait)
        if timeout is None:
            return self._real.select(None)  # nothing scheduled at all: only I/O can wake us
        self._loop.advance(timeout)
        return []


class DeadlineTimer:
    """One loop timer at a deadline that moves: :meth:`set` re-arms it only when the deadline
    changes (``None``: no timer); ``on_due(deadline)`` runs when it is reached."""

    def __init__(self, on_due: Callable[[float], None]) -> None:
        self._on_due = on_due
        self._handle: asyncio.TimerHandle | None = None
        self.at: float | None = None

    def set(self, loop: asyncio.AbstractEventLoop | None, deadline: float | None) -> None:
        if deadline == self.at:
            return
        self.cancel()
        self.at = deadline
        if deadline is not None and loop is not None:
            self._handle = loop.call_at(deadline, self._fire, deadline)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.at = None

    def _fire(self, deadline: float) -> None:
        self._handle = None
        self.at = None
        self._on_due(deadline)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop with virtual time (see the module docstring)."""

    def __init__(self, start: float = 0.0) -> None:
        real = selectors.DefaultSelector()
        self._vtime = start
        self._real_work = 0
        self._subprocesses: list[Any] = []
        super().__init__(_FastForwardSelector(self, real))

    def time(self) -> float:
        return self._vtime

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._vtime += seconds

    # --- tracking work that happens outside the loop ---------------------------------
    def real_work_pending(self) -> bool:
        if self._subprocesses:
            self._subprocesses = [t for t in self._subprocesses if not _finished(t)]
        return self._real_work > 0 or bool(self._subprocesses)

    def begin_real_work(self) -> None:
        self._real_work += 1

    def end_real_work(self) -> None:
        self._real_work -= 1

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> Any:
        future = super().run_in_executor(executor, func, *args)
        self.begin_real_work()
        future.add_done_callback(lambda _f: self.end_real_work())
        return future

    async def _make_subprocess_transport(self, *args: Any, **kwargs: Any) -> Any:
        transport = await super()._make_subprocess_transport(*args, **kwargs)  # type: ignore[misc]
        self._subprocesses.append(transport)
        return transport


def _finished(transport: Any) -> bool:
    if transport.is_closing():
        return True
    return transport.get_returncode() is not None


@contextlib.asynccontextmanager
async def real_work() -> AsyncIterator[None]:
    """Mark outside work (a database thread, a socket peer) the virtual clock must wait for.

    A no-op on ordinary event loops.
    """
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualClockLoop):
        yield
        return
    loop.begin_real_work()
    try:
        yield
    finally:
        loop.end_real_work()


def new_loop(virtual: bool = False) -> asyncio.AbstractEventLoop:
    """The engine's event loop: virtual time for tests/scenarios, else uvloop if available."""
    if virtual:
        return VirtualClockLoop()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
