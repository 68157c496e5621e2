"""Children Looked After in Scotland as the multi-table return: children, episodes, placements.

Each child has a *history* that does not depend on the period: a date of birth, then one to three
episodes of being looked after (gaps of a month or more between them, all ending before the 18th
birthday), each with one to three placements in sequence (the first starting on the episode's
start date, each next on the day the previous ended, the last ending with the episode). A period's
submission is the part of those histories the council would report for that year: every child
with an episode open at some time in it, those episodes, and their placements started by the year
end, with end dates after the year end left blank. So a council's returns for two years agree
(dates of birth, legal reasons of the same episode) exactly as a real council's would, and a
clean submission passes every rule of the spec, last year's included.

Faults (``FAULTS``: one per rule code, plus the parent links and a few generic ones) damage
chosen children after the period's rows are drawn, each child at most once, and name the table
and row (the council's row number in that sheet: header = row 1) the rule must flag.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from lgdp.specs.load import LoadedSpec
from lgdp.synth.core import FIRST_DATA_ROW, Fault, Row, SynthError, add_years, derive_seed, period_dates

_ord = dt.date.toordinal
_day = dt.date.fromordinal
ANCHOR_LO = dt.date(2015, 1, 1).toordinal()
ANCHOR_HI = dt.date(2031, 12, 31).toordinal()
DOB_MIN = dt.date(2000, 1, 1).toordinal()
UNREGISTERED = "CS9999999999"


@dataclass
class _Child:
    index: int
    row: Row
    episodes: list[Row] = field(default_factory=list)
    placements: dict[int, list[Row]] = field(default_factory=dict)  # id(episode) -> placements


@dataclass
class TablesResult:
    """A synthetic submission of a multi-table return: each table's rows, and the faults in them."""

    spec_id: str
    council_code: str
    period_label: str
    tables: dict[str, list[Row]]
    faults: list[Fault]

    def faults_of(self, kind: str) -> list[Fault]:
        return [f for f in self.faults if f.kind == kind]

    @property
    def rows(self) -> list[Row]:
        return next(iter(self.tables.values()))


