"""The register of returns as the ledger holds it: every return, its items, rules, distribution
and the data items it shares with other returns.

The ledger's ``returns`` rows carry the spec as JSON (``lgdp ledger sync`` and every period's
opening write it); items come from ``return_items``. Guidance of an item that borrows a shared
dictionary entry comes from the dictionary when the spec does not override it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lgdp.ledger.models import CollectionPeriod, Council, Return, ReturnItem

STATUS_ORDER = {"approved": 0, "proposed": 1, "retired": 2}


@lru_cache(maxsize=1)
def _dictionary() -> dict[str, Any]:
    """Shared dictionary entries (for guidance); empty if the reference data cannot be read."""
    try:
        from lgdp.specs.load import load_reference

        return {k: v.model_dump(mode="json") for k, v in load_reference().dictionary.items.items()}
    except Exception:  # noqa: BLE001 - the pages work without guidance
        return {}


def providers_of(spec: dict[str, Any], all_councils: list[str]) -> list[str]:
    providers = spec.get("providers", "all")
    return list(all_councils) if providers == "all" else [str(p) for p in providers]


def council_names(session: Session) -> dict[str, str]:
    return dict(session.execute(select(Council.code, Council.name).order_by(Council.name)).all())


@dataclass(frozen=True)
class RegisterRow:
    id: str
    title: str
    status: str
    frequency: str
    purpose: str
    legal_basis: str
    requester: str
    owner: str
    review_date: dt.date
    providers: int
    providers_all: bool
    items: int
    rules: int
    requesters: list[str]
    dag_id: str
    review_due: bool

    def as_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["review_date"] = self.review_date.isoformat()
        return d


def _matches(r: Return, words: list[str], item_text: str) -> bool:
    hay = " ".join([r.id, r.title, r.purpose, r.legal_basis, r.requester, r.owner, item_text]).lower()
    return all(w in hay for w in words)


def register(
    session: Session,
    q: str | None = None,
    status: str | None = None,
    frequency: str | None = None,
    today: dt.date | None = None,
) -> list[RegisterRow]:
    """Every registered return (approved, proposed, retired), filtered by words, status, frequency."""
    today = today or dt.date.today()
    councils = list(council_names(session))
    items: dict[str, list[str]] = {}
    for rid, name, wording in session.execute(select(ReturnItem.return_id, ReturnItem.name, ReturnItem.wording)):
        items.setdefault(rid, []).append(f"{name} {wording}")
    words = [w for w in (q or "").lower().split() if w]
    out = []
    for r in session.scalars(select(Return)):
        if status and r.status != status:
            continue
        if frequency and r.frequency != frequency:
            continue
        if words and not _matches(r, words, " ".join(items.get(r.id, []))):
            continue
        spec = r.spec or {}
        out.append(
            RegisterRow(
                id=r.id,
                title=r.title,
                status=r.status,
                frequency=r.frequency,
                purpose=r.purpose,
                legal_basis=r.legal_basis,
                requester=r.requester,
                owner=r.owner,
                review_date=r.review_date,
                providers=len(providers_of(spec, councils)),
                providers_all=spec.get("providers", "all") == "all",
                items=len(items.get(r.id, [])),
                rules=len(spec.get("rules") or []),
                requesters=[d.get("name") or d.get("requester", "") for d in spec.get("distribution") or []],
                dag_id=f"return_{r.id}",
                review_due=r.review_date <= today,
            )
        )
    out.sort(key=lambda row: (STATUS_ORDER.get(row.status, 9), row.title.lower()))
    return out


def item_overlap_from_ledger(session: Session) -> dict[str, list[tuple[str, str]]]:
    """``lgdp specs overlap`` over the ledger's register: dictionary item -> [(return, item)]."""
    from lgdp.cli import item_overlap

    by_return: dict[str, list[SimpleNamespace]] = {}
    for rid, name, ref in session.execute(select(ReturnItem.return_id, ReturnItem.name, ReturnItem.dictionary_ref)):
        by_return.setdefault(rid, []).append(SimpleNamespace(name=name, ref=ref))
    return item_overlap(SimpleNamespace(id=rid, items=its) for rid, its in sorted(by_return.items()))


def _destination(dest: dict[str, Any]) -> str:
    if dest.get("type") == "wasb":
        return f"Azure Blob {dest.get('container', '')}/{dest.get('prefix', '')}".rstrip("/")
    return f"folder {dest.get('path', '')}"


