"""One delivery to one requester: claim a version in the ledger, build the files, publish, record.

The ledger makes it idempotent and retry-safe:

- The accepted set (council -> accepted version id) is compared with the newest *published*
  delivery: the same set publishes nothing (a rerun, a retry after success, the close after an
  all-accepted delivery). A different set (a council accepted late) is a new delivery version;
  earlier versions' folders stay as they were.
- A version is claimed (``publishing``) before anything is written. A publish that fails leaves
  that row, no manifest, and the error's type; the retry reuses the same version number and
  writes everything again, manifest last.

No Airflow here except through the callables passed in (the pseudonym key lookup); no row data
is logged or returned: ids, counts, hashes.
"""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import closing
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import pyarrow as pa

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from lgdp.distribute.manifest import DeliveredIssues, manifest, manifest_bytes, sha256_hex
from lgdp.distribute.publish import Destination, destination_for, publish_manifest, version_folder
from lgdp.distribute.select import AcceptedSet, accepted_batches, accepted_set, validation_summary
from lgdp.distribute.stream import read_ahead, stream_files
from lgdp.ledger.models import Delivery
from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import Distribution

log = logging.getLogger(__name__)
KeyLookup = Callable[[str], bytes]


@dataclass(frozen=True)
class DeliveryResult:
    requester: str
    version: int | None  # None: nothing was ever delivered (no council accepted)
    published: bool  # True if this call published a new version (or finished a failed one)
    reason: str | None
    rows: int
    councils: list[str]
    missing: list[str]
    manifest_sha256: str | None
    location: str | None
    files: list[str] = field(default_factory=list)

    def as_xcom(self) -> dict[str, object]:
        return asdict(self)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _lock(session: Session, return_id: str, period: str, requester: str) -> None:
    """Serialise claims of one (return, period, requester): two workers never take one version."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"lgdp-delivery:{return_id}:{period}:{requester}"}
    )


def deliveries(session: Session, return_id: str, period: str, requester: str) -> list[Delivery]:
    return list(
        session.execute(
            select(Delivery)
            .where(Delivery.return_id == return_id, Delivery.period == period, Delivery.requester == requester)
            .order_by(Delivery.version)
            .execution_options(populate_existing=True)
        ).scalars()
    )


def _same(versions: dict[str, int], delivery: Delivery) -> bool:
    return {k: int(v) for k, v in (delivery.versions or {}).items()} == versions


def claim(session: Session, loaded: LoadedSpec, period: str, dist: Distribution, accepted: AcceptedSet) -> tuple[Delivery | None, Delivery | None]:
    """(the version to publish now or None if nothing is new, the newest published version)."""
    _lock(session, loaded.id, period, dist.requester)
    rows = deliveries(session, loaded.id, period, dist.requester)
    published = [d for d in rows if d.status == "published"]
    last_published = published[-1] if published else None
    if last_published is not None and _same(accepted.versions, last_published):
        return None, last_published
    if not accepted.versions:
        return None, last_published
    reason = "late" if last_published else ("all_accepted" if accepted.complete else "closed")
    pending = rows[-1] if rows and rows[-1].status == "publishing" else None
    if pending is None:
        pending = Delivery(
            return_id=loaded.id,
            period=period,
            requester=dist.requester,
            version=(rows[-1].version + 1) if rows else 1,
            spec_version=loaded.spec.version,
            status="publishing",
            attempts=0,
            started_at=_now(),
        )
        session.add(pending)
    pending.reason = reason
    pending.versions = dict(accepted.versions)
    pending.missing = accepted.missing
    pending.spec_version = loaded.spec.version
    pending.attempts = (pending.attempts or 0) + 1
    session.flush()
    return pending, last_published


def deliver_issues(
    loaded: LoadedSpec, dist: Distribution, period: str, accepted: AcceptedSet, dest: Destination, folder: str
) -> DeliveredIssues:
    """``<return>_<period>_issues.csv`` beside the data: each included council's issues and
    explanations, entitled like the data (``build.issues_table``). Written before the manifest."""
    from lgdp.distribute.build import FileRecord, issues_file_name, issues_table
    from lgdp.distribute.formats import CONTENT_TYPES, to_csv
    from lgdp.distribute.publish import join
    from lgdp.ingest.explanations import issues_of_versions
    from lgdp.ledger.db import session

    with session() as s:
        found = issues_of_versions(s, accepted.versions)
    table, per = issues_table(loaded, dist, accepted.numbers, found)
    data = to_csv(table)
    name = issues_file_name(loaded.id, period)
    dest.put(join(folder, name), data, CONTENT_TYPES["csv"])
    return DeliveredIssues(FileRecord(name, "csv", len(data), sha256_hex(data)), table.num_rows, per)


def table_distributions(loaded: LoadedSpec, dist: Distribution) -> list[tuple[LoadedSpec, Distribution]]:
    """(table, what of it the requester gets): the return itself for a one-table return; for a
    return of several tables, each table the requester has columns of, with those columns
    (``table.item`` in the spec) as that table's items."""
    if not loaded.multi:
        return [(loaded, dist)]
    out = []
    for view in loaded.tables:
        prefix = f"{view.dataset}."
        cols = [c[len(prefix):] for c in dist.columns if c.startswith(prefix)]
        if not cols:
            continue
        update: dict[str, object] = {
            "columns": cols,
            "pseudonymise": [c[len(prefix):] for c in dist.pseudonymise if c.startswith(prefix)],
        }
        if dist.suppression is not None:
            items = [c[len(prefix):] for c in dist.suppression.items if c.startswith(prefix)]
            update["suppression"] = dist.suppression.model_copy(update={"items": items}) if items else None
        out.append((view, dist.model_copy(update=update)))
    return out