class ClasTablesGenerator:
    spec_id = "clas"

    def __init__(self, loaded: LoadedSpec) -> None:
        if not loaded.multi:
            raise SynthError("ClasTablesGenerator is for the multi-table CLAS spec")
        self.loaded = loaded
        ref = loaded.reference
        self.providers: dict[str, list[str]] = {"FOS": [], "RES": []}
        self.districts: dict[str, list[str]] = {}
        if ref is not None:
            if "registered_providers" in ref.tables:
                for pid, _name, kind in ref.tables["registered_providers"].rows:
                    self.providers.setdefault(str(kind), []).append(str(pid))
            if "postcode_districts" in ref.tables:
                for district, council in ref.tables["postcode_districts"].rows:
                    self.districts.setdefault(str(council), []).append(str(district))
        self.codes = {name: tuple(c.code for c in (loaded.table(t).item(name).codes or ()))
                      for t, name in (("children", "sex"), ("children", "ethnicity"), ("children", "disability"),
                                      ("episodes", "legal_reason"), ("episodes", "reason_ceased"),
                                      ("placements", "placement_type"))}

    # --- what a caller asks for ---------------------------------------------------------------

    def default_rows(self) -> int:
        return 100

    def fault_names(self) -> list[str]:
        return sorted(FAULTS)

    def generate(self, council: str, period: str, n_children: int | None = None, seed: int = 0,
                 faults: Mapping[str, int] | None = None) -> TablesResult:
        n = self.default_rows() if n_children is None else int(n_children)
        if n < 1:
            raise SynthError("ask for at least one child")
        unknown = sorted(set(faults or {}) - set(FAULTS))
        if unknown:
            raise SynthError(f"unknown fault(s) {', '.join(unknown)}; this return offers: {', '.join(sorted(FAULTS))}")
        ps, pe = period_dates(self.loaded.spec.collection, period)
        children: list[_Child] = []
        index = 0
        while len(children) < n:
            child = self._history(council, seed, index, ps, pe)
            index += 1
            if child is not None:
                children.append(child)
            if index > 50 * n + 1000:
                raise SynthError("could not draw enough children for this period")
        rng = random.Random(derive_seed(seed, "clas-faults", council, period))
        placed: list[tuple[str, str, int]] = []  # (kind, table, id(row))
        used: set[int] = set()
        extra: list[_Child] = []
        for kind in sorted(faults or {}):
            for _ in range(int((faults or {})[kind])):
                spot = FAULTS[kind](self, children, used, rng, ps, pe, extra)
                if spot is None:
                    raise SynthError(f"no row of this dataset can take the fault {kind}; ask for more rows")
                placed.append((kind, *spot))
        tables: dict[str, list[Row]] = {"children": [], "episodes": [], "placements": []}
        for child in children + extra:
            if child.row is not None:
                tables["children"].append(child.row)
            for ep in child.episodes:
                tables["episodes"].append(ep)
                tables["placements"].extend(child.placements.get(id(ep), []))
        where = {id(r): (t, i + FIRST_DATA_ROW) for t, rows in tables.items() for i, r in enumerate(rows)}
        found = [Fault(kind, where[rid][1], table=table) for kind, table, rid in placed if rid in where]
        found.sort(key=lambda f: (f.table or "", f.row_number, f.kind))
        return TablesResult(self.loaded.id, council, period, tables, found)

    # --- histories ------------------------------------------------------------------------------

    def _history(self, council: str, seed: int, index: int, ps: dt.date, pe: dt.date) -> _Child | None:
        r = random.Random(derive_seed(seed, "clas-child", council, index))
        c = self.codes
        first = ANCHOR_LO + int(r.random() * (ANCHOR_HI - ANCHOR_LO))
        dob = max(DOB_MIN, first - int(r.uniform(60, 16.5 * 365)))
        if dob > first:
            first = dob + 30
        limit = _ord(add_years(_day(dob), 18)) - 1
        # only children whose history touches the period are drawn in full
        if first > _ord(pe) or limit < _ord(ps):
            return None
        eps: list[tuple[int, int, str, str]] = []
        start = first
        for _ in range(r.choice((1, 1, 1, 2, 2, 3))):
            if start >= limit - 30:
                break
            length = int(r.uniform(60, 1800))
            end = min(start + length, limit)
            legal = c["legal_reason"][int(r.random() * len(c["legal_reason"]))]
            reason = c["reason_ceased"][int(r.random() * len(c["reason_ceased"]))]
            eps.append((start, end, legal, reason))
            start = end + int(r.uniform(30, 400))
        shown = [e for e in eps if e[0] <= _ord(pe) and e[1] >= _ord(ps)]
        if not shown:
            return None
        districts = self.districts.get(council) or []
        row: Row = {
            "council_code": council,
            "child_id": f"C{(index * 7919 + derive_seed(seed, 'clas-ids', council) % 10**8) % 10**8:08d}",
            "scn": f"{int(r.random() * 1e9):09d}" if r.random() < 0.6 else None,
            "date_of_birth": _day(dob),
            "sex": c["sex"][int(r.random() * len(c["sex"]))],
            "ethnicity": c["ethnicity"][int(r.random() * len(c["ethnicity"]))],
            "disability": c["disability"][int(r.random() * len(c["disability"]))] if r.random() < 0.9 else None,
            "postcode_district": districts[int(r.random() * len(districts))] if districts and r.random() < 0.8 else None,
        }
        child = _Child(index, row)
        for (s, e, legal, reason) in eps:
            n_pl = r.choice((1, 1, 2, 2, 3))
            cuts = sorted({s + int((e - s) * r.random()) for _ in range(n_pl - 1)} - {s, e})
            bounds = [s, *cuts, e]
            if (s, e, legal, reason) not in shown:
                continue
            ended = e <= _ord(pe)
            ep = {"child_id": row["child_id"], "episode_start_date": _day(s), "legal_reason": legal,
                  "episode_end_date": _day(e) if ended else None, "reason_ceased": reason if ended else None}
            child.episodes.append(ep)
            pls: list[Row] = []
            for a, b in zip(bounds, bounds[1:]):
                if a > _ord(pe):
                    break
                kinds = [k for k in c["placement_type"] if not (k == "HOME" and legal in ("PO", "CSO-A"))]
                kind = kinds[int(r.random() * len(kinds))]
                provider = None
                if kind in ("FOS-P", "RES-P"):
                    pool = self.providers.get(kind[:3]) or [UNREGISTERED]
                    provider = pool[int(r.random() * len(pool))]
                pls.append({"child_id": row["child_id"], "episode_start_date": _day(s), "placement_start_date": _day(a),
                            "placement_type": kind, "provider_id": provider,
                            "placement_end_date": _day(b) if b <= _ord(pe) else None})
            child.placements[id(ep)] = pls
        return child


