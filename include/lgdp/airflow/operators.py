"""Operators of the return DAGs. They own behaviour; the computing is in ``lgdp`` itself."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:  # imported where tasks run, so parsing DAG files stays light
    from lgdp.periods import Period
    from lgdp.specs.load import LoadedSpec


def load_return(return_id: str) -> LoadedSpec:
    """Load one return's spec where the task runs (never pickled through the scheduler)."""
    from lgdp.specs.load import load_reference, load_spec, specs_dir

    return load_spec(specs_dir() / f"{return_id}.yaml", load_reference())


def resolve_period(loaded: LoadedSpec, label: str | None, run_after: dt.datetime | None) -> Period:
    """The run's period: the label if given, else the one whose window opened last."""
    from lgdp.periods import period_from_label, period_opening_at

    if label and label not in ("None", ""):
        return period_from_label(loaded.spec.collection, label)
    when = run_after or dt.datetime.now(dt.timezone.utc)
    return period_opening_at(loaded.spec.collection, when)


def run_period(context: Any, loaded: LoadedSpec, label: str | None) -> Period:
    """The run's period; a label that is not a period of this return fails at once (no retries)."""
    from airflow.sdk.exceptions import AirflowFailException

    dag_run = context["dag_run"]
    when = getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
    if not label:
        conf = getattr(dag_run, "conf", None) or {}
        label = conf.get("period") if isinstance(conf, dict) else None
    if label is not None and not isinstance(label, str):
        raise AirflowFailException(f"period: {label!r} must be a period label such as 2025-26")
    try:
        return resolve_period(loaded, label, when)
    except ValueError as exc:
        raise AirflowFailException(f"period: {exc}") from None


class OpenCollectionOperator(BaseOperator):
    """Register the period and one expected submission per provider council in the ledger.

    The period is ``period`` if given, else the run's conf ``{"period": ...}``, else the latest
    period whose window has opened at the run's logical date. Idempotent: a retry or rerun leaves the ledger as one run did. Returns ids and counts only.
    """

    template_fields = ("period",)
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        return_id: str,
        period: str | None = None,
        conn_id: str = "msgraph_sharepoint",
        drive_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.return_id = return_id
        self.period = period
        self.conn_id = conn_id
        self.drive_id = drive_id

    def execute(self, context: Any) -> dict[str, object]:
        from lgdp.ledger.db import session
        from lgdp.ledger.register import open_period

        loaded = load_return(self.return_id)
        period = run_period(context, loaded, self.period)
        with session() as s, s.begin():
            opened = open_period(s, loaded, period)
        self.log.info(
            "Opened %s %s (period id %s): %d provider councils, %d newly registered; due %s",
            self.return_id, period.label, opened.period_id, len(opened.councils), opened.newly_registered,
            period.due_in_words(),
        )
        created = asyncio.run(self._prepare_folders(loaded, period))
        self.log.info("Council folders ready; %d template(s) uploaded", created)
        return opened.as_xcom()

    async def _prepare_folders(self, loaded: LoadedSpec, period: Period) -> int:
        """Each provider's folder with the templates in its ``_platform`` subfolder (idempotent)."""
        from lgdp.collect.graph import SharePointDrive, folder_path
        from lgdp.collect.template import template_files

        files = template_files(loaded.for_period(period.label), period.label, period.due_in_words())  # the rule book of the period
        uploaded = 0
        async with SharePointDrive(conn_id=self.conn_id, drive_id=self.drive_id) as drive:
            for council in loaded.providers:
                folder = folder_path(loaded.id, period.label, council.code)
                await drive.ensure_folder(f"{folder}/{PLATFORM_FOLDER}")
                for name, content in files.items():
                    target = f"{folder}/{PLATFORM_FOLDER}/{name}"
                    if await drive.get_item(target) is None:
                        await drive.upload(target, content)
                        uploaded += 1
        return uploaded


from lgdp.collect.graph import PLATFORM_FOLDER  # noqa: E402  (re-exported: the folder convention lives with the client)


def poll_interval_seconds(loaded: LoadedSpec) -> float:
    """The spec's polling interval; ``LGDP_POLL_INTERVAL_SECONDS`` shortens it for tests and demos."""
    override = os.environ.get("LGDP_POLL_INTERVAL_SECONDS")
    return float(override) if override else loaded.spec.collection.poll_interval_minutes * 60.0


