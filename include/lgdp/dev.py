"""``lgdp dev ...``: run the platform on one machine for the demo and the tests.

``lgdp dev demo`` is what ``make demo`` runs: it finds or starts a PostgreSQL, migrates the
ledger's and Airflow's schemas, and runs ``airflow standalone`` on the project's dags/ and
plugins/. Everything it creates lives under ``.lgdp/`` (or ``LGDP_STATE_DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lgdp.specs.paths import REPO_ROOT


def state_dir() -> Path:
    return Path(os.environ.get("LGDP_STATE_DIR") or REPO_ROOT / ".lgdp").resolve()


def airflow_env(db_url: str, airflow_url: str, airflow_home: Path, port: int = 8080) -> dict[str, str]:
    """Environment for every Airflow process of the local deployment."""
    env = dict(os.environ)
    env.update(
        {
            "LGDP_DATABASE_URL": db_url,
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_url,
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__PORT": str(port),
            # Task supervisors reach the api-server's execution API here; it must follow the port.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "SODA_CORE_TELEMETRY_ENABLED": "false",
            # airflow standalone starts its components as `airflow ...` found on PATH.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }
    )
    return env


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def prepare(port: int = 8080) -> tuple[dict[str, str], object]:
    """Database up and both schemas migrated; returns the environment and the server handle."""
    from lgdp.devdb import ensure_database
    from lgdp.ledger import db as ledger

    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    print(f"[lgdp] state folder: {state}", flush=True)
    database = ensure_database(state)
    where = "embedded PostgreSQL" if database.server else "LGDP_DATABASE_URL"
    print(f"[lgdp] database: {where}", flush=True)
    ledger.upgrade(url=database.url)
    from lgdp.ledger.register import sync_register
    from lgdp.specs.load import load_register

    register = load_register()
    with ledger.session(database.url) as s, s.begin():
        sync_register(s, register.specs, register.reference.councils if register.reference else ())
    print(f"[lgdp] ledger schema migrated; register holds {len(register.specs)} returns", flush=True)
    env = airflow_env(database.url, database.airflow_url, state / "airflow", port)
    subprocess.run([_bin("airflow"), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    print("[lgdp] Airflow metadata migrated", flush=True)
    return env, database.server


def wait_healthy(port: int, timeout: float = 180) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as r:
                body = json.load(r)
            if all(body.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler")):
                return True
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(2)
    return False


def stop(proc: subprocess.Popen) -> None:
    """Stop ``airflow standalone`` cleanly: its direct children first, then it."""
    try:
        import psutil

        children = psutil.Process(proc.pid).children()
        for c in children:
            c.terminate()
        psutil.wait_procs(children, timeout=30)
    except Exception:  # noqa: BLE001 - already gone
        pass
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_m365(env: dict[str, str]):
    """The Microsoft 365 stand-in for the demo, unless a real Graph connection is configured."""
    if os.environ.get("AIRFLOW_CONN_MSGRAPH_SHAREPOINT"):
        print("[lgdp] Microsoft Graph: the configured msgraph_sharepoint connection", flush=True)
        return None
    from lgdp.devservices.m365 import M365StandIn

    port = int(os.environ.get("LGDP_M365_PORT", "18765"))
    standin = M365StandIn(state_dir() / "m365", port=port, token_port=port + 1).start()
    env["AIRFLOW_CONN_MSGRAPH_SHAREPOINT"] = standin.connection_uri()
    env["LGDP_SHAREPOINT_DRIVE_ID"] = standin.drive_id
    env.setdefault("LGDP_POLL_INTERVAL_SECONDS", "30")
    print(
        f"[lgdp] Microsoft 365 stand-in: {standin.graph_url} (files live in {standin.drive_root}; drop a "
        "council's file into <return>/<period>/<GSS code>/ there and the platform collects it)",
        flush=True,
    )
    return standin


def _demo(args: argparse.Namespace) -> int:
    env, server = prepare(args.port)
    if args.smoke:
        env["LGDP_POLL_INTERVAL_SECONDS"] = "3"
    m365 = start_m365(env)
    airflow_home = Path(env["AIRFLOW_HOME"])
    proc = subprocess.Popen([_bin("airflow"), "standalone"], env=env, stdout=subprocess.DEVNULL if args.quiet else None)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if not wait_healthy(args.port, args.timeout):
            print("[lgdp] Airflow did not become healthy; see the output above", file=sys.stderr)
            return 1
        pw = airflow_home / "simple_auth_manager_passwords.json.generated"
        print(
            f"\n[lgdp] Airflow is up: http://localhost:{args.port}\n"
            f"[lgdp] log in as admin; the password is in {pw}\n"
            f"[lgdp] every approved return in return_specs/ is a DAG named return_<id>; Ctrl-C stops everything.\n",
            flush=True,
        )
        if args.smoke:
            return 0 if _smoke(env) and _smoke_collection(env, m365) else 1
        proc.wait()
        return proc.returncode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        stop(proc)
        if m365 is not None:
            m365.stop()
        del server


def _smoke(env: dict[str, str]) -> bool:
    """Wait until every approved return's DAG is serialized, as the UI would list it."""
    from lgdp.specs.load import load_register

    expected = {s.dag_id for s in load_register().approved()}
    deadline = time.monotonic() + 120
    seen: set[str] = set()
    while time.monotonic() < deadline:
        out = subprocess.run(
            [_bin("airflow"), "dags", "list", "--output", "json"], env=env, capture_output=True, text=True
        )
        if out.returncode == 0:
            # Airflow may print warnings before the JSON; the listing is the line that starts with '['.
            listing = next((ln for ln in out.stdout.splitlines() if ln.startswith("[")), "[]")
            try:
                seen = {d["dag_id"] for d in json.loads(listing)}
            except (ValueError, KeyError, TypeError):
                seen = set()
            if expected <= seen:
                print(f"[lgdp] smoke: all {len(expected)} return DAGs are listed", flush=True)
                return True
        time.sleep(3)
    print(f"[lgdp] smoke: missing DAGs {sorted(expected - seen)}", file=sys.stderr)
    return False


