"""The failing rows of one submission version, from the same checks as the Soda contract.

Soda Core v4 reports counts, not rows; a council officer needs the row. ``failing_rows`` runs one
query over the version's rows in ``lgdp_staging."<return_id>"``: each row is read once and every
check's failing condition (``Check.failing``, the same SQL Soda counts with) is evaluated against
it in a ``LATERAL`` list, so the cost grows with the rows, not with rows × checks. Duplicate keys
are found with a window over the key as Soda hashes it: every row after the first with the same
key is reported (the first is the one the others repeat), which is exactly Soda's
``rows - distinct keys``. An empty submission gives one ``ROWS`` issue without a row.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from lgdp.ingest._conn import raw_connection
from lgdp.ingest.staging import staging_table
from lgdp.issues import Issue
from lgdp.specs.load import LoadedSpec
from lgdp.validate.checks import DUPLICATE_CODE, ROW_COUNT_CODE, Check, checks, key_partition_sql, quote_ident

_SHOW_NULL = "(blank)"


def _value_sql(check: Check) -> str:
    """The value shown in the issue, as text: the item's value, or 'item=value' pairs."""
    if len(check.items) == 1 and check.kind != "duplicate":
        return f"CAST({quote_ident(check.items[0])} AS text)"
    if check.kind == "duplicate":
        parts = [f"COALESCE(CAST({quote_ident(i)} AS text), '{_SHOW_NULL}')" for i in check.items]
        return f"CONCAT_WS(' / ', {', '.join(parts)})"
    parts = [f"'{i}=' || COALESCE(CAST({quote_ident(i)} AS text), '{_SHOW_NULL}')" for i in check.items]
    return f"CONCAT_WS(', ', {', '.join(parts)})"


def failing_rows_sql(loaded: LoadedSpec, only: list[Check] | None = None) -> tuple[sql.Composed, list[Check]]:
    """The query (parameters: council, period, version id) and the checks it covers.

    Columns: row number, check code, value as text, first row with the same key (KEY-DUP only).
    """
    all_checks = [c for c in (only if only is not None else checks(loaded)) if c.kind != "row_count"]
    keys = tuple(loaded.spec.keys)
    dup = [c for c in all_checks if c.code == DUPLICATE_CODE]
    window = ""
    if dup and keys:
        part = key_partition_sql(keys)
        window = (
            f", row_number() OVER (PARTITION BY {part} ORDER BY _row_number) AS _lgdp_dup_rank"
            f", min(_row_number) OVER (PARTITION BY {part}) AS _lgdp_dup_first"
        )
    arms: list[str] = []
    for c in all_checks:
        code = "'" + c.code.replace("'", "''") + "'"
        if c.code == DUPLICATE_CODE:
            arms.append(f"SELECT {code}, {_value_sql(c)}, _lgdp_dup_first WHERE _lgdp_dup_rank > 1")
        else:
            arms.append(f"SELECT {code}, {_value_sql(c)}, NULL::integer WHERE {c.failing}")
    if not arms:
        arms.append("SELECT NULL::text, NULL::text, NULL::integer WHERE false")
    query = sql.SQL(
        "WITH base AS (SELECT *{window} FROM {table} "
        "WHERE _council_code = %(council)s AND _period = %(period)s AND _submission_version_id = %(version)s) "
        "SELECT base._row_number, f.code, f.value, f.first_row FROM base "
        "CROSS JOIN LATERAL ({arms}) AS f(code, value, first_row) "
        "ORDER BY base._row_number, f.code"
    ).format(
        window=sql.SQL(window),
        table=staging_table(loaded),
        # Spec expressions are reviewed, linted SQL conditions (no ';', no comments): inserted as SQL.
        arms=sql.SQL(" UNION ALL ".join(arms)),
    )
    return query, all_checks


def failing_rows(conn: Any, loaded: LoadedSpec, council: str, period: str, version_id: int) -> list[Issue]:
    """Every failing row of every check for one submission version, ordered by row then code.

    ``conn``: a SQLAlchemy Session/Connection or a psycopg connection (its transaction is used).
    Each issue names the row (its number in the council's file), the item(s), the value as text,
    the check code, its severity and a message for the council officer.
    """
    raw = raw_connection(conn)
    by_code = {c.code: c for c in checks(loaded)}
    params = {"council": council, "period": period, "version": version_id}
    query, _ = failing_rows_sql(loaded)
    issues: list[Issue] = []
    has_rows = raw.execute(
        sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE _council_code = %(council)s AND _period = %(period)s "
            "AND _submission_version_id = %(version)s)"
        ).format(staging_table(loaded)),
        params,
    ).fetchone()[0]
    if not has_rows:
        c = by_code[ROW_COUNT_CODE]
        return [Issue(c.code, c.severity, c.message)]
    for row_number, code, value, first in raw.execute(query, params):
        c = by_code[code]
        shown = value if value is not None else _SHOW_NULL
        message = c.message.format(value=shown, first=first)
        issues.append(Issue(c.code, c.severity, message, row_number, c.item, value))
    return issues


def count_by_code(loaded: LoadedSpec, issues: list[Issue]) -> dict[str, int]:
    """Issues per check code, for every code of the spec (0 where none): comparable with ``verify``."""
    counts = {c.code: 0 for c in checks(loaded)}
    for i in issues:
        counts[i.code] += 1
    return counts


__all__ = ["count_by_code", "failing_rows", "failing_rows_sql"]