# ---------------------------------------------------------------------------------------------
# Faults: each takes a fresh child (never one already damaged) and returns (table, id(row)).

Spot = "tuple[str, int] | None"


def _pick(children: list[_Child], used: set[int], rng: random.Random, ok: Callable[[_Child], bool]) -> _Child | None:
    pool = [c for c in children if c.index not in used and ok(c)]
    if not pool:
        return None
    child = pool[int(rng.random() * len(pool))]
    used.add(child.index)
    return child


def _single(c: _Child) -> bool:
    return len(c.episodes) == 1


def _open(ep: Row) -> bool:
    return ep["episode_end_date"] is None


def _plist(c: _Child, ep: Row) -> list[Row]:
    return c.placements.setdefault(id(ep), [])


def _new_episode(c: _Child, start: dt.date, legal: str, kind: str = "KIN") -> Row:
    ep = {"child_id": c.row["child_id"], "episode_start_date": start, "legal_reason": legal,
          "episode_end_date": None, "reason_ceased": None}
    c.episodes.append(ep)
    c.placements[id(ep)] = [{"child_id": c.row["child_id"], "episode_start_date": start, "placement_start_date": start,
                             "placement_type": kind, "provider_id": None, "placement_end_date": None}]
    return ep


def f_e001(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: any(e["episode_start_date"] >= ps + dt.timedelta(days=15) for e in c.episodes))
    if c is None:
        return None
    ep = next(e for e in c.episodes if e["episode_start_date"] >= ps + dt.timedelta(days=15))
    ep["episode_end_date"] = ep["episode_start_date"] - dt.timedelta(days=10)
    ep["reason_ceased"] = ep["reason_ceased"] or "OTH"
    return ("episodes", id(ep))


def f_e004(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: any(not _open(e) for e in c.episodes))
    if c is None:
        return None
    ep = next(e for e in c.episodes if not _open(e))
    ep["reason_ceased"] = None
    return ("episodes", id(ep))


def f_q001(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: any(_open(e) for e in c.episodes))
    if c is None:
        return None
    ep = next(e for e in c.episodes if _open(e))
    ep["reason_ceased"] = "OTH"
    return ("episodes", id(ep))


def f_e005(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: _single(c) and _open(c.episodes[0]))
    if c is None:
        return None
    ep = c.episodes[0]
    new = pe + dt.timedelta(days=5)
    ep["episode_start_date"] = new
    for p in _plist(c, ep):
        p["episode_start_date"] = new
    return ("episodes", id(ep))


def f_e006(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: any(not _open(e) and e["episode_start_date"] < ps - dt.timedelta(days=10) for e in c.episodes))
    if c is None:
        return None
    ep = next(e for e in c.episodes if not _open(e) and e["episode_start_date"] < ps - dt.timedelta(days=10))
    ep["episode_end_date"] = ps - dt.timedelta(days=5)
    return ("episodes", id(ep))


def f_e007(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: any(_open(e) for e in c.episodes))
    if c is None:
        return None
    ep = next(e for e in c.episodes if _open(e))
    ep["episode_end_date"] = pe + dt.timedelta(days=10)
    ep["reason_ceased"] = "HOME"
    return ("episodes", id(ep))