def _wait_for(what: str, predicate, timeout: float = 240) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - not there yet
            pass
        time.sleep(2)
    print(f"[lgdp] smoke: timed out waiting for {what}", file=sys.stderr)
    return False


def _smoke_collection(env: dict[str, str], m365) -> bool:
    """Through the real scheduler and triggerer: open a period, drop a file, see it accepted."""
    import datetime as dt

    from lgdp.collect.graph import folder_path
    from lgdp.ledger.db import session
    from lgdp.ledger.register import period_status
    from lgdp.periods import period_opening_at
    from lgdp.specs.load import load_register
    from lgdp.synth import write_sample

    if m365 is None:
        print("[lgdp] smoke: collection check skipped (a real Graph connection is configured)")
        return True
    now = dt.datetime.now(dt.timezone.utc)
    candidates = [
        (s, period_opening_at(s.spec.collection, now)) for s in load_register().approved()
    ]
    open_now = [(s, p) for s, p in candidates if p.closes_at > now]
    if not open_now:
        print("[lgdp] smoke: collection check skipped (no return has a window open today)")
        return True
    loaded, period = open_now[0]
    council = loaded.providers[0]
    subprocess.run(
        [_bin("airflow"), "dags", "trigger", loaded.dag_id, "--conf", json.dumps({"period": period.label})],
        env=env, check=True, capture_output=True,
    )
    folder = Path(m365.drive_root) / folder_path(loaded.id, period.label, council.code)
    if not _wait_for("the council folders and templates", lambda: any((folder / "_platform").iterdir())):
        return False
    fmt = loaded.spec.formats[0]
    staged = Path(m365.drive_root).parent / f"smoke-return.{fmt}"  # written whole, then moved in
    write_sample(loaded, council.code, period.label, None, fmt, staged, 1, None)
    os.replace(staged, folder / staged.name)

    def accepted() -> bool:
        with session(env["LGDP_DATABASE_URL"]) as s:
            return period_status(s, loaded.id, period.label).get(council.code) == "accepted"

    if not _wait_for(f"{council.name}'s file to be accepted", accepted):
        return False
    print(f"[lgdp] smoke: {loaded.id} {period.label}: {council.name}'s file was collected and accepted", flush=True)
    return True


def register(sub: argparse._SubParsersAction) -> None:  # noqa: SLF001 - argparse's own type
    dev = sub.add_parser("dev", help="run the platform locally (demo, tests)").add_subparsers(
        dest="dev_command", required=True
    )
    demo = dev.add_parser("demo", help="database, migrations and airflow standalone on this machine")
    demo.add_argument("--port", type=int, default=int(os.environ.get("LGDP_DEMO_PORT", "8080")))
    demo.add_argument("--timeout", type=float, default=240)
    demo.add_argument("--smoke", action="store_true", help="start, check every return DAG is listed, stop")
    demo.add_argument("--quiet", action="store_true", help="hide Airflow's own output")
    demo.set_defaults(func=_demo)
    from lgdp.devservices.cli import register as register_devservices  # lgdp dev m365

    register_devservices(dev)
