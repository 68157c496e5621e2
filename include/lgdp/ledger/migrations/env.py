"""Alembic environment for the ledger: everything lives in the ``lgdp`` schema."""

from alembic import context
from sqlalchemy import create_engine, text

from lgdp.ledger.models import SCHEMA, Base

config = context.config


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection") or create_engine(config.get_main_option("sqlalchemy.url"))
    with connectable.connect() if hasattr(connectable, "connect") else connectable as connection:
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            version_table_schema=SCHEMA,
            include_schemas=True,
            include_name=lambda name, type_, parent: type_ != "schema" or name == SCHEMA,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run 'lgdp db upgrade' against the database")
run_migrations_online()
