"""``manifest.json``: what one delivery version holds, written last so its presence means "complete".

A requester who sees the manifest sees a complete delivery: every file it lists is already in
place, with the SHA-256 and size to check it by. Row counts are per council; councils missing
from the delivery (no accepted submission yet) are named, so a partial delivery at the close is
never mistaken for a whole one. No row data: codes, counts, hashes and names of councils only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from lgdp.distribute.build import ISSUE_COLUMNS, Built, FileRecord
from lgdp.distribute.select import AcceptedSet
from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import Distribution

MANIFEST_NAME = "manifest.json"


class Delivered(Protocol):
    """What the manifest needs of a delivery's files (``build.Built`` or ``stream.Streamed``)."""

    rows: int
    columns: list[str]
    suppression: dict[str, Any] | None

    @property
    def records(self) -> list[FileRecord]: ...
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class DeliveredIssues:
    """The issues file of a delivery: its record, rows and counts per council (no row data)."""

    record: FileRecord
    rows: int
    by_council: dict[str, dict[str, int]] = field(default_factory=dict)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(
    loaded: LoadedSpec,
    dist: Distribution,
    period: str,
    delivery_version: int,
    reason: str,
    accepted: AcceptedSet,
    built: Built | Delivered,
    validation: dict[str, Any],
    generated_at: dt.datetime,
    supersedes: int | None = None,
    issues: DeliveredIssues | None = None,
) -> dict[str, Any]:
    """The manifest as a JSON-able dict (see ``docs/distribution.md`` for every field)."""
    from lgdp.distribute.build import column_types

    names = {c.code: c.name for c in loaded.providers}
    files = [
        {"name": f.name, "format": f.format, "content": "data", "bytes": f.size, "sha256": f.sha256,
         "rows": built.rows if getattr(f, "rows", None) is None else f.rows,
         **({"table": f.table} if getattr(f, "table", None) else {})}
        for f in built.records
    ]
    if issues is not None:
        f = issues.record
        files.append(
            {"name": f.name, "format": f.format, "content": "issues", "bytes": f.size, "sha256": f.sha256, "rows": issues.rows}
        )
    return {
        "manifest_format": MANIFEST_FORMAT,
        "return": {"id": loaded.id, "title": loaded.spec.title, "spec_version": loaded.spec.version},
        "period": period,
        "requester": {"id": dist.requester, "name": dist.name},
        "delivery_version": delivery_version,
        "supersedes_version": supersedes,
        "reason": reason,
        "complete": accepted.complete,
        "councils_included": [
            {
                "code": code,
                "name": names.get(code, code),
                "submission_version": accepted.numbers.get(code),
                "rows": accepted.rows.get(code, 0),
            }
            for code in accepted.councils
        ],
        "councils_missing": [{"code": code, "name": names.get(code, code)} for code in accepted.missing],
        "rows": built.rows,
        "columns": built.columns,
        "column_types": column_types(loaded, dist),
        "pseudonymised": list(dist.pseudonymise),
        "pseudonymisation": "HMAC-SHA256 with this requester's key, lowercase hex" if dist.pseudonymise else None,
        "suppression": built.suppression,
        "formula_neutralisation": (
            "text values starting with = + - @ tab or CR are prefixed with ' in csv and xml; "
            "xlsx holds every text value as a text cell, never run, exactly as accepted"
        ),
        "files": files,
        "issues": None if issues is None else {
            "file": issues.record.name,
            "rows": issues.rows,
            "columns": list(ISSUE_COLUMNS),
            "delivered": "each included council's issues and explanations on the delivered version, where every "
            "item an issue names is a column delivered to this requester unpseudonymised and unsuppressed",
            "by_council": [{"code": code, **n} for code, n in sorted(issues.by_council.items())],
        },
        "validation": validation,
        "generated_at": generated_at.astimezone(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def manifest_bytes(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


__all__ = ["DeliveredIssues", "MANIFEST_FORMAT", "MANIFEST_NAME", "manifest", "manifest_bytes", "sha256_hex"]
