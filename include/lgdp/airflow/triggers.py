"""Triggers: they only wait. Imported by class path in the triggerer, so they live in the package."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

MAX_BACKOFF_SECONDS = 900.0


def new_items(listing: list[dict[str, Any]], seen: list[str]) -> list[dict[str, Any]]:
    """Files in the council's folder not processed before, oldest first (``seen`` = "id:etag")."""
    known = set(seen)
    fresh = [i for i in listing if not i["is_folder"] and f"{i['id']}:{i['etag']}" not in known]
    return sorted(fresh, key=lambda i: (i["last_modified"] or "", i["name"]))


def backoff(failures: int, base: float) -> float:
    """Exponential back-off after errors, capped; a throttle's Retry-After overrides it."""
    return min(MAX_BACKOFF_SECONDS, base * (2 ** min(failures, 10)))


class CouncilFolderTrigger(BaseTrigger):
    """Waits for a new or changed file in one council's SharePoint folder, or the window's close.

    The folder is not polled by itself: a shared :class:`lgdp.collect.graph_shared.DriveWatcher`
    asks Graph what changed in the whole drive once per poll interval and wakes the triggers whose
    folder changed, which then list it. Honours ``Retry-After`` on 429/503 and backs off on other
    errors. Its event carries the
    file references only (ids, names, etags), never content. ``seen`` travels in the event too,
    because ``dag.test`` replaces the defer kwargs (see the field notes).
    """

    def __init__(
        self,
        *,
        folder: str,
        seen: list[str],
        closes_at: str,
        poll_interval: float,
        conn_id: str = "msgraph_sharepoint",
        drive_id: str | None = None,
    ) -> None:
        super().__init__()
        self.folder = folder
        self.seen = list(seen)
        self.closes_at = closes_at
        self.poll_interval = poll_interval
        self.conn_id = conn_id
        self.drive_id = drive_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "folder": self.folder,
                "seen": self.seen,
                "closes_at": self.closes_at,
                "poll_interval": self.poll_interval,
                "conn_id": self.conn_id,
                "drive_id": self.drive_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait for the drive's watcher to say the folder changed, then list it (see graph_shared).

        Thousands of these share one watcher per drive in the triggerer: one ``delta`` query per
        poll for all of them, and a listing only for a folder that changed (or, at the start,
        whose known contents show a file not seen yet).
        """
        from lgdp.collect.graph import GraphThrottled
        from lgdp.collect.graph_shared import watcher_for

        watcher = watcher_for(self.conn_id, self.drive_id)
        sub = watcher.subscribe(self.folder, self.poll_interval)
        closes = dt.datetime.fromisoformat(self.closes_at)
        failures = 0
        try:
            while True:
                left = (closes - dt.datetime.now(dt.timezone.utc)).total_seconds()
                if left <= 0:
                    yield TriggerEvent({"status": "closed", "seen": self.seen})
                    return
                waiting_for = sub.changed if watcher.ready.is_set() else watcher.ready
                if not waiting_for.is_set():
                    await _wait_for(waiting_for, left + 1)
                    continue
                sub.changed.clear()
                known = watcher.known_listing(self.folder)
                if known is not None and not new_items(known, self.seen):
                    continue  # nothing new as far as the drive's changes tell: wait for the next change
                try:
                    listing = [item_ref(i) for i in await watcher.drive.list_folder(self.folder)]
                    failures = 0
                except GraphThrottled as exc:
                    wait = max(float(exc.retry_after_seconds or 0), 1.0)
                    self.log.info("Graph throttled listing %s; retrying in %.0f s", self.folder, wait)
                    await asyncio.sleep(min(wait, left + 1))
                    sub.changed.set()
                    continue
                except Exception as exc:  # noqa: BLE001 - any outage: back off and keep waiting
                    failures += 1
                    wait = backoff(failures, self.poll_interval)
                    self.log.warning("Listing %s failed (%s); retrying in %.0f s", self.folder, type(exc).__name__, wait)
                    await asyncio.sleep(min(wait, left + 1))
                    sub.changed.set()
                    continue
                fresh = new_items(listing, self.seen)
                if fresh:
                    yield TriggerEvent({"status": "files", "items": fresh, "seen": self.seen})
                    return
        finally:
            watcher.unsubscribe(sub)


async def _wait_for(event: asyncio.Event, timeout: float) -> None:
    """Until the event is set or ``timeout`` seconds pass."""
    try:
        await asyncio.wait_for(event.wait(), timeout=timeout)
    except asyncio.TimeoutError:
        pass


def item_ref(item: Any) -> dict[str, Any]:
    """A drive item as plain JSON-able data (what goes into events and XCom)."""
    return {
        "id": item.id,
        "name": item.name,
        "path": item.path,
        "etag": item.etag,
        "size": item.size,
        "is_folder": item.is_folder,
        "last_modified": item.last_modified.isoformat() if item.last_modified else None,
        "last_modified_by": item.last_modified_by,
    }
