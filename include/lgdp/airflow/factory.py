"""The DAG factory: one DAG per approved return spec.

Parsing must stay cheap and never touch the database or network. The factory builds DAGs from
``DagPlan``s (``lgdp.specs.plans``), which are recomputed only when the specs' content changes.
A broken spec never hides the others: it is skipped here and reported as an import error by
``dags/return_spec_problems.py``.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, CronTriggerTimetable

from lgdp.airflow.distribute import DistributeOperator
from lgdp.airflow.operators import CollectSubmissionOperator, OpenCollectionOperator
from lgdp.airflow.remind import ReminderOperator
from lgdp.specs.plans import DagPlan, Plans, load_plans

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
DEFAULT_ARGS = {"owner": "lgdp", "retries": 2, "retry_delay": dt.timedelta(minutes=1)}


class BrokenReturnSpecs(Exception):
    """Raised at parse time so Airflow shows broken specs as an import error, naming each file."""


def build_dag(plan: DagPlan) -> DAG:
    # The period to open comes from the run's conf ({"period": "2025-26"}), not a DAG Param:
    # a Param's schema is re-validated for every DAG at every parse, which doubled parse time.
    with DAG(
        dag_id=plan.dag_id,
        dag_display_name=plan.title,
        description=plan.description,
        doc_md=plan.doc_md,
        schedule=CronTriggerTimetable(plan.cron, timezone="Europe/London"),
        start_date=START,
        catchup=False,
        max_active_runs=plan.max_active_runs,
        tags=plan.tags,
        default_args=DEFAULT_ARGS,
    ) as dag:
        opened = OpenCollectionOperator(task_id="open_collection", return_id=plan.return_id)
        collect = CollectSubmissionOperator.partial(
            task_id="collect",
            return_id=plan.return_id,
            map_index_template="{{ task.council_name }}",
            retries=3,
        ).expand_kwargs([{"council": code, "council_name": name} for code, name in plan.providers])
        opened >> collect
        for kind in plan.reminders:  # one waiting task per reminder of the spec (lgdp.notify.schedule)
            opened >> ReminderOperator(task_id=f"remind_{kind}", return_id=plan.return_id, kind=kind, retries=3)
        if plan.requesters:  # after every collect task, whatever its outcome (trigger_rule all_done)
            collect >> DistributeOperator(task_id="distribute", return_id=plan.return_id, retries=3)
    return dag


def build_dags(plans: Plans) -> dict[str, DAG]:
    return {plan.dag_id: build_dag(plan) for plan in plans.plans}


def register_dags(namespace: dict[str, Any], directory: Path | None = None) -> Plans:
    """Put one DAG per approved spec into a DAG file's globals; warn about broken specs."""
    plans = load_plans(directory)
    namespace.update(build_dags(plans))
    for path in plans.broken_files:
        warnings.warn(f"return spec {path} has problems and was not loaded; see the import errors", stacklevel=2)
    return plans


def raise_for_broken_specs(directory: Path | None = None) -> None:
    plans = load_plans(directory)
    if plans.problems:
        raise BrokenReturnSpecs(
            f"{len(plans.broken_files)} return spec(s) could not be loaded; the other returns are unaffected.\n"
            + "\n".join(plans.problems)
        )
