"""Benchmark validation: Soda contract + row-level issues of a 1,000,000-row CLAS submission,
against one hand-written SQL statement computing the same counts in a single scan.

    .venv/bin/python bench/validate.py [--rows 1000000] [--faults 1000] [--repeat 3] [--profile] [--keep]

Data: ``lgdp.synth`` streams a CLAS CSV with ``--faults`` rows of every fault the CLAS generator
offers (the generic ones and one per rule: about 1.2 % of the rows at the defaults), parsed once by
``lgdp.parse.parse_submission``; before each timed run the rows are loaded by ``lgdp.ingest.
load_version`` as a new version, into its own partition of ``lgdp_staging.clas``, exactly as
collection does (not timed; autovacuum is switched off on the new partition so that it cannot
land in the middle of a timed leg).

Ours: ``lgdp.collect.process.validate_version`` on the version just loaded, what collection runs:
``lgdp.validate.rows.failing_rows`` (every failing row, with its message; it analyses the fresh
partition first, and that counts), ``lgdp.validate.contract.verify`` (the Soda Core v4 contract)
and ``count_by_code`` compared with Soda's counts. The floor runs next on the same rows, analysed
and in cache. For the breakdown, ``failing_rows`` and ``verify`` are also timed alone on an
analysed version.

Floor: ``FLOOR_SQL`` below, one statement written by hand for the CLAS spec: a ``count(*) FILTER
(WHERE ...)`` per check and ``count(*) - count(DISTINCT key)`` for repeated keys, over the same
version's rows. It gives counts only (no rows, no messages, no cross-check), so it is the least any
validation with these checks can do. Its counts must equal Soda's, or the script stops: a floor
computing something else measures nothing (update ``FLOOR_SQL`` when the CLAS spec changes).

The server is ``LGDP_DATABASE_URL``'s (a fresh ``lgdp_bench_validate`` database on it) or an
embedded one started here. Prints the numbers and exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time

from _ledger import bench_ledger  # bench/ is the script's own folder, first on sys.path

# These numbers have always measured CLAS as one table (one row per episode); return_specs/clas.yaml
# is now the multi-table return (bench/validate_tables.py measures that). The one-table CLAS is
# kept in tests/specs_one_table/ (with the other specs linked in).
os.environ.setdefault("LGDP_SPECS_DIR", str(__import__("pathlib").Path(__file__).resolve().parents[1] / "tests" / "specs_one_table"))

from sqlalchemy import text

COUNCIL, PERIOD = "S12000036", "2025-26"

# One scan of the version's rows; {codes:<item>} are the item's code lists from the spec (data,
# not logic), everything else is written out. Column aliases are the lgdp check codes.
FLOOR_SQL = """
SELECT
  count(*) AS "ROWS",
  count(*) FILTER (WHERE council_code IS NULL) AS "REQ-council_code",
  count(*) FILTER (WHERE council_code NOT IN ({codes:council_code})) AS "CODE-council_code",
  count(*) FILTER (WHERE child_id IS NULL) AS "REQ-child_id",
  count(*) FILTER (WHERE length(child_id) > 20) AS "LEN-child_id",
  count(*) FILTER (WHERE child_id !~ '^[A-Za-z0-9-]{{1,20}}$') AS "FMT-child_id",
  count(*) FILTER (WHERE scn !~ '^[0-9]{{9}}$') AS "FMT-scn",
  count(*) FILTER (WHERE date_of_birth IS NULL) AS "REQ-date_of_birth",
  count(*) FILTER (WHERE date_of_birth < DATE '2000-01-01') AS "RANGE-date_of_birth",
  count(*) FILTER (WHERE sex IS NULL) AS "REQ-sex",
  count(*) FILTER (WHERE sex NOT IN ({codes:sex})) AS "CODE-sex",
  count(*) FILTER (WHERE ethnicity IS NULL) AS "REQ-ethnicity",
  count(*) FILTER (WHERE ethnicity NOT IN ({codes:ethnicity})) AS "CODE-ethnicity",
  count(*) FILTER (WHERE disability NOT IN ({codes:disability})) AS "CODE-disability",
  count(*) FILTER (WHERE episode_start_date IS NULL) AS "REQ-episode_start_date",
  count(*) FILTER (WHERE episode_start_date < DATE '1990-01-01') AS "RANGE-episode_start_date",
  count(*) FILTER (WHERE legal_reason IS NULL) AS "REQ-legal_reason",
  count(*) FILTER (WHERE legal_reason NOT IN ({codes:legal_reason})) AS "CODE-legal_reason",
  count(*) FILTER (WHERE placement_type IS NULL) AS "REQ-placement_type",
  count(*) FILTER (WHERE placement_type NOT IN ({codes:placement_type})) AS "CODE-placement_type",
  count(*) FILTER (WHERE number_of_placements IS NULL) AS "REQ-number_of_placements",
  count(*) FILTER (WHERE number_of_placements NOT BETWEEN 1 AND 100) AS "RANGE-number_of_placements",
  count(*) FILTER (WHERE reason_ceased NOT IN ({codes:reason_ceased})) AS "CODE-reason_ceased",
  count(*) - count(DISTINCT concat(child_id, '|', episode_start_date)) AS "KEY-DUP",
  count(*) FILTER (WHERE episode_end_date < episode_start_date
                      OR (episode_end_date IS NOT NULL AND episode_start_date IS NULL)) AS "CLAS-E001",
  count(*) FILTER (WHERE NOT coalesce(episode_start_date >= date_of_birth, false)) AS "CLAS-E002",
  count(*) FILTER (WHERE NOT coalesce(episode_start_date < date_of_birth + interval '18 years', false)) AS "CLAS-E003",
  count(*) FILTER (WHERE episode_end_date IS NOT NULL AND reason_ceased IS NULL) AS "CLAS-E004",
  count(*) FILTER (WHERE reason_ceased IS NOT NULL AND episode_end_date IS NULL) AS "CLAS-Q001",
  count(*) FILTER (WHERE (legal_reason = 'PO' AND placement_type = 'HOME') IS NOT FALSE) AS "CLAS-Q002"
