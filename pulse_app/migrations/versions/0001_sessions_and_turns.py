"""Schema 1: sessions and their turns, as the app created them before migrations existed.

A database made by that version (tables, ``schema_info`` = 1, no ``alembic_version``) is stamped
with this revision and upgraded from here.

Revision ID: 0001
Revises:
Create Date: 2026-11-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("schema_info",
                    sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
                    sa.PrimaryKeyConstraint("version"))
    op.create_table("sessions",
                    sa.Column("id", sa.String(length=64), nullable=False),
                    sa.Column("owner", sa.String(length=256), nullable=False),
                    sa.Column("title", sa.String(length=200), nullable=False),
                    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("model_id", sa.String(length=512), nullable=True),
                    sa.Column("model_revision", sa.String(length=256), nullable=True),
                    sa.Column("params", sa.JSON(), nullable=False),
                    sa.Column("original_png", sa.LargeBinary(), nullable=False),
                    sa.Column("edited_png", sa.LargeBinary(), nullable=False),
                    sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_sessions_owner_updated", "sessions", ["owner", "updated_at"])
    op.create_table("turns",
                    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
                    sa.Column("session_id", sa.String(length=64), nullable=False),
                    sa.Column("index", sa.Integer(), nullable=False),
                    sa.Column("question", sa.Text(), nullable=False),
                    sa.Column("answer", sa.Text(), nullable=False),
                    sa.Column("model_id", sa.String(length=512), nullable=True),
                    sa.Column("model_label", sa.String(length=512), nullable=True),
                    sa.Column("params", sa.JSON(), nullable=False),
                    sa.Column("stopped", sa.Boolean(), nullable=False),
                    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
                    sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("id"),
                    sa.UniqueConstraint("session_id", "index", name="uq_turns_session_index"))
    op.create_index("ix_turns_session_id", "turns", ["session_id"])
    op.bulk_insert(sa.table("schema_info", sa.column("version", sa.Integer())), [{"version": 1}])


def downgrade() -> None:
    op.drop_table("turns")
    op.drop_table("sessions")
    op.drop_table("schema_info")
