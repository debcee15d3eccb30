"""SIP credentials of agent seats.

One row per seat user name with its digest realm and HA1 for MD5 and SHA-256; the plain
password is never stored. Written by :func:`hotline.services.sip_seats.set_seat_password`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)  # hotline.store.models.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "sip_seats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("realm", sa.String(length=64), nullable=False),
        sa.Column("ha1_md5", sa.String(length=32), nullable=False),
        sa.Column("ha1_sha256", sa.String(length=64), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sip_seats")),
        sa.UniqueConstraint("username", name=op.f("uq_sip_seats_username")),
    )


def downgrade() -> None:
    op.drop_table("sip_seats")
