"""The ``distribute`` task: deliver accepted data to every requester of a return's period.

When it publishes (the issue's rule): as soon as every provider council is accepted, and at the
close with whatever is accepted (the manifest lists the councils missing). Until one of those,
the task is *deferred* on ``AcceptanceTrigger``, which polls the ledger from the triggerer, so no
worker slot is held. In the DAG it runs after the collect tasks with ``trigger_rule="all_done"``:
a council whose collect task failed or was skipped (not received) never blocks the others'
delivery. Each requester's delivery is idempotent (``lgdp.distribute.deliver``): a rerun with
nothing new publishes nothing; a council accepted after a delivery (its collect task cleared and
rerun, then this task cleared) publishes a new delivery version and earlier versions stay.

After publishing, files a requester returned under ``returned/`` are recorded (sign-off), and each
requester is emailed the manifest's summary once per delivery version. Files returned after the
run has ended are recorded by ``CollectSignoffsOperator`` (the platform DAG ``requester_signoffs``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any, AsyncIterator

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from lgdp.distribute.deliver import DeliveryResult
    from lgdp.periods import Period
    from lgdp.specs.load import LoadedSpec
    from lgdp.specs.model import Distribution


def connection_password(conn_id: str) -> bytes:
    """A requester's pseudonym key: the password of the Airflow connection the spec names."""
    from airflow.sdk import BaseHook

    from lgdp.distribute.pseudonymise import check_key

    return check_key(BaseHook.get_connection(conn_id).password, conn_id)


def acceptance(return_id: str, period: str) -> tuple[bool, dict[str, int]]:
    """(every provider accepted?, council -> accepted version id) from the ledger, now."""
    from lgdp.airflow.operators import load_return
    from lgdp.distribute.select import accepted_set
    from lgdp.ledger.db import session

    loaded = load_return(return_id)
    with session() as s:
        found = accepted_set(s, loaded, period)
    return found.complete, found.versions


class AcceptanceTrigger(BaseTrigger):
    """Waits until every provider council of a period is accepted, or the collection closes.

    Polls the ledger (a cheap query, in a thread so the triggerer's loop is never blocked) every
    ``poll_interval`` seconds; database errors are logged and retried on the next poll.
    """

    def __init__(self, *, return_id: str, period: str, closes_at: str, poll_interval: float) -> None:
        super().__init__()
        self.return_id = return_id
        self.period = period
        self.closes_at = closes_at
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "return_id": self.return_id,
                "period": self.period,
                "closes_at": self.closes_at,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        closes = dt.datetime.fromisoformat(self.closes_at)
        while True:
            now = dt.datetime.now(dt.timezone.utc)
            if now >= closes:
                yield TriggerEvent({"status": "closed", "period": self.period})
                return
            try:
                complete, _ = await asyncio.to_thread(acceptance, self.return_id, self.period)
            except Exception as exc:  # noqa: BLE001 - a ledger outage: keep waiting, try again
                self.log.warning("Reading the ledger failed (%s); retrying", type(exc).__name__)
                complete = False
            if complete:
                yield TriggerEvent({"status": "complete", "period": self.period})
                return
            await asyncio.sleep(min(self.poll_interval, max((closes - now).total_seconds(), 0) + 1))


