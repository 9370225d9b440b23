"""rollout

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 12:00:01.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollout_policies",
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("organisation", sa.String(length=63), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("max_nack_ratio", sa.Float(), nullable=False),
        sa.Column("min_reports", sa.Integer(), nullable=False),
        sa.Column("auto_rollback", sa.Boolean(), nullable=False),
        sa.Column("row_version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.CheckConstraint(
            "max_nack_ratio > 0 AND max_nack_ratio <= 1", name=op.f("ck_rollout_policies_max_nack_ratio")
        ),
        sa.CheckConstraint("min_reports >= 1", name=op.f("ck_rollout_policies_min_reports")),
        sa.PrimaryKeyConstraint("environment_id", name=op.f("pk_rollout_policies")),
    )
    op.create_table(
        "revision_health",
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("rollback_of", sa.BigInteger(), nullable=True),
        sa.Column("acks", sa.Integer(), nullable=False),
        sa.Column("nacks", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=10), nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rollback_to", sa.BigInteger(), nullable=True),
        sa.Column("rollback_revision", sa.BigInteger(), nullable=True),
        sa.Column("rollback_outcome", sa.String(length=20), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "verdict IN ('pending', 'healthy', 'failing')", name=op.f("ck_revision_health_verdict")
        ),
        sa.CheckConstraint(
            "rollback_outcome IN ('rolled-back', 'superseded')",
            name=op.f("ck_revision_health_rollback_outcome"),
        ),
        sa.PrimaryKeyConstraint("environment_id", "revision", name=op.f("pk_revision_health")),
    )


def downgrade() -> None:
    op.drop_table("revision_health")
    op.drop_table("rollout_policies")
