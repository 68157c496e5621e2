"""Governance of returns: the review pack of a proposal, its burden, and the register's review flags.

Pure computation over loaded specs (no database, no Airflow): ``review_pack`` compares a proposed
return, or a proposed change to an approved one (``changes:`` with ``status: proposed``), with
what is collected today, and ``render_text`` / ``render_markdown`` write it as a person reads it.
The change preview, which replays councils' accepted submissions under the proposal, does I/O and
lives in ``lgdp.validate.preview``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from lgdp.specs.load import LoadedSpec, Register, proposed_rule_book
from lgdp.specs.model import Frequency, Status

COLLECTIONS_A_YEAR = {Frequency.annual: 1, Frequency.quarterly: 4, Frequency.monthly: 12}
SIMILAR = 0.82  # wording similarity (difflib ratio on normalised words) counted as a near duplicate


@dataclass(frozen=True)
class Burden:
    """Items × provider councils × collections a year, and the estimate's hours from its inputs."""

    items: int
    councils: int
    collections_a_year: int
    records_per_council: int | None = None
    minutes_per_record: float | None = None

    @property
    def item_returns(self) -> int:
        return self.items * self.councils * self.collections_a_year

    @property
    def hours_a_year(self) -> float | None:
        if self.records_per_council is None or self.minutes_per_record is None:
            return None
        return self.records_per_council * self.minutes_per_record * self.councils * self.collections_a_year / 60


def item_names(loaded: LoadedSpec) -> list[str]:
    """Every item a council fills in: ``table.item`` for a return of several tables."""
    if loaded.multi:
        return [f"{t.dataset}.{it.name}" for t in loaded.tables for it in t.items]
    return [it.name for it in loaded.items]


def burden(loaded: LoadedSpec, inputs: Any | None = None) -> Burden:
    return Burden(
        items=len(item_names(loaded)),
        councils=len(loaded.providers),
        collections_a_year=COLLECTIONS_A_YEAR[loaded.spec.collection.frequency],
        records_per_council=getattr(inputs, "records_per_council", None),
        minutes_per_record=getattr(inputs, "minutes_per_record", None),
    )


@dataclass(frozen=True)
class Reworded:
    item: str
    field: str  # wording | guidance
    before: str
    after: str


@dataclass(frozen=True)
class CodesChanged:
    item: str
    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class RuleChanged:
    code: str
    what: tuple[str, ...]  # severity, message, table, sql


@dataclass(frozen=True)
class Duplicate:
    item: str
    other: str  # return.item (or return.table.item)
    why: str  # "same dictionary item 'sex'" | "similar wording (0.91): '...'"


@dataclass
class ReviewPack:
    return_id: str
    title: str
    kind: str  # "new return" | "change"
    purpose: str
    legal_basis: str
    requester: str
    owner: str
    proposal: Any
    summary: str | None
    from_period: str | None
    items_added: list[str] = field(default_factory=list)
    items_removed: list[str] = field(default_factory=list)
    reworded: list[Reworded] = field(default_factory=list)
    codes_changed: list[CodesChanged] = field(default_factory=list)
    rules_added: list[str] = field(default_factory=list)
    rules_removed: list[str] = field(default_factory=list)
    rules_changed: list[RuleChanged] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    burden_before: Burden | None = None
    burden_after: Burden | None = None


def _items(loaded: LoadedSpec) -> dict[str, Any]:
    if loaded.multi:
        return {f"{t.dataset}.{it.name}": it for t in loaded.tables for it in t.items}
    return {it.name: it for it in loaded.items}


def _rules(loaded: LoadedSpec) -> dict[str, Any]:
    return {r.code: r for r in loaded.whole.spec.rules}


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def duplicates(new: LoadedSpec, names: Iterable[str], register: Register, exclude: str) -> list[Duplicate]:
    """Items (by name) of ``new`` that other approved returns already collect: the same dictionary
    item, or wording similar enough to be the same question."""
    mine = _items(new)
    out: list[Duplicate] = []
    others = [s for s in register.approved() if s.id != exclude]
    for name in names:
        it = mine[name]
        for other in others:
            for oname, oit in _items(other).items():
                where = f"{other.id}.{oname}"
                if it.ref and oit.ref == it.ref:
                    out.append(Duplicate(name, where, f"same dictionary item '{it.ref}'"))
                    continue
                ratio = difflib.SequenceMatcher(None, _words(it.wording), _words(oit.wording)).ratio()
                if ratio >= SIMILAR:
                    out.append(Duplicate(name, where, f"similar wording ({ratio:.2f}): '{oit.wording}'"))
    return out