def _tables(spec: dict[str, Any], ledger_items: list[ReturnItem]) -> list[dict[str, Any]]:
    """Items grouped by table: ``spec['tables']`` when a spec has several, else one (``dataset``)."""
    dictionary = _dictionary()
    by_name = {i.name: i for i in ledger_items}
    raw_items = {i.get("name"): i for i in spec.get("items") or [] if isinstance(i, dict)}

    def item_view(raw: dict[str, Any] | None, row: ReturnItem | None) -> dict[str, Any]:
        # The spec's own fields first (a table's item may word a shared name its own way), then the
        # ledger's resolved row, then the shared dictionary entry.
        raw = raw or {}
        ref = raw.get("ref") or (row.dictionary_ref if row is not None else None)
        entry = dictionary.get(ref or "", {})
        codes = raw.get("codes") or entry.get("codes")
        code_list = raw.get("code_list") or entry.get("code_list")
        required = raw.get("required")
        if required is None:
            required = row.required if row is not None else entry.get("required", False)
        return {
            "name": raw.get("name") or (row.name if row is not None else ""),
            "wording": raw.get("wording") or (row.wording if row is not None else None) or entry.get("wording") or "",
            "guidance": raw.get("guidance") or entry.get("guidance") or "",
            "type": raw.get("type") or (row.type if row is not None else None) or entry.get("type") or "",
            "required": bool(required),
            "personal_data": bool(
                row.personal_data if row is not None else raw.get("personal_data", entry.get("personal_data", False))
            ),
            "ref": ref,
            "unit": raw.get("unit") or entry.get("unit"),
            "codes": [c.get("code") for c in codes] if codes else ([f"list: {code_list}"] if code_list else []),
        }

    tables = spec.get("tables")
    if isinstance(tables, list) and tables:
        out = []
        for t in tables:
            if not isinstance(t, dict):
                continue
            name = t.get("name") or t.get("dataset") or t.get("id") or "table"
            items = [item_view(i, by_name.get(i.get("name"))) for i in t.get("items") or [] if isinstance(i, dict)]
            out.append({"name": name, "wording": t.get("wording") or "", "keys": t.get("keys") or [], "items": items})
        return out
    items = [item_view(raw_items.get(i.name), i) for i in sorted(ledger_items, key=lambda i: i.position)]
    if not items:  # a register row without item rows: fall back to the spec's own list
        items = [item_view(i, None) for i in raw_items.values()]
    return [{"name": spec.get("dataset") or "data", "wording": "", "keys": spec.get("keys") or [], "items": items}]


def return_detail(session: Session, return_id: str) -> dict[str, Any] | None:
    """One return's page: governance, items (per table) with wording and guidance, rules,
    distribution, collection, the items it shares with other returns, and its periods."""
    r = session.get(Return, return_id)
    if r is None:
        return None
    spec = r.spec or {}
    titles = dict(session.execute(select(Return.id, Return.title)).all())
    overlap = item_overlap_from_ledger(session)
    shared = []
    for ref, uses in overlap.items():
        mine = [name for rid, name in uses if rid == return_id]
        if not mine:
            continue
        others = [{"return_id": rid, "title": titles.get(rid, rid), "item": name} for rid, name in uses if rid != return_id]
        if others:
            wording = _dictionary().get(ref, {}).get("wording", ref)
            shared.append({"ref": ref, "wording": wording, "items": mine, "others": others})
    periods = session.execute(
        select(CollectionPeriod.period, CollectionPeriod.opens_at, CollectionPeriod.due_at, CollectionPeriod.closes_at)
        .where(CollectionPeriod.return_id == return_id)
        .order_by(CollectionPeriod.opens_at.desc())
    ).all()
    gov = spec.get("governance") or {}
    return {
        "id": r.id,
        "title": r.title,
        "version": r.version,
        "status": r.status,
        "frequency": r.frequency,
        "purpose": r.purpose,
        "legal_basis": r.legal_basis,
        "requester": r.requester,
        "owner": r.owner,
        "contact_email": gov.get("contact_email"),
        "review_date": r.review_date.isoformat(),
        "dag_id": f"return_{r.id}",
        "formats": spec.get("formats") or [],
        "providers": providers_of(spec, list(council_names(session))),
        "providers_all": spec.get("providers", "all") == "all",
        "collection": spec.get("collection") or {},
        "keys": spec.get("keys") or [],
        "tables": _tables(spec, list(r.items)),
        "rules": [
            {"code": x.get("code"), "severity": x.get("severity"), "message": x.get("message"), "items": x.get("items") or []}
            for x in spec.get("rules") or []
        ],
        "distribution": [
            {
                "requester": d.get("requester"),
                "name": d.get("name"),
                "contact_email": d.get("contact_email"),
                "destination": _destination(d.get("destination") or {}),
                "formats": d.get("formats") or [],
                "columns": d.get("columns") or [],
                "pseudonymise": d.get("pseudonymise") or [],
                "suppression": d.get("suppression"),
            }
            for d in spec.get("distribution") or []
        ],
        "shared": shared,
        "periods": [
            {"period": p, "opens_at": o.isoformat(), "due_at": d.isoformat(), "closes_at": c.isoformat()}
            for p, o, d, c in periods
        ],
    }
