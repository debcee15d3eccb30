"""The engine: wires the store, services, speech, flows, drivers and the bus together.

:class:`Engine` owns one running hotline: it recovers recordings a crash left unfinished,
upgrades the database and creates the demo data, loads and validates the flows (and watches
them for hot reload), warms the prompt cache, starts the simulated board and its control
socket, and runs a flow for every call that comes in. Each call is bound to its ``call_id``
in every log line and produces ``call.*`` events that the CDR writer turns into a call record.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from drivers.channel import Channel, HungUp
from drivers.clock import VirtualClockLoop, real_work
from drivers.media.recorder import find_partials, recover_partial
from drivers.simboard.board import SimBoard
from drivers.simboard.channel import SimChannel
from drivers.simboard.line import HangupSignal, LineConfig
from hotline.bus import Bus
from hotline.config import Config
from hotline.contact_center import ContactCenter
from hotline.familiar import restore_familiar
from hotline.queue_config import check_references, load_queue_dir, seats_missing
from hotline.queue_reload import QueueReloader
from hotline.services.cdr import CdrWriter, RecordingIndex
from hotline.services.queue_log import QueueLogWriter
from hotline.services.registry import ServiceRegistry
from hotline.services.sip_seats import ensure_demo_seats, seat_registrar
from hotline.store.db import Database
from hotline.store.demo import ensure_demo_data
from ivr.flow.registry import FlowRegistry
from ivr.ports import CallContext, ServiceResult, TransferResult
from ivr.runtime import CallOutcome, FlowRunner
from ivr.speech.service import SpeechService
from ivr.speech.tts import EspeakTts, Pyttsx3Tts, TtsEngine
from ivr.speech.units import UnitVoice

log = structlog.get_logger(__name__)


class EngineError(RuntimeError):
    """The engine cannot start (bad flows, unusable database…)."""


class Engine:
    def __init__(
        self,
        config: Config,
        *,
        wall_clock: Callable[[], dt.datetime] | None = None,
        tts: TtsEngine | None = None,
        watch_flows: bool = True,
    ) -> None:
        self.config = config
        self._fixed_wall_clock = wall_clock
        self.wall_clock: Callable[[], dt.datetime] = wall_clock or (lambda: dt.datetime.now(dt.UTC))
        self.bus = Bus(clock=lambda: self.wall_clock().timestamp())
        self.db = Database(config.database)
        self.services = ServiceRegistry(self.db)
        self.flows = FlowRegistry([config.path(d) for d in config.flows_dirs], self.services.names)
        self._tts = tts
        self.speech: SpeechService | None = None
        self.runner: FlowRunner | None = None
        self.board: SimBoard | None = None
        self.control: Any = None
        self.sip: Any = None  # drivers.sip.transport.SipEndpoint when sip.enabled
        self.contact_center: ContactCenter | None = None
        self.queue_reloader: QueueReloader | None = None  # hot reload of acd.queues_dir
        self.api: Any = None  # hotline.agent_api.AgentApi when api.enabled
        self.cdr = CdrWriter(self.db, self.bus)
        self.recording_index = RecordingIndex(self.db, self.bus)
        self.queue_log = QueueLogWriter(self.db, self.bus)
        self.calls: dict[str, asyncio.Task[CallOutcome | None]] = {}
        self.outcomes: dict[str, CallOutcome] = {}
        self._watch_flows = watch_flows
        self._tasks: list[asyncio.Task[Any]] = []
        self._message_counter = 0

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        if self._fixed_wall_clock is None and isinstance(loop, VirtualClockLoop):
            # on a virtual clock, wall time moves with the loop so call records and recordings agree
            wall0, loop0 = dt.datetime.now(dt.UTC), loop.time()
            self.wall_clock = lambda: wall0 + dt.timedelta(seconds=loop.time() - loop0)
        async with real_work():
            await self.db.upgrade()
            if cfg.demo_data:
                created = await ensure_demo_data(self.db)
                if created:
                    log.info("engine.demo_data_created")
                await ensure_demo_seats(self.db)
        self.cdr.start()
        self.recording_index.start()
        self.queue_log.start()
        async with real_work():
            interrupted = await self.cdr.close_interrupted()
        if interrupted:
            log.warning("engine.calls_interrupted_by_crash", calls=interrupted)
        self._recover_recordings()
        errors = self.flows.load()
        if errors:
            raise EngineError("flows rejected:\n" + "\n".join(str(e) for e in errors))
        tts = self._tts or _tts_engine(cfg)
        units = (
            UnitVoice(cfg.path(cfg.speech.units_dir))
            if cfg.speech.units_dir
            else UnitVoice.shipped()
        )
        self.speech = SpeechService(
            tts,
            cfg.path(cfg.cache_dir) / "prompts",
            recorded_dir=cfg.path(cfg.speech.recorded_prompts_dir),
            units=units,
            readout_mode=cfg.speech.readout,
        )
        async with real_work():
            await self.speech.warm(self.flows.prompt_texts(), progress=True)
        self.runner = FlowRunner(_TimedSpeech(self.speech), _TimedServices(self.services), self)
        if cfg.board.enabled:
            self.board = SimBoard(
                trunks=cfg.board.trunks,
                stations=cfg.board.stations,
                recordings_dir=cfg.path(cfg.recordings_dir),
                line_configs={
                    name: LineConfig(
                        hangup_signal=HangupSignal(s.hangup_signal), busy_cycles=s.busy_cycles
                    )
                    for name, s in cfg.board.lines.items()
                },
                on_incoming=self._incoming,
                on_event=self.bus.publish,
                wall_clock=self.wall_clock,
            )
            self.board.start()
            if cfg.control.enabled:
                from drivers.simboard.control import ControlServer

                self.control = ControlServer(self.board, cfg.control.host, cfg.control.port)
                await self.control.start()
        await self._start_contact_center()
        if cfg.sip.enabled:
            await self._start_sip()
        if cfg.api.enabled:
            from hotline.agent_api import AgentApi

            self.api = AgentApi(self, cfg.api)
            await self.api.start()
        if self._watch_flows:
            watcher = self.flows.watch(on_reload=self._flows_reloaded)
            self._tasks.append(asyncio.create_task(watcher, name="flows.watch"))
        log.info("engine.started", flows=sorted(self.flows.current), board=bool(self.board))

    async def _start_sip(self) -> None:
        """The SIP endpoint: each INVITE runs the flow of its called number (config.numbers)."""
        from drivers.sip.media import MediaPlane
        from drivers.sip.ratelimit import RateLimitError, SourceLimiter
        from drivers.sip.transport import SipEndpoint, SipEndpointError

        cfg = self.config
        try:
            invite_limit = SourceLimiter(cfg.sip.invite_rate, cfg.sip.invite_burst)
            register_limit = SourceLimiter(cfg.sip.register_rate, cfg.sip.register_burst)
        except RateLimitError as exc:
            raise EngineError(f"sip.invite_rate/register_rate: {exc}") from exc
        media = MediaPlane(
            cfg.sip.host,
            port_min=cfg.sip.rtp_port_min,
            port_max=cfg.sip.rtp_port_max,
            recordings_dir=cfg.path(cfg.recordings_dir),
            on_event=self.bus.publish,
            wall_clock=self.wall_clock,
        )
        if not isinstance(cfg.sip.rfc4733, bool):
            raise EngineError("sip.rfc4733 must be true or false")
        self.sip = SipEndpoint(
            media,
            host=cfg.sip.host,
            port=cfg.sip.port,
            on_incoming=self._incoming,
            answer_after=cfg.sip.answer_after,
            telephone_event=cfg.sip.rfc4733,
            invite_limit=invite_limit,
            register_limit=register_limit,
            registrar=await seat_registrar(self.db, algorithms=self._digest_algorithms()),
            **self._sip_outbound_settings(),
        )
        try:
            await self.sip.start()
        except SipEndpointError as exc:
            if not isinstance(asyncio.get_running_loop(), VirtualClockLoop):
                raise EngineError(str(exc)) from exc
            # scenarios on the virtual clock (hotline sim run) next to a running engine
            log.warning("sip.port_busy_using_any", port=cfg.sip.port, error=str(exc))
            self.sip.port = 0
            await self.sip.start()
        if cfg.sip.trunks:
            await self._start_trunks()
        if self.contact_center is not None:
            self.contact_center.seats.sip = self.sip  # agents may sit at SIP softphones

    async def _start_trunks(self) -> None:
        """Register at the upstream trunks of ``sip.trunks`` (docs/sip.md, trunk registration)."""
        from drivers.sip.trunk import TrunkError
        from drivers.sip.trunk_client import TrunkClient, registrations_from_settings

        try:
            registrations = registrations_from_settings(
                self.config.sip.trunks, host=self.sip.host, port=self.sip.port
            )
        except (TrunkError, OSError) as exc:
            await self.sip.stop()
            raise EngineError(f"sip.trunks: {exc}") from exc
        self.sip.trunks = TrunkClient(registrations, self.sip.send)
        self.sip.trunks.start()

    def _digest_algorithms(self) -> tuple[str, ...]:
        algorithms = tuple(str(a).upper() for a in self.config.sip.digest_algorithms)
        if not algorithms or any(a not in ("MD5", "SHA-256") for a in algorithms):
            raise EngineError("sip.digest_algorithms: a list of MD5 and/or SHA-256")
        return algorithms

    def _sip_outbound_settings(self) -> dict[str, Any]:
        """Outbound legs and seat keepalive; a seat's registration change is published as
        ``line.service`` (``line`` = ``sip:<seat>``), like a board station's phone."""
        sip = self.config.sip
        from drivers.sip.message import ParseError
        from drivers.sip.outbound import uri_key

        if not isinstance(sip.outbound_allowed, list):
            raise EngineError("sip.outbound_allowed must be a list of sip: URIs")
        for uri in sip.outbound_allowed:
            try:
                uri_key(str(uri))
            except ParseError as exc:
                raise EngineError(f"sip.outbound_allowed: {exc.reason}") from exc
        if sip.keepalive_interval <= 0 or sip.keepalive_failures < 1:
            raise EngineError("sip.keepalive_interval must be > 0 and keepalive_failures >= 1")

        def on_seat(seat: str, registered: bool, reason: str) -> None:
            self.bus.publish(
                "line.service", None, line=f"sip:{seat}", in_service=registered, reason=reason
            )

        return {
            "outbound_allowed": [str(uri) for uri in sip.outbound_allowed],
            "keepalive_interval": float(sip.keepalive_interval),
            "keepalive_failures": int(sip.keepalive_failures),
            "on_seat": on_seat,
        }

    def _flows_reloaded(self, report: Any) -> None:
        """A new flow snapshot went live: synthesize its new prompts before callers need them."""
        if report.swapped and self.speech is not None:
            task = asyncio.create_task(self._warm_prompts(), name="prompts.warm")
            self._tasks.append(task)
            task.add_done_callback(self._tasks.remove)

    async def _warm_prompts(self) -> None:
        assert self.speech is not None
        try:
            async with real_work():
                await self.speech.warm(self.flows.prompt_texts(), progress=False)
        except Exception:  # a prompt that cannot be synthesized is retried on first use
            log.exception("flows.prompt_warm_failed")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.api is not None:
            await self.api.stop()
        if self.control is not None:
            await self.control.stop()
        if self.contact_center is not None:
            await self.contact_center.stop()
        if self.sip is not None:
            await self.sip.stop()
        if self.board is not None:
            await self.board.stop()
        if self.calls:
            await asyncio.wait(list(self.calls.values()), timeout=5)
        await self.cdr.stop()
        await self.recording_index.stop()
        await self.queue_log.stop()
        await self.db.close()
        log.info("engine.stopped")

    async def idle(self) -> None:
        """Wait until no call is running and every event has been written."""
        while self.calls:
            await asyncio.wait(list(self.calls.values()))
        await self.cdr.flush()
        await self.recording_index.flush()
        await self.queue_log.flush()

    async def _start_contact_center(self) -> None:
        """Queues and seats from ``acd.queues_dir``; none configured: transfers find no agent."""
        settings = self.config.acd
        if not settings.enabled or (self.board is None and not self.config.sip.enabled):
            return
        definition, errors = load_queue_dir(self.config.path(settings.queues_dir))
        if not errors:
            errors = check_references(definition, self.flows.current)
        if errors:
            raise EngineError("queues rejected:\n" + "\n".join(str(e) for e in errors))
        if not definition.queues:
            return
        board_lines = self.board.lines if self.board is not None else []
        stations = [line.name for line in board_lines if line.name.startswith("s")]
        missing = seats_missing(definition, stations)
        if missing:
            # e.g. a board configured with fewer stations: those agents cannot take calls here
            seats = {a: definition.agents.pop(a).seat for a in missing}
            log.warning("queue.seats_missing", agents=seats, stations=stations)
        assert self.speech is not None
        self.contact_center = ContactCenter(
            definition,
            self.board,
            _TimedSpeech(self.speech),
            self.bus,
            agent_announcement=settings.agent_announcement,
            rng=random.Random(settings.seed),
            run_flow=self._run_flow,
        )
        async with real_work():
            await self.speech.warm(self.contact_center.prompt_texts(), progress=False)
            # familiar agents: who served each caller before this start (the stored log)
            await restore_familiar(
                self.db,
                self.contact_center.acd,
                loop_now=asyncio.get_running_loop().time(),
                wall_now=self.wall_clock().timestamp(),
            )
        self.contact_center.start(login=definition.agents if settings.login_at_start else ())
        self.queue_reloader = QueueReloader(
            self.contact_center,
            self.config.path(settings.queues_dir),
            lambda: self.flows.current,
            stations=lambda: stations,
        )
        if self._watch_flows:
            watcher = self.queue_reloader.watch()
            self._tasks.append(asyncio.create_task(watcher, name="queues.watch"))
        log.info("engine.queues", queues=sorted(definition.queues), agents=len(definition.agents))

    async def _run_flow(self, channel: Channel, flow_id: str) -> CallOutcome:
        """Run a flow on a caller already in a call (the post-call survey)."""
        assert self.runner is not None
        await self.queue_log.flush()  # the survey's score is filed under the call's CONNECT
        return await self.runner.run(channel, self.flows.current, flow_id)

    # --- agent control (Python API; the desktop's HTTP/WebSocket API builds on it) ---------------
    def _center(self) -> ContactCenter:
        if self.contact_center is None:
            raise EngineError("no queues are configured (acd.queues_dir)")
        return self.contact_center

    def login_agent(
        self,
        agent_id: str,
        *,
        ready: bool = True,
        reason: str | None = None,
        seat: str | None = None,
    ) -> None:
        """Log an agent in at their seat (or at ``seat``: ``s2``, ``sip:1001``), ready (or not
        ready with ``reason``)."""
        self._center().login(agent_id, ready=ready, reason=reason, seat=seat)

    def logout_agent(self, agent_id: str) -> None:
        self._center().logout(agent_id)

    def set_agent_ready(self, agent_id: str) -> None:
        self._center().set_ready(agent_id)

    def set_agent_not_ready(self, agent_id: str, reason: str = "busy") -> None:
        """Not ready with a reason: ``busy`` 示忙, ``rest`` 休息 (time-limited), any site reason."""
        self._center().set_not_ready(agent_id, reason)

    def agent_status(self, agent_id: str) -> dict[str, Any]:
        """Status (the agent's choice), reason and state (the engine's) of one agent."""
        agent = self._center().agent(agent_id)
        return {
            "id": agent.id,
            "name": agent.name,
            "seat": agent.seat,
            "status": str(agent.status),
            "reason": agent.reason,
            "state": str(agent.state),
        }

    def _recover_recordings(self) -> None:
        for part in find_partials(self.config.path(self.config.recordings_dir)):
            finished = recover_partial(part)
            call_id = Path(finished.path).stem
            log.warning(
                "recording.recovered",
                call_id=call_id,
                path=finished.path,
                seconds=round(finished.seconds, 2),
            )
            self.bus.publish("recording.finished", call_id, **finished.event_data())

    # --- calls ----------------------------------------------------------------------------
    def _incoming(self, channel: SimChannel) -> None:
        task = asyncio.create_task(self.handle_call(channel), name=f"call {channel.call_id}")
        self.calls[channel.call_id] = task
        task.add_done_callback(lambda _t: self.calls.pop(channel.call_id, None))

    async def handle_call(self, channel: Channel) -> CallOutcome | None:
        assert self.runner is not None
        call_id = channel.call_id
        flow_id = self.config.flow_for_line(channel.line)
        if channel.called in self.config.numbers and channel.line.startswith("sip"):
            flow_id = self.config.numbers[channel.called]
        bound = structlog.contextvars.bound_contextvars(call_id=call_id)
        with bound:
            self.bus.publish(
                "call.started",
                call_id,
                channel=channel.channel_id,
                line=channel.line,
                caller=channel.caller,
                called=channel.called,
                flow=flow_id,
            )
            try:
                if isinstance(channel, SimChannel):
                    await self._wait_rings(channel)
                await channel.answer()
            except HungUp as exc:
                self.bus.publish(
                    "call.ended",
                    call_id,
                    cause=str(exc.cause),
                    result="abandoned",
                    last_step="",
                    path=[],
                    keys="",
                )
                return None
            self.bus.publish("call.answered", call_id)
            log.info("call.answered", line=channel.line, caller=channel.caller, flow=flow_id)
            outcome = await self.runner.run(channel, self.flows.current, flow_id)
            if not channel.hung_up:
                await channel.hangup()
            self.outcomes[call_id] = outcome
            self.bus.publish(
                "call.ended",
                call_id,
                cause=str(channel.hangup_cause),
                result=outcome.result,
                last_step=outcome.last_step,
                path=outcome.path,
                keys=outcome.keys,
                work_order=outcome.work_order,
            )
            log.info(
                "call.ended",
                result=outcome.result,
                last_step=outcome.last_step,
                cause=str(channel.hangup_cause),
            )
            return outcome

    async def _wait_rings(self, channel: SimChannel) -> None:
        wanted = max(1, self.config.board.answer_after_rings)
        if channel.rings >= wanted:
            return
        done = asyncio.get_running_loop().create_future()

        def on_event(event: Any) -> None:
            if event.kind == "ring" and event.data["count"] >= wanted and not done.done():
                done.set_result(None)
            elif event.kind == "hangup" and not done.done():
                done.set_result(None)

        unsubscribe = channel.subscribe(on_event)
        try:
            await done
        finally:
            unsubscribe()

    # --- Host (what the flow runtime asks of the engine) ---------------------------------------
    def emit(self, kind: str, call_id: str, **data: Any) -> None:
        self.bus.publish(kind, call_id, **data)

    def recording_path(self, call_id: str, purpose: str) -> str:
        purpose = re.sub(r"[^a-z0-9_]", "_", purpose.lower()) or "message"
        self._message_counter += 1
        day = self.wall_clock()
        folder = self.config.path(self.config.recordings_dir) / f"{purpose}s" / f"{day:%Y/%m/%d}"
        return str(folder / f"{call_id}-{purpose}-{self._message_counter}.wav")

    async def transfer(
        self, channel: Channel, queue: str, *, priority: int, data: dict[str, Any]
    ) -> TransferResult:
        """Queue the caller for an agent; without queues configured no agent can take it."""
        self.bus.publish(
            "queue.transfer_requested", channel.call_id, queue=queue, priority=priority
        )
        if self.contact_center is None:
            return TransferResult("no_agent", {"queue": queue, "reason": "no agents configured"})
        return await self.contact_center.transfer(channel, queue, priority=priority, data=data)


