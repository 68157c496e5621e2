"""``lgdp dev ...``: run the platform on one machine for the demo and the tests.

``lgdp dev demo`` is what ``make demo`` runs: it finds or starts a PostgreSQL, migrates the
ledger's and Airflow's schemas, starts the local stand-ins for what a deployment talks to (the
Microsoft 365 stand-in for SharePoint and mail, Azurite for the requesters' blob storage) and
runs Airflow's components (api-server, scheduler, dag-processor, triggerer, as ``airflow
standalone`` would) on the project's dags/ and plugins/, restarting any that exits (see
:class:`Supervisor`). Every connection it defines is
one the user has not defined already (``AIRFLOW_CONN_<ID>`` or Airflow's connection table), so a
real service configured by hand always wins. Everything it creates lives under ``.lgdp/`` (or
``LGDP_STATE_DIR``).
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


def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop ``airflow standalone`` cleanly: its direct children first, then it, then any straggler.

    A busy scheduler may take a while to drain its workers; whatever is still alive after the
    timeouts (task processes of any depth) is killed, so the demo never leaves processes behind.
    """
    import psutil

    everything = {p.pid: p for p in _descendants(proc.pid)}
    children = [p for p in everything.values() if _parent_pid(p) == proc.pid]
    for c in children:
        try:
            c.terminate()
        except psutil.Error:
            pass
    psutil.wait_procs(children, timeout=timeout)
    everything.update((p.pid, p) for p in _descendants(proc.pid))  # started while we waited
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    alive = []
    for p in everything.values():
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                p.kill()
                alive.append(p)
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=10)


def _parent_pid(p) -> int | None:
    try:
        return p.ppid()
    except Exception:  # noqa: BLE001 - gone
        return None


AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
RESTART_LIMIT = 10  # restarts of one component within RESTART_WINDOW before the demo gives up
RESTART_WINDOW = 600.0
RESUME_HINT = (
    "Nothing is lost: files stay in the councils' folders and the ledger knows what was collected and "
    "what feedback is owed. Once the database is reachable again, start the demo again (make demo, or "
    "lgdp dev demo) and collection resumes where it stopped."
)


class Supervisor:
    """Airflow's components as separate processes, each restarted when it exits (like ``restart: always``).

    ``airflow standalone`` starts the same four components but never restarts one: a database
    restart of a few seconds ends the scheduler, the triggerer and the dag-processor for good, and
    collection stops without a word. Here an exited component is started again after a back-off
    (1, 2, 4 ... 30 s); if one exits more than ``RESTART_LIMIT`` times in ``RESTART_WINDOW``
    seconds the supervisor gives up loudly (``failure`` says why and how to resume) and
    :meth:`wait` returns 1. Output goes to ``<AIRFLOW_HOME>/logs/components/<name>.log`` when
    ``quiet``, else to this terminal.
    """

    def __init__(
        self,
        env: dict[str, str],
        quiet: bool = False,
        components: tuple[str, ...] = AIRFLOW_COMPONENTS,
        restart_limit: int = RESTART_LIMIT,
        restart_window: float = RESTART_WINDOW,
    ) -> None:
        import threading

        self.env = dict(env)
        self.env.setdefault(
            "AIRFLOW__CORE__AUTH_MANAGER", "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        )
        self.quiet = quiet
        self.components = components
        self.restart_limit = restart_limit
        self.restart_window = restart_window
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, list[float]] = {name: [] for name in components}
        self.failure: str | None = None
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def log_path(self, name: str) -> Path:
        return Path(self.env["AIRFLOW_HOME"]) / "logs" / "components" / f"{name}.log"

    def _spawn(self, name: str) -> subprocess.Popen:
        out = None
        if self.quiet:
            path = self.log_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            out = open(path, "ab")  # noqa: SIM115 - handed to the child; closed with the Popen
        try:
            return subprocess.Popen([_bin("airflow"), name], env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None)
        finally:
            if out is not None:
                out.close()

    def start(self) -> Supervisor:
        import threading

        for name in self.components:
            self.procs[name] = self._spawn(name)
        self._thread = threading.Thread(target=self._watch, name="lgdp-supervisor", daemon=True)
        self._thread.start()
        return self

    def restart_count(self, name: str) -> int:
        with self._lock:
            return len(self.restarts[name])

    def _watch(self) -> None:
        due: dict[str, float] = {}  # component -> when to start it again
        while not self._stopping.wait(1.0):
            now = time.monotonic()
            for name in self.components:
                with self._lock:
                    proc = self.procs.get(name)
                    if proc is None or proc.poll() is None:
                        continue
                    if name not in due:
                        recent = [t for t in self.restarts[name] if now - t < self.restart_window]
                        if len(recent) >= self.restart_limit:
                            self.failure = (
                                f"Airflow's {name} exited {len(recent) + 1} times in {self.restart_window / 60:.0f} minutes "
                                f"(last exit code {proc.returncode}); the demo stops. Is the database down? {RESUME_HINT}"
                            ) + (f" Its output: {self.log_path(name)}" if self.quiet else "")
                            print(f"[lgdp] {self.failure}", file=sys.stderr, flush=True)
                            self._done.set()
                            return
                        wait = min(30.0, 2.0 ** len(recent))
                        due[name] = now + wait
                        print(
                            f"[lgdp] Airflow's {name} exited (code {proc.returncode}); restarting it in {wait:.0f} s",
                            file=sys.stderr, flush=True,
                        )
                    if now >= due[name]:
                        del due[name]
                        self.restarts[name].append(now)
                        self.procs[name] = self._spawn(name)
                        print(f"[lgdp] Airflow's {name} restarted", file=sys.stderr, flush=True)

    def wait(self) -> int:
        """Until :meth:`stop` or giving up; 1 if the supervisor gave up, else 0."""
        while not self._done.wait(1.0):
            pass
        return 1 if self.failure else 0

    def stop(self, timeout: float = 30) -> None:
        """Stop every component cleanly (at the same time), then anything left behind."""
        import threading

        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            procs = list(self.procs.values())
        stoppers = [threading.Thread(target=stop, args=(p, timeout)) for p in procs]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        self._done.set()


