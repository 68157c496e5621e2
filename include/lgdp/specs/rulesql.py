"""Rule SQL, parsed and restricted with sqlglot (PostgreSQL dialect), never trusted as text.

A spec rule is either a **condition** over one row (``expression``: true for a valid row) or a
**query** (``query``: one ``SELECT`` returning the flagged rows of the rule's table). Both are
parsed here, for lint and again when the SQL that runs is generated, so a spec that skipped lint
cannot run anything lint would refuse. What is allowed:

* one statement, a ``SELECT`` (with ``WITH``, ``UNION``, joins, subqueries, window functions and
  aggregates); no DML, DDL, ``SELECT INTO``, row locks, ``SET`` or any other command;
* tables: this return's own tables by name, ``previous.<table>`` (the same council's previous
  accepted period), ``reference.<name>`` (shared reference tables), and the query's own CTEs and
  aliases; any other schema (``lgdp``, ``pg_catalog``, ``information_schema``...) is refused;
* functions from ``SAFE_FUNCTIONS`` only (no ``pg_*``, ``set_config``, ``dblink``, ``lo_*``...);
* columns that exist in the tables the query reads;
* parameters ``:period_start``, ``:period_end``, ``:opens_on``, ``:due_date``, ``:closes_on``.

The platform, not the author, scopes every table to the submission being checked: when the SQL
is generated (``compile_query``) each table reference becomes a subquery over the staging table
filtered on council, period and version, so a rule can never read another council's rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable, Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

DIALECT = "postgres"
PREVIOUS = "previous"
REFERENCE = "reference"
PARAMETERS = ("period_start", "period_end", "opens_on", "due_date", "closes_on")
ROW_NUMBER = "_row_number"
VALUE = "value"

# Lower-case SQL names of the functions and operators a rule may use (sqlglot's names for its
# expression classes, and the names of functions it does not know, which it parses as Anonymous).
SAFE_FUNCTIONS = frozenset(
    """
    and or not xor abs round floor ceil ceiling mod power sqrt sign trunc greatest least coalesce
    nullif if case length char_length character_length lower upper trim btrim ltrim rtrim
    substring substr left right position strpos replace concat concat_ws split_part lpad rpad
    starts_with regexp_like regexp_replace regexp_extract regexp_match initcap reverse
    count sum min max avg bool_and bool_or every string_agg array_agg count_if stddev variance
    row_number rank dense_rank lag lead first_value last_value nth_value ntile percent_rank
    cume_dist age date_part date_trunc extract make_date date_add date_sub datediff
    current_date to_char to_date to_number cast try_cast array array_length cardinality
    unnest generate_series exploding_generate_series exists in between like ilike similar_to any all
    years months days justify_days interval timestamp_trunc str_to_date time_to_str
    date_diff date_from_parts datetrunc ts_or_ds_to_date ts_or_ds_add
    """.split()
)


class RuleSqlError(ValueError):
    """Rule SQL that does not parse or is not allowed; the message is for the spec author."""


@dataclass(frozen=True)
class Catalog:
    """What a rule may read: table -> its columns, for this return, last period and reference data."""

    tables: Mapping[str, frozenset[str]]
    reference: Mapping[str, frozenset[str]]

    def columns_of(self, db: str, name: str) -> frozenset[str] | None:
        if db == "":
            return self.tables.get(name)
        if db == PREVIOUS:
            return self.tables.get(name)
        if db == REFERENCE:
            return self.reference.get(name)
        return None


META = frozenset({ROW_NUMBER})


def _parse(text: str, what: str) -> exp.Expression:
    try:
        statements = [s for s in sqlglot.parse(text, read=DIALECT) if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        detail = first.get("description") or str(exc).splitlines()[0]
        raise RuleSqlError(f"the {what} is not valid SQL: {detail}") from None
    except Exception as exc:  # noqa: BLE001 - sqlglot's tokenizer raises its own errors
        raise RuleSqlError(f"the {what} is not valid SQL: {exc}") from None
    if not statements:
        raise RuleSqlError(f"the {what} is empty")
    if len(statements) > 1:
        raise RuleSqlError(f"the {what} must be one SQL statement: remove the ';' and what follows")
    return statements[0]


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _check_nodes(tree: exp.Expression, what: str) -> None:
    for node in tree.walk():
        if isinstance(node, exp.Lock):
            raise RuleSqlError(f"the {what} may only read data: FOR UPDATE/SHARE is not allowed")
        if isinstance(node, (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter,
                             exp.Command, exp.Set, exp.Into, exp.Copy, exp.TruncateTable, exp.Grant)):
            word = "SELECT INTO" if isinstance(node, exp.Into) else type(node).__name__.upper()
            raise RuleSqlError(f"the {what} may only read data: {word} is not allowed")
        if isinstance(node, exp.Func) and not isinstance(node, (exp.Connector, exp.Cast, exp.Case, exp.Interval)):
            name = _function_name(node)
            if name.startswith("pg_") or name not in SAFE_FUNCTIONS:
                raise RuleSqlError(f"the {what} uses the function {name}(), which rules may not use")
        if isinstance(node, exp.Placeholder):
            name = str(node.name or "")
            if name not in PARAMETERS:
                shown = f":{name}" if name else "?"
                raise RuleSqlError(
                    f"the {what} uses the parameter {shown}; the parameters are " + ", ".join(f":{p}" for p in PARAMETERS)
                )
        if isinstance(node, exp.Parameter):
            raise RuleSqlError(f"the {what} uses a $ parameter; use the named parameters such as :period_end")


def parse_condition(text: str, columns: frozenset[str] | set[str]) -> exp.Expression:
    """A row condition over ``columns``; raises ``RuleSqlError`` with a message for the author."""
    try:
        tree = sqlglot.parse_one(f"SELECT 1 WHERE {text}", read=DIALECT)
    except ParseError:
        _parse(text, "expression")  # for the message
        raise RuleSqlError("the expression is not a valid SQL condition") from None
    stmts = sqlglot.parse(f"SELECT 1 WHERE {text}", read=DIALECT)
    if len([s for s in stmts if s is not None]) != 1 or not isinstance(tree, exp.Select):
        raise RuleSqlError("an expression is one SQL condition: no ';' and nothing after it")
    cond = tree.args.get("where")
    if cond is None or set(tree.args) - {"expressions", "where"} and any(
        tree.args.get(k) for k in tree.args if k not in ("expressions", "where")
    ):
        raise RuleSqlError("an expression is one SQL condition (no SELECT, FROM, GROUP BY or ORDER BY)")
    cond = cond.this
    _check_nodes(cond, "expression")
    for node in cond.walk():
        if isinstance(node, (exp.Select, exp.Subquery, exp.Table)):
            raise RuleSqlError("an expression reads only its own row: use a query rule to read other rows or tables")
        if isinstance(node, exp.AggFunc) or isinstance(node, exp.Window):
            raise RuleSqlError("an expression reads only its own row: aggregates and window functions need a query rule")
    for col in cond.find_all(exp.Column):
        if col.table:
            raise RuleSqlError(f"an expression names items without a table: write {col.name}, not {col.sql()}")
        if col.name.lower() not in columns:
            raise UnknownItem(col.name.lower())
    return cond


class UnknownItem(RuleSqlError):
    def __init__(self, name: str) -> None:
        super().__init__(f"uses {name!r}, which is not a data item of this return")
        self.name = name


def condition_items(text: str) -> set[str]:
    """The item names a condition uses (empty if it does not parse)."""
    try:
        tree = sqlglot.parse_one(f"SELECT 1 WHERE {text}", read=DIALECT)
    except Exception:  # noqa: BLE001
        return set()
    return {c.name.lower() for c in tree.find_all(exp.Column) if not c.table}


def _table_key(t: exp.Table) -> tuple[str, str]:
    return (str(t.db or "").lower(), str(t.name).lower())


def parse_query(text: str, catalog: Catalog, table: str) -> exp.Expression:
    """A query rule, checked against ``catalog``; it must return ``_row_number`` of ``table``'s rows."""
    tree = _parse(text, "query")
    if not isinstance(tree, (exp.Select, exp.Union, exp.Intersect, exp.Except)) and not (
        isinstance(tree, exp.Subquery)
    ):
        raise RuleSqlError(f"the query must be a SELECT, not {type(tree).__name__.upper()}")
    _check_nodes(tree, "query")
    if tree.find(exp.Lock) is not None or tree.args.get("locks"):
        raise RuleSqlError("the query may only read data: FOR UPDATE/SHARE is not allowed")
    ctes = {str(c.alias).lower() for c in tree.find_all(exp.CTE)}
    aliases: dict[str, frozenset[str] | None] = {}
    for t in tree.find_all(exp.Table):
        if not isinstance(t.this, exp.Identifier):  # a set-returning function (its name was checked above)
            aliases[str(t.alias_or_name).lower()] = None
            continue
        db, name = _table_key(t)
        if t.args.get("catalog"):
            raise RuleSqlError(f"the query reads {t.sql()}: only this return's tables, previous.<table> and reference.<name>")
        if db == "" and name in ctes:
            aliases[str(t.alias_or_name).lower()] = None
            continue
        if db not in ("", PREVIOUS, REFERENCE):
            raise RuleSqlError(
                f"the query reads {t.sql(dialect=DIALECT)}: a rule may read only this return's tables, "
                "previous.<table> and reference.<name>"
            )
        cols = catalog.columns_of(db, name)
        if cols is None:
            where = {"": "a table of this return", PREVIOUS: "a table of this return (previous.<table>)",
                     REFERENCE: "a shared reference table"}[db]
            known = sorted(catalog.reference if db == REFERENCE else catalog.tables)
            raise RuleSqlError(f"the query reads {t.sql(dialect=DIALECT)}, which is not {where} (known: {', '.join(known)})")
        aliases[str(t.alias_or_name).lower()] = cols | (META if db != REFERENCE else frozenset())
    # Columns: a qualified column must exist in its table (when that is one of ours, not a CTE or
    # a derived table); an unqualified one must exist in some table the query reads (or be an
    # output alias, which sqlglot cannot always tell apart, so those are accepted).
    outputs = {str(e.alias).lower() for e in tree.find_all(exp.Alias)}
    outputs |= {str(a.name).lower() for t in tree.find_all(exp.TableAlias) for a in t.columns}
    derived = {str(s.alias).lower() for s in tree.find_all(exp.Subquery) if s.alias}
    every = frozenset().union(*(c for c in aliases.values() if c is not None)) if aliases else frozenset()
    for col in tree.find_all(exp.Column):
        name = col.name.lower()
        if isinstance(col.this, exp.Star):
            continue
        qual = str(col.table).lower()
        if qual:
            if qual in derived or qual in ctes:
                continue
            if qual not in aliases:
                raise RuleSqlError(f"the query uses {col.sql()}, but no table in it is called {qual!r}")
            cols = aliases[qual]
            if cols is not None and name not in cols:
                raise RuleSqlError(f"the query uses {col.sql()}, but that table has no column {name!r}")
        elif name not in every and name not in outputs and not ctes and not derived:
            raise RuleSqlError(f"the query uses {name!r}, which is not a column of the tables it reads")
    # What it returns: _row_number (of the rule's table) and optionally value.
    first = tree if isinstance(tree, exp.Select) else tree.find(exp.Select)
    names = [e.alias_or_name.lower() for e in first.expressions] if first is not None else []
    if ROW_NUMBER not in names and not any(isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star)) for e in first.expressions):
        raise RuleSqlError(
            f"the query must return the flagged rows' {ROW_NUMBER} (e.g. SELECT e.{ROW_NUMBER} FROM {table} e ...)"
        )
    return tree


