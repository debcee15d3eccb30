"""The simulated board's control socket: drive the far end of its lines from another process.

A line-oriented JSON protocol over TCP, bound to loopback by default. It can only do what a
caller on the exchange side could do (ring a trunk, send audio, hang up, answer a ringing
station phone), so it never lets anyone make the engine dial out.

Requests carry an ``id`` and get one reply with the same ``id``; ``watch`` subscribes the
connection to a line's events, which arrive as ``{"event": ..., "line": ...}`` messages::

    → {"id": 1, "op": "watch", "line": "t3"}
    → {"id": 2, "op": "ring", "line": "t3", "caller": "13912345678", "called": "95598"}
    ← {"id": 2, "ok": true}
    ← {"event": "answered", "line": "t3"}
    ← {"event": "heard", "line": "t3", "item": {"text": "您好，欢迎…", "prompt_id": "welcome", …}}
    → {"id": 3, "op": "audio", "line": "t3", "pcm": "<base64 of 16-bit little-endian 8 kHz>"}
    ← {"id": 3, "ok": true}          (sent once the audio has gone down the line)
    → {"id": 4, "op": "hangup", "line": "t3", "signal": "busy"}

Errors reply ``{"id": n, "ok": false, "error": "..."}``; a malformed line is answered with an
error and the connection stays usable.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from typing import Any

import numpy as np
import structlog

from drivers.simboard.line import HangupSignal

log = structlog.get_logger(__name__)

MAX_LINE = 4 * 1024 * 1024  # one request (base64 audio) at most 4 MiB


class ControlServer:
    def __init__(self, board: Any, host: str = "127.0.0.1", port: int = 5599) -> None:
        self.board = board
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_LINE)
        sock = self._server.sockets[0].getsockname()
        self.port = sock[1]
        log.info("board.control_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        unwatch: list[Any] = []
        pending: set[asyncio.Task[None]] = set()

        def send(message: dict[str, Any]) -> None:
            if not writer.is_closing():
                writer.write(json.dumps(message, ensure_ascii=False).encode() + b"\n")

        try:
            while True:
                try:
                    raw = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    send({"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                    break
                if not raw:
                    break
                try:
                    request = json.loads(raw)
                    if not isinstance(request, dict):
                        raise ValueError("a request is a JSON object")
                except ValueError as exc:
                    send({"ok": False, "error": f"malformed request: {exc}"})
                    continue
                task = asyncio.create_task(self._handle(request, send, unwatch))
                pending.add(task)
                task.add_done_callback(pending.discard)
        finally:
            for task in pending:
                task.cancel()
            for remove in unwatch:
                remove()
            writer.close()

    async def _handle(self, request: dict[str, Any], send: Any, unwatch: list[Any]) -> None:
        rid = request.get("id")
        try:
            reply = await self._dispatch(request, send, unwatch)
            send({"id": rid, "ok": True, **reply})
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            send({"id": rid, "ok": False, "error": str(message)})

    async def _dispatch(
        self, request: dict[str, Any], send: Any, unwatch: list[Any]
    ) -> dict[str, Any]:
        op = request.get("op")
        if op == "lines":
            return {
                "lines": [
                    {"line": ln.name, "kind": str(ln.kind), "state": str(ln.state)}
                    for ln in self.board.lines
                ]
            }
        line = self.board.line(str(request.get("line", "")))
        far = line.far_end
        if op == "watch":

            def listener(kind: str, data: dict[str, Any]) -> None:
                payload = dict(data)
                if "item" in payload:
                    payload["item"] = payload["item"].to_dict()
                send({"event": kind, "line": line.name, **payload})

            far.listeners.append(listener)
            unwatch.append(
                lambda: far.listeners.remove(listener) if listener in far.listeners else None
            )
            return {"state": str(line.state)}
        if op == "ring":
            far.ring(str(request.get("caller", "")), str(request.get("called", "95598")))
            return {}
        if op == "audio":
            try:
                pcm = base64.b64decode(request["pcm"], validate=True)
            except (binascii.Error, KeyError) as exc:
                raise ValueError(f"audio: 'pcm' must be base64 16-bit PCM ({exc})") from None
            if len(pcm) % 2:
                raise ValueError("audio: odd number of bytes for 16-bit PCM")
            await far.send(np.frombuffer(pcm, dtype="<i2").astype(np.int16))
            return {}
        if op == "hangup":
            signal = request.get("signal")
            far.hang_up(HangupSignal(signal) if signal else None)
            return {}
        if op == "off_hook":
            far.off_hook()
            return {}
        raise ValueError(f"unknown op {op!r}; use lines, watch, ring, audio, hangup, off_hook")
