"""Benchmark validation of the multi-table CLAS: a council's children, 1,000,000 episodes and their
placements, every rule (27, of which 17 query rules) and both parent links, against a floor
measured in the same run.

    .venv/bin/python bench/validate_tables.py [--episodes 1000000] [--repeat 2] [--keep]

Data: ``lgdp.synth.tables`` draws the council's children (as many as give ``--episodes`` episode
rows) with one row of every fault the generator offers, and the same council's previous year (so
the year-on-year rules join a real previous version). Both are loaded by ``lgdp.ingest.load_version``
into the three staging tables, exactly as collection loads them (not timed; autovacuum off on the
new partitions so it cannot land in a timed leg); the previous year is the council's accepted
version of 2024-25 in the ledger.

Ours: ``lgdp.validate.run.validate_submission``, what collection runs: for each table the failing
rows (``failing_rows``: every flagged row with its message) and the Soda Core v4 contract
(``verify``), their counts compared; the previous accepted version looked up in the ledger.
For the breakdown, the failing rows and Soda are also timed alone.

Floor: ``floor_sql`` below: per table ONE statement giving every check's count: the item checks
and row conditions as ``count(*) FILTER (WHERE ...)`` in one scan (their predicates are the
checks', the least any validation of them does), keys as ``count(*) - count(DISTINCT key)``, and
the cross-row and cross-table rules written by hand in as few scans as I could: window functions
instead of self-joins (overlaps: a running maximum of earlier end dates; consecutive episodes: lag),
one join per pair of tables serving every rule that needs it, anti-joins for the parent links.
Counts only: no rows, no messages, no cross-check. Its counts are compared with Soda's; any
difference is printed (a floor computing something else would measure nothing).

Prints the numbers and exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from _ledger import bench_ledger  # bench/ is the script's own folder, first on sys.path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
COUNCIL, PERIOD, PREVIOUS = "S12000036", "2025-26", "2024-25"
ITEM_KINDS = ("missing", "code", "range", "length", "format", "rule")


def _row_checks(view) -> list[tuple[str, str]]:
    from lgdp.validate.checks import checks, fill_variables

    return [(c.code, c.failing) for c in checks(view) if c.kind in ITEM_KINDS and c.failing]


def floor_sql(spec, variables: dict[str, str]) -> dict[str, str]:
    """One statement per table: (code -> count) columns."""
    from lgdp.validate.checks import fill_variables, key_partition_sql

    def item_counts(view, alias: str) -> str:
        parts = []
        for code, failing in _row_checks(view):
            cond = fill_variables(failing, variables)
            parts.append(f'count(*) FILTER (WHERE {cond}) AS "{code}"')
        keys = tuple(view.spec.keys)
        parts.append(f'count(*) - count(DISTINCT {key_partition_sql(keys)}) AS "KEY-DUP"')
        parts.append('count(*) AS "ROWS"')
        return ",\n  ".join(parts)

    s = 'lgdp_staging."clas.{}"'
    v = "_submission_version_id = %(version)s"
    pv = "_submission_version_id = %(previous)s"
    pe = "CAST(%(period_end)s AS date)"
    children, episodes, placements = spec.table("children"), spec.table("episodes"), spec.table("placements")
    return {
        "children": f"""
WITH c AS (SELECT * FROM {s.format('children')} WHERE {v}),
     e AS (SELECT child_id, count(*) AS n, count(*) FILTER (WHERE episode_end_date IS NULL) AS open
             FROM {s.format('episodes')} WHERE {v} GROUP BY child_id),
     p AS (SELECT child_id, array_agg(date_of_birth) AS dobs FROM {s.format('children')} WHERE {pv} GROUP BY child_id),
     d AS (SELECT district, array_agg(council_code) AS cs FROM lgdp_reference.postcode_districts GROUP BY district)
