"""SharePoint document libraries through Microsoft Graph, via Airflow's azure provider.

Every request goes through ``KiotaRequestAdapterHook`` (connection type ``msgraph``), which owns
the connection, the client-credentials token (azure-identity), the cached HTTP client and the
kiota middleware (retries on 429/503/504 honouring ``Retry-After``, redirects). This module adds
a thin typed layer: drive items as :class:`DriveItem`, path addressing, and HTTP failures mapped
to :class:`GraphError` and its subclasses, never swallowed.

The API is async because the collection trigger runs in the triggerer's event loop; operators
use the ``*_sync`` wrappers (or ``asyncio.run`` on the async methods: adapters left from a
finished event loop are detected and rebuilt).

Drive id: the ``drive_id`` argument, else the connection's ``drive_id`` extra (a field of the
msgraph connection form that the hook itself ignores), else ``LGDP_SHAREPOINT_DRIVE_ID``.

Limits: :meth:`SharePointDrive.upload` sends files up to 4 MiB (``SIMPLE_UPLOAD_LIMIT``) in one
simple-upload PUT; larger ones (big feedback workbooks, accepted data) go through a Graph upload
session: ``createUploadSession`` through the hook, then byte ranges of ``upload_chunk_size``
(5 MiB by default; a multiple of 320 KiB, under 60 MiB, as Microsoft requires) PUT to the
session's pre-authenticated ``uploadUrl`` with a plain httpx client that never sends the bearer
token. A fragment answered 429/503/5xx (or lost to the network) is retried after ``Retry-After``
or a back-off, resuming where the server says it stopped; an expired session (404) is started
again. The whole content is held in memory (the callers build it in memory). See
``docs/m365-standin.md`` for the retry behaviour measured against the local stand-in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import mimetypes
import os
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from io import BytesIO
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

DEFAULT_CONN_ID = "msgraph_sharepoint"
DRIVE_ID_ENV = "LGDP_SHAREPOINT_DRIVE_ID"
SIMPLE_UPLOAD_LIMIT = 4 * 1024 * 1024
THROTTLE_STATUSES = frozenset({429, 503})
# Upload sessions (Graph's driveItem: createUploadSession): each byte range but the last must be a
# multiple of 320 KiB and every request under 60 MiB; Microsoft recommends 5-10 MiB ranges.
UPLOAD_FRAGMENT_UNIT = 320 * 1024
UPLOAD_FRAGMENT_MAX = 60 * 1024 * 1024
UPLOAD_CHUNK_SIZE = 16 * UPLOAD_FRAGMENT_UNIT  # 5 MiB
UPLOAD_CHUNK_ATTEMPTS = 5  # tries of one byte range before giving up
UPLOAD_SESSION_RESTARTS = 2  # new sessions after the server forgot one (404: expired)
UPLOAD_CHUNK_TIMEOUT = 300.0  # seconds per byte-range request when the hook has no timeout
UPLOAD_MAX_WAIT = 180.0  # like kiota's RetryHandler: a longer Retry-After is the caller's business
_FORBIDDEN_IN_NAMES = set('\\:*?"<>|\x00')

T = TypeVar("T")
log = logging.getLogger(__name__)


class GraphError(Exception):
    """A Graph request failed. ``status`` is the HTTP status, None when no response came back."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message if status is None else f"{message} (HTTP {status})")
        self.status = status
        self.message = message


class GraphNotFound(GraphError):
    """404: the item (or the drive) does not exist."""


class GraphAuthError(GraphError):
    """401/403, or no token could be obtained: credentials or permissions are wrong."""


class GraphThrottled(GraphError):
    """429/503 after the SDK's own retries: wait ``retry_after_seconds`` (None: no hint) and retry."""

    def __init__(self, status: int | None, message: str, retry_after_seconds: float | None) -> None:
        super().__init__(status, message)
        self.retry_after_seconds = retry_after_seconds


PLATFORM_FOLDER = "_platform"  # templates and feedback; the council's own files go in the folder itself


