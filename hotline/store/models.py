"""The hotline's storage schema as SQLAlchemy 2 declarative models.

Business data the IVR reads (areas, customers, accounts, bills, outages) and what the engine
writes (work orders, voice messages, call detail records, recordings).

Conventions:

- Money and energy are ``Numeric(12, 2)`` mapped to :class:`~decimal.Decimal`; a bill's
  ``balance`` is the account balance after that bill, negative meaning arrears.
- Every timestamp is a timezone-aware UTC :class:`~datetime.datetime` (:class:`UtcDateTime`
  stores naive UTC on SQLite, ``timestamptz`` elsewhere, and always hands back aware UTC).
  Calendar facts the caller hears (bill periods, due dates, work-order number dates) use China
  Standard Time, :data:`LOCAL_TZ`.
- Areas are referenced by district name (``"城东区"``); :class:`Area` says whether a district
  is urban, rural or remote, which sets the fault-repair arrival deadline.
- Constraint names follow :data:`NAMING_CONVENTION` so Alembic migrations (including SQLite
  batch migrations) can address them.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

LOCAL_TZ = timezone(timedelta(hours=8), "CST")
"""China Standard Time (no daylight saving), for periods, due dates and order numbers."""

ACCOUNT_NO_LENGTH = 10

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


def local_date(moment: datetime) -> date:
    """The calendar date in China at ``moment`` (an aware datetime)."""
    return moment.astimezone(LOCAL_TZ).date()


def normalize_account_no(value: object) -> str | None:
    """``value`` as a 10-digit account number, or None when it is not one."""
    text = str(value).strip() if value is not None else ""
    return text if len(text) == ACCOUNT_NO_LENGTH and text.isdigit() else None


_PHONE_PREFIX = re.compile(r"^(?:\+86|0086|86)(?=1\d{10}$)")


def normalize_phone(value: object) -> str | None:
    """Digits of a phone number without separators or the +86 prefix (None if not a number)."""
    digits = re.sub(r"[\s\-()]", "", str(value or ""))
    digits = _PHONE_PREFIX.sub("", digits)
    return digits if 5 <= len(digits) <= 20 and digits.isdigit() else None


class AreaKind(enum.StrEnum):
    URBAN = "urban"
    RURAL = "rural"
    REMOTE = "remote"


class WorkOrderType(enum.StrEnum):
    """The eight 95598 business types."""

    FAULT_REPAIR = "fault_repair"  # 故障报修
    SERVICE_REQUEST = "service_request"  # 服务申请
    SUGGESTION = "suggestion"  # 建议
    OPINION = "opinion"  # 意见
    CONSULTATION = "consultation"  # 业务咨询
    COMPLAINT = "complaint"  # 投诉
    REPORT = "report"  # 举报
    PRAISE = "praise"  # 表扬


class WorkOrderStatus(enum.StrEnum):
    DRAFT = "draft"  # being filled in during the call
    SUBMITTED = "submitted"  # accepted; the arrival/reply deadline runs
    DISPATCHED = "dispatched"  # handed to the local branch or repair crew
    CLOSED = "closed"  # done, or folded into a known outage/order (``duplicate_of``)


OPEN_WORK_ORDER_STATUSES = (WorkOrderStatus.SUBMITTED, WorkOrderStatus.DISPATCHED)


class FaultType(enum.StrEnum):
    AREA_OUTAGE = "area_outage"  # the neighbourhood is dark
    OWN_HOUSE = "own_house"  # only the caller's premises
    DANGER = "danger"  # fallen line, sparks, fire: a safety hazard


class VoiceMessageStatus(enum.StrEnum):
    NEW = "new"
    HEARD = "heard"
    HANDLED = "handled"


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend; naive datetimes are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UtcDateTime(),
        Decimal: Numeric(12, 2),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


class Area(Base):
    """A district of the service territory; its kind sets the repair arrival deadline."""

    __tablename__ = "areas"
    __table_args__ = (CheckConstraint(_in("kind", AreaKind), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)  # administrative code
    name: Mapped[str] = mapped_column(String(32), unique=True)  # "城东区"
    kind: Mapped[str] = mapped_column(String(8))  # AreaKind


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(String(20), index=True)
    address: Mapped[str] = mapped_column(String(200))
    area: Mapped[str] = mapped_column(String(32), index=True)
    vip: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)

    accounts: Mapped[list[Account]] = relationship(back_populates="customer")


class Account(Base):
    """An electricity account (户号): one metered supply point of a customer."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_no: Mapped[str] = mapped_column(String(ACCOUNT_NO_LENGTH), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    address: Mapped[str] = mapped_column(String(200))
    area: Mapped[str] = mapped_column(String(32), index=True)
    meter_type: Mapped[str] = mapped_column(String(32))  # "single_phase_smart"…
    created_at: Mapped[datetime] = mapped_column(default=utc_now)

    customer: Mapped[Customer] = relationship(back_populates="accounts")
    bills: Mapped[list[Bill]] = relationship(back_populates="account")