SELECT
  {item_counts(children, 'c')},
  count(*) FILTER (WHERE j_n IS NULL) AS "CLAS-E024",
  count(*) FILTER (WHERE j_open > 1) AS "CLAS-E026",
  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM unnest(j_dobs) x WHERE x <> date_of_birth)) AS "CLAS-Q021",
  count(*) FILTER (WHERE j_cs IS NOT NULL AND NOT (council_code = ANY (j_cs))) AS "CLAS-Q026"
FROM (SELECT c.*, e.n AS j_n, e.open AS j_open, p.dobs AS j_dobs, d.cs AS j_cs
        FROM c LEFT JOIN e ON e.child_id = c.child_id LEFT JOIN p ON p.child_id = c.child_id
               LEFT JOIN d ON d.district = c.postcode_district) AS j""",
        "episodes": f"""
WITH k AS (SELECT child_id, min(date_of_birth) AS lo, max(date_of_birth) AS hi, count(*) AS n
             FROM {s.format('children')} WHERE {v} GROUP BY child_id),
     f AS (SELECT DISTINCT child_id, episode_start_date FROM {s.format('placements')}
            WHERE {v} AND placement_start_date = episode_start_date),
     q AS (SELECT child_id, episode_start_date, array_agg(legal_reason) AS reasons
             FROM {s.format('episodes')} WHERE {pv} AND episode_end_date IS NULL GROUP BY 1, 2),
     e AS (SELECT *,
                  max(coalesce(episode_end_date, 'infinity'::date)) OVER w AS before_end,
                  lag(episode_end_date) OVER o AS prev_end, lag(legal_reason) OVER o AS prev_reason
             FROM {s.format('episodes')} WHERE {v}
           WINDOW w AS (PARTITION BY child_id ORDER BY episode_start_date ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                  o AS (PARTITION BY child_id ORDER BY episode_start_date))
SELECT
  {item_counts(episodes, 'e')},
  count(*) FILTER (WHERE child_id IS NOT NULL AND j_n IS NULL) AS "LINK-episodes",
  count(*) FILTER (WHERE episode_start_date < j_hi) AS "CLAS-E002",
  count(*) FILTER (WHERE episode_start_date >= j_lo + interval '18 years') AS "CLAS-E003",
  count(*) FILTER (WHERE episode_end_date IS NULL AND j_lo + interval '18 years' <= {pe}) AS "CLAS-Q023",
  count(*) FILTER (WHERE before_end > episode_start_date) AS "CLAS-E020",
  count(*) FILTER (WHERE prev_end = episode_start_date AND prev_reason = legal_reason) AS "CLAS-Q020",
  count(*) FILTER (WHERE j_first IS NULL) AS "CLAS-E025",
  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM unnest(j_reasons) r WHERE r <> legal_reason)) AS "CLAS-Q022"
FROM (SELECT e.*, k.n AS j_n, k.lo AS j_lo, k.hi AS j_hi, f.child_id AS j_first, q.reasons AS j_reasons
        FROM e LEFT JOIN k ON k.child_id = e.child_id
               LEFT JOIN f ON f.child_id = e.child_id AND f.episode_start_date = e.episode_start_date
               LEFT JOIN q ON q.child_id = e.child_id AND q.episode_start_date = e.episode_start_date) AS j""",
        "placements": f"""
WITH x AS (SELECT child_id, episode_start_date, count(*) AS n,
                  bool_or(episode_end_date IS NOT NULL) AS any_ended,
                  min(episode_end_date) AS end_lo, bool_or(legal_reason = 'CSO-A') AS csoa, bool_or(legal_reason = 'PO') AS po
             FROM {s.format('episodes')} WHERE {v} GROUP BY 1, 2),
     p AS (SELECT *, max(coalesce(placement_end_date, 'infinity'::date)) OVER w AS before_end
             FROM {s.format('placements')} WHERE {v}
           WINDOW w AS (PARTITION BY child_id ORDER BY placement_start_date ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING))
