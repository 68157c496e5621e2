"""The benchmarks' database: a fresh, migrated ledger, on ``LGDP_DATABASE_URL``'s server or an
embedded PostgreSQL started for the run (deleted afterwards unless ``keep``).

Unlike ``lgdp check``'s scratch database, nothing is tuned for speed (fsync stays on): the
benchmarks measure the platform as it runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def bench_ledger(prefix: str, database: str, keep: bool = False) -> Iterator[tuple[Path, str]]:
    """Yield ``(scratch folder, ledger URL)``; ``LGDP_DATABASE_URL`` points at the ledger meanwhile."""
    from lgdp.devdb import create_database, embedded_url, start_embedded
    from lgdp.ledger import db

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    server = None
    try:
        configured = os.environ.get("LGDP_DATABASE_URL")
        if configured:
            server_url = configured
        else:
            server = start_embedded(tmp / "pgdata", cleanup="delete")
            server_url = embedded_url(server, "postgres")
        url = create_database(server_url, database, fresh=True)
        os.environ["LGDP_DATABASE_URL"] = url
        db.upgrade(url=url)
        yield tmp, url
    finally:
        if keep:
            print(f"kept {tmp}")
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
