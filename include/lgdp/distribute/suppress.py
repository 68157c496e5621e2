"""Small-number suppression for aggregate outputs.

**What an aggregate output is here.** A requester whose distribution block has ``suppression``
receives aggregate output: every delivered row is already a count (the return collects counts,
e.g. households per council and accommodation type), and the spec's ``suppression.items`` are
the count items. The spec loader only allows integer items there. Suppression is not applied
to row-level deliveries (a requester entitled to personal rows is not made safe by hiding small
numbers; such a requester has no ``suppression`` block).

**The rule.** Each delivered value of a suppression item that is below the threshold (the spec:
"counts below this are suppressed", so zero too) is replaced by the marker ``[c]`` (the
"confidential" marker of the UK statistical system's accessibility guidance). Suppressed columns
become text columns in every format, Parquet included, so the marker cannot be mistaken for a
number or a missing value. A blank value stays blank. The manifest records the threshold, the
items, the marker and how many cells were suppressed.

This is primary suppression only: a requester who can rebuild a suppressed cell from totals
would need secondary suppression, which the specs do not ask for (their rows carry no totals).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from lgdp.specs.model import Suppression

MARKER = "[c]"


@dataclass(frozen=True)
class Suppressed:
    table: pa.Table
    cells: int  # how many values were replaced by the marker

    def summary(self, rule: Suppression) -> dict[str, object]:
        return {"threshold": rule.threshold, "items": list(rule.items), "marker": MARKER, "cells_suppressed": self.cells}


def suppress(table: pa.Table, rule: Suppression) -> Suppressed:
    """``table`` with values of ``rule.items`` below ``rule.threshold`` replaced by ``[c]``."""
    cells = 0
    for name in rule.items:
        col = table.column(name)
        small = pc.fill_null(pc.less(col, pa.scalar(rule.threshold, col.type)), False)
        cells += int(pc.sum(small).as_py() or 0)
        text = pc.cast(col, pa.string())
        replaced = pc.if_else(small, pa.scalar(MARKER), text)
        i = table.schema.get_field_index(name)
        table = table.set_column(i, pa.field(name, pa.string()), replaced)
    return Suppressed(table, cells)


__all__ = ["MARKER", "Suppressed", "suppress"]
