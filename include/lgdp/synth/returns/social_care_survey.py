"""Social Care Survey: one record per service a client received during the financial year.

Clients receive one to three different services, so their identifier, date of birth and other
characteristics repeat across consecutive records, as in a real extract. Clean records: the
client is an adult when each service starts (older people's groups 65 and over at the year end),
a service starts up to ten years before the year and is open at some point in it, an end date is
on or after the start, home care and personal assistant services have hours (at most 84 a week),
care home placements have none, and personal assistants are SDS option 1 or 2. Keys (client_id,
service_type, service_start_date) are unique because a client's services differ in type.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from lgdp.synth.core import Row, Run, SpecGenerator

_fromord = dt.date.fromordinal
_HOURS_REQUIRED = ("HOME-CARE", "PA")
_AREAS = ("EH", "G", "AB", "DD", "FK", "KY", "IV", "TD", "PA", "KA", "ML", "PH", "DG", "ZE", "KW", "HS")
_INWARD = "ABDEFGHJLNPQRSTUWXYZ"
_OLDER = {"OLD", "DEM"}


def _hours(rng: random.Random, lo: int, hi: int) -> Decimal:
    """Hours per week between lo and hi, to one decimal place."""
    return Decimal(rng.randint(lo * 10, hi * 10)).scaleb(-1)


class SocialCareSurveyGenerator(SpecGenerator):
    spec_id = "social_care_survey"
    produces = frozenset(
        """council_code client_id date_of_birth sex ethnicity postcode lives_alone client_group
        service_type sds_option service_start_date service_end_date hours_per_week""".split()
    )
    rule_faults = {
        "SCS-E001": "service_end_date",
        "SCS-E002": "date_of_birth",
        "SCS-E003": "hours_per_week",
        "SCS-Q001": "hours_per_week",
        "SCS-Q002": "sds_option",
        "SCS-Q003": "hours_per_week",
    }

    def _codes(self, name: str) -> tuple[str, ...]:
        return tuple(c.code for c in self.loaded.item(name).codes or ())

    def start(self, run: Run, rng: random.Random) -> None:
        s = run.state
        for name in ("sex", "ethnicity", "client_group", "service_type", "sds_option"):
            s[name] = self._codes(name)
        min_start = self.loaded.item("service_start_date").min_date
        s["start_min"] = min_start.toordinal() if min_start else 0
        s["pending"] = []
        s["client_rows"] = []
        s["clients"] = 0
        s["id_offset"] = rng.randrange(10**7)

    def _new_client(self, rng: random.Random, run: Run) -> None:
        s = run.state
        r = rng.random
        group = s["client_group"][int(r() * len(s["client_group"]))]
        age_years = rng.randint(65, 100) if group in _OLDER else rng.randint(18, 90)
        dob = run.end_ord - age_years * 366 - int(r() * 360)
        first_start = max(dob + 18 * 366, run.start_ord - 3650, s["start_min"])
        k = 1 if r() < 0.6 else (2 if r() < 0.7 else 3)
        services = rng.sample(s["service_type"], k)
        postcode = None
        if r() < 0.95:
            area = rng.choice(_AREAS)
            postcode = f"{area}{rng.randint(1, 29)} {rng.randint(0, 9)}{rng.choice(_INWARD)}{rng.choice(_INWARD)}"
        client: dict[str, Any] = {
            "council_code": run.council_code,
            "client_id": f"SC{(s['clients'] * 7919 + s['id_offset']) % 10_000_000:07d}",
            "date_of_birth": _fromord(dob),
            "sex": rng.choice(s["sex"]),
            "ethnicity": rng.choice(s["ethnicity"]),
            "postcode": postcode,
            "lives_alone": None if r() < 0.1 else r() < 0.4,
            "client_group": group,
        }
        s["clients"] += 1
        rows = []
        for service in services:
            start = first_start + int(r() * (run.end_ord - first_start + 1))
            end = None
            if r() < 0.25:
                first = max(start, run.start_ord)
                end = _fromord(first + int(r() * (run.end_ord - first + 1)))
            row = dict(client, service_type=service, sds_option=None, service_start_date=_fromord(start))
            row.update(service_end_date=end, hours_per_week=None)
            self._fill_service(row, service, rng, s)
            rows.append(row)
        s["pending"] = rows[::-1]
        s["client_rows"] = rows

    def _fill_service(self, row: Row, service: str, rng: random.Random, s: dict[str, Any]) -> None:
        """Make the service-dependent items of a row clean for ``service``."""
        row["service_type"] = service
        options = s["sds_option"]
        if service == "HOME-CARE":
            row["hours_per_week"], row["sds_option"] = _hours(rng, 1, 60), rng.choice(options + (None,))
        elif service == "PA":
            row["hours_per_week"], row["sds_option"] = _hours(rng, 2, 50), rng.choice(("1", "2"))
        elif service == "CARE-HOME":
            row["hours_per_week"], row["sds_option"] = None, rng.choice(("3", None))
        elif service in ("DAY-CARE", "RESPITE"):
            row["hours_per_week"] = _hours(rng, 3, 30) if rng.random() < 0.5 else None
            row["sds_option"] = rng.choice(options + (None,))
        else:
            row["hours_per_week"], row["sds_option"] = None, rng.choice(("3", None))

    def clean_row(self, index: int, rng: random.Random, run: Run) -> Row:
        if not run.state["pending"]:
            self._new_client(rng, run)
        return run.state["pending"].pop()

    def _retarget(self, row: Row, service: str, rng: random.Random, s: dict[str, Any]) -> None:
        """Turn ``row`` into a clean record of ``service``, keeping the client's keys unique."""
        if row["service_type"] == service:
            return
        taken = {(r["service_type"], r["service_start_date"]) for r in s["client_rows"] if r is not row}
        while (service, row["service_start_date"]) in taken:
            row["service_start_date"] += dt.timedelta(days=1)
            if row["service_end_date"] is not None and row["service_end_date"] < row["service_start_date"]:
                row["service_end_date"] = row["service_start_date"]
        self._fill_service(row, service, rng, s)

    def break_rule(self, code: str, row: Row, rng: random.Random, run: Run) -> None:
        s = run.state
        start: dt.date = row["service_start_date"]
        if code == "SCS-E001":
            row["service_end_date"] = start - dt.timedelta(days=rng.randint(1, 400))
        elif code == "SCS-E002":
            row["date_of_birth"] = start + dt.timedelta(days=rng.randint(1, 300))
        elif code == "SCS-E003":
            if row["service_type"] not in _HOURS_REQUIRED:
                self._retarget(row, "HOME-CARE", rng, s)
            row["hours_per_week"] = None
        elif code == "SCS-Q001":
            self._retarget(row, "CARE-HOME", rng, s)
            row["hours_per_week"] = _hours(rng, 5, 40)
        elif code == "SCS-Q002":
            self._retarget(row, "PA", rng, s)
            row["sds_option"] = rng.choice(("3", "4", None))
        elif code == "SCS-Q003":
            if row["service_type"] == "CARE-HOME":
                self._retarget(row, "HOME-CARE", rng, s)
            row["hours_per_week"] = Decimal(rng.randint(846, 1680)).scaleb(-1)