from lgdp.airflow.triggers import MAX_BACKOFF_SECONDS, CouncilFolderTrigger, item_ref  # noqa: E402

DELIVERY_BACKOFF_BASE_SECONDS = 30.0  # first retry of owed feedback after 60 s, doubling up to the trigger's cap
# Never wake sooner: a task resumed within moments of deferring can lose its try to the executor's
# late event for the deferral (an Airflow 3.3 scheduler race), so short wake-ups are not worth it.
MIN_WAKE_SECONDS = 10.0
READ_ATTEMPTS = 5  # downloads of one file before giving up on reading a settled copy this time


def delivery_backoff(failures: int, poll_interval: float) -> float:
    """Seconds until owed feedback (or an unreadable file) is tried again: 1, 2, 4 ... minutes, up to 15."""
    base = min(poll_interval, DELIVERY_BACKOFF_BASE_SECONDS)
    return min(MAX_BACKOFF_SECONDS, max(MIN_WAKE_SECONDS, 2 * base * 2 ** min(max(failures, 1) - 1, 10)))


class CollectSubmissionOperator(BaseOperator):
    """One council's submission for one period: wait for files, process each, until accepted or closed.

    The task's state is the council's progress: deferred = awaiting a file (no worker slot held),
    running = processing a file, success = accepted and told, failed or skipped = not received by
    the close (the spec's ``collection.not_received``). Between versions it waits again.

    It works in a loop and defers only when there is nothing to do now: files already in the
    folder are processed one after another in the task (oldest first), so the trigger is never
    asked a question whose answer is known (a trigger firing at once costs a try in Airflow 3.3,
    see docs/collection.md). Feedback is delivered after each decision but never fails the task:
    what is owed stays in the ledger, and the task waits for files *and* for the next delivery
    attempt (back-off up to 15 minutes), so an outage of any length delays feedback, never loses it
    or stops collection. The task finishes only when nothing is owed.
    """

    ui_color = "#e8f6f3"

    def __init__(
        self,
        *,
        return_id: str,
        council: str,
        council_name: str = "",
        conn_id: str = "msgraph_sharepoint",
        drive_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.return_id = return_id
        self.council = council
        self.council_name = council_name
        self.conn_id = conn_id
        self.drive_id = drive_id

    def _period(self, context: Any, loaded: LoadedSpec) -> Period:
        opened = context["ti"].xcom_pull(task_ids="open_collection")
        label = opened.get("period") if isinstance(opened, dict) else None
        return run_period(context, loaded, label)

    def execute(self, context: Any) -> dict[str, object] | None:
        loaded = load_return(self.return_id)
        return self._collect(context, loaded, self._period(context, loaded), {})

    def resume(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, object] | None:
        loaded = load_return(self.return_id)
        return self._collect(context, loaded, self._period(context, loaded), event or {})

    def _collect(
        self, context: Any, loaded: LoadedSpec, period: Period, event: dict[str, Any]
    ) -> dict[str, object] | None:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from lgdp.airflow.triggers import new_items
        from lgdp.collect.graph import SharePointDrive, folder_path
        from lgdp.collect.process import mark_not_received, submission_state

        drive = SharePointDrive(conn_id=self.conn_id, drive_id=self.drive_id)
        folder = folder_path(loaded.id, period.label, self.council)
        failures = int(event.get("failures") or 0)
        todo = list(event.get("items", [])) if event.get("status") == "files" else []
        handled: set[str] = set()  # each file once per try, so the loop always ends
        held: list[dict[str, Any]] = []  # one CSV per table: the tables' files waiting for the others
        while True:
            todo, waiting = self._assemble(loaded, period, drive, folder, todo)
            held += waiting
            unread = [ref for ref in todo if not self._process(loaded, period, drive, ref)]
            handled.update(f"{r['id']}:{r['etag']}" for r in todo)
            delivered = self._send_feedback(loaded, period, drive)
            state = submission_state(loaded.id, period.label, self.council)
            closed = dt.datetime.now(dt.timezone.utc) >= period.closes_at
            todo = []
            if not closed:
                try:  # what the trigger would find at once: handle it here instead of deferring
                    listing = [item_ref(i) for i in drive.list_folder_sync(folder)]
                    skip = handled | {f"{r['id']}:{r['etag']}" for r in unread + held}
                    todo = [r for r in new_items(listing, state.seen) if f"{r['id']}:{r['etag']}" not in skip]
                except Exception as exc:  # noqa: BLE001 - Graph down: the trigger backs off and keeps waiting
                    self.log.warning("Listing %s before waiting failed (%s); the trigger will retry", folder, type(exc).__name__)
            if todo:
                continue
            owed = not delivered or bool(unread)
            failures = failures + 1 if owed else 0
            if not owed and state.accepted:
                self.log.info("Accepted (version %s); the council has been told", state.accepted_version)
                return state.as_xcom()
            if not owed and closed:
                if mark_not_received(loaded.id, period.label, self.council):
                    message = f"{self.council_name or self.council}: nothing accepted by the close ({period.closes_at:%d %B %Y})"
                    if loaded.spec.collection.not_received == "skip":
                        raise AirflowSkipException(message)
                    raise AirflowFailException(message)
                return submission_state(loaded.id, period.label, self.council).as_xcom()
            wake = delivery_backoff(failures, poll_interval_seconds(loaded)) if owed else None
            if wake is not None:
                self.log.warning(
                    "Something is owed (feedback not delivered or a file not readable yet); trying again in %.0f s "
                    "while waiting for files (attempt %d)", wake, failures,
                )
            self.defer(
                trigger=CollectWaitTrigger(
                    folder=folder,
                    seen=state.seen + [f"{r['id']}:{r['etag']}" for r in unread + held],
                    closes_at=period.closes_at.isoformat(),
                    poll_interval=poll_interval_seconds(loaded),
                    conn_id=self.conn_id,
                    drive_id=self.drive_id,
                    wake_after=wake,
                    failures=failures,
                ),
                method_name="resume",
            )
            return None

    def _assemble(
        self, loaded: LoadedSpec, period: Period, drive: Any, folder: str, todo: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(what to process, the table CSVs waiting for the others). A multi-table return sent as
        one CSV file per table (``children.csv``, ``episodes.csv``...) is one submission once every
        table's file is in the folder: the files are read and processed together, as one zip."""
        from lgdp.collect.process import table_part

        parts = [r for r in todo if table_part(loaded, r["name"])]
        if not parts:
            return todo, []
        rest = [r for r in todo if r not in parts]
        try:
            listing = [item_ref(i) for i in drive.list_folder_sync(folder) if not getattr(i, "is_folder", False)]
        except Exception as exc:  # noqa: BLE001 - Graph down: the files wait for the next look
            self.log.warning("Listing %s failed (%s); the table files wait", folder, type(exc).__name__)
            return rest, parts
        latest: dict[str, dict[str, Any]] = {}
        for r in sorted(listing, key=lambda r: r.get("last_modified") or ""):
            table = table_part(loaded, r["name"])
            if table:
                latest[table] = r
        missing = [t.dataset for t in loaded.tables if t.dataset not in latest]
        if missing:
            self.log.info("Table files %s are in; waiting for %s before processing them as one submission",
                          ", ".join(sorted(latest)), ", ".join(f"{m}.csv" for m in missing))
            return rest, parts
        return rest + [{"bundle": latest, **next(iter(latest.values()))}], []

    def _process(self, loaded: LoadedSpec, period: Period, drive: Any, ref: dict[str, Any]) -> bool:
        """Process one file; False if it could not be read now (Graph down): it is tried again later."""
        from lgdp.collect.graph import GraphError, GraphNotFound
        from lgdp.collect.process import process_upload

        from lgdp.collect.process import bundle_parts

        parts: dict[str, tuple[dict[str, Any], bytes]] = {}
        for table, part in (ref.get("bundle") or {None: ref}).items():
            try:
                read = read_settled(drive, part)
            except GraphNotFound:
                self.log.info("A file went from the folder before it could be read (item %s); nothing to collect", part["id"])
                return True
            except GraphError as exc:
                self.log.warning("Could not read item %s now (%s); it is tried again later", part["id"], exc)
                return False
            if read is None:
                self.log.warning("Item %s kept changing while it was read; it is tried again later", part["id"])
                return False
            parts[table] = (read[1], read[0])
        if "bundle" in ref:
            settled, data = bundle_parts(loaded, period.label, {t: p for t, p in parts.items() if t})
            self.log.info("One CSV file per table (%s): processed together as one submission", ", ".join(sorted(parts)))
        else:
            settled, data = parts[None]
        if "bundle" not in ref and settled["etag"] != ref["etag"]:
            self.log.info("Item %s was replaced after it was listed: the content read is recorded with its own eTag", ref["id"])
        outcome = process_upload(loaded, period.label, self.council, settled, data)
        if outcome.kind == "explanations":
            self.log.info(
                "Returned feedback workbook for version %s: %s; %d query(ies) still unexplained",
                outcome.version, outcome.status, outcome.unexplained,
            )
        elif outcome.kind == "late":
            self.log.info("A file arrived after acceptance (version %s stands): kept, not processed; the council is told", outcome.version)
        else:
            self.log.info(
                "Version %s (%s): %s with %d error(s), %d query(ies) (%d unexplained), %d row(s) loaded",
                outcome.version, "new" if outcome.new else "seen before", outcome.status,
                outcome.errors, outcome.queries, outcome.unexplained, outcome.rows,
            )
        return True

    def _send_feedback(self, loaded: LoadedSpec, period: Period, drive: Any) -> bool:
        """Deliver what the council is owed, oldest first: workbook, data, then the email. True if all went.

        Worked out from the ledger each time, so after a Graph or SMTP outage the next attempt
        delivers exactly what was missed; a failure is logged and left owed, never fatal.
        """
        from lgdp.collect.respond import deliver, pending

        try:
            owed = pending(loaded.id, period.label, self.council)
        except Exception as exc:  # noqa: BLE001 - the ledger is down: nothing can be worked out now
            self.log.warning("Could not work out the feedback owed (%s); tried again later", type(exc).__name__)
            return False
        for item in owed:
            try:
                status = deliver(loaded, period.label, self.council, item, drive)
            except Exception as exc:  # noqa: BLE001 - any outage: owed, tried again with back-off
                self.log.warning(
                    "Feedback %s for version id %s not delivered (%s: %s); it stays owed",
                    item.kind, item.version_id, type(exc).__name__, str(exc)[:200],
                )
                return False
            self.log.info("Feedback %s for version id %s: email %s", item.kind, item.version_id, status)
        return True


def read_settled(drive: Any, ref: dict[str, Any]) -> tuple[bytes, dict[str, Any]] | None:
    """The file's bytes and its reference with the eTag those bytes have, or None if it never settled.

    A council may replace a file between the listing and the download: the bytes read are then
    not those of the listed eTag. After each download the item's eTag is read again; the bytes
    belong to an eTag only if it did not change across the download (the listing's, first).
    Raises :class:`GraphNotFound` if the file went, :class:`GraphError` if Graph fails.
    """
    from lgdp.collect.graph import GraphNotFound

    before = ref["etag"]
    for _ in range(READ_ATTEMPTS):
        data = drive.download_sync(ref["id"])
        now = drive.get_item_sync(ref["path"]) if ref.get("path") else None
        if now is None or now.id != ref["id"]:
            raise GraphNotFound(404, f"item {ref['id']} is no longer at its path")
        if now.etag == before:
            return data, item_ref(now)
        before = now.etag
    return None


class CollectWaitTrigger(CouncilFolderTrigger):
    """The folder trigger, and also a wake-up after ``wake_after`` seconds when something is owed.

    Fires with the folder trigger's event (new files, or the close) or, first, with
    ``{"status": "wake"}``; every event carries ``failures`` (the delivery attempts so far) for
    the back-off. After the close only the wake-up counts (the close is known already).
    """

    def __init__(self, *, wake_after: float | None = None, failures: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wake_after = wake_after
        self.failures = failures

    def serialize(self) -> tuple[str, dict[str, Any]]:
        path, kwargs = super().serialize()
        return path, {**kwargs, "wake_after": self.wake_after, "failures": self.failures}

    async def run(self):  # type: ignore[override]
        import contextlib

        from airflow.triggers.base import TriggerEvent

        closed = dt.datetime.now(dt.timezone.utc) >= dt.datetime.fromisoformat(self.closes_at)
        if self.wake_after is None and not closed:
            async for event in super().run():
                yield TriggerEvent({**event.payload, "failures": self.failures})
                return
            return
        if closed:
            await asyncio.sleep(self.wake_after or self.poll_interval)
            yield TriggerEvent({"status": "wake", "seen": self.seen, "failures": self.failures})
            return
        folder = super().run()
        first = asyncio.ensure_future(folder.__anext__())
        try:
            done, _ = await asyncio.wait({first}, timeout=self.wake_after)
            if first in done:
                yield TriggerEvent({**first.result().payload, "failures": self.failures})
            else:
                yield TriggerEvent({"status": "wake", "seen": self.seen, "failures": self.failures})
        finally:
            if not first.done():
                first.cancel()
            with contextlib.suppress(BaseException):
                await first
            with contextlib.suppress(BaseException):
                await folder.aclose()


class LateFilesOperator(BaseOperator):
    """Files councils drop after their submission was accepted, once their collect task has ended.

    The collect task answers such a file itself while it runs; after it has succeeded nobody would
    look in the folder again. This task (the platform DAG ``late_files``) looks in the folder of
    every accepted council of every period still open, keeps each new file (archived, recorded in
    ``lgdp.late_files``) and tells the council, once, that the accepted version stands and who can
    reopen the return. A folder that cannot be read is logged and tried on the next run; it never
    fails the others. Returns counts only.
    """

    ui_color = "#fcf3cf"

    def __init__(self, *, conn_id: str = "msgraph_sharepoint", drive_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.drive_id = drive_id

    def execute(self, context: Any, now: dt.datetime | None = None) -> dict[str, int]:
        from sqlalchemy import select

        from lgdp.airflow.triggers import new_items
        from lgdp.collect.graph import SharePointDrive, folder_path
        from lgdp.collect.process import keep_if_late, submission_state
        from lgdp.collect.respond import deliver, pending
        from lgdp.ledger.db import session
        from lgdp.ledger.models import CollectionPeriod, ExpectedSubmission, SubmissionStatus
        from lgdp.specs.load import load_register

        now = now or dt.datetime.now(dt.timezone.utc)
        drive = SharePointDrive(conn_id=self.conn_id, drive_id=self.drive_id)
        counts = {"folders": 0, "late_files": 0, "notices": 0, "problems": 0}
        specs = {s.id: s for s in load_register().approved()}
        with session() as s:
            accepted = s.execute(
                select(CollectionPeriod.return_id, CollectionPeriod.period, ExpectedSubmission.council_code)
                .join(ExpectedSubmission, ExpectedSubmission.period_id == CollectionPeriod.id)
                .where(
                    CollectionPeriod.opens_at <= now,
                    CollectionPeriod.closes_at > now,
                    ExpectedSubmission.status == SubmissionStatus.accepted,
                )
                .order_by(CollectionPeriod.return_id, CollectionPeriod.period, ExpectedSubmission.council_code)
            ).all()
        for return_id, period, council in accepted:
            loaded = specs.get(return_id)
            if loaded is None:
                continue
            counts["folders"] += 1
            try:
                state = submission_state(return_id, period, council)
                listing = [item_ref(i) for i in drive.list_folder_sync(folder_path(return_id, period, council))]
                for ref in new_items(listing, state.seen):
                    read = read_settled(drive, ref)
                    if read is not None and keep_if_late(loaded, period, council, read[1], read[0]) is not None:
                        counts["late_files"] += 1
                for owed in pending(return_id, period, council):
                    if owed.kind == "late":
                        deliver(loaded, period, council, owed, drive)
                        counts["notices"] += 1
            except Exception as exc:  # noqa: BLE001 - one folder's outage must not hide the others
                counts["problems"] += 1
                self.log.warning("%s %s %s: late files not checked now (%s)", return_id, period, council, type(exc).__name__)
        self.log.info(
            "Checked %d accepted councils' folders: %d late file(s) kept, %d notice(s) sent, %d folder(s) to retry",
            counts["folders"], counts["late_files"], counts["notices"], counts["problems"],
        )
        return counts
