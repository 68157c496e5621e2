"""Airflow glue for the platform team's pages (``lgdp.ui``): mount the app, put it in the nav.

The app is mounted on the api-server at ``/returns``; every route depends on Airflow's auth
manager (``get_user``: a JWT in the Authorization header or Airflow's ``_token`` cookie), so an
anonymous page request is sent to Airflow's login page and an anonymous API call gets 401.
The nav entries open the pages inside Airflow (``external_views``, same origin, so the login
cookie goes with them). Links to a council's ``collect`` task instance are looked up in
Airflow's metadata database here, the one place that knows Airflow.
"""

from __future__ import annotations

import datetime as dt

from airflow.plugins_manager import AirflowPlugin

PREFIX = "/returns"
COLLECT_TASK = "collect"


def _login_url(next_url: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=next_url)


def _task_url(return_id: str, period: str, council: str) -> str | None:
    """The Airflow UI address of the council's ``collect`` task instance for that period, if any."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from lgdp.ledger.db import session as ledger_session
    from lgdp.ledger.models import Council, Return
    from lgdp.periods import period_opening_at
    from lgdp.specs.model import Collection

    with ledger_session() as s:
        ret = s.get(Return, return_id)
        council_row = s.get(Council, council)
        if ret is None or council_row is None:
            return None
        collection = Collection.model_validate((ret.spec or {}).get("collection") or {})
    dag_id = f"return_{return_id}"
    with create_session() as session:
        rows = session.execute(
            select(DagRun.run_id, DagRun.conf, DagRun.logical_date, DagRun.run_after, TaskInstance.map_index)
            .join(TaskInstance, (TaskInstance.dag_id == DagRun.dag_id) & (TaskInstance.run_id == DagRun.run_id))
            .where(
                DagRun.dag_id == dag_id,
                TaskInstance.task_id == COLLECT_TASK,
                TaskInstance._rendered_map_index.in_([council_row.name, council]),
            )
            .order_by(DagRun.run_after.desc())
            .limit(50)
        ).all()
    for run_id, conf, logical_date, run_after, map_index in rows:
        label = (conf or {}).get("period") if isinstance(conf, dict) else None
        if not label:
            when = logical_date or run_after or dt.datetime.now(dt.timezone.utc)
            label = period_opening_at(collection, when).label
        if label == period:
            return f"/dags/{dag_id}/runs/{run_id}/tasks/{COLLECT_TASK}/mapped/{map_index}"
    return None


def _app():
    from airflow.api_fastapi.core_api.security import get_user

    from lgdp.ui.web import create_app

    return create_app(get_user, login_url=_login_url, task_url=_task_url)


class LgdpReturnsPlugin(AirflowPlugin):
    name = "lgdp_returns"
    fastapi_apps = [{"app": _app(), "url_prefix": PREFIX, "name": "LGDP returns"}]
    external_views = [
        {"name": "Progress", "href": f"{PREFIX}/progress", "url_route": "lgdp-progress", "category": "Returns", "destination": "nav"},
        {"name": "Register", "href": f"{PREFIX}/register", "url_route": "lgdp-register", "category": "Returns", "destination": "nav"},
        {"name": "Calendar", "href": f"{PREFIX}/calendar", "url_route": "lgdp-calendar", "category": "Returns", "destination": "nav"},
        {"name": "Councils", "href": f"{PREFIX}/councils", "url_route": "lgdp-councils", "category": "Returns", "destination": "nav"},
    ]
