"""Households in temporary accommodation: one row per accommodation type, counts only.

Clean rows: households with children and Unsuitable Accommodation Order breaches are part of the
households count, and there are between 1 and 10 children per household with children (none
when there are no households with children). Rows follow the accommodation type code list in
order, so keys are unique. Small counts (including zeros) are common, as in the real return,
which exercises the small-number suppression of the public output.
"""

from __future__ import annotations

import random

from lgdp.synth.core import Row, Run, SpecGenerator

_TYPICAL = {"LA": 300, "HA": 80, "HOSTEL-LA": 40, "HOSTEL-OTH": 30, "BB": 20, "REFUGE": 5, "PSL": 15, "OTH": 10}
_UNSUITABLE = {"BB", "HOSTEL-LA", "HOSTEL-OTH", "OTH"}


class TemporaryAccommodationGenerator(SpecGenerator):
    spec_id = "temporary_accommodation_monthly"
    produces = frozenset("council_code accommodation_type households households_with_children children uao_breaches".split())
    rule_faults = {
        "TA-E001": "households_with_children",
        "TA-E002": "uao_breaches",
        "TA-Q001": "children",
        "TA-Q002": "children",
    }

    def _codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.loaded.item("accommodation_type").codes or ())

    def start(self, run: Run, rng: random.Random) -> None:
        run.state["codes"] = self._codes()
        run.state["size"] = rng.uniform(0.05, 4.0)

    def clean_row(self, index: int, rng: random.Random, run: Run) -> Row:
        code = run.state["codes"][index]
        households = int(_TYPICAL.get(code, 10) * run.state["size"] * rng.uniform(0.5, 1.5))
        with_children = int(households * rng.uniform(0.1, 0.5))
        children = with_children + int(with_children * rng.uniform(0.0, 1.5))
        breaches = int(households * rng.uniform(0.0, 0.6)) if code in _UNSUITABLE else 0
        return {
            "council_code": run.council_code,
            "accommodation_type": code,
            "households": households,
            "households_with_children": with_children,
            "children": children,
            "uao_breaches": breaches,
        }

    def break_rule(self, code: str, row: Row, rng: random.Random, run: Run) -> None:
        if code == "TA-E001":
            hwc = row["households"] + rng.randint(1, 5)
            row["households_with_children"], row["children"] = hwc, hwc + hwc // 2
        elif code == "TA-E002":
            row["uao_breaches"] = row["households"] + rng.randint(1, 5)
        elif code == "TA-Q001":
            if row["households"] < 2:
                row["households"] += 2
            hwc = max(2, row["households_with_children"])
            row["households_with_children"] = hwc
            row["children"] = rng.randint(0, hwc - 1)
        elif code == "TA-Q002":
            row["children"] = 10 * row["households_with_children"] + rng.randint(1, 5)
