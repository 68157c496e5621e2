"""``platform_digest``: the platform team's weekly governance email.

Returns whose review date has passed, proposals waiting (new returns and proposed changes), and
approved returns not collected in over a year. Weekly on Monday at 07:30 Europe/London by
default; ``LGDP_PLATFORM_DIGEST_CRON`` changes it. See docs/governance.md.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG, CronTriggerTimetable

from lgdp.airflow.digest import PlatformDigestOperator

with DAG(
    dag_id="platform_digest",
    dag_display_name="Platform digest: reviews due, proposals, returns not collected",
    description="The platform team's weekly list of returns due for review, proposals waiting and returns not collected in a year",
    doc_md=__doc__,
    schedule=CronTriggerTimetable(os.environ.get("LGDP_PLATFORM_DIGEST_CRON", "30 7 * * 1"), timezone="Europe/London"),
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["platform", "email", "governance"],
    default_args={"owner": "lgdp", "retries": 3, "retry_delay": dt.timedelta(minutes=5)},
):
    PlatformDigestOperator(task_id="send_platform_digest")
