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

from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import ItemType, ResolvedItem

Kind = Literal["missing", "code", "range", "length", "format", "duplicate", "row_count", "rule"]

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


def checks(loaded: LoadedSpec) -> list[Check]:
    """Every check of the spec, in a stable order: row count, items in spec order, keys, rules."""
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
    for rule in loaded.spec.rules:
        out.append(
            Check(
                rule.code, rule.severity.value, tuple(rule.items), "rule",
                _braces(rule.message), rule_failing_sql(rule.expression), "failed_rows",
                {"expression": rule_failing_sql(rule.expression)}, None,
            )
        )
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
    "full_match",
    "key_partition_sql",
    "leading_zero_note",
    "quote_ident",
    "quote_literal",
    "rule_failing_sql",
]