def _tts_engine(cfg: Config) -> TtsEngine:
    """The configured TTS: espeak-ng (Linux default) or pyttsx3 (SAPI5/NSSS hosts)."""
    if cfg.speech.engine == "espeak":
        return EspeakTts(voice=cfg.speech.voice)
    if cfg.speech.engine == "pyttsx3":
        return Pyttsx3Tts(voice=cfg.speech.voice if cfg.speech.voice != "cmn-latn-pinyin" else None)
    raise EngineError(
        f"speech.engine: unknown TTS engine {cfg.speech.engine!r}; use espeak or pyttsx3"
    )


class _TimedServices:
    """Services whose database work the virtual clock waits for (see drivers.clock)."""

    def __init__(self, inner: ServiceRegistry) -> None:
        self._inner = inner

    @property
    def names(self) -> frozenset[str]:
        return self._inner.names

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> ServiceResult:
        async with real_work():
            return await self._inner.call(name, args, ctx)


class _TimedSpeech:
    """Speech whose synthesis the virtual clock waits for."""

    def __init__(self, inner: SpeechService) -> None:
        self._inner = inner

    async def prompt(self, prompt_id: str, text: str) -> Any:
        async with real_work():
            return await self._inner.prompt(prompt_id, text)

    async def readout(self, text: str) -> Any:
        async with real_work():
            return await self._inner.readout(text)
