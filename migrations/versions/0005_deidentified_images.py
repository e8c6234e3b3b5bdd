"""De-identified images: each stored image says how it was de-identified and whether its original is kept.

`deidentification` is NULL for images stored before this revision: their `image_ref` is the original
upload, so `original_ref` is set to it here (the rows stay readable as they were) until
`ecg-app db deidentify` replaces them with de-identified pictures.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("images", sa.Column("original_ref", sa.String(255), nullable=True))
    op.add_column("images", sa.Column("deidentification", sa.String(16), nullable=True))
    op.execute("UPDATE images SET original_ref = image_ref")


def downgrade() -> None:
    # Images de-identified since stay de-identified: their originals are gone unless they were kept.
    op.execute(
        "UPDATE images SET image_ref = original_ref WHERE original_ref IS NOT NULL"
        " AND deidentification IS NOT NULL"
    )
    # Plain ALTER TABLE (SQLite >= 3.35 has DROP COLUMN): a batch copy of `images` would drop the table
    # that analyses refer to, which SQLite's foreign keys refuse.
    op.drop_column("images", "deidentification")
    op.drop_column("images", "original_ref")
