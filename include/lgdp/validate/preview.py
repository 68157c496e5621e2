"""Change preview: what a proposed change would do to councils, before anyone is asked to comply.

``preview`` takes the latest accepted submission of every council for a period from the live
ledger (read only: the version, its file name and its archived bytes), and validates each file
twice in one scratch database (``lgdp.validate.offline.scratch_database``, thrown away
afterwards): under the rule book in force today and under the rule book with the proposed change.
Each run is exactly collection's (``parse_submission``, staging load, row-level checks against
Soda's counts). The report gives, per council and per rule, what would newly fail and what would
newly pass. The live ledger is never written.

What the scratch database cannot reproduce, for both rule books alike: year-on-year rules and
plausibility see no previous period there, so they flag nothing on either side.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lgdp.issues import Issue
from lgdp.specs.load import LoadedSpec

log = logging.getLogger(__name__)


@dataclass
class CouncilPreview:
    council: str
    version: int
    filename: str
    before: dict[str, int] = field(default_factory=dict)  # issues per code, today's rule book
    after: dict[str, int] = field(default_factory=dict)  # issues per code, with the change
    newly_failing: list[tuple[str, str | None, int | None]] = field(default_factory=list)  # (code, table, row)
    newly_passing: list[tuple[str, str | None, int | None]] = field(default_factory=list)
    status_before: str = ""
    status_after: str = ""


@dataclass
class PreviewReport:
    return_id: str
    period: str
    councils: list[CouncilPreview]
    without_accepted: list[str]

    def per_rule(self) -> dict[str, tuple[int, int, int]]:
        """code -> (rows newly failing, rows newly passing, councils newly failing)."""
        fail: Counter[str] = Counter()
        passing: Counter[str] = Counter()
        councils: Counter[str] = Counter()
        for c in self.councils:
            f = Counter(code for code, _, _ in c.newly_failing)
            fail.update(f)
            councils.update(f.keys())
            passing.update(code for code, _, _ in c.newly_passing)
        return {code: (fail[code], passing[code], councils[code]) for code in sorted(set(fail) | set(passing))}

    def render(self) -> str:
        lines = [f"Change preview for {self.return_id} {self.period}: {len(self.councils)} council(s) with an accepted "
                 "submission replayed under today's rule book and under the proposal"]
        if self.without_accepted:
            lines.append(f"  no accepted submission (not replayed): {len(self.without_accepted)} council(s)")
        rules = self.per_rule()
        lines.append("")
        lines.append("Per rule (rows newly failing / newly passing; councils newly failing):")
        lines.extend(f"  {code}: +{f:,} / -{p:,}; {n} council(s)" for code, (f, p, n) in rules.items())
        if not rules:
            lines.append("  nothing changes for any council")
        lines.append("")
        lines.append("Per council (status today -> with the change):")
        for c in self.councils:
            moved = ", ".join(f"{code} +{n}" for code, n in sorted(Counter(x for x, _, _ in c.newly_failing).items()))
            freed = ", ".join(f"{code} -{n}" for code, n in sorted(Counter(x for x, _, _ in c.newly_passing).items()))
            detail = "; ".join(x for x in (moved, freed) if x) or "no change"
            lines.append(f"  {c.council} (version {c.version}): {c.status_before} -> {c.status_after}: {detail}")
        return "\n".join(lines) + "\n"


def latest_accepted(session: Any, return_id: str, period: str) -> list[tuple[str, int, int, str, str]]:
    """(council, version id, version number, file name, sha256) of each council's latest accepted version."""
    from sqlalchemy import text

    rows = session.execute(
        text(
            """
            SELECT DISTINCT ON (s.council_code) s.council_code, v.id, v.version, v.filename, v.file_sha256
              FROM lgdp.collection_periods p
              JOIN lgdp.expected_submissions s ON s.period_id = p.id
              JOIN lgdp.submission_versions v ON v.submission_id = s.id AND v.status = 'accepted'
             WHERE p.return_id = :r AND p.period = :p
             ORDER BY s.council_code, v.version DESC
            """
        ),
        {"r": return_id, "p": period},
    ).all()
    return [(str(c), int(i), int(n), str(f or "submission"), str(h)) for c, i, n, f, h in rows]


def _key(i: Issue) -> tuple[str, str | None, int | None]:
    return (i.code, i.table, i.row)


def _status(issues: list[Issue]) -> str:
    if any(i.severity == "error" for i in issues):
        return "rejected"
    return "queries" if any(i.severity == "query" for i in issues) else "accepted"


def preview(before: LoadedSpec, after: LoadedSpec, period: str) -> PreviewReport:
    """Replay every council's latest accepted submission of ``period`` under both rule books."""
    from lgdp.ingest.archive import read_archived
    from lgdp.ledger.db import session
    from lgdp.parse import parse_submission
    from lgdp.validate.offline import _ledger_at, _validate, scratch_database

    with session() as s:  # the live ledger: read only
        accepted = latest_accepted(s, before.id, period)
        files = {c: (n, name, read_archived(s, sha)) for c, _vid, n, name, sha in accepted}
    providers = [c.code for c in before.providers]
    report = PreviewReport(before.id, period, [], [c for c in providers if c not in files])
    if not files:
        return report
    with scratch_database() as url, _ledger_at(url):
        for council, (number, name, data) in sorted(files.items()):
            found: dict[str, list[Issue]] = {}
            for label, spec in (("before", before), ("after", after)):
                result = parse_submission(spec, name, data, council_code=council)
                issues = list(result.issues)
                if result.table is not None and not any(i.severity == "error" for i in issues):
                    issues += _validate(spec, name, data, result, council, period)
                found[label] = issues
            b, a = found["before"], found["after"]
            kb, ka = {_key(i) for i in b}, {_key(i) for i in a}
            report.councils.append(CouncilPreview(
                council, number, name,
                dict(Counter(i.code for i in b)), dict(Counter(i.code for i in a)),
                sorted(ka - kb, key=str), sorted(kb - ka, key=str), _status(b), _status(a),
            ))
    return report


__all__ = ["CouncilPreview", "PreviewReport", "latest_accepted", "preview"]
