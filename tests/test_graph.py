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
    UPLOAD_FRAGMENT_UNIT,
    GraphAuthError,
    GraphError,
    GraphNotFound,
    GraphThrottled,
    SharePointDrive,
    folder_path,
    next_expected_offset,
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


def test_files_up_to_the_simple_limit_still_use_one_simple_put(m365):
    payload = _xlsx_like(SIMPLE_UPLOAD_LIMIT)
    item = SharePointDrive().upload_sync(f"{FOLDER}/_platform/exactly-4mib.xlsx", payload)
    assert item.size == SIMPLE_UPLOAD_LIMIT
    assert [(r["method"], r["path"].rsplit(":", 1)[-1]) for r in m365.requests()] == [("PUT", "/content")]
    assert m365.upload_sessions() == []


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


# --- large files: Graph upload sessions ----------------------------------------------------------

MIB = 1024 * 1024


def _session_requests(m365) -> list[tuple[str, str, int]]:
    """(method, "session" or "chunk", status) of the upload-session traffic, in order."""
    out = []
    for r in m365.requests():
        if r["path"].endswith(":/createUploadSession"):
            out.append((r["method"], "session", r["status"]))
        elif r["path"].startswith("/_upload/"):
            out.append((r["method"], "chunk", r["status"]))
    return out


def test_a_large_file_goes_through_an_upload_session_and_comes_back_identical(m365):
    drive = SharePointDrive()
    payload = _xlsx_like(11 * MIB + 12_345)
    item = drive.upload_sync(f"{FOLDER}/_platform/feedback-v1.xlsx", payload)
    assert (item.name, item.path, item.size, item.is_folder) == (
        "feedback-v1.xlsx", f"{FOLDER}/_platform/feedback-v1.xlsx", len(payload), False
    )
    # one session through the hook (with the token), then 5 MiB + 5 MiB + the rest, in order
    assert _session_requests(m365) == [
        ("POST", "session", 200), ("PUT", "chunk", 202), ("PUT", "chunk", 202), ("PUT", "chunk", 201)
    ]
    requests = m365.requests()
    assert [r["authorization"] for r in requests if r["path"].endswith("createUploadSession")] == [True]
    # the pre-authenticated upload URL never sees the bearer token
    assert not any(r["authorization"] for r in requests if r["path"].startswith("/_upload/"))
    assert drive.download_sync(item.id) == payload
    assert drive.get_item_sync(item.path).ctag == item.ctag
    # the parent folders were created; nothing is left behind: no temporary files, no sessions
    assert m365.list_names(f"{FOLDER}/_platform") == ["feedback-v1.xlsx"]
    assert sorted(p.name for p in (m365.drive_root / FOLDER / "_platform").iterdir()) == ["feedback-v1.xlsx"]
    assert m365.upload_sessions() == [] and list(m365.state.uploads_dir.iterdir()) == []


def test_a_large_upload_replaces_an_existing_file(m365):
    drive = SharePointDrive()
    target = f"{FOLDER}/_platform/accepted-v2.csv"
    m365.put_file(target, b"old small version")
    before = drive.get_item_sync(target)
    first = _xlsx_like(6 * MIB, seed=2)
    replaced = drive.upload_sync(target, first)
    assert replaced.id == before.id and replaced.ctag != before.ctag and replaced.size == len(first)
    assert _session_requests(m365)[-1] == ("PUT", "chunk", 200)  # 200: replaced, not created
    assert replaced.last_modified_by and replaced.last_modified_by.startswith("App ")

    second = _xlsx_like(5 * MIB + 1, seed=3)  # one full range and a one-byte last range
    again = drive.upload_sync(target, second)
    assert again.id == before.id and again.ctag != replaced.ctag and again.size == len(second)
    assert drive.download_sync(again.id) == second
    assert m365.list_names(f"{FOLDER}/_platform") == ["accepted-v2.csv"]


@pytest.mark.parametrize("status", [429, 503])
def test_a_throttled_range_is_retried_after_retry_after(m365, status):
    fault = m365.inject_fault(status=status, retry_after=1, count=1, path_contains="/_upload/", method="PUT")
    payload = _xlsx_like(8 * MIB, seed=4)
    started = time.monotonic()
    item = SharePointDrive().upload_sync(f"{FOLDER}/_platform/feedback.xlsx", payload)
    assert time.monotonic() - started >= 1  # Retry-After honoured
    assert _session_requests(m365) == [
        ("POST", "session", 200), ("PUT", "chunk", status), ("PUT", "chunk", 202), ("PUT", "chunk", 201)
    ]
    assert [r["fault"] for r in m365.requests() if r["path"].startswith("/_upload/")][0] == fault.id
    assert SharePointDrive().download_sync(item.id) == payload


