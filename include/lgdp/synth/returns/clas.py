"""Children Looked After in Scotland: one row per episode open at some time in the year.

Clean rows: the child is under 18 when the episode starts (and born on or after the item's
min_date), the episode starts up to six years before the reporting year and is open at some
point in it, an end date (inside the year) comes with a reason and a reason only with an end
date, and a Permanence Order is never paired with a placement at home. Child identifiers are a
scrambled sequence, so keys (child_id, episode_start_date) are unique.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from lgdp.synth.core import Row, Run, SpecGenerator, SynthError, add_years

_MAX_AGE_DAYS = 18 * 365 - 10  # always under 18 years, whatever the leap days
_fromord = dt.date.fromordinal


class ClasGenerator(SpecGenerator):
    spec_id = "clas"
    produces = frozenset(
        """council_code child_id scn date_of_birth sex ethnicity disability episode_start_date
        legal_reason placement_type number_of_placements episode_end_date reason_ceased""".split()
    )
    rule_faults = {
        "CLAS-E001": "episode_end_date",
        "CLAS-E002": "date_of_birth",
        "CLAS-E003": "date_of_birth",
        "CLAS-E004": "reason_ceased",
        "CLAS-Q001": "reason_ceased",
        "CLAS-Q002": "placement_type",
    }

    def _codes(self, name: str) -> tuple[str, ...]:
        return tuple(c.code for c in self.loaded.item(name).codes or ())

    def start(self, run: Run, rng: random.Random) -> None:
        s = run.state
        dob_min = self.loaded.item("date_of_birth").min_date
        start_min = self.loaded.item("episode_start_date").min_date
        s["dob_min"] = dob_min.toordinal() if dob_min else 0
        lo = max(run.start_ord - 6 * 365, start_min.toordinal() if start_min else 0, s["dob_min"])
        if lo > run.end_ord:
            raise SynthError(f"period {run.period_label} ends before any valid CLAS episode start")
        s["start_lo"], s["start_span"] = lo, run.end_ord - lo + 1
        for name in ("sex", "ethnicity", "disability", "legal_reason", "placement_type", "reason_ceased"):
            s[name] = self._codes(name)
        s["not_home"] = tuple(c for c in s["placement_type"] if c != "HOME")
        s["id_offset"] = rng.randrange(10**8)

    def clean_row(self, index: int, rng: random.Random, run: Run) -> Row:
        s = run.state
        r = rng.random
        start = s["start_lo"] + int(r() * s["start_span"])
        dob = start - int(r() * _MAX_AGE_DAYS)
        if dob < s["dob_min"]:
            dob = s["dob_min"] + int(r() * (start - s["dob_min"] + 1))
        if r() < 0.4:
            first = max(start, run.start_ord)
            end: Any = _fromord(first + int(r() * (run.end_ord - first + 1)))
            reasons = s["reason_ceased"]
            reason = reasons[int(r() * len(reasons))]
        else:
            end = reason = None
        legal = s["legal_reason"][int(r() * len(s["legal_reason"]))]
        places = s["not_home"] if legal == "PO" else s["placement_type"]
        dis = s["disability"]
        return {
            "council_code": run.council_code,
            "child_id": f"C{(index * 7919 + s['id_offset']) % 100_000_000:08d}",
            "scn": f"{int(r() * 1e9):09d}" if r() < 0.6 else None,
            "date_of_birth": _fromord(dob),
            "sex": s["sex"][int(r() * len(s["sex"]))],
            "ethnicity": s["ethnicity"][int(r() * len(s["ethnicity"]))],
            "disability": dis[int(r() * len(dis))] if r() < 0.9 else None,
            "episode_start_date": _fromord(start),
            "legal_reason": legal,
            "placement_type": places[int(r() * len(places))],
            "number_of_placements": 1 + int(r() ** 3 * 15),
            "episode_end_date": end,
            "reason_ceased": reason,
        }

    def break_rule(self, code: str, row: Row, rng: random.Random, run: Run) -> None:
        s = run.state
        start: dt.date = row["episode_start_date"]
        if code == "CLAS-E001":
            row["episode_end_date"] = start - dt.timedelta(days=rng.randint(1, 400))
            row["reason_ceased"] = row["reason_ceased"] or rng.choice(s["reason_ceased"])
        elif code == "CLAS-E002":
            row["date_of_birth"] = start + dt.timedelta(days=rng.randint(1, 300))
        elif code == "CLAS-E003":
            dob = add_years(start, -18) - dt.timedelta(days=rng.randint(1, 365))
            if dob.toordinal() < s["dob_min"]:
                dob = dt.date.fromordinal(s["dob_min"] + rng.randint(0, 30))
                start = add_years(dob, 18) + dt.timedelta(days=rng.randint(1, 30))
                row["episode_start_date"] = start
                if row["episode_end_date"] is not None and row["episode_end_date"] < start:
                    row["episode_end_date"] = start
            row["date_of_birth"] = dob
        elif code == "CLAS-E004":
            if row["episode_end_date"] is None:
                first = max(start.toordinal(), run.start_ord)
                row["episode_end_date"] = dt.date.fromordinal(rng.randint(first, max(first, run.end_ord)))
            row["reason_ceased"] = None
        elif code == "CLAS-Q001":
            row["episode_end_date"] = None
            row["reason_ceased"] = rng.choice(s["reason_ceased"])
        elif code == "CLAS-Q002":
            row["legal_reason"], row["placement_type"] = "PO", "HOME"
