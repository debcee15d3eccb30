"""Initial schema.

Areas, customers, accounts, bills, outages, work orders, voice messages, call detail records
and recordings.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(precision=12, scale=2)
TIMESTAMP = sa.DateTime(timezone=True)  # hotline.store.models.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "areas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.CheckConstraint("kind IN ('urban', 'rural', 'remote')", name=op.f("ck_areas_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_areas")),
        sa.UniqueConstraint("code", name=op.f("uq_areas_code")),
        sa.UniqueConstraint("name", name=op.f("uq_areas_name")),
    )

    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("address", sa.String(length=200), nullable=False),
        sa.Column("area", sa.String(length=32), nullable=False),
        sa.Column("vip", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    op.create_index(op.f("ix_customers_area"), "customers", ["area"])
    op.create_index(op.f("ix_customers_phone"), "customers", ["phone"])

    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_no", sa.String(length=10), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=200), nullable=False),
        sa.Column("area", sa.String(length=32), nullable=False),
        sa.Column("meter_type", sa.String(length=32), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_accounts_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("account_no", name=op.f("uq_accounts_account_no")),
    )
    op.create_index(op.f("ix_accounts_area"), "accounts", ["area"])
    op.create_index(op.f("ix_accounts_customer_id"), "accounts", ["customer_id"])

    op.create_table(
        "bills",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("kwh", MONEY, nullable=False),
        sa.Column("charge", MONEY, nullable=False),
        sa.Column("paid", MONEY, nullable=False),
        sa.Column("balance", MONEY, nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_bills_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bills")),
        sa.UniqueConstraint("account_id", "period", name=op.f("uq_bills_account_id_period")),
    )

    op.create_table(
        "outages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("area", sa.String(length=32), nullable=False),
        sa.Column("start", TIMESTAMP, nullable=False),
        sa.Column("end", TIMESTAMP, nullable=True),
        sa.Column("expected_end", TIMESTAMP, nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("planned", sa.Boolean(), nullable=False),
        sa.Column("notice", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outages")),
        sa.UniqueConstraint("number", name=op.f("uq_outages_number")),
    )
    op.create_index(op.f("ix_outages_area"), "outages", ["area"])

    op.create_table(
        "work_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("account_no", sa.String(length=10), nullable=True),
        sa.Column("caller", sa.String(length=32), nullable=True),
        sa.Column("contact_phone", sa.String(length=20), nullable=True),
        sa.Column("fault_type", sa.String(length=16), nullable=True),
        sa.Column("area", sa.String(length=32), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("description_recording", sa.String(length=255), nullable=True),
        sa.Column("duplicate_of", sa.String(length=16), nullable=True),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("submitted_at", TIMESTAMP, nullable=True),
        sa.Column("due_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "type IN ('fault_repair', 'service_request', 'suggestion', 'opinion', "
            "'consultation', 'complaint', 'report', 'praise')",
            name=op.f("ck_work_orders_type"),
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'submitted', 'dispatched', 'closed')",
            name=op.f("ck_work_orders_status"),
        ),
        sa.CheckConstraint(
            "fault_type IS NULL OR fault_type IN ('area_outage', 'own_house', 'danger')",
            name=op.f("ck_work_orders_fault_type"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_orders")),
        sa.UniqueConstraint("number", name=op.f("uq_work_orders_number")),
    )
    op.create_index(op.f("ix_work_orders_account_no"), "work_orders", ["account_no"])
    op.create_index(op.f("ix_work_orders_area"), "work_orders", ["area"])
    op.create_index(op.f("ix_work_orders_call_id"), "work_orders", ["call_id"])
    op.create_index(op.f("ix_work_orders_status"), "work_orders", ["status"])

    op.create_table(
        "voice_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("caller", sa.String(length=32), nullable=True),
        sa.Column("account_no", sa.String(length=10), nullable=True),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("seconds", sa.Double(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "status IN ('new', 'heard', 'handled')", name=op.f("ck_voice_messages_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_messages")),
    )
    op.create_index(op.f("ix_voice_messages_call_id"), "voice_messages", ["call_id"])
    op.create_index(op.f("ix_voice_messages_status"), "voice_messages", ["status"])

    op.create_table(
        "call_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("line", sa.String(length=32), nullable=True),
        sa.Column("caller", sa.String(length=32), nullable=True),
        sa.Column("called", sa.String(length=32), nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("answered_at", TIMESTAMP, nullable=True),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("hangup_cause", sa.String(length=32), nullable=True),
        sa.Column("result", sa.String(length=16), nullable=True),
        sa.Column("last_step", sa.String(length=128), nullable=True),
        sa.Column("flow_path", sa.JSON(), nullable=False),
        sa.Column("keys", sa.Text(), nullable=False),
        sa.Column("recording_path", sa.String(length=255), nullable=True),
        sa.Column("work_order_number", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_records")),
        sa.UniqueConstraint("call_id", name=op.f("uq_call_records_call_id")),
    )
    op.create_index(op.f("ix_call_records_caller"), "call_records", ["caller"])
    op.create_index(op.f("ix_call_records_started_at"), "call_records", ["started_at"])

    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("purpose", sa.String(length=24), nullable=True),
        sa.Column("seconds", sa.Double(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("recovered", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint("path", name=op.f("uq_recordings_path")),
    )
    op.create_index(op.f("ix_recordings_call_id"), "recordings", ["call_id"])


def downgrade() -> None:
    for table in (
        "recordings",
        "call_records",
        "voice_messages",
        "work_orders",
        "outages",
        "bills",
        "accounts",
        "customers",
        "areas",
    ):
        op.drop_table(table)  # drops the table's indexes with it
