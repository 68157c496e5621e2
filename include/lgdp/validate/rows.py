"""The failing rows of one submission version, from the same checks as the Soda contract.

Soda Core v4 reports counts, not rows; a council officer needs the row. ``failing_rows`` runs one
query over the version's rows in ``lgdp_staging."<return_id>"``, in two arms:

* every row-level check (``Check.failing``, the same SQL Soda counts with) at once: the scan keeps
  only the rows failing at least one check (the checks joined by ``OR``, evaluated once per row,
  in parallel workers where the server has them), and only those rows are expanded, in a
  ``LATERAL`` list, into one issue per failing check. A clean row costs one pass over the
  conditions, so the cost grows with the rows, not with rows × checks;
* duplicate keys from a window over the key alone, as Soda hashes it (a narrow sort, not of whole
  rows): every row after the first with the same key is reported (the first is the one the others
  repeat), which is exactly Soda's ``rows - distinct keys``.

An empty submission gives one ``ROWS`` issue without a row. A version's partition without column
statistics is analysed first, on a connection of its own (``ensure_statistics``: about 0.5 s a
million rows): without them PostgreSQL guesses the selectivity of every condition and Soda's
query, which runs next, takes about twice as long (``docs/benchmarks.md``, validate).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import psycopg
from psycopg import sql

from lgdp.ingest._conn import raw_connection
from lgdp.ingest.staging import PARTITION_SCHEMA, partition_table, staging_table
from lgdp.issues import Issue
from lgdp.specs.load import LoadedSpec
from lgdp.validate.checks import (
    DUPLICATE_CODE,
    ROW_COUNT_CODE,
    Check,
    checks,
    fill_variables,
    key_partition_sql,
    leading_zero_note,
    quote_ident,
    sql_variables,
)

_SHOW_NULL = "(blank)"
log = logging.getLogger(__name__)


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

    Columns: row number, check code, value as text, first row with the same key (KEY-DUP only);
    ordered by row number, then code.
    """
    all_checks = [c for c in (only if only is not None else checks(loaded)) if c.kind != "row_count"]
    keys = tuple(loaded.spec.keys)
    where = "_council_code = %(council)s AND _period = %(period)s AND _submission_version_id = %(version)s"
    table = staging_table(loaded)
    parts: list[sql.Composable] = []
    row_checks = [c for c in all_checks if c.failing is not None]
    if row_checks:
        arms = " UNION ALL ".join(
            f"SELECT {_literal(c.code)}, {_value_sql(c)} WHERE {c.failing}" for c in row_checks
        )
        any_failing = " OR ".join(f"({c.failing})" for c in row_checks)
        parts.append(
            sql.SQL(
                "SELECT r._row_number, f.code, f.value, NULL::integer FROM {table} AS r "
                "CROSS JOIN LATERAL ({arms}) AS f(code, value) WHERE {where} AND ({any_failing})"
            ).format(
                table=table,
                # Spec expressions are reviewed, linted SQL conditions (no ';', no comments): inserted as SQL.
                arms=sql.SQL(arms),
                where=sql.SQL(where),
                any_failing=sql.SQL(any_failing),
            )
        )
    for c in all_checks:
        if c.query is not None:  # a query rule or a parent link: its own SQL, scoped by the platform
            parts.append(
                sql.SQL("SELECT qr._row_number, {code}, qr.value, NULL::integer FROM ({q}) AS qr").format(
                    code=sql.SQL(_literal(c.code)), q=sql.SQL(c.query)
                )
            )
    dup = next((c for c in all_checks if c.code == DUPLICATE_CODE), None)
    if dup is not None and keys:
        parts.append(
            sql.SQL(
                "SELECT d._row_number, {code}, d.value, d.first_row FROM (SELECT _row_number, {value} AS value, "
                "min(_row_number) OVER (PARTITION BY {key}) AS first_row FROM {table} WHERE {where}) AS d "
                "WHERE d._row_number > d.first_row"
            ).format(
                code=sql.SQL(_literal(dup.code)),
                value=sql.SQL(_value_sql(dup)),
                key=sql.SQL(key_partition_sql(keys)),
                table=table,
                where=sql.SQL(where),
            )
        )
    if not parts:
        parts.append(sql.SQL("SELECT NULL::integer, NULL::text, NULL::text, NULL::integer WHERE false"))
    query = sql.SQL("SELECT * FROM ({}) AS issues (row_number, code, value, first_row) ORDER BY 1, 2").format(
        sql.SQL(" UNION ALL ").join(sql.SQL("({})").format(p) for p in parts)
    )
    return query, all_checks


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# The planner cannot tell how few rows fail the OR of every check and, counting a transfer cost
# for each row it expects, keeps the scan in one process; these make it use its parallel workers.
_PLANNER = {"parallel_setup_cost": "0", "parallel_tuple_cost": "0"}


