"""Benchmark distribution: deliver a 1,000,000-row CLAS return as CSV and Parquet to Azurite,
against uploading the same bytes with the azure SDK directly (the floor), in the same run.

    .venv/bin/python bench/distribute.py [--rows 1000000] [--councils 4] [--repeat 3]

Set-up (not timed): an embedded PostgreSQL (or ``LGDP_DATABASE_URL``'s server, fresh
``lgdp_bench_distribute`` database), ``--rows`` synthetic CLAS rows split over ``--councils``
councils, parsed and loaded through the real ingest path and marked accepted; Azurite from
``node_modules`` (``make install``) on a free port.

Ours: ``lgdp.distribute.deliver.deliver`` for the Scottish Government requester (13 columns,
``child_id`` and ``scn`` pseudonymised, csv + parquet) end to end: ledger claim, one COPY per
accepted version (read a council ahead in a thread), Arrow parse, HMAC pseudonyms, CSV and
Parquet written and uploaded through ``WasbHook`` while later councils are still being prepared,
manifest last, ledger record. Floor: ``BlobClient.upload_blob`` of the very same three files'
bytes (same ``max_concurrency``), no database, no computing. Floor and ours alternate, once each
per repetition; prints medians, each repetition's own ratio (robust when the machine is busy),
the sequential cost of reading and of building (for reference: the pipeline overlaps them with
the upload) and the ratio of medians; exits 0 whatever they are. Goal: ours <= 2x the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _ledger import bench_ledger  # noqa: E402  (bench/ is the script's own folder, first on sys.path)

# These numbers have always measured CLAS as one table (one row per episode); return_specs/clas.yaml
# is now the multi-table return (bench/validate_tables.py measures that). The one-table CLAS is
# kept in tests/specs_one_table/ (with the other specs linked in).
os.environ.setdefault("LGDP_SPECS_DIR", str(__import__("pathlib").Path(__file__).resolve().parents[1] / "tests" / "specs_one_table"))
PERIOD = "2025-26"
KEY = "bench-key-not-a-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--councils", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import logging

    from fixtures_azurite import AZURITE, connection_string

    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request at INFO

    azurite = None
    with bench_ledger("lgdp-bench-distribute-", "lgdp_bench_distribute") as (tmp, url):
        try:
            port = free_port()
            if not AZURITE.exists():
                raise SystemExit(f"{AZURITE} is missing: run `make install`")
            azurite = subprocess.Popen(
                [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence", "--loose",
                 "--skipApiVersionCheck"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
            )
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.1)
            conn_str = connection_string(port)
            os.environ["AIRFLOW_CONN_WASB_BENCH"] = json.dumps({"conn_type": "wasb", "extra": {"connection_string": conn_str}})
            os.environ["AIRFLOW_CONN_LGDP_PSEUDONYM_KEY_SCOTTISH_GOVERNMENT"] = json.dumps(
                {"conn_type": "generic", "password": KEY}
            )

            loaded, dist = setup_data(args.rows, args.councils)
            run(loaded, dist, conn_str, args)
            return 0
        finally:
            if azurite is not None:
                azurite.terminate()
                try:
                    azurite.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    azurite.kill()


def setup_data(rows: int, councils: int):
    from lgdp import synth
    from lgdp.ingest import archive_file, expected_submission, load_version, record_version, set_version_outcome
    from lgdp.ledger import db
    from lgdp.ledger.register import open_period
    from lgdp.parse import Limits, parse_submission
    from lgdp.periods import period_from_label
    from lgdp.specs.load import load_register
    from lgdp.specs.model import WasbDestination

    clas = load_register().get("clas")
    loaded = clas.__class__(**{**clas.__dict__, "spec": clas.spec.model_copy(update={"formats": ["xlsx", "csv"]})})
    sg = next(d for d in loaded.spec.distribution if d.requester == "scottish_government")
    dist = sg.model_copy(update={
        "formats": ["csv", "parquet"],
        "destination": WasbDestination(type="wasb", conn_id="wasb_bench", container="bench", prefix="ours"),
    })
    limits = Limits(max_file_mb=1000, max_rows=5_000_000, max_uncompressed_mb=4000, parse_timeout_s=600)
    t = time.perf_counter()
    with db.session() as s, s.begin():
        open_period(s, loaded, period_from_label(loaded.spec.collection, PERIOD))
    per = rows // councils
    for k, council in enumerate(c.code for c in loaded.providers[:councils]):
        n = per if k < councils - 1 else rows - per * (councils - 1)
        out = Path(tempfile.mkdtemp()) / "clas.csv"
        synth.write_sample(loaded, council, PERIOD, n, "csv", out, seed=k + 1)
        data = out.read_bytes()
        shutil.rmtree(out.parent, ignore_errors=True)
        with db.session() as s, s.begin():
            sha = archive_file(s, data)
            sub = expected_submission(s, "clas", PERIOD, council)
            vid, _ = record_version(s, sub.id, sha256=sha, filename="clas.csv", source_path="bench",
                                    source_item_id="bench", source_etag="1", uploaded_by=None, uploaded_at=None)
        result = parse_submission(loaded, "clas.csv", data, council_code=council, limits=limits)
        with db.session() as s, s.begin():
            loaded_rows = load_version(s, loaded, vid, council, PERIOD, result.table)
            set_version_outcome(s, vid, "accepted", rows_loaded=loaded_rows)
    print(f"set-up: {rows:,} CLAS rows over {councils} councils loaded and accepted in {time.perf_counter() - t:.0f} s")
    return loaded, dist


def run(loaded, dist, conn_str: str, args) -> None:
    from azure.storage.blob import BlobServiceClient, ContentSettings
    from sqlalchemy import text

    from lgdp.airflow.distribute import connection_password
    from lgdp.distribute.build import build
    from lgdp.distribute.deliver import deliver
    from lgdp.distribute.formats import CONTENT_TYPES
    from lgdp.distribute.select import accepted_set, read_accepted
    from lgdp.ledger import db

    svc = BlobServiceClient.from_connection_string(conn_str)
    container = svc.get_container_client("bench")
    if not container.exists():
        container.create_container()

    def ours() -> float:
        with db.engine().begin() as conn:  # each run publishes version 1 again
            conn.execute(text("DELETE FROM lgdp.deliveries"))
        t0 = time.perf_counter()
        result = deliver(loaded, PERIOD, dist, key_lookup=connection_password)
        elapsed = time.perf_counter() - t0
        assert result.published and result.rows == args.rows, result
        return elapsed

    def delivered() -> dict[str, bytes]:
        prefix = f"ours/{PERIOD}/v1/"
        return {b.name[len(prefix):]: container.download_blob(b.name).readall() for b in container.list_blobs(name_starts_with=prefix)}

    def floor(files: dict[str, bytes]) -> float:
        t0 = time.perf_counter()
        for name, data in files.items():
            fmt = name.rsplit(".", 1)[1]
            container.get_blob_client(f"floor/{name}").upload_blob(
                data, length=len(data), overwrite=True, max_concurrency=4,
                content_settings=ContentSettings(content_type=CONTENT_TYPES.get(fmt, "application/json")),
            )
        return time.perf_counter() - t0

    load_start = os.getloadavg()
    ours()  # warm-up
    files = delivered()
    floor(files)
    ours_t, floor_t = [], []
    for _ in range(args.repeat):
        floor_t.append(floor(files))
        ours_t.append(ours())

    # Where our time goes (the same steps deliver() runs, timed one by one).
    with db.session() as s:
        t0 = time.perf_counter()
        accepted = accepted_set(s, loaded, PERIOD)
        table = read_accepted(s, loaded, accepted, dist)
        t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    built = build(loaded, dist, PERIOD, 1, table, connection_password("lgdp_pseudonym_key_scottish_government"))
    t_build = time.perf_counter() - t0

    o, f = statistics.median(ours_t), statistics.median(floor_t)
    sizes = ", ".join(f"{n} {len(d) / 1e6:.0f} MB" for n, d in files.items())
    print(f"files: {sizes}")
    print()
    print(f"{'leg':52} {'seconds':>8}")
    print("-" * 61)
    print(f"{'floor: azure SDK upload_blob of the same bytes':52} {f:8.2f}")
    print(f"{'ours: deliver() end to end':52} {o:8.2f}")
    print(f"{'  for reference, alone: COPY + Arrow parse':52} {t_read:8.2f}")
    print(f"{'  for reference, alone: pseudonymise + CSV + Parquet':52} {t_build:8.2f}")
    print()
    print(f"runs: {args.repeat} (medians); floor {', '.join(f'{v:.2f}' for v in floor_t)}; ours {', '.join(f'{v:.2f}' for v in ours_t)}")
    pairs = [a / b for a, b in zip(ours_t, floor_t)]
    print(f"each repetition's ratio: {', '.join(f'{r:.2f}x' for r in pairs)} (median {statistics.median(pairs):.2f}x)")
    print(f"ratio of medians ours/floor: {o / f:.2f}x (goal <= 2x); {args.rows / o:,.0f} rows/s delivered")
    print(f"load average (1 min) at start {load_start[0]:.2f}, at end {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    del built, table


if __name__ == "__main__":
    raise SystemExit(main())
