"""Requester sign-off: files a requester writes back under ``<period>/returned/``.

A requester may return a final version of the data (any file) or a sign-off note
(``*.json``, e.g. ``{"delivery_version": 2, "status": "final"}``). Each new file is archived by
SHA-256 in ``lgdp.archived_files`` (the same immutable archive as council files, so the final data
is available from the platform whatever happens to the requester's container) and recorded in
``lgdp.requester_signoffs``. The newest recorded file of a (return, period, requester) is the
period's final state for that requester (:func:`final_state`). Recording is idempotent: a file
already recorded (same path, same bytes) is not recorded twice.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from lgdp.distribute.publish import Destination, returned_folder
from lgdp.ingest.archive import archive_file
from lgdp.ledger.models import RequesterSignoff

MAX_RETURNED_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Returned:
    path: str
    sha256: str
    size: int
    kind: str
    delivery_version: int | None


def signoff_fields(name: str, data: bytes) -> tuple[str, int | None]:
    """(kind, delivery version it answers) from a returned file; a JSON note names its version."""
    if not name.lower().endswith(".json"):
        return "data", None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "signoff", None
    version = doc.get("delivery_version") if isinstance(doc, dict) else None
    return "signoff", version if isinstance(version, int) and not isinstance(version, bool) else None


def collect_returned(session: Session, return_id: str, period: str, requester: str, dest: Destination) -> list[Returned]:
    """Archive and record every file under the period's ``returned/`` not recorded before."""
    known = {
        (p, when)
        for p, when in session.execute(
            select(RequesterSignoff.path, RequesterSignoff.returned_at).where(
                RequesterSignoff.return_id == return_id, RequesterSignoff.requester == requester
            )
        )
    }
    recorded: list[Returned] = []
    for f in dest.list(returned_folder(period)):
        if (f.path, f.modified) in known:
            continue
        if f.size > MAX_RETURNED_BYTES:
            raise ValueError(f"returned file {f.path} is {f.size} bytes, more than the {MAX_RETURNED_BYTES} kept")
        data = dest.get(f.path)
        digest = archive_file(session, data)
        kind, version = signoff_fields(f.path, data)
        done = session.execute(
            insert(RequesterSignoff)
            .values(
                return_id=return_id,
                period=period,
                requester=requester,
                path=f.path,
                file_sha256=digest,
                size=len(data),
                kind=kind,
                delivery_version=version,
                returned_at=f.modified,
                recorded_at=dt.datetime.now(dt.timezone.utc),
            )
            .on_conflict_do_nothing(index_elements=["return_id", "requester", "path", "file_sha256"])
            .returning(RequesterSignoff.id)
        ).scalar_one_or_none()
        if done is not None:
            recorded.append(Returned(f.path, digest, len(data), kind, version))
    return recorded


def final_state(session: Session, return_id: str, period: str, requester: str) -> RequesterSignoff | None:
    """The period's final state for a requester: the newest file they returned, or None."""
    return session.execute(
        select(RequesterSignoff)
        .where(
            RequesterSignoff.return_id == return_id,
            RequesterSignoff.period == period,
            RequesterSignoff.requester == requester,
        )
        .order_by(RequesterSignoff.returned_at.desc().nulls_last(), RequesterSignoff.id.desc())
        .limit(1)
    ).scalar_one_or_none()


__all__ = ["MAX_RETURNED_BYTES", "Returned", "collect_returned", "final_state", "signoff_fields"]
