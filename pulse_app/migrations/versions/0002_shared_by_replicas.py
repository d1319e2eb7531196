"""Schema 2: what several app replicas on one database share besides the sessions.

- ``sessions.answering_by`` / ``answering_until``: the lease of the answer being written for a
  session (one at a time across every replica; it lapses if its replica dies);
- ``exports``: files (PDF reports, handouts...) waiting for their owner's one download (any
  replica serves it); deleted with their session by the app;
- ``sign_ins``: accounts signed in through the login page (SHA-256 of the cookie's token);
- ``app_info``: values every replica must agree on (the sign-in cookie's name);
- the session list's index gains ``id``, so it gives the list's exact order (PostgreSQL's
  planner then reads 50 rows of the index instead of sorting the owner's sessions).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-01
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("answering_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("answering_until", sa.DateTime(timezone=True), nullable=True))
    op.drop_index("ix_sessions_owner_updated", table_name="sessions")
    op.create_index("ix_sessions_owner_updated", "sessions", ["owner", "updated_at", "id"])
    op.create_table("exports",
                    sa.Column("id", sa.String(length=64), nullable=False),
                    sa.Column("owner", sa.String(length=256), nullable=False),
                    sa.Column("session_id", sa.String(length=128), nullable=False),
                    sa.Column("filename", sa.String(length=256), nullable=False),
                    sa.Column("data", sa.LargeBinary(), nullable=False),
                    sa.Column("media_type", sa.String(length=128), nullable=False),
                    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_exports_created_at", "exports", ["created_at"])
    op.create_index("ix_exports_session_id", "exports", ["session_id"])
    op.create_table("sign_ins",
                    sa.Column("digest", sa.String(length=64), nullable=False),
                    sa.Column("username", sa.String(length=64), nullable=False),
                    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint("digest"))
    op.create_index("ix_sign_ins_username", "sign_ins", ["username"])
    op.create_table("app_info",
                    sa.Column("key", sa.String(length=64), nullable=False),
                    sa.Column("value", sa.String(length=256), nullable=False),
                    sa.PrimaryKeyConstraint("key"))
    op.bulk_insert(sa.table("app_info", sa.column("key", sa.String()),
                            sa.column("value", sa.String())),
                   [{"key": "cookie_id", "value": secrets.token_urlsafe(16)}])
    op.execute(sa.text("UPDATE schema_info SET version = 2"))


def downgrade() -> None:
    op.drop_table("app_info")
    op.drop_table("sign_ins")
    op.drop_table("exports")
    op.drop_index("ix_sessions_owner_updated", table_name="sessions")
    op.create_index("ix_sessions_owner_updated", "sessions", ["owner", "updated_at"])
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("answering_until")
        batch.drop_column("answering_by")
    op.execute(sa.text("UPDATE schema_info SET version = 1"))
