"""Plausibility against the council's previous accepted period, as ProcXed and COLLECT do.

A row count or a key total that moves by more than the spec's tolerance is not necessarily wrong
(a new care home opens, a service is re-organised), so it raises a *query*: the council fixes
it or explains it in the feedback workbook. Codes: ``PLAUS-ROWS`` for the row count and
``PLAUS-<item>`` for an item's total; the issue names the item and shows both figures.

``compare`` computes (no I/O, tested on its own); ``figures`` and ``previous_accepted`` read
the staging table and the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from lgdp.issues import Issue
from lgdp.specs.load import LoadedSpec

ROWS_CODE = "PLAUS-ROWS"


def total_code(item: str) -> str:
    return f"PLAUS-{item}"


@dataclass(frozen=True)
class Figures:
    """What plausibility compares for one version: its rows and the totals of the spec's items."""

    rows: int
    totals: dict[str, float]


def _change_pct(now: float, before: float) -> float | None:
    if before == 0:
        return None if now == 0 else float("inf")
    return (now - before) / abs(before) * 100.0


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.2f}"


def _describe(pct: float) -> str:
    if pct == float("inf"):
        return "up from zero"
    return f"{'up' if pct > 0 else 'down'} {abs(pct):.0f}%"


def _where(loaded: LoadedSpec) -> str:
    return f" on the {loaded.tables[0].dataset} sheet" if loaded.multi else ""


def compare(loaded: LoadedSpec, now: Figures, before: Figures | None, before_label: str | None) -> list[Issue]:
    """Queries for every figure that moved beyond its tolerance since the previous accepted period."""
    spec = loaded.spec.plausibility
    if spec is None or before is None:
        return []
    issues: list[Issue] = []
    if spec.row_count_tolerance_pct is not None:
        pct = _change_pct(now.rows, before.rows)
        if pct is not None and abs(pct) > spec.row_count_tolerance_pct:
            issues.append(
                Issue(
                    ROWS_CODE,
                    "query",
                    f"Your file has {_fmt(now.rows)} rows{_where(loaded)} against {_fmt(before.rows)} in {before_label} "
                    f"({_describe(pct)}; more than {spec.row_count_tolerance_pct:g}% is queried). Check that no "
                    "records are missing or repeated, or explain the change.",
                    value=f"{now.rows} (was {before.rows})",
                )
            )
    for tol in spec.totals:
        a, b = now.totals.get(tol.item), before.totals.get(tol.item)
        if a is None or b is None:
            continue
        pct = _change_pct(a, b)
        if pct is not None and abs(pct) > tol.tolerance_pct:
            wording = next((i.wording for i in loaded.tables[0].items if i.name == tol.item), tol.item)
            issues.append(
                Issue(
                    total_code(tol.item),
                    "query",
                    f"The total of '{wording}' is {_fmt(a)} against {_fmt(b)} in {before_label} ({_describe(pct)}; "
                    f"more than {tol.tolerance_pct:g}% is queried). Check the figures, or explain the change.",
                    item=tol.item,
                    value=f"{_fmt(a)} (was {_fmt(b)})",
                )
            )
    return issues


def figures(conn: Any, loaded: LoadedSpec, version_id: int) -> Figures:
    """Row count and item totals of one version's staged rows (one scan of its partition).

    For a return of several tables, the figures are those of its first table (CLAS: children)."""
    from lgdp.ingest._conn import raw_connection
    from lgdp.ingest.staging import staging_table

    spec = loaded.spec.plausibility
    loaded = loaded.tables[0]
    items = [t.item for t in spec.totals] if spec else []
    select = [sql.SQL("count(*)")] + [sql.SQL("coalesce(sum({}), 0)").format(sql.Identifier(i)) for i in items]
    query = sql.SQL("SELECT {} FROM {} WHERE _submission_version_id = %(v)s").format(
        sql.SQL(", ").join(select), staging_table(loaded)
    )
    row = raw_connection(conn).execute(query, {"v": version_id}).fetchone()
    return Figures(rows=int(row[0]), totals={i: float(v) for i, v in zip(items, row[1:])})


def previous_accepted(conn: Any, return_id: str, council: str, period: str) -> tuple[int, str] | None:
    """(version id, period label) of the council's accepted version for the latest earlier period."""
    from sqlalchemy import text

    found = conn.execute(
        text(
            """
            SELECT v.id, p.period
              FROM lgdp.collection_periods p
              JOIN lgdp.expected_submissions s ON s.period_id = p.id
              JOIN lgdp.submission_versions v ON v.submission_id = s.id AND v.status = 'accepted'
             WHERE p.return_id = :r AND s.council_code = :c
               AND p.starts_on < (SELECT starts_on FROM lgdp.collection_periods WHERE return_id = :r AND period = :p)
             ORDER BY p.starts_on DESC, v.version DESC
             LIMIT 1
            """
        ),
        {"r": return_id, "c": council, "p": period},
    ).first()
    return (int(found[0]), str(found[1])) if found else None


def plausibility_issues(session: Any, loaded: LoadedSpec, council: str, period: str, version_id: int) -> list[Issue]:
    """The plausibility queries of one version (none when there is no earlier accepted period)."""
    if loaded.spec.plausibility is None:
        return []
    prev = previous_accepted(session, loaded.id, council, period)
    if prev is None:
        return []
    prev_id, prev_label = prev
    return compare(loaded, figures(session, loaded, version_id), figures(session, loaded, prev_id), prev_label)