def _placement(c: _Child, ok: Callable[[Row, Row], bool]) -> tuple[Row, Row] | None:
    for ep in c.episodes:
        for p in _plist(c, ep):
            if ok(ep, p):
                return ep, p
    return None


def _pick_placement(ch, used, rng, ok):
    c = _pick(ch, used, rng, lambda c: _placement(c, ok) is not None)
    return None if c is None else (c, *_placement(c, ok))  # type: ignore[misc]


def f_e010(g, ch, used, rng, ps, pe, extra):
    got = _pick_placement(ch, used, rng, lambda e, p: True)
    if got is None:
        return None
    _, _, p = got
    p["placement_end_date"] = p["placement_start_date"] - dt.timedelta(days=3)
    return ("placements", id(p))


def f_e011(g, ch, used, rng, ps, pe, extra):
    got = _pick_placement(ch, used, rng, lambda e, p: _open(e) and p["placement_end_date"] is None)
    if got is None:
        return None
    _, _, p = got
    p["placement_end_date"] = pe + dt.timedelta(days=5)
    return ("placements", id(p))


def f_e012(g, ch, used, rng, ps, pe, extra):
    got = _pick_placement(ch, used, rng, lambda e, p: True)
    if got is None:
        return None
    _, _, p = got
    p["placement_type"], p["provider_id"] = "FOS-P", None
    return ("placements", id(p))


def f_e013(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: True)
    if c is None:
        return None
    c.row["date_of_birth"] = pe + dt.timedelta(days=30)
    return ("children", id(c.row))


def f_e002(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: _single(c) and c.episodes[0]["episode_start_date"] <= pe - dt.timedelta(days=10))
    if c is None:
        return None
    ep = c.episodes[0]
    c.row["date_of_birth"] = ep["episode_start_date"] + dt.timedelta(days=10)
    return ("episodes", id(ep))


def f_e003(g, ch, used, rng, ps, pe, extra):
    def ok(c: _Child) -> bool:
        return _single(c) and add_years(c.episodes[0]["episode_start_date"], -18) - dt.timedelta(days=20) >= _day(DOB_MIN)

    c = _pick(ch, used, rng, ok)
    if c is None:
        return None
    ep = c.episodes[0]
    c.row["date_of_birth"] = add_years(ep["episode_start_date"], -18) - dt.timedelta(days=20)
    return ("episodes", id(ep))


def f_e020(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: _single(c) and not _open(c.episodes[0])
              and c.episodes[0]["episode_end_date"] - c.episodes[0]["episode_start_date"] > dt.timedelta(days=20))
    if c is None:
        return None
    first = c.episodes[0]
    ep = _new_episode(c, first["episode_end_date"] - dt.timedelta(days=10), "S25")
    return ("episodes", id(ep))


def f_q020(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: _single(c) and not _open(c.episodes[0])
              and c.episodes[0]["episode_end_date"] <= pe - dt.timedelta(days=5))
    if c is None:
        return None
    first = c.episodes[0]
    ep = _new_episode(c, first["episode_end_date"], first["legal_reason"])
    return ("episodes", id(ep))


def f_e021(g, ch, used, rng, ps, pe, extra):
    got = _pick_placement(ch, used, rng, lambda e, p: p["placement_start_date"] == e["episode_start_date"])
    if got is None:
        return None
    _, _, p = got
    p["placement_start_date"] = p["placement_start_date"] - dt.timedelta(days=5)
    return ("placements", id(p))


def f_e022(g, ch, used, rng, ps, pe, extra):
    got = _pick_placement(ch, used, rng, lambda e, p: not _open(e) and p["placement_end_date"] == e["episode_end_date"])
    if got is None:
        return None
    _, ep, p = got
    later = ep["episode_end_date"] + dt.timedelta(days=5)
    p["placement_end_date"] = later if later <= pe else None
    return ("placements", id(p))