def start_m365(env: dict[str, str]):
    """The Microsoft 365 stand-in for the demo, unless a real Graph connection is configured."""
    if os.environ.get("AIRFLOW_CONN_MSGRAPH_SHAREPOINT"):
        print("[lgdp] Microsoft Graph: the configured msgraph_sharepoint connection", flush=True)
        return None
    from lgdp.devservices.m365 import SITE_PREFIX, M365StandIn

    port = int(os.environ.get("LGDP_M365_PORT", "18765"))
    standin = M365StandIn(state_dir() / "m365", port=port, token_port=port + 1).start()
    env["AIRFLOW_CONN_MSGRAPH_SHAREPOINT"] = standin.connection_uri()
    env["LGDP_SHAREPOINT_DRIVE_ID"] = standin.drive_id
    env.setdefault("LGDP_POLL_INTERVAL_SECONDS", "30")
    # Links in emails open the stand-in's folder browser (what a folder's webUrl opens).
    env.setdefault("LGDP_SHAREPOINT_WEB_URL", f"{standin.base_url}/{SITE_PREFIX}")
    print(
        f"[lgdp] Microsoft 365 stand-in: {standin.graph_url} (files live in {standin.drive_root}; drop a "
        "council's file into <return>/<period>/<GSS code>/ there and the platform collects it)",
        flush=True,
    )
    return standin


def defined_connections(db_url: str) -> set[str]:
    """Connection ids the user has defined: ``AIRFLOW_CONN_<ID>`` variables and Airflow's connection table.

    Airflow reads environment variables before its table, so a variable the demo set would hide a
    connection someone added with ``airflow connections add``: those are left alone too.
    """
    from sqlalchemy import create_engine, text

    ids = {k[len("AIRFLOW_CONN_"):].lower() for k in os.environ if k.startswith("AIRFLOW_CONN_")}
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            ids |= {r[0].lower() for r in conn.execute(text("SELECT conn_id FROM connection"))}
    except Exception:  # noqa: BLE001 - no table yet means no connections
        pass
    finally:
        engine.dispose()
    return ids


