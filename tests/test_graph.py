"""The SharePoint client against the local Microsoft 365 stand-in, over real HTTP, no mocks.

Every call goes through Airflow's ``KiotaRequestAdapterHook`` (azure-identity token from the
stand-in's HTTPS endpoint, kiota middleware, retries), exactly as in production.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import time

import httpx
import pytest

from lgdp.collect.graph import (
    SIMPLE_UPLOAD_LIMIT,
    GraphError,
    GraphNotFound,
    GraphThrottled,
    SharePointDrive,
    folder_path,
    parse_retry_after,
)

FOLDER = "clas/2025-26/S12000036"


def _graph_requests(m365, path_part: str) -> list[dict]:
    return [r for r in m365.requests() if path_part in r["path"]]


def _xlsx_like(size: int, seed: int = 1) -> bytes:
    """A zip-looking payload with NULs and every byte value, ``size`` bytes long."""
    head = b"PK\x03\x04" + bytes(range(256)) + b"\x00" * 1024 + b"\r\n\x1a\n"
    return head + random.Random(seed).randbytes(size - len(head))


def test_folder_path_convention():
    assert folder_path("clas", "2025-26", "S12000036") == FOLDER
    for bad in [("clas", "2025/26", "S1"), ("", "2025-26", "S1"), ("clas", "..", "S1"), ("a:b", "p", "c")]:
        with pytest.raises(ValueError):
            folder_path(*bad)


def test_ensure_folder_creates_parents_and_is_idempotent(m365):
    drive = SharePointDrive()
    item = drive.ensure_folder_sync(FOLDER)
    assert item.is_folder and item.name == "S12000036" and item.path == FOLDER
    assert (m365.drive_root / FOLDER).is_dir()
    assert item.web_url and item.web_url.endswith("/clas/2025-26/S12000036")

    m365.clear_requests()
    again = drive.ensure_folder_sync(FOLDER)
    assert again.id == item.id
    assert [r["method"] for r in m365.requests()] == ["GET"]  # exists: one look, no creation

    # a sibling under existing parents: the existing ones answer 409 and are kept
    m365.clear_requests()
    drive.ensure_folder_sync("clas/2025-26/S12000033")
    assert [r["status"] for r in m365.requests() if r["method"] == "POST"] == [409, 409, 201]
    assert m365.list_names("clas/2025-26") == ["S12000033", "S12000036"]


def test_ensure_folder_refuses_a_file_in_the_way(m365):
    m365.put_file("clas/2025-26", b"not a folder")
    with pytest.raises(GraphError):
        SharePointDrive().ensure_folder_sync(FOLDER)


def test_upload_list_and_new_content_changes_etag_and_ctag(m365):
    drive = SharePointDrive()

    async def scenario():
        await drive.ensure_folder(FOLDER)
        first = await drive.upload(f"{FOLDER}/_platform/template.xlsx", b"version one")
        listed = await drive.list_folder(f"{FOLDER}/_platform")
        second = await drive.upload(f"{FOLDER}/_platform/template.xlsx", b"version two!")
        relisted = await drive.list_folder(f"{FOLDER}/_platform")
        return first, listed, second, relisted

    first, listed, second, relisted = asyncio.run(scenario())
    assert [(i.name, i.path, i.size, i.is_folder) for i in listed] == [
        ("template.xlsx", f"{FOLDER}/_platform/template.xlsx", 11, False)
    ]
    assert listed[0].etag and listed[0].ctag and listed[0].etag == first.etag
    assert listed[0].last_modified_by and listed[0].last_modified.tzinfo is not None
    assert second.id == first.id  # same path, same item
    assert second.etag != first.etag and second.ctag != first.ctag
    assert relisted[0].etag == second.etag and relisted[0].size == 12


def test_download_is_byte_exact_for_a_3mb_binary(m365):
    drive = SharePointDrive()
    payload = _xlsx_like(3 * 1024 * 1024)
    uploaded = drive.upload_sync(f"{FOLDER}/return.xlsx", payload)
    assert uploaded.size == len(payload)
    assert drive.download_sync(uploaded.id) == payload
    # Graph answers a download with a redirect to a pre-authenticated URL; the SDK follows it.
    assert [r["status"] for r in m365.requests() if r["method"] == "GET"][-2:] == [302, 200]

    m365.put_file(f"{FOLDER}/empty.csv", b"")
    [empty] = [i for i in drive.list_folder_sync(FOLDER) if i.name == "empty.csv"]
    assert drive.download_sync(empty.id) == b""
    # a body that happens to be JSON stays bytes
    m365.put_file(f"{FOLDER}/numbers.csv", b"42")
    [numbers] = [i for i in drive.list_folder_sync(FOLDER) if i.name == "numbers.csv"]
    assert drive.download_sync(numbers.id) == b"42"


def test_upload_over_the_simple_limit_is_refused_before_sending(m365):
    with pytest.raises(ValueError, match="simple upload"):
        SharePointDrive().upload_sync(f"{FOLDER}/big.xlsx", b"\x00" * (SIMPLE_UPLOAD_LIMIT + 1))
    assert m365.requests() == []


def test_a_file_dropped_on_disk_by_hand_is_listed(m365):
    folder = m365.drive_root / FOLDER
    folder.mkdir(parents=True)
    dropped = folder / "Fife CLAS return.xlsx"
    dropped.write_bytes(b"PK\x03\x04 by hand")
    stamp = dt.datetime(2026, 4, 30, 16, 45, tzinfo=dt.timezone.utc).timestamp()
    os.utime(dropped, (stamp, stamp))
    m365.put_file(f"{FOLDER}/by-council.xlsx", b"PK", modified_by="Jo Bloggs", email="jo@example.org")

    items = {i.name: i for i in SharePointDrive().list_folder_sync(FOLDER)}
    assert set(items) == {"Fife CLAS return.xlsx", "by-council.xlsx"}
    by_hand = items["Fife CLAS return.xlsx"]
    assert by_hand.last_modified == dt.datetime(2026, 4, 30, 16, 45, tzinfo=dt.timezone.utc)
    assert by_hand.last_modified_by == "Demo user" and by_hand.size == len(b"PK\x03\x04 by hand")
    assert items["by-council.xlsx"].last_modified_by == "Jo Bloggs"
    assert SharePointDrive().download_sync(by_hand.id) == b"PK\x03\x04 by hand"

    # touching the file without changing it: new eTag, same cTag (content tag)
    os.utime(dropped, (stamp + 60, stamp + 60))
    touched = SharePointDrive().get_item_sync(by_hand.path)
    assert touched.etag != by_hand.etag and touched.ctag == by_hand.ctag


def test_missing_folder_lists_empty_but_a_missing_drive_is_an_error(m365):
    drive = SharePointDrive()
    assert drive.list_folder_sync("clas/2099-00/S12000036") == []
    assert drive.get_item_sync("clas/2099-00") is None
    assert drive.web_url_sync("clas/2099-00") is None
    with pytest.raises(GraphNotFound):
        SharePointDrive(drive_id="no-such-drive").list_folder_sync(FOLDER)


def test_pages_are_followed(tmp_path, monkeypatch):
    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

    from lgdp.devservices.m365 import M365StandIn

    KiotaRequestAdapterHook.cached_request_adapters.pop("msgraph_sharepoint", None)
    with M365StandIn(tmp_path / "paged", page_size=2) as m365:
        monkeypatch.setenv("AIRFLOW_CONN_MSGRAPH_SHAREPOINT", m365.connection_uri())
        for n in range(5):
            m365.put_file(f"{FOLDER}/file{n}.csv", b"x")
        names = [i.name for i in SharePointDrive().list_folder_sync(FOLDER)]
        assert names == [f"file{n}.csv" for n in range(5)]
        assert len(_graph_requests(m365, ":/children")) == 3
    KiotaRequestAdapterHook.cached_request_adapters.pop("msgraph_sharepoint", None)


def test_paths_that_leave_the_drive_are_refused(m365, tmp_path):
    drive_url = f"{m365.graph_url}/drives/{m365.drive_id}"
    auth = {"Authorization": f"Bearer {m365.issue_token()}"}
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (m365.drive_root / "link").symlink_to(tmp_path)
    from lgdp.devservices.m365 import item_id_for

    with httpx.Client(headers=auth) as client:
        # percent-encoded dots survive URL normalisation and reach the server as ".."
        for url in [
            f"{drive_url}/root:/%2E%2E/%2E%2E/token-secret:",
            f"{drive_url}/root:/%2E%2E/%2E%2E/token-secret:/content",
            f"{drive_url}/items/{item_id_for('../../token-secret')}",
            f"{drive_url}/root:/a%5C..%5C..%5Cx:",
            f"{drive_url}/root:/link/outside.txt:",
        ]:
            r = client.get(url)
            assert r.status_code == 400, url
            assert r.json()["error"]["code"] == "invalidRequest"
        r = client.put(f"{drive_url}/root:/%2E%2E/escaped.txt:/content", content=b"x")
        assert r.status_code == 400
    assert not (m365.state_dir / "drives" / "escaped.txt").exists()
    # the client refuses them before sending anything
    with pytest.raises(ValueError):
        SharePointDrive().get_item_sync("clas/../../token-secret")


def test_graph_calls_need_a_token_the_stand_in_issued(m365):
    url = f"{m365.graph_url}/drives/{m365.drive_id}/root"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer lgdp-fake.e30.forged"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {m365.issue_token()}"}).status_code == 200


def test_the_token_endpoint_certificate_is_verified(m365, monkeypatch):
    """The connection trusts the generated certificate by path; without it TLS fails, loudly."""
    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

    monkeypatch.setenv("AIRFLOW_CONN_MSGRAPH_SHAREPOINT", m365.connection_uri(verify=True))
    with pytest.raises(GraphError, match="token request failed"):
        SharePointDrive().get_item_sync("")
    KiotaRequestAdapterHook.cached_request_adapters.pop("msgraph_sharepoint", None)
    monkeypatch.setenv("AIRFLOW_CONN_MSGRAPH_SHAREPOINT", m365.connection_uri(verify=False))
    assert SharePointDrive().get_item_sync("").is_folder


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_within_the_sdk_retries_succeeds_without_losing_requests(m365, status):
    m365.put_file(f"{FOLDER}/a.xlsx", b"PK")
    m365.inject_fault(status=status, retry_after=1, count=2, path_contains="S12000036")
    started = time.monotonic()
    names = [i.name for i in SharePointDrive().list_folder_sync(FOLDER)]
    assert names == ["a.xlsx"]
    assert time.monotonic() - started >= 2  # Retry-After honoured twice
    attempts = _graph_requests(m365, "S12000036")
    assert [(r["status"], r["retry_attempt"]) for r in attempts] == [(status, None), (status, "1"), (200, "2")]


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_beyond_the_sdk_retries_raises_graph_throttled(m365, status):
    m365.put_file(f"{FOLDER}/a.xlsx", b"PK")
    fault = m365.inject_fault(status=status, retry_after=1, count=10, path_contains="S12000036")
    with pytest.raises(GraphThrottled) as caught:
        SharePointDrive().list_folder_sync(FOLDER)
    assert caught.value.status == status and caught.value.retry_after_seconds == 1.0
    # kiota's RetryHandler: the first attempt plus 3 retries, every one seen by the server
    attempts = _graph_requests(m365, "S12000036")
    assert [r["retry_attempt"] for r in attempts] == [None, "1", "2", "3"]
    assert all(r["status"] == status and r["fault"] == fault.id for r in attempts)
    assert fault.count == 6
    # once the service recovers the same call works
    m365.clear_faults()
    assert [i.name for i in SharePointDrive().list_folder_sync(FOLDER)] == ["a.xlsx"]


def test_a_retry_after_of_three_minutes_or_more_is_not_waited_for_by_the_sdk(m365):
    """kiota skips the retry when the delay would be 180 s or more: the caller decides at once."""
    m365.inject_fault(status=429, retry_after=600, count=1, path_contains="S12000036")
    started = time.monotonic()
    with pytest.raises(GraphThrottled) as caught:
        SharePointDrive().list_folder_sync(FOLDER)
    assert caught.value.retry_after_seconds == 600.0 and time.monotonic() - started < 10
    assert len(_graph_requests(m365, "S12000036")) == 1


def test_binary_uploads_are_not_retried_by_the_sdk_so_the_throttle_surfaces_at_once(m365):
    """kiota retries no request whose Content-Type is application/octet-stream (a stream it
    cannot rewind, as it assumes). Known types (xlsx, csv) are retried like any request."""
    drive = SharePointDrive()
    m365.inject_fault(status=429, retry_after=7, count=1, method="PUT")
    with pytest.raises(GraphThrottled) as caught:
        drive.upload_sync(f"{FOLDER}/blob.bin", b"\x00\x01")
    assert caught.value.retry_after_seconds == 7.0
    assert len([r for r in m365.requests() if r["method"] == "PUT"]) == 1

    m365.clear_requests()
    m365.inject_fault(status=429, retry_after=1, count=1, method="PUT")
    item = drive.upload_sync(f"{FOLDER}/template.xlsx", b"PK\x03\x04")
    assert item.size == 4
    assert [r["status"] for r in m365.requests() if r["method"] == "PUT"] == [429, 201]


def test_slow_responses_wait_and_a_timeout_is_a_graph_error(m365):
    m365.put_file(f"{FOLDER}/a.xlsx", b"PK")
    m365.inject_fault(delay_seconds=1.0, count=1, path_contains="S12000036")
    assert [i.name for i in SharePointDrive().list_folder_sync(FOLDER)] == ["a.xlsx"]

    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

    KiotaRequestAdapterHook.cached_request_adapters.pop("msgraph_sharepoint", None)  # timeout is per adapter
    m365.inject_fault(delay_seconds=3.0, count=1, path_contains="S12000036")
    with pytest.raises(GraphError, match="timed out") as caught:
        SharePointDrive(timeout=0.5).list_folder_sync(FOLDER)
    assert caught.value.status is None


def test_sync_wrappers_refuse_to_run_inside_an_event_loop(m365):
    async def inside():
        SharePointDrive().list_folder_sync(FOLDER)

    with pytest.raises(RuntimeError, match="event loop"):
        asyncio.run(inside())


def test_send_mail_through_the_providers_mail_hook_is_stored(m365):
    from airflow.providers.microsoft.azure.hooks.msgraph import MSGraphMailHook

    MSGraphMailHook(conn_id="msgraph_sharepoint").send_email(
        from_email="LGDP <returns@example.org>",
        to="data.team@fife.example.org",
        subject="CLAS 2025-26: your return is due on 30 June",
        html_content="<p>Please upload your return.</p>",
    )
    [stored] = m365.mail()
    assert stored["from"] == "returns@example.org"
    assert stored["message"]["subject"] == "CLAS 2025-26: your return is due on 30 June"
    assert stored["message"]["toRecipients"] == [{"emailAddress": {"address": "data.team@fife.example.org"}}]
    assert httpx.get(f"{m365.base_url}/_admin/mail").json() == [stored]


def test_admin_api_over_http(m365):
    base = m365.base_url
    r = httpx.post(f"{base}/_admin/faults", json={"status": 503, "retry_after": 2, "count": 1, "path_contains": "x"})
    assert r.status_code == 201 and r.json()[0]["status"] == 503
    assert len(httpx.get(f"{base}/_admin/faults").json()) == 1
    assert httpx.post(f"{base}/_admin/faults", json={"status": 200}).status_code == 400
    assert httpx.delete(f"{base}/_admin/faults").status_code == 204
    assert httpx.get(f"{base}/_admin/faults").json() == []
    SharePointDrive().get_item_sync("")
    logged = httpx.get(f"{base}/_admin/requests").json()
    assert [(r["app"], r["path"]) for r in logged] == [
        ("token", f"/{m365.tenant_id}/oauth2/v2.0/token"),
        ("graph", f"/v1.0/drives/{m365.drive_id}/root"),
    ]


def test_folder_web_url_opens_a_listing(m365):
    m365.put_file(f"{FOLDER}/a.xlsx", b"PK")
    url = SharePointDrive().web_url_sync(FOLDER)
    page = httpx.get(url)
    assert page.status_code == 200 and "a.xlsx" in page.text


def test_retry_after_parsing():
    now = dt.datetime(2026, 11, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("Sun, 01 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
