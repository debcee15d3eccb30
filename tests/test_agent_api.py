"""The agent control API over real HTTP and WebSocket on 127.0.0.1, against a real engine.

The engine runs on the simulated board and the virtual clock; the aiohttp client talks to
the engine's API server over a loopback socket in the same loop. Loopback delivers a request
or a WebSocket message at once, so the loop serves it within a media tick or two of virtual
time; virtual time is not held while a request is out, because a handler may wait for the
call itself (an agent's hangup returns once the call is over). The server marks its own
database work as outside work (``real_work``).

Asserted: logins, roles (an agent acting for another agent: 403), bad passwords (401) and the
lockout (429); ready / not ready changing the ACD; a caller reporting a dangerous fault
reaching agent 1004 whose WebSocket gets the screen-pop (account, customer, IVR path, keys,
the work order the flow just submitted, the caller's previous call); hold (the caller hears
the music), transfer to agent 1001 (whose seat rings and who talks to the caller; TRANSFER in
the queue log), hangup and wrap-up by the agent, all through the API.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from drivers.simboard.line import FarEnd
from hotline.services.api_users import DEMO_AGENT_PASSWORD, DEMO_SUPERVISOR_PASSWORD
from ivr.speech.readout import say
from sim.caller import Caller, LocalLine
from support import REPO, make_config, with_engine


@pytest.fixture
def api_config(engine_template: Path, tmp_path: Path) -> Any:
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    config = make_config(
        tmp_path, cache=engine_template / "cache", acd={"queues_dir": str(REPO / "queues")}
    )
    config.api.port = 0  # any free port: tests run side by side
    return config


class Desk:
    """An HTTP client of the API (one aiohttp session)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.token: str | None = None

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        token = token or self.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # no real_work() here: a handler may wait for the call (hangup), which needs the
        # virtual clock to run; loopback delivers at once, so nothing is lost meanwhile
        async with self.session.request(
            method, self.base + path, json=body, headers=headers
        ) as response:
            return response.status, await response.json()

    async def login(self, username: str, password: str) -> dict[str, Any]:
        status, body = await self.call("POST", "/api/login", {"username": username, "password": password})
        assert status == 200, body
        self.token = body["token"]
        return body

    async def websocket(self, agent: str | None = None) -> aiohttp.ClientWebSocketResponse:
        url = self.base.replace("http", "ws") + "/api/ws" + (f"?agent={agent}" if agent else "")
        return await self.session.ws_connect(url, headers={"Authorization": f"Bearer {self.token}"})


