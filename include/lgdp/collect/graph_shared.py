"""One Graph client and one ``delta`` query per drive for every folder trigger in a triggerer.

A peak month has 5,440 council folders waiting at once (170 returns x 32 councils), all in one
triggerer process. Listing each folder every poll would be 5,440 Graph calls per interval, and
Microsoft throttles a tenant long before that. Instead, every :class:`DriveWatcher` (one per
connection and drive in the triggerer's event loop) asks Graph what changed in the whole drive
with one ``GET /drives/{id}/root/delta`` per poll (SharePoint supports delta on the root only),
follows its pages, and wakes only the triggers whose folder changed; each of those then lists
its own folder, so the decision to collect a file is still made on the folder's real listing.

- **Steady state**: one delta call per drive per poll interval (the shortest interval of the
  triggers watching it), plus one listing per folder that changed.
- **Start**: the first delta (no token) enumerates the drive once; the items are kept as a tree
  of ids (Graph leaves ``parentReference.path`` out of delta answers, so paths are rebuilt from
  names and parent ids). A trigger checks its folder against the tree when it subscribes and
  lists the folder only if the tree shows a file it has not seen, so thousands of triggers
  starting together cost no listing each. The tree and the delta link outlive a watcher with no
  subscribers (module level, per connection and drive), so a trigger that defers again later
  resumes from the last token instead of enumerating the drive again.
- **Shared client and token**: every watcher and trigger of one connection uses one
  :class:`~lgdp.collect.graph.SharePointDrive`, whose hook keeps one request adapter (and so one
  cached access token) per connection for the process and event loop.
- **Throttling**: a 429/503 after the SDK's own retries waits ``Retry-After`` before the next
  delta (the triggers keep waiting); other errors back off exponentially; a 410
  (``resyncRequired``: token expired) enumerates again and rechecks every folder.
- **No delta** (a Graph service answering delta with 400/404/405/501): the watcher falls back to
  waking every trigger each interval, which then lists its folder as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from lgdp.collect.graph import GraphError, GraphThrottled, SharePointDrive, clean_path

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 900.0
DELTA_UNSUPPORTED = frozenset({400, 404, 405, 501})


@dataclass
class Node:
    """One drive item as delta last described it."""

    name: str
    parent: str | None
    is_folder: bool
    data: dict[str, Any]


@dataclass
class DriveIndex:
    """What the drive holds, by item id (with each folder's children by name), and the next delta link."""

    nodes: dict[str, Node] = field(default_factory=dict)
    children_of: dict[str | None, dict[str, str]] = field(default_factory=dict)
    root_id: str | None = None
    delta_link: str | None = None

    def clear(self) -> None:
        self.nodes.clear()
        self.children_of.clear()
        self.root_id = None
        self.delta_link = None

    def put(self, item_id: str, node: Node) -> Node | None:
        previous = self.remove(item_id)
        self.nodes[item_id] = node
        self.children_of.setdefault(node.parent, {})[node.name] = item_id
        return previous

    def remove(self, item_id: str) -> Node | None:
        node = self.nodes.pop(item_id, None)
        if node is not None:
            siblings = self.children_of.get(node.parent)
            if siblings is not None and siblings.get(node.name) == item_id:
                del siblings[node.name]
        return node

    def path_of(self, item_id: str) -> str | None:
        parts: list[str] = []
        current: str | None = item_id
        for _ in range(64):
            if current is None:
                return None
            if current == self.root_id:
                return "/".join(reversed(parts))
            node = self.nodes.get(current)
            if node is None:
                return None
            parts.append(node.name)
            current = node.parent
        return None

    def folder_id(self, path: str) -> str | None:
        target = clean_path(path)
        current = self.root_id
        if not target or current is None:
            return current
        for name in target.split("/"):
            current = self.children_of.get(current, {}).get(name)
            if current is None or not self.nodes[current].is_folder:
                return None
        return current

    def children(self, folder_id: str) -> list[tuple[str, Node]]:
        return [(i, self.nodes[i]) for i in self.children_of.get(folder_id, {}).values()]


class Subscription:
    """One trigger's interest in one folder: ``changed`` is set when the folder should be looked at."""

    def __init__(self, folder: str, poll_interval: float) -> None:
        self.folder = clean_path(folder)
        self.poll_interval = poll_interval
        self.changed = asyncio.Event()
        self.changed.set()  # look once at the start


# (connection, drive id) -> the index kept between watchers of the same process.
_INDEXES: dict[tuple[str, str | None], DriveIndex] = {}
# event loop -> (connection, drive id) -> the running watcher.
_WATCHERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str | None], DriveWatcher]] = (
    weakref.WeakKeyDictionary()
)


