"""Typing: text cells -> typed columns, vectorised with pyarrow.compute.

Only "can this be read as the item's type?" is decided here. Whether a code is in its list, a
number in its range, a string matches its pattern, or a required value is present is the job of
validation, which runs on the loaded rows. Every non-blank cell that cannot be read becomes one
TYPE-001 issue (row, item, the value as written, and the form expected); the cell is loaded as
empty.

| Type | Accepted (after trimming spaces; blank = empty) | Arrow type |
| --- | --- | --- |
| string, code | any text | string |
| integer | ``12``, ``-3``, ``1,200``, ``12.0`` | int64 |
| decimal | ``1250.5``, ``-0.25``, ``1,250.5``, ``1.5e3``; rounded half-even to 6 places | decimal128(18, 6) |
| date | ``YYYY-MM-DD``, ``DD/MM/YYYY`` and ``D/M/YYYY`` (also with ``-`` or ``.``), either with a time of exactly midnight; in workbooks, Excel dates and date serial numbers (1900 system) | date32 |
| boolean | true/false, yes/no, y/n, t/f, 1/0 (any case) | bool |
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

import pyarrow as pa
import pyarrow.compute as pc

from lgdp.issues import Issue
from lgdp.parse.codes import issue
from lgdp.specs.model import ItemType, ResolvedItem

DECIMAL_TYPE = pa.decimal128(18, 6)
ARROW_TYPES: dict[ItemType, pa.DataType] = {
    ItemType.string: pa.string(),
    ItemType.code: pa.string(),
    ItemType.integer: pa.int64(),
    ItemType.decimal: DECIMAL_TYPE,
    ItemType.date: pa.date32(),
    ItemType.boolean: pa.bool_(),
}

WHAT = {
    ItemType.integer: "a whole number",
    ItemType.decimal: "a number",
    ItemType.date: "a date",
    ItemType.boolean: "true or false",
}

EXPECTED = {
    ItemType.integer: "Write a whole number such as 12, with no decimal places, units or words.",
    ItemType.decimal: "Write a number such as 1250.5, with no units, currency signs or words.",
    ItemType.date: "Write the date as DD/MM/YYYY (for example 31/03/2025) or YYYY-MM-DD (2025-03-31).",
    ItemType.boolean: "Write true or false (yes/no and Y/N are also accepted).",
}

TRUE = ["true", "yes", "y", "t", "1"]
FALSE = ["false", "no", "n", "f", "0"]
_THOUSANDS = r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$"
_ISO = r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?:[T ]00:00(?::00(?:\.0+)?)?(?:Z|[+-]00:?00)?)?$"
_DMY = r"^(?P<d>\d{1,2})[/.-](?P<m>\d{1,2})[/.-](?P<y>\d{4})(?: 00:00(?::00)?)?$"
_SERIAL = r"^\d{1,7}(\.0+)?$"
EXCEL_EPOCH_OFFSET = 25569  # days from 1899-12-30 (Excel's day 0, after its 1900 leap-year bug) to 1970-01-01
MAX_SERIAL = 2958465  # 9999-12-31


def blank_to_null(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Cells trimmed of surrounding spaces, with blank cells made null."""
    if isinstance(arr, pa.ChunkedArray):
        return pa.chunked_array([_blank_to_null(c) for c in arr.chunks], pa.string())
    return _blank_to_null(arr)


_UNIT_SEPARATORS = (b"\x1c", b"\x1d", b"\x1e", b"\x1f")  # Unicode whitespace to utf8_trim, not to ascii_trim