def review_pack(loaded: LoadedSpec, register: Register, change_index: int | None = None) -> ReviewPack:
    """The review pack of a proposed return, or of a proposed change (the first one by default)."""
    spec = loaded.spec
    g = spec.governance
    is_new = g.status == Status.proposed and not any(c.status == "proposed" for c in spec.changes)
    if is_new:
        pack = ReviewPack(spec.id, spec.title, "new return", g.purpose, g.legal_basis, g.requester, g.owner,
                          g.proposal, None, None)
        after = loaded
        pack.items_added = item_names(after)
        pack.rules_added = [r.code for r in spec.rules]
        pack.burden_after = burden(after, g.proposal.burden if g.proposal else None)
        pack.duplicates = duplicates(after, pack.items_added, register, spec.id)
        return pack
    before, after, change = proposed_rule_book(loaded, change_index)
    pack = ReviewPack(spec.id, spec.title, "change", g.purpose, g.legal_basis, g.requester, g.owner,
                      change.proposal, change.summary, change.from_period)
    old_items, new_items = _items(before), _items(after)
    pack.items_added = [n for n in new_items if n not in old_items]
    pack.items_removed = [n for n in old_items if n not in new_items]
    for n, it in new_items.items():
        if n not in old_items:
            continue
        was = old_items[n]
        for attr in ("wording", "guidance"):
            if getattr(was, attr) != getattr(it, attr):
                pack.reworded.append(Reworded(n, attr, getattr(was, attr), getattr(it, attr)))
        a = [c.code for c in was.codes or ()]
        b = [c.code for c in it.codes or ()]
        if a != b:
            pack.codes_changed.append(CodesChanged(n, tuple(c for c in b if c not in a), tuple(c for c in a if c not in b)))
    old_rules, new_rules = _rules(before), _rules(after)
    pack.rules_added = [c for c in new_rules if c not in old_rules]
    pack.rules_removed = [c for c in old_rules if c not in new_rules]
    for code, r in new_rules.items():
        if code in old_rules:
            w = old_rules[code]
            what = tuple(a for a in ("severity", "message", "table", "sql") if getattr(w, a) != getattr(r, a))
            if what:
                pack.rules_changed.append(RuleChanged(code, what))
    touched = pack.items_added + [r.item for r in pack.reworded if r.field == "wording"]
    pack.duplicates = duplicates(after, list(dict.fromkeys(touched)), register, spec.id)
    inputs = change.proposal.burden if change.proposal else None
    pack.burden_before = burden(before, inputs)
    pack.burden_after = burden(after, inputs)
    return pack


# ---------------------------------------------------------------------------------------------
# Writing it out


def _burden_lines(pack: ReviewPack) -> list[str]:
    lines = []
    b, a = pack.burden_before, pack.burden_after
    if a is None:
        return lines
    lines.append(f"{a.items} items x {a.councils} councils x {a.collections_a_year} collection(s) a year = "
                 f"{a.item_returns:,} item returns a year")
    if b is not None:
        d = a.item_returns - b.item_returns
        lines.append(f"approved today: {b.item_returns:,} ({b.items} items); change: {d:+,} item returns a year "
                     f"({a.items - b.items:+d} items)")
    if a.hours_a_year is not None:
        lines.append(f"estimate: {a.records_per_council:,} records x {a.minutes_per_record:g} min x {a.councils} councils x "
                     f"{a.collections_a_year} = {a.hours_a_year:,.0f} officer hours a year")
    return lines


def render_markdown(pack: ReviewPack) -> str:
    p = pack.proposal
    out = [f"# Review pack: {pack.title} ({pack.return_id}), {pack.kind}", ""]
    if pack.from_period:
        out += [f"From period **{pack.from_period}**.", ""]
    if pack.summary:
        out += [pack.summary.strip(), ""]
    out += ["## Purpose and mandate", "", f"- Purpose: {pack.purpose}", f"- Legal basis: {pack.legal_basis}",
            f"- Requester: {pack.requester}", f"- Owner: {pack.owner}"]
    if p is not None:
        out += [f"- Submitted by: {p.submitted_by}, {p.submitted_on.isoformat()}", f"- Regularity: {p.regularity}",
                f"- Duration: {p.duration}"]
        if p.dictionary_reference:
            out.append(f"- Data dictionary: {p.dictionary_reference}")
        for a in p.agreements:
            covers = ", ".join(a.items) if a.items else "every item"
            out.append(f"- Agreed by {a.body} on {a.date.isoformat()} ({covers})")
    out += ["", "## What is new or changed", ""]

    def section(title: str, rows: list[str]) -> None:
        out.append(f"### {title}")
        out.append("")
        out.extend([f"- {r}" for r in rows] or ["- none"])
        out.append("")

    section("Items added", pack.items_added)
    section("Items removed", pack.items_removed)
    section("Items reworded", [f"{r.item} ({r.field}): '{r.before}' -> '{r.after}'" for r in pack.reworded])
    section("Code lists changed", [
        f"{c.item}: " + "; ".join(x for x in (f"added {', '.join(c.added)}" if c.added else "",
                                               f"removed {', '.join(c.removed)}" if c.removed else "") if x)
        for c in pack.codes_changed])
    section("Rules added", pack.rules_added)
    section("Rules removed", pack.rules_removed)
    section("Rules changed", [f"{r.code}: {', '.join(r.what)}" for r in pack.rules_changed])
    out += ["## Items other returns already collect", ""]
    out.extend([f"- {d.item} ~ {d.other}: {d.why}" for d in pack.duplicates] or ["- none found"])
    out += ["", "## Burden", ""]
    out.extend(f"- {line}" for line in _burden_lines(pack))
    out.append("")
    return "\n".join(out)


def render_text(pack: ReviewPack) -> str:
    """The same pack for a terminal: Markdown without the markup."""
    text = render_markdown(pack)
    text = re.sub(r"^#+ ", "", text, flags=re.M).replace("**", "")
    return text


def review_due(loaded: LoadedSpec, today: dt.date | None = None) -> bool:
    """True when the return's review date has passed."""
    return loaded.spec.governance.review_date < (today or dt.date.today())


__all__ = ["Burden", "ReviewPack", "burden", "duplicates", "item_names", "render_markdown", "render_text",
           "review_due", "review_pack"]
