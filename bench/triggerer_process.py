"""Benchmark the collection triggers at peak in a real ``airflow triggerer`` process.

    .venv/bin/python bench/triggerer_process.py [--n 500 1000 2000 5440] [--poll 15] [--arrivals 10]

``bench/triggers.py`` runs N folder triggers on one event loop inside the bench process; this runs
them where production runs them: one ``airflow triggerer`` (Airflow 3.3, the project's venv, its
supervisor process, its trigger-runner subprocess and its log server), with a metadata database on
PostgreSQL, against the Microsoft Graph stand-in (``lgdp dev m365``, its own process).

Set-up (running 5,440 task instances through an executor first would take hours on 2 CPUs, so the
metadata database is seeded with what the collect tasks leave behind when they defer):

- a scratch database on the PostgreSQL server (``--server``, default ``127.0.0.1:5432``, trust
  auth; dropped at the end), migrated with ``airflow db migrate``;
- the project's real DAGs serialized into it (``airflow dags reserialize`` of ``dags/``): the
  ``return_*`` DAGs, each with its mapped ``collect`` task of 32 councils;
- N deferred ``collect`` task instances: dag runs made with Airflow's ``create_dagrun`` (which
  makes the mapped task instances), 32 per run, runs spread over the ``return_*`` DAGs, each run a
  period of its own; for each task instance a ``trigger`` row written as Airflow 3.3's execution
  API writes a deferral (``classpath`` and the trigger's serde-serialized kwargs as JSON: a worker
  sends them unencrypted and the API stores them as they come; the triggerer reads both forms),
  and the task instance in state ``deferred`` with ``trigger_id``, ``next_method="resume"``;
- the trigger is the one the collect task defers, ``lgdp.airflow.operators.CollectWaitTrigger``
  (a ``CouncilFolderTrigger`` with no wake-up), for the council's folder
  (``<return>/<period>/<council>``); the stand-in's drive holds the N folders, each with its
  ``_platform`` folder and two templates.

Then for each N (smallest first, a fresh triggerer each time): ``airflow triggerer --capacity``
(``--capacity``, default 6,000 as ``docker-compose.yaml``'s ``LGDP_TRIGGERER_CAPACITY``), with
Airflow's other triggerer settings at their defaults. Measured:

- **start**: seconds from the triggerer's start until all N triggers are assigned to it and
  every one has started (its "trigger ... starting" line in its own log file) and the runner's
  status line says N are running; Airflow assigns at most ``[triggerer]
  max_trigger_to_select_per_loop`` (50) new triggers per loop of about a second;
- **memory**: RSS, PSS and USS from ``/proc`` (psutil), for each process of the triggerer
  (supervisor, trigger runner, log server) and summed, once all N run and the first poll is done
  ("steady"), and the highest sum sampled every 2 s over the whole run ("peak"); open files too;
- **Graph calls and token requests per poll interval** in steady state (``--steady`` intervals
  with no new file), from the stand-in's counters (``/_admin/counters``);
- **CPU** of the triggerer's processes over the steady intervals (% of one CPU);
- **arrival-to-event**: ``--arrivals`` files dropped into random folders at random moments of one
  interval (written aside and renamed in); the time from each file's arrival to its task instance
  leaving ``deferred`` in Airflow's database (state ``scheduled``, set by the triggerer when it
  records the event; ``scheduled_dttm`` is the moment), the database read every 0.2 s. Goal:
  within one poll interval + 5 s. Any other task instance leaving ``deferred`` is a wrong event.

Prints one JSON line per N and a Markdown table; exits 0 whatever the numbers. Every process it
starts (triggerer, stand-in) is stopped, and the database dropped, at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from triggers import StandIn  # noqa: E402  (bench/triggers.py: the stand-in in its own process)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DB_NAME = "lgdp_bench_triggerer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the layout: which council folder each deferred task instance waits on ------------------------


def layout(n: int) -> list[dict[str, Any]]:
    """N collect task instances: run k of DAG ``return_dags[k % len]``, period ``bench-k``, 32 councils."""
    from lgdp.collect.graph import folder_path
    from lgdp.specs.plans import load_plans

    plans = sorted(load_plans().plans, key=lambda p: p.dag_id)
    out: list[dict[str, Any]] = []
    k = 0
    while len(out) < n:
        plan = plans[k % len(plans)]
        period = f"bench-{k:03d}"
        for i, (code, _name) in enumerate(plan.providers):
            if len(out) == n:
                break
            out.append(
                {"dag_id": plan.dag_id, "run_id": f"bench__{period}", "period": period, "map_index": i,
                 "folder": folder_path(plan.return_id, period, code)}
            )
        k += 1
    return out


def make_folders(drive_root: Path, folders: list[str]) -> None:
    """The council folders as open_collection leaves them: ``_platform`` with two templates."""
    for folder in folders:
        platform = drive_root / folder / "_platform"
        platform.mkdir(parents=True, exist_ok=True)
        (platform / "template.xlsx").write_bytes(b"template workbook")
        (platform / "template.csv").write_bytes(b"template,csv\n")


# --- the metadata database: what N deferred collect tasks leave behind ----------------------------


def seed(items: list[dict[str, Any]], poll: float) -> list[str]:
    """Dag runs, deferred collect task instances and their trigger rows; the task instances' ids, as ``items``."""
    from airflow.models.dagbag import DBDagBag
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.trigger import Trigger
    from airflow.sdk.serde import serialize
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select

    from lgdp.airflow.operators import CollectWaitTrigger

    closes = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=6)).isoformat()
    now = dt.datetime.now(dt.timezone.utc)
    by_run: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for it in items:
        by_run.setdefault((it["dag_id"], it["run_id"]), []).append(it)
    pairs: list[tuple[Any, Any]] = []
    with create_session() as session:
        bag = DBDagBag()
        dags = {dag_id: bag.get_latest_version_of_dag(dag_id, session=session) for dag_id, _ in by_run}
        for (dag_id, run_id), its in by_run.items():
            dags[dag_id].create_dagrun(
                run_id=run_id, run_after=now, conf={"period": its[0]["period"]}, run_type=DagRunType.MANUAL,
                triggered_by=DagRunTriggeredByType.TEST, state=DagRunState.RUNNING, start_date=now, session=session,
            )
            tis = {
                ti.map_index: ti
                for ti in session.scalars(select(TI).where(TI.dag_id == dag_id, TI.run_id == run_id, TI.task_id == "collect"))
            }
            for it in its:
                trigger = CollectWaitTrigger(folder=it["folder"], seen=[], closes_at=closes, poll_interval=poll)
                classpath, kwargs = trigger.serialize()
                # as the execution API stores a worker's deferral (routes/task_instances.py)
                row = Trigger(classpath=classpath, kwargs={})
                row.encrypted_kwargs = json.dumps(serialize(kwargs))
                session.add(row)
                pairs.append((tis[it["map_index"]], row))
        session.flush()
        for ti, row in pairs:
            ti.state = TaskInstanceState.DEFERRED
            ti.trigger_id = row.id
            ti.next_method = "resume"
            ti.next_kwargs = serialize({})
            ti.trigger_timeout = None
            ti.try_number = 1
            ti.start_date = now
        return [str(ti.id) for ti, _row in pairs]


