"""The DAG factory: one DAG per approved return spec.

Parsing must stay cheap and never touch the database or network: specs are read from disk once
per parse and the DAGs are built from them. A broken spec never hides the others: it is skipped
here and reported as an import error by ``dags/return_spec_problems.py``.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, CronTriggerTimetable, Param

from lgdp.airflow.operators import OpenCollectionOperator
from lgdp.periods import opening_cron
from lgdp.specs.load import LoadedSpec, Register, load_register

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


class BrokenReturnSpecs(Exception):
    """Raised at parse time so Airflow shows broken specs as an import error, naming each file."""


def doc_md(loaded: LoadedSpec) -> str:
    s = loaded.spec
    g = s.governance
    c = s.collection
    return (
        f"# {s.title}\n\n{g.purpose}\n\n"
        f"- **Legal basis:** {g.legal_basis}\n- **Requester:** {g.requester}\n- **Owner:** {g.owner} "
        f"({g.contact_email})\n- **Frequency:** {c.frequency.value}; opens day {c.opens.day} at {c.opens.time} "
        f"(Europe/London), due {c.due_days_after_opening} days later, closes after "
        f"{c.closes_days_after_opening} days\n- **Providers:** {len(loaded.providers)} councils\n"
        f"- **Spec:** `{loaded.path}` (version {s.version}); review by {g.review_date}\n"
    )


def build_dag(loaded: LoadedSpec) -> DAG:
    s = loaded.spec
    with DAG(
        dag_id=loaded.dag_id,
        dag_display_name=f"{s.title}",
        description=s.governance.purpose[:200],
        doc_md=doc_md(loaded),
        schedule=CronTriggerTimetable(opening_cron(s.collection), timezone="Europe/London"),
        start_date=START,
        catchup=False,
        max_active_runs=s.collection.max_active_periods,
        tags=[s.governance.requester[:100], s.collection.frequency.value, "return"],
        params={
            "period": Param(
                None,
                type=["null", "string"],
                description="Period label to open (e.g. 2025-26, 2025-26-Q2, 2025-07); empty = the latest opened.",
            )
        },
        default_args={"owner": "lgdp", "retries": 2, "retry_delay": dt.timedelta(minutes=1)},
        render_template_as_native_obj=False,
    ) as dag:
        OpenCollectionOperator(task_id="open_collection", return_id=s.id, period="{{ params.period }}")
    return dag


def build_dags(register: Register) -> dict[str, DAG]:
    return {loaded.dag_id: build_dag(loaded) for loaded in register.approved()}


def register_dags(namespace: dict[str, Any], directory: Path | None = None) -> Register:
    """Put one DAG per approved spec into a DAG file's globals; warn about broken specs."""
    register = load_register(directory)
    namespace.update(build_dags(register))
    for path in register.errors:
        warnings.warn(f"return spec {path} has problems and was not loaded; see the import errors", stacklevel=2)
    return register


def raise_for_broken_specs(directory: Path | None = None) -> None:
    register = load_register(directory)
    if register.errors:
        lines = [str(p) for err in register.errors.values() for p in err.problems]
        raise BrokenReturnSpecs(
            f"{len(register.errors)} return spec(s) could not be loaded; the other returns are unaffected.\n"
            + "\n".join(lines)
        )
