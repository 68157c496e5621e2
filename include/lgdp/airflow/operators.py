"""Operators of the return DAGs. They own behaviour; the computing is in ``lgdp`` itself."""

from __future__ import annotations

import datetime as dt
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

    def __init__(self, *, return_id: str, period: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.return_id = return_id
        self.period = period

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
        return opened.as_xcom()
