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

        files = template_files(loaded, period.label, period.due_in_words())
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


class CollectSubmissionOperator(BaseOperator):
    """One council's submission for one period: wait for files, process each, until accepted or closed.

    The task's state is the council's progress: deferred = awaiting a file (no worker slot held),
    running = processing a file, success = accepted, failed or skipped = not received by the close
    (the spec's ``collection.not_received``). Between versions it waits again.
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
        return self._wait_or_finish(context, loaded, self._period(context, loaded))

    def _wait_or_finish(self, context: Any, loaded: LoadedSpec, period: Period) -> dict[str, object] | None:
        from lgdp.collect.graph import folder_path
        from lgdp.collect.process import submission_state

        from lgdp.airflow.triggers import CouncilFolderTrigger

        self._send_feedback(loaded, period)
        state = submission_state(loaded.id, period.label, self.council)
        if state.accepted:
            self.log.info("Accepted (version %s)", state.accepted_version)
            return state.as_xcom()
        self.defer(
            trigger=CouncilFolderTrigger(
                folder=folder_path(loaded.id, period.label, self.council),
                seen=state.seen,
                closes_at=period.closes_at.isoformat(),
                poll_interval=poll_interval_seconds(loaded),
                conn_id=self.conn_id,
                drive_id=self.drive_id,
            ),
            method_name="resume",
        )
        return None

    def _send_feedback(self, loaded: LoadedSpec, period: Period) -> None:
        """Deliver what the council is owed for its latest outcome: workbook, data, then the email.

        Worked out from the ledger every time the task is about to wait or finish, so a Graph or
        SMTP outage after a decision fails the task, and its retry delivers exactly what was missed.
        """
        from lgdp.collect.graph import SharePointDrive
        from lgdp.collect.respond import deliver, pending

        owed = pending(loaded.id, period.label, self.council)
        if not owed:
            return
        drive = SharePointDrive(conn_id=self.conn_id, drive_id=self.drive_id)
        for item in owed:
            status = deliver(loaded, period.label, self.council, item, drive)
            self.log.info("Feedback %s for version id %s: email %s", item.kind, item.version_id, status)

    def resume(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, object] | None:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from lgdp.collect.graph import SharePointDrive
        from lgdp.collect.process import mark_not_received, process_upload

        loaded = load_return(self.return_id)
        period = self._period(context, loaded)
        event = event or {}
        if event.get("status") == "closed":
            if mark_not_received(loaded.id, period.label, self.council):
                message = f"{self.council_name or self.council}: nothing accepted by the close ({period.closes_at:%d %B %Y})"
                if loaded.spec.collection.not_received == "skip":
                    raise AirflowSkipException(message)
                raise AirflowFailException(message)
            return self._wait_or_finish(context, loaded, period)
        drive = SharePointDrive(conn_id=self.conn_id, drive_id=self.drive_id)
        for ref in event.get("items", []):
            data = drive.download_sync(ref["id"])
            outcome = process_upload(loaded, period.label, self.council, ref, data)
            if outcome.kind == "explanations":
                self.log.info(
                    "Returned feedback workbook for version %s: %s; %d query(ies) still unexplained",
                    outcome.version, outcome.status, outcome.unexplained,
                )
                continue
            self.log.info(
                "Version %s (%s): %s with %d error(s), %d query(ies) (%d unexplained), %d row(s) loaded",
                outcome.version, "new" if outcome.new else "seen before", outcome.status,
                outcome.errors, outcome.queries, outcome.unexplained, outcome.rows,
            )
        return self._wait_or_finish(context, loaded, period)
