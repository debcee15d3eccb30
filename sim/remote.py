"""A client for a running engine's board control socket (see ``drivers.simboard.control``).

:class:`RemoteBoard` opens one connection; :meth:`RemoteBoard.open_line` returns a line handle
that :class:`sim.caller.Caller` drives exactly like an in-process line. Events from the engine
(answered, heard, ended) keep a local mirror of the call up to date.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import Callable
from typing import Any

import numpy as np


class RemoteError(RuntimeError):
    """The engine refused a request, or the connection failed."""


class RemoteLine:
    def __init__(self, board: RemoteBoard, name: str) -> None:
        self.board = board
        self.name = name
        self._heard: list[dict[str, Any]] = []
        self._status: dict[str, Any] = {"state": "idle"}
        self._changed = asyncio.Event()

    # events from the engine
    def on_event(self, message: dict[str, Any]) -> None:
        kind = message["event"]
        now = asyncio.get_running_loop().time()
        if kind == "answered":
            self._status.update(state="connected", answered=now)
        elif kind == "ended":
            self._status.update(state="ended", ended=now, end_reason=message.get("reason"))
        elif kind == "heard":
            self._heard.append(message["item"])
        elif kind == "heard_end" and self._heard:
            last = self._heard[-1]
            if last.get("end") is None:
                last["end"] = now
                last["interrupted"] = message.get("interrupted", False)
        elif kind == "ringing":
            self._heard.clear()
            self._status = {"state": "ringing", "caller": message.get("caller"),
                            "answered": None, "ended": None}
        self._changed.set()

    # LineHandle
    async def ring(self, caller: str, called: str) -> None:
        self._heard.clear()
        self._status = {"state": "ringing", "answered": None, "ended": None}
        await self.board.request("ring", line=self.name, caller=caller, called=called)

    async def send_audio(self, samples: np.ndarray) -> None:
        pcm = base64.b64encode(np.asarray(samples, dtype="<i2").tobytes()).decode()
        await self.board.request("audio", line=self.name, pcm=pcm)

    async def hang_up(self, signal: str | None) -> None:
        await self.board.request("hangup", line=self.name, signal=signal)

    async def off_hook(self) -> None:
        """Pick up a ringing station phone (an agent answering at a seat)."""
        await self.board.request("off_hook", line=self.name)

    def heard(self) -> list[dict[str, Any]]:
        return list(self._heard)

    def status(self) -> dict[str, Any]:
        return dict(self._status)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return predicate()
        return True


class RemoteBoard:
    def __init__(self, host: str = "127.0.0.1", port: int = 5599) -> None:
        self.host = host
        self.port = port
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._lines: dict[str, RemoteLine] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> RemoteBoard:
        try:
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, limit=4 * 1024 * 1024
            )
        except OSError as exc:
            raise RemoteError(
                f"cannot reach the engine's board at {self.host}:{self.port} ({exc.strerror}); "
                "is `hotline run` running?"
            ) from exc
        self._task = asyncio.create_task(self._read())
        return self

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        if self._writer:
            self._writer.close()

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        if self._writer is None:
            raise RemoteError("not connected")
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[rid] = fut
        self._writer.write(json.dumps({"id": rid, "op": op, **fields}).encode() + b"\n")
        await self._writer.drain()
        reply = await fut
        if not reply.get("ok"):
            raise RemoteError(reply.get("error", "request failed"))
        return reply

    async def open_line(self, name: str) -> RemoteLine:
        name = name if name.startswith(("t", "s")) else f"t{name}"
        line = self._lines.get(name) or RemoteLine(self, name)
        if name not in self._lines:
            self._lines[name] = line
            await self.request("watch", line=name)
        return line

    async def _read(self) -> None:
        assert self._reader is not None
        while True:
            raw = await self._reader.readline()
            if not raw:
                for fut in self._replies.values():
                    if not fut.done():
                        fut.set_result({"ok": False, "error": "connection closed by the engine"})
                return
            message = json.loads(raw)
            if "event" in message:
                line = self._lines.get(message.get("line", ""))
                if line is not None:
                    line.on_event(message)
            else:
                fut = self._replies.pop(message.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(message)
