"""Explanations: image-quality warnings and the Grad-CAM overlay of each analysis.

Both columns are nullable, so analyses stored before this revision stay valid (no warnings recorded, no
overlay file).

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("quality_warnings", sa.Text(), nullable=True))
        batch.add_column(sa.Column("explanation_ref", sa.String(length=255), nullable=True))


def downgrade() -> None:
    # The overlay files themselves are left to the start-up sweep (no row refers to them any more).
    with op.batch_alter_table("analyses") as batch:
        batch.drop_column("explanation_ref")
        batch.drop_column("quality_warnings")
