"""The ``m365`` fixture: a local Microsoft 365 stand-in and the Airflow connection pointing at it.

Registered by ``pytest_plugins`` in ``conftest.py``. Each test gets its own stand-in on free
ports with its state in the test's temporary folder, and ``AIRFLOW_CONN_MSGRAPH_SHAREPOINT``
(plus ``LGDP_SHAREPOINT_DRIVE_ID``) set for its duration. The credentials are fake.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

CONN_ID = "msgraph_sharepoint"


@pytest.fixture
def m365(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

    from lgdp.devservices.m365 import M365StandIn

    # An adapter cached by an earlier test points at another stand-in's ports.
    KiotaRequestAdapterHook.cached_request_adapters.pop(CONN_ID, None)
    with M365StandIn(tmp_path / "m365") as standin:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", standin.connection_uri())
        monkeypatch.setenv("LGDP_SHAREPOINT_DRIVE_ID", standin.drive_id)
        try:
            yield standin
        finally:
            # Its event loop is gone by now, so it cannot be closed; drop it from the cache.
            KiotaRequestAdapterHook.cached_request_adapters.pop(CONN_ID, None)