def test_a_server_error_on_a_range_resumes_where_the_server_says(m365):
    """After a 5xx it is unclear what the server kept: the session's status says where to go on."""
    m365.inject_fault(status=500, count=1, path_contains="/_upload/", method="PUT")
    payload = _xlsx_like(6 * MIB, seed=5)
    item = SharePointDrive().upload_sync(f"{FOLDER}/_platform/feedback.xlsx", payload)
    assert _session_requests(m365) == [
        ("POST", "session", 200),
        ("PUT", "chunk", 500),
        ("GET", "chunk", 200),
        ("PUT", "chunk", 202),
        ("PUT", "chunk", 201),
    ]
    assert SharePointDrive().download_sync(item.id) == payload


def test_a_range_throttled_too_often_raises_and_cancels_the_session(m365):
    m365.inject_fault(status=503, retry_after=0, count=50, path_contains="/_upload/", method="PUT")
    with pytest.raises(GraphThrottled) as caught:
        SharePointDrive().upload_sync(f"{FOLDER}/_platform/feedback.xlsx", _xlsx_like(5 * MIB))
    assert caught.value.status == 503 and caught.value.retry_after_seconds == 0.0
    chunks = [(m, s) for m, kind, s in _session_requests(m365) if kind == "chunk"]
    assert chunks == [("PUT", 503)] * 5 + [("DELETE", 204)]  # gave up, then cancelled the session
    assert m365.upload_sessions() == [] and m365.list_names(f"{FOLDER}/_platform") == []


def test_an_expired_session_is_started_again(m365):
    m365.state.upload_session_seconds = 1
    # the first range arrives after the session expired: 404, so a new session starts from byte 0
    m365.inject_fault(delay_seconds=1.5, count=1, path_contains="/_upload/", method="PUT")
    payload = _xlsx_like(6 * MIB, seed=6)
    item = SharePointDrive().upload_sync(f"{FOLDER}/_platform/feedback.xlsx", payload)
    assert _session_requests(m365) == [
        ("POST", "session", 200),
        ("PUT", "chunk", 404),
        ("POST", "session", 200),
        ("PUT", "chunk", 202),
        ("PUT", "chunk", 201),
    ]
    assert SharePointDrive().download_sync(item.id) == payload


def test_sessions_that_always_expire_end_in_a_graph_error(m365):
    m365.state.upload_session_seconds = -1  # every session is dead on arrival
    with pytest.raises(GraphError, match="expired 3 times") as caught:
        SharePointDrive().upload_sync(f"{FOLDER}/_platform/feedback.xlsx", _xlsx_like(5 * MIB))
    assert caught.value.status == 404
    assert [k for _, k, _ in _session_requests(m365)] == ["session", "chunk"] * 3


def test_the_upload_chunk_size_is_configurable_in_multiples_of_320_kib(m365):
    drive = SharePointDrive(upload_chunk_size=4 * UPLOAD_FRAGMENT_UNIT)  # 1.25 MiB
    payload = _xlsx_like(SIMPLE_UPLOAD_LIMIT + 1, seed=7)
    item = drive.upload_sync(f"{FOLDER}/_platform/feedback.xlsx", payload)
    assert [s for _, k, s in _session_requests(m365) if k == "chunk"] == [202, 202, 202, 201]
    assert drive.download_sync(item.id) == payload
    for bad in (0, 1000 * 1024, 60 * MIB, -UPLOAD_FRAGMENT_UNIT):
        with pytest.raises(ValueError, match="320 KiB"):
            SharePointDrive(upload_chunk_size=bad)