def combine_streamed(parts: list, dist: Distribution):
    """The tables' files as one delivery for the manifest (each file keeps its own rows and table)."""
    from lgdp.distribute.build import suppression_summary
    from lgdp.distribute.stream import Streamed

    out = Streamed(columns=list(dist.columns))
    for p in parts:
        out.rows += p.rows
        out.cells_suppressed += p.cells_suppressed
        out.records += p.records
    out.suppression = suppression_summary(dist, out.cells_suppressed)
    return out


def deliver(
    loaded: LoadedSpec,
    period: str,
    dist: Distribution,
    *,
    key_lookup: KeyLookup | None = None,
    destination: Destination | None = None,
    now: dt.datetime | None = None,
) -> DeliveryResult:
    """Publish the accepted data of ``period`` to one requester if it differs from what they have."""
    from lgdp.ledger.db import session

    dest = destination or destination_for(dist)
    with session() as s, s.begin():
        accepted = accepted_set(s, loaded, period)
        pending, last = claim(s, loaded, period, dist, accepted)
        if pending is None:
            current = last
            return DeliveryResult(
                requester=dist.requester,
                version=current.version if current else None,
                published=False,
                reason=current.reason if current else None,
                rows=int(current.rows or 0) if current else 0,
                councils=sorted((current.versions or {}).keys()) if current else [],
                missing=list(current.missing or []) if current else accepted.missing,
                manifest_sha256=current.manifest_sha256 if current else None,
                location=current.location if current else None,
            )
        delivery_id, version, reason = pending.id, pending.version, pending.reason
        supersedes = last.version if last else None
    key = None
    if dist.pseudonymise:
        if key_lookup is None or not dist.pseudonym_key_conn_id:
            raise ValueError(f"requester {dist.requester} needs a pseudonym key lookup")
        key = key_lookup(dist.pseudonym_key_conn_id)
    folder = version_folder(period, version)

    def council_tables(view: LoadedSpec, tdist: Distribution) -> Iterator[pa.Table]:  # in the read-ahead thread
        with session() as s:
            yield from accepted_batches(s, view, accepted, tdist)

    try:
        with session() as s:
            validation = validation_summary(s, accepted)
        parts = []
        for view, tdist in table_distributions(loaded, dist):
            with closing(read_ahead(lambda v=view, d=tdist: council_tables(v, d))) as batches:
                parts.append(stream_files(view, tdist, period, version, batches, key, dest, folder))
        built = parts[0] if not loaded.multi else combine_streamed(parts, dist)
        issues = deliver_issues(loaded, dist, period, accepted, dest, folder)
        doc = manifest(
            loaded, dist, period, version, reason, accepted, built, validation, now or _now(), supersedes, issues=issues
        )
        data = manifest_bytes(doc)
        publish_manifest(dest, folder, data)
    except Exception as exc:
        with session() as s, s.begin():
            row = s.get(Delivery, delivery_id)
            row.error = f"{type(exc).__name__}: {str(exc)[:500]}"
        raise
    digest = sha256_hex(data)
    location = dest.location + folder + "/"
    with session() as s, s.begin():
        row = s.get(Delivery, delivery_id)
        row.status = "published"
        row.rows = built.rows
        row.manifest_sha256 = digest
        row.location = location
        row.error = None
        row.published_at = _now()
    log.info(
        "Delivered %s %s to %s: version %d (%s), %d council(s), %d missing, %d rows, manifest %s",
        loaded.id, period, dist.requester, version, reason, len(accepted.versions), len(accepted.missing),
        built.rows, digest[:12],
    )
    return DeliveryResult(
        requester=dist.requester,
        version=version,
        published=True,
        reason=reason,
        rows=built.rows,
        councils=accepted.councils,
        missing=accepted.missing,
        manifest_sha256=digest,
        location=location,
        files=[f.name for f in built.records] + [issues.record.name],
    )


__all__ = ["DeliveryResult", "claim", "deliver", "deliver_issues", "deliveries"]
