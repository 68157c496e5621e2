"""``late_files``: answer files councils drop after their return was accepted.

A council's ``collect`` task ends when its submission is accepted and the council has been told.
A file dropped in the folder after that is not ignored: this DAG looks in the folder of every
accepted council of every period still open, keeps each new file (archived by SHA-256, recorded
in ``lgdp.late_files``, never processed: the accepted version stands) and emails the council once
that it was not used and who can reopen the return. Every 15 minutes by default;
``LGDP_LATE_FILES_CRON`` (a cron expression, Europe/London) changes it. See docs/collection.md.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG, CronTriggerTimetable

from lgdp.airflow.operators import LateFilesOperator

with DAG(
    dag_id="late_files",
    dag_display_name="Late files: answered after acceptance",
    description="Keep and answer files councils drop after their return was accepted",
    doc_md=__doc__,
    schedule=CronTriggerTimetable(os.environ.get("LGDP_LATE_FILES_CRON", "*/15 * * * *"), timezone="Europe/London"),
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["platform", "collection"],
    default_args={"owner": "lgdp", "retries": 3, "retry_delay": dt.timedelta(minutes=5)},
):
    LateFilesOperator(task_id="answer_late_files")
