"""Benchmark the progress page: 170 returns × 32 councils, every period open, server time.

    .venv/bin/python bench/progress_page.py [--returns 170] [--repeat 15] [--keep]

Data: a fresh ledger (``bench/_ledger.py``: ``LGDP_DATABASE_URL``'s server or an embedded one)
with the 32 councils and ``--returns`` returns registered from copies of the real specs (ids
``bench_001``...), each with one open period and one expected submission per council, statuses
spread over the seven ledger statuses (a third of the periods past their due date, so overdue
cells are drawn). 170 × 32 = 5,440 cells.

Ours: the whole request as the api-server serves it, through the FastAPI app of ``lgdp.ui.web``
(ASGI, in process, no network; the auth dependency left out because it is Airflow's): the
ledger query, the matrix, the Jinja page (``GET /returns/progress``). Also timed alone: the
computation (``lgdp.ui.progress.progress``) and the rendering.

Floor: the least any page of this matrix can do, in the same run on the same rows: one
``SELECT`` of the same columns over the same joins (no ORM objects), then one string join of a
``<td>`` per cell with the status as its class. No counts, no links, no escaping, no template.

Prints the medians, the ratio and whether the goal (under 1 s) is met; exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _ledger import bench_ledger  # noqa: E402

STATUSES = ["expected", "received", "processing", "rejected", "queries", "accepted", "not_received"]
WEIGHTS = [5, 1, 1, 2, 2, 8, 1]


def fill(url: str, n_returns: int) -> None:
    import random

    from sqlalchemy import insert

    from lgdp.ledger.db import session
    from lgdp.ledger.models import CollectionPeriod, ExpectedSubmission, Return
    from lgdp.ledger.register import sync_register
    from lgdp.specs.load import load_register

    reg = load_register()
    councils = [c.code for c in reg.reference.councils]
    now = dt.datetime.now(dt.timezone.utc)
    rnd = random.Random(11)
    with session(url) as s, s.begin():
        sync_register(s, reg.specs, reg.reference.councils)
        base = reg.specs
        rows = []
        for k in range(n_returns):
            src = base[k % len(base)].spec
            spec = src.model_dump(mode="json")
            spec["id"] = f"bench_{k + 1:03d}"
            spec["providers"] = "all"
            g = src.governance
            rows.append(
                dict(
                    id=spec["id"], title=f"{src.title} #{k + 1}", version=1, status="approved",
                    frequency=src.collection.frequency.value, requester=g.requester, owner=g.owner, purpose=g.purpose,
                    legal_basis=g.legal_basis, review_date=g.review_date, spec_path="bench", spec_sha256="0" * 64, spec=spec,
                )
            )
        s.execute(insert(Return), rows)
        periods = []
        for k, r in enumerate(rows):
            opens = now - dt.timedelta(days=20)
            due = now + dt.timedelta(days=10) if k % 3 else now - dt.timedelta(days=2)
            periods.append(
                dict(return_id=r["id"], period="2026-11", starts_on=dt.date(2026, 11, 1), ends_on=dt.date(2026, 11, 30),
                     opens_at=opens, due_at=due, closes_at=now + dt.timedelta(days=40), spec_version=1)
            )
        ids = s.execute(insert(CollectionPeriod).returning(CollectionPeriod.id), periods).scalars().all()
        subs = [
            dict(period_id=pid, council_code=code, status=rnd.choices(STATUSES, WEIGHTS)[0])
            for pid in ids
            for code in councils
        ]
        s.execute(insert(ExpectedSubmission), subs)


def floor_once(url: str) -> int:
    from sqlalchemy import text

    from lgdp.ledger.db import engine

    sql = text(
        "SELECT cp.return_id, r.title, cp.period, cp.due_at, es.council_code, es.status "
        "FROM lgdp.collection_periods cp JOIN lgdp.returns r ON r.id = cp.return_id "
        "JOIN lgdp.expected_submissions es ON es.period_id = cp.id WHERE cp.closes_at >= now()"
    )
    with engine(url).connect() as conn:
        rows = conn.execute(sql).all()
    html = "".join(f'<td class="{r[5]}">{r[5]}</td>' for r in rows)
    return len(html)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--returns", type=int, default=170)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    with bench_ledger("lgdp-bench-progress-", "lgdp_bench_progress", args.keep) as (_, url):
        os.environ["LGDP_DATABASE_URL"] = url
        fill(url, args.returns)
        import httpx

        from lgdp.ledger.db import session
        from lgdp.ui.progress import STATUSES as ALL, progress
        from lgdp.ui.render import matrix_cells, render
        from lgdp.ui.web import ABBREV, create_app

        app = create_app(None)

        async def request() -> tuple[int, int]:
            transport = httpx.ASGITransport(app=app, root_path="/returns")
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                r = await client.get("/progress")
                return r.status_code, len(r.content)

        status, size = asyncio.run(request())  # warm: imports, template compiled, connection pool
        assert status == 200, status
        floor_once(url)
        with session() as s:
            p = progress(s)
        cells = sum(len(r.cells) for r in p.rows)
        print(f"progress page: {len(p.rows)} open periods × {len(p.councils)} councils = {cells} cells, {size / 1e6:.2f} MB of HTML")
        ours, floor, compute, rendering = [], [], [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            floor_once(url)
            floor.append(time.perf_counter() - t)
            t = time.perf_counter()
            status, _ = asyncio.run(request())
            ours.append(time.perf_counter() - t)
            assert status == 200
            with session() as s:
                t = time.perf_counter()
                p = progress(s)
                compute.append(time.perf_counter() - t)
            t = time.perf_counter()
            cells = matrix_cells(p, "/returns", ABBREV)
            render("progress.html", prefix="/returns", page="progress", p=p, cells=cells, statuses=ALL, return_id=None)
            rendering.append(time.perf_counter() - t)
        med = statistics.median
        load = os.getloadavg()[0]
        print(f"load average {load:.1f}; {args.repeat} repetitions, medians (min):")
        print(f"  floor (SELECT + join of <td>s): {med(floor) * 1000:7.1f} ms ({min(floor) * 1000:.1f})")
        print(f"  ours  (GET /returns/progress):  {med(ours) * 1000:7.1f} ms ({min(ours) * 1000:.1f})")
        print(f"    computing (lgdp.ui.progress): {med(compute) * 1000:7.1f} ms")
        print(f"    rendering (Jinja):            {med(rendering) * 1000:7.1f} ms")
        print(f"  ratio ours / floor: {med(ours) / med(floor):.2f}x; goal < 1000 ms: {'met' if med(ours) < 1 else 'NOT met'}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