def _conn_var(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def configure_mail(env: dict[str, str], m365, defined: set[str]) -> str:
    """Mail through the stand-in's Graph ``sendMail`` unless the user chose a transport; returns where it goes."""
    if os.environ.get("LGDP_MAIL_TRANSPORT"):
        return f"LGDP_MAIL_TRANSPORT={os.environ['LGDP_MAIL_TRANSPORT']} as configured"
    if m365 is None:
        return "as configured (LGDP_MAIL_TRANSPORT unset: SMTP through smtp_default)"
    conn_id = os.environ.get("LGDP_MSGRAPH_MAIL_CONN_ID", "msgraph_mail")
    env["LGDP_MAIL_TRANSPORT"] = "msgraph"
    if conn_id.lower() in defined:
        return f"Microsoft Graph sendMail through the configured {conn_id} connection"
    conn = m365.connection()
    conn["extra"]["from_email"] = DEMO_MAIL_FROM
    env[_conn_var(conn_id)] = json.dumps(conn)
    return f"{m365.base_url}/_admin/mail (Graph sendMail to the stand-in; stored in {m365.state.mail_dir})"


DEMO_MAIL_FROM = "Local Government Data Platform (demo) <returns-platform@lgdp.example.org>"
PSEUDONYM_KEYS_FILE = "demo-pseudonym-keys.json"


def requester_connections(specs) -> tuple[list[str], list[str]]:
    """(wasb conn ids, pseudonym key conn ids) the approved specs' distribution blocks name."""
    from lgdp.specs.model import WasbDestination

    wasb: set[str] = set()
    keys: set[str] = set()
    for loaded in specs:
        for dist in loaded.spec.distribution:
            if isinstance(dist.destination, WasbDestination):
                wasb.add(dist.destination.conn_id)
            if dist.pseudonym_key_conn_id:
                keys.add(dist.pseudonym_key_conn_id)
    return sorted(wasb), sorted(keys)


def demo_pseudonym_keys(state: Path, conn_ids: list[str]) -> dict[str, str]:
    """A random key per connection, kept in the state folder so pseudonyms stay stable between runs.

    Demo keys only (prefixed so nobody mistakes one for a real key); the file is readable by its
    owner only and lives under the state folder, which git ignores. Never commit one.
    """
    import secrets

    path = state / PSEUDONYM_KEYS_FILE
    keys: dict[str, str] = json.loads(path.read_text(encoding="utf-8")).get("keys", {}) if path.exists() else {}
    missing = [c for c in conn_ids if c not in keys]
    if missing:
        for c in missing:
            keys[c] = "lgdp-demo-key-" + secrets.token_urlsafe(32)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"note": "demo pseudonymisation keys made by `lgdp dev demo`; not for real data", "keys": keys}, indent=1),
            encoding="utf-8",
        )
        tmp.chmod(0o600)
        os.replace(tmp, path)
    return {c: keys[c] for c in conn_ids}


def start_azurite(env: dict[str, str], specs, defined: set[str]):
    """Azurite for every requester storage connection the specs name and the user has not defined.

    Also defines a demo pseudonymisation key connection for every key the specs name and the user
    has not defined. Returns the running Azurite, or None when no storage connection was missing.
    """
    from lgdp.devservices.azurite import AzuriteBlob

    wasb, key_ids = requester_connections(specs)
    keys = demo_pseudonym_keys(state_dir(), [c for c in key_ids if c.lower() not in defined])
    for conn_id, key in keys.items():
        env[_conn_var(conn_id)] = json.dumps(
            {"conn_type": "generic", "password": key, "description": "demo pseudonymisation key (lgdp dev demo)"}
        )
    if keys:
        print(f"[lgdp] demo pseudonym keys for {', '.join(keys)}: {state_dir() / PSEUDONYM_KEYS_FILE}", flush=True)
    missing = [c for c in wasb if c.lower() not in defined]
    if wasb and not missing:
        print(f"[lgdp] requester storage: the configured {', '.join(wasb)} connections", flush=True)
    if not missing:
        return None
    port = int(os.environ.get("LGDP_AZURITE_PORT", "10000"))
    azurite = AzuriteBlob(state_dir() / "azurite", port=port).start()
    for conn_id in missing:
        env[_conn_var(conn_id)] = azurite.connection_json()
    print(
        f"[lgdp] Azurite (requesters' blob storage): {azurite.blob_endpoint} for {', '.join(missing)} "
        f"(data in {azurite.location})",
        flush=True,
    )
    return azurite


