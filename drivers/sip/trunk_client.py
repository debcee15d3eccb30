"""The I/O shell around :class:`~drivers.sip.trunk.TrunkRegistration`: timers, sending, logging.

:class:`TrunkClient` runs the engine's registrations at upstream trunks on the SIP endpoint's
own UDP socket (so the trunk sends its INVITEs to the address it registered). The endpoint
hands it every response whose Call-ID is one of the trunks' (:meth:`TrunkClient.claims`); one
loop timer serves all trunks at the earliest time any of them needs. Every state change is
logged with the trunk's name: ``sip.trunk_registered``, ``sip.trunk_refreshed``,
``sip.trunk_auth_failed`` (wrong user or password: an error), ``sip.trunk_failed``,
``sip.trunk_unregistered``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from drivers.sip.message import ParseError, Response, parse
from drivers.sip.trunk import (
    Address,
    Output,
    TrunkError,
    TrunkEvent,
    TrunkRegistration,
    TrunkState,
    parse_host_port,
)
from drivers.sip.uas import Send

log = structlog.get_logger(__name__)

_LEVELS = {
    "registered": "info",
    "refreshed": "info",
    "unregistered": "info",
    "auth_failed": "error",
    "failed": "warning",
    "unregister_failed": "warning",
}


def contact_host_towards(registrar: Address, bound_host: str) -> str:
    """The engine's address as the registrar should see it: the bound host, or for a
    wildcard bind the local address the OS routes to the registrar from."""
    if bound_host not in ("0.0.0.0", "", "::"):
        return bound_host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(registrar)  # UDP connect sends nothing; it only picks the route
        return probe.getsockname()[0]


def registrations_from_settings(
    trunks: Iterable[Any], *, host: str, port: int, environ: dict[str, str] | None = None
) -> list[TrunkRegistration]:
    """Build one registration per configured trunk (``sip.trunks`` in hotline.yaml).

    A password comes from ``password`` or from the environment variable named by
    ``password_env``; a trunk with neither, or with a variable that is not set, is refused.
    """
    environ = dict(os.environ) if environ is None else environ
    out: list[TrunkRegistration] = []
    names: set[str] = set()
    for trunk in trunks:
        name = trunk.name
        if name in names:
            raise TrunkError(f"sip.trunks: the name {name!r} is used twice")
        names.add(name)
        password = trunk.password
        if trunk.password_env:
            if trunk.password_env not in environ:
                raise TrunkError(
                    f"trunk {name}: environment variable {trunk.password_env} is not set"
                )
            password = environ[trunk.password_env]
        if not password:
            raise TrunkError(f"trunk {name}: set password or password_env")
        registrar = parse_host_port(trunk.registrar)
        contact = (trunk.contact_host or contact_host_towards(registrar, host), port)
        out.append(
            TrunkRegistration(
                name=name,
                registrar=registrar,
                user=str(trunk.user),
                password=password,
                contact=contact,
                domain=trunk.domain or "",
                contact_user=str(trunk.contact_user or ""),
                auth_user=str(trunk.auth_user or ""),
                expires=int(trunk.expires),
            )
        )
    return out


class TrunkClient:
    """Runs trunk registrations on the endpoint's socket (``send``) and the running loop."""

    def __init__(
        self,
        registrations: list[TrunkRegistration],
        send: Callable[[bytes, Address], None],
    ) -> None:
        self.registrations = {r.call_id: r for r in registrations}
        self.send = send
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._stopped = asyncio.Event()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for registration in self.registrations.values():
            log.info(
                "sip.trunk_registering",
                trunk=registration.name,
                registrar=f"{registration.registrar[0]}:{registration.registrar[1]}",
                aor=registration.aor,
                contact=registration.contact_uri,
            )
            self._handle(registration, registration.start(self._loop.time()))
        self._arm()

    async def stop(self, timeout: float = 2.0) -> None:
        """Unregister every trunk; wait (at most ``timeout`` s) for the registrars' answers."""
        if self._loop is None:
            return
        for registration in self.registrations.values():
            self._handle(registration, registration.stop(self._loop.time()))
        self._arm()
        deadline = self._loop.time() + timeout
        while not self._all_stopped() and self._loop.time() < deadline:
            self._stopped.clear()
            try:
                await asyncio.wait_for(self._stopped.wait(), deadline - self._loop.time())
            except TimeoutError:
                break
        for registration in self.registrations.values():
            if registration.state is not TrunkState.STOPPED:
                log.warning("sip.trunk_unregister_unanswered", trunk=registration.name)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def claims(self, data: bytes) -> bool:
        """Take a datagram that answers a trunk's REGISTER; False for everything else."""
        if not data.startswith(b"SIP/2.0 ") or self._loop is None:
            return False
        try:
            message = parse(data)
        except ParseError:
            return False
        if not isinstance(message, Response):
            return False
        registration = self.registrations.get(message.call_id or "")
        if registration is None:
            return False
        self._handle(registration, registration.receive(message, self._loop.time()))
        self._arm()
        return True

    def status(self) -> list[dict[str, object]]:
        now = self._loop.time() if self._loop is not None else 0.0
        return [r.status(now) for r in self.registrations.values()]

    # --- internals -------------------------------------------------------------------------
    def _all_stopped(self) -> bool:
        return all(r.state is TrunkState.STOPPED for r in self.registrations.values())

    def _handle(self, registration: TrunkRegistration, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, Send):
                self.send(output.data, output.address)
            elif isinstance(output, TrunkEvent):
                _log_event(registration, output)
        if self._all_stopped():
            self._stopped.set()

    def _arm(self) -> None:
        assert self._loop is not None
        times = [r.next_wakeup() for r in self.registrations.values()]
        due = min((t for t in times if t is not None), default=None)
        if self._timer is not None:
            if due is not None and abs(self._timer.when() - due) < 1e-6:
                return
            self._timer.cancel()
            self._timer = None
        if due is not None:
            self._due = due
            self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        assert self._loop is not None
        now = max(self._loop.time(), self._due)  # call_at may run a hair early
        for registration in self.registrations.values():
            try:
                self._handle(registration, registration.tick(now))
            except Exception:  # one trunk's fault must not stop the others
                log.exception("sip.trunk_timer_failed", trunk=registration.name)
        self._arm()


def _log_event(registration: TrunkRegistration, event: TrunkEvent) -> None:
    fields: dict[str, object] = {"trunk": event.trunk, "aor": registration.aor}
    if event.kind in ("registered", "refreshed"):
        fields["expires"] = event.expires
    else:
        fields.update(status=event.status, reason=event.reason)
    if event.kind in ("failed", "auth_failed"):
        fields["retry_in"] = round(event.retry_in, 1)
    getattr(log, _LEVELS.get(event.kind, "info"))(f"sip.trunk_{event.kind}", **fields)
