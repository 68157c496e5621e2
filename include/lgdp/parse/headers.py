"""Map a file's header row to the spec's items, tolerantly, and say what does not fit.

A heading matches an item when, after *normalising* both (lower case; runs of spaces,
underscores, hyphens, dots and other punctuation made one ``_``; a trailing ``*`` or
``(required)`` dropped), it equals the item's name or its wording. So ``Child ID``,
``child-id``, `` CHILD_ID `` and ``Child identifier`` (the wording) all map to ``child_id``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from lgdp.issues import Issue
from lgdp.parse.codes import issue
from lgdp.specs.load import LoadedSpec

_SEP = re.compile(r"[^0-9a-z]+")
_REQ = re.compile(r"\s*(\*|\(required\)|\(optional\))\s*$", re.I)


def normalise(heading: str) -> str:
    h = _REQ.sub("", heading.strip().lstrip("\ufeff"))
    return _SEP.sub("_", h.lower()).strip("_")


def aliases(loaded: LoadedSpec) -> dict[str, str]:
    """Normalised heading -> item name (names first, so a name always beats another's wording)."""
    out: dict[str, str] = {}
    for it in loaded.items:
        out.setdefault(normalise(it.name), it.name)
    for it in loaded.items:
        out.setdefault(normalise(it.wording), it.name)
    return out


@dataclass
class HeaderMap:
    columns: dict[str, int] = field(default_factory=dict)
    """Item name -> index of the file's column that holds it."""
    unknown: list[int] = field(default_factory=list)
    blank: list[int] = field(default_factory=list)
    duplicates: dict[str, list[int]] = field(default_factory=dict)
    missing_required: list[str] = field(default_factory=list)
    missing_optional: list[str] = field(default_factory=list)

    def required_share(self, loaded: LoadedSpec) -> float:
        req = [it.name for it in loaded.items if it.required]
        if not req:
            return 1.0
        return sum(1 for n in req if n in self.columns) / len(req)

    def item_share(self, loaded: LoadedSpec) -> float:
        return len(self.columns) / len(loaded.items)


def map_headers(loaded: LoadedSpec, headers: list[str]) -> HeaderMap:
    table = aliases(loaded)
    hm = HeaderMap()
    for i, h in enumerate(headers):
        key = normalise(h)
        if not key:
            hm.blank.append(i)
            continue
        name = table.get(key)
        if name is None:
            hm.unknown.append(i)
        elif name in hm.columns:
            hm.duplicates.setdefault(name, [hm.columns[name]]).append(i)
        else:
            hm.columns[name] = i
    for it in loaded.items:
        if it.name not in hm.columns:
            (hm.missing_required if it.required else hm.missing_optional).append(it.name)
    return hm


def header_issues(loaded: LoadedSpec, headers: list[str], hm: HeaderMap, letters: list[str] | None = None) -> list[Issue]:
    """HDR-001 (missing required), HDR-002 (unknown), HDR-003 (duplicate); blank headings are checked by the caller."""
    out: list[Issue] = []
    for name in hm.missing_required:
        out.append(issue("HDR-001", row=1, item=name, name=name, wording=loaded.item(name).wording))
    candidates = {normalise(it.name): it.name for it in loaded.items}
    candidates.update({normalise(it.wording): it.name for it in loaded.items})
    for i in hm.unknown:
        guess = difflib.get_close_matches(normalise(headers[i]), list(candidates), n=1, cutoff=0.75)
        hint = ""
        if guess and candidates[guess[0]] not in hm.columns:
            hint = f" Did you mean '{candidates[guess[0]]}'?"
        out.append(issue("HDR-002", row=1, value=headers[i], header=headers[i], hint=hint))
    for name, idx in hm.duplicates.items():
        where = ", ".join(f"'{headers[i]}' in column {letters[i] if letters else i + 1}" for i in idx)
        out.append(issue("HDR-003", row=1, item=name, name=name, headers=where))
    return out
