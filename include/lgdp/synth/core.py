"""The generic synthetic data generator: valid values for any spec item, faults on request.

Everything here is pure computation driven by a ``LoadedSpec``: no Airflow, no files, no global
random state. Per-return generators (``lgdp.synth.returns``) subclass ``SpecGenerator`` to make
rows coherent across items, so that a clean dataset passes every rule of their spec.

Row numbers
-----------
A ``Fault`` names the row it affects by its **row number in the council's file**: the header is
row 1, so the first data row is row 2 (``FIRST_DATA_ROW``) and the row at list index ``i`` is row
``i + 2``. This is what a council officer sees in Excel and what validation reports quote. For
XML, where there is no header, the same number is used: the ``k``-th ``record`` (1-based) is row
``k + 1``.

Determinism
-----------
The same spec, council, period, row count, seed and faults give the same rows, in any process:
seeds are derived with BLAKE2 (never ``hash()``, which varies with ``PYTHONHASHSEED``) and every
random choice uses a private ``random.Random``. Clean rows are drawn from one stream and each
faulty row's damage from its own stream, so asking for faults changes only the faulty rows (and
the rows ``duplicate_key`` copies onto).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass, field
from decimal import Decimal
from math import ceil, floor
from typing import Any, Callable, ClassVar, Iterator, Mapping

from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import Collection, ItemType, ResolvedItem
from lgdp.synth import patterns

Row = dict[str, Any]

FIRST_DATA_ROW = 2
"""Row number of the first data row: the header is row 1."""

GENERIC_FAULTS: tuple[str, ...] = (
    "missing_required",
    "bad_code",
    "out_of_range",
    "bad_date",
    "bad_pattern",
    "duplicate_key",
)
"""Fault kinds every generator can make (when the spec has an item they apply to)."""

DEFAULT_ROWS = 100


class SynthError(ValueError):
    """A request the generator cannot honour (unknown fault, too few rows, bad period...)."""


@dataclass(frozen=True)
class Fault:
    """One deliberate problem in a synthetic dataset.

    ``kind`` is a generic fault name (``GENERIC_FAULTS``) or a rule code such as ``CLAS-E001``.
    ``row_number`` is the row in the council's file (header = row 1, first data row = row 2).
    ``item`` is the item whose value was damaged (for a rule fault, the main item changed; None
    for ``duplicate_key``, which copies a whole row). ``copy_of`` is, for ``duplicate_key``, the
    row number of the clean row whose key (and values) the faulty row repeats.
    """

    kind: str
    row_number: int
    item: str | None = None
    copy_of: int | None = None
    table: str | None = None  # the table (sheet) of a return with several tables

    @property
    def index(self) -> int:
        """0-based position of the row in the list of data rows."""
        return self.row_number - FIRST_DATA_ROW


@dataclass
class SynthResult:
    """Rows (dicts keyed by item name, typed values) and the faults deliberately put in them."""

    spec_id: str
    council_code: str
    period_label: str
    rows: list[Row]
    faults: list[Fault]

    def faults_of(self, kind: str) -> list[Fault]:
        return [f for f in self.faults if f.kind == kind]

    def row(self, row_number: int) -> Row:
        """The row with this file row number (first data row = 2)."""
        return self.rows[row_number - FIRST_DATA_ROW]


@dataclass
class Run:
    """What one generation run knows: council, period and per-generator scratch state."""

    council_code: str
    period_label: str
    period_start: dt.date
    period_end: dt.date
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def start_ord(self) -> int:
        return self.period_start.toordinal()

    @property
    def end_ord(self) -> int:
        return self.period_end.toordinal()


def derive_seed(seed: int, *parts: object) -> int:
    """A 64-bit seed from ``seed`` and labels, stable across processes and Python versions."""
    text = "\x1f".join([str(seed), *(str(p) for p in parts)])
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def add_years(d: dt.date, years: int) -> dt.date:
    """``d + interval 'N years'`` as PostgreSQL computes it (29 February becomes 28 February)."""
    try:
        return d.replace(year=d.year + years)
    except ValueError:
        return d.replace(year=d.year + years, day=28)


# ---------------------------------------------------------------------------------------------
# Periods

def period_dates(collection: Collection, label: str) -> tuple[dt.date, dt.date]:
    """First and last day of the period a label names ('2025-26', '2025-26-Q2', '2025-07')."""
    from lgdp.periods import period_from_label

    try:
        p = period_from_label(collection, label)
    except ValueError as exc:
        raise SynthError(str(exc)) from None
    return p.starts_on, p.ends_on


# ---------------------------------------------------------------------------------------------
# Item-level values and checks

_ALNUM = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"


def _int_bounds(item: ResolvedItem) -> tuple[int, int]:
    lo = ceil(item.minimum) if item.minimum is not None else None
    hi = floor(item.maximum) if item.maximum is not None else None
    if lo is None:
        lo = min(0, hi) if hi is not None else 0
    if hi is None:
        hi = lo + 1000
    return lo, hi


def _date_bounds(item: ResolvedItem, run: Run) -> tuple[int, int]:
    lo = item.min_date.toordinal() if item.min_date else run.start_ord
    hi = item.max_date.toordinal() if item.max_date else run.end_ord
    if item.min_date and not item.max_date and lo > hi:
        hi = lo + 365
    if item.max_date and not item.min_date and lo > hi:
        lo = hi - 365
    return lo, max(lo, hi)


def value_sampler(item: ResolvedItem, run: Run) -> Callable[[random.Random], Any]:
    """A function drawing a valid, non-blank value of ``item`` (ignoring cross-item rules)."""
    t = item.type
    if item.name == "council_code" or item.ref == "council_code":
        council = run.council_code
        return lambda rng: council
    if t == ItemType.code:
        codes = tuple(c.code for c in item.codes or ())
        if not codes:
            raise SynthError(f"item {item.name!r} has no codes to choose from")
        return lambda rng: codes[int(rng.random() * len(codes))]
    if t == ItemType.integer:
        lo, hi = _int_bounds(item)
        return lambda rng: rng.randint(lo, hi)
    if t == ItemType.decimal:
        lo, hi = _int_bounds(item)
        return lambda rng: Decimal(rng.randint(lo * 100, hi * 100)).scaleb(-2)
    if t == ItemType.date:
        dlo, dhi = _date_bounds(item, run)
        return lambda rng: dt.date.fromordinal(rng.randint(dlo, dhi))
    if t == ItemType.boolean:
        return lambda rng: rng.random() < 0.5
    if item.pattern:
        pattern, max_length = item.pattern, item.max_length
        return lambda rng: patterns.sample(pattern, rng, max_length)
    longest = min(item.max_length or 12, 12)
    return lambda rng: "".join(rng.choice(_ALNUM) for _ in range(rng.randint(1, longest)))


def item_violations(item: ResolvedItem, value: Any) -> list[str]:
    """Item-level problems of one value, named like the faults that make them.

    ``missing_required``, ``bad_type``, ``bad_code``, ``out_of_range``, ``bad_date``,
    ``bad_length``, ``bad_pattern``; an empty list means the value is valid for the item.
    """
    if value is None or value == "":
        return ["missing_required"] if item.required else []
    t = item.type
    ok_type = {
        ItemType.string: isinstance(value, str),
        ItemType.code: isinstance(value, str),
        ItemType.integer: isinstance(value, int) and not isinstance(value, bool),
        ItemType.decimal: isinstance(value, (int, float, Decimal)) and not isinstance(value, bool),
        ItemType.date: isinstance(value, dt.date) and not isinstance(value, dt.datetime),
        ItemType.boolean: isinstance(value, bool),
    }[t]
    if not ok_type:
        return ["bad_type"]
    out: list[str] = []
    if t == ItemType.code and value not in {c.code for c in item.codes or ()}:
        out.append("bad_code")
    if t in (ItemType.integer, ItemType.decimal):
        if (item.minimum is not None and value < Decimal(str(item.minimum))) or (
            item.maximum is not None and value > Decimal(str(item.maximum))
        ):
            out.append("out_of_range")
    if t == ItemType.date:
        if (item.min_date and value < item.min_date) or (item.max_date and value > item.max_date):
            out.append("bad_date")
    if t == ItemType.string:
        if item.max_length is not None and len(value) > item.max_length:
            out.append("bad_length")
        if item.pattern and not patterns.matches(item.pattern, value):
            out.append("bad_pattern")
    return out


def row_violations(loaded: LoadedSpec, row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every item-level problem of a row, as (item name, problem) pairs in spec order."""
    return [(it.name, p) for it in loaded.items for p in item_violations(it, row.get(it.name))]