def f_e023(g, ch, used, rng, ps, pe, extra):
    def ok(c: _Child) -> bool:
        return any(len(_plist(c, e)) >= 2 and _plist(c, e)[0]["placement_end_date"] is not None
                   and _plist(c, e)[0]["placement_end_date"] - _plist(c, e)[0]["placement_start_date"] > dt.timedelta(days=7)
                   for e in c.episodes)

    c = _pick(ch, used, rng, ok)
    if c is None:
        return None
    ep = next(e for e in c.episodes if len(_plist(c, e)) >= 2 and _plist(c, e)[0]["placement_end_date"] is not None
              and _plist(c, e)[0]["placement_end_date"] - _plist(c, e)[0]["placement_start_date"] > dt.timedelta(days=7))
    p1, p2 = _plist(c, ep)[0], _plist(c, ep)[1]
    p2["placement_start_date"] = p1["placement_end_date"] - dt.timedelta(days=5)
    return ("placements", id(p2))


def f_e024(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: True)
    if c is None:
        return None
    c.episodes, c.placements = [], {}
    return ("children", id(c.row))


def f_e025(g, ch, used, rng, ps, pe, extra):
    got = _pick_placement(ch, used, rng, lambda e, p: p["placement_start_date"] == e["episode_start_date"]
                          and (p["placement_end_date"] is None or p["placement_end_date"] - p["placement_start_date"] > dt.timedelta(days=5)))
    if got is None:
        return None
    _, ep, p = got
    p["placement_start_date"] = p["placement_start_date"] + dt.timedelta(days=3)
    return ("episodes", id(ep))


def f_e026(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: _single(c) and _open(c.episodes[0]))
    if c is None:
        return None
    _new_episode(c, c.episodes[0]["episode_start_date"] - dt.timedelta(days=400), "S25")
    return ("children", id(c.row))


def f_q021(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: all(e["episode_start_date"] > c.row["date_of_birth"] + dt.timedelta(days=2) for e in c.episodes)
              and c.episodes[0]["episode_start_date"] < ps)
    if c is None:
        return None
    c.row["date_of_birth"] = c.row["date_of_birth"] + dt.timedelta(days=1)
    return ("children", id(c.row))


def f_q022(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: any(_open(e) and e["episode_start_date"] < ps - dt.timedelta(days=1)
                                             and all(p["placement_type"] != "HOME" for p in _plist(c, e)) for e in c.episodes))
    if c is None:
        return None
    ep = next(e for e in c.episodes if _open(e) and e["episode_start_date"] < ps - dt.timedelta(days=1)
              and all(p["placement_type"] != "HOME" for p in _plist(c, e)))
    ep["legal_reason"] = "S25" if ep["legal_reason"] != "S25" else "ICSO"
    return ("episodes", id(ep))


def f_e027(g, ch, used, rng, ps, pe, extra):
    got = _pick_placement(ch, used, rng, lambda e, p: True)
    if got is None:
        return None
    _, _, p = got
    p["placement_type"], p["provider_id"] = "RES-P", UNREGISTERED
    return ("placements", id(p))


def f_q023(g, ch, used, rng, ps, pe, extra):
    dob = add_years(pe, -18) - dt.timedelta(days=10)
    c = _pick(ch, used, rng, lambda c: _single(c) and _open(c.episodes[0]) and dob >= _day(DOB_MIN)
              and c.episodes[0]["episode_start_date"] > dob)
    if c is None:
        return None
    c.row["date_of_birth"] = dob
    return ("episodes", id(c.episodes[0]))


def _set_home(ch, used, rng, legal):
    c = _pick(ch, used, rng, lambda c: _single(c) and len(_plist(c, c.episodes[0])) >= 1)
    if c is None:
        return None
    ep = c.episodes[0]
    ep["legal_reason"] = legal
    for p in _plist(c, ep):
        if p["placement_type"] == "HOME":
            p["placement_type"] = "KIN"
    p = _plist(c, ep)[0]
    p["placement_type"], p["provider_id"] = "HOME", None
    return ("placements", id(p))


def f_q024(g, ch, used, rng, ps, pe, extra):
    return _set_home(ch, used, rng, "CSO-A")