# ---------------------------------------------------------------------------------------------
# Generating the SQL that runs


def _date_literal(d: dt.date) -> exp.Expression:
    return exp.Cast(this=exp.Literal.string(d.isoformat()), to=exp.DataType.build("date"))


def _parameter(node: exp.Placeholder, params: Mapping[str, dt.date | str]) -> exp.Expression:
    """A :parameter as SQL: a date literal, or SQL text (a Soda variable)."""
    value = params[str(node.name)]
    if isinstance(value, dt.date):
        return _date_literal(value)
    return sqlglot.parse_one(str(value), read=DIALECT)


def compile_query(
    tree: exp.Expression,
    catalog: Catalog,
    source: Callable[[str, str], str],
    params: Mapping[str, dt.date | str],
) -> str:
    """The query rule as it runs: each table a subquery scoped by the platform, parameters filled.

    ``source(db, name)`` gives the SQL of the rows a table reference stands for (already scoped to
    the council, period and version); ``params`` the period's dates (``datetime.date``, or SQL
    text such as a Soda variable). Returns ``SELECT _row_number, value`` with one row per flagged row.
    """
    tree = tree.copy()
    ctes = {str(c.alias).lower() for c in tree.find_all(exp.CTE)}

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table):
            if not isinstance(node.this, exp.Identifier):
                return node
            db, name = _table_key(node)
            if db == "" and name in ctes:
                return node
            if catalog.columns_of(db, name) is None:
                raise RuleSqlError(f"the query reads {node.sql()}, which it may not")
            alias = str(node.alias_or_name)
            sub = sqlglot.parse_one(source(db, name), read=DIALECT)
            return exp.Subquery(this=sub, alias=exp.TableAlias(this=exp.to_identifier(alias)))
        if isinstance(node, exp.Placeholder):
            return _parameter(node, params)
        return node

    tree = tree.transform(replace)
    first = tree if isinstance(tree, exp.Select) else tree.find(exp.Select)
    names = [e.alias_or_name.lower() for e in first.expressions] if first is not None else []
    value = f"min(CAST(q.{VALUE} AS text))" if VALUE in names else "NULL::text"
    inner = tree.sql(dialect=DIALECT)
    return f"SELECT q.{ROW_NUMBER}, {value} AS {VALUE} FROM ({inner}) AS q WHERE q.{ROW_NUMBER} IS NOT NULL GROUP BY q.{ROW_NUMBER}"


def compile_condition(tree: exp.Expression, params: Mapping[str, dt.date | str]) -> str:
    """A row condition with the period's parameters filled in."""

    def replace(node: exp.Expression) -> exp.Expression:
        return _parameter(node, params) if isinstance(node, exp.Placeholder) else node

    return tree.copy().transform(replace).sql(dialect=DIALECT)


def uses_parameters(text: str) -> bool:
    try:
        return any(True for _ in sqlglot.parse_one(f"SELECT 1 WHERE {text}", read=DIALECT).find_all(exp.Placeholder))
    except Exception:  # noqa: BLE001
        return False


__all__ = [
    "Catalog",
    "PARAMETERS",
    "PREVIOUS",
    "REFERENCE",
    "RuleSqlError",
    "SAFE_FUNCTIONS",
    "UnknownItem",
    "compile_condition",
    "compile_query",
    "condition_items",
    "parse_condition",
    "parse_query",
]
