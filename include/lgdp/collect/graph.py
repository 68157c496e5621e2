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

Limits: :meth:`SharePointDrive.upload` is Graph's simple upload, for files up to 4 MiB
(``SIMPLE_UPLOAD_LIMIT``); larger files would need an upload session, not implemented. See
``docs/m365-standin.md`` for the retry behaviour measured against the local stand-in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import mimetypes
import os
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from io import BytesIO
from typing import Any, TypeVar
from urllib.parse import quote

DEFAULT_CONN_ID = "msgraph_sharepoint"
DRIVE_ID_ENV = "LGDP_SHAREPOINT_DRIVE_ID"
SIMPLE_UPLOAD_LIMIT = 4 * 1024 * 1024
THROTTLE_STATUSES = frozenset({429, 503})
_FORBIDDEN_IN_NAMES = set('\\:*?"<>|\x00')

T = TypeVar("T")


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

    def __init__(self, conn_id: str = DEFAULT_CONN_ID, drive_id: str | None = None, timeout: float | None = None) -> None:
        from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

        self.conn_id = conn_id
        self._drive_id = drive_id
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
        """Create or replace the file at ``path`` (simple upload, at most 4 MiB); parents are created."""
        target = clean_path(path)
        if not target:
            raise ValueError("upload needs a file path, not the root")
        if len(content) > SIMPLE_UPLOAD_LIMIT:
            raise ValueError(
                f"{target}: {len(content)} bytes is more than the {SIMPLE_UPLOAD_LIMIT} bytes of a simple upload"
            )
        content_type = mimetypes.guess_type(target)[0] or "application/octet-stream"
        data = await self._json(
            f"{await self._item_url(target)}/content", "PUT", bytes(content), {"Content-Type": content_type}
        )
        return DriveItem.from_graph(data, target)

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