def watcher_for(conn_id: str, drive_id: str | None) -> DriveWatcher:
    """The watcher of this connection and drive in the running event loop (made on first use)."""
    loop = asyncio.get_running_loop()
    per_loop = _WATCHERS.setdefault(loop, {})
    key = (conn_id, drive_id)
    watcher = per_loop.get(key)
    if watcher is None:
        watcher = per_loop[key] = DriveWatcher(conn_id, drive_id)
    return watcher


class DriveWatcher:
    """Polls one drive's changes with ``delta`` and wakes the subscribers of the folders that changed."""

    def __init__(self, conn_id: str, drive_id: str | None) -> None:
        self.conn_id = conn_id
        self.key = (conn_id, drive_id)
        self.drive = SharePointDrive(conn_id=conn_id, drive_id=drive_id)
        self.index = _INDEXES.setdefault(self.key, DriveIndex())
        self.subscribers: dict[str, set[Subscription]] = {}
        self.ready = asyncio.Event()  # the index is up to date (first poll done) or delta is unavailable
        self.delta_supported = True
        self.calls = 0  # delta requests made (pages included)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._interval = float("inf")  # the interval of the current wait

    # --- subscribers ---------------------------------------------------------------------------
    def subscribe(self, folder: str, poll_interval: float) -> Subscription:
        sub = Subscription(folder, poll_interval)
        self.subscribers.setdefault(sub.folder, set()).add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"lgdp-drive-watcher-{self.conn_id}")
        if poll_interval < self._interval:
            self._wake.set()  # a shorter interval takes effect at once; otherwise no extra query
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self.subscribers.get(sub.folder)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.subscribers[sub.folder]
        if not self.subscribers and self._task is not None:
            self._task.cancel()
            self._task = None
            per_loop = _WATCHERS.get(asyncio.get_running_loop())
            if per_loop is not None and per_loop.get(self.key) is self:
                del per_loop[self.key]

    def interval(self) -> float:
        return min((s.poll_interval for subs in self.subscribers.values() for s in subs), default=60.0)

    def known_listing(self, folder: str) -> list[dict[str, Any]] | None:
        """The folder's children as the index knows them (item refs), None if the index cannot say."""
        if not self.delta_supported:
            return None
        folder_id = self.index.folder_id(folder)
        if folder_id is None:
            return []  # not there yet: its creation will show up in a delta
        from lgdp.collect.graph import DriveItem
        from lgdp.airflow.triggers import item_ref

        base = clean_path(folder)
        return [
            item_ref(DriveItem.from_graph(n.data, f"{base}/{n.name}" if base else n.name))
            for _, n in self.index.children(folder_id)
        ]

    # --- the poll loop -----------------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        while self.subscribers:
            started = time.monotonic()
            wait = self.interval()
            try:
                changed = await self._poll_once() if self.delta_supported else None
                failures = 0
                self._notify(changed)
            except GraphThrottled as exc:
                wait = max(float(exc.retry_after_seconds or 0), 1.0)
                log.info("Graph throttled the delta query of drive %s; next one in %.0f s", self.key[1] or "(default)", wait)
            except GraphError as exc:
                if exc.status in DELTA_UNSUPPORTED and not self.ready.is_set():
                    log.warning("drive %s: delta is not available (%s); every folder is listed each poll", self.key[1], exc)
                    self.delta_supported = False
                    self._notify(None)
                    continue
                if exc.status == 410:  # the token expired: enumerate again, recheck every folder
                    log.info("drive %s: delta token expired; enumerating the drive again", self.key[1])
                    self.index.clear()
                    continue
                failures += 1
                wait = min(MAX_BACKOFF_SECONDS, wait * (2 ** min(failures, 10)))
                log.warning("delta query of drive %s failed (%s); retrying in %.0f s", self.key[1], exc, wait)
            except Exception as exc:  # noqa: BLE001 - any outage: back off and keep watching
                failures += 1
                wait = min(MAX_BACKOFF_SECONDS, wait * (2 ** min(failures, 10)))
                log.warning("delta query of drive %s failed (%s: %s); retrying in %.0f s", self.key[1], type(exc).__name__, exc, wait)
            self._wake.clear()
            self._interval = wait
            remaining = wait - (time.monotonic() - started)
            if remaining > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=remaining)
                except asyncio.TimeoutError:
                    pass

    def _notify(self, changed: set[str] | None) -> None:
        """Wake the subscribers of the changed folders (all of them when ``changed`` is None)."""
        first = not self.ready.is_set()
        self.ready.set()
        for folder, subs in self.subscribers.items():
            if first or changed is None or folder in changed:
                for sub in subs:
                    sub.changed.set()

    async def _poll_once(self) -> set[str]:
        """One delta query (all its pages); the paths of the folders whose children changed."""
        import json

        index = self.index
        if index.delta_link:
            try:
                await self.drive.hook.assert_allowed_host(index.delta_link)
            except ValueError:  # kept from a connection that pointed elsewhere: start again
                log.info("drive %s: the saved delta link is not for this connection's host; enumerating again", self.key[1])
                index.clear()
        if index.delta_link:
            url = index.delta_link
        else:
            drive = quote(await self.drive.drive_id(), safe="!")
            url = f"drives/{drive}/root/delta"
            index.clear()
        changed_parents: set[str] = set()
        while True:
            if url.startswith("http"):
                await self.drive.hook.assert_allowed_host(url)  # echoed links get our token: only allowed hosts
            body = await self.drive._request(url)  # noqa: SLF001 - the drive's own transport, shared
            self.calls += 1
            page = json.loads(body or b"{}")
            for item in page.get("value", []):
                item_id = item.get("id")
                if not item_id:
                    continue
                parent = (item.get("parentReference") or {}).get("id")
                if "root" in item:
                    index.root_id = item_id
                    continue
                if "deleted" in item:
                    gone = index.remove(item_id)
                    changed_parents.add(parent or (gone.parent if gone else "") or "")
                    continue
                previous = index.put(item_id, Node(item.get("name", ""), parent, "folder" in item, _slim(item)))
                if previous is not None and previous.parent != parent:
                    changed_parents.add(previous.parent or "")
                changed_parents.add(parent or "")
                if "folder" in item:
                    changed_parents.add(item_id)  # a folder created or moved: its own subscribers look
            next_link = page.get("@odata.nextLink")
            if next_link:
                url = next_link
                continue
            delta_link = page.get("@odata.deltaLink")
            if delta_link:
                index.delta_link = delta_link
            break
        if index.root_id is None:  # a service that leaves the root out of delta: ask for it once
            root = json.loads(await self.drive._request(f"drives/{quote(await self.drive.drive_id(), safe='!')}/root") or b"{}")  # noqa: SLF001
            self.calls += 1
            index.root_id = root.get("id")
        paths = {index.path_of(i) for i in changed_parents if i}
        return {p for p in paths if p is not None}


def _slim(item: dict[str, Any]) -> dict[str, Any]:
    """What an item ref needs from a delta item (kept for every item of the drive: stay small)."""
    keep = ("id", "name", "eTag", "cTag", "size", "lastModifiedDateTime", "lastModifiedBy", "folder", "file")
    out = {k: item[k] for k in keep if k in item}
    if "file" in out:
        out["file"] = {}  # hashes and mime type are not needed to notice a new file
    if "folder" in out:
        out["folder"] = {}
    return out