def _demo(args: argparse.Namespace) -> int:
    from lgdp.devservices.azurite import AzuriteError
    from lgdp.specs.load import load_register

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    env, server = prepare(args.port)
    if args.smoke:
        env["LGDP_POLL_INTERVAL_SECONDS"] = "3"
        # The smoke check runs one return end to end; the other DAGs (32 councils' collect tasks
        # each) would only compete for the machine, so they stay paused (still parsed and listed).
        env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "True"
    # Absolute, so every Airflow process agrees whatever its working folder.
    env.setdefault("LGDP_DELIVERY_DIR", str((state_dir() / "deliveries").resolve()))
    m365 = azurite = proc = None
    try:
        defined = defined_connections(env["LGDP_DATABASE_URL"])
        m365 = start_m365(env)
        mail = configure_mail(env, m365, defined)
        print(f"[lgdp] mail: {mail}", flush=True)
        try:
            azurite = start_azurite(env, load_register().approved(), defined)
        except AzuriteError as e:
            print(f"[lgdp] Azurite could not start: {e}", file=sys.stderr)
            return 1
        airflow_home = Path(env["AIRFLOW_HOME"])
        if not args.smoke:  # every return with a period open today and councils played through it (lgdp.demo_seed)
            __import__("lgdp.demo_seed", fromlist=["start"]).start(env, m365, args.port)
        # Airflow's four components, each restarted if it exits (a database restart ends them)
        proc = Supervisor(env, quiet=args.quiet).start()
        if not wait_healthy(args.port, args.timeout):
            print("[lgdp] Airflow did not become healthy; see the output above", file=sys.stderr)
            return 1
        pw = airflow_home / "simple_auth_manager_passwords.json.generated"
        lines = [
            f"Airflow is up: http://localhost:{args.port}",
            f"log in as admin; the password is in {pw}",
        ]
        if m365 is not None:
            lines.append(f"SharePoint folders (stand-in): {env['LGDP_SHAREPOINT_WEB_URL']}")
        lines.append(f"mail sent: {mail}")
        if azurite is not None:
            lines.append(f"requesters' blob storage (Azurite): {azurite.blob_endpoint} (Azurite's public dev account)")
        lines.append(f"local deliveries (LGDP_DELIVERY_DIR): {env['LGDP_DELIVERY_DIR']}")
        lines.append("every approved return in return_specs/ is a DAG named return_<id>; Ctrl-C stops everything.")
        lines.append("Airflow's components are restarted if they exit (after a database restart, say).")
        print("\n" + "".join(f"[lgdp] {ln}\n" for ln in lines), flush=True)
        if args.smoke:
            # The acknowledgement is looked for in the stand-in's mail only if mail goes there.
            mail_here = m365 is not None and mail.startswith(m365.base_url)
            return 0 if _smoke(env, args.timeout) and _smoke_collection(env, m365, args.timeout, mail_here) else 1
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C (or SIGTERM) must not cut the clean-up short and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if proc is not None:
            print("[lgdp] stopping ...", flush=True)
            proc.stop()
        if azurite is not None:
            azurite.stop()
        if m365 is not None:
            m365.stop()
        del server


def _smoke(env: dict[str, str], timeout: float = 120) -> bool:
    """Wait until every approved return's DAG is serialized, as the UI would list it."""
    from lgdp.specs.load import load_register

    expected = {s.dag_id for s in load_register().approved()}
    deadline = time.monotonic() + timeout
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