def f_q025(g, ch, used, rng, ps, pe, extra):
    return _set_home(ch, used, rng, "PO")


def f_q026(g, ch, used, rng, ps, pe, extra):
    council = ch[0].row["council_code"] if ch else ""
    others = sorted(d for code, ds in g.districts.items() if code != council for d in ds
                    if d not in g.districts.get(council, []))
    if not others:
        return None
    c = _pick(ch, used, rng, lambda c: True)
    if c is None:
        return None
    c.row["postcode_district"] = others[int(rng.random() * len(others))]
    return ("children", id(c.row))


def f_link_episodes(g, ch, used, rng, ps, pe, extra):
    # an episode whose child is not in the children sheet: an extra "child" with no children row
    c = _pick(ch, used, rng, lambda c: _single(c))
    if c is None:
        return None
    orphan = _Child(-1 - len(extra), None)  # type: ignore[arg-type]
    ep = dict(c.episodes[0], child_id="X" + c.row["child_id"][1:])
    orphan.episodes.append(ep)
    orphan.placements[id(ep)] = [dict(p, child_id=ep["child_id"]) for p in _plist(c, c.episodes[0])]
    extra.append(orphan)
    return ("episodes", id(ep))


def f_link_placements(g, ch, used, rng, ps, pe, extra):
    got = _pick_placement(ch, used, rng, lambda e, p: p["placement_start_date"] > e["episode_start_date"])
    if got is None:
        return None
    _, ep, p = got
    p["episode_start_date"] = ep["episode_start_date"] + dt.timedelta(days=1)
    return ("placements", id(p))


def f_duplicate_child(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: True)
    if c is None:
        return None
    twin = _Child(-1000 - len(extra), dict(c.row))
    extra.append(twin)
    return ("children", id(twin.row))


def f_bad_code(g, ch, used, rng, ps, pe, extra):
    c = _pick(ch, used, rng, lambda c: bool(c.episodes))
    if c is None:
        return None
    c.episodes[0]["legal_reason"] = "XX"
    return ("episodes", id(c.episodes[0]))


def f_missing_required(g, ch, used, rng, ps, pe, extra):
    got = _pick_placement(ch, used, rng, lambda e, p: p["placement_type"] not in ("FOS-P", "RES-P"))
    if got is None:
        return None
    _, _, p = got
    p["placement_type"] = None
    return ("placements", id(p))


FAULTS: dict[str, Callable[..., Any]] = {
    "CLAS-E001": f_e001, "CLAS-E002": f_e002, "CLAS-E003": f_e003, "CLAS-E004": f_e004,
    "CLAS-E005": f_e005, "CLAS-E006": f_e006, "CLAS-E007": f_e007, "CLAS-E010": f_e010,
    "CLAS-E011": f_e011, "CLAS-E012": f_e012, "CLAS-E013": f_e013, "CLAS-E020": f_e020,
    "CLAS-E021": f_e021, "CLAS-E022": f_e022, "CLAS-E023": f_e023, "CLAS-E024": f_e024,
    "CLAS-E025": f_e025, "CLAS-E026": f_e026, "CLAS-E027": f_e027, "CLAS-Q001": f_q001,
    "CLAS-Q020": f_q020, "CLAS-Q021": f_q021, "CLAS-Q022": f_q022, "CLAS-Q023": f_q023,
    "CLAS-Q024": f_q024, "CLAS-Q025": f_q025, "CLAS-Q026": f_q026,
    "LINK-episodes": f_link_episodes, "LINK-placements": f_link_placements,
    "duplicate_key": f_duplicate_child, "bad_code": f_bad_code, "missing_required": f_missing_required,
}
"""Fault name -> what it damages. The rule code it breaks is the name (generic ones: KEY-DUP on
children, CODE-legal_reason on episodes, REQ-placement_type on placements)."""

FAULT_CODES = {"duplicate_key": "KEY-DUP", "bad_code": "CODE-legal_reason", "missing_required": "REQ-placement_type"}
