"""Alembic's environment for the sessions database: runs on the connection (and inside the
transaction) that :func:`pulse_app.migrations.upgrade` hands it, never on a URL of its own."""

from alembic import context

from pulse_app.store import Base


def run_migrations() -> None:
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if getattr(context, "config", None) is not None:    # not when merely imported (doctests)
    run_migrations()
