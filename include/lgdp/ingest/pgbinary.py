"""PostgreSQL's binary COPY format, encoded from Arrow columns without a Python loop per row.

Every field of a tuple is ``int32 length`` (-1 for NULL) followed by the value in network byte
order: bigint 8 bytes, integer 4, boolean 1, date 4 (days since 2000-01-01), text its UTF-8
bytes, numeric ``ndigits, weight, sign, dscale`` (int16 each) then base-10000 digits (int16).
Each column is turned into a binary Arrow array of whole fields (numpy builds the bytes), and
``binary_join_element_wise`` lays them side by side: the result's data buffer *is* the tuples.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
_NULL = np.frombuffer(b"\xff\xff\xff\xff", dtype=np.uint8)
_PG_EPOCH_DAYS = (dt.date(2000, 1, 1) - dt.date(1970, 1, 1)).days
NUMERIC_POS, NUMERIC_NEG = 0x0000, 0x4000
_GROUPS = 5  # base-10000 digits enough for any uint64
_EMPTY = pa.scalar(b"", pa.large_binary())


def _valid(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _fixed(values_be: np.ndarray, valid: np.ndarray) -> pa.Array:
    """Fields of a fixed-width type: ``values_be`` is (n, k) uint8, already big-endian."""
    n, k = values_be.shape
    mat = np.empty((n, 4 + k), dtype=np.uint8)
    mat[:, :4] = np.frombuffer(np.array([k], dtype=">i4").tobytes(), dtype=np.uint8)
    mat[:, 4:] = values_be
    if valid.all():
        offsets = np.arange(0, (n + 1) * (4 + k), 4 + k, dtype=np.int64)
        data = mat.reshape(-1)
    else:
        mat[~valid, :4] = _NULL
        keep = np.zeros((n, 4 + k), dtype=bool)
        keep[:, :4] = True
        keep[valid, 4:] = True
        data = mat[keep]
        sizes = np.where(valid, 4 + k, 4)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
    return pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _be(values: np.ndarray, dtype: str) -> np.ndarray:
    a = np.ascontiguousarray(values.astype(dtype, copy=False))
    return a.view(np.uint8).reshape(len(a), -1)


def _ints(arr: pa.Array, dtype: str) -> pa.Array:
    valid = _valid(arr)
    vals = arr.fill_null(0).to_numpy(zero_copy_only=False)
    return _fixed(_be(vals, dtype), valid)


def _dates(arr: pa.Array) -> pa.Array:
    valid = _valid(arr)
    days = arr.cast(pa.int32()).fill_null(0).to_numpy(zero_copy_only=False) - _PG_EPOCH_DAYS
    return _fixed(_be(days, ">i4"), valid)


def _bools(arr: pa.Array) -> pa.Array:
    valid = _valid(arr)
    vals = arr.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8)
    return _fixed(vals.reshape(-1, 1), valid)


def _text_parts(arr: pa.Array) -> list[pa.Array]:
    """A text column's fields as two arrays, its length words and its bytes (joined with the rest)."""
    arr = arr.cast(pa.large_binary())
    n = len(arr)
    lengths = pc.binary_length(arr).fill_null(-1).to_numpy(zero_copy_only=False).astype(">i4")
    prefix = pa.Array.from_buffers(pa.binary(4), n, [None, pa.py_buffer(lengths.tobytes())])
    return [prefix.cast(pa.large_binary()), arr.fill_null(b"") if arr.null_count else arr]


