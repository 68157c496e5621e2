"""Deterministic synthetic data for return specs: clean rows, deliberate faults, sample files.

Pure computation (no Airflow, no database); the writers are the only I/O. Typical use::

    from lgdp.specs.load import load_register
    from lgdp import synth

    spec = load_register().get("clas")
    result = synth.rows(spec, "S12000036", "2025-26", 500, seed=1, faults={"CLAS-E001": 2, "bad_code": 1})
    result.rows        # list of dicts keyed by item name (str, int, Decimal, date, bool, None)
    result.faults      # [Fault(kind='CLAS-E001', row_number=17, item='episode_end_date'), ...]

Row numbers are file row numbers: the header is row 1, so the first data row is row 2 (see
``lgdp.synth.core`` for the conventions, and ``SpecGenerator.fault_names`` for the faults a spec
offers: the generic ``missing_required``, ``bad_code``, ``out_of_range``, ``bad_date``,
``bad_pattern`` and ``duplicate_key``, plus one per rule code where the spec has its own module).
"""

from __future__ import annotations

from typing import Mapping

from lgdp.specs.load import LoadedSpec
from lgdp.synth.core import (
    FIRST_DATA_ROW,
    GENERIC_FAULTS,
    Fault,
    Row,
    SpecGenerator,
    SynthError,
    SynthResult,
    SynthStream,
    item_violations,
    row_violations,
)
from lgdp.synth.registry import GENERATORS, generator_for
from lgdp.synth.writers import to_csv, to_xlsx, to_xml, write_rows, write_sample


def iter_rows(
    spec: LoadedSpec,
    council_code: str,
    period_label: str,
    n_rows: int | None = None,
    seed: int = 0,
    faults: Mapping[str, int] | None = None,
) -> SynthStream:
    """Stream rows without holding them all; ``.faults`` on the result lists the faults up front."""
    return generator_for(spec).stream(council_code, period_label, n_rows, seed, faults)


def rows(
    spec: LoadedSpec,
    council_code: str,
    period_label: str,
    n_rows: int | None = None,
    seed: int = 0,
    faults: Mapping[str, int] | None = None,
) -> SynthResult:
    """All rows in a list, with the faults put in them (``faults`` maps fault name -> count)."""
    stream = iter_rows(spec, council_code, period_label, n_rows, seed, faults)
    return SynthResult(spec.id, council_code, period_label, list(stream), stream.faults)


def tables(
    spec: LoadedSpec,
    council_code: str,
    period_label: str,
    n_rows: int | None = None,
    seed: int = 0,
    faults: Mapping[str, int] | None = None,
):
    """A return of several tables: each table's rows (``.tables``) and the faults (``.faults``, with their table)."""
    return generator_for(spec).generate(council_code, period_label, n_rows, seed, faults)


def fault_names(spec: LoadedSpec) -> list[str]:
    """Every fault name the generator for ``spec`` can make."""
    return generator_for(spec).fault_names()


__all__ = [
    "FIRST_DATA_ROW",
    "GENERATORS",
    "GENERIC_FAULTS",
    "Fault",
    "Row",
    "SpecGenerator",
    "SynthError",
    "SynthResult",
    "SynthStream",
    "fault_names",
    "tables",
    "generator_for",
    "item_violations",
    "iter_rows",
    "row_violations",
    "rows",
    "to_csv",
    "to_xlsx",
    "to_xml",
    "write_rows",
    "write_sample",
]