class DistributeOperator(BaseOperator):
    """Deliver the period's accepted data to each requester of the spec (see the module docstring).

    Returns per requester the delivery version, whether this run published it, councils and
    counts (ids and counts only, never rows).
    """

    template_fields = ("period",)
    ui_color = "#fdebd0"

    def __init__(self, *, return_id: str, period: str | None = None, notify: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.return_id = return_id
        self.period = period
        self.notify = notify

    def _period(self, context: Any, loaded: LoadedSpec) -> Period:
        from lgdp.airflow.operators import run_period
        from lgdp.periods import period_from_label

        if self.period:
            return period_from_label(loaded.spec.collection, self.period)
        opened = context["ti"].xcom_pull(task_ids="open_collection")
        label = opened.get("period") if isinstance(opened, dict) else None
        return run_period(context, loaded, label)

    def execute(self, context: Any) -> dict[str, Any] | None:
        from lgdp.airflow.operators import load_return

        loaded = load_return(self.return_id)
        return self._deliver_or_wait(context, loaded, self._period(context, loaded))

    def resume(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any] | None:
        from lgdp.airflow.operators import load_return

        loaded = load_return(self.return_id)
        return self._deliver_or_wait(context, loaded, self._period(context, loaded))

    def _deliver_or_wait(self, context: Any, loaded: LoadedSpec, period: Period) -> dict[str, Any] | None:
        from lgdp.airflow.operators import poll_interval_seconds

        complete, versions = acceptance(loaded.id, period.label)
        closed = dt.datetime.now(dt.timezone.utc) >= period.closes_at
        if not (complete or closed):
            self.log.info(
                "%d of %d councils accepted; waiting until all are or the close (%s)",
                len(versions), len(loaded.providers), period.closes_at.isoformat(),
            )
            self.defer(
                trigger=AcceptanceTrigger(
                    return_id=loaded.id,
                    period=period.label,
                    closes_at=period.closes_at.isoformat(),
                    poll_interval=poll_interval_seconds(loaded),
                ),
                method_name="resume",
            )
            return None
        return deliver_all(loaded, period.label, notify=self.notify, log=self.log)


def deliver_all(loaded: LoadedSpec, period: str, *, notify: bool = True, log: Any = None) -> dict[str, Any]:
    """Every requester's delivery, then their returned files; one requester's failure fails the
    task (after the others are done) so Airflow retries it, and the done ones publish nothing new."""
    from lgdp.distribute.deliver import deliver
    from lgdp.distribute.publish import destination_for
    from lgdp.distribute.signoff import collect_returned
    from lgdp.ledger.db import session

    out: dict[str, Any] = {"period": period, "requesters": {}}
    _, versions = acceptance(loaded.id, period)
    if not versions:  # nothing to deliver, and no reason to reach anyone's storage
        if log is not None:
            log.info("No council's return is accepted for %s %s: nothing delivered", loaded.id, period)
        return out
    failures: list[str] = []
    for dist in loaded.spec.distribution:
        try:
            dest = destination_for(dist)
            result = deliver(loaded, period, dist, key_lookup=connection_password, destination=dest)
            if notify and result.published:
                notify_requester(loaded, period, dist, result)
            with session() as s, s.begin():
                returned = collect_returned(s, loaded.id, period, dist.requester, dest)
        except Exception as exc:  # noqa: BLE001 - the others still get their delivery; re-raised below
            failures.append(f"{dist.requester}: {type(exc).__name__}: {str(exc)[:300]}")
            if log is not None:
                log.exception("Delivery to %s failed", dist.requester)
            continue
        recorded = [r for r in returned if r.sha256 is not None]
        out["requesters"][dist.requester] = {**result.as_xcom(), "returned_files": len(recorded)}
        if log is not None:
            log.info(
                "%s: version %s %s (%d rows, %d missing councils); %d returned file(s) recorded",
                dist.requester, result.version, "published" if result.published else "unchanged",
                result.rows, len(result.missing), len(recorded),
            )
            for r in returned:
                if r.problem:
                    log.warning("Returned file %s from %s: %s", r.path, dist.requester, r.problem)
    if failures:
        raise RuntimeError("delivery failed for " + "; ".join(failures))
    return out


class CollectSignoffsOperator(BaseOperator):
    """Record the files requesters returned under ``returned/`` for every delivered period.

    The ``distribute`` task collects them only while it runs; this operator (the platform DAG
    ``requester_signoffs``) does it after the return's DAG run has ended, on a schedule. Bad or
    hostile files are kept and reported (``lgdp.distribute.signoff``), never a failure; a
    requester whose storage cannot be reached fails the task after the others are collected, so
    Airflow retries. Returns paths, kinds, hashes and messages only (no file contents).
    """

    ui_color = "#fdebd0"

    def execute(self, context: Any) -> dict[str, Any]:
        from lgdp.distribute.signoff import collect_everywhere

        done = collect_everywhere()
        self.log.info(
            "Looked in %d delivered period(s): %d file(s) recorded, %d problem(s)",
            done.places, len(done.recorded), len(done.problems),
        )
        for p in done.problems:
            self.log.warning("%s %s: %s", p["place"], p.get("path") or "", p["problem"])
        if done.failures:
            raise RuntimeError("collecting returned files failed for " + "; ".join(done.failures))
        return done.as_xcom()


def notify_requester(loaded: LoadedSpec, period: str, dist: Distribution, result: DeliveryResult) -> None:
    """Email the requester the manifest's summary, once per delivery version."""
    from lgdp.notify import Email, render, send_email

    names = {c.code: c.name for c in loaded.providers}
    context = {
        "return_title": loaded.spec.title,
        "return_id": loaded.id,
        "period": period,
        "requester_name": dist.name,
        "version": result.version,
        "reason": result.reason,
        "rows": result.rows,
        "councils": len(result.councils),
        "providers": len(loaded.providers),
        "missing": [names.get(c, c) for c in result.missing],
        "files": result.files,
        "location": result.location,
        "manifest_sha256": result.manifest_sha256,
        "contact": loaded.spec.governance.contact_email,
    }
    r = render("delivery", context)
    send_email(
        Email(to=[dist.contact_email], subject=r.subject, text=r.text, html=r.html),
        dedupe_key=f"delivery:{loaded.id}:{period}:{dist.requester}:v{result.version}",
        kind="delivery",
        return_id=loaded.id,
        period=period,
    )


__all__ = [
    "AcceptanceTrigger",
    "CollectSignoffsOperator",
    "DistributeOperator",
    "acceptance",
    "connection_password",
    "deliver_all",
    "notify_requester",
]
