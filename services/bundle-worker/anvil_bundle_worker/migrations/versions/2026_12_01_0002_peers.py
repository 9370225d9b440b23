"""peers

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "peers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organisation", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=True),
        sa.Column("remote_organisation", sa.String(length=63), nullable=False),
        sa.Column("jwks", sa.JSON(), nullable=False),
        sa.Column("keys_fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("token", sa.Text(), nullable=True),
        sa.Column("auto_apply", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_peers")),
        sa.UniqueConstraint("organisation", "issuer", name=op.f("uq_peers_organisation_issuer")),
        sa.UniqueConstraint("organisation", "name", name=op.f("uq_peers_organisation_name")),
    )


def downgrade() -> None:
    op.drop_table("peers")