class Bill(Base):
    """One monthly bill; ``balance`` is the account balance after it (negative: arrears)."""

    __tablename__ = "bills"
    __table_args__ = (UniqueConstraint("account_id", "period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(7))  # "YYYY-MM"
    kwh: Mapped[Decimal]
    charge: Mapped[Decimal]
    paid: Mapped[Decimal]
    balance: Mapped[Decimal]
    due_date: Mapped[date] = mapped_column(Date)

    account: Mapped[Account] = relationship(back_populates="bills")


class WorkOrder(Base):
    """A 95598 work order (工单), drafted during a call and submitted at its end."""

    __tablename__ = "work_orders"
    __table_args__ = (
        CheckConstraint(_in("type", WorkOrderType), name="type"),
        CheckConstraint(_in("status", WorkOrderStatus), name="status"),
        CheckConstraint(f"fault_type IS NULL OR {_in('fault_type', FaultType)}", name="fault_type"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)  # "GZ20261123000042"
    type: Mapped[str] = mapped_column(String(20))  # WorkOrderType
    status: Mapped[str] = mapped_column(String(12), index=True, default=WorkOrderStatus.DRAFT)
    account_no: Mapped[str | None] = mapped_column(String(ACCOUNT_NO_LENGTH), index=True)
    caller: Mapped[str | None] = mapped_column(String(32))
    contact_phone: Mapped[str | None] = mapped_column(String(20))
    fault_type: Mapped[str | None] = mapped_column(String(16))  # FaultType, fault repair only
    area: Mapped[str | None] = mapped_column(String(32), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    description_recording: Mapped[str | None] = mapped_column(String(255))
    duplicate_of: Mapped[str | None] = mapped_column(String(16))  # order/outage number
    call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)
    submitted_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]  # crew arrival (fault repair) or reply deadline


class VoiceMessage(Base):
    """A caller's voice message (留言) waiting for an operator."""

    __tablename__ = "voice_messages"
    __table_args__ = (CheckConstraint(_in("status", VoiceMessageStatus), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    caller: Mapped[str | None] = mapped_column(String(32))
    account_no: Mapped[str | None] = mapped_column(String(ACCOUNT_NO_LENGTH))
    path: Mapped[str] = mapped_column(String(255))
    seconds: Mapped[float]
    status: Mapped[str] = mapped_column(String(8), index=True, default=VoiceMessageStatus.NEW)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class CallRecord(Base):
    """A call detail record: one row per call, written at start and completed at the end."""

    __tablename__ = "call_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str | None] = mapped_column(String(32))
    line: Mapped[str | None] = mapped_column(String(32))
    caller: Mapped[str | None] = mapped_column(String(32), index=True)
    called: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(index=True)
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    hangup_cause: Mapped[str | None] = mapped_column(String(32))
    result: Mapped[str | None] = mapped_column(String(16))  # completed/abandoned/transferred…
    last_step: Mapped[str | None] = mapped_column(String(128))  # "flow:step"
    flow_path: Mapped[list[str]] = mapped_column(default=list)  # ["main:welcome", …]
    keys: Mapped[str] = mapped_column(Text, default="")  # every digit pressed, in order
    recording_path: Mapped[str | None] = mapped_column(String(255))
    work_order_number: Mapped[str | None] = mapped_column(String(16))


class Recording(Base):
    """A finished recording file (whole call, voice message or fault description)."""

    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(String(255), unique=True)
    purpose: Mapped[str | None] = mapped_column(String(24))  # "call", "voice_message"…
    seconds: Mapped[float]
    channels: Mapped[int] = mapped_column(Integer, default=1)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    recovered: Mapped[bool] = mapped_column(Boolean, default=False)  # salvaged after a crash


class Outage(Base):
    """A power outage in an area: planned (announced ahead) or unplanned (a fault).

    ``end`` is when supply is (or is scheduled to be) restored; it stays empty for an unplanned
    outage until the crew restores power. ``expected_end`` is the estimate told to callers.
    """

    __tablename__ = "outages"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)  # "TD20261123000001"
    area: Mapped[str] = mapped_column(String(32), index=True)
    start: Mapped[datetime]
    end: Mapped[datetime | None]
    expected_end: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(String(64))
    planned: Mapped[bool] = mapped_column(Boolean, default=False)
    notice: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class QueueEventRecord(Base):
    """One line of the durable queue event log (an :class:`acd.events.QueueEvent`).

    ``time`` is when the event was published on the bus; rows are read back in ``id`` order,
    which is the order the core logged them. ``data`` holds the kind's own keys (position,
    wait, reason, cause…) as listed in :mod:`acd.events`.
    """

    __tablename__ = "queue_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    time: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(24))  # acd.events.EventKind value, "SURVEY"…
    queue: Mapped[str | None] = mapped_column(String(64), index=True)
    call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    agent_id: Mapped[str | None] = mapped_column(String(16), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CallSurvey(Base):
    """A caller's post-call satisfaction score (满意度) for the agent who served them.

    ``score``: 1 满意 (satisfied), 2 基本满意 (fairly satisfied), 3 不满意 (dissatisfied).
    """

    __tablename__ = "call_surveys"
    __table_args__ = (CheckConstraint("score IN (1, 2, 3)", name="score"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    queue: Mapped[str | None] = mapped_column(String(64), index=True)
    agent_id: Mapped[str | None] = mapped_column(String(16), index=True)
    score: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class SipSeat(Base):
    """SIP credentials of an agent seat: the digest HA1 per algorithm, never the password.

    ``ha1_md5`` = MD5(user:realm:password), ``ha1_sha256`` the same with SHA-256 (RFC 7616).
    """

    __tablename__ = "sip_seats"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    realm: Mapped[str] = mapped_column(String(64))
    ha1_md5: Mapped[str] = mapped_column(String(32))
    ha1_sha256: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class ApiUser(Base):
    """A user of the agent control API (docs/agent_api.md): an agent or a supervisor.

    ``password_hash`` is ``scrypt$n$r$p$salt$hash`` (hex; see :mod:`hotline.services.api_users`),
    never the password. An ``agent`` user acts only as ``agent_id``; a ``supervisor`` may act
    on any agent and read the queue figures.
    """

    __tablename__ = "api_users"
    __table_args__ = (CheckConstraint("role IN ('agent', 'supervisor')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(12))
    agent_id: Mapped[str | None] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)