def folder_path(return_id: str, period: str, council_code: str) -> str:
    """The SharePoint folder a council uploads one return's files for one period into."""
    parts = (return_id, period, council_code)
    for p in parts:
        if not p or "/" in p or p in (".", "..") or set(p) & _FORBIDDEN_IN_NAMES:
            raise ValueError(f"not a valid folder name part: {p!r}")
    return "/".join(parts)


def clean_path(path: str) -> str:
    """A drive-relative path without leading/trailing slashes; refuses ``..``, ``.`` and ``:``."""
    segments = [s for s in path.strip().split("/") if s]
    for s in segments:
        if s in (".", "..") or set(s) & _FORBIDDEN_IN_NAMES:
            raise ValueError(f"invalid path {path!r}: segment {s!r} is not allowed")
    return "/".join(segments)


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class DriveItem:
    """A file or folder in a drive; ``path`` is relative to the drive's root ("" for the root)."""

    id: str
    name: str
    path: str
    etag: str | None
    ctag: str | None
    size: int
    last_modified: dt.datetime
    last_modified_by: str | None
    is_folder: bool
    web_url: str | None

    @classmethod
    def from_graph(cls, data: dict[str, Any], path: str) -> DriveItem:
        modified = data.get("lastModifiedDateTime")
        return cls(
            id=data["id"],
            name=data.get("name", ""),
            path=path,
            etag=data.get("eTag"),
            ctag=data.get("cTag"),
            size=int(data.get("size") or 0),
            last_modified=dt.datetime.fromisoformat(modified) if modified else dt.datetime.fromtimestamp(0, dt.timezone.utc),
            last_modified_by=_identity_name(data.get("lastModifiedBy")),
            is_folder="folder" in data or "root" in data,
            web_url=data.get("webUrl"),
        )


def _identity_name(identity_set: dict[str, Any] | None) -> str | None:
    for kind in ("user", "application", "device"):
        ident = (identity_set or {}).get(kind)
        if ident:
            return ident.get("displayName") or ident.get("email") or ident.get("id")
    return None


class _SessionGone(Exception):
    """The upload session's URL answered 404: it expired or was cleaned up; start a new one."""


def check_upload_url(url: str) -> str:
    """The session's uploadUrl, refused unless https (plain http only on loopback, like kiota)."""
    parts = urlsplit(url)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise GraphError(None, f"refusing upload URL {parts.scheme}://{parts.hostname}: not https")
    return url


def next_expected_offset(body: Any, total: int) -> int | None:
    """The first byte the server still wants, from an uploadSession's ``nextExpectedRanges``.

    None when the body has no usable range. Ranges are ``"start-end"`` or ``"start-"``.
    """
    ranges = body.get("nextExpectedRanges") if isinstance(body, dict) else None
    if not ranges or not isinstance(ranges, list) or not isinstance(ranges[0], str):
        return None
    start = ranges[0].partition("-")[0].strip()
    if not start.isdigit() or int(start) >= total:
        return None
    return int(start)


def _retry_delay(attempt: int) -> float:
    """Exponential back-off for a failed byte range without a Retry-After: 1, 2, 4, 8 ... 30 s."""
    return min(30.0, float(2 ** (attempt - 1)))


