"""Initial schema: images (content-addressed files) and analyses.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("image_ref", sa.String(length=255), nullable=False),
        sa.Column("thumbnail_ref", sa.String(length=255), nullable=False),
        sa.Column("media_type", sa.String(length=32), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_images")),
    )
    op.create_table(
        "analyses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.Column("original_filename", sa.String(length=255), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("prob_mi", sa.Float(), nullable=False),
        sa.Column("prob_hmi", sa.Float(), nullable=False),
        sa.Column("prob_ahb", sa.Float(), nullable=False),
        sa.Column("prob_normal", sa.Float(), nullable=False),
        sa.Column("prob_nonecg", sa.Float(), nullable=False),
        sa.Column("risk_level", sa.String(length=8), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=True),
        sa.Column("patient_age", sa.Integer(), nullable=True),
        sa.Column("patient_sex", sa.String(length=16), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "label IN ('MI', 'HMI', 'AHB', 'Normal', 'NonECG')", name=op.f("ck_analyses_label")
        ),
        sa.CheckConstraint(
            "risk_level IN ('NONE', 'LOW', 'MEDIUM', 'HIGH')", name=op.f("ck_analyses_risk_level")
        ),
        sa.CheckConstraint("status IN ('ok', 'needs_review')", name=op.f("ck_analyses_status")),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name=op.f("ck_analyses_confidence")),
        sa.CheckConstraint(
            "patient_age IS NULL OR (patient_age >= 0 AND patient_age <= 150)", name=op.f("ck_analyses_age")
        ),
        sa.ForeignKeyConstraint(
            ["image_sha256"],
            ["images.sha256"],
            name=op.f("fk_analyses_image_sha256_images"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analyses")),
    )
    op.create_index(op.f("ix_analyses_created_at"), "analyses", ["created_at"])
    op.create_index(op.f("ix_analyses_image_sha256"), "analyses", ["image_sha256"])
    op.create_index("ix_analyses_label_created_at", "analyses", ["label", "created_at"])
    op.create_index("ix_analyses_risk_level_created_at", "analyses", ["risk_level", "created_at"])
    op.create_index("ix_analyses_status_created_at", "analyses", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_analyses_status_created_at", table_name="analyses")
    op.drop_index("ix_analyses_risk_level_created_at", table_name="analyses")
    op.drop_index("ix_analyses_label_created_at", table_name="analyses")
    op.drop_index(op.f("ix_analyses_image_sha256"), table_name="analyses")
    op.drop_index(op.f("ix_analyses_created_at"), table_name="analyses")
    op.drop_table("analyses")
    op.drop_table("images")