_ASCII_SPACES = (b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c")  # what ascii_trim_whitespace removes


def _trim(arr: pa.Array) -> pa.Array:
    """``utf8_trim_whitespace``; the ASCII kernel (several times faster) when it gives the same
    result, and nothing at all when the column's text holds no whitespace character (codes, ids,
    dates, numbers: most columns of a return), which a byte search shows at memory speed."""
    data = arr.buffers()[2] if arr.type == pa.string() else None
    if data is not None:
        raw = data.to_pybytes()
        if raw.isascii() and not any(sep in raw for sep in _UNIT_SEPARATORS):
            if not any(space in raw for space in _ASCII_SPACES):
                return arr
            return pc.ascii_trim_whitespace(arr)
    return pc.utf8_trim_whitespace(arr)


def _blank_to_null(arr: pa.Array) -> pa.Array:
    s = _trim(arr)
    keep = pc.fill_null(pc.greater(pc.binary_length(s), 0), False)
    if s.type == pa.string() and s.offset == 0 and keep.offset == 0:
        # The trimmed strings with ``keep`` as their validity bitmap: no copy of the text.
        return pa.Array.from_buffers(pa.string(), len(s), [keep.buffers()[1], *s.buffers()[1:]])
    return pc.if_else(keep, s, pa.scalar(None, pa.string()))


def _no_thousands(s: pa.Array) -> pa.Array:
    has = pc.fill_null(pc.match_substring_regex(s, _THOUSANDS), False)
    if not pc.any(has).as_py():
        return s
    return pc.if_else(has, pc.replace_substring(s, ",", ""), s)


def _valid_or_null(s: pa.Array, ok: pa.Array) -> pa.Array:
    return pc.if_else(pc.fill_null(ok, False), s, pa.scalar(None, s.type))


def to_integer(s: pa.Array) -> pa.Array:
    # Fast path: every value is plain ASCII digits (at most 18), so the cast reads them all
    # exactly as the rules below would (it alone would also take 0x1F, hence the digit check).
    if pc.all(pc.ascii_is_decimal(s)).as_py() is not False and (pc.max(pc.binary_length(s)).as_py() or 0) <= 18:
        return pc.cast(s, pa.int64())
    s = _no_thousands(s)
    s = pc.replace_substring_regex(s, r"^([+-]?\d+)\.0*$", r"\1")
    s = pc.replace_substring_regex(s, r"^\+", "")  # Arrow's cast refuses a leading '+'
    ok = pc.match_substring_regex(s, r"^[+-]?\d{1,18}$")
    return pc.cast(_valid_or_null(s, ok), pa.int64())


def to_decimal(s: pa.Array) -> pa.Array:
    s = _no_thousands(s)
    ok = pc.fill_null(pc.match_substring_regex(s, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$"), False)
    s = _valid_or_null(s, ok)
    f = pc.cast(s, pa.float64())
    in_range = pc.fill_null(pc.less(pc.abs(f), 1e12), False)
    s = _valid_or_null(s, in_range)
    try:
        wide = pc.cast(s, pa.decimal128(38, 20))
        return pc.cast(pc.round(wide, 6), DECIMAL_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        q = Decimal("0.000001")
        out = []
        for v in s.to_pylist():
            try:
                out.append(None if v is None else Decimal(v).quantize(q))
            except (InvalidOperation, ValueError):
                out.append(None)
        return pa.array(out, DECIMAL_TYPE)


def to_boolean(s: pa.Array) -> pa.Array:
    low = pc.utf8_lower(s)
    t = pc.is_in(low, value_set=pa.array(TRUE))
    f = pc.is_in(low, value_set=pa.array(FALSE))
    return pc.if_else(t, True, pc.if_else(f, pa.scalar(False), pa.scalar(None, pa.bool_())))


def _slice(s: pa.Array, a: int, b: int) -> pa.Array:
    return pc.utf8_slice_codeunits(s, a, b)


def _valid_ymd(norm: pa.Array) -> pa.Array:
    """True where ``norm`` (YYYY-MM-DD) is a real calendar date (no 31/02, no month 13, no year 0)."""
    y = pc.cast(_slice(norm, 0, 4), pa.int32())
    m = pc.cast(_slice(norm, 5, 7), pa.int32())
    d = pc.cast(_slice(norm, 8, 10), pa.int32())
    def mod(a: pa.Array, k: int) -> pa.Array:
        return pc.subtract(a, pc.multiply(pc.divide(a, k), k))  # integer division truncates

    leap = pc.and_(pc.equal(mod(y, 4), 0), pc.or_(pc.not_equal(mod(y, 100), 0), pc.equal(mod(y, 400), 0)))
    feb = pc.if_else(leap, 29, 28)
    short = pc.is_in(m, value_set=pa.array([4, 6, 9, 11], pa.int32()))
    dim = pc.if_else(pc.equal(m, 2), feb, pc.if_else(short, 30, 31))
    ok = pc.and_(pc.and_(pc.greater_equal(y, 1), pc.and_(pc.greater_equal(m, 1), pc.less_equal(m, 12))),
                 pc.and_(pc.greater_equal(d, 1), pc.less_equal(d, dim)))
    return pc.fill_null(ok, False)


def _any(mask: pa.Array) -> bool:
    return bool(pc.any(mask).as_py())


_YEAR_1 = (dt.date(1, 1, 1) - dt.date(1970, 1, 1)).days


def to_date(s: pa.Array, serial_dates: bool) -> pa.Array:
    # Fast path: Arrow's cast reads exactly YYYY-MM-DD and refuses impossible dates (31/02,
    # month 13), failing the whole column if one value is anything else; year 0 it accepts, the
    # rules below do not. Otherwise every value goes through the rules.
    try:
        out = pc.cast(s, pa.date32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out = None
    if out is not None:
        first = pc.min(pc.cast(out, pa.int32())).as_py()
        if first is None or first >= _YEAR_1:
            return out
    null_str = pa.scalar(None, pa.string())
    iso = pc.fill_null(pc.match_substring_regex(s, r"^\d{4}-\d{2}-\d{2}$"), False)
    norm = pc.if_else(iso, s, null_str)
    rest = pc.and_(pc.is_valid(s), pc.invert(iso))
    if _any(rest):  # DD/MM/YYYY is the next most common: slice it, no regex groups
        dmy = pc.and_(rest, pc.fill_null(pc.match_substring_regex(s, r"^\d{2}/\d{2}/\d{4}$"), False))
        if _any(dmy):
            joined = pc.binary_join_element_wise(_slice(s, 6, 10), _slice(s, 3, 5), _slice(s, 0, 2), "-")
            norm = pc.coalesce(norm, pc.if_else(dmy, joined, null_str))
            rest = pc.and_(rest, pc.invert(dmy))
    if _any(rest):  # everything else: single digits, - or . separators, midnight times
        iso_x = pc.extract_regex(s, _ISO)
        dmy_x = pc.extract_regex(s, _DMY)
        y = pc.coalesce(pc.struct_field(iso_x, "y"), pc.struct_field(dmy_x, "y"))
        m = pc.coalesce(pc.struct_field(iso_x, "m"), pc.struct_field(dmy_x, "m"))
        d = pc.coalesce(pc.struct_field(iso_x, "d"), pc.struct_field(dmy_x, "d"))
        general = pc.binary_join_element_wise(y, pc.utf8_lpad(m, 2, "0"), pc.utf8_lpad(d, 2, "0"), "-")
        norm = pc.coalesce(norm, pc.if_else(rest, general, null_str))
    ok = _valid_ymd(norm)
    out = pc.cast(pc.if_else(ok, norm, null_str), pa.date32())
    if serial_dates:
        is_serial = pc.and_(pc.is_null(out), pc.fill_null(pc.match_substring_regex(s, _SERIAL), False))
        if _any(is_serial):
            n = pc.cast(pc.replace_substring_regex(_valid_or_null(s, is_serial), r"\.0+$", ""), pa.int64())
            ok = pc.fill_null(pc.and_(pc.and_(pc.greater_equal(n, 1), pc.less_equal(n, MAX_SERIAL)), pc.not_equal(n, 60)), False)
            days = pc.subtract(n, pc.if_else(pc.less(n, 60), EXCEL_EPOCH_OFFSET - 1, EXCEL_EPOCH_OFFSET))
            serial = pc.cast(pc.cast(_valid_or_null(days, ok), pa.int32()), pa.date32())
            out = pc.coalesce(out, serial)
    return out


def coerce_column(
    item: ResolvedItem,
    raw: pa.Array,
    rows: pa.Array,
    serial_dates: bool,
    budget: list[int],
    cleaned: pa.Array | None = None,
) -> tuple[pa.Array, list[Issue]]:
    """The typed column for ``item`` and a TYPE-001 issue per cell that is not of its type.

    ``budget`` is a one-element list: how many more TYPE-001 issues may be listed one by one.
    """
    s = blank_to_null(raw) if cleaned is None else cleaned
    t = item.type
    if t in (ItemType.string, ItemType.code):
        return s, []
    if t == ItemType.integer:
        typed = to_integer(s)
    elif t == ItemType.decimal:
        typed = to_decimal(s)
    elif t == ItemType.boolean:
        typed = to_boolean(s)
    else:
        typed = to_date(s, serial_dates)
    bad = pc.and_(pc.is_valid(s), pc.is_null(typed))
    idx = pc.indices_nonzero(bad)
    issues: list[Issue] = []
    n_bad = len(idx)
    if n_bad:
        take = min(n_bad, max(budget[0], 0))
        rows_bad = pc.take(rows, idx[:take]).to_pylist()
        values = pc.take(raw, idx[:take]).to_pylist()
        for r, v in zip(rows_bad, values):
            issues.append(type_issue(item, v, r, serial_dates))
        budget[0] -= take
        if n_bad > take:
            first = pc.take(rows, idx[take:take + 1]).to_pylist()[0]
            issues.append(issue("TYPE-001", row=first, item=item.name,
                                shown=f"{n_bad - take:,} more values (from row {first})", wording=item.wording,
                                what=WHAT[t], expected=EXPECTED[t]))
    return typed, issues


def type_issue(item: ResolvedItem, value: str, row: int, serial_dates: bool) -> Issue:
    v = (value or "").strip()
    shown = f"'{v[:60]}{'…' if len(v) > 60 else ''}'"
    expected = EXPECTED[item.type]
    if item.type == ItemType.date and not serial_dates and v.isdigit() and 4 <= len(v) <= 6:
        expected = "It looks like a date saved as an Excel number. " + expected
    elif item.type == ItemType.date and (" " in v or "T" in v) and ":" in v:
        expected = "Give the date only, without a time. " + expected
    elif item.type == ItemType.decimal and item.unit:
        expected = expected.rstrip(".") + f" (in {item.unit})."
    return issue("TYPE-001", row=row, item=item.name, value=value, shown=shown, wording=item.wording,
                 what=WHAT[item.type], expected=expected)
