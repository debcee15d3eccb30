"""Helpers for tests that run the engine or the board on a virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from drivers.clock import VirtualClockLoop

REPO = Path(__file__).resolve().parent.parent
FLOWS = REPO / "flows"
SCENARIOS = REPO / "scenarios"


def run_virtual(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``coro_fn()`` on a fresh virtual-clock loop."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coro_fn())
    finally:
        loop.close()


def make_config(
    root: Path, *, cache: Path | None = None, flows: Path = FLOWS, **overrides: Any
) -> Any:
    from hotline.config import load_config

    settings: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{root}/var/hotline.db",
        "recordings_dir": str(root / "recordings"),
        "cache_dir": str(cache or root / "cache"),
        "flows_dirs": [str(flows)],
    }
    settings.update(overrides)
    config = load_config(None, root=root, overrides=settings)
    config.control.enabled = False
    config.sip.port = 0  # any free port: tests run side by side
    config.api.port = 0
    config.board.trunks = 8
    return config


def with_engine(config: Any, body: Callable[[Any], Awaitable[Any]], **engine_kw: Any) -> Any:
    """Start an engine on ``config``, run ``body(engine)``, let every call finish, stop."""
    from hotline.engine import Engine

    async def go() -> Any:
        engine = Engine(config, watch_flows=False, **engine_kw)
        await engine.start()
        try:
            result = await body(engine)
            await asyncio.wait_for(engine.idle(), 600)
            return result
        finally:
            await engine.stop()

    return run_virtual(go)


def dominant_hz(samples: np.ndarray) -> float:
    """The strongest frequency in 8 kHz ``samples`` (what a line carried: whose tone)."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * 8000 / len(samples))


def queue_events(engine: Any) -> list[tuple[str, str | None, dict[str, Any]]]:
    """Every ``queue.*`` event the engine publishes from now on, as (kind, agent, data)."""
    seen: list[tuple[str, str | None, dict[str, Any]]] = []
    engine.bus.subscribe("queue.", lambda e: seen.append((e.kind, e.data.get("agent_id"), e.data)))
    return seen
