"""The agent control API: HTTP + WebSocket for agent desktops and testers (docs/agent_api.md).

Served by the engine (``api:`` in the configuration, default ``127.0.0.1:8598``) with aiohttp.
``POST /api/login`` with a user name and password (users in the store, see
:mod:`hotline.services.api_users`) returns a bearer token (:mod:`hotline.auth`: random,
expiring, kept in memory only); every other endpoint requires it. An ``agent`` user acts only
as their own agent, a ``supervisor`` on any agent, and only a supervisor reads the queue
figures. Failed logins are counted per user name and per source address; too many lock the
key out for a while (429) and are logged.

Agent endpoints (``/api/agents/{id}/…``): ``login`` (optionally at a ``seat``), ``logout``,
``ready``, ``not-ready`` (``reason``: ``busy`` 示忙, ``rest`` 休息, any site reason),
``wrap-up-done``, ``hold``, ``resume``, ``transfer`` (``queue`` or ``agent``), ``hangup``, and
``GET`` for the status. ``GET /api/ws`` upgrades to a WebSocket that pushes the agent's state
changes, call events and the CTI screen-pop (:mod:`hotline.agent_api_pop`) as JSON.

Errors are JSON ``{"error": code, "reason": text}``: 400 bad input, 401 no or bad token or
password, 403 not allowed for this user, 404 unknown agent/queue, 409 not possible in the
agent's or call's current state, 429 locked out.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from acd.agents import TransitionError
from acd.stats import snapshot
from drivers.clock import VirtualClockLoop, real_work
from hotline.agent_api_pop import jsonable, screen_pop
from hotline.auth import LoginThrottle, TokenStore
from hotline.bus import Event
from hotline.contact_center import CallControlError, ContactCenter
from hotline.services.api_users import User, check_password, ensure_demo_users

log = structlog.get_logger(__name__)

WS_QUEUE = 1000  # messages waiting for a slow desktop before it is disconnected
CALL_EVENTS = (
    "queue.offer",
    "queue.ring_no_answer",
    "queue.connect",
    "queue.transfer",
    "queue.complete_caller",
    "queue.complete_agent",
    "queue.call_finished",
    "queue.consult",
)
STATE_EVENTS = ("queue.agent_status", "queue.agent_state")
MAX_BODY = 16 * 1024
TOKEN_KEY = web.RequestKey("token", str)  # the bearer token of an authenticated request
ADDRESS_FACTOR = 4  # failures from one address before it is locked: 4x the per-user limit

class ApiError(Exception):
    """An error answered as JSON with an HTTP status."""

    def __init__(self, status: int, code: str, reason: str, **headers: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason, self.headers = status, code, reason, headers


class _Desktop:
    """One WebSocket connection: whose events it gets, and its outgoing queue."""

    def __init__(self, ws: web.WebSocketResponse, user: User, agent_id: str | None) -> None:
        self.ws = ws
        self.user = user
        self.agent_id = agent_id  # None: a supervisor watching every agent
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(WS_QUEUE)

    def wants(self, agent_id: str | None) -> bool:
        return agent_id is not None and self.agent_id in (None, agent_id)

    def push(self, message: dict[str, Any]) -> None:
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("api.ws_overflow", user=self.user.username, agent_id=self.agent_id)
            with contextlib.suppress(asyncio.QueueFull):
                self.outbox.get_nowait()
                self.outbox.put_nowait(None)  # the writer closes the connection


class AgentApi:
    """The HTTP/WebSocket server of one engine (see the module docstring)."""

    def __init__(self, engine: Any, settings: Any) -> None:
        self.engine = engine
        self.settings = settings
        self.tokens: TokenStore[User] = TokenStore(settings.token_ttl)
        self.throttle = LoginThrottle(  # per user name
            max_failures=settings.max_failures, window=settings.lockout, lockout=settings.lockout
        )
        self.address_throttle = LoginThrottle(  # per source: a desk room may share an address
            max_failures=settings.max_failures * ADDRESS_FACTOR,
            window=settings.lockout,
            lockout=settings.lockout,
        )
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._desktops: set[_Desktop] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Callable[[], None] | None = None

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        if self.engine.config.demo_data:
            async with real_work():
                created = await ensure_demo_users(self.engine.db)
            if created:
                log.info("api.demo_users_created")
        app = web.Application(middlewares=[self._errors], client_max_size=MAX_BODY)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        host, port = self.settings.host, self.settings.port
        try:
            site = web.TCPSite(self._runner, host, port)
            await site.start()
        except OSError as exc:
            if not isinstance(asyncio.get_running_loop(), VirtualClockLoop):
                from hotline.engine import EngineError

                await self._runner.cleanup()
                self._runner = None
                raise EngineError(
                    f"agent API cannot listen on {host}:{port} ({exc}); set api.port, or "
                    "api.enabled: false"
                ) from exc
            # scenarios and tests on the virtual clock next to a running engine
            log.warning("api.port_busy_using_any", port=port, error=str(exc))
            site = web.TCPSite(self._runner, host, 0)
            await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        self._unsubscribe = self.engine.bus.subscribe("queue.", self._on_queue_event)
        log.info("api.listening", host=host, port=self.port)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for task in list(self._tasks):
            task.cancel()
        for desktop in list(self._desktops):
            with contextlib.suppress(Exception):
                await desktop.ws.close(message=b"engine stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    # --- routing --------------------------------------------------------------------------
    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/login", self._login)
        r.add_post("/api/logout", self._authed(self._logout))
        r.add_get("/api/me", self._authed(self._me))
        r.add_get("/api/agents", self._authed(self._agents))
        r.add_get("/api/agents/{agent}", self._authed(self._agent_status))
        actions: dict[str, Callable[[User, str, dict[str, Any]], Awaitable[Any]]] = {
            "login": self._agent_login,
            "logout": self._agent_logout,
            "ready": self._agent_ready,
            "not-ready": self._agent_not_ready,
            "wrap-up-done": self._agent_wrap_up_done,
            "hold": self._agent_hold,
            "resume": self._agent_resume,
            "transfer": self._agent_transfer,
            "hangup": self._agent_hangup,
            "consult": self._agent_consult,
            "consult-complete": self._agent_consult_complete,
            "consult-cancel": self._agent_consult_cancel,
        }
        for name, action in actions.items():
            r.add_post(f"/api/agents/{{agent}}/{name}", self._authed(self._agent_action(action)))
        r.add_get("/api/queues", self._authed(self._queues))
        r.add_get("/api/ws", self._ws)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, exc.code, exc.reason, exc.headers)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason, {})
            raise

    def _authed(self, handler: Callable[[web.Request, User], Awaitable[Any]]) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            user, token = self._user(request, allow_query=False)
            request[TOKEN_KEY] = token
            result = await handler(request, user)
            return result if isinstance(result, web.StreamResponse) else _json(200, result)

        return wrapped

    def _user(self, request: web.Request, *, allow_query: bool) -> tuple[User, str]:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not token and allow_query:
            token = request.query.get("token", "")
        if not token:
            raise ApiError(401, "unauthorized", "log in first: Authorization: Bearer <token>",
                           **{"WWW-Authenticate": "Bearer"})
        user = self.tokens.user(token, self._now())
        if user is None:
            raise ApiError(401, "unauthorized", "the token is unknown, expired or logged out",
                           **{"WWW-Authenticate": "Bearer"})
        return user, token

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _center(self) -> ContactCenter:
        center = self.engine.contact_center
        if center is None:
            raise ApiError(409, "no_queues", "no queues are configured on this engine")
        return center

    def _check_agent(self, user: User, agent_id: str) -> None:
        if agent_id not in self._center().acd.agents:
            raise ApiError(404, "unknown_agent", f"no agent {agent_id!r}")
        if not user.may_act_for(agent_id):
            raise ApiError(403, "forbidden", f"user {user.username} may act only as agent "
                           f"{user.agent_id}, not {agent_id}")

    # --- session --------------------------------------------------------------------------
    async def _login(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or not username:
            raise ApiError(400, "bad_request", "send {\"username\": ..., \"password\": ...}")
        now = self._now()
        address = request.remote or "?"
        throttles = ((self.throttle, username), (self.address_throttle, address))
        wait = max(t.locked_for(key, now) for t, key in throttles)
        if wait > 0:
            log.warning("api.login_locked", username=username, address=address, wait=round(wait))
            raise ApiError(429, "locked", f"too many failed logins; try again in {wait:.0f} s",
                           **{"Retry-After": str(int(wait) + 1)})
        async with real_work():  # the store and the hash: outside work for a virtual clock
            user = await check_password(self.engine.db, username, password)
        if user is None:
            locked = [key for t, key in throttles if t.failed(key, self._now())]
            log.warning("api.login_failed", username=username, address=address,
                        locked=locked)
            raise ApiError(401, "bad_credentials", "unknown user or wrong password")
        self.throttle.succeeded(username)
        token = self.tokens.issue(user, self._now())
        log.info("api.login", username=username, role=user.role, agent_id=user.agent_id)
        return _json(200, {"token": token, "expires_in": self.tokens.ttl, "role": user.role,
                           "agent_id": user.agent_id, "username": user.username})

    async def _logout(self, request: web.Request, user: User) -> dict[str, Any]:
        self.tokens.revoke(request[TOKEN_KEY])
        log.info("api.logout", username=user.username)
        return {"ok": True}

    async def _me(self, request: web.Request, user: User) -> dict[str, Any]:
        return {"username": user.username, "role": user.role, "agent_id": user.agent_id}

    # --- agents ---------------------------------------------------------------------------
    def status_of(self, agent_id: str) -> dict[str, Any]:
        center = self._center()
        status = self.engine.agent_status(agent_id)
        status["call"] = center.current_call(agent_id)
        return status

    async def _agents(self, request: web.Request, user: User) -> dict[str, Any]:
        center = self._center()
        ids = sorted(center.acd.agents) if user.role == "supervisor" else [user.agent_id]
        return {"agents": [self.status_of(a) for a in ids if a in center.acd.agents]}

    async def _agent_status(self, request: web.Request, user: User) -> dict[str, Any]:
        agent_id = request.match_info["agent"]
        self._check_agent(user, agent_id)
        return self.status_of(agent_id)

    def _agent_action(
        self, action: Callable[[User, str, dict[str, Any]], Awaitable[Any]]
    ) -> Callable[[web.Request, User], Awaitable[Any]]:
        async def handler(request: web.Request, user: User) -> dict[str, Any]:
            agent_id = request.match_info["agent"]
            self._check_agent(user, agent_id)
            body = await _body(request)
            try:
                extra = await action(user, agent_id, body)
            except (TransitionError, CallControlError) as exc:
                raise ApiError(409, "conflict", str(exc)) from exc
            except KeyError as exc:
                raise ApiError(404, "not_found", str(exc.args[0] if exc.args else exc)) from exc
            except ValueError as exc:
                raise ApiError(400, "bad_request", str(exc)) from exc
            action_name = request.path.rsplit("/", 1)[-1]
            log.info("api.agent_action", agent_id=agent_id, action=action_name,
                     user=user.username, **(extra or {}))
            return {**self.status_of(agent_id), **(extra or {})}

        return handler

    async def _agent_login(self, user: User, agent_id: str, body: dict[str, Any]) -> Any:
        center = self._center()
        ready = body.get("ready", True)
        reason = body.get("reason")
        seat = body.get("seat")
        if not isinstance(ready, bool):
            raise ValueError("ready must be true or false")
        if reason is not None and not isinstance(reason, str):
            raise ValueError("reason must be a string")
        kwargs: dict[str, Any] = {"ready": ready, "reason": reason}
        if seat is not None:
            if not isinstance(seat, str) or not seat:
                raise ValueError("seat must be a seat name (a station line or a SIP seat)")
            if "seat" in inspect.signature(center.login).parameters:
                kwargs["seat"] = seat
            elif seat != center.agent(agent_id).seat:
                raise ValueError(f"agent {agent_id} sits at {center.agent(agent_id).seat}; "
                                 "choosing another seat is not available on this engine")
        center.login(agent_id, **kwargs)
        return None

    async def _agent_logout(self, user: User, agent_id: str, body: dict[str, Any]) -> Any:
        self._center().logout(agent_id)

    async def _agent_ready(self, user: User, agent_id: str, body: dict[str, Any]) -> Any:
        self._center().set_ready(agent_id)

    async def _agent_not_ready(self, user: User, agent_id: str, body: dict[str, Any]) -> Any:
        reason = body.get("reason", "busy")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 32:
            raise ValueError("reason must be a short text: busy (示忙), rest (休息), …")
        self._center().set_not_ready(agent_id, reason.strip())

    async def _agent_wrap_up_done(self, user: User, agent_id: str, body: dict[str, Any]) -> Any:
        self._center().end_wrap_up(agent_id)

    async def _agent_hold(self, user: User, agent_id: str, body: dict[str, Any]) -> Any:
        return {"call_id": self._center().hold(agent_id)}

    async def _agent_resume(self, user: User, agent_id: str, body: dict[str, Any]) -> Any:
        return {"call_id": self._center().resume(agent_id)}

    async def _agent_transfer(self, user: User, agent_id: str, body: dict[str, Any]) -> Any:
        queue, agent = body.get("queue"), body.get("agent")
        if (queue is None) == (agent is None):
            raise ValueError('send {"queue": NAME} or {"agent": ID}')
        target = queue if queue is not None else agent
        if not isinstance(target, str) or not target:
            raise ValueError("the transfer target must be a queue name or an agent id")
        center = self._center()
        if queue is not None and queue not in center.queues:
            raise KeyError(f"no queue {queue!r}")
        if agent is not None and agent not in center.acd.agents:
            raise KeyError(f"no agent {agent!r}")
        return {"call_id": center.transfer_call(agent_id, target), "target": target}

    async def _agent_hangup(self, user: User, agent_id: str, body: dict[str, Any]) -> Any:
        return {"call_id": await self._center().hangup(agent_id)}

    async def _agent_consult(self, user: User, agent_id: str, body: dict[str, Any]) -> Any:
        target = body.get("agent")
        if not isinstance(target, str) or not target:
            raise ValueError('send {"agent": ID} (the agent to consult)')
        if target not in self._center().acd.agents:
            raise KeyError(f"no agent {target!r}")
        return {"call_id": self._center().consult(agent_id, target), "target": target}

    async def _agent_consult_complete(
        self, user: User, agent_id: str, body: dict[str, Any]
    ) -> Any:
        return {"call_id": await self._center().complete_consult(agent_id)}

    async def _agent_consult_cancel(self, user: User, agent_id: str, body: dict[str, Any]) -> Any:
        return {"call_id": self._center().cancel_consult(agent_id)}

    async def _queues(self, request: web.Request, user: User) -> dict[str, Any]:
        if user.role != "supervisor":
            raise ApiError(403, "forbidden", "queue figures are for supervisors")
        return jsonable(snapshot(self._center().acd, self._now()))

    # --- WebSocket ------------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        user, _token = self._user(request, allow_query=True)
        agent_id = request.query.get("agent") or user.agent_id
        if agent_id is not None:
            self._check_agent(user, agent_id)
        elif user.role != "supervisor":
            raise ApiError(400, "bad_request", "which agent? add ?agent=ID")
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        desktop = _Desktop(ws, user, agent_id)
        self._desktops.add(desktop)
        hello: dict[str, Any] = {"type": "hello", "user": user.username, "role": user.role,
                                 "agent_id": agent_id}
        if agent_id is not None:
            hello["status"] = self.status_of(agent_id)
        desktop.push(hello)
        writer = asyncio.create_task(self._write(desktop), name=f"ws {user.username}")
        try:
            async for message in ws:  # the desktop sends nothing we act on but pings
                if message.type == WSMsgType.TEXT and message.data == "ping":
                    desktop.push({"type": "pong"})
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            self._desktops.discard(desktop)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _write(self, desktop: _Desktop) -> None:
        try:
            while True:
                message = await desktop.outbox.get()
                if message is None:
                    await desktop.ws.close(message=b"too slow")
                    return
                await desktop.ws.send_str(json.dumps(message, ensure_ascii=False))
        except (ConnectionError, RuntimeError) as exc:  # the desktop went away meanwhile
            log.info("api.ws_gone", user=desktop.user.username, error=str(exc))

    def _on_queue_event(self, event: Event) -> None:
        agent_id = event.data.get("agent_id")
        consulted = event.data.get("target") if event.kind == "queue.consult" else None
        desktops = [d for d in self._desktops if d.wants(agent_id) or d.wants(consulted)]
        if not desktops:
            return
        if event.kind == "queue.screen_pop":
            task = asyncio.create_task(self._pop(event, desktops), name="screen-pop")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        if event.kind in STATE_EVENTS:
            message = {"type": "state", "event": event.kind.split(".", 1)[1],
                       "agent_id": agent_id, "call_id": event.call_id,
                       **jsonable(event.data), "now": self._safe_status(agent_id)}
        elif event.kind in CALL_EVENTS:
            message = {"type": "call", "event": event.kind.split(".", 1)[1],
                       "agent_id": agent_id, "call_id": event.call_id, **jsonable(event.data)}
        else:
            return
        for desktop in desktops:
            desktop.push(message)

    def _safe_status(self, agent_id: str) -> dict[str, Any] | None:
        try:
            return self.status_of(agent_id)
        except (KeyError, ApiError):
            return None

    async def _pop(self, event: Event, desktops: list[_Desktop]) -> None:
        assert event.call_id is not None
        try:
            message = await screen_pop(self.engine.db, event.call_id, dict(event.data))
        except Exception:  # the desktop still gets what the flow handed over
            log.exception("api.screen_pop_failed", call_id=event.call_id)
            message = {"type": "screen_pop", "call_id": event.call_id, **jsonable(event.data)}
        log.info("api.screen_pop", call_id=event.call_id, agent_id=message.get("agent_id"),
                 account=message.get("account"))
        for desktop in desktops:
            desktop.push(message)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return body


def _json(status: int, body: Any) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False),
        content_type="application/json",
    )


def _error(status: int, code: str, reason: str, headers: dict[str, str]) -> web.Response:
    response = _json(status, {"error": code, "reason": reason})
    response.headers.update(headers)
    return response