def _json_or_none(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _graph_error_message(response: Any) -> str:
    """Graph's error message from a JSON error body, else a generic one."""
    body = _json_or_none(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return f"{error.get('code', 'error')}: {error['message']}"
    return "request failed"


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name) if hasattr(headers, "get") else None
    if value is None and isinstance(headers, dict):
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value


# The hook caches one request adapter per conn id for the process; its HTTP client and the
# credential's session belong to the event loop that built it. Remember that loop, so a call
# from another loop (each ``asyncio.run`` is a new one) rebuilds the adapter instead of failing
# with "Event loop is closed".
_ADAPTER_LOOPS: weakref.WeakKeyDictionary[Any, weakref.ReferenceType[asyncio.AbstractEventLoop]] = (
    weakref.WeakKeyDictionary()
)


class SharePointDrive:
    """One SharePoint document library (a Graph drive), addressed by paths relative to its root."""

    def __init__(
        self,
        conn_id: str = DEFAULT_CONN_ID,
        drive_id: str | None = None,
        timeout: float | None = None,
        upload_chunk_size: int = UPLOAD_CHUNK_SIZE,
    ) -> None:
        from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

        if not 0 < upload_chunk_size < UPLOAD_FRAGMENT_MAX or upload_chunk_size % UPLOAD_FRAGMENT_UNIT:
            raise ValueError(
                f"upload_chunk_size must be a multiple of {UPLOAD_FRAGMENT_UNIT} bytes (320 KiB) "
                f"below {UPLOAD_FRAGMENT_MAX} (60 MiB), not {upload_chunk_size}"
            )
        self.conn_id = conn_id
        self._drive_id = drive_id
        self.upload_chunk_size = upload_chunk_size
        self.hook = KiotaRequestAdapterHook(conn_id=conn_id, timeout=timeout)

    # --- configuration ---------------------------------------------------------------------
    async def drive_id(self) -> str:
        """The drive id: argument, else the connection's ``drive_id`` extra, else the environment."""
        if self._drive_id:
            return self._drive_id
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

        connection = await get_async_connection(conn_id=self.conn_id)
        extra = await get_async_extra_dejson(connection)
        drive_id = extra.get("drive_id") or os.environ.get(DRIVE_ID_ENV)
        if not drive_id:
            raise GraphError(
                None,
                f"no SharePoint drive id: pass drive_id, set the 'drive_id' extra of connection "
                f"{self.conn_id!r}, or set {DRIVE_ID_ENV}",
            )
        self._drive_id = str(drive_id)
        return self._drive_id

    async def _item_url(self, path: str) -> str:
        drive = quote(await self.drive_id(), safe="!")
        path = clean_path(path)
        return f"drives/{drive}/root:/{quote(path)}:" if path else f"drives/{drive}/root"

    # --- transport ---------------------------------------------------------------------------
    def _forget_adapter_from_other_loop(self) -> None:
        from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

        cache = KiotaRequestAdapterHook.cached_request_adapters
        loop = asyncio.get_running_loop()
        cached = cache.get(self.conn_id)
        if cached is not None:
            owner = _ADAPTER_LOOPS.get(cached[1])
            if owner is not None and owner() is not loop:
                # Its loop is gone or is another one; it cannot be closed from here.
                cache.pop(self.conn_id, None)

    def _remember_adapter_loop(self) -> None:
        from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

        cached = KiotaRequestAdapterHook.cached_request_adapters.get(self.conn_id)
        if cached is not None and cached[1] not in _ADAPTER_LOOPS:
            _ADAPTER_LOOPS[cached[1]] = weakref.ref(asyncio.get_running_loop())

    async def _request(
        self,
        url: str,
        method: str = "GET",
        data: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> bytes | None:
        """One Graph request through the hook; the raw body (None when empty) or a GraphError."""
        import httpx
        from azure.core.exceptions import AzureError, ClientAuthenticationError
        from kiota_abstractions.api_error import APIError

        what = f"{method} {url}"
        self._forget_adapter_from_other_loop()
        try:
            # response_type="bytes": kiota returns the body as is (no JSON guessing, binary safe)
            # and raises APIError with the status and headers for any failure.
            return await self.hook.run(
                url=url,
                method=method,
                data=BytesIO(data) if isinstance(data, bytes) else data,
                headers=headers,
                response_type="bytes",
            )
        except APIError as e:
            status = e.response_status_code
            if status in THROTTLE_STATUSES:
                retry_after = parse_retry_after(_header(e.response_headers, "Retry-After"))
                raise GraphThrottled(status, f"{what}: throttled after the SDK's retries", retry_after) from e
            if status == 404:
                raise GraphNotFound(status, f"{what}: not found") from e
            if status in (401, 403):
                if status == 401:
                    await self.hook.close()  # drop the adapter and its cached token
                raise GraphAuthError(status, f"{what}: not authorised") from e
            raise GraphError(status, f"{what}: {e.message or 'request failed'}") from e
        except ClientAuthenticationError as e:
            raise GraphAuthError(None, f"{what}: could not get a token: {e.message}") from e
        except AzureError as e:  # azure-identity could not reach the token endpoint (network, TLS)
            raise GraphError(None, f"{what}: token request failed: {type(e).__name__}: {e.message}") from e
        except httpx.TimeoutException as e:
            raise GraphError(None, f"{what}: timed out ({type(e).__name__})") from e
        except httpx.TransportError as e:
            raise GraphError(None, f"{what}: {type(e).__name__}: {e}") from e
        finally:
            self._remember_adapter_loop()

    async def _json(self, url: str, method: str = "GET", data: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
        import json

        body = await self._request(url, method, data, headers)
        if not body:
            raise GraphError(None, f"{method} {url}: empty response where JSON was expected")
        return json.loads(body)

    # --- the API -------------------------------------------------------------------------------
    async def get_item(self, path: str) -> DriveItem | None:
        """The item at ``path`` ("" is the root), or None if it does not exist."""
        try:
            data = await self._json(await self._item_url(path))
        except GraphNotFound:
            return None
        return DriveItem.from_graph(data, clean_path(path))

    async def list_folder(self, path: str) -> list[DriveItem]:
        """The folder's children (all pages). A missing folder is [], a missing drive an error."""
        folder = clean_path(path)
        base = await self._item_url(folder)
        url = f"{base}/children"
        items: list[DriveItem] = []
        try:
            page = await self._json(url)
        except GraphNotFound:
            if folder and await self.get_item("") is not None:
                return []
            raise
        while True:
            for child in page.get("value", []):
                name = child.get("name", "")
                items.append(DriveItem.from_graph(child, f"{folder}/{name}" if folder else name))
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return items
            # the link is echoed by the server and gets our token: only follow it to allowed hosts
            await self.hook.assert_allowed_host(next_link)
            page = await self._json(next_link)

    async def ensure_folder(self, path: str) -> DriveItem:
        """Create the folder and any missing parents; an existing folder is left as it is."""
        folder = clean_path(path)
        existing = await self.get_item(folder)
        if existing is None:
            parent = ""
            for name in folder.split("/"):
                children_url = f"{await self._item_url(parent)}/children"
                body = {"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": "fail"}
                try:
                    await self._request(children_url, "POST", body)
                except GraphError as e:
                    if e.status != 409:  # 409 nameAlreadyExists: made before us or concurrently
                        raise
                parent = f"{parent}/{name}" if parent else name
            existing = await self.get_item(folder)
        if existing is None or not existing.is_folder:
            raise GraphError(409, f"{folder!r} exists and is not a folder")
        return existing

    async def upload(self, path: str, content: bytes) -> DriveItem:
        """Create or replace the file at ``path``; parents are created.

        Up to 4 MiB: one simple-upload PUT through the hook. Larger: an upload session (see
        :meth:`_upload_in_session`), which Graph requires above its simple-upload limit.
        """
        target = clean_path(path)
        if not target:
            raise ValueError("upload needs a file path, not the root")
        if len(content) > SIMPLE_UPLOAD_LIMIT:
            return await self._upload_in_session(target, bytes(content))
        content_type = mimetypes.guess_type(target)[0] or "application/octet-stream"
        data = await self._json(
            f"{await self._item_url(target)}/content", "PUT", bytes(content), {"Content-Type": content_type}
        )
        return DriveItem.from_graph(data, target)

    # --- upload sessions -----------------------------------------------------------------------
    async def _upload_in_session(self, target: str, content: bytes) -> DriveItem:
        """Upload through a Graph upload session, restarting it if the server forgets it (404).

        Only ``createUploadSession`` goes through the hook (it needs the token); the byte ranges go
        to the pre-authenticated ``uploadUrl`` with a plain httpx client, because Microsoft
        documents that the Authorization header must not be sent there (it may answer 401) and
        the URL may be on another host than Graph. A session abandoned after an error is
        cancelled (DELETE) so the server can drop the partial file at once.
        """
        async with await self._upload_client() as client:
            for restart in range(UPLOAD_SESSION_RESTARTS + 1):
                upload_url = await self._create_upload_session(target)
                try:
                    data = await self._send_ranges(client, upload_url, target, content)
                except _SessionGone:
                    if restart == UPLOAD_SESSION_RESTARTS:
                        raise GraphError(
                            404, f"upload of {target}: the upload session expired {restart + 1} times"
                        ) from None
                    log.warning("upload of %s: the upload session expired; starting a new one", target)
                    continue
                except BaseException:
                    await self._cancel_upload_session(client, upload_url)
                    raise
                return DriveItem.from_graph(data, target)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _create_upload_session(self, target: str) -> str:
        body = {"item": {"@microsoft.graph.conflictBehavior": "replace"}}
        url = f"{await self._item_url(target)}/createUploadSession"
        session = await self._json(url, "POST", body)
        upload_url = session.get("uploadUrl")
        if not isinstance(upload_url, str) or not upload_url:
            raise GraphError(None, f"POST {url}: the answer has no uploadUrl")
        return check_upload_url(upload_url)

    async def _upload_client(self) -> Any:
        """An httpx client for the upload URL with the connection's TLS and proxy settings, no auth."""
        import httpx
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

        extra = await get_async_extra_dejson(await get_async_connection(conn_id=self.conn_id))
        return httpx.AsyncClient(
            mounts=self.hook.to_httpx_proxies(self.hook.get_proxies(extra)),
            verify=extra.get("verify", True),
            trust_env=extra.get("trust_env", False),
            timeout=httpx.Timeout(self.hook.timeout or UPLOAD_CHUNK_TIMEOUT),
            follow_redirects=False,
        )

    async def _send_ranges(self, client: Any, upload_url: str, target: str, content: bytes) -> dict[str, Any]:
        """PUT the byte ranges in order until the server answers 200/201 with the driveItem.

        429/503 and other 5xx answers, timeouts and dropped connections are retried (Retry-After
        honoured, else exponential back-off), at most ``UPLOAD_CHUNK_ATTEMPTS`` times in a row;
        after an answer that leaves it unclear what the server kept (5xx, network, 416) the
        session's status (GET uploadUrl) says where to resume.
        """
        import httpx

        total = len(content)
        offset = 0
        failures = 0
        while True:
            end = min(offset + self.upload_chunk_size, total) - 1
            what = f"upload of {target}: bytes {offset}-{end}/{total}"
            try:
                response = await client.put(
                    upload_url,
                    content=content[offset : end + 1],
                    headers={"Content-Range": f"bytes {offset}-{end}/{total}"},
                )
            except httpx.TransportError as e:  # timeouts included
                failures += 1
                if failures >= UPLOAD_CHUNK_ATTEMPTS:
                    raise GraphError(None, f"{what}: {type(e).__name__}: {e}") from e
                delay = _retry_delay(failures)
                log.warning("%s: %s, retrying in %.1f s", what, type(e).__name__, delay)
                await asyncio.sleep(delay)
                offset = await self._resume_offset(client, upload_url, total, offset)
                continue
            status = response.status_code
            if status in (200, 201):
                item = _json_or_none(response)
                if not isinstance(item, dict) or "id" not in item:
                    raise GraphError(status, f"{what}: the last range was accepted but no driveItem came back")
                return item
            if status == 202:
                following = next_expected_offset(_json_or_none(response), total)
                following = end + 1 if following is None else following
                failures = 0 if following > offset else failures + 1  # no progress counts as a failure
                if failures >= UPLOAD_CHUNK_ATTEMPTS:
                    raise GraphError(202, f"{what}: the server keeps asking for byte {following}")
                offset = following
                continue
            if status == 404:
                raise _SessionGone()
            if status in (401, 403):
                raise GraphAuthError(status, f"{what}: the upload URL refused the request")
            if status == 416 or status in THROTTLE_STATUSES or status >= 500:
                failures += 1
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if failures >= UPLOAD_CHUNK_ATTEMPTS or (retry_after or 0) >= UPLOAD_MAX_WAIT:
                    if status in THROTTLE_STATUSES:
                        raise GraphThrottled(status, f"{what}: throttled after {failures} attempts", retry_after)
                    raise GraphError(status, f"{what}: failed after {failures} attempts")
                if status != 416:
                    delay = retry_after if retry_after is not None else _retry_delay(failures)
                    log.warning("%s: HTTP %s, retrying in %.1f s", what, status, delay)
                    await asyncio.sleep(delay)
                if status not in THROTTLE_STATUSES:  # a refused range was not stored; others may be
                    offset = await self._resume_offset(client, upload_url, total, offset)
                continue
            message = _graph_error_message(response)
            raise GraphError(status, f"{what}: {message}")

    async def _resume_offset(self, client: Any, upload_url: str, total: int, current: int) -> int:
        """Where to go on, from the session's status; ``current`` if the status is unavailable."""
        import httpx

        try:
            response = await client.get(upload_url)
        except httpx.TransportError:
            return current
        if response.status_code == 404:
            raise _SessionGone()
        if response.status_code != 200:
            return current
        following = next_expected_offset(_json_or_none(response), total)
        return current if following is None else following

    async def _cancel_upload_session(self, client: Any, upload_url: str) -> None:
        """Best effort: the error that made us give up is what the caller must see, not this one."""
        import httpx

        try:
            await client.delete(upload_url)
        except httpx.HTTPError as e:
            log.warning("could not cancel an upload session: %s", type(e).__name__)

    async def download(self, item_id: str) -> bytes:
        """The file's exact bytes (Graph answers with a redirect to a download URL, followed)."""
        if not item_id or "/" in item_id:
            raise ValueError(f"not an item id: {item_id!r}")
        drive = quote(await self.drive_id(), safe="!")
        body = await self._request(f"drives/{drive}/items/{quote(item_id, safe='!')}/content")
        return body or b""

    async def web_url(self, path: str) -> str | None:
        """The browser link of a file or folder (to send to councils), None if it does not exist."""
        item = await self.get_item(path)
        return item.web_url if item else None

    async def aclose(self) -> None:
        """Close the hook's cached adapter for this connection. Not in a trigger: it is shared."""
        await self.hook.close()

    async def __aenter__(self) -> SharePointDrive:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- synchronous wrappers for operators --------------------------------------------------
    def _sync(self, make: Callable[[], Awaitable[T]]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("SharePointDrive's *_sync methods cannot run inside an event loop; await the async ones")

        async def run_and_close() -> T:
            try:
                return await make()
            finally:
                await self.aclose()  # its loop ends with asyncio.run: close while it still runs

        return asyncio.run(run_and_close())

    def get_item_sync(self, path: str) -> DriveItem | None:
        return self._sync(lambda: self.get_item(path))

    def list_folder_sync(self, path: str) -> list[DriveItem]:
        return self._sync(lambda: self.list_folder(path))

    def ensure_folder_sync(self, path: str) -> DriveItem:
        return self._sync(lambda: self.ensure_folder(path))

    def upload_sync(self, path: str, content: bytes) -> DriveItem:
        return self._sync(lambda: self.upload(path, content))

    def download_sync(self, item_id: str) -> bytes:
        return self._sync(lambda: self.download(item_id))

    def web_url_sync(self, path: str) -> str | None:
        return self._sync(lambda: self.web_url(path))