class Inbox:
    """What one WebSocket received; :meth:`expect` finds a message however it was ordered
    among the others (a screen-pop is built from the store, so it may follow later events)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.taken: set[int] = set()

    async def expect(self, wanted: str, timeout: float = 60, **match: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = 0
        while True:
            for i in range(seen, len(self.messages)):
                m = self.messages[i]
                if i not in self.taken and m["type"] == wanted and all(m.get(k) == v for k, v in match.items()):
                    self.taken.add(i)
                    return m
            seen = len(self.messages)
            left = deadline - loop.time()
            assert left > 0, f"no {wanted} {match} within {timeout} s: {self.messages}"
            self.messages.append(await asyncio.wait_for(self.ws.receive_json(), left))


def ringing(far: FarEnd) -> bool:
    return far.call is not None and far.call.answered is None and far.call.ended is None


async def seat_rings(engine: Any, seat: str, timeout: float = 30) -> FarEnd:
    far = engine.board.line(seat).far_end
    assert await far.wait_for(lambda: ringing(far), timeout), f"seat {seat} did not ring"
    return far


def test_login_roles_errors_and_ready_not_ready(api_config: Any) -> None:
    async def body(engine: Any) -> None:
        async with aiohttp.ClientSession() as session:
            desk = Desk(session, engine.api.url)
            status, got = await desk.call("POST", "/api/login", {"username": "1001", "password": "wrong-pass"})
            assert (status, got["error"]) == (401, "bad_credentials")
            status, got = await desk.call("POST", "/api/login", {"username": "1001"})
            assert (status, got["error"]) == (400, "bad_request")
            status, got = await desk.call("GET", "/api/agents/1001")
            assert (status, got["error"]) == (401, "unauthorized")
            status, got = await desk.call("GET", "/api/agents/1001", token="made-up")
            assert status == 401 and "expired" in got["reason"]

            me = await desk.login("1001", DEMO_AGENT_PASSWORD)
            assert (me["role"], me["agent_id"]) == ("agent", "1001")
            status, got = await desk.call("POST", "/api/agents/1001/not-ready", {"reason": "rest"})
            assert status == 200 and (got["status"], got["reason"]) == ("not_ready", "rest")
            assert engine.agent_status("1001")["reason"] == "rest"  # the ACD changed
            status, got = await desk.call("POST", "/api/agents/1001/ready")
            assert status == 200 and engine.agent_status("1001")["status"] == "ready"
            status, got = await desk.call("POST", "/api/agents/1002/not-ready", {"reason": "busy"})
            assert (status, got["error"]) == (403, "forbidden")
            assert engine.agent_status("1002")["status"] == "ready"  # unchanged
            status, got = await desk.call("GET", "/api/agents/1002")
            assert status == 403
            status, got = await desk.call("GET", "/api/agents/9999")
            assert (status, got["error"]) == (404, "unknown_agent")
            status, got = await desk.call("GET", "/api/queues")
            assert status == 403
            status, got = await desk.call("POST", "/api/agents/1001/hold")
            assert status == 409 and "not talking" in got["reason"]
            status, got = await desk.call("POST", "/api/agents/1001/login")
            assert status == 409  # already logged in
            status, got = await desk.call("POST", "/api/agents/1001/transfer", {"queue": "x", "agent": "y"})
            assert status == 400
            status, got = await desk.call("POST", "/api/agents/1001/logout")
            assert status == 200 and got["status"] == "logged_out"
            status, got = await desk.call("POST", "/api/agents/1001/login", {"ready": False, "reason": "busy"})
            assert status == 200 and (got["status"], got["reason"]) == ("not_ready", "busy")

            boss = Desk(session, engine.api.url)
            await boss.login("supervisor", DEMO_SUPERVISOR_PASSWORD)
            status, got = await boss.call("POST", "/api/agents/1002/not-ready", {"reason": "meeting"})
            assert status == 200 and engine.agent_status("1002")["reason"] == "meeting"
            status, figures = await boss.call("GET", "/api/queues")
            assert status == 200 and set(figures["queues"]) == {"general", "fault"}
            status, got = await boss.call("GET", "/api/agents")
            assert [a["id"] for a in got["agents"]] == ["1001", "1002", "1003", "1004"]

            status, _ = await desk.call("POST", "/api/logout")
            assert status == 200
            status, got = await desk.call("GET", "/api/agents/1001")
            assert status == 401  # the token was revoked

            for _ in range(5):
                status, _ = await desk.call("POST", "/api/login", {"username": "1003", "password": "nope-nope"})
                assert status == 401
            status, got = await desk.call("POST", "/api/login", {"username": "1003", "password": DEMO_AGENT_PASSWORD})
            assert (status, got["error"]) == (429, "locked")
            await desk.login("1004", DEMO_AGENT_PASSWORD)  # other users are not locked out

    with_engine(api_config, body)


async def report_danger(engine: Any) -> Caller:
    """A caller reports fallen wires for account 1234567890: the flow submits a work order
    and transfers to the fault queue with priority 9."""
    caller = Caller(LocalLine(engine.board.line(1)))
    await caller.dial("13912345678")
    await caller.expect("人工服务请按零")
    await caller.press("2")
    await caller.expect("按户号报修请按一")
    await caller.press("1")
    await caller.expect("请输入您的十位户号")
    await caller.press("1234567890#")
    await caller.expect("危险情况请按三")
    await caller.press("3")
    await caller.expect("正在为您紧急转接人工服务")
    return caller


def test_screen_pop_hold_transfer_and_hangup_through_the_api(api_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        events: list[tuple[str, str | None, dict[str, Any]]] = []
        engine.bus.subscribe("queue.", lambda e: events.append((e.kind, e.data.get("agent_id"), e.data)))
        # an earlier call from the same number: the screen-pop lists it as a last contact
        earlier = Caller(LocalLine(engine.board.line(2)))
        await earlier.dial("13912345678")
        await earlier.expect("人工服务请按零")
        await earlier.hang_up()
        await engine.idle()
        (earlier_id,) = list(engine.outcomes)

        async with aiohttp.ClientSession() as session:
            zhao, zhang = Desk(session, engine.api.url), Desk(session, engine.api.url)
            await zhao.login("1004", DEMO_AGENT_PASSWORD)
            await zhang.login("1001", DEMO_AGENT_PASSWORD)
            ws_zhao, ws_zhang = Inbox(await zhao.websocket()), Inbox(await zhang.websocket())
            hello = await ws_zhao.expect("hello")
            assert hello["status"]["state"] == "idle"
            caller = await report_danger(engine)
            pop = await ws_zhao.expect("screen_pop")
            seat4 = await seat_rings(engine, "s4")  # expert routing: 1004 has fault level 9
            reserved = await ws_zhao.expect("state", agent_id="1004", state="reserved")
            seat4.off_hook()
            await caller.expect(f"工号{say('digits', '1004')}为您服务")
            await ws_zhao.expect("state", state="on_call")

            status, got = await zhao.call("POST", "/api/agents/1004/hold")
            assert status == 200 and got["state"] == "on_hold" and got["call"]["held"]
            await caller.expect("（等待音乐）")
            await ws_zhao.expect("state", state="on_hold")
            status, got = await zhao.call("POST", "/api/agents/1004/resume")
            assert status == 200 and got["state"] == "on_call"
            status, got = await zhang.call("POST", "/api/agents/1004/transfer", {"agent": "1001"})
            assert status == 403  # 1001 cannot transfer 1004's call
            status, got = await zhao.call("POST", "/api/agents/1004/transfer", {"agent": "1001"})
            assert status == 200 and got["target"] == "1001" and got["state"] == "wrap_up"
            assert got["call"] is None  # the caller left this agent
            pop_zhang = await ws_zhang.expect("screen_pop")
            seat1 = await seat_rings(engine, "s1")
            seat1.off_hook()
            await caller.expect(f"工号{say('digits', '1001')}为您服务")
            await caller.wait_quiet()
            status, on_call = await zhang.call("GET", "/api/agents/1001")
            status, got = await zhang.call("POST", "/api/agents/1001/hangup")
            assert status == 200
            ended = await ws_zhang.expect("call", event="complete_agent")
            status, wrap = await zhang.call("GET", "/api/agents/1001")
            status, done = await zhang.call("POST", "/api/agents/1001/wrap-up-done")
            await caller.hang_up()
            await ws_zhao.ws.close()
            await ws_zhang.ws.close()
        await engine.idle()
        return {"pop": pop, "pop_zhang": pop_zhang, "reserved": reserved, "on_call": on_call,
                "ended": ended, "wrap": wrap, "done": done, "events": events,
                "earlier": earlier_id, "seat1_ended": seat1.call.ended is not None}

    got = with_engine(api_config, body)
    pop = got["pop"]
    assert (pop["agent_id"], pop["seat"], pop["queue"]) == ("1004", "s4", "fault")
    assert pop["caller"] == "13912345678" and pop["account"] == "1234567890"
    assert pop["customer"]["name"] == "张伟" and pop["customer"]["area"] == "城东区"
    assert pop["ivr"]["keys"] == "2112345678903"  # fault, by account, the account, danger
    assert "fault_report:danger_agent" in pop["ivr"]["path"]
    (order,) = pop["work_orders"]
    assert (order["type"], order["fault_type"], order["status"]) == ("fault_repair", "danger", "submitted")
    assert order["account_no"] == "1234567890"
    assert [c["call_id"] for c in pop["last_contacts"]] == [got["earlier"]]
    assert got["pop_zhang"]["account"] == "1234567890" and got["pop_zhang"]["agent_id"] == "1001"
    assert got["pop_zhang"]["work_orders"][0]["number"] == order["number"]
    assert got["reserved"]["now"]["state"] == "reserved"
    assert got["on_call"]["state"] == "on_call" and got["on_call"]["call"]["caller"] == "13912345678"
    assert got["wrap"]["state"] == "wrap_up" and got["done"]["state"] == "idle"
    events = got["events"]
    transfers = [(a, d["target"]) for k, a, d in events if k == "queue.transfer"]
    assert transfers == [("1004", "1001")]
    assert [a for k, a, _ in events if k == "queue.connect"] == ["1004", "1001"]
    assert [a for k, a, _ in events if k == "queue.complete_agent"] == ["1001"]


def test_an_agent_logs_in_at_another_seat_and_its_calls_ring_there(api_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            desk = Desk(session, engine.api.url)
            await desk.login("supervisor", DEMO_SUPERVISOR_PASSWORD)
            for agent_id in ("1001", "1002", "1003", "1004"):
                status, _ = await desk.call("POST", f"/api/agents/{agent_id}/logout")
                assert status == 200
            status, taken = await desk.call("POST", "/api/agents/1002/login", {"seat": "bogus"})
            assert status == 400 and "seat" in taken["reason"]
            status, moved = await desk.call("POST", "/api/agents/1002/login", {"seat": "s3"})
            assert status == 200
            caller = Caller(LocalLine(engine.board.line(1)))
            await caller.dial("13912345678")
            await caller.expect("人工服务请按零")
            await caller.press("0")
            seat = await seat_rings(engine, "s3")
            seat.off_hook()
            await caller.expect(f"工号{say('digits', '1002')}为您服务")
            status, on_call = await desk.call("GET", "/api/agents/1002")
            status, _ = await desk.call("POST", "/api/agents/1002/hangup")
            await caller.expect("感谢您的来电")
            await caller.hang_up()
        await engine.idle()
        return {"moved": moved, "on_call": on_call}

    got = with_engine(api_config, body)
    assert (got["moved"]["seat"], got["moved"]["status"]) == ("s3", "ready")
    assert got["on_call"]["state"] == "on_call" and got["on_call"]["call"]["connected"]


def test_consultative_transfer_through_the_api(api_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            zhang, wang = Desk(session, engine.api.url), Desk(session, engine.api.url)
            await zhang.login("1001", DEMO_AGENT_PASSWORD)
            await wang.login("1002", DEMO_AGENT_PASSWORD)
            inbox = Inbox(await wang.websocket())
            caller = Caller(LocalLine(engine.board.line(1)))
            await caller.dial("13912345678")
            await caller.expect("人工服务请按零")
            await caller.press("0")
            (await seat_rings(engine, "s1")).off_hook()
            await caller.expect(f"工号{say('digits', '1001')}为您服务")
            status, got = await zhang.call("POST", "/api/agents/1001/consult", {"agent": "1009"})
            assert status == 404
            status, got = await zhang.call("POST", "/api/agents/1001/consult-complete")
            assert status == 409 and "not consulting" in got["reason"]
            status, got = await zhang.call("POST", "/api/agents/1001/consult", {"agent": "1002"})
            assert status == 200 and got["state"] == "on_hold"
            consulted = await inbox.expect("state", event="agent_status", reason="consult")
            await inbox.expect("call", event="consult", stage="ringing", target="1002")
            await caller.expect("（等待音乐）")
            seat2 = await seat_rings(engine, "s2")
            seat2.off_hook()
            status, wang_status = await wang.call("GET", "/api/agents/1002")
            status, got = await zhang.call("POST", "/api/agents/1001/consult-complete")
            assert status == 200 and got["state"] == "wrap_up", got
            pop = await inbox.expect("screen_pop")
            seat2 = await seat_rings(engine, "s2")
            seat2.off_hook()
            await caller.expect(f"工号{say('digits', '1002')}为您服务")
            status, on_call = await wang.call("GET", "/api/agents/1002")
            status, _ = await wang.call("POST", "/api/agents/1002/hangup")
            await caller.expect("感谢您的来电")
            await caller.hang_up()
            await inbox.ws.close()
        await engine.idle()
        return {"consulted": consulted, "wang": wang_status, "pop": pop, "on_call": on_call}

    got = with_engine(api_config, body)
    assert got["consulted"]["now"]["status"] == "not_ready"
    assert (got["wang"]["status"], got["wang"]["reason"]) == ("not_ready", "consult")
    assert got["pop"]["agent_id"] == "1002" and got["pop"]["caller"] == "13912345678"
    assert got["on_call"]["state"] == "on_call" and got["on_call"]["call"]["caller"] == "13912345678"
