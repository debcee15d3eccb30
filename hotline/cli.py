"""The ``hotline`` command: run the engine, check flows, drive the simulated board, DSP tools.

hotline run                         start the engine (simulated board, SQLite, demo data)
hotline flows check PATH...         validate flow files/folders (file:line:column: reason)
hotline flows schema                print the flow JSON Schema (for editors)
hotline sim call --line 3 --from 13912345678 --do 'expect:户号 press:1234567890# hangup:loop'
hotline sim run scenarios/          run scenario files (in-process, virtual clock) or --remote
hotline dtmf FILE.wav               print the DTMF digits found in a recording
hotline say amount 230.00           print the Chinese read-out of a value
hotline agent --user 1001 --password … login|logout|ready|notready|wrapup|hold|resume|transfer|
      hangup|status|watch           agent control through a running engine's API (hotline.agent_cli)
hotline seat password 1001 [--password-stdin] | hotline seat list
                                    SIP credentials of agent seats (hotline.seat_cli)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hotline.config import ConfigError, load_config
from hotline.logs import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hotline", description="95598 hotline IVR/ACD engine")
    p.add_argument("--config", help="site configuration YAML (default: $HOTLINE_CONFIG or none)")
    p.add_argument("--log-format", choices=["console", "json"], default=None)
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", help="start the engine")
    run.add_argument("--control-port", type=int, help="board control socket port (default 5599)")
    run.set_defaults(handler=_cmd_run)

    flows = sub.add_parser("flows", help="flow tools").add_subparsers(metavar="ACTION")
    check = flows.add_parser("check", help="validate flow files or folders")
    check.add_argument("paths", nargs="+")
    check.set_defaults(handler=_cmd_flows_check)
    schema = flows.add_parser("schema", help="print the flow JSON Schema")
    schema.set_defaults(handler=_cmd_flows_schema)

    sim = sub.add_parser("sim", help="drive the simulated board").add_subparsers(metavar="ACTION")
    call = sim.add_parser("call", help="make one call on a running engine's board")
    call.add_argument("--line", default="1", help="trunk line number or name (default 1)")
    call.add_argument("--from", dest="caller", default="13912345678", help="caller number")
    call.add_argument("--to", dest="called", default="95598", help="called number")
    call.add_argument(
        "--do",
        default="",
        help="actions: expect:TEXT press:KEYS silence:SECONDS "
        "speak:FILE.wav wait_quiet hangup:loop|busy|polarity (space separated)",
    )
    call.add_argument("--remote", default="127.0.0.1:5599", help="engine control socket")
    call.set_defaults(handler=_cmd_sim_call)
    seat = sim.add_parser("seat", help="be the agent at a station line of a running engine")
    seat.add_argument("--line", default="s1", help="station line (default s1)")
    seat.add_argument("--answer-after", type=float, default=1.0, help="seconds of ringing")
    seat.add_argument(
        "--talk",
        type=float,
        default=0.0,
        help="hang up after this many seconds (default: wait for the caller)",
    )
    seat.add_argument("--calls", type=int, default=1, help="calls to take, then exit")
    seat.add_argument("--remote", default="127.0.0.1:5599", help="engine control socket")
    seat.set_defaults(handler=_cmd_sim_seat)
    srun = sim.add_parser("run", help="run scenario files")
    srun.add_argument("paths", nargs="+")
    srun.add_argument(
        "--remote",
        help="HOST:PORT of a running engine (default: start one "
        "in-process on a virtual clock with a scratch database)",
    )
    srun.set_defaults(handler=_cmd_sim_run)

    dtmf = sub.add_parser("dtmf", help="print the DTMF digits in a WAV file")
    dtmf.add_argument("file")
    dtmf.set_defaults(handler=_cmd_dtmf)

    say = sub.add_parser("say", help="print the Chinese read-out of a value")
    say.add_argument(
        "kind", help="amount, balance, digits, phone, number, integer, date, time, percent"
    )
    say.add_argument("value")
    say.set_defaults(handler=_cmd_say)

    from hotline.agent_cli import add_agent_commands
    from hotline.seat_cli import add_seat_commands

    add_agent_commands(sub)
    add_seat_commands(sub)
    return p


def _config(args: argparse.Namespace, **overrides: Any) -> Any:
    config = load_config(args.config, overrides=overrides)
    configure_logging(args.log_format or config.log_format, args.log_level)
    return config


# --- run -------------------------------------------------------------------------------------
def _cmd_run(args: argparse.Namespace) -> int:
    from drivers.clock import new_loop
    from hotline.engine import Engine, EngineError

    config = _config(args)
    if args.control_port is not None:
        config.control.port = args.control_port
    engine = Engine(config)
    loop = new_loop()
    stop = asyncio.Event()

    async def serve() -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await engine.start()
        except EngineError as exc:
            print(f"hotline: {exc}", file=sys.stderr)
            return 1
        gc.collect()
        gc.freeze()  # long-lived start-up objects leave the collector's view: shorter GC pauses
        board = engine.board
        if board is not None:
            print(
                f"hotline: engine running — {len(board.trunks)} simulated trunk lines; "
                "try: hotline sim call --line 1 --do 'expect:电费查询 press:1 expect:户号 "
                "press:1234567890# expect:确认 press:1 expect:本月电费 hangup:loop'",
                file=sys.stderr,
            )
        await stop.wait()
        await engine.stop()
        return 0

    try:
        return loop.run_until_complete(serve())
    finally:
        loop.close()


# --- flows -----------------------------------------------------------------------------------
def _cmd_flows_check(args: argparse.Namespace) -> int:
    from hotline.services.registry import SERVICE_NAMES
    from ivr.flow.registry import check_paths

    missing = [p for p in args.paths if not Path(p).exists()]
    for p in missing:
        print(f"{p}: no such file or folder", file=sys.stderr)
    files, errors = check_paths([Path(p) for p in args.paths if Path(p).exists()], SERVICE_NAMES)
    for error in errors:
        print(error)
    if missing or errors:
        return 1
    print(f"{files} flow file(s) OK", file=sys.stderr)
    return 0


def _cmd_flows_schema(args: argparse.Namespace) -> int:
    from ivr.flow.schema import FLOW_SCHEMA

    print(json.dumps(FLOW_SCHEMA, ensure_ascii=False, indent=2))
    return 0


# --- sim -------------------------------------------------------------------------------------
def _parse_actions(text: str) -> list[tuple[str, str]]:
    actions = []
    for token in text.split():
        kind, _, value = token.partition(":")
        if kind not in (
            "expect",
            "press",
            "silence",
            "speak",
            "wait_quiet",
            "hangup",
            "expect_hangup",
        ):
            raise SystemExit(f"hotline sim call: unknown action {token!r}")
        actions.append((kind, value))
    return actions


def _on_remote_board(address: str, command: str, body: Any) -> int:
    """Connect to a running engine's board at ``HOST:PORT``, run ``body(board)``, close.

    A connection failure or a failed expectation is one line on stderr and exit status 1.
    """
    from sim.caller import ExpectationFailed
    from sim.remote import RemoteBoard, RemoteError

    host, _, port = address.rpartition(":")

    async def session() -> int:
        board = RemoteBoard(host or "127.0.0.1", int(port))
        try:
            await board.connect()
            return int(await body(board))
        except (RemoteError, ExpectationFailed) as exc:
            print(f"hotline {command}: {exc}", file=sys.stderr)
            return 1
        finally:
            await board.close()

    return asyncio.run(session())


def _cmd_sim_call(args: argparse.Namespace) -> int:
    from sim.caller import Caller
    from sim.scenario import _step

    configure_logging(args.log_format or "console", args.log_level)
    actions = _parse_actions(args.do)

    async def call(board: Any) -> int:
        line = await board.open_line(args.line)
        caller = Caller(line)
        printed = 0
        line_event = line.on_event

        def on_event(message: dict[str, Any]) -> None:
            nonlocal printed
            line_event(message)
            for item in line.heard()[printed:]:
                print(f"[heard] {item['prompt_id'] or item['kind']}: {item['text']}", flush=True)
            printed = len(line.heard())
            if message["event"] in ("answered", "ended"):
                print(f"[{message['event']}] {message.get('reason') or ''}".rstrip(), flush=True)

        line.on_event = on_event  # type: ignore[method-assign]
        await caller.dial(args.caller, args.called)
        for kind, value in actions:
            if kind not in ("expect", "wait_quiet"):  # what the caller does, not waits for
                print(f"[{kind}] {value}".rstrip(), flush=True)
            await _step(caller, kind, value or ("" if kind == "expect" else None))
        if not actions or actions[-1][0] not in ("hangup", "expect_hangup"):
            await caller.expect_hangup(timeout=3600)
        return 0

    return _on_remote_board(args.remote, "sim call", call)


def _cmd_sim_seat(args: argparse.Namespace) -> int:
    configure_logging(args.log_format or "console", args.log_level)

    async def seat(board: Any) -> int:
        line = await board.open_line(args.line)

        def ended() -> bool:
            return line.status().get("ended") is not None

        for _ in range(args.calls):
            await line.wait_for(lambda: line.status().get("state") == "ringing", 24 * 3600)
            print(f"[ringing] {line.status().get('caller') or ''}".rstrip(), flush=True)
            await asyncio.sleep(args.answer_after)
            await line.off_hook()
            await line.wait_for(lambda: line.status().get("answered") is not None, 10)
            print("[answered]", flush=True)
            if args.talk and not await line.wait_for(ended, args.talk):
                await line.hang_up(None)
            await line.wait_for(ended, 24 * 3600)
            print(f"[ended] {line.status().get('end_reason') or ''}".rstrip(), flush=True)
        return 0

    return _on_remote_board(args.remote, "sim seat", seat)


def _cmd_sim_run(args: argparse.Namespace) -> int:
    from sim.scenario import ScenarioError, find_scenarios, load_scenario, run_scenario

    try:
        scenarios = [load_scenario(p) for p in find_scenarios(args.paths)]
    except ScenarioError as exc:
        print(f"hotline sim run: {exc}", file=sys.stderr)
        return 2
    if not scenarios:
        print("hotline sim run: no scenario files found", file=sys.stderr)
        return 2

    async def report(open_line: Any) -> int:
        failed = 0
        for scenario in scenarios:
            result = await run_scenario(scenario, open_line)
            status = "PASS" if result.ok else "FAIL"
            print(f"{status} {scenario.path} — {scenario.name}", flush=True)
            if not result.ok:
                failed += 1
                print(f"     {result.error}")
        print(f"{len(scenarios) - failed} passed, {failed} failed")
        return 1 if failed else 0

    if args.remote:
        configure_logging(args.log_format or "console", args.log_level)
        return _on_remote_board(args.remote, "sim run", lambda board: report(board.open_line))

    from drivers.clock import new_loop
    from hotline.engine import Engine
    from sim.caller import LocalLine

    with tempfile.TemporaryDirectory(prefix="hotline-sim-") as scratch:
        config = _config(
            args,
            database_url=f"sqlite+aiosqlite:///{scratch}/hotline.db",
            recordings_dir=f"{scratch}/recordings",
        )
        config.control.enabled = False
        config.log_format = args.log_format or "console"
        configure_logging(
            config.log_format, "WARNING" if args.log_level == "INFO" else args.log_level
        )
        engine = Engine(config, watch_flows=False)
        loop = new_loop(virtual=True)

        async def local() -> int:
            await engine.start()
            try:

                async def open_line(name: str) -> LocalLine:
                    assert engine.board is not None
                    line = LocalLine(engine.board.line(name))
                    await line.wait_for(lambda: line.status()["state"] in ("idle", "ended"), 60)
                    await engine.idle()
                    return line

                return await report(open_line)
            finally:
                await engine.stop()

        try:
            return loop.run_until_complete(local())
        finally:
            loop.close()


# --- DSP tools -------------------------------------------------------------------------------
def _cmd_dtmf(args: argparse.Namespace) -> int:
    from drivers.media.dtmf import detect_digits
    from drivers.media.wav import WavError, read_wav

    try:
        samples, rate = read_wav(args.file, require_rate=8000)
    except (WavError, OSError) as exc:
        print(f"hotline dtmf: {args.file}: {exc}", file=sys.stderr)
        return 1
    digits = detect_digits(samples, rate)
    if digits:
        print(digits)
    return 0


def _cmd_say(args: argparse.Namespace) -> int:
    from ivr.speech.readout import SLOT_KINDS, ReadoutError, say

    if args.kind not in SLOT_KINDS or args.kind == "text":
        kinds = ", ".join(sorted(SLOT_KINDS - {"text"}))
        print(f"hotline say: unknown kind {args.kind!r}; use one of: {kinds}", file=sys.stderr)
        return 2
    try:
        print(say(args.kind, args.value))
    except ReadoutError as exc:
        print(f"hotline say: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
