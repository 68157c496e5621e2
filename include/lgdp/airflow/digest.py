"""The ``council_digest`` DAG's task: each council's weekly list of returns due (``lgdp.notify.digest``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import BaseOperator


class CouncilDigestOperator(BaseOperator):
    """Send every council its digest for the week of the run (idempotent per council and week).

    The week comes from the run's logical date, so a retry the next day still belongs to the
    same week and sends only what failed.
    """

    ui_color = "#fdebd0"

    def execute(self, context: Any, now: dt.datetime | None = None) -> dict[str, object]:
        from lgdp.notify.digest import send_digests

        if now is None:
            dag_run = context.get("dag_run")
            now = getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
        return send_digests(now)


class PlatformDigestOperator(BaseOperator):
    """Send the platform team its weekly governance digest (``lgdp.notify.platform``), once a week."""

    ui_color = "#e8daef"

    def execute(self, context: Any, now: dt.datetime | None = None) -> dict[str, object]:
        from lgdp.notify.platform import send_platform_digest

        if now is None:
            dag_run = context.get("dag_run")
            now = getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
        return send_platform_digest(now)
