"""Users of the agent control API: agents and supervisors with salted scrypt password hashes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)  # hotline.store.models.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "api_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=12), nullable=False),
        sa.Column("agent_id", sa.String(length=16), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("role IN ('agent', 'supervisor')", name=op.f("ck_api_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_users")),
        sa.UniqueConstraint("username", name=op.f("uq_api_users_username")),
    )


def downgrade() -> None:
    op.drop_table("api_users")
