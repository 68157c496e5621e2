"""The ledger's Alembic migrations go up and down cleanly on a real PostgreSQL."""

from sqlalchemy import create_engine, inspect, text

from lgdp.devdb import create_database
from lgdp.ledger import db
from lgdp.ledger.models import SCHEMA, Base



def _head() -> str:
    """The newest migration in the package, so adding one never needs this test edited."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(db.alembic_config()).get_current_head()


def _tables(url: str) -> set[str]:
    eng = create_engine(url)
    try:
        return set(inspect(eng).get_table_names(schema=SCHEMA)) if inspect(eng).has_schema(SCHEMA) else set()
    finally:
        eng.dispose()


def test_upgrade_downgrade_upgrade(server_url):
    url = create_database(server_url, "lgdp_test_migrations", fresh=True)
    models = {t.name for t in Base.metadata.sorted_tables}

    db.upgrade("head", url=url)
    assert db.current_revision(url) == _head()
    assert models <= _tables(url)

    db.downgrade("base", url=url)
    assert db.current_revision(url) is None
    assert _tables(url) <= {"alembic_version"}
    eng = create_engine(db.database_url(url))
    with eng.connect() as conn:  # the enum type went too, so upgrading again cannot collide
        assert conn.execute(
            text("SELECT count(*) FROM pg_type WHERE typname IN ('submission_status', 'version_status')")
        ).scalar() == 0
    eng.dispose()

    db.upgrade("head", url=url)
    assert models <= _tables(url)


def test_models_match_migrations(ledger_url):
    """Autogenerate finds nothing to do: the models and the migrations describe the same schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with db.engine().connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "include_schemas": True,
                "version_table_schema": SCHEMA,
                "include_name": lambda name, type_, parent: type_ != "schema" or name == SCHEMA,
            },
        )
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_each_revision_downgrades_to_the_previous_one(server_url):
    url = create_database(server_url, "lgdp_test_migrations_steps", fresh=True)
    db.upgrade("0001", url=url)
    db.upgrade("0002", url=url)
    assert "submission_versions" in _tables(url)
    db.downgrade("0001", url=url)
    assert "submission_versions" not in _tables(url) and "expected_submissions" in _tables(url)
    db.upgrade("head", url=url)


def test_archived_files_cannot_be_changed_or_deleted(clean_ledger):
    import pytest
    from sqlalchemy.exc import DBAPIError

    with db.engine().begin() as conn:
        conn.execute(text("INSERT INTO lgdp.archived_files VALUES ('ab', 1, 'x', now())"))
    for statement in ("UPDATE lgdp.archived_files SET size = 2", "DELETE FROM lgdp.archived_files"):
        with pytest.raises(DBAPIError, match="immutable"):
            with db.engine().begin() as conn:
                conn.execute(text(statement))
