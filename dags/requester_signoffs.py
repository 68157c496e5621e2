"""``requester_signoffs``: record the files requesters write back after a delivery.

A requester may put a final version of the data or a sign-off note under
``<period>/returned/`` in their storage at any time after a delivery, long after the return's
DAG run (and its ``distribute`` task) has ended. This DAG looks in every requester's
``returned/`` folder of every period with a published delivery, archives each new file by
SHA-256 and records it in the ledger (``lgdp.requester_signoffs``). Hourly by default;
``LGDP_SIGNOFF_CRON`` (a cron expression, Europe/London) changes it. See docs/distribution.md.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG, CronTriggerTimetable

from lgdp.airflow.distribute import CollectSignoffsOperator

with DAG(
    dag_id="requester_signoffs",
    dag_display_name="Requester sign-offs: files returned after delivery",
    description="Record the final data and sign-off notes requesters write back under returned/",
    doc_md=__doc__,
    schedule=CronTriggerTimetable(os.environ.get("LGDP_SIGNOFF_CRON", "0 * * * *"), timezone="Europe/London"),
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["platform", "distribution"],
    default_args={"owner": "lgdp", "retries": 3, "retry_delay": dt.timedelta(minutes=5)},
):
    CollectSignoffsOperator(task_id="collect_signoffs")