# ---------------------------------------------------------------------------------------------
# Generators


def _eligible(kind: str, item: ResolvedItem) -> bool:
    if kind == "missing_required":
        return item.required
    if kind == "bad_code":
        return item.type == ItemType.code
    if kind == "out_of_range":
        return item.type in (ItemType.integer, ItemType.decimal) and (
            item.minimum is not None or item.maximum is not None
        )
    if kind == "bad_date":
        return item.type == ItemType.date and (item.min_date is not None or item.max_date is not None)
    if kind == "bad_pattern":
        return item.type == ItemType.string and item.pattern is not None
    return False


class SpecGenerator:
    """Rows for one return. This base class is the generic generator.

    Generic clean rows satisfy every item-level constraint (type, required, codes, range, dates,
    length, pattern) and, where the spec has keys, unique keys (a row is redrawn when its key was
    already used); they carry **no guarantee about cross-item rules**, and only the generic faults
    are available. Per-return subclasses override ``clean_row`` (and ``break_rule``) so that clean
    rows pass every rule and each rule has a fault named by its code.
    """

    spec_id: ClassVar[str | None] = None
    produces: ClassVar[frozenset[str]] = frozenset()
    """Items a subclass's ``clean_row`` fills; spec items outside this set are drawn generically."""
    rule_faults: ClassVar[Mapping[str, str]] = {}
    """Rule code -> the main item ``break_rule`` changes for it."""

    def __init__(self, loaded: LoadedSpec) -> None:
        self.loaded = loaded
        self.items = loaded.items
        self.item_names = tuple(it.name for it in loaded.items)
        self.keys = tuple(loaded.spec.keys)
        unknown = sorted(self.produces - set(self.item_names))
        if unknown:
            raise SynthError(
                f"the synthetic data generator for {loaded.id} fills items the spec no longer has "
                f"({', '.join(unknown)}): update lgdp/synth/returns/{loaded.id}.py"
            )
        rule_codes = {r.code for r in loaded.spec.rules}
        self._rule_faults = {c: i for c, i in self.rule_faults.items() if c in rule_codes}
        self._generic_items = [it for it in loaded.items if it.name not in self.produces] if self.produces else []

    # --- what a subclass may override -------------------------------------------------------

    def max_rows(self) -> int | None:
        """Most rows one council's return can have, or None for no limit.

        When every key item is a code (an aggregate return: one row per code, or per combination
        of codes), the keys allow only so many distinct rows for one council.
        """
        if not self.keys:
            return None
        limit = 1
        for name in self.keys:
            item = self.loaded.item(name)
            if item.name == "council_code" or item.ref == "council_code":
                continue
            if item.type != ItemType.code:
                return None
            limit *= len(item.codes or ())
        return limit

    def default_rows(self) -> int:
        limit = self.max_rows()
        return DEFAULT_ROWS if limit is None else min(limit, DEFAULT_ROWS)

    def start(self, run: Run, rng: random.Random) -> None:
        """Prepare ``run.state`` before the first row."""
        run.state["samplers"] = [(it.name, it.required, value_sampler(it, run)) for it in self.items]
        run.state["seen_keys"] = set()

    def clean_row(self, index: int, rng: random.Random, run: Run) -> Row:
        """The clean row at 0-based ``index``."""
        seen: set[tuple[Any, ...]] = run.state["seen_keys"]
        for _ in range(100):
            row = {name: (None if not req and rng.random() < 0.1 else draw(rng)) for name, req, draw in run.state["samplers"]}
            key = tuple(row[k] for k in self.keys)
            if not self.keys or key not in seen:
                seen.add(key)
                return row
        raise SynthError(f"could not make {index + 1} rows with unique keys {list(self.keys)} for {self.loaded.id}")

    def break_rule(self, code: str, row: Row, rng: random.Random, run: Run) -> None:
        """Change a clean row so that it breaks rule ``code`` and no other rule."""
        raise SynthError(f"no fault for rule {code}")  # pragma: no cover - guarded by fault_names

    # --- faults -------------------------------------------------------------------------------

    def fault_names(self) -> list[str]:
        """Every fault this generator can make for its spec."""
        names = [k for k in GENERIC_FAULTS if k == "duplicate_key" and self.keys or any(_eligible(k, it) for it in self.items)]
        return names + sorted(self._rule_faults)

    def plan_faults(self, n_rows: int, faults: Mapping[str, int] | None, seed: int, run_id: tuple[object, ...]) -> dict[int, Fault]:
        """Choose the rows (0-based index -> Fault) for the requested faults; row 1 stays clean."""
        if not faults:
            return {}
        available = self.fault_names()
        for name, count in faults.items():
            if name not in available:
                raise SynthError(
                    f"{self.loaded.id} has no fault {name!r}; available: {', '.join(available)}"
                )
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise SynthError(f"fault {name}: the count must be a whole number >= 0, not {count!r}")
        total = sum(faults.values())
        if total > n_rows - 1:
            raise SynthError(
                f"{total} faults need at least {total + 1} rows (each fault has its own row and the "
                f"first row stays clean); {n_rows} asked for"
            )
        frng = random.Random(derive_seed(seed, *run_id, "fault-plan"))
        positions = frng.sample(range(1, n_rows), total)
        taken = set(positions)
        plan: dict[int, Fault] = {}
        it = iter(positions)
        for name in sorted(faults):
            for _ in range(faults[name]):
                pos = next(it)
                if name == "duplicate_key":
                    src = pos - 1
                    while src in taken:
                        src -= 1
                    plan[pos] = Fault(name, pos + FIRST_DATA_ROW, None, src + FIRST_DATA_ROW)
                elif name in self._rule_faults:
                    plan[pos] = Fault(name, pos + FIRST_DATA_ROW, self._rule_faults[name])
                else:
                    items = [i.name for i in self.items if _eligible(name, i)]
                    plan[pos] = Fault(name, pos + FIRST_DATA_ROW, frng.choice(items))
        return plan

    def _damage(self, fault: Fault, row: Row, rng: random.Random, run: Run) -> None:
        kind = fault.kind
        if kind in self._rule_faults:
            self.break_rule(kind, row, rng, run)
            return
        item = self.loaded.item(fault.item or "")
        if kind == "missing_required":
            row[item.name] = None
        elif kind == "bad_code":
            codes = {c.code for c in item.codes or ()}
            row[item.name] = next(c for c in ("ZZ", "ZZZ", "XX9", "?", "UNKNOWN-CODE") if c not in codes)
        elif kind == "out_of_range":
            step = 1 + rng.randint(0, 9)
            if item.maximum is not None:
                bound, sign = item.maximum, 1
            else:
                bound, sign = item.minimum, -1
            if item.type == ItemType.integer:
                value: Any = (floor(bound) + step) if sign > 0 else (ceil(bound) - step)
            else:
                value = Decimal(str(bound)) + sign * Decimal(step).scaleb(-1)
            row[item.name] = value
        elif kind == "bad_date":
            days = dt.timedelta(days=rng.randint(1, 3650))
            row[item.name] = item.min_date - days if item.min_date else item.max_date + days  # type: ignore[operator]
        elif kind == "bad_pattern":
            base = row.get(item.name) or value_sampler(item, run)(rng)
            for candidate in ("#" + base[1:], "#", "!!"):
                if item.max_length is not None:
                    candidate = candidate[: item.max_length]
                if not patterns.matches(item.pattern or "", candidate):
                    row[item.name] = candidate
                    break
            else:  # pragma: no cover - a pattern matching '#' and '!!' is not a pattern
                raise SynthError(f"cannot make a value that breaks the pattern of {item.name}")

    # --- generation -----------------------------------------------------------------------------

    def stream(
        self,
        council_code: str,
        period_label: str,
        n_rows: int | None = None,
        seed: int = 0,
        faults: Mapping[str, int] | None = None,
    ) -> "SynthStream":
        n = self.default_rows() if n_rows is None else n_rows
        if n < 0:
            raise SynthError("the number of rows cannot be negative")
        limit = self.max_rows()
        if limit is not None and n > limit:
            raise SynthError(f"{self.loaded.id} has at most {limit} rows per council and period (one per key); {n} asked for")
        start, end = period_dates(self.loaded.spec.collection, period_label)
        run_id = (self.loaded.id, council_code, period_label, n)
        plan = self.plan_faults(n, faults, seed, run_id)
        return SynthStream(self, Run(council_code, period_label, start, end), n, seed, plan, run_id)


