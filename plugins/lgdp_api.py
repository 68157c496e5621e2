"""Airflow glue for the councils' submission API (``lgdp.api``): mount the app on the api-server.

The app is mounted at ``/council-api``. It does not use Airflow's auth manager: every route needs a
council system token (``lgdp api token issue``), checked against the hashes in the ledger, so an
Airflow login (a requester, the platform team) gets 401 here. The app places submissions in the
councils' SharePoint folders with the ``msgraph_sharepoint`` connection, which the api-server
reads like any Airflow component. See docs/api.md.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

PREFIX = "/council-api"


def _app():
    from lgdp.api.app import create_app

    return create_app()


class LgdpCouncilApiPlugin(AirflowPlugin):
    name = "lgdp_council_api"
    fastapi_apps = [{"app": _app(), "url_prefix": PREFIX, "name": "LGDP council submission API"}]
