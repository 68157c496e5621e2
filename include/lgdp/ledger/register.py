"""Writing the register, periods and expected submissions: the work of ``open_collection``.

Every write here is idempotent (inserts are ``ON CONFLICT DO NOTHING``, updates happen only when
the spec's content changed), because Airflow retries and reruns tasks: running a period's opening
twice must leave the ledger exactly as running it once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from lgdp.ledger.models import CollectionPeriod, Council, ExpectedSubmission, Return, ReturnItem
from lgdp.periods import Period
from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import Council as CouncilRef


@dataclass(frozen=True)
class OpenedPeriod:
    """What ``open_collection`` reports (ids and counts only: no row data in XCom)."""

    return_id: str
    period: str
    period_id: int
    councils: list[str]
    newly_registered: int

    def as_xcom(self) -> dict[str, object]:
        return {
            "return_id": self.return_id,
            "period": self.period,
            "period_id": self.period_id,
            "councils": self.councils,
            "newly_registered": self.newly_registered,
        }


def sync_councils(session: Session, councils: tuple[CouncilRef, ...]) -> None:
    if not councils:
        return
    stmt = insert(Council).values([{"code": c.code, "name": c.name} for c in councils])
    stmt = stmt.on_conflict_do_update(
        index_elements=[Council.code], set_={"name": stmt.excluded.name}, where=Council.name != stmt.excluded.name
    )
    session.execute(stmt)


def sync_return(session: Session, loaded: LoadedSpec) -> bool:
    """Register the return (or refresh it if the spec changed). Returns True if anything was written."""
    existing = session.get(Return, loaded.id)
    if existing is not None and existing.spec_sha256 == loaded.sha256:
        return False
    spec = loaded.spec
    g = spec.governance
    values = dict(
        title=spec.title,
        version=spec.version,
        status=g.status.value,
        frequency=spec.collection.frequency.value,
        requester=g.requester,
        owner=g.owner,
        purpose=g.purpose,
        legal_basis=g.legal_basis,
        review_date=g.review_date,
        spec_path=loaded.path,
        spec_sha256=loaded.sha256,
        spec=spec.model_dump(mode="json"),
        updated_at=dt.datetime.now(dt.timezone.utc),
    )
    if existing is None:
        session.add(Return(id=loaded.id, **values))
    else:
        for k, v in values.items():
            setattr(existing, k, v)
        existing.items.clear()
        session.flush()
    for pos, item in enumerate(loaded.items):
        session.add(
            ReturnItem(
                return_id=loaded.id,
                name=item.name,
                position=pos,
                dictionary_ref=item.ref,
                wording=item.wording,
                type=item.type.value,
                required=item.required,
                personal_data=item.personal_data,
            )
        )
    session.flush()
    return True


def sync_register(session: Session, specs: list[LoadedSpec], councils: tuple[CouncilRef, ...]) -> int:
    """Register every loaded spec (and the councils); returns how many returns were added or changed."""
    sync_councils(session, councils)
    return sum(sync_return(session, loaded) for loaded in specs)


def open_period(session: Session, loaded: LoadedSpec, period: Period) -> OpenedPeriod:
    """Register the period and one expected submission per provider council (idempotent)."""
    sync_councils(session, loaded.providers)
    sync_return(session, loaded)
    session.execute(
        insert(CollectionPeriod)
        .values(
            return_id=loaded.id,
            period=period.label,
            starts_on=period.starts_on,
            ends_on=period.ends_on,
            opens_at=period.opens_at,
            due_at=period.due_at,
            closes_at=period.closes_at,
            spec_version=loaded.spec.version,
            opened_at=dt.datetime.now(dt.timezone.utc),
        )
        .on_conflict_do_nothing(index_elements=["return_id", "period"])
    )
    period_id = session.execute(
        select(CollectionPeriod.id).where(
            CollectionPeriod.return_id == loaded.id, CollectionPeriod.period == period.label
        )
    ).scalar_one()
    codes = [c.code for c in loaded.providers]
    result = session.execute(
        insert(ExpectedSubmission)
        .values([{"period_id": period_id, "council_code": code} for code in codes])
        .on_conflict_do_nothing(index_elements=["period_id", "council_code"])
        .returning(ExpectedSubmission.id)
    )
    created = len(result.fetchall())
    return OpenedPeriod(loaded.id, period.label, period_id, codes, created)


def period_status(session: Session, return_id: str, period: str) -> dict[str, str]:
    """Council code -> submission status for one period (for the CLI, tests and later the UI)."""
    rows = session.execute(
        select(ExpectedSubmission.council_code, ExpectedSubmission.status)
        .join(CollectionPeriod)
        .where(CollectionPeriod.return_id == return_id, CollectionPeriod.period == period)
        .order_by(ExpectedSubmission.council_code)
    ).all()
    return {code: status.value for code, status in rows}


__all__ = ["OpenedPeriod", "open_period", "period_status", "sync_councils", "sync_register", "sync_return"]
