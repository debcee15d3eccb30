"""``hotline agent …`` against a running engine's API (real HTTP/WebSocket on 127.0.0.1).

The engine runs on the virtual clock; each CLI command runs in a thread with its own event
loop, as it would in a tester's shell, while the engine's loop goes on serving it (an agent's
hangup waits for the call to end, which needs the engine's clock to run). ``watch`` listens
the same way while the caller reaches the agent, and prints the screen-pop.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hotline.agent_cli import cmd_agent
from hotline.cli import _parser
from hotline.services.api_users import DEMO_AGENT_PASSWORD, DEMO_SUPERVISOR_PASSWORD
from sim.caller import Caller, LocalLine
from support import REPO, make_config, with_engine


@pytest.fixture
def api_config(engine_template: Path, tmp_path: Path) -> Any:
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    config = make_config(
        tmp_path, cache=engine_template / "cache", acd={"queues_dir": str(REPO / "queues")}
    )
    config.api.port = 0
    return config


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``hotline agent …`` as parsed by the real command line, printing into buffers (the
    commands run in threads side by side, so sys.stdout cannot be swapped for them)."""
    args = _parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    code = cmd_agent(args, out, err)
    return code, out.getvalue(), err.getvalue()


async def cli(*argv: str) -> tuple[int, str, str]:
    """Run one CLI command in its own thread while the engine's loop goes on serving it."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, str, str]] = loop.create_future()

    def work() -> None:
        try:
            result = run_cli(list(argv))
        except BaseException as exc:  # reported to the test, not lost in the thread
            loop.call_soon_threadsafe(done.set_exception, exc)
        else:
            loop.call_soon_threadsafe(done.set_result, result)

    threading.Thread(target=work, daemon=True).start()
    return await asyncio.wait_for(done, 600)  # virtual seconds; the CLI has its own timeout


def test_cli_commands_act_on_the_acd_and_report_errors(api_config: Any) -> None:
    async def body(engine: Any) -> None:
        url = engine.api.url
        me = ["agent", "--url", url, "--user", "1002", "--password", DEMO_AGENT_PASSWORD]
        code, out, _ = await cli(*me, "notready", "rest")
        assert code == 0 and "not_ready (rest)" in out
        assert engine.agent_status("1002")["reason"] == "rest"
        code, out, _ = await cli(*me, "ready")
        assert code == 0 and engine.agent_status("1002")["status"] == "ready"
        code, out, _ = await cli(*me, "logout")
        assert code == 0 and engine.agent_status("1002")["status"] == "logged_out"
        code, out, _ = await cli(*me, "login", "--not-ready", "busy")
        assert code == 0 and (engine.agent_status("1002")["status"], engine.agent_status("1002")["reason"]) == ("not_ready", "busy")
        code, out, _ = await cli(*me, "--json", "status")
        assert code == 0 and '"status": "not_ready"' in out
        code, _, err = await cli(*me, "--agent", "1001", "ready")
        assert code == 1 and "403 forbidden" in err
        code, _, err = await cli(*me, "hold")
        assert code == 1 and "409" in err and "not talking" in err
        code, _, err = await cli(*me, "transfer", "--to-queue", "nowhere")
        assert code == 1 and "404" in err
        code, _, err = await cli(*me, "consult", "--to-agent", "1001")
        assert code == 1 and "409" in err  # 1002 is not on a call
        code, _, err = await cli(*me, "complete")
        assert code == 1 and "not consulting" in err
        code, _, err = await cli("agent", "--url", url, "--user", "1002", "--password", "wrong-pass", "status")
        assert code == 1 and "401 bad_credentials" in err
        boss = ["agent", "--url", url, "--user", "supervisor", "--password", DEMO_SUPERVISOR_PASSWORD]
        code, out, _ = await cli(*boss, "--agent", "1003", "notready", "meeting")
        assert code == 0 and engine.agent_status("1003")["reason"] == "meeting"
        assert len(engine.api.tokens) == 0  # every command logged out again

    with_engine(api_config, body)


def test_cli_watch_prints_the_screen_pop_and_the_agent_takes_the_call(api_config: Any) -> None:
    async def body(engine: Any) -> tuple[int, str, str]:
        url = engine.api.url
        loop = asyncio.get_running_loop()
        me = ["agent", "--url", url, "--user", "1001", "--password", DEMO_AGENT_PASSWORD]
        for agent_id in ("1002", "1003", "1004"):
            engine.set_agent_not_ready(agent_id, "busy")
        result: dict[str, Any] = {}

        def watch() -> None:
            code, out, err = run_cli([*me, "watch", "--count", "6", "--seconds", "60"])
            result.update(code=code, out=out, err=err)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        for _ in range(500):  # until the desktop is connected (real time, virtual time held)
            if engine.api._desktops:
                break
            await loop.run_in_executor(None, time.sleep, 0.01)
        assert engine.api._desktops, "watch did not connect"
        caller = Caller(LocalLine(engine.board.line(1)))
        await caller.dial("13912345678")
        await caller.expect("人工服务请按零")
        await caller.press("0")
        far = engine.board.line("s1").far_end
        assert await far.wait_for(lambda: far.call is not None, 30)
        far.off_hook()
        await caller.expect("为您服务")
        code, out, _ = await cli(*me, "hold")
        assert code == 0 and "on hold" in out
        await caller.expect("（等待音乐）")
        code, out, _ = await cli(*me, "resume")
        assert code == 0
        code, out, _ = await cli(*me, "hangup")
        assert code == 0 and "wrap_up" in out
        await caller.expect("感谢您的来电")
        await caller.hang_up()
        await loop.run_in_executor(None, watcher.join, 20)
        return result["code"], result["out"], result["err"]

    code, out, err = with_engine(api_config, body)
    assert code == 0, err
    assert "CONNECTED as 1001 (agent), agent 1001: ready idle" in out
    assert "SCREEN-POP call" in out and "caller 13912345678" in out
    assert "account 1234567890  customer 张伟" in out  # found by the caller's number
    assert "keys 0" in out and "main:menu" in out
    assert "STATE agent 1001: agent_state reserved" in out
