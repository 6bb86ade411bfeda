"""Alembic environment: runs on SQLite and PostgreSQL from one tree.

`uba db upgrade` and server start-up call uba.storage.database.upgrade(),
which passes the connection in `config.attributes["connection"]`.
"""

from alembic import context

from uba.storage.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