def _texts(arr: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(*_text_parts(arr), _EMPTY)


def _numeric_field(value: Decimal) -> bytes:
    """One numeric field from a Decimal (the slow path, for values beyond int64)."""
    sign, digits, exp = value.as_tuple()
    if not isinstance(exp, int):
        raise ValueError(f"{value} cannot be stored as numeric")
    intval = int("".join(map(str, digits)) or "0")
    if exp >= 0:
        intval *= 10**exp
        dscale = frac_groups = 0
    else:
        dscale = -exp
        pad = (-dscale) % 4  # align the fraction to whole base-10000 digits
        intval *= 10**pad
        frac_groups = (dscale + pad) // 4
    groups: list[int] = []
    while intval:
        intval, g = divmod(intval, 10000)
        groups.append(g)
    groups.reverse()
    weight = len(groups) - 1 - frac_groups
    body = np.array([len(groups), weight, NUMERIC_NEG if sign else NUMERIC_POS, dscale, *groups], dtype=">i2")
    return len(body.tobytes()).to_bytes(4, "big") + body.tobytes()


def _numerics(arr: pa.Array) -> pa.Array:
    t = arr.type
    if pa.types.is_decimal(t) and t.scale >= 0 and t.precision + (-t.scale) % 4 <= 19:  # fits uint64
        n = len(arr)
        valid = _valid(arr)
        raw = np.frombuffer(arr.buffers()[1], dtype="<i8", count=2 * (n + arr.offset))[2 * arr.offset :: 2]
        unscaled = np.asarray(raw, dtype=np.int64)
        neg = unscaled < 0
        mag = np.abs(unscaled).astype(np.uint64)
        scale = t.scale
        pad = (-scale) % 4
        mag = mag * np.uint64(10**pad)
        groups = np.empty((n, _GROUPS), dtype=np.int64)
        rest = mag
        for j in range(_GROUPS - 1, -1, -1):
            groups[:, j] = (rest % np.uint64(10000)).astype(np.int64)
            rest = rest // np.uint64(10000)
        head = np.empty((n, 4), dtype=np.int64)
        head[:, 0] = _GROUPS
        head[:, 1] = _GROUPS - 1 - (scale + pad) // 4
        head[:, 2] = np.where(neg, NUMERIC_NEG, NUMERIC_POS)
        head[:, 3] = scale
        body = np.concatenate([head, groups], axis=1).astype(">i2")
        return _fixed(body.view(np.uint8).reshape(n, -1), valid)
    values = arr.to_pylist()
    fields = [None if v is None else _numeric_field(v if isinstance(v, Decimal) else Decimal(repr(v))) for v in values]
    return pa.array([f if f is not None else _NULL.tobytes() for f in fields], type=pa.large_binary())


_ENCODERS = {
    "bigint": lambda a: _ints(a, ">i8"),
    "integer": lambda a: _ints(a, ">i4"),
    "boolean": _bools,
    "date": _dates,
    "text": _texts,
    "numeric": _numerics,
}


def constant_fields(values: list[tuple[object, str]]) -> bytes:
    """The fields of values that are the same on every row (version, council, period)."""
    out = b""
    for value, pgtype in values:
        out += _ENCODERS[pgtype](pa.array([value], type=_ARROW[pgtype])).buffers()[2].to_pybytes()
    return out


_ARROW = {"bigint": pa.int64(), "integer": pa.int32(), "text": pa.string(), "date": pa.date32(), "boolean": pa.bool_()}


def encode_tuples(prefix: bytes, n_fields: int, columns: list[tuple[pa.Array, str]]) -> pa.Buffer:
    """The binary COPY tuples of ``n`` rows: field count, the constant ``prefix`` fields, then columns."""
    n = len(columns[0][0]) if columns else 0
    head = np.frombuffer(np.array([n_fields], dtype=">i2").tobytes() + prefix, dtype=np.uint8)
    lead = pa.Array.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(np.arange(0, (n + 1) * len(head), len(head), dtype=np.int64)), pa.py_buffer(np.tile(head, n))]
    )
    fields = [lead]
    for arr, pgtype in columns:  # text columns join their two parts in the one join below
        fields += _text_parts(arr) if pgtype == "text" else [_ENCODERS[pgtype](arr)]
    joined = pc.binary_join_element_wise(*fields, _EMPTY)
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64, count=n + 1 + joined.offset)[joined.offset :]
    return joined.buffers()[2][int(offsets[0]) : int(offsets[-1])]
