"""Measurements: each analysis keeps the heart rate, intervals and axis read off its trace, as JSON
(`Measurements.to_dict`), so the history, the CSV export and a later PDF show what was measured then.

Nullable: analyses stored before this revision were never measured, and read back as such (None).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("analyses", sa.Column("measurements", sa.Text(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE, as 0005 (SQLite >= 3.35 has DROP COLUMN): no batch copy of the table needed.
    op.drop_column("analyses", "measurements")
