"""Benchmark the collection triggers at peak: N council folder triggers in one process.

    .venv/bin/python bench/triggers.py [--n 500 1000 2000 5440] [--mode delta listing] [--poll 15] [--arrivals 10]

A peak month has up to 5,440 council folders waiting at once (170 returns x 32 councils), all
deferred to one triggerer. For each N, this runs N ``CouncilFolderTrigger`` instances on one
asyncio event loop, as Airflow's triggerer runs its triggers (one loop in the trigger runner
process), against the Microsoft Graph stand-in (``lgdp dev m365``, a separate process, over HTTP
with real tokens), with one drive holding the N council folders, each with its ``_platform``
folder and two templates, as ``open_collection`` leaves them.

Modes:
- ``delta``: the platform's triggers (``lgdp.airflow.triggers``): one shared watcher per drive,
  one ``root/delta`` query per poll, a listing only for a folder that changed.
- ``listing``: the triggers as they were before (kept here as ``ListingFolderTrigger``): each
  lists its own folder every poll through its own ``SharePointDrive`` (the hook already shares
  one request adapter per connection in the process).

Measured for each N and mode:
- **RSS**: resident memory of this process (the trigger runner's share only; a real
  ``airflow triggerer`` with its supervisor, trigger runner and log server holding N deferred
  collect tasks is measured by ``bench/triggerer_process.py``), after every trigger has started
  and the first poll is done, and its peak;
- **Graph calls and token requests per poll interval** in steady state (``--steady`` intervals
  with no new file), from the stand-in's request counters (``/_admin/counters``);
- **arrival-to-event**: ``--arrivals`` files dropped into random folders at random moments of one
  interval (written aside and renamed in, as an upload appears); the time from each file's
  arrival to its trigger's event. Goal: within one poll interval + 5 s.

Prints one line per run and a Markdown table; exits 0 whatever the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandIn:
    """``lgdp dev m365`` in its own process (its CPU and memory are not the triggers')."""

    def __init__(self, state: Path) -> None:
        from lgdp.devservices.m365 import DEFAULT_DRIVE_ID

        self.state = state
        self.port, self.token_port = _free_port(), _free_port()
        self.drive_id = DEFAULT_DRIVE_ID
        self.drive_root = state / "drives" / self.drive_id
        self.proc: subprocess.Popen | None = None

    def start(self) -> StandIn:
        self.proc = subprocess.Popen(
            [str(BIN / "lgdp"), "dev", "m365", "--state", str(self.state), "--port", str(self.port), "--token-port", str(self.token_port)],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.counters()
                return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("the Graph stand-in did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(20)

    def counters(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_admin/counters", timeout=30) as r:
            return json.load(r)

    def connection(self) -> str:
        from lgdp.devservices.m365 import DEFAULT_TENANT_ID, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

        return json.dumps(
            {
                "conn_type": "msgraph",
                "login": DEMO_CLIENT_ID,
                "password": DEMO_CLIENT_SECRET,
                "extra": {
                    "tenant_id": DEFAULT_TENANT_ID,
                    "base_url": f"http://127.0.0.1:{self.port}/v1.0",
                    "authority": f"https://127.0.0.1:{self.token_port}",
                    "allowed_hosts": "127.0.0.1",
                    "verify": False,
                    "drive_id": self.drive_id,
                },
            }
        )


def make_folders(drive_root: Path, n: int) -> list[str]:
    """N council folders as open_collection leaves them: ``_platform`` with two templates."""
    folders = []
    for i in range(n):
        folder = f"return_{i // 32:03d}/2025-26/S12{i % 32:06d}"
        platform = drive_root / folder / "_platform"
        platform.mkdir(parents=True, exist_ok=True)
        (platform / "template.xlsx").write_bytes(b"template workbook")
        (platform / "template.csv").write_bytes(b"template,csv\n")
        folders.append(folder)
    return folders


class ListingFolderTrigger:
    """The folder trigger as it was before the shared watcher: it lists its own folder every poll."""

    def __init__(self, *, folder: str, seen: list[str], closes_at: str, poll_interval: float, conn_id: str = "msgraph_sharepoint") -> None:
        self.folder, self.seen, self.closes_at, self.poll_interval, self.conn_id = folder, seen, closes_at, poll_interval, conn_id

    async def run(self) -> AsyncIterator[dict[str, Any]]:
        from lgdp.airflow.triggers import backoff, item_ref, new_items
        from lgdp.collect.graph import GraphThrottled, SharePointDrive

        drive = SharePointDrive(conn_id=self.conn_id)
        closes = dt.datetime.fromisoformat(self.closes_at)
        failures = 0
        while True:
            now = dt.datetime.now(dt.timezone.utc)
            if now >= closes:
                yield {"status": "closed"}
                return
            try:
                listing = [item_ref(i) for i in await drive.list_folder(self.folder)]
                failures = 0
            except GraphThrottled as exc:
                await asyncio.sleep(max(float(exc.retry_after_seconds or 0), 1.0))
                continue
            except Exception:  # noqa: BLE001 - as the trigger did: back off and keep waiting
                failures += 1
                await asyncio.sleep(backoff(failures, self.poll_interval))
                continue
            fresh = new_items(listing, self.seen)
            if fresh:
                yield {"status": "files", "items": fresh}
                return
            await asyncio.sleep(self.poll_interval)


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


async def one_run(standin: StandIn, folders: list[str], mode: str, poll: float, steady: int, arrivals: int, seed: int) -> dict[str, Any]:
    from lgdp.airflow.triggers import CouncilFolderTrigger

    closes = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=6)).isoformat()
    cls = CouncilFolderTrigger if mode == "delta" else ListingFolderTrigger
    fired: dict[int, float] = {}
    payloads: dict[int, Any] = {}

    async def watch(i: int, trigger: Any) -> None:
        async for event in trigger.run():
            fired[i] = time.monotonic()
            payloads[i] = event.payload if hasattr(event, "payload") else event
            return

    rss_before = rss_mb()
    c0 = standin.counters()
    t0 = time.monotonic()
    tasks = [
        asyncio.ensure_future(watch(i, cls(folder=f, seen=[], closes_at=closes, poll_interval=poll)))
        for i, f in enumerate(folders)
    ]
    if mode == "delta":
        from lgdp.collect import graph_shared

        while not any(w.ready.is_set() for per in graph_shared._WATCHERS.values() for w in per.values()):  # noqa: SLF001
            await asyncio.sleep(0.1)
    startup = time.monotonic() - t0
    await asyncio.sleep(poll * 1.2)  # the first poll of every trigger is over
    c1 = standin.counters()
    rss_steady = rss_mb()
    await asyncio.sleep(poll * steady)
    c2 = standin.counters()
    # arrivals at random moments of one interval, in random folders
    rng = random.Random(seed)
    chosen = rng.sample(range(len(folders)), arrivals)
    offsets = sorted(rng.uniform(0, poll) for _ in chosen)
    arrived: dict[int, float] = {}
    base = time.monotonic()
    for i, offset in zip(chosen, offsets):
        await asyncio.sleep(max(0.0, base + offset - time.monotonic()))
        target = standin.drive_root / folders[i] / "return.xlsx"
        staged = target.with_name(".upload.tmp")
        staged.write_bytes(f"council file {i}".encode())
        os.replace(staged, target)
        arrived[i] = time.monotonic()
    deadline = time.monotonic() + poll + 60
    while time.monotonic() < deadline and not all(i in fired for i in chosen):
        await asyncio.sleep(0.1)
    latencies = [fired[i] - arrived[i] for i in chosen if i in fired]
    wrong = [i for i in fired if i not in chosen]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for i in chosen:  # leave the drive as it was for the next run
        (standin.drive_root / folders[i] / "return.xlsx").unlink(missing_ok=True)
    steady_calls = (c2.get("graph", 0) - c1.get("graph", 0)) / steady
    steady_tokens = (c2.get("token", 0) - c1.get("token", 0)) / steady
    return {
        "n": len(folders),
        "mode": mode,
        "poll_s": poll,
        "startup_s": round(startup, 1),
        "startup_graph_calls": c1.get("graph", 0) - c0.get("graph", 0),
        "graph_calls_per_poll": round(steady_calls, 1),
        "token_requests_per_poll": round(steady_tokens, 2),
        "rss_mb_start": round(rss_before),
        "rss_mb_steady": round(rss_steady),
        "rss_mb_peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "fired": f"{len(latencies)}/{arrivals}",
        "wrong_events": len(wrong),
        "latency_p50_s": round(statistics.median(latencies), 1) if latencies else None,
        "latency_max_s": round(max(latencies), 1) if latencies else None,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[500, 1000, 2000, 5440])
    p.add_argument("--mode", nargs="+", default=["delta"], choices=["delta", "listing"])
    p.add_argument("--poll", type=float, default=15.0, help="the triggers' poll interval, seconds")
    p.add_argument("--steady", type=int, default=3, help="intervals counted for the steady state")
    p.add_argument("--arrivals", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lgdp-bench-triggers-"))
    os.environ.setdefault("AIRFLOW_HOME", str(tmp / "airflow"))
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    standin = StandIn(tmp / "m365")
    results = []
    try:
        standin.drive_root.mkdir(parents=True, exist_ok=True)
        standin.start()
        os.environ["AIRFLOW_CONN_MSGRAPH_SHAREPOINT"] = standin.connection()
        os.environ["LGDP_SHAREPOINT_DRIVE_ID"] = standin.drive_id
        import logging

        logging.getLogger("airflow").setLevel(logging.WARNING)
        made = 0
        for n in sorted(args.n):
            if n > made:
                folders = make_folders(standin.drive_root, n)
                made = n
            for mode in args.mode:
                # a fresh process state per run would be fairer for RSS; runs go smallest first instead
                result = asyncio.run(one_run(standin, folders[:n], mode, args.poll, args.steady, args.arrivals, args.seed))
                results.append(result)
                print(json.dumps(result), flush=True)
                _forget_watchers()
    finally:
        standin.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("| N | mode | Graph calls / poll (steady) | token requests / poll | startup calls | RSS steady (peak) MB | arrival→event p50 / max s | fired |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['n']:,} | {r['mode']} | {r['graph_calls_per_poll']} | {r['token_requests_per_poll']} | {r['startup_graph_calls']} | "
            f"{r['rss_mb_steady']} ({r['rss_mb_peak']}) | {r['latency_p50_s']} / {r['latency_max_s']} | {r['fired']} |"
        )
    print(f"\npoll interval {args.poll:.0f} s; goal: arrival→event ≤ poll + 5 s = {args.poll + 5:.0f} s; load {os.getloadavg()[0]:.1f}")
    return 0


def _forget_watchers() -> None:
    """Between runs: the next run starts like a new triggerer (no saved delta link or index)."""
    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

    from lgdp.collect import graph_shared

    graph_shared._INDEXES.clear()  # noqa: SLF001
    KiotaRequestAdapterHook.cached_request_adapters.clear()


if __name__ == "__main__":
    sys.exit(main())