def test_the_stand_in_upload_session_protocol_over_http(m365):
    """What the stand-in enforces, as Graph documents it (driveItem: createUploadSession)."""
    drive_url = f"{m365.graph_url}/drives/{m365.drive_id}"
    auth = {"Authorization": f"Bearer {m365.issue_token()}"}
    unit = UPLOAD_FRAGMENT_UNIT
    data = random.Random(8).randbytes(2 * unit + 100)
    m365.put_file(f"{FOLDER}/taken.csv", b"x")
    with httpx.Client() as client:
        create = f"{drive_url}/root:/{FOLDER}/new.csv:/createUploadSession"
        assert client.post(create, json={}).status_code == 401  # creating one needs the token
        # Graph's default conflictBehavior for a session is fail
        taken = client.post(f"{drive_url}/root:/{FOLDER}/taken.csv:/createUploadSession", json={}, headers=auth)
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "nameAlreadyExists"
        session = client.post(create, json={"item": {"@microsoft.graph.conflictBehavior": "replace"}}, headers=auth)
        assert session.status_code == 200
        body = session.json()
        url = body["uploadUrl"]
        assert url.startswith(f"{m365.base_url}/_upload/") and body["nextExpectedRanges"] == ["0-"]
        assert body["expirationDateTime"].endswith("Z")

        def put(start, end, total=len(data), headers=None):
            headers = {"Content-Range": f"bytes {start}-{end}/{total}", **(headers or {})}
            return client.put(url, content=data[start : end + 1], headers=headers)

        refused = put(0, unit - 1, headers=auth)  # the upload URL is pre-authenticated: no token
        assert refused.status_code == 401
        assert put(unit, 2 * unit - 1).status_code == 416  # out of order
        assert put(0, 1000).status_code == 400  # not a multiple of 320 KiB and not the last range
        assert client.put(url, content=b"abc").status_code == 400  # no Content-Range
        first = put(0, unit - 1)
        assert first.status_code == 202 and first.json()["nextExpectedRanges"] == [f"{unit}-"]
        assert put(0, unit - 1).status_code == 416  # already received
        assert put(unit, 2 * unit - 1, total=len(data) + 1).status_code == 400  # the total must not change
        assert client.get(url).json()["nextExpectedRanges"] == [f"{unit}-"]
        assert put(unit, 2 * unit - 1).status_code == 202
        assert m365.list_names(FOLDER) == ["taken.csv"]  # nothing visible before the last byte
        done = put(2 * unit, len(data) - 1)
        assert done.status_code == 201 and done.json()["size"] == len(data) and done.json()["name"] == "new.csv"
        assert (m365.drive_root / FOLDER / "new.csv").read_bytes() == data
        assert put(0, unit - 1).status_code == 404  # the session is finished

        # the items/{parent-id}:/{name}: form, and cancelling a session
        from lgdp.devservices.m365 import item_id_for

        by_id = client.post(
            f"{drive_url}/items/{item_id_for(FOLDER)}:/other.csv:/createUploadSession", json={}, headers=auth
        )
        url = by_id.json()["uploadUrl"]
        assert len(m365.upload_sessions()) == 1
        assert client.delete(url).status_code == 204
        assert client.get(url).status_code == 404 and m365.upload_sessions() == []
        missing = client.post(f"{drive_url}/items/01NOSUCHITEM/createUploadSession", json={}, headers=auth)
        assert missing.status_code == 404

    logged = [r for r in m365.requests() if r["path"].startswith("/_upload/")]
    assert [r["authorization"] for r in logged].count(True) == 1  # the one refused above


def test_next_expected_offset_parsing():
    assert next_expected_offset({"nextExpectedRanges": ["26-"]}, 128) == 26
    assert next_expected_offset({"nextExpectedRanges": ["12345-55232", "77829-99375"]}, 10**6) == 12345
    assert next_expected_offset({"nextExpectedRanges": []}, 128) is None
    assert next_expected_offset({"nextExpectedRanges": ["128-"]}, 128) is None
    assert next_expected_offset(None, 128) is None and next_expected_offset({"nextExpectedRanges": ["x-"]}, 128) is None


def test_an_upload_url_must_be_https_except_on_loopback():
    from lgdp.collect.graph import check_upload_url

    assert check_upload_url("https://tenant.sharepoint.com/_api/v2.0/uploadSession?guid=1")
    assert check_upload_url("http://127.0.0.1:9/_upload/abc")
    for bad in ("http://uploads.example.org/up/1", "ftp://127.0.0.1/x", "/_upload/abc"):
        with pytest.raises(GraphError, match="not https"):
            check_upload_url(bad)


def test_a_refused_range_is_not_retried_and_cancels_the_session(m365):
    m365.inject_fault(status=401, count=1, path_contains="/_upload/", method="PUT")
    with pytest.raises(GraphAuthError):
        SharePointDrive().upload_sync(f"{FOLDER}/_platform/feedback.xlsx", _xlsx_like(5 * MIB))
    assert [(m, s) for m, k, s in _session_requests(m365) if k == "chunk"] == [("PUT", 401), ("DELETE", 204)]
    assert m365.upload_sessions() == []