def unseed() -> None:
    from sqlalchemy import text

    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(text("DELETE FROM dag_run WHERE run_id LIKE 'bench\\_\\_%'"))
        session.execute(text("DELETE FROM trigger"))


# --- the triggerer and its processes --------------------------------------------------------------


class Sampler(threading.Thread):
    """Memory of the triggerer's process tree every ``every`` seconds (psutil, /proc smaps)."""

    def __init__(self, pid: int, every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak: dict[str, float] = {"rss": 0.0, "pss": 0.0, "uss": 0.0}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                total = tree_memory(self.pid)["total"]
            except Exception:  # noqa: BLE001 - a process going away between two reads
                continue
            for k in self.peak:
                self.peak[k] = max(self.peak[k], total[k])


def tree(pid: int) -> list[Any]:
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def role(proc: Any) -> str:
    """What a process of the triggerer is (from its command line and place in the tree)."""
    cmd = " ".join(proc.cmdline())
    if "serve-logs" in cmd or "serve_logs" in cmd:
        return "log server"
    return proc.name()


def tree_memory(pid: int) -> dict[str, Any]:
    procs = {}
    for p in tree(pid):
        m = p.memory_full_info()
        procs[p.pid] = {"rss": m.rss / 2**20, "pss": m.pss / 2**20, "uss": m.uss / 2**20, "fds": p.num_fds(),
                        "parent": p.ppid(), "name": role(p)}
    total = {k: sum(v[k] for v in procs.values()) for k in ("rss", "pss", "uss", "fds")}
    return {"procs": procs, "total": total}


def cpu_seconds(pid: int) -> dict[int, float]:
    out = {}
    for p in tree(pid):
        t = p.cpu_times()
        out[p.pid] = t.user + t.system
    return out


def label_processes(mem: dict[str, Any], root: int) -> dict[str, dict[str, float]]:
    """supervisor (the ``airflow triggerer`` process), trigger runner (its child that runs the loop), log server."""
    out = {}
    for pid, m in mem["procs"].items():
        if pid == root:
            name = "supervisor"
        elif m["name"] == "log server":
            name = "log server"
        elif m["parent"] == root:
            name = "trigger runner"
        else:
            name = f"other ({m['name']})"
        if name in out:
            name = f"{name} {pid}"
        out[name] = {k: round(m[k]) for k in ("rss", "pss", "uss", "fds")}
    return out


def started_count(logs: Path) -> int:
    """Triggers that have started: one log file each (``...trigger.<job>.log``) with its "starting" line."""
    n = 0
    for path in logs.rglob("*.trigger.*.log"):
        try:
            with path.open("rb") as f:
                if b"starting" in f.read(4096):
                    n += 1
        except OSError:
            pass
    return n


_RUNNING = re.compile(r"(\d+) triggers currently running")


def status_running(stdout_log: Path) -> int | None:
    """The runner's last "N triggers currently running" (logged once a minute)."""
    found = _RUNNING.findall(stdout_log.read_text(errors="replace")) if stdout_log.exists() else []
    return int(found[-1]) if found else None


def assigned_count() -> int:
    from sqlalchemy import func, select

    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.scalar(select(func.count(Trigger.id)).where(Trigger.triggerer_id.is_not(None))) or 0


def left_deferred(ti_ids: list[str]) -> dict[str, tuple[str, dt.datetime | None]]:
    """Task instances (of ``ti_ids``, or all if empty) no longer deferred: {id: (state, scheduled_dttm)}."""
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    with create_session() as session:
        q = select(TI.id, TI.state, TI.scheduled_dttm).where(TI.task_id == "collect", TI.run_id.like("bench\\_\\_%"))
        q = q.where(TI.state != TaskInstanceState.DEFERRED, TI.next_method.is_not(None))
        if ti_ids:
            q = q.where(TI.id.in_(ti_ids))
        return {str(i): (str(s), d) for i, s, d in session.execute(q)}


def stop_process(proc: subprocess.Popen, pids: list[int]) -> None:
    """SIGTERM the triggerer (it stops its runner), then anything of its tree still alive, by pid."""
    import psutil

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for pid in pids:
        try:
            p = psutil.Process(pid)
            p.terminate()
            p.wait(10)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            p.kill()


# --- one run --------------------------------------------------------------------------------------


def one_run(standin: StandIn, items: list[dict[str, Any]], args: argparse.Namespace, env: dict[str, str], home: Path) -> dict[str, Any]:
    n = len(items)
    unseed()
    t_seed = time.monotonic()
    ti_ids = seed(items, args.poll)
    seed_s = time.monotonic() - t_seed
    logs = home / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    out_log = home / f"triggerer-{n}.log"
    c0 = standin.counters()
    t0 = time.monotonic()
    with out_log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "airflow"), "triggerer", "--capacity", str(args.capacity)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    pids: list[int] = []
    result: dict[str, Any] = {"n": n, "poll_s": args.poll, "capacity": args.capacity, "seed_s": round(seed_s, 1)}
    try:
        # all N assigned, every one started, and the runner's own count says N
        assigned_at = started_at = None
        deadline = time.monotonic() + args.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                errors = [ln for ln in out_log.read_text(errors="replace").splitlines() if "Errno" in ln or ("rror" in ln and "uvicorn" not in ln)]
                raise RuntimeError(f"the triggerer exited ({proc.returncode}) after {time.monotonic() - t0:.0f} s with "
                                   f"{started_count(logs)} triggers started; last error lines: {errors[-3:]}")
            if assigned_at is None and assigned_count() >= n:
                assigned_at = time.monotonic() - t0
            if assigned_at is not None and started_at is None and started_count(logs) >= n:
                started_at = time.monotonic() - t0
            if started_at is not None and (not args.confirm_status or (status_running(out_log) or 0) >= n):
                break
            time.sleep(2)
        else:
            raise RuntimeError(f"not all {n} triggers started within {args.start_timeout} s "
                               f"(assigned {assigned_count()}, started {started_count(logs)}, status {status_running(out_log)})")
        confirmed = time.monotonic() - t0
        pids = [p.pid for p in tree(proc.pid)]
        time.sleep(args.poll * 1.2)  # the first poll after the last trigger started is over
        c1 = standin.counters()
        cpu1, w1 = cpu_seconds(proc.pid), time.monotonic()
        mem = tree_memory(proc.pid)
        time.sleep(args.poll * args.steady)
        c2 = standin.counters()
        cpu2, w2 = cpu_seconds(proc.pid), time.monotonic()
        cpu_pct = round(100 * sum(cpu2.get(p, 0) - cpu1.get(p, 0) for p in cpu2) / (w2 - w1), 1)
        early = left_deferred([])  # nothing should have fired yet
        # arrivals at random moments of one interval, in random folders
        rng = random.Random(args.seed)
        chosen = rng.sample(range(n), args.arrivals)
        offsets = sorted(rng.uniform(0, args.poll) for _ in chosen)
        folder_ti = {i: ti_ids[i] for i in chosen}
        arrived: dict[str, dt.datetime] = {}
        base = time.monotonic()
        for i, offset in zip(chosen, offsets):
            time.sleep(max(0.0, base + offset - time.monotonic()))
            target = standin.drive_root / items[i]["folder"] / "return.xlsx"
            staged = target.with_name(".upload.tmp")
            staged.write_bytes(f"council file {i}".encode())
            os.replace(staged, target)
            arrived[folder_ti[i]] = dt.datetime.now(dt.timezone.utc)
        seen_at: dict[str, dt.datetime] = {}
        fired: dict[str, tuple[str, dt.datetime | None]] = {}
        deadline = time.monotonic() + args.poll + 60
        while time.monotonic() < deadline and len(fired) < len(arrived):
            for ti_id, v in left_deferred(list(arrived)).items():
                if ti_id not in fired:
                    fired[ti_id] = v
                    seen_at[ti_id] = dt.datetime.now(dt.timezone.utc)
            time.sleep(0.2)
        latencies = [((fired[t][1] or seen_at[t]) - arrived[t]).total_seconds() for t in fired]
        observed = [(seen_at[t] - arrived[t]).total_seconds() for t in fired]
        c3 = standin.counters()
        wrong = [t for t in left_deferred([]) if t not in arrived]
        result.update(
            {
                "assigned_s": round(assigned_at or 0, 1),
                "all_started_s": round(started_at or 0, 1),
                "confirmed_running_s": round(confirmed, 1),
                "startup_graph_calls": c1.get("graph", 0) - c0.get("graph", 0),
                "startup_token_requests": c1.get("token", 0) - c0.get("token", 0),
                "graph_calls_per_poll": round((c2.get("graph", 0) - c1.get("graph", 0)) / args.steady, 1),
                "token_requests_per_poll": round((c2.get("token", 0) - c1.get("token", 0)) / args.steady, 2),
                "arrival_graph_calls": c3.get("graph", 0) - c2.get("graph", 0),
                "cpu_pct_steady": cpu_pct,
                "mem_steady_mb": {k: round(v) for k, v in mem["total"].items()},
                "mem_by_process_mb": label_processes(mem, proc.pid),
                "mem_peak_mb": {k: round(v) for k, v in sampler.peak.items()},
                "fired": f"{len(fired)}/{args.arrivals}",
                "states": sorted({v[0] for v in fired.values()}),
                "wrong_events": len(wrong),  # any other task instance out of deferred, before or after
                "fired_before_arrivals": len(early),
                "latency_p50_s": round(statistics.median(latencies), 1) if latencies else None,
                "latency_max_s": round(max(latencies), 1) if latencies else None,
                "observed_max_s": round(max(observed), 1) if observed else None,
                "load": round(os.getloadavg()[0], 1),
            }
        )
        for i in chosen:  # leave the drive as it was for the next run
            (standin.drive_root / items[i]["folder"] / "return.xlsx").unlink(missing_ok=True)
    finally:
        sampler.stop.set()
        if not pids and proc.poll() is None:
            try:
                pids = [p.pid for p in tree(proc.pid)]
            except Exception:  # noqa: BLE001
                pids = []
        stop_process(proc, [p for p in pids if p != proc.pid])
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[500, 1000, 2000, 5440])
    p.add_argument("--poll", type=float, default=15.0, help="the triggers' poll interval, seconds")
    p.add_argument("--steady", type=int, default=3, help="intervals counted for the steady state")
    p.add_argument("--arrivals", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--capacity", type=int, default=6000, help="airflow triggerer --capacity (docker-compose: 6000)")
    p.add_argument("--start-timeout", type=float, default=900, help="seconds allowed for all N to start")
    p.add_argument("--no-confirm-status", dest="confirm_status", action="store_false",
                   help="do not wait for the runner's once-a-minute status line (the log files alone say all started)")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    p.add_argument("--db-name", default=DB_NAME, help="the scratch database (made afresh, dropped at the end)")
    p.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                   help="a PostgreSQL server (its maintenance database) for the scratch database")
    args = p.parse_args()

    from lgdp.dev import airflow_env
    from lgdp.devdb import create_database

    tmp = Path(tempfile.mkdtemp(prefix="lgdp-bench-triggerer-"))
    home = tmp / "airflow"
    home.mkdir()
    url = create_database(args.server, args.db_name, fresh=True)
    from cryptography.fernet import Fernet

    standin = StandIn(tmp / "m365")
    env = airflow_env(url, url.replace("postgresql+psycopg://", "postgresql+psycopg2://", 1), home)
    env.update(
        {
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",  # the triggers' "starting" lines and the runner's status
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__TRIGGERER__CAPACITY": str(args.capacity),
            "LGDP_POLL_INTERVAL_SECONDS": str(args.poll),
        }
    )
    results: list[dict[str, Any]] = []
    try:
        standin.drive_root.mkdir(parents=True, exist_ok=True)
        standin.start()
        env["AIRFLOW_CONN_MSGRAPH_SHAREPOINT"] = standin.connection()
        env["LGDP_SHAREPOINT_DRIVE_ID"] = standin.drive_id
        os.environ.update({k: v for k, v in env.items() if k.startswith(("AIRFLOW", "LGDP", "SODA"))})
        for cmd in (["db", "migrate"], ["dags", "reserialize"]):
            subprocess.run([str(BIN / "airflow"), *cmd], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        items = layout(max(args.n))
        make_folders(standin.drive_root, [it["folder"] for it in items])
        print(f"[bench] {len(items)} folders, {len({(i['dag_id'], i['run_id']) for i in items})} dag runs over "
              f"{len({i['dag_id'] for i in items})} return DAGs; database {args.db_name}", flush=True)
        for n in sorted(args.n):
            try:
                result = one_run(standin, items[:n], args, env, home)
            except RuntimeError as exc:
                result = {"n": n, "error": str(exc)}
            results.append(result)
            print(json.dumps(result, default=str), flush=True)
    finally:
        standin.stop()
        try:
            import airflow.settings

            airflow.settings.dispose_orm()
        except Exception:  # noqa: BLE001
            pass
        from sqlalchemy import create_engine, text

        eng = create_engine(args.server, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)'))
        eng.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, default=str, indent=1))
    print()
    print("| N | all started after | Graph calls / poll (steady) | token requests / poll | startup calls | "
          "triggerer RSS / PSS / USS steady MB | peak RSS / PSS MB | CPU steady | arrival→event p50 / max s | fired |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['n']:,} | {r['error']} |")
            continue
        m, pk = r["mem_steady_mb"], r["mem_peak_mb"]
        print(
            f"| {r['n']:,} | {r['all_started_s']} s | {r['graph_calls_per_poll']} | {r['token_requests_per_poll']} | "
            f"{r['startup_graph_calls']} | {m['rss']} / {m['pss']} / {m['uss']} | {pk['rss']} / {pk['pss']} | "
            f"{r['cpu_pct_steady']} % | {r['latency_p50_s']} / {r['latency_max_s']} | {r['fired']} |"
        )
    print(f"\npoll interval {args.poll:.0f} s; goal: arrival→event ≤ poll + 5 s = {args.poll + 5:.0f} s; "
          f"5,440 triggers < 1.5 GB; load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
