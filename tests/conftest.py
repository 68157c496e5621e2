"""Test session set-up: a real PostgreSQL for the ledger and Airflow's metadata, never SQLite.

If ``LGDP_DATABASE_URL`` is set, its server is used (fresh ``lgdp_test*`` databases are created
on it, the named database itself is never touched); otherwise the session starts an embedded
PostgreSQL of its own in a temporary folder and deletes it at the end. Airflow's environment is
set here, before anything imports Airflow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["fixtures_m365", "fixtures_smtp", "fixtures_azurite"]
ROOT = Path(__file__).resolve().parents[1]
_STATE: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    from lgdp.dev import airflow_env
    from lgdp.devdb import create_database, embedded_url, start_embedded

    tmp = Path(tempfile.mkdtemp(prefix="lgdp-tests-"))
    _STATE["tmp"] = tmp
    configured = os.environ.get("LGDP_DATABASE_URL")
    if configured:
        server_url = configured
    else:
        server = start_embedded(tmp / "pgdata", cleanup="delete")
        _STATE["server"] = server
        server_url = embedded_url(server, "postgres")
    _STATE["server_url"] = server_url
    url = create_database(server_url, "lgdp_test", fresh=True)
    env = airflow_env(url, url.replace("postgresql+psycopg://", "postgresql+psycopg2://", 1), tmp / "airflow")
    env["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    os.environ.update({k: v for k, v in env.items() if k.startswith(("AIRFLOW", "LGDP", "SODA"))})
    os.environ["LGDP_CACHE_DIR"] = str(tmp / "cache")
    # The one-table paths are tested on CLAS as it was before it became a return of several tables
    # (tests/specs_one_table/clas.yaml, with the other specs linked in); tests of the real,
    # multi-table CLAS (tests/test_multi_table.py and others) load return_specs/ explicitly.
    os.environ["LGDP_SPECS_DIR"] = str(ROOT / "tests" / "specs_one_table")
    (tmp / "airflow").mkdir()


def pytest_unconfigure(config: pytest.Config) -> None:
    if "airflow.settings" in sys.modules:  # close Airflow's pool before its server goes away
        sys.modules["airflow.settings"].dispose_orm()
    server = _STATE.pop("server", None)
    if server is not None:
        server.cleanup()  # type: ignore[attr-defined]
    tmp = _STATE.get("tmp")
    if isinstance(tmp, Path):
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def server_url() -> str:
    """URL of the test PostgreSQL server's maintenance database (for creating more databases)."""
    return str(_STATE["server_url"])


@pytest.fixture(scope="session")
def ledger_url() -> str:
    """The test ledger database, migrated to the newest revision."""
    from lgdp.ledger import db

    db.upgrade()
    return os.environ["LGDP_DATABASE_URL"]


@pytest.fixture
def clean_ledger(ledger_url: str):
    """An empty ledger for one test."""
    from sqlalchemy import text

    from lgdp.ledger.db import engine
    from lgdp.ledger.models import Base

    with engine().begin() as conn:
        names = ", ".join(f"lgdp.{t.name}" for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        # staging rows are keyed by version ids, which restart: drop them with the ledger
        conn.execute(text("DROP SCHEMA IF EXISTS lgdp_staging_versions CASCADE"))
        conn.execute(text("DROP SCHEMA IF EXISTS lgdp_staging CASCADE"))
        conn.execute(text("CREATE SCHEMA lgdp_staging"))
        conn.execute(text("CREATE SCHEMA lgdp_staging_versions"))
    return ledger_url


@pytest.fixture(scope="session")
def airflow_db(ledger_url: str) -> str:
    """Airflow's metadata schema, migrated once per session in the test database."""
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        check=True,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
    )
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
