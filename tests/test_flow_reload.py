"""Flow registry: atomic snapshots, refused reloads keep the old flows serving, file watching."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ivr.flow.registry import FlowRegistry, ReloadReport, check_paths

SERVICES = frozenset({"billing.current_bill"})

GOOD = """flow: main
start: hello
prompts: {hello: 您好。}
steps:
  hello: {play: hello, next: bye}
  bye: {hangup: true}
"""
BAD = GOOD.replace("next: bye", "next: by")
FIXED = GOOD.replace("您好。", "欢迎致电。")


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def test_load_installs_a_snapshot(tmp_path: Path) -> None:
    write(tmp_path / "main.yaml", GOOD)
    registry = FlowRegistry(tmp_path, SERVICES)
    with pytest.raises(LookupError):
        _ = registry.current
    assert registry.load() == []
    assert list(registry.current) == ["main"]
    assert registry.generation == 1


def test_bad_edit_keeps_old_snapshot_and_fix_swaps(tmp_path: Path) -> None:
    flow_file = tmp_path / "main.yaml"
    write(flow_file, GOOD)
    registry = FlowRegistry([tmp_path], SERVICES)
    registry.load()
    held = registry.current  # what a call in progress holds

    write(flow_file, BAD)
    with capture_logs() as logs:
        errors = registry.reload()
    assert [str(e) for e in errors] == [
        f"{flow_file}:5:30: step 'hello': next goes to unknown step 'by'; did you mean 'bye'?",
        f"{flow_file}:6:3: step 'bye' is unreachable from start step 'hello'",
    ]
    assert registry.current is held
    assert registry.generation == 1
    logged = [(e["event"], e.get("line"), e["log_level"]) for e in logs]
    assert ("flows.problem", 5, "error") in logged and ("flows.problem", 6, "error") in logged
    assert ("flows.reload_refused", None, "error") in logged

    write(flow_file, FIXED)
    assert registry.reload() == []
    assert registry.current is not held
    assert registry.current["main"].prompts["hello"].text == "欢迎致电。"
    assert held["main"].prompts["hello"].text == "您好。"  # the held snapshot never changes
    assert registry.generation == 2


def test_warnings_do_not_block_a_reload(tmp_path: Path) -> None:
    write(
        tmp_path / "main.yaml",
        GOOD.replace("prompts: {hello: 您好。}", "prompts: {hello: 您好。, spare: 备用。}"),
    )
    registry = FlowRegistry(tmp_path, SERVICES)
    assert registry.load() == []
    assert registry.last_report is not None
    assert [str(p) for p in registry.last_report.problems] == [
        f"{tmp_path / 'main.yaml'}:3:23: prompt 'spare' is defined but never used"
    ]
    assert registry.generation == 1
    assert registry.prompt_texts() == {"hello": "您好。", "spare": "备用。"}


def test_check_paths_counts_files_and_returns_errors_only(tmp_path: Path) -> None:
    write(
        tmp_path / "a.yaml",
        GOOD.replace("prompts: {hello: 您好。}", "prompts: {hello: 您好。, x: 多余。}"),
    )
    write(tmp_path / "b.yaml", BAD.replace("flow: main", "flow: other"))
    files, errors = check_paths([tmp_path], SERVICES)
    assert files == 2
    assert [(Path(e.file).name, e.line) for e in errors] == [("b.yaml", 5), ("b.yaml", 6)]


def test_a_broken_second_file_blocks_the_whole_set(tmp_path: Path) -> None:
    write(tmp_path / "main.yaml", GOOD)
    registry = FlowRegistry(tmp_path, SERVICES)
    registry.load()
    write(
        tmp_path / "other.yaml", "flow: other\nstart: s\nsteps:\n  s: {lookup: {service: nope.x}}\n"
    )
    errors = registry.reload()
    assert [e.reason for e in errors] == ["step 's': unknown service 'nope.x'"]
    assert list(registry.current) == ["main"]


async def next_report(
    reports: asyncio.Queue[ReloadReport], wanted: Callable[[ReloadReport], bool]
) -> ReloadReport:
    """The first reload report that matches (an editor's save may trigger more than one)."""
    async with asyncio.timeout(20):
        while True:
            report = await reports.get()
            if wanted(report):
                return report


async def test_watch_reloads_on_change_and_refuses_bad_files(tmp_path: Path) -> None:
    flow_file = tmp_path / "main.yaml"
    write(flow_file, GOOD)
    registry = FlowRegistry(tmp_path, SERVICES)
    registry.load()
    first = registry.current
    reports: asyncio.Queue[ReloadReport] = asyncio.Queue()
    ready = asyncio.Event()
    watcher = asyncio.create_task(
        registry.watch(on_reload=reports.put_nowait, ready=ready, debounce_ms=50, poll_ms=50)
    )
    try:
        async with asyncio.timeout(20):
            await ready.wait()

        write(flow_file, BAD)
        refused = await next_report(reports, lambda r: bool(r.errors))
        assert not refused.swapped
        assert any(e.line == 5 and "unknown step 'by'" in e.reason for e in refused.errors)
        assert registry.current is first

        write(flow_file, FIXED)
        swapped = await next_report(reports, lambda r: r.swapped)
        assert swapped.generation == registry.generation >= 2
        assert registry.current["main"].prompts["hello"].text == "欢迎致电。"
        assert first["main"].prompts["hello"].text == "您好。"
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