FROM lgdp_staging.clas
WHERE _council_code = %(council)s AND _period = %(period)s AND _submission_version_id = %(version)s
"""


def floor_sql(loaded) -> str:
    """``FLOOR_SQL`` with the spec's code lists written in."""
    out = FLOOR_SQL
    for item in loaded.items:
        if item.codes:
            listed = ", ".join("'" + c.code.replace("'", "''") + "'" for c in item.codes)
            out = out.replace(f"{{codes:{item.name}}}", listed)
    return out.replace("{{", "{").replace("}}", "}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--faults", type=int, default=1000, help="rows of each CLAS fault (default 1000)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    from lgdp import synth
    from lgdp.collect.process import validate_version
    from lgdp.ingest import archive_file, expected_submission, load_version, record_version
    from lgdp.ledger import db
    from lgdp.ledger.register import open_period
    from lgdp.parse import Limits, parse_submission
    from lgdp.periods import period_from_label
    from lgdp.specs.load import load_register
    from lgdp.validate.contract import verify
    from lgdp.validate.rows import count_by_code, failing_rows

    with bench_ledger("lgdp-bench-validate-", "lgdp_bench_validate", keep=args.keep) as (tmp, url):
        os.environ["SODA_CORE_TELEMETRY_ENABLED"] = "false"

        clas = load_register().get("clas")
        # CLAS is collected as xlsx; the bench writes CSV (quicker to make) and asks the same spec to accept it.
        loaded = clas.__class__(**{**clas.__dict__, "spec": clas.spec.model_copy(update={"formats": ["xlsx", "csv"]})})
        limits = Limits(max_file_mb=1000, max_rows=5_000_000, max_uncompressed_mb=4000, parse_timeout_s=600)
        faults = {name: args.faults for name in synth.fault_names(loaded)}

        csv_path = tmp / "clas.csv"
        t = time.perf_counter()
        planted = synth.write_sample(loaded, COUNCIL, PERIOD, args.rows, "csv", csv_path, seed=7, faults=faults)
        print(f"generated {args.rows:,} CLAS rows with {len(planted):,} faults ({len(faults)} kinds) "
              f"in {time.perf_counter() - t:.0f} s")

        t = time.perf_counter()
        s = db.session()
        open_period(s, loaded, period_from_label(loaded.spec.collection, PERIOD))
        sub = expected_submission(s, "clas", PERIOD, COUNCIL)
        data = csv_path.read_bytes()
        sha = archive_file(s, data)
        s.commit()
        result = parse_submission(loaded, "clas.csv", data, council_code=COUNCIL, limits=limits)
        if result.table is None:
            raise SystemExit(f"the CSV could not be parsed: {result.issues[:3]}")
        table = result.table
        del result, data
        print(f"parsed in {time.perf_counter() - t:.0f} s")

        def fresh_version(k: int) -> int:
            """A new version of the submission holding the file's rows (loaded as collection loads them)."""
            with db.session() as sess:
                vid, _ = record_version(sess, sub.id, sha256=sha, filename="clas.csv", source_path="bench",
                                        source_item_id="bench", source_etag=str(k), uploaded_by=None, uploaded_at=None)
                n = load_version(sess, loaded, vid, COUNCIL, PERIOD, table)
                # No autovacuum of the new partition in the middle of a timed run (it would land on
                # whichever leg runs next): the runs compare the same work, one query at a time.
                sess.execute(text(f'ALTER TABLE lgdp_staging_versions."clas_v{vid}" SET (autovacuum_enabled = false)'))
                sess.commit()
            if n != args.rows:
                raise SystemExit(f"loaded {n} rows, expected {args.rows}")
            return vid

        statement = floor_sql(loaded)

        def floor(version_id: int) -> tuple[float, dict[str, int]]:
            with db.engine().connect() as conn:
                raw = conn.connection.driver_connection
                t0 = time.perf_counter()
                cur = raw.execute(statement, {"council": COUNCIL, "period": PERIOD, "version": version_id})
                row = cur.fetchone()
                elapsed = time.perf_counter() - t0
                names = [d.name for d in cur.description]
                raw.rollback()
            counts = dict(zip(names, row))
            counts["ROWS"] = 1 if counts["ROWS"] == 0 else 0
            return elapsed, counts

        def ours(version_id: int) -> tuple[float, int]:
            t0 = time.perf_counter()
            issues = validate_version(loaded, PERIOD, COUNCIL, version_id)
            return time.perf_counter() - t0, len(issues)

        def legs(version_id: int) -> tuple[float, float]:
            """failing_rows and verify on their own, on an analysed version (for the breakdown)."""
            with db.session() as sess:
                t0 = time.perf_counter()
                failing_rows(sess, loaded, COUNCIL, PERIOD, version_id)
                t1 = time.perf_counter()
            verify(loaded, url, COUNCIL, PERIOD, version_id)
            return t1 - t0, time.perf_counter() - t1

        # Warm-up on its own version (page cache, catalogue, Soda's imports), and the floor's counts
        # checked against Soda's.
        t = time.perf_counter()
        warm = fresh_version(0)
        print(f"loaded in {time.perf_counter() - t:.0f} s (each timed run validates a version loaded just before it)")
        _, n_issues = ours(warm)
        _, floor_counts = floor(warm)
        soda_counts = verify(loaded, url, COUNCIL, PERIOD, warm)
        if floor_counts != soda_counts:
            diff = {k: (floor_counts.get(k), soda_counts.get(k)) for k in set(floor_counts) | set(soda_counts)
                    if floor_counts.get(k) != soda_counts.get(k)}
            raise SystemExit(f"the floor statement does not compute Soda's counts (floor, Soda): {diff}; "
                             "update FLOOR_SQL to the CLAS spec")
        floors, ourses, rows_legs, soda_legs = [], [], [], []
        for k in range(args.repeat):
            # Collection validates a version right after loading it: ours gets it fresh (no
            # statistics yet: it analyses the partition itself, and that time counts), the floor
            # runs next on the same rows, analysed and in cache: the floor at its best.
            vid = fresh_version(k + 1)
            o, n = ours(vid)
            if n != n_issues:
                raise SystemExit(f"validation found {n} issues, earlier {n_issues}")
            ourses.append(o)
            floors.append(floor(vid)[0])
        for _ in range(max(1, args.repeat - 1)):
            r, sd = legs(warm)
            rows_legs.append(r)
            soda_legs.append(sd)

        f, o, r, sd = (statistics.median(v) for v in (floors, ourses, rows_legs, soda_legs))
        rows = args.rows
        fired = sum(1 for v in soda_counts.values() if v)
        print()
        print(f"{n_issues:,} issues on {rows:,} rows; {fired} of {len(soda_counts)} checks fail somewhere")
        print()
        print(f"{'leg':52} {'seconds':>8} {'rows/s':>12}")
        print("-" * 74)
        print(f"{'floor: one hand-written SQL statement (counts)':52} {f:8.2f} {rows / f:12,.0f}")
        print(f"{'ours: validate_version (rows + Soda + cross-check)':52} {o:8.2f} {rows / o:12,.0f}")
        print(f"{'  failing_rows alone (analysed version)':52} {r:8.2f} {rows / r:12,.0f}")
        print(f"{'  Soda verify alone (analysed version)':52} {sd:8.2f} {rows / sd:12,.0f}")
        print()
        print(f"runs: {args.repeat} (medians); floor runs {', '.join(f'{v:.2f}' for v in floors)}; "
              f"ours {', '.join(f'{v:.2f}' for v in ourses)}")
        print(f"ratio ours/floor: {o / f:.2f}x (goal <= 3x)")

        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            ours(fresh_version(args.repeat + 1))
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
            print(out.getvalue())
        s.close()
        db.engine().dispose()
        return 0


if __name__ == "__main__":
    sys.exit(main())
