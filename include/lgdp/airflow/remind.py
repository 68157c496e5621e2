"""Reminder tasks of the return DAGs (``remind_<kind>``): wait for the reminder's time, then send.

Waiting is a deferral to Airflow's ``DateTimeTrigger``, so no worker slot is held for the weeks
between the opening and an overdue escalation. The decision (wait, send, or skip a reminder whose
time passed before the task ran) and the emails come from ``lgdp.notify``; this operator only
finds the run's period and hands over. Sends are idempotent per council and kind, so retries,
reruns and backfills never repeat a reminder.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import BaseOperator

from lgdp.airflow.operators import load_return, run_period


class ReminderOperator(BaseOperator):
    """Send one of the spec's reminders (``kind``, e.g. ``due_minus_7``) for the run's period."""

    template_fields = ("period",)
    ui_color = "#fdebd0"

    def __init__(self, *, return_id: str, kind: str, period: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.return_id = return_id
        self.kind = kind
        self.period = period

    def _period(self, context: Any, loaded: Any) -> Any:
        label = self.period
        if not label:
            opened = context["ti"].xcom_pull(task_ids="open_collection")
            label = opened.get("period") if isinstance(opened, dict) else None
        return run_period(context, loaded, label)

    def execute(self, context: Any, now: dt.datetime | None = None) -> dict[str, object] | None:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger
        from airflow.sdk.exceptions import AirflowSkipException

        from lgdp.notify.reminders import send_reminders
        from lgdp.notify.schedule import decide, schedule, slot_for

        loaded = load_return(self.return_id)
        period = self._period(context, loaded)
        now = now or dt.datetime.now(dt.timezone.utc)
        slots = schedule(loaded.spec, period)
        decision = decide(slots, self.kind, period, now)
        if decision.action == "wait":
            send_at = slot_for(slots, self.kind).send_at.astimezone(dt.timezone.utc)
            self.log.info("Waiting (no worker slot held): %s", decision.reason)
            self.defer(trigger=DateTimeTrigger(moment=send_at), method_name="resume")
        run = send_reminders(loaded, period, self.kind, now)
        if run.action == "skip":
            # Shown as skipped in the grid: this reminder did not go out, and the log says why.
            raise AirflowSkipException(run.reason)
        return run.as_xcom()

    def resume(self, context: Any, event: Any = None) -> dict[str, object] | None:
        # Decide again: the period's window may have closed, or a later reminder come due, meanwhile.
        return self.execute(context)
