"""``council_digest``: each council's weekly email listing every return due in the next 30 days.

Weekly on Monday at 07:00 Europe/London by default; ``LGDP_DIGEST_CRON`` (a cron expression,
Europe/London) changes it. See docs/reminders.md.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG, CronTriggerTimetable

from lgdp.airflow.digest import CouncilDigestOperator

with DAG(
    dag_id="council_digest",
    dag_display_name="Council digest: returns due in the next 30 days",
    description="One email per council listing every return due in the next 30 days and its status",
    doc_md=__doc__,
    schedule=CronTriggerTimetable(os.environ.get("LGDP_DIGEST_CRON", "0 7 * * 1"), timezone="Europe/London"),
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["platform", "email"],
    default_args={"owner": "lgdp", "retries": 3, "retry_delay": dt.timedelta(minutes=5)},
):
    CouncilDigestOperator(task_id="send_digests")
