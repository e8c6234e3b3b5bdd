"""De-identified images: each stored image says how it was de-identified and whether its original is kept;
and each analysis its patient's case-folded name or ID, for a patient's timeline and erasure.

`deidentification` is NULL for images stored before this revision: their `image_ref` is the original
upload, so `original_ref` is set to it here (the rows stay readable as they were) until
`ecg-app db deidentify` replaces them with de-identified pictures.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("images", sa.Column("original_ref", sa.String(255), nullable=True))
    op.add_column("images", sa.Column("deidentification", sa.String(16), nullable=True))
    op.execute("UPDATE images SET original_ref = image_ref")
    op.add_column("analyses", sa.Column("patient_key", sa.String(200), nullable=True))
    op.create_index("ix_analyses_patient_key", "analyses", ["patient_key"])
    # Case-folded in Python, as the app does (SQL's lower() does not fold every alphabet). Offline (--sql)
    # there are no rows to read: run the upgrade online, or `ecg-app db upgrade`.
    if context.is_offline_mode():
        return
    connection = op.get_bind()
    analyses = sa.table(
        "analyses", sa.column("id", sa.Uuid()), sa.column("patient_name"), sa.column("patient_key")
    )
    named = sa.select(analyses.c.id, analyses.c.patient_name).where(analyses.c.patient_name.is_not(None))
    for key, name in connection.execute(named).all():
        connection.execute(
            sa.update(analyses).where(analyses.c.id == key).values(patient_key=name.casefold())
        )


def downgrade() -> None:
    op.drop_index("ix_analyses_patient_key", table_name="analyses")
    op.drop_column("analyses", "patient_key")
    # Images de-identified since stay de-identified: their originals are gone unless they were kept.
    op.execute(
        "UPDATE images SET image_ref = original_ref WHERE original_ref IS NOT NULL"
        " AND deidentification IS NOT NULL"
    )
    # Plain ALTER TABLE (SQLite >= 3.35 has DROP COLUMN): a batch copy of `images` would drop the table
    # that analyses refer to, which SQLite's foreign keys refuse.
    op.drop_column("images", "deidentification")
    op.drop_column("images", "original_ref")
