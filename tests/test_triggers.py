"""The folder trigger's pure parts, and that it serialises as the triggerer needs."""

from lgdp.airflow.triggers import MAX_BACKOFF_SECONDS, CouncilFolderTrigger, backoff, new_items


def item(i, etag, modified, folder=False, name=None):
    return {"id": i, "etag": etag, "last_modified": modified, "is_folder": folder, "name": name or f"{i}.xlsx"}


def test_new_items_are_unseen_files_oldest_first():
    listing = [
        item("b", "2", "2026-11-02T10:00:00+00:00"),
        item("a", "1", "2026-11-01T10:00:00+00:00"),
        item("p", "1", "2026-10-01T10:00:00+00:00", folder=True, name="_platform"),
        item("c", "1", "2026-11-03T10:00:00+00:00"),
    ]
    assert [i["id"] for i in new_items(listing, ["c:1"])] == ["a", "b"]
    # the same file with a new eTag is a new version
    assert [i["id"] for i in new_items(listing, ["a:0", "b:2", "c:1"])] == ["a"]


def test_backoff_grows_and_is_capped():
    assert backoff(1, 60) == 120 and backoff(2, 60) == 240
    assert backoff(50, 60) == MAX_BACKOFF_SECONDS


def test_trigger_serialises_to_its_own_class_path_and_kwargs():
    t = CouncilFolderTrigger(folder="clas/2025-26/S12000036", seen=["x:1"], closes_at="2026-10-31T23:59:00+00:00", poll_interval=900)
    path, kwargs = t.serialize()
    assert path == "lgdp.airflow.triggers.CouncilFolderTrigger"
    assert CouncilFolderTrigger(**kwargs).serialize() == (path, kwargs)


# --- many triggers, one drive: the shared watcher against the Graph stand-in over HTTP -----------

import asyncio  # noqa: E402
import datetime as dt  # noqa: E402
import time  # noqa: E402


def _graph_calls(m365, since: int) -> list[dict]:
    return [r for r in m365.requests("graph") if r["seq"] > since and r["path"].startswith("/v1.0/")]


def _last_seq(m365) -> int:
    return max((r["seq"] for r in m365.requests(None)), default=0)


def _triggers(folders, poll, closes_in=600.0):
    closes = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=closes_in)).isoformat()
    return [CouncilFolderTrigger(folder=f, seen=[], closes_at=closes, poll_interval=poll) for f in folders]


async def _first_event(trigger):
    async for event in trigger.run():
        return event.payload


def test_many_triggers_share_one_delta_query_per_poll_and_only_the_changed_folder_is_listed(m365):
    """40 folders, 40 triggers in one event loop (as in the triggerer): in steady state one Graph
    call per poll for all of them; a file in one folder wakes that trigger alone, which lists its
    folder once and fires soon after the next poll (the goal, poll + 5 s, is measured at scale by
    bench/triggers.py; here a margin for a loaded machine)."""
    folders = [f"clas/2025-26/S12{i:06d}" for i in range(40)]
    for f in folders:
        m365.put_file(f"{f}/_platform/template.xlsx", b"template")
    poll = 1.5

    async def scenario():
        triggers = _triggers(folders, poll)
        tasks = [asyncio.ensure_future(_first_event(t)) for t in triggers]
        await asyncio.sleep(poll * 2)  # subscribed, first enumeration done
        start = _last_seq(m365)
        await asyncio.sleep(poll * 4)
        steady = _graph_calls(m365, start)
        assert not any(t.done() for t in tasks)
        arrived = time.monotonic()
        before = _last_seq(m365)
        m365.put_file(f"{folders[7]}/return.xlsx", b"a council's file")
        event = await asyncio.wait_for(tasks[7], timeout=poll + 10)
        latency = time.monotonic() - arrived
        after = _graph_calls(m365, before)
        await asyncio.sleep(0.2)
        assert not any(t.done() for i, t in enumerate(tasks) if i != 7)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return steady, event, latency, after

    steady, event, latency, after = asyncio.run(scenario())
    assert all(r["path"].endswith("/root/delta") for r in steady), [r["path"] for r in steady]
    assert 2 <= len(steady) <= 5, f"{len(steady)} Graph calls in 4 poll intervals for 40 triggers"
    assert event["status"] == "files" and [i["name"] for i in event["items"]] == ["return.xlsx"]
    assert latency <= poll + 10
    listings = [r for r in after if r["path"].endswith("/children")]
    assert len(listings) == 1 and folders[7] in listings[0]["path"]
    # one token for everything (the shared adapter's credential)
    assert len([r for r in m365.requests("token") if "/token" in r["path"]]) <= 1


def test_the_watcher_honours_retry_after_on_the_delta_query(m365):
    """A 429 with Retry-After on the delta query: no delta before that many seconds, then it goes on."""
    folder = "clas/2025-26/S12000036"
    m365.put_file(f"{folder}/_platform/template.xlsx", b"template")

    async def scenario():
        [trigger] = _triggers([folder], 0.5)
        task = asyncio.ensure_future(_first_event(trigger))
        await asyncio.sleep(1.5)
        m365.inject_fault(status=429, retry_after=3, count=5, path_contains="/root/delta")  # beyond the SDK's retries
        await asyncio.sleep(1.0)
        m365.clear_faults()
        m365.put_file(f"{folder}/return.xlsx", b"data")
        event = await asyncio.wait_for(task, timeout=15)
        return event

    event = asyncio.run(scenario())
    assert event["status"] == "files"
    deltas = [r for r in m365.requests("graph") if r["path"].endswith("/root/delta")]
    throttled = [r for r in deltas if r["status"] == 429]
    assert throttled, "the fault was never hit"
    last_throttled = max(throttled, key=lambda r: r["seq"])
    after = [r for r in deltas if r["seq"] > last_throttled["seq"]]
    assert after, "no delta query after the throttle"
    from datetime import datetime

    gap = (datetime.fromisoformat(after[0]["time"]) - datetime.fromisoformat(last_throttled["time"])).total_seconds()
    assert gap >= 2.9, f"the next delta came {gap:.1f} s after a Retry-After of 3 s"


def test_an_expired_delta_token_resyncs_and_a_closed_window_still_ends_the_wait(m365):
    from lgdp.collect import graph_shared

    folder = "clas/2025-26/S12000036"
    m365.put_file(f"{folder}/_platform/template.xlsx", b"template")

    async def scenario():
        [trigger] = _triggers([folder], 0.5)
        task = asyncio.ensure_future(_first_event(trigger))
        await asyncio.sleep(1.5)
        with m365.state.delta_lock:  # the server forgets every token, as Graph may after a while
            m365.state.delta_snapshots.clear()
        m365.put_file(f"{folder}/return.xlsx", b"data")
        event = await asyncio.wait_for(task, timeout=15)
        [closing] = _triggers([folder + "-empty"], 0.5, closes_in=2)
        closed = await asyncio.wait_for(_first_event(closing), timeout=10)
        return event, closed

    event, closed = asyncio.run(scenario())
    assert event["status"] == "files"
    assert any(r["status"] == 410 for r in m365.requests("graph") if r["path"].endswith("/root/delta"))
    assert closed["status"] == "closed"
    assert not graph_shared._WATCHERS or all(not w for w in graph_shared._WATCHERS.values())