SELECT
  {item_counts(placements, 'p')},
  count(*) FILTER (WHERE child_id IS NOT NULL AND episode_start_date IS NOT NULL AND j_n IS NULL) AS "LINK-placements",
  count(*) FILTER (WHERE placement_start_date < episode_start_date) AS "CLAS-E021",
  count(*) FILTER (WHERE j_any_ended AND (placement_start_date > j_end_lo OR placement_end_date IS NULL
                                          OR placement_end_date > j_end_lo)) AS "CLAS-E022",
  count(*) FILTER (WHERE before_end > placement_start_date) AS "CLAS-E023",
  count(*) FILTER (WHERE provider_id IS NOT NULL AND j_provider IS NULL) AS "CLAS-E027",
  count(*) FILTER (WHERE placement_type = 'HOME' AND j_csoa) AS "CLAS-Q024",
  count(*) FILTER (WHERE placement_type = 'HOME' AND j_po) AS "CLAS-Q025"
FROM (SELECT p.*, x.n AS j_n, x.any_ended AS j_any_ended, x.end_lo AS j_end_lo, x.csoa AS j_csoa, x.po AS j_po,
             r.provider_id AS j_provider
        FROM p LEFT JOIN x ON x.child_id = p.child_id AND x.episode_start_date = p.episode_start_date
               LEFT JOIN (SELECT DISTINCT provider_id FROM lgdp_reference.registered_providers) r
                 ON r.provider_id = p.provider_id) AS j""",
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    from lgdp import synth
    from lgdp.ingest import archive_file, expected_submission, load_version, record_version
    from lgdp.ingest.arrow import table_from_rows
    from lgdp.ingest.versions import set_version_outcome
    from lgdp.ledger import db
    from lgdp.ledger.register import open_period
    from lgdp.periods import period_from_label
    from lgdp.specs.load import load_register
    from lgdp.validate.checks import sql_variables
    from lgdp.validate.contract import verify
    from lgdp.validate.reference import ensure_reference_tables
    from lgdp.validate.rows import failing_rows
    from lgdp.validate.run import validate_submission

    spec = load_register(ROOT / "return_specs").get("clas")
    with bench_ledger("lgdp-bench-tables-", "lgdp_bench_tables", keep=args.keep) as (tmp, url):
        os.environ["SODA_CORE_TELEMETRY_ENABLED"] = "false"
        sample = synth.tables(spec, COUNCIL, PERIOD, 2000, seed=7)
        per_child = len(sample.tables["episodes"]) / 2000
        n_children = max(10, round(args.episodes / per_child))
        t = time.perf_counter()
        faults = {name: 1 for name in synth.fault_names(spec)}
        now = synth.tables(spec, COUNCIL, PERIOD, n_children, seed=7, faults=faults)
        before = synth.tables(spec, COUNCIL, PREVIOUS, n_children, seed=7)
        counts = {k: len(v) for k, v in now.tables.items()}
        print(f"generated {counts} (and last year's) with {len(now.faults)} faults in {time.perf_counter() - t:.0f} s")
        arrow_now = {v.dataset: table_from_rows(v, now.tables[v.dataset]) for v in spec.tables}
        arrow_before = {v.dataset: table_from_rows(v, before.tables[v.dataset]) for v in spec.tables}
        del now, before, sample

        with db.session() as s, s.begin():
            for label in (PREVIOUS, PERIOD):
                open_period(s, spec, period_from_label(spec.spec.collection, label))
            ensure_reference_tables(s, spec.reference)
        subs = {}
        with db.session() as s, s.begin():
            for label in (PREVIOUS, PERIOD):
                subs[label] = expected_submission(s, "clas", label, COUNCIL).id
            sha = archive_file(s, b"bench")

        def fresh_version(label: str, tables, k: int) -> int:
            with db.session() as sess:
                vid, _ = record_version(sess, subs[label], sha256=sha, filename="clas.xlsx", source_path="bench",
                                        source_item_id="bench", source_etag=f"{label}-{k}", uploaded_by=None, uploaded_at=None)
                for view in spec.tables:
                    load_version(sess, view, vid, COUNCIL, label, tables[view.dataset])
                    sess.execute(text(f'ALTER TABLE lgdp_staging_versions."clas.{view.dataset}_v{vid}" '
                                      "SET (autovacuum_enabled = false)"))
                sess.commit()
            return vid

        t = time.perf_counter()
        previous = fresh_version(PREVIOUS, arrow_before, 0)
        with db.session() as s, s.begin():
            set_version_outcome(s, previous, "accepted", rows_loaded=sum(t.num_rows for t in arrow_before.values()))
        warm = fresh_version(PERIOD, arrow_now, 0)
        print(f"loaded in {time.perf_counter() - t:.0f} s")

        def variables(view, version_id):
            return sql_variables(view, COUNCIL, PERIOD, version_id, previous)

        def floor(version_id: int) -> tuple[float, dict[str, dict[str, int]]]:
            first = spec.tables[0]
            v = variables(first, version_id)
            statements = floor_sql(spec, v)
            params = {"version": version_id, "previous": previous, "period_end": v["PERIOD_END"]}
            out: dict[str, dict[str, int]] = {}
            elapsed = 0.0
            with db.engine().connect() as conn:
                raw = conn.connection.driver_connection
                for name, statement in statements.items():
                    t0 = time.perf_counter()
                    cur = raw.execute(statement.replace("%", "%%").replace("%%(", "%("), params)
                    row = cur.fetchone()
                    elapsed += time.perf_counter() - t0
                    got = dict(zip([d.name for d in cur.description], row))
                    got["ROWS"] = 1 if got["ROWS"] == 0 else 0
                    out[name] = got
                raw.rollback()
            return elapsed, out

        def ours(version_id: int) -> tuple[float, int]:
            t0 = time.perf_counter()
            issues = validate_submission(spec, PERIOD, COUNCIL, version_id)
            return time.perf_counter() - t0, len(issues)

        def legs(version_id: int) -> tuple[float, float]:
            rows_s = soda_s = 0.0
            for view in spec.tables:
                with db.session() as sess:
                    t0 = time.perf_counter()
                    failing_rows(sess, view, COUNCIL, PERIOD, version_id, variables(view, version_id))
                    rows_s += time.perf_counter() - t0
                t0 = time.perf_counter()
                verify(view, url, COUNCIL, PERIOD, version_id, previous)
                soda_s += time.perf_counter() - t0
            return rows_s, soda_s

        _, n_issues = ours(warm)
        _, floor_counts = floor(warm)
        mismatch = {}
        for view in spec.tables:
            soda = verify(view, url, COUNCIL, PERIOD, warm, previous)
            mine = floor_counts[view.dataset]
            for code in set(soda) | set(mine):
                if soda.get(code) != mine.get(code):
                    mismatch[f"{view.dataset}:{code}"] = (mine.get(code), soda.get(code))
        print(f"warm-up: {n_issues:,} issues; floor vs Soda counts " + ("agree" if not mismatch else f"DIFFER (floor, Soda): {mismatch}"))

        ratios, ours_s, floor_s, rows_s, soda_s = [], [], [], [], []
        for k in range(1, args.repeat + 1):
            vid = fresh_version(PERIOD, arrow_now, k)
            o, _ = ours(vid)
            f, _ = floor(vid)
            r, sd = legs(vid)
            ours_s.append(o), floor_s.append(f), rows_s.append(r), soda_s.append(sd), ratios.append(o / f)
            print(f"run {k}: ours {o:.1f} s (failing rows {r:.1f} s, Soda {sd:.1f} s), floor {f:.1f} s, ratio {o / f:.2f}x")
        med = statistics.median
        rows_total = sum(t.num_rows for t in arrow_now.values())
        print(f"median: ours {med(ours_s):.1f} s, floor {med(floor_s):.1f} s, ratio {med(ours_s) / med(floor_s):.2f}x "
              f"(failing rows alone {med(rows_s):.1f} s = {med(rows_s) / med(floor_s):.2f}x the floor; "
              f"Soda alone {med(soda_s):.1f} s) for {rows_total:,} rows in three tables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
