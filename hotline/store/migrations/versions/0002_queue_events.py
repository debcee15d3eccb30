"""Queue event log.

One row per queue event (ENTER, OFFER, CONNECT, ABANDON, …, agent status and state changes),
stored by :class:`hotline.services.queue_log.QueueLogWriter` from the bus.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)  # hotline.store.models.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "queue_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", TIMESTAMP, nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("agent_id", sa.String(length=16), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_events")),
    )
    op.create_index(op.f("ix_queue_events_time"), "queue_events", ["time"])
    op.create_index(op.f("ix_queue_events_queue"), "queue_events", ["queue"])
    op.create_index(op.f("ix_queue_events_call_id"), "queue_events", ["call_id"])
    op.create_index(op.f("ix_queue_events_agent_id"), "queue_events", ["agent_id"])


def downgrade() -> None:
    op.drop_table("queue_events")  # drops its indexes with it
