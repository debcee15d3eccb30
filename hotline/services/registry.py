"""The services flows call by name, on the store: the :class:`ivr.ports.Services` the runtime uses.

=============================  ==============================  ===============================
name                           args                            statuses
=============================  ==============================  ===============================
``billing.current_bill``       ``account``                     ``found`` / ``not_found``
``billing.account_by_phone``   ``phone`` (default: caller)     ``found`` / ``not_found``
``outages.for_account``        ``account``                     ``outage`` / ``none`` /
                                                               ``not_found``
``work_orders.open``           ``type`` + optional fields      ``ok``
``work_orders.update``         ``number`` + fields             ``ok``
``work_orders.submit``         ``number``                      ``ok`` / ``duplicate``
``work_orders.for_account``    ``account``                     ``found`` / ``none`` /
                                                               ``not_found``
``voice_messages.store``       ``path``, ``seconds``,          ``ok``
                               ``account`` (optional)
``surveys.store``              ``score`` (1/2/3, e.g. the      ``ok`` / ``invalid``
                               key pressed)
=============================  ==============================  ===============================

Work-order fields (flat, or as a ``fields`` mapping): ``account`` (or ``account_no``),
``contact_phone`` (or ``phone``), ``fault_type``
(``area_outage``/``own_house``/``danger``), ``area``, ``description``,
``description_recording``; ``type`` is one of the eight business types in English
(``fault_repair``…) or Chinese (``故障报修``…). The data of each status is documented in the
service modules (:mod:`.billing`, :mod:`.outages`, :mod:`.work_orders`, :mod:`.voice_messages`).

Customers, accounts and bills are read from ``billing_db`` when one is given (a utility's
billing database, opened read-only); everything else lives in ``db``.

Every service may also answer ``error`` with ``{"message": ...}``: unknown name, missing or
unexpected arguments, a refused request, a database failure or timeout. Errors are logged as
warnings with the ``call_id``; nothing raises into the flow. With a bus, the registry publishes
``workorder.opened`` (``number, type``), ``workorder.submitted`` (``number``) and
``workorder.duplicate`` (``number`` of the closed draft, ``duplicate_of``,
``duplicate_of_kind``) for the CDR writer and the operators' screens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import structlog

from hotline.bus import Bus
from hotline.services import billing, outages, surveys, voice_messages, work_orders
from hotline.store.db import Database
from hotline.store.models import utc_now
from ivr.ports import CallContext, ServiceResult

log = structlog.get_logger(__name__)

Handler = Callable[[dict[str, Any], CallContext], Awaitable[ServiceResult]]

SERVICE_NAMES: frozenset[str] = frozenset(
    {
        "billing.current_bill",
        "billing.account_by_phone",
        "outages.for_account",
        "work_orders.open",
        "work_orders.update",
        "work_orders.submit",
        "work_orders.for_account",
        "voice_messages.store",
        "surveys.store",
    }
)
"""Every service name, for checking flows without a database (``hotline flows check``)."""


class ArgumentError(ValueError):
    """A flow called a service with missing or unexpected arguments."""


def _take(args: dict[str, Any], name: str) -> Any:
    if name not in args or args[name] is None or args[name] == "":
        raise ArgumentError(f"missing argument {name!r}")
    return args.pop(name)


def _no_more(args: Mapping[str, Any]) -> None:
    if args:
        raise ArgumentError(f"unexpected argument(s): {', '.join(sorted(args))}")


def _fields(args: dict[str, Any]) -> dict[str, Any]:
    """Work-order fields, given flat or as a ``fields`` mapping."""
    nested = args.pop("fields", None) or {}
    if not isinstance(nested, Mapping):
        raise ArgumentError("'fields' must be a mapping")
    return {**nested, **args}


class ServiceRegistry:
    """Dispatches named service calls from flow steps to the store-backed services."""

    def __init__(
        self,
        db: Database,
        *,
        billing_db: Database | None = None,
        bus: Bus | None = None,
        clock: Callable[[], datetime] = utc_now,
        timeout: float = 10.0,
    ) -> None:
        self.db = db
        self.billing_db = billing_db or db
        self.bus = bus
        self.clock = clock
        self.timeout = timeout
        self._handlers: dict[str, Handler] = {
            "billing.current_bill": self._current_bill,
            "billing.account_by_phone": self._account_by_phone,
            "outages.for_account": self._outage_for_account,
            "work_orders.open": self._open_order,
            "work_orders.update": self._update_order,
            "work_orders.submit": self._submit_order,
            "work_orders.for_account": self._orders_for_account,
            "voice_messages.store": self._store_voice_message,
            "surveys.store": self._store_survey,
        }
        assert frozenset(self._handlers) == SERVICE_NAMES

    @property
    def names(self) -> frozenset[str]:
        return SERVICE_NAMES

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> ServiceResult:
        bound = log.bind(call_id=ctx.call_id, service=name)
        handler = self._handlers.get(name)
        if handler is None:
            bound.warning("service.unknown")
            return ServiceResult("error", {"message": f"unknown service {name!r}"})
        try:
            async with asyncio.timeout(self.timeout):
                result = await handler(dict(args or {}), ctx)
        except ArgumentError as exc:
            result = ServiceResult("error", {"message": f"{name}: {exc}"})
        except TimeoutError:
            bound.warning("service.timeout", seconds=self.timeout)
            return ServiceResult("error", {"message": f"{name} timed out"})
        except Exception as exc:  # a store failure must not end the call
            bound.exception("service.failed")
            return ServiceResult("error", {"message": f"{name} failed: {type(exc).__name__}"})
        if result.status == "error":
            bound.warning("service.error", message=result.data.get("message"))
        else:
            bound.debug("service.called", status=result.status)
        return result

    def _publish(self, kind: str, ctx: CallContext, /, **data: Any) -> None:
        if self.bus is not None:
            self.bus.publish(kind, ctx.call_id, **data)

    # -- billing and outages ----------------------------------------------------------------

    async def _current_bill(self, args: dict[str, Any], ctx: CallContext) -> ServiceResult:
        account = _take(args, "account")
        _no_more(args)
        return await billing.current_bill(self.billing_db, account, call_id=ctx.call_id)

    async def _account_by_phone(self, args: dict[str, Any], ctx: CallContext) -> ServiceResult:
        phone = args.pop("phone", None) or ctx.caller
        _no_more(args)
        return await billing.account_by_phone(self.billing_db, phone, call_id=ctx.call_id)

    async def _outage_for_account(self, args: dict[str, Any], ctx: CallContext) -> ServiceResult:
        account = _take(args, "account")
        _no_more(args)
        return await outages.for_account(
            self.db, account, accounts_db=self.billing_db, now=self.clock(), call_id=ctx.call_id
        )

    # -- work orders ------------------------------------------------------------------------

    async def _open_order(self, args: dict[str, Any], ctx: CallContext) -> ServiceResult:
        order_type = _take(args, "type")
        result = await work_orders.open_order(
            self.db,
            order_type,
            _fields(args),
            call_id=ctx.call_id,
            caller=ctx.caller,
            accounts_db=self.billing_db,
            now=self.clock(),
        )
        if result.status == "ok":
            self._publish(
                "workorder.opened", ctx, number=result.data["number"], type=result.data["type"]
            )
        return result

    async def _update_order(self, args: dict[str, Any], ctx: CallContext) -> ServiceResult:
        number = _take(args, "number")
        return await work_orders.update_order(
            self.db,
            number,
            _fields(args),
            call_id=ctx.call_id,
            accounts_db=self.billing_db,
            now=self.clock(),
        )

    async def _submit_order(self, args: dict[str, Any], ctx: CallContext) -> ServiceResult:
        number = _take(args, "number")
        _no_more(args)
        result = await work_orders.submit_order(
            self.db, number, call_id=ctx.call_id, accounts_db=self.billing_db, now=self.clock()
        )
        if result.status == "ok":
            self._publish("workorder.submitted", ctx, number=result.data["number"])
        elif result.status == "duplicate":
            self._publish(
                "workorder.duplicate",
                ctx,
                number=result.data["draft_number"],
                duplicate_of=result.data["number"],
                duplicate_of_kind=result.data["kind"],
            )
        return result

    async def _orders_for_account(self, args: dict[str, Any], ctx: CallContext) -> ServiceResult:
        account = _take(args, "account")
        _no_more(args)
        return await work_orders.open_orders_for_account(self.db, account)

    # -- voice messages ---------------------------------------------------------------------

    async def _store_voice_message(self, args: dict[str, Any], ctx: CallContext) -> ServiceResult:
        path = _take(args, "path")
        seconds = _take(args, "seconds")
        account = args.pop("account", None)
        _no_more(args)
        return await voice_messages.store(
            self.db,
            path=path,
            seconds=seconds,
            account=account,
            call_id=ctx.call_id,
            caller=ctx.caller,
            now=self.clock(),
        )

    # -- post-call survey ---------------------------------------------------------------------

    async def _store_survey(self, args: dict[str, Any], ctx: CallContext) -> ServiceResult:
        score = _take(args, "score")
        _no_more(args)
        return await surveys.store(self.db, call_id=ctx.call_id, score=score, now=self.clock())
