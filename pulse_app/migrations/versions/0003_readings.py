"""Schema 3: the digitiser's reading of a session's image, stored once per session.

- ``readings``: one row per session (``session_id`` is the key, deleted with its session): when
  it was read, the summary JSON (layout, calibration, per-lead status, measurements, evidence
  lines) and the overlay PNG. Sessions and turns are unchanged; a session read before this
  schema gets its reading the next time its picture is read.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("readings",
                    sa.Column("session_id", sa.String(length=64), nullable=False),
                    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("summary", sa.JSON(), nullable=False),
                    sa.Column("overlay_png", sa.LargeBinary(), nullable=False),
                    sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("session_id"))
    op.execute(sa.text("UPDATE schema_info SET version = 3"))


def downgrade() -> None:
    op.drop_table("readings")
    op.execute(sa.text("UPDATE schema_info SET version = 2"))
