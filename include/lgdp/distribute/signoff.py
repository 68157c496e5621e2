"""Requester sign-off: files a requester writes back under ``<period>/returned/``.

A requester may return a final version of the data (any file) or a sign-off note
(``*.json``, e.g. ``{"delivery_version": 2, "status": "final"}``). Each new file is archived by
SHA-256 in ``lgdp.archived_files`` (the same immutable archive as council files, so the final data
is available from the platform whatever happens to the requester's container) and recorded in
``lgdp.requester_signoffs``. The newest accepted file of a (return, period, requester) is the
period's final state for that requester (:func:`final_state`). Recording is idempotent: a file
already recorded (same path, same bytes) is not recorded twice.

Files are collected by the ``distribute`` task after each delivery and, after the DAG run has
ended, by the platform DAG ``requester_signoffs`` (:func:`collect_everywhere`, hourly by default),
for every period with a published delivery.

**Bad or hostile files never stop a collection and are never lost.** A file that cannot be a
sign-off (an empty file; a note that is not UTF-8 JSON, is nested too deep to read, or names a
delivery version that was never published) is still archived and recorded, with kind
``rejected``, and never becomes the final state; the reason is returned (and logged by the task)
with the file's path, never its contents. A file larger than ``MAX_RETURNED_BYTES``, or a local
path that leads outside the requester's folder (a symbolic link), is not read at all: it stays
where the requester put it and the reason is returned each time. Only the requester's storage
being unreachable is an error (the task fails after the other requesters, and Airflow retries).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from lgdp.distribute.publish import Destination, OutsideFolder, destination_for, returned_folder
from lgdp.ingest.archive import archive_file
from lgdp.ledger.models import Delivery, RequesterSignoff

log = logging.getLogger(__name__)
MAX_RETURNED_BYTES = 512 * 1024 * 1024
REJECTED = "rejected"


@dataclass(frozen=True)
class Returned:
    path: str
    sha256: str | None  # None: not read (too large, or outside the folder)
    size: int
    kind: str  # data | signoff | rejected
    delivery_version: int | None
    problem: str | None = None  # why it is rejected or was not read; never the file's contents


def signoff_fields(name: str, data: bytes) -> tuple[str, int | None]:
    """(kind, delivery version it answers) from a returned file; a JSON note names its version.

    A note that cannot be read is still a sign-off without a version here; :func:`check_returned`
    decides whether it is acceptable."""
    if not name.lower().endswith(".json"):
        return "data", None
    doc = _json(data)
    version = doc.get("delivery_version") if isinstance(doc, dict) else None
    return "signoff", version if isinstance(version, int) and not isinstance(version, bool) else None


def _json(data: bytes) -> object | None:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: JSONDecodeError, huge ints
        return None


def check_returned(name: str, data: bytes, published: Iterable[int]) -> tuple[str, int | None, str | None]:
    """(kind, delivery version, problem): kind ``rejected`` with a message saying what to fix."""
    if not data:
        return REJECTED, None, "the file is empty: write the final data or a sign-off note"
    kind, version = signoff_fields(name, data)
    if kind == "data":
        return kind, None, None
    doc = _json(data)
    if not isinstance(doc, dict):
        return REJECTED, None, (
            "a .json sign-off note must be a UTF-8 JSON object such as "
            '{"delivery_version": 2, "status": "final"}; this one could not be read as one'
        )
    named = doc.get("delivery_version")
    if named is None:
        return kind, None, None
    versions = sorted(set(published))
    if version is None or version not in versions:
        shown = repr(named)[:40]
        return REJECTED, None, (
            f"the note names delivery_version {shown}, which was never published "
            f"(published: {', '.join(map(str, versions)) or 'none'})"
        )
    return kind, version, None


def published_versions(session: Session, return_id: str, period: str, requester: str) -> list[int]:
    return list(
        session.execute(
            select(Delivery.version).where(
                Delivery.return_id == return_id,
                Delivery.period == period,
                Delivery.requester == requester,
                Delivery.status == "published",
            )
        ).scalars()
    )


def collect_returned(session: Session, return_id: str, period: str, requester: str, dest: Destination) -> list[Returned]:
    """Archive and record every file under the period's ``returned/`` not recorded before.

    Returns what was recorded now (kinds ``data``, ``signoff`` and ``rejected``) and the files that
    could not be read (``sha256`` None), each with its problem. Storage errors propagate."""
    known = {
        (p, when)
        for p, when in session.execute(
            select(RequesterSignoff.path, RequesterSignoff.returned_at).where(
                RequesterSignoff.return_id == return_id, RequesterSignoff.requester == requester
            )
        )
    }
    published = published_versions(session, return_id, period, requester)
    out: list[Returned] = []
    for f in dest.list(returned_folder(period)):
        if (f.path, f.modified) in known:
            continue
        if f.size > MAX_RETURNED_BYTES:
            out.append(Returned(f.path, None, f.size, REJECTED, None, (
                f"{f.size} bytes is more than the {MAX_RETURNED_BYTES} bytes the platform keeps: "
                "not read; split the file or send it another way"
            )))
            continue
        try:
            data = dest.get(f.path)
        except OutsideFolder as exc:
            out.append(Returned(f.path, None, f.size, REJECTED, None, f"not read: {exc}"))
            continue
        kind, version, problem = check_returned(f.path, data, published)
        digest = archive_file(session, data)
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
                problem=problem,
            )
            .on_conflict_do_nothing(index_elements=["return_id", "requester", "path", "file_sha256"])
            .returning(RequesterSignoff.id)
        ).scalar_one_or_none()
        if done is not None:
            out.append(Returned(f.path, digest, len(data), kind, version, problem))
    return out


def final_state(session: Session, return_id: str, period: str, requester: str) -> RequesterSignoff | None:
    """The period's final state for a requester: the newest file they returned that is not
    rejected, or None."""
    return session.execute(
        select(RequesterSignoff)
        .where(
            RequesterSignoff.return_id == return_id,
            RequesterSignoff.period == period,
            RequesterSignoff.requester == requester,
            RequesterSignoff.kind != REJECTED,
        )
        .order_by(RequesterSignoff.returned_at.desc().nulls_last(), RequesterSignoff.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def delivered_periods(session: Session) -> list[tuple[str, str, str]]:
    """(return, period, requester) of every published delivery: where a ``returned/`` can be."""
    return [
        (r, p, q)
        for r, p, q in session.execute(
            select(Delivery.return_id, Delivery.period, Delivery.requester)
            .where(Delivery.status == "published")
            .distinct()
            .order_by(Delivery.return_id, Delivery.period, Delivery.requester)
        )
    ]


@dataclass
class Collection:
    """One sweep over every delivered period: what was recorded, what was not, what failed."""

    places: int = 0
    recorded: list[dict[str, object]] = field(default_factory=list)
    problems: list[dict[str, object]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def as_xcom(self) -> dict[str, object]:
        return {"places": self.places, "recorded": self.recorded, "problems": self.problems, "failures": self.failures}


def collect_everywhere(
    spec_for: Callable[[str], object] | None = None,
    destination: Callable[[object], Destination] = destination_for,
) -> Collection:
    """Collect returned files for every (return, period, requester) with a published delivery.

    ``spec_for`` loads a return's spec by id (default: the register). Each place is its own
    transaction: one requester's unreachable storage or a spec that no longer names the
    requester is reported and the others are still collected. Paths, kinds, sizes, hashes and
    messages only, never file contents."""
    from lgdp.ledger.db import session

    if spec_for is None:
        from lgdp.specs.load import load_register

        register = load_register()
        spec_for = register.get
    out = Collection()
    with session() as s:
        places = delivered_periods(s)
    for return_id, period, requester in places:
        where = f"{return_id} {period} {requester}"
        try:
            loaded = spec_for(return_id)
        except KeyError as exc:
            out.problems.append({"place": where, "path": None, "problem": f"not collected: {exc.args[0]}"})
            continue
        dist = next((d for d in loaded.spec.distribution if d.requester == requester), None)  # type: ignore[attr-defined]
        if dist is None:
            out.problems.append({
                "place": where, "path": None,
                "problem": f"not collected: the spec of {return_id} no longer names requester {requester}",
            })
            continue
        out.places += 1
        try:
            dest = destination(dist)
            with session() as s, s.begin():
                found = collect_returned(s, return_id, period, requester, dest)
        except Exception as exc:  # noqa: BLE001 - reported, the other requesters still collected
            out.failures.append(f"{where}: {type(exc).__name__}: {str(exc)[:300]}")
            log.warning("Collecting returned files for %s failed: %s", where, type(exc).__name__)
            continue
        for r in found:
            entry = {"place": where, "path": r.path, "kind": r.kind, "size": r.size, "sha256": r.sha256,
                     "delivery_version": r.delivery_version}
            if r.problem:
                out.problems.append({**entry, "problem": r.problem})
                log.warning("Returned file %s (%s): %s", r.path, where, r.problem)
            if r.sha256 is not None:
                out.recorded.append(entry)
    return out


__all__ = [
    "MAX_RETURNED_BYTES",
    "REJECTED",
    "Collection",
    "Returned",
    "check_returned",
    "collect_everywhere",
    "collect_returned",
    "delivered_periods",
    "final_state",
    "published_versions",
    "signoff_fields",
]
