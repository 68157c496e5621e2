"""An issue found in a submission: the unit of feedback a council officer acts on.

Every issue carries a rule code, a severity and, where it has one, the row (its number in the
council's own file: the header is row 1) and the item (column), so the message points at the
cell to fix. Structural codes (file, header and type problems) are catalogued in
``lgdp.parse.codes``; rule codes come from the spec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "query"]
MAX_VALUE_CHARS = 200


@dataclass(frozen=True)
class Issue:
    code: str
    severity: Severity
    message: str
    row: int | None = None
    item: str | None = None
    value: str | None = None
    table: str | None = None  # the table (sheet, CSV file) of a return with several tables

    def __post_init__(self) -> None:
        value = self.value
        if value is not None:
            # A council's cell may hold anything, NUL included, which PostgreSQL text refuses.
            value = value.replace("\x00", "\\x00")
            if len(value) > MAX_VALUE_CHARS:
                value = value[: MAX_VALUE_CHARS - 1] + "…"
            object.__setattr__(self, "value", value)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        where = ", ".join(
            p for p in (f"table {self.table}" if self.table else "", f"row {self.row}" if self.row else "",
                        f"column {self.item}" if self.item else "") if p
        )
        return f"{self.code} ({self.severity}){' at ' + where if where else ''}: {self.message}"
