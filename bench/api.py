"""Benchmark the councils' submission API: 32 council systems submit at once, 10,000 rows each.

    .venv/bin/python bench/api.py [--councils 32] [--rows 10000] [--workers 2] [--format csv]

In one run, on one machine, the same kind of file goes through both doors:

- **API**: 32 threads, one per council system, POST their file for this year's CLAS period at the
  same moment to a real ``airflow api-server`` with this project's plugins (``/council-api``);
  measured per council: time to the ``202``, and time to a decided status read from the API
  (``decided: true``: the file kept, placed in the SharePoint folder by the API, processed).
- **SharePoint**: at the same moment, the same councils' files for last year's period (still open
  in the benchmark's spec) are put in their folders in the Graph stand-in, as an officer's upload;
  measured: time to the decided version in the ledger.

Both are processed by the same collect workers (``--workers`` processes, each running the
``collect`` operator's own steps for a folder with a new file: read, archive, version, parse,
load, validate, decide, feedback workbook, email), taking folders in the order their files
appeared, so the difference between the two is what the API adds (receiving, archiving, placing).
The scheduler and triggerer are not in this run (their part, waiting for the next poll, is
measured by ``bench/triggers.py`` and ``bench/peak.py``); the workers look at the folders every
0.5 s. Everything else is real: PostgreSQL, the Graph stand-in over HTTP, aiosmtpd, the api-server.
Prints a Markdown table; exits 0 whatever the numbers are.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench")]
PREFIX = "/council-api"
TYPES = {"csv": "text/csv", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _specs(tmp: Path) -> Path:
    """CLAS (one table), every council, both this year's and last year's periods open; csv and xlsx."""
    specs = tmp / "specs"
    shutil.copytree(ROOT / "return_specs" / "shared", specs / "shared")
    text_ = (ROOT / "tests" / "specs_one_table" / "clas.yaml").read_text()
    text_ = re.sub(r"closes_days_after_opening: \d+", "closes_days_after_opening: 900", text_)
    text_ = text_.replace("formats: [xlsx]", "formats: [xlsx, csv]")
    text_ = text_[: text_.index("\ndistribution:")] + "\n"
    (specs / "clas.yaml").write_text(text_)
    return specs


def collect_once(job: tuple[str, str]) -> tuple[str, str, float]:
    """One collect step for a council's folder (a worker process): the operator's own methods."""
    council, period = job
    from lgdp.airflow.operators import CollectSubmissionOperator, load_return, resolve_period
    from lgdp.airflow.triggers import item_ref, new_items
    from lgdp.collect.graph import SharePointDrive, folder_path
    from lgdp.collect.process import submission_state

    loaded = load_return("clas")
    p = resolve_period(loaded, period, None)
    op = CollectSubmissionOperator(task_id=f"collect_{council}", return_id="clas", council=council)
    drive = SharePointDrive()
    listing = [item_ref(i) for i in drive.list_folder_sync(folder_path("clas", period, council))]
    for ref in new_items(listing, submission_state("clas", period, council).seen):
        op._process(loaded, p, drive, ref)
    op._send_feedback(loaded, p, drive)
    return council, period, time.monotonic()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--councils", type=int, default=32)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2, help="collect worker processes")
    ap.add_argument("--format", choices=sorted(TYPES), default="csv")
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    from _ledger import bench_ledger

    with bench_ledger("lgdp-bench-api-", "lgdp_bench_api", keep=args.keep) as (tmp, url):
        return run(args, tmp, url)


def run(args: argparse.Namespace, tmp: Path, url: str) -> int:  # noqa: C901 - one scenario, start to end
    import httpx
    from aiosmtpd.controller import Controller

    from lgdp.dev import airflow_env
    from lgdp.devservices.m365 import M365StandIn

    specs = _specs(tmp)
    env = airflow_env(url, url.replace("postgresql+psycopg://", "postgresql+psycopg2://", 1), tmp / "airflow")
    (tmp / "airflow").mkdir()
    env.update({"LGDP_SPECS_DIR": str(specs), "SODA_CORE_TELEMETRY_ENABLED": "false", "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"})
    standin = M365StandIn(tmp / "m365").start()
    mails: list[float] = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
            mails.append(time.monotonic())
            return "250 OK"

    smtp_port = _free_port()
    smtp = Controller(Sink(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    env["AIRFLOW_CONN_MSGRAPH_SHAREPOINT"] = standin.connection_uri()
    env["LGDP_SHAREPOINT_DRIVE_ID"] = standin.drive_id
    env["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port,
                                                    "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "returns@lgdp.example.org"}})
    os.environ.update({k: v for k, v in env.items() if k.startswith(("AIRFLOW", "LGDP", "SODA"))})
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True, env=env, stdout=subprocess.DEVNULL)

    from lgdp.api.tokens import issue_token
    from lgdp.ledger.db import session
    from lgdp.ledger.register import open_period, sync_register
    from lgdp.periods import period_from_label, period_opening_at
    from lgdp.specs.load import load_register
    from lgdp.synth import write_sample
    from lgdp.collect.graph import folder_path

    reg = load_register()
    loaded = reg.get("clas")
    now = dt.datetime.now(dt.timezone.utc)
    api_period = period_opening_at(loaded.spec.collection, now).label
    sp_period = period_opening_at(loaded.spec.collection, now - dt.timedelta(days=365)).label
    councils = [c.code for c in loaded.providers][: args.councils]
    with session() as s, s.begin():
        sync_register(s, reg.specs, reg.reference.councils)
        for label in (api_period, sp_period):
            open_period(s, loaded, period_from_label(loaded.spec.collection, label))
        tokens = {c: issue_token(s, c, rate_per_minute=10_000).token for c in councils}
    print(f"writing {2 * len(councils)} files of {args.rows} rows ({args.format}) ...", file=sys.stderr)
    files: dict[tuple[str, str], bytes] = {}
    for n, c in enumerate(councils):
        for label in (api_period, sp_period):
            out = tmp / f"{c}-{label}.{args.format}"
            write_sample(loaded, c, label, args.rows, args.format, out, n, {})
            files[(c, label)] = out.read_bytes()

    port = _free_port()
    env["AIRFLOW__API__PORT"] = str(port)
    env["AIRFLOW__API__BASE_URL"] = f"http://127.0.0.1:{port}"
    log = (tmp / "api-server.log").open("wb")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("airflow")), "api-server", "--port", str(port), "--host", "127.0.0.1"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/api/v2/monitor/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        else:
            raise SystemExit(f"api-server did not start; see {log.name}")
        client = httpx.Client(base_url=base + PREFIX, timeout=600, limits=httpx.Limits(max_connections=64))
        client.get("/v1/me", headers={"Authorization": f"Bearer {tokens[councils[0]]}"})  # warm the app

        t0 = time.monotonic()
        to_202: dict[str, float] = {}
        sids: dict[str, str] = {}
        arrived: dict[tuple[str, str], float] = {}
        start = threading.Event()

        def api_system(c: str) -> None:
            body = files[(c, api_period)]
            start.wait()
            sent = time.monotonic()
            r = client.post(f"/v1/councils/{c}/returns/clas/periods/{api_period}/submissions", content=body, headers={
                "Authorization": f"Bearer {tokens[c]}", "Content-Type": TYPES[args.format],
                "Idempotency-Key": "bench-" + hashlib.sha256(body).hexdigest()[:32]})
            assert r.status_code == 202, r.text
            to_202[c] = time.monotonic() - sent
            sids[c] = r.json()["submission_id"]

        def officer(c: str) -> None:
            start.wait()
            standin.put_file(f"{folder_path('clas', sp_period, c)}/clas-{sp_period}.{args.format}", files[(c, sp_period)])
            arrived[(c, sp_period)] = time.monotonic()

        threads = [threading.Thread(target=api_system, args=(c,)) for c in councils] + \
                  [threading.Thread(target=officer, args=(c,)) for c in councils]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        start.set()

        decided: dict[tuple[str, str], float] = {}
        pending = {(c, p) for c in councils for p in (api_period, sp_period)}
        queued: set[tuple[str, str]] = set()
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
            futures: dict[concurrent.futures.Future, tuple[str, str]] = {}
            order: list[tuple[str, str]] = []
            while pending and time.monotonic() - t0 < args.timeout:
                for c in councils:  # the API's files once placed in the folder (what the trigger would see)
                    if (c, api_period) not in arrived and c in sids:
                        st = client.get(f"/v1/councils/{c}/submissions/{sids[c]}", headers={"Authorization": f"Bearer {tokens[c]}"}).json()
                        if st["state"] != "queued":
                            arrived[(c, api_period)] = time.monotonic()
                for job in sorted(arrived, key=arrived.get):
                    if job in pending and job not in queued:
                        queued.add(job)
                        order.append(job)
                        futures[pool.submit(collect_once, job)] = job
                for f in [f for f in futures if f.done()]:
                    job = futures.pop(f)
                    f.result()
                    decided[job] = time.monotonic()
                    pending.discard(job)
                time.sleep(0.5)
        for t in threads:
            t.join()
        # the API's own answer: decided, as a council's system would poll it
        api_decided = {}
        for c in councils:
            st = client.get(f"/v1/councils/{c}/submissions/{sids[c]}", headers={"Authorization": f"Bearer {tokens[c]}"}).json()
            api_decided[c] = st["decided"] and st["state"] == "accepted"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        smtp.stop()
        standin.stop()

    def row(name: str, values: list[float]) -> str:
        return f"| {name} | {statistics.median(values):.2f} s | {percentile(values, 0.95):.2f} s | {max(values):.2f} s |"

    api_done = [decided[(c, api_period)] - t0 for c in councils if (c, api_period) in decided]
    sp_done = [decided[(c, sp_period)] - t0 for c in councils if (c, sp_period) in decided]
    placed = [arrived[(c, api_period)] - t0 for c in councils if (c, api_period) in arrived]
    print(f"\n{len(councils)} councils × {args.rows} rows ({args.format}), {args.workers} collect workers; "
          f"{sum(api_decided.values())}/{len(councils)} accepted by the API's status, {len(mails)} emails\n")
    print("| measure (from the moment all start) | p50 | p95 | max |\n|---|---|---|---|")
    print(row("API: 202", list(to_202.values())))
    print(row("API: file in the folder (placed)", placed))
    print(row("API: decided", api_done))
    print(row("SharePoint: decided", sp_done))
    print(row("API: in the folder → decided", [decided[(c, api_period)] - arrived[(c, api_period)] for c in councils if (c, api_period) in decided]))
    print(row("SharePoint: in the folder → decided", [decided[(c, sp_period)] - arrived[(c, sp_period)] for c in councils if (c, sp_period) in decided]))
    print(f"\nall decided after {max(api_done + sp_done):.1f} s; the workers take folders in the order their files appeared")
    return 0


if __name__ == "__main__":
    sys.exit(main())
