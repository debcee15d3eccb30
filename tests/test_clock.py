"""The clocks' small pieces tested directly: :class:`drivers.clock.DeadlineTimer`."""

from __future__ import annotations

import asyncio

from drivers.clock import DeadlineTimer
from support import run_virtual


def test_deadline_timer_fires_once_at_the_latest_deadline_and_can_be_cancelled() -> None:
    async def go() -> tuple[list[float], list[float], float | None]:
        loop = asyncio.get_running_loop()
        fired: list[float] = []
        timer = DeadlineTimer(fired.append)
        t0 = loop.time()
        timer.set(loop, t0 + 5)
        timer.set(loop, t0 + 5)  # unchanged: nothing re-armed
        timer.set(loop, t0 + 2)  # moved earlier: the old timer is gone
        await asyncio.sleep(3)
        first = [t - t0 for t in fired]
        timer.set(loop, t0 + 10)
        timer.cancel()
        await asyncio.sleep(10)
        timer.set(loop, None)
        return first, [t - t0 for t in fired], timer.at

    first, after_cancel, at = run_virtual(go)
    assert first == [2]
    assert after_cancel == [2]
    assert at is None
