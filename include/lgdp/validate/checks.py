"""The one list of checks derived from a return spec: the single source of truth for validation.

Both the Soda Core v4 data contract (``lgdp.validate.contract``) and the failing-row queries
(``lgdp.validate.rows``) are generated from ``checks(loaded)``, so the count Soda reports for a
check and the rows the council is told about come from the same SQL predicate and cannot drift
apart (``tests/test_validate.py`` asserts it for every check of every approved spec).

Codes. Item-level checks get generic codes derived from the item name, so they are stable as long
as the item keeps its name: ``REQ-<item>`` (required item missing), ``CODE-<item>`` (not in the
code list), ``RANGE-<item>`` (outside minimum/maximum or min_date/max_date), ``LEN-<item>`` (longer
than max_length), ``FMT-<item>`` (does not match the pattern). ``KEY-DUP`` is a repeated key,
``ROWS`` an empty submission; every cross-item rule keeps its own code from the spec.

Semantics, chosen to be exactly what Soda Core 4.28 counts:

* missing is ``IS NULL`` (the parser reads a blank cell as NULL); every other item-level check
  skips missing values (Soda's ``invalid`` counts exclude missing values), so a blank required
  code is reported once, as ``REQ-``;
* a rule fails when its expression is not TRUE: ``(expression) IS NOT TRUE``, so an expression
  that evaluates to NULL (an item it compares is blank) is a failure. The same text is Soda's
  ``failed_rows`` expression;
* a duplicate key is every row after the first with the same key (Soda: rows minus distinct keys),
  keys compared as Soda hashes them: each value cast to varchar, NULL as ``__SODA_NULL__``, joined
  with ``'||'``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from typing import Callable

from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import ItemType, ResolvedItem

STAGING_SCHEMA = "lgdp_staging"

Kind = Literal["missing", "code", "range", "length", "format", "duplicate", "row_count", "rule", "query", "link"]

ROW_COUNT_CODE = "ROWS"
DUPLICATE_CODE = "KEY-DUP"
SODA_NULL = "__SODA_NULL__"  # soda_core SqlDialect.get_soda_null_string_value()
SHOWN_CODES = 8


@dataclass(frozen=True)
class Check:
    """One check: what the council is told, the SQL true for a failing row, and the Soda check.

    ``message`` is a template for one failing row: ``{value}`` is the value as text (and, for
    ``KEY-DUP``, ``{first}`` the row that first has the key). ``failing`` is a SQL condition over
    the staging table's columns that is true for a failing row (None for ``ROWS``, which is about
    the whole submission, and ``KEY-DUP``, which compares rows). The check as it goes in the
    contract is ``soda_type`` (missing, invalid, failed_rows, duplicate, row_count) with
    ``soda_fields``, under the column ``soda_column`` (None for a dataset-level check).
    """

    code: str
    severity: Literal["error", "query"]
    items: tuple[str, ...]
    kind: Kind
    message: str
    failing: str | None
    soda_type: str
    soda_fields: dict[str, Any] = field(default_factory=dict)
    soda_column: str | None = None
    query: str | None = None
    """For a query rule or a parent link: the SQL returning (_row_number, value) of each flagged row,
    with ``${var.NAME}`` variables (the same text is Soda's ``failed_rows`` query)."""

    @property
    def item(self) -> str | None:
        """The item named in an issue: the single item, or the items joined by ', '."""
        return ", ".join(self.items) if self.items else None


def quote_ident(name: str) -> str:
    """A PostgreSQL identifier, quoted (item names are lowercase slugs, so this is exact)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def number_text(x: float) -> str:
    """A spec bound as Soda writes it in SQL: whole numbers without '.0'."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def number_value(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def full_match(pattern: str) -> str:
    """The pattern as a whole-value match (specs say the whole value must match)."""
    if pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern
    return f"^(?:{pattern})$"


def _codes_text(item: ResolvedItem) -> str:
    codes = [c.code for c in item.codes or ()]
    shown = ", ".join(codes[:SHOWN_CODES])
    return shown + (", …" if len(codes) > SHOWN_CODES else "")


def _example(item: ResolvedItem) -> str | None:
    try:
        from lgdp.synth import patterns

        return patterns.sample(item.pattern or "", random.Random(0), item.max_length)
    except Exception:  # noqa: BLE001 - an example is a courtesy, never a reason to fail
        return None


def _braces(text: str) -> str:
    """Text put into a message template as it is (no placeholders inside)."""
    return text.replace("{", "{{").replace("}", "}}")


def _item_checks(item: ResolvedItem) -> list[Check]:
    col = quote_ident(item.name)
    words = _braces(item.wording)
    out: list[Check] = []
    name = item.name
    if item.required:
        out.append(
            Check(
                f"REQ-{name}", "error", (name,), "missing",
                f"{words}: this is required but is blank. Fill it in.",
                f"{col} IS NULL", "missing", {}, name,
            )
        )
    present = f"{col} IS NOT NULL"
    if item.type == ItemType.code and item.codes:
        codes = [c.code for c in item.codes]
        listed = ", ".join(quote_literal(c) for c in codes)
        out.append(
            Check(
                f"CODE-{name}", "error", (name,), "code",
                f"{words}: '{{value}}' is not one of the allowed codes ({_braces(_codes_text(item))}). Use a code from the list.",
                f"{present} AND NOT ({col} IN ({listed}))", "invalid", {"valid_values": codes}, name,
            )
        )
    if item.type in (ItemType.integer, ItemType.decimal) and (item.minimum is not None or item.maximum is not None):
        conds, fields = [], {}
        if item.minimum is not None:
            conds.append(f"{col} < {number_text(item.minimum)}")
            fields["valid_min"] = number_value(item.minimum)
        if item.maximum is not None:
            conds.append(f"{col} > {number_text(item.maximum)}")
            fields["valid_max"] = number_value(item.maximum)
        if item.minimum is not None and item.maximum is not None:
            allowed = f"between {number_text(item.minimum)} and {number_text(item.maximum)}"
        elif item.minimum is not None:
            allowed = f"{number_text(item.minimum)} or more"
        else:
            allowed = f"{number_text(item.maximum)} or less"  # type: ignore[arg-type]
        unit = f" {_braces(item.unit)}" if item.unit else ""
        out.append(
            Check(
                f"RANGE-{name}", "error", (name,), "range",
                f"{words}: {{value}} is outside the allowed range; it must be {allowed}{unit}. Check the number.",
                f"{present} AND ({' OR '.join(conds)})", "invalid", fields, name,
            )
        )
    if item.type == ItemType.date and (item.min_date is not None or item.max_date is not None):
        conds = []
        if item.min_date is not None:
            conds.append(f"{col} < DATE {quote_literal(item.min_date.isoformat())}")
        if item.max_date is not None:
            conds.append(f"{col} > DATE {quote_literal(item.max_date.isoformat())}")
        if item.min_date and item.max_date:
            allowed = f"between {item.min_date.isoformat()} and {item.max_date.isoformat()}"
        elif item.min_date:
            allowed = f"on or after {item.min_date.isoformat()}"
        else:
            allowed = f"on or before {item.max_date.isoformat()}"  # type: ignore[union-attr]
        out.append(
            Check(
                f"RANGE-{name}", "error", (name,), "range",
                f"{words}: {{value}} is outside the allowed dates; it must be {allowed}. Check the date.",
                # Soda's valid_min/valid_max take numbers only: a date range is a failed_rows check
                # on the same condition.
                f"{present} AND ({' OR '.join(conds)})", "failed_rows",
                {"expression": f"{present} AND ({' OR '.join(conds)})"}, None,
            )
        )
    if item.type in (ItemType.string, ItemType.code) and item.max_length is not None:
        out.append(
            Check(
                f"LEN-{name}", "error", (name,), "length",
                f"{words}: '{{value}}' is too long; at most {item.max_length} characters are allowed. Shorten it.",
                f"{present} AND length({col}) > {item.max_length}", "invalid",
                {"valid_max_length": item.max_length}, name,
            )
        )
    if item.type in (ItemType.string, ItemType.code) and item.pattern:
        regex = full_match(item.pattern)
        example = _example(item)
        hint = f" (for example {_braces(example)})" if example else ""
        out.append(
            Check(
                f"FMT-{name}", "error", (name,), "format",
                f"{words}: '{{value}}' is not in the expected form{hint}. Correct the value.",
                f"{present} AND NOT ({col} ~ {quote_literal(regex)})", "invalid",
                {"valid_format": {"regex": regex, "name": f"{item.name} pattern"}}, name,
            )
        )
    return out


LEADING_ZERO_NOTE = (
    " It is one digit short: a leading zero was probably lost (a spreadsheet turns 012345 typed in a "
    "General cell into the number 12345). Format the column as Text, type the value again with its "
    "leading zero, and upload the file again."
)


def leading_zero_note(check: Check, value: str | None) -> str:
    """For a format check: ``LEADING_ZERO_NOTE`` when ``value`` is all digits and fails the pattern
    but would match it with a ``0`` in front (``21144581`` for a nine-digit pattern), else ``""``."""
    if check.kind != "format" or not value or not re.fullmatch(r"[0-9]+", value):
        return ""
    regex = (check.soda_fields.get("valid_format") or {}).get("regex")
    try:
        lost = bool(regex) and re.fullmatch(regex, value) is None and re.fullmatch(regex, "0" + value) is not None
    except re.error:
        return ""
    return LEADING_ZERO_NOTE if lost else ""


def key_partition_sql(keys: tuple[str, ...]) -> str:
    """The key of a row as Soda's duplicate check hashes it (before the hash)."""
    parts = [f"COALESCE(CAST({quote_ident(k)} AS VARCHAR), {quote_literal(SODA_NULL)})" for k in keys]
    return parts[0] if len(parts) == 1 else f"CONCAT_WS('||', {', '.join(parts)})"


def rule_failing_sql(expression: str) -> str:
    """A spec rule's expression (true for a valid row) turned into the failing-row condition."""
    return f"({expression}) IS NOT TRUE"


# ---------------------------------------------------------------------------------------------
# Rules that read the period's dates, other rows, other tables, last year and reference data.
# Their SQL carries Soda-style variables, filled in by Soda for the contract and by
# ``fill_variables`` for the failing rows, so both run the very same text.

PERIOD_VARIABLES = {
    "period_start": "PERIOD_START",
    "period_end": "PERIOD_END",
    "opens_on": "OPENS_ON",
    "due_date": "DUE_DATE",
    "closes_on": "CLOSES_ON",
}
REFERENCE_SCHEMA = "lgdp_reference"
_VAR = re.compile(r"\$\{var\.([A-Z_]+)\}")


def _param_sql() -> dict[str, str]:
    return {p: f"CAST('${{var.{v}}}' AS DATE)" for p, v in PERIOD_VARIABLES.items()}


def _source_sql(loaded: LoadedSpec) -> Callable[[str, str], str]:
    from lgdp.specs.rulesql import PREVIOUS, REFERENCE

    whole = loaded.whole

    def source(db: str, name: str) -> str:
        if db == REFERENCE:
            return f"SELECT * FROM {quote_ident(REFERENCE_SCHEMA)}.{quote_ident(name)}"
        table = quote_ident(STAGING_SCHEMA) + "." + quote_ident(whole.table(name).staging_name if whole.multi else whole.staging_name)
        if db == PREVIOUS:
            return (f"SELECT * FROM {table} WHERE _council_code = '${{var.COUNCIL}}' "
                    "AND _submission_version_id = CAST('${var.PREVIOUS}' AS bigint)")
        return (f"SELECT * FROM {table} WHERE _council_code = '${{var.COUNCIL}}' AND _period = '${{var.PERIOD}}' "
                "AND _submission_version_id = CAST('${var.VERSION}' AS bigint)")

    return source


def _catalog(loaded: LoadedSpec):
    from lgdp.specs.rulesql import Catalog

    whole = loaded.whole
    tables = {t.dataset: frozenset(it.name for it in t.items) for t in whole.tables}
    ref = whole.reference
    reference = {n: frozenset(c.name for c in t.columns) for n, t in (ref.tables.items() if ref else ())}
    return Catalog(tables, reference)


def _condition_sql(expression: str, columns: frozenset[str]) -> str:
    from lgdp.specs import rulesql

    if not rulesql.uses_parameters(expression):
        return expression  # as written (and as linted): keeps the contract of older specs unchanged
    tree = rulesql.parse_condition(expression, columns)
    return rulesql.compile_condition(tree, _param_sql())


def _query_checks(loaded: LoadedSpec) -> list[Check]:
    """The query rules flagging this table's rows, and its parent link, as checks."""
    from lgdp.specs import rulesql

    whole = loaded.whole
    out: list[Check] = []
    catalog = _catalog(loaded)
    source = _source_sql(loaded)
    parent = None
    if whole.multi:
        table_spec = next(t for t in whole.spec.tables if t.name == loaded.dataset)
        parent = table_spec.parent
    if parent is not None:
        items = tuple(parent.items)
        cond = " AND ".join(f"p.{quote_ident(i)} = t.{quote_ident(i)}" for i in items)
        present = " AND ".join(f"t.{quote_ident(i)} IS NOT NULL" for i in items)
        shown = ", ".join(f"COALESCE(CAST(t.{quote_ident(i)} AS text), '(blank)')" for i in items)
        text = (f"SELECT t._row_number, CONCAT_WS(' / ', {shown}) AS value FROM {loaded.dataset} AS t "
                f"WHERE {present} AND NOT EXISTS (SELECT 1 FROM {parent.table} AS p WHERE {cond})")
        tree = rulesql.parse_query(text, catalog, loaded.dataset)
        query = rulesql.compile_query(tree, catalog, source, _param_sql())
        what = " and ".join(_braces(loaded.item(i).wording.lower()) for i in items)
        record = parent.table.replace("_", " ")
        out.append(
            Check(
                f"LINK-{loaded.dataset}", "error", items, "link",
                f"This row's {what} ({{value}}) is not in the {record} sheet. Every row here must belong to a row "
                f"there: add the missing row to {record}, or correct the {what}.",
                None, "failed_rows", {"query": query}, None, query,
            )
        )
    for rule in whole.query_rules:
        table = rule.table or whole.dataset
        if table != loaded.dataset:
            continue
        tree = rulesql.parse_query(rule.query or "", catalog, table)
        query = rulesql.compile_query(tree, catalog, source, _param_sql())
        out.append(
            Check(
                rule.code, rule.severity.value, tuple(rule.items), "query",
                _braces(rule.message), None, "failed_rows", {"query": query}, None, query,
            )
        )
    return out


def fill_variables(text: str, variables: dict[str, str]) -> str:
    """``${var.NAME}`` replaced by its value, as Soda does (values checked by ``sql_variables``)."""
    return _VAR.sub(lambda m: variables[m.group(1)], text)


_COUNCIL_RE = re.compile(r"^S12\d{6}$")
_PERIOD_RE = re.compile(r"^\d{4}(-\d{2})?(-Q[1-4])?$")


def sql_variables(loaded: LoadedSpec, council: str, period: str, version_id: int, previous_id: int | None) -> dict[str, str]:
    """The values of the checks' SQL variables for one submission version, each checked so that it
    cannot change the SQL's meaning: council, period, version, the previous accepted version
    (0 when there is none: ``previous.<table>`` is then empty) and the period's dates."""
    if not _COUNCIL_RE.match(council or ""):
        raise ValueError(f"{council!r} is not a council GSS code")
    if not _PERIOD_RE.match(period or ""):
        raise ValueError(f"{period!r} is not a period label")
    for name, v in (("version id", version_id), ("previous version id", previous_id or 0)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"{name} must be an integer, not {v!r}")
    out = {"COUNCIL": council, "PERIOD": period, "VERSION": str(int(version_id)), "PREVIOUS": str(int(previous_id or 0))}
    out.update(period_dates(loaded, period))
    return out


def period_dates(loaded: LoadedSpec, period: str) -> dict[str, str]:
    """PERIOD_START, PERIOD_END, OPENS_ON, DUE_DATE, CLOSES_ON of a period, as ISO dates."""
    from lgdp.periods import period_from_label

    p = period_from_label(loaded.whole.spec.collection, period)
    return {
        "PERIOD_START": p.starts_on.isoformat(),
        "PERIOD_END": p.ends_on.isoformat(),
        "OPENS_ON": p.opens_at.date().isoformat(),
        "DUE_DATE": p.due_at.date().isoformat(),
        "CLOSES_ON": p.closes_at.date().isoformat(),
    }


def uses_previous(loaded: LoadedSpec) -> bool:
    return any("${var.PREVIOUS}" in (c.query or "") for c in checks(loaded))  # noqa: RUF027


def checks(loaded: LoadedSpec) -> list[Check]:
    """Every check of the spec, in a stable order: row count, items in spec order, keys, rules.

    For a return of several tables, the checks of one table (``loaded.table(name)``): a table's
    checks run on its own staging table."""
    if loaded.multi:
        raise ValueError(f"{loaded.id} has several tables: take the checks of each (loaded.tables)")
    out = [
        Check(
            ROW_COUNT_CODE, "error", (), "row_count",
            "The file has no data rows. Fill in the table (one row per record) and send it again.",
            None, "row_count", {"threshold": {"must_be_greater_than": 0}}, None,
        )
    ]
    for item in loaded.items:
        out.extend(_item_checks(item))
    keys = tuple(loaded.spec.keys)
    if keys:
        words = " and ".join(_braces(loaded.item(k).wording.lower()) for k in keys)
        out.append(
            Check(
                DUPLICATE_CODE, "error", keys, "duplicate",
                f"This row repeats row {{first}}: both have the same {words} ({{value}}). "
                "Each row must be unique; remove the repeated row or correct it.",
                None, "duplicate", {"columns": list(keys)}, None,
            )
        )
    columns = frozenset(it.name for it in loaded.items)
    for rule in loaded.spec.rules:
        if rule.is_query:
            continue
        failing = rule_failing_sql(_condition_sql(rule.expression or "", columns))
        out.append(
            Check(
                rule.code, rule.severity.value, tuple(rule.items), "rule",
                _braces(rule.message), failing, "failed_rows", {"expression": failing}, None,
            )
        )
    out.extend(_query_checks(loaded))
    codes = [c.code for c in out]
    dupes = sorted({c for c in codes if codes.count(c) > 1})
    if dupes:
        raise ValueError(f"{loaded.id}: check codes used twice: {', '.join(dupes)}")
    return out


def check_by_code(loaded: LoadedSpec) -> dict[str, Check]:
    return {c.code: c for c in checks(loaded)}


__all__ = [
    "DUPLICATE_CODE",
    "ROW_COUNT_CODE",
    "SODA_NULL",
    "Check",
    "check_by_code",
    "checks",
    "fill_variables",
    "full_match",
    "key_partition_sql",
    "leading_zero_note",
    "quote_ident",
    "quote_literal",
    "rule_failing_sql",
    "sql_variables",
]