def _smoke_collection(env: dict[str, str], m365, timeout: float = 240, check_mail: bool = True) -> bool:
    """Through the real scheduler and triggerer: open a period, drop a file, see it accepted and answered.

    Answered means what the council sees: the feedback workbook in its folder's ``_platform``
    subfolder and the acknowledgement email, read back from the stand-in's mail page over HTTP.
    The council is the first one not yet accepted, so a second smoke run on the same state folder
    checks a fresh submission.
    """
    import datetime as dt

    from lgdp.collect.feedback import feedback_name
    from lgdp.collect.graph import PLATFORM_FOLDER, folder_path
    from lgdp.ingest.versions import expected_submission, latest_version
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
    subprocess.run([_bin("airflow"), "dags", "unpause", loaded.dag_id], env=env, check=True, capture_output=True)
    subprocess.run(
        [_bin("airflow"), "dags", "trigger", loaded.dag_id, "--conf", json.dumps({"period": period.label})],
        env=env, check=True, capture_output=True,
    )
    db = env["LGDP_DATABASE_URL"]

    def statuses() -> dict[str, str]:
        with session(db) as s:
            return period_status(s, loaded.id, period.label)

    if not _wait_for("the period to be opened", lambda: len(statuses()) == len(loaded.providers), timeout):
        return False
    status = statuses()
    council = next((c for c in loaded.providers if status.get(c.code) != "accepted"), None)
    if council is None:
        print(f"[lgdp] smoke: every council of {loaded.id} {period.label} is accepted already; use a fresh LGDP_STATE_DIR")
        return False
    folder = Path(m365.drive_root) / folder_path(loaded.id, period.label, council.code)
    platform = folder / PLATFORM_FOLDER
    if not _wait_for("the council folders and templates", lambda: any(platform.iterdir()), timeout):
        return False
    fmt = loaded.spec.formats[0]
    staged = Path(m365.drive_root).parent / f"smoke-return.{fmt}"  # written whole, then moved in
    write_sample(loaded, council.code, period.label, None, fmt, staged, 1, None)
    os.replace(staged, folder / staged.name)

    if not _wait_for(f"{council.name}'s file to be accepted", lambda: statuses().get(council.code) == "accepted", timeout):
        return False
    with session(db) as s:
        version = latest_version(s, expected_submission(s, loaded.id, period.label, council.code).id).version
    print(f"[lgdp] smoke: {loaded.id} {period.label}: {council.name}'s file was collected and accepted", flush=True)

    workbook = platform / feedback_name(version)
    if not _wait_for(f"{workbook.name} in {council.name}'s {PLATFORM_FOLDER} folder", workbook.is_file, timeout):
        return False
    print(f"[lgdp] smoke: feedback workbook {workbook.name} is in {council.name}'s {PLATFORM_FOLDER} folder", flush=True)

    def acknowledgement() -> dict | None:
        # What a person sees at the mail page the demo prints.
        with urllib.request.urlopen(f"{m365.base_url}/_admin/mail", timeout=10) as r:
            mail = json.load(r)
        wanted = f"accepted ({council.name}, version {version})"
        return next((m for m in mail if wanted in m["message"].get("subject", "")), None)

    if not check_mail:
        print("[lgdp] smoke: acknowledgement email not checked (mail goes to the server you configured)", flush=True)
        return True
    if not _wait_for(f"the acknowledgement email to {council.name}", lambda: acknowledgement() is not None, timeout):
        return False
    found = acknowledgement()
    to = ", ".join(r["emailAddress"]["address"] for r in found["message"]["toRecipients"])
    print(f"[lgdp] smoke: acknowledgement email sent to {to}: {found['message']['subject']!r}", flush=True)
    return True


def register(sub: argparse._SubParsersAction) -> None:  # noqa: SLF001 - argparse's own type
    dev = sub.add_parser("dev", help="run the platform locally (demo, tests)").add_subparsers(
        dest="dev_command", required=True
    )
    demo = dev.add_parser("demo", help="database, migrations and Airflow (supervised) on this machine")
    demo.add_argument("--port", type=int, default=int(os.environ.get("LGDP_DEMO_PORT", "8080")))
    demo.add_argument(
        "--timeout", type=float, default=240, help="seconds to wait for Airflow, and for each smoke step"
    )
    demo.add_argument(
        "--smoke",
        action="store_true",
        help="start, check every return DAG is listed and a dropped file is collected, accepted and answered, stop",
    )
    demo.add_argument("--quiet", action="store_true", help="hide Airflow's own output")
    demo.set_defaults(func=_demo)
    from lgdp.devservices.cli import register as register_devservices  # lgdp dev m365

    register_devservices(dev)
