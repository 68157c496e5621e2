"""Quarterly revenue monitoring: one row per service line, in GBP thousands.

Clean rows: net = gross - income (to within the 0.5 rounding the rule allows), income below
gross, and at least GBP 1,000 of gross spending per FTE. Rows follow the service line code list
in order, so a council's return has at most one row per code and keys are unique.
"""

from __future__ import annotations

import random
from decimal import Decimal

from lgdp.synth.core import Row, Run, SpecGenerator

# Typical quarterly gross spending (GBP thousands) of a mid-sized council, by service line.
_TYPICAL = {"EDU": 60000, "CSW": 8000, "ASC": 30000, "ROAD": 5000, "WASTE": 4000,
            "HOUS": 3000, "CULT": 3000, "PLAN": 2000, "ENV": 2500, "CORP": 6000}
_TENTH = Decimal("0.1")


def _d1(x: float) -> Decimal:
    """A float rounded to one decimal place, as a Decimal."""
    return Decimal(round(x * 10)).scaleb(-1)


class FinanceGenerator(SpecGenerator):
    spec_id = "la_finance_quarterly"
    produces = frozenset("council_code service_code gross_expenditure income net_expenditure staff_fte".split())
    rule_faults = {"FIN-E001": "net_expenditure", "FIN-Q001": "income", "FIN-Q002": "gross_expenditure"}

    def _codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.loaded.item("service_code").codes or ())

    def start(self, run: Run, rng: random.Random) -> None:
        run.state["codes"] = self._codes()
        run.state["size"] = rng.uniform(0.2, 3.0)  # the council's size relative to a mid-sized one

    def clean_row(self, index: int, rng: random.Random, run: Run) -> Row:
        code = run.state["codes"][index]
        gross = _d1(max(500.0, _TYPICAL.get(code, 3000) * run.state["size"] * rng.uniform(0.8, 1.2)))
        income = _d1(float(gross) * rng.uniform(0.02, 0.45))
        net = gross - income
        if rng.random() < 0.2:  # councils round each figure separately
            net += rng.choice((-1, 1)) * rng.randint(1, 4) * _TENTH
        return {
            "council_code": run.council_code,
            "service_code": code,
            "gross_expenditure": gross,
            "income": income,
            "net_expenditure": net,
            "staff_fte": _d1(float(gross) * rng.uniform(0.02, 0.08)),
        }

    def break_rule(self, code: str, row: Row, rng: random.Random, run: Run) -> None:
        gross, income = row["gross_expenditure"], row["income"]
        if code == "FIN-E001":
            off = Decimal(rng.randint(10, 1000)).scaleb(-1)
            row["net_expenditure"] = gross - income + rng.choice((-1, 1)) * off
        elif code == "FIN-Q001":
            income = gross + Decimal(rng.randint(1, max(1, int(gross) * 2))).scaleb(-1)
            row["income"], row["net_expenditure"] = income, gross - income
        elif code == "FIN-Q002":
            gross = (row["staff_fte"] / 2).quantize(_TENTH)
            income = (gross / 10).quantize(_TENTH)
            row["gross_expenditure"], row["income"], row["net_expenditure"] = gross, income, gross - income
