"""The queue-file watcher on a running engine: real event loop, real file watching.

The engine runs on its production loop (not the virtual clock) with a scratch copy of the
queues folder; the engine's :class:`~hotline.queue_reload.QueueReloader` watches it with
watchfiles, exactly as the engine's own watcher task does. Edits are written to the files
and the test waits for the watcher's reload reports (with timeouts, no sleeping):

- a good edit (max wait and strategy of ``general``) is swapped in and applies;
- a bad edit (an unknown strategy) is refused, the problem is logged as file, line and
  reason, and the queues in service keep serving: a caller still reaches an agent.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from test_contact_center import ask_for_agent, seat_rings

from drivers.clock import new_loop
from hotline.engine import Engine
from hotline.queue_reload import QueueReloadReport
from ivr.speech.readout import say
from support import REPO, make_config

TIMEOUT = 30  # s for a reload report; the watcher polls every 50 ms


@pytest.fixture
def queues(tmp_path: Path) -> Path:
    folder = tmp_path / "queues"
    shutil.copytree(REPO / "queues", folder)
    return folder


@pytest.fixture
def watch_config(engine_template: Path, tmp_path: Path, queues: Path) -> Any:
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    return make_config(tmp_path, cache=engine_template / "cache", acd={"queues_dir": str(queues)})


def edit(path: Path, *changes: tuple[str, str]) -> None:
    """Apply the replacements and save the file once (as an editor would)."""
    text = path.read_text(encoding="utf-8")
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


async def next_report(
    reports: asyncio.Queue[QueueReloadReport], wanted: Callable[[QueueReloadReport], bool]
) -> QueueReloadReport:
    """The first reload report that matches (one save may be seen as several changes)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            report = await reports.get()
            if wanted(report):
                return report


def test_the_watcher_swaps_a_good_edit_and_refuses_a_bad_one(
    watch_config: Any, queues: Path
) -> None:
    general = queues / "general.yaml"

    async def go() -> dict[str, Any]:
        engine = Engine(watch_config, watch_flows=False)  # the watcher is started below
        await engine.start()
        reloader = engine.queue_reloader
        assert reloader is not None and reloader.folder == queues
        reports: asyncio.Queue[QueueReloadReport] = asyncio.Queue()
        ready = asyncio.Event()
        watcher = asyncio.create_task(
            reloader.watch(on_reload=reports.put_nowait, ready=ready, debounce_ms=50, poll_ms=50)
        )
        center = engine.contact_center
        try:
            async with asyncio.timeout(TIMEOUT):
                await ready.wait()
            before = center.acd.queues["general"].config
            edit(
                general,
                ("max_wait: 120", "max_wait: 200"),
                ("strategy: longest_idle", "strategy: round_robin"),
            )
            good = await next_report(reports, lambda r: r.swapped and bool(r.applied))
            after_good = center.acd.queues["general"]
            with capture_logs() as logs:
                edit(general, ("strategy: round_robin", "strategy: fastest_first"))
                bad = await next_report(reports, lambda r: not r.swapped)
            after_bad = center.acd.queues["general"]
            # the queues in service keep serving: a caller reaches an agent
            caller = await ask_for_agent(engine)
            seat = await seat_rings(engine, "s1")
            seat.off_hook()
            await caller.expect(f"工号{say('digits', '1001')}为您服务")
            seat.hang_up("loop")
            await caller.expect("感谢您的来电")
            await caller.expect_hangup()
            await asyncio.wait_for(engine.idle(), TIMEOUT)
            served = [e for e in center.recent_events if e.kind.value == "CONNECT"]
            return {
                "before": before,
                "good": good,
                "after_good": after_good,
                "bad": bad,
                "after_bad": after_bad,
                "logs": logs,
                "served": served,
            }
        finally:
            watcher.cancel()
            with pytest.raises(asyncio.CancelledError):
                await watcher
            await engine.stop()

    loop = new_loop()  # the engine's production loop: uvloop where available
    try:
        got = loop.run_until_complete(go())
    finally:
        loop.close()

    assert (got["before"].max_wait, got["before"].strategy) == (120, "longest_idle")
    assert got["good"].applied == ("queue general: rebuilt",)  # a routing change, queue empty
    assert (got["after_good"].config.max_wait, got["after_good"].strategy) == (200, "round_robin")

    assert not got["bad"].swapped
    (error,) = got["bad"].errors
    assert (Path(error.file), error.line) == (general, 4)
    assert "unknown strategy 'fastest_first'" in error.reason
    problems = [e for e in got["logs"] if e["event"] == "queues.problem"]
    assert [(Path(p["file"]), p["line"]) for p in problems] == [(general, 4)]
    assert "fastest_first" in problems[0]["reason"]
    assert any(e["event"] == "queues.reload_refused" for e in got["logs"])
    # the old (good) configuration serves on
    assert got["after_bad"] is got["after_good"]
    assert (got["after_bad"].config.max_wait, got["after_bad"].strategy) == (200, "round_robin")
    assert [(e.queue, e.agent_id) for e in got["served"]] == [("general", "1001")]
