"""Hot reload of queue files on a running engine: validate, swap, a bad edit changes nothing.

The queues folder is a copy of the shipped one; edits are written to it and
:meth:`QueueReloader.reload` is called, as the file watcher would.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from test_contact_center import ask_for_agent

from hotline.queue_reload import QueueReloader
from support import REPO, make_config, with_engine


@pytest.fixture
def queues(tmp_path: Path) -> Path:
    folder = tmp_path / "queues"
    shutil.copytree(REPO / "queues", folder)
    return folder


@pytest.fixture
def acd_config(engine_template: Path, tmp_path: Path, queues: Path) -> Any:
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    return make_config(tmp_path, cache=engine_template / "cache", acd={"queues_dir": str(queues)})


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def reloader(engine: Any, folder: Path) -> QueueReloader:
    assert engine.queue_reloader is not None and engine.queue_reloader.folder == folder
    return engine.queue_reloader


def test_an_edit_is_swapped_in_and_a_bad_edit_keeps_the_old_config(
    acd_config: Any, queues: Path
) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        center, reload = engine.contact_center, reloader(engine, queues)
        edit(queues / "general.yaml", "max_wait: 120", "max_wait: 200")
        edit(queues / "general.yaml", "坐席正忙，请您耐心等待", "话务繁忙，请稍候")
        good = reload.reload()
        after_good = (center.acd.queues["general"].config.max_wait, center.queues["general"])
        edit(queues / "general.yaml", "strategy: longest_idle", "strategy: fastest_first")
        bad = reload.reload()
        after_bad = (center.acd.queues["general"].config.max_wait, center.queues["general"])
        return {"good": good, "bad": bad, "after_good": after_good, "after_bad": after_bad}

    got = with_engine(acd_config, body)
    assert got["good"].swapped and got["good"].applied == ("queue general: updated",)
    assert got["after_good"][0] == 200
    assert got["after_good"][1].waiting_prompt.startswith("话务繁忙，请稍候")
    assert not got["bad"].swapped and got["bad"].errors
    assert "fastest_first" in str(got["bad"].errors[0])
    assert got["after_bad"] == got["after_good"]  # the old configuration serves on


def test_queues_and_agents_are_added_and_removed(acd_config: Any, queues: Path) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        center = engine.contact_center
        # without the engine's station filter: the new agent's seat s5 is not on this board
        reload = QueueReloader(center, queues, lambda: engine.flows.current)
        text = (queues / "general.yaml").read_text(encoding="utf-8")
        (queues / "billing.yaml").write_text(
            text.replace("queue: general", "queue: billing"), encoding="utf-8"
        )
        added = reload.reload()
        members = sorted(center.acd.queues["billing"].members)
        (queues / "billing.yaml").unlink()
        edit(
            queues / "agents.yaml",
            '  - {id: "1004"',
            '  - {id: "1005", name: 陈晨, skills: {general: 2}, seat: s5}\n  - {id: "1004"',
        )
        edit(
            queues / "agents.yaml",
            '  - {id: "1003", name: 李娜, skills: {general: 4, fault: 5}, seat: s3}\n',
            "",
        )
        busy = reload.reload()  # 1003 is logged in: its removal waits
        engine.logout_agent("1003")
        done = reload.reload()
        return {
            "added": added,
            "members": members,
            "busy": busy,
            "done": done,
            "queues": sorted(center.acd.queues),
            "agents": sorted(center.acd.agents),
            "1005": engine.agent_status("1005"),
        }

    got = with_engine(acd_config, body)
    assert got["added"].applied == ("queue billing: added",)
    assert got["members"] == ["1001", "1002", "1003", "1004"]
    assert set(got["busy"].applied) == {"queue billing: removed", "agent 1005: added"}
    assert got["busy"].deferred == ("agent 1003: removal waits until logged out and idle",)
    assert got["done"].applied == ("agent 1003: removed",) and not got["done"].deferred
    assert got["queues"] == ["fault", "general"]
    assert got["agents"] == ["1001", "1002", "1004", "1005"]
    assert got["1005"]["status"] == "logged_out"


def test_a_routing_change_waits_until_the_queue_is_empty(acd_config: Any, queues: Path) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        center, reload = engine.contact_center, reloader(engine, queues)
        for agent_id in ("1001", "1002", "1003", "1004"):
            engine.set_agent_not_ready(agent_id, "rest")
        caller = await ask_for_agent(engine)
        await caller.expect("坐席正忙，请您耐心等待")  # in the queue
        edit(queues / "general.yaml", "strategy: longest_idle", "strategy: round_robin")
        waiting = reload.reload()
        strategy_while_waiting = str(center.acd.queues["general"].config.strategy)
        await caller.hang_up()
        await engine.idle()
        empty = reload.reload()
        return {
            "waiting": waiting,
            "while": strategy_while_waiting,
            "empty": empty,
            "after": str(center.acd.queues["general"].config.strategy),
        }

    got = with_engine(acd_config, body)
    assert got["waiting"].deferred == ("queue general: routing change waits for its callers",)
    assert got["while"] == "longest_idle"
    assert got["empty"].applied == ("queue general: rebuilt",)
    assert got["after"] == "round_robin"
