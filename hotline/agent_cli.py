"""``hotline agent …``: the agent control API from a shell, for testers (docs/agent_api.md).

Each command logs in to the API of a running engine with a user name and password (options
``--user``/``--password`` or the environment ``HOTLINE_API_USER``/``HOTLINE_API_PASSWORD``),
acts on an agent (``--agent``; default: the user's own agent), prints the result and logs
out again (the token is revoked), so nothing is left on disk::

    hotline agent --user 1001 --password agent-95598 login --seat s1
    hotline agent --user 1001 --password agent-95598 notready rest
    hotline agent --user supervisor --password super-95598 --agent 1002 status
    hotline agent --user 1001 --password agent-95598 transfer --to-queue fault
    hotline agent --user 1001 --password agent-95598 consult --to-agent 1002   # then complete
    hotline agent --user 1001 --password agent-95598 watch          # screen-pops, states

Exit status: 0 done, 1 the API refused (the reason is printed), 2 bad usage, 3 the engine
cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from typing import Any, TextIO

DEFAULT_URL = "http://127.0.0.1:8598"
EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3

# command -> (HTTP method, path after /api/agents/{id}, help)
ACTIONS: dict[str, tuple[str, str, str]] = {
    "login": ("POST", "login", "log the agent in (ready, or --not-ready REASON) at their seat"),
    "logout": ("POST", "logout", "log the agent out"),
    "ready": ("POST", "ready", "ready for calls"),
    "notready": ("POST", "not-ready", "not ready with a reason: busy 示忙, rest 休息, …"),
    "wrapup": ("POST", "wrap-up-done", "end the wrap-up now"),
    "hold": ("POST", "hold", "put the caller on hold (music)"),
    "resume": ("POST", "resume", "take the caller off hold"),
    "transfer": ("POST", "transfer", "blind transfer to a queue or another agent"),
    "hangup": ("POST", "hangup", "hang up the call"),
    "consult": ("POST", "consult", "consult another agent (the caller on hold)"),
    "complete": ("POST", "consult-complete", "hand the caller to the agent consulted"),
    "cancel": ("POST", "consult-cancel", "end the consultation, take the caller back"),
    "status": ("GET", "", "print the agent's status, state and call"),
}


class AgentCliError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def add_agent_commands(sub: Any) -> None:
    """Add ``agent`` and its actions to the ``hotline`` command's subparsers."""
    agent = sub.add_parser(
        "agent",
        help="agent control through a running engine's API",
        description="Act as an agent (or a supervisor on an agent) through the agent API.",
    )
    agent.add_argument(
        "--url", default=os.environ.get("HOTLINE_API_URL", DEFAULT_URL),
        help=f"the engine's API (default $HOTLINE_API_URL or {DEFAULT_URL})",
    )
    agent.add_argument("--user", default=os.environ.get("HOTLINE_API_USER"),
                       help="API user name (default $HOTLINE_API_USER)")
    agent.add_argument("--password", default=os.environ.get("HOTLINE_API_PASSWORD"),
                       help="API password (default $HOTLINE_API_PASSWORD)")
    agent.add_argument("--agent", dest="agent_id",
                       help="the agent to act on (default: the user's own agent)")
    agent.add_argument("--json", action="store_true", help="print raw JSON")
    agent.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    actions = agent.add_subparsers(metavar="ACTION", dest="action")
    for name, (_method, _path, text) in ACTIONS.items():
        p = actions.add_parser(name, help=text)
        if name == "login":
            p.add_argument("--seat", help="sit at this seat (station line s2, SIP seat sip:1001)")
            p.add_argument("--not-ready", metavar="REASON", help="log in not ready")
        elif name == "notready":
            p.add_argument("reason", nargs="?", default="busy", help="default: busy (示忙)")
        elif name == "consult":
            p.add_argument("--to-agent", required=True, help="agent id")
        elif name == "transfer":
            target = p.add_mutually_exclusive_group(required=True)
            target.add_argument("--to-queue", help="queue name")
            target.add_argument("--to-agent", help="agent id")
        p.set_defaults(handler=cmd_agent)
    watch = actions.add_parser("watch", help="print screen-pops and state changes as they come")
    watch.add_argument("--count", type=int, default=0, help="stop after N messages (0: never)")
    watch.add_argument("--seconds", type=float, default=0.0, help="stop after S seconds")
    watch.set_defaults(handler=cmd_agent)
    agent.set_defaults(handler=lambda args: _usage(agent))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def cmd_agent(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one ``hotline agent`` action; ``out``/``err`` default to stdout/stderr."""
    out, err = out or sys.stdout, err or sys.stderr
    if not args.user or not args.password:
        print("hotline agent: give --user and --password (or HOTLINE_API_USER and "
              "HOTLINE_API_PASSWORD)", file=err)
        return EXIT_USAGE
    try:
        return asyncio.run(_run(args, out, err))
    except AgentCliError as exc:
        print(f"hotline agent {args.action}: {exc}", file=err)
        return exc.code


async def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import aiohttp

    base = args.url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        me = await _request(session, "POST", f"{base}/api/login", None,
                            {"username": args.user, "password": args.password})
        token = me["token"]
        try:
            agent_id = args.agent_id or me.get("agent_id")
            if not agent_id and args.action != "watch":
                raise AgentCliError(EXIT_USAGE, f"user {args.user} is not an agent: give --agent")
            if args.action == "watch":
                return await _watch(session, base, token, agent_id, args, out, err)
            method, path, _ = ACTIONS[args.action]
            body: dict[str, Any] = {}
            if args.action == "login":
                if args.seat:
                    body["seat"] = args.seat
                if args.not_ready:
                    body.update(ready=False, reason=args.not_ready)
            elif args.action == "notready":
                body["reason"] = args.reason
            elif args.action == "transfer":
                body = {"queue": args.to_queue} if args.to_queue else {"agent": args.to_agent}
            elif args.action == "consult":
                body = {"agent": args.to_agent}
            url = f"{base}/api/agents/{agent_id}" + (f"/{path}" if path else "")
            result = await _request(session, method, url, token, body if method == "POST" else None)
            print(json.dumps(result, ensure_ascii=False) if args.json else _status_line(result),
                  file=out, flush=True)
            return 0
        finally:
            with contextlib.suppress(Exception):
                await _request(session, "POST", f"{base}/api/logout", token, {})


async def _request(
    session: Any, method: str, url: str, token: str | None, body: dict[str, Any] | None
) -> dict[str, Any]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with session.request(method, url, json=body, headers=headers) as response:
            try:
                data = await response.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError):
                data = {"error": "bad_response", "reason": (await response.text())[:200]}
            if response.status >= 400:
                reason = data.get("reason", "") if isinstance(data, dict) else str(data)
                code = data.get("error", "") if isinstance(data, dict) else ""
                raise AgentCliError(EXIT_REFUSED, f"{response.status} {code}: {reason}")
            return data if isinstance(data, dict) else {"result": data}
    except (TimeoutError, aiohttp.ClientConnectionError) as exc:
        raise AgentCliError(
            EXIT_UNREACHABLE, f"cannot reach the engine's API at {url}: {exc or 'timeout'}"
        ) from exc


async def _watch(
    session: Any, base: str, token: str, agent_id: str | None, args: argparse.Namespace,
    out: TextIO, err: TextIO,
) -> int:
    import aiohttp

    url = base.replace("http", "ws", 1) + "/api/ws" + (f"?agent={agent_id}" if agent_id else "")
    try:
        ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
    except aiohttp.WSServerHandshakeError as exc:
        raise AgentCliError(EXIT_REFUSED, f"{exc.status} {exc.message}") from exc
    except aiohttp.ClientConnectionError as exc:
        raise AgentCliError(EXIT_UNREACHABLE, f"cannot reach {url}: {exc}") from exc
    count = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.seconds if args.seconds > 0 else None
    async with ws:
        while args.count <= 0 or count < args.count:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            try:
                message = await asyncio.wait_for(ws.receive(), left)
            except TimeoutError:
                break
            if message.type != aiohttp.WSMsgType.TEXT:
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    print("hotline agent watch: the engine closed the connection",
                          file=err)
                    return EXIT_UNREACHABLE
                continue
            data = json.loads(message.data)
            text = message.data if args.json else describe(data)
            print(text, file=out, flush=True)
            count += 1
    return 0


def _status_line(status: dict[str, Any]) -> str:
    reason = f" ({status['reason']})" if status.get("reason") else ""
    call = status.get("call")
    on_call = ""
    if call:
        held = ", on hold" if call.get("held") else ""
        on_call = f"; call {call['call_id']} from {call.get('caller') or '?'}{held}"
    return (f"agent {status.get('id')} {status.get('name', '')}: {status.get('status')}{reason}, "
            f"{status.get('state')} at {status.get('seat')}{on_call}")


def describe(message: dict[str, Any]) -> str:
    """One WebSocket message as text for a terminal."""
    kind = message.get("type")
    if kind == "screen_pop":
        customer = message.get("customer") or {}
        lines = [
            f"SCREEN-POP call {message.get('call_id')} for agent {message.get('agent_id')} "
            f"(queue {message.get('queue')}): caller {message.get('caller')}",
            f"  account {message.get('account') or '-'}  customer {customer.get('name', '-')}"
            f"  {customer.get('area', '')} {customer.get('address', '')}".rstrip(),
            f"  IVR path {' > '.join(message.get('ivr', {}).get('path', []))}",
            f"  keys {message.get('ivr', {}).get('keys', '')}",
        ]
        for order in message.get("work_orders") or []:
            lines.append(f"  open work order {order.get('number')} {order.get('type')} "
                         f"{order.get('fault_type') or ''} {order.get('status')}".rstrip())
        for contact in message.get("last_contacts") or []:
            lines.append(f"  last contact {contact.get('started_at')} {contact.get('result')} "
                         f"{contact.get('last_step')}")
        return "\n".join(lines)
    if kind == "state":
        what = message.get("state") or message.get("status")
        reason = f" ({message['reason']})" if message.get("reason") else ""
        return f"STATE agent {message.get('agent_id')}: {message.get('event')} {what}{reason}"
    if kind == "call":
        agent, event = message.get("agent_id"), message.get("event")
        return f"CALL agent {agent}: {event} {message.get('call_id')}"
    if kind == "hello":
        status = message.get("status") or {}
        return (f"CONNECTED as {message.get('user')} ({message.get('role')}), agent "
                f"{message.get('agent_id') or 'all'}: {status.get('status', '-')} "
                f"{status.get('state', '')}".rstrip())
    return json.dumps(message, ensure_ascii=False)