class SynthStream:
    """Iterable of rows; ``faults`` is known before the first row is made.

    Iterating twice gives the same rows again (generation restarts from the seed).
    """

    def __init__(self, gen: SpecGenerator, run: Run, n_rows: int, seed: int, plan: dict[int, Fault], run_id: tuple[object, ...]) -> None:
        self.generator = gen
        self.n_rows = n_rows
        self.seed = seed
        self._plan = plan
        self._run = run
        self._run_id = run_id
        self.faults: list[Fault] = sorted(plan.values(), key=lambda f: f.row_number)

    def __len__(self) -> int:
        return self.n_rows

    def __iter__(self) -> Iterator[Row]:
        gen = self.generator
        proto = self._run
        run = Run(proto.council_code, proto.period_label, proto.period_start, proto.period_end)
        rng = random.Random(derive_seed(self.seed, *self._run_id, "rows"))
        gen.start(run, rng)
        extra = [(it.name, it.required, value_sampler(it, run)) for it in gen._generic_items]
        erng = random.Random(derive_seed(self.seed, *self._run_id, "extra-items"))
        plan = self._plan
        clean_row = gen.clean_row
        last_clean: Row | None = None
        for i in range(self.n_rows):
            row = clean_row(i, rng, run)
            for name, req, draw in extra:
                row[name] = None if not req and erng.random() < 0.1 else draw(erng)
            fault = plan.get(i)
            if fault is None:
                last_clean = row
            elif fault.kind == "duplicate_key":
                row = dict(last_clean or {})
            else:
                frng = random.Random(derive_seed(self.seed, *self._run_id, "fault", i))
                gen._damage(fault, row, frng, run)
            yield row
