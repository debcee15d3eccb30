"""Post-call satisfaction survey scores.

One row per survey answered (满意度: 1 满意, 2 基本满意, 3 不满意), with the queue and the
agent who served the caller; written by the ``surveys.store`` service.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)  # hotline.store.models.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "call_surveys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("agent_id", sa.String(length=16), nullable=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("score IN (1, 2, 3)", name=op.f("ck_call_surveys_score")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_surveys")),
    )
    op.create_index(op.f("ix_call_surveys_call_id"), "call_surveys", ["call_id"])
    op.create_index(op.f("ix_call_surveys_queue"), "call_surveys", ["queue"])
    op.create_index(op.f("ix_call_surveys_agent_id"), "call_surveys", ["agent_id"])


def downgrade() -> None:
    op.drop_table("call_surveys")  # drops its indexes with it