def ensure_statistics(conn: Any, loaded: LoadedSpec, version_id: int) -> bool:
    """ANALYZE the version's partition if it has no column statistics yet; True if it was now.

    A version is validated right after its load, before autovacuum comes round, and the load
    leaves a row count but no column statistics: PostgreSQL then guesses every condition's
    selectivity and Soda's aggregate (one sort of every key) ran about twice as long. The ANALYZE
    runs on a connection of its own, committed at once, as autovacuum's would be: in the caller's
    transaction it would be rolled back with it (validation only reads) and Soda, on its own
    connection, would never see the statistics. Best effort: if it cannot run (the partition not
    yet committed, a lock held, no permission), validation goes on without it.
    """
    raw = raw_connection(conn)
    part = partition_table(loaded, version_id)
    name = f"{loaded.staging_name}_v{int(version_id)}"
    row = raw.execute(
        "SELECT to_regclass(%s) IS NOT NULL, "
        "EXISTS (SELECT 1 FROM pg_stats WHERE schemaname = %s AND tablename = %s)",
        (part.as_string(raw), PARTITION_SCHEMA, name),
    ).fetchone()
    if not row[0] or row[1]:
        return False
    params: dict[str, Any] = dict(raw.info.get_parameters())
    if raw.info.password:
        params["password"] = raw.info.password
    try:
        with psycopg.connect(**params, autocommit=True) as own:
            # never wait on a lock the caller's own transaction holds (that would wait forever)
            own.execute("SET lock_timeout = '2s'")
            own.execute(sql.SQL("ANALYZE {}").format(part))
    except psycopg.Error as exc:
        log.info("%s version %s: no statistics gathered before validation (%s)", loaded.id, version_id, exc)
        return False
    return True


def rule_timeout_s() -> float:
    """How long the failing-row query of one table may run (``LGDP_RULE_TIMEOUT_S``, default 600 s)."""
    try:
        return max(0.1, float(os.environ.get("LGDP_RULE_TIMEOUT_S", "600")))
    except ValueError:
        return 600.0


def failing_rows(
    conn: Any,
    loaded: LoadedSpec,
    council: str,
    period: str,
    version_id: int,
    variables: dict[str, str] | None = None,
) -> list[Issue]:
    """Every failing row of every check for one submission version, ordered by row then code.

    ``conn``: a SQLAlchemy Session/Connection or a psycopg connection (its transaction is used).
    Each issue names the row (its number in the council's file), the item(s), the value as text,
    the check code, its severity and a message for the council officer.
    """
    raw = raw_connection(conn)
    by_code = {c.code: c for c in checks(loaded)}
    params = {"council": council, "period": period, "version": version_id}
    query, _ = failing_rows_sql(loaded)
    text = query.as_string(raw)
    if "${var." in text:
        if variables is None:
            variables = sql_variables(loaded, council, period, version_id, None)
        text = fill_variables(text, variables)
    text = text.replace("%", "%%")
    for name in ("council", "period", "version"):  # our own parameters stay parameters
        text = text.replace(f"%%({name})s", f"%({name})s")
    query = sql.SQL(text)
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
        if loaded.table_name is not None:
            if not loaded.whole.spec.tables[[t.dataset for t in loaded.whole.tables].index(loaded.table_name)].required:
                return []
            return [Issue(c.code, c.severity, f"The {loaded.table_name.replace('_', ' ')} sheet has no data rows. "
                          "Fill it in (one row per record) and send the file again.", table=loaded.table_name)]
        return [Issue(c.code, c.severity, c.message)]
    ensure_statistics(raw, loaded, version_id)
    names = [*_PLANNER, "statement_timeout"]
    before = raw.execute(
        "SELECT " + ", ".join("current_setting(%s)" for _ in names), names
    ).fetchone()
    _set_local(raw, dict(_PLANNER, statement_timeout=f"{int(rule_timeout_s() * 1000)}"))
    try:
        found = raw.execute(query, params).fetchall()
    except psycopg.errors.QueryCanceled as exc:
        from lgdp.validate.contract import ValidationRuntimeError

        raise ValidationRuntimeError(
            f"{loaded.staging_name}: the checks ran past the rule timeout ({rule_timeout_s():g} s); "
            "a platform fault, not the council's: look at the query rules' SQL"
        ) from exc
    except psycopg.Error as exc:
        from lgdp.validate.contract import ValidationRuntimeError

        raise ValidationRuntimeError(f"{loaded.staging_name}: a check's SQL failed at run time ({exc}); a platform fault, "
                                     "not the council's") from exc
    finally:
        if raw.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
            _set_local(raw, dict(zip(names, before)))
    for row_number, code, value, first in found:
        c = by_code[code]
        shown = value if value is not None else _SHOW_NULL
        message = c.message.format(value=shown, first=first) + leading_zero_note(c, value)
        issues.append(Issue(c.code, c.severity, message, row_number, c.item, value, loaded.table_name))
    return issues


def _set_local(raw: Any, settings: dict[str, str]) -> None:
    """Planner settings for the rest of the caller's transaction (restored right after our query)."""
    args: list[str] = []
    for k, v in settings.items():
        args += [k, v]
    raw.execute("SELECT " + ", ".join("set_config(%s, %s, true)" for _ in settings), args)


def count_by_code(loaded: LoadedSpec, issues: list[Issue]) -> dict[str, int]:
    """Issues per check code, for every code of the spec (0 where none): comparable with ``verify``."""
    counts = {c.code: 0 for c in checks(loaded)}
    for i in issues:
        counts[i.code] += 1
    return counts


__all__ = ["count_by_code", "ensure_statistics", "failing_rows", "failing_rows_sql"]
