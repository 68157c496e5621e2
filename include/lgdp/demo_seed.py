"""A living demo: every return has a period whose window is open today, and a realistic mix of
councils has been through the real pipeline by the time a newcomer looks.

``start(env, m365, port)`` is what ``lgdp dev demo`` calls before it starts Airflow:

1. It writes the demo's copy of the specs (``<state>/demo-specs/``, with the shared reference
   data) in which each return's ``collection.opens`` is moved, only if needed, so that its latest
   period opened a few days (annual: a few weeks) ago and is not yet due; it points
   ``LGDP_SPECS_DIR`` there for every Airflow process. Nothing else in a spec changes, and the
   copy is kept while it still gives an open window, so a restarted demo finds the same periods.
2. In a background thread, once Airflow is healthy, it waits for each return's DAG to open that
   period (the scheduler starts a run for the latest opening by itself; the seed triggers one
   only if none has a few minutes after the DAG is parsed) and, as the council folders appear in the Microsoft
   365 stand-in, drops synthetic files from ``lgdp synth`` (clean or with fault modes) into
   them, so the real scheduler, triggerer and collect tasks process them: accepted, rejected with
   errors, queries awaiting explanation, queries explained in the returned feedback workbook and
   accepted, and councils that have not sent anything yet.

``play(loaded, period, plan)`` drives the same mix straight through ``lgdp.collect.process``
(no Airflow): the UI tests and the benchmark use it on a test ledger.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ACCEPTED = "accepted"
REJECTED = "rejected"
QUERIES = "queries"
EXPLAINED = "explained"  # queries, then explained in the feedback workbook: accepted
NOTHING = "nothing"  # not yet received
# One council in ten of each kind, the rest accepted or not yet sent; shifted per return so the
# matrix is not one colour per column.
PATTERN = (ACCEPTED, REJECTED, ACCEPTED, QUERIES, NOTHING, EXPLAINED, ACCEPTED, NOTHING, REJECTED, ACCEPTED, QUERIES, NOTHING)
EXPLANATION = "Checked with the service: the figure is right (demo explanation)."


def log(msg: str) -> None:
    print(f"[lgdp demo] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Which councils do what


def plan_for(loaded: Any, offset: int = 0) -> dict[str, str]:
    """Council code -> what it does this period (deterministic)."""
    return {c.code: PATTERN[(i + offset) % len(PATTERN)] for i, c in enumerate(loaded.providers)}


def _faults(loaded: Any, outcome: str) -> dict[str, int]:
    from lgdp.synth import fault_names

    names = fault_names(loaded)
    rules = {r.code: r.severity.value for r in loaded.spec.rules}
    errors = [n for n in names if rules.get(n) == "error"]
    queries = [n for n in names if rules.get(n) == "query"]
    if outcome == REJECTED:
        picked = {(errors or ["bad_code"])[0]: 2}
        if "bad_code" in names:
            picked["bad_code"] = 1
        return picked
    if outcome in (QUERIES, EXPLAINED):
        return {queries[0]: 2} if queries else {}
    return {}


def sample(loaded: Any, council: str, period: str, outcome: str, seed: int = 0) -> tuple[str, bytes]:
    """A synthetic file for the outcome (``lgdp synth`` with its fault modes): (file name, bytes)."""
    from lgdp.synth import write_sample

    fmt = loaded.spec.formats[0]
    with tempfile.TemporaryDirectory(prefix="lgdp-demo-") as tmp:
        path = Path(tmp) / f"{loaded.id}_{council}_{period}.{fmt}"
        write_sample(loaded, council, period, None, fmt, path, seed, _faults(loaded, outcome) or None)
        return path.name, path.read_bytes()


def explain_workbook(workbook: bytes, text: str = EXPLANATION) -> bytes:
    """What an officer does in Excel: an explanation against every query of the feedback workbook."""
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(workbook))
    ws = wb["Issues"]
    header = [c.value for c in ws[1]]
    sev = header.index("Severity")
    expl = next(i for i, h in enumerate(header) if str(h).startswith("Explanation"))
    for row in ws.iter_rows(min_row=2):
        if row[sev].value == "query":
            row[expl].value = text
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Straight through the pipeline's functions (tests, benchmark)


def play(loaded: Any, period: str, plan: dict[str, str], seed: int = 0) -> dict[str, str]:
    """Open the period and play each council's outcome through ``lgdp.collect.process``; returns statuses."""
    from lgdp.collect.feedback import build_workbook
    from lgdp.collect.process import process_file, process_upload
    from lgdp.collect.respond import version_feedback
    from lgdp.ledger.db import session
    from lgdp.ledger.register import open_period, period_status
    from lgdp.periods import period_from_label

    with session() as s, s.begin():
        open_period(s, loaded, period_from_label(loaded.spec.collection, period))
    for council, outcome in plan.items():
        if outcome == NOTHING:
            continue
        name, data = sample(loaded, council, period, outcome, seed)
        ref = {"id": f"demo-{council}-1", "name": name, "etag": "1", "last_modified_by": "Demo officer"}
        result = process_file(loaded, period, council, ref, data)
        if outcome == EXPLAINED and result.status == QUERIES:
            meta, issues, _ = version_feedback(loaded, period, council, result.version_id)
            answered = explain_workbook(build_workbook(meta, issues))
            process_upload(loaded, period, council, {"id": f"demo-{council}-fb", "name": f"feedback_v{result.version}.xlsx", "etag": "1"}, answered)
    with session() as s:
        return period_status(s, loaded.id, period)


# ---------------------------------------------------------------------------------------------
# The demo's specs: every return with a window open today


def _open_enough(collection: Any, now: dt.datetime) -> Any | None:
    """The latest period if it opened long enough ago not to be re-run by the scheduler and is not due yet."""
    from lgdp.periods import period_opening_at

    p = period_opening_at(collection, now)
    length_days = {"annual": 365, "quarterly": 91, "monthly": 30}[collection.frequency.value]
    settled = now - p.opens_at > dt.timedelta(days=length_days / 10 + 1)
    return p if settled and p.due_at > now + dt.timedelta(days=3) else None


def shifted_opening(collection: Any, now: dt.datetime) -> dict[str, Any] | None:
    """``collection.opens`` that gives a period open today, or None if the spec's own one does."""
    if _open_enough(collection, now):
        return None
    best = None
    for months in range(0, 12):
        for day in range(1, 29):
            c = collection.model_copy(update={"opens": collection.opens.model_copy(update={"months_after_period_end": months, "day": day})})
            p = _open_enough(c, now)
            if p is not None and (best is None or p.due_at > best[0]):
                best = (p.due_at, months, day)
    if best is None:
        return None
    return {"months_after_period_end": best[1], "day": best[2], "time": collection.opens.time}


def demo_specs(state: Path, now: dt.datetime | None = None) -> tuple[Path, dict[str, str]]:
    """Write the demo's spec folder; returns it and return id -> the period open today."""
    import yaml

    from lgdp.periods import period_opening_at
    from lgdp.specs.load import load_register, specs_dir
    from lgdp.specs.model import Collection

    now = now or dt.datetime.now(dt.timezone.utc)
    source = specs_dir()
    target = state / "demo-specs"
    kept = target.is_dir() and all(
        (_open_enough(s.spec.collection, now) is not None) for s in load_register(target).approved()
    ) and bool(load_register(target).approved())
    if not kept:
        tmp = state / "demo-specs.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source / "shared", tmp / "shared")
        for path in sorted(source.glob("*.yaml")):
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            note = ""
            if isinstance(doc, dict) and isinstance(doc.get("collection"), dict):
                try:
                    collection = Collection.model_validate(doc["collection"])
                except Exception:  # noqa: BLE001 - a broken spec is copied as it is (Airflow reports it)
                    collection = None
                opens = shifted_opening(collection, now) if collection is not None else None
                if opens is not None:
                    doc["collection"]["opens"] = opens
                    note = "# Demo copy: collection.opens moved so a period is open today (lgdp.demo_seed).\n"
                    (tmp / path.name).write_text(note + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
                    continue
            shutil.copy2(path, tmp / path.name)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    periods = {s.id: period_opening_at(s.spec.collection, now).label for s in load_register(target).approved()}
    return target, periods


# ---------------------------------------------------------------------------------------------
# Through Airflow and the Microsoft 365 stand-in (make demo)


def _airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("airflow")), *args], env=env, capture_output=True, text=True)


def _airflow_runs(env: dict[str, str], dag_id: str) -> tuple[bool, list[tuple[Any, Any]]]:
    """(is the DAG serialized yet, [(logical date, conf)] of its runs), from Airflow's metadata database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    try:
        with engine.connect() as conn:
            known = conn.execute(text("SELECT 1 FROM serialized_dag WHERE dag_id = :d LIMIT 1"), {"d": dag_id}).first() is not None
            runs = conn.execute(text("SELECT logical_date, conf FROM dag_run WHERE dag_id = :d"), {"d": dag_id}).all()
        return known, [(r[0], r[1]) for r in runs]
    except Exception:  # noqa: BLE001 - not migrated or not reachable yet
        return False, []
    finally:
        engine.dispose()


def _has_run_for(loaded: Any, period: str, runs: list[tuple[Any, Any]]) -> bool:
    """A run opens ``period``: its conf names it, or (scheduled) its logical date is its opening."""
    from lgdp.periods import period_opening_at

    for logical_date, conf in runs:
        if isinstance(conf, str):
            try:
                conf = json.loads(conf)
            except ValueError:
                conf = None
        if isinstance(conf, dict) and conf.get("period"):
            if conf["period"] == period:
                return True
        elif logical_date is not None and period_opening_at(loaded.spec.collection, logical_date).label == period:
            return True
    return False


def _period_opened(db: str, return_id: str, period: str) -> bool:
    from lgdp.ledger.db import session
    from lgdp.ledger.register import period_status

    with session(db) as s:
        return bool(period_status(s, return_id, period))


def _drop(folder: Path, name: str, data: bytes) -> None:
    """Write the file whole beside the drive, then move it in (as a finished upload appears)."""
    staged = folder.parent.parent.parent.parent / f".demo-{folder.name}-{name}"
    staged.write_bytes(data)
    os.replace(staged, folder / name)


def selected(register: Any) -> list[Any]:
    """The approved returns the demo plays: all, or those named in ``LGDP_DEMO_RETURNS`` (ids, commas)."""
    wanted = {r.strip() for r in os.environ.get("LGDP_DEMO_RETURNS", "").split(",") if r.strip()}
    approved = list(register.approved())
    unknown = wanted - {s.id for s in approved}
    if unknown:
        raise ValueError(f"LGDP_DEMO_RETURNS names no approved return: {', '.join(sorted(unknown))}")
    return [s for s in approved if not wanted or s.id in wanted]


def plans(register: Any) -> list[tuple[Any, str, dict[str, str]]]:
    """(return, the period open today, council -> outcome) for every return the demo plays.

    The plan's offset is the return's place among all approved returns, so a demo limited by
    ``LGDP_DEMO_RETURNS`` plays each return exactly as the whole demo does."""
    from lgdp.periods import period_from_label

    chosen = {s.id for s in selected(register)}
    return [
        (loaded, period_from_label(loaded.spec.collection, _period_label(loaded)).label, plan_for(loaded, offset))
        for offset, loaded in enumerate(register.approved())
        if loaded.id in chosen
    ]


# The ledger status each outcome ends in once the demo has played it.
EXPECTED_STATUS = {ACCEPTED: "accepted", REJECTED: "rejected", QUERIES: "queries", EXPLAINED: "accepted", NOTHING: "expected"}


def check(db: str, register: Any) -> tuple[bool, list[str]]:
    """Compare the ledger with what the demo played: (all as planned, one line per return).

    A line counts the councils per status; a council whose status is not the one its outcome
    ends in is named with both, and an explained council must have its explanations recorded."""
    from collections import Counter

    from sqlalchemy import select

    from lgdp.ledger.db import session
    from lgdp.ledger.models import CollectionPeriod, ExpectedSubmission, SubmissionIssue, SubmissionVersion
    from lgdp.ledger.register import period_status

    ok, lines = True, []
    for loaded, period, plan in plans(register):
        with session(db) as s:
            status = period_status(s, loaded.id, period)
            explained = set(
                s.scalars(
                    select(ExpectedSubmission.council_code)
                    .join(CollectionPeriod, CollectionPeriod.id == ExpectedSubmission.period_id)
                    .join(SubmissionVersion, SubmissionVersion.submission_id == ExpectedSubmission.id)
                    .join(SubmissionIssue, SubmissionIssue.version_id == SubmissionVersion.id)
                    .where(CollectionPeriod.return_id == loaded.id, CollectionPeriod.period == period)
                    .where(SubmissionIssue.explanation.is_not(None))
                    .distinct()
                )
            )
        wrong = [
            f"{council} {outcome}: {status.get(council, 'missing')} (expected {EXPECTED_STATUS[outcome]})"
            for council, outcome in plan.items()
            if status.get(council) != EXPECTED_STATUS[outcome]
        ]
        wrong += [f"{c} explained: no explanation recorded" for c, o in plan.items() if o == EXPLAINED and c not in explained]
        counts = Counter(status.get(c, "missing") for c in plan)
        summary = ", ".join(f"{n} {st}" for st, n in sorted(counts.items()))
        n_explained = sum(o == EXPLAINED for o in plan.values())
        if wrong:
            ok = False
            lines.append(f"{loaded.id} {period}: NOT as planned: " + "; ".join(wrong))
        else:
            lines.append(f"{loaded.id} {period}: {summary} ({n_explained} of them explained their queries), as planned")
    return ok, lines


def drive(
    env: dict[str, str], drive_root: Path, port: int, stop: threading.Event, timeout: float = 1800,
    trigger_after: float = 180,
) -> bool:
    """Open each return's period through Airflow and play the mix of councils into their folders.

    Returns True once every council has been played (and every explained one answered), False on
    timeout or stop. A return whose DAG has not opened today's period ``trigger_after`` seconds
    after it was parsed is triggered for it."""
    from lgdp.collect.feedback import feedback_name
    from lgdp.collect.graph import PLATFORM_FOLDER, folder_path
    from lgdp.dev import wait_healthy
    from lgdp.ingest.versions import expected_submission, latest_version
    from lgdp.ledger.db import session
    from lgdp.specs.load import load_register

    db = env["LGDP_DATABASE_URL"]
    os.environ.setdefault("LGDP_DATABASE_URL", db)
    if not wait_healthy(port, 600):
        log("Airflow did not become healthy; no demo submissions played")
        return False
    register = load_register(Path(env["LGDP_SPECS_DIR"]))
    from lgdp.ledger.register import sync_register

    with session(db) as s, s.begin():  # the register shows the demo's calendar, as the DAGs run it
        sync_register(s, register.specs, register.reference.councils if register.reference else ())
    todo = plans(register)
    if os.environ.get("LGDP_DEMO_RETURNS"):  # the others stay paused (see start())
        for loaded, _, _ in todo:
            _airflow(env, "dags", "unpause", loaded.dag_id)
    deadline = time.monotonic() + timeout
    # The scheduler starts a run for each return's latest opening by itself (catchup off): that is
    # the period open today. Trigger one only if, trigger_after seconds after the DAG is known, it
    # has not (so no period gets two runs).
    for loaded, period, _ in todo:
        known_since = None
        while not stop.is_set() and time.monotonic() < deadline and not _period_opened(db, loaded.id, period):
            known, runs = _airflow_runs(env, loaded.dag_id)
            if known and known_since is None:
                known_since = time.monotonic()
            if known_since is not None and time.monotonic() - known_since > trigger_after and not _has_run_for(loaded, period, runs):
                out = _airflow(env, "dags", "trigger", loaded.dag_id, "--conf", json.dumps({"period": period}))
                if out.returncode == 0:
                    log(f"{loaded.dag_id}: triggered for period {period} (window open today)")
                    known_since = time.monotonic() + 600  # give it time before trying again
            stop.wait(5)
    played: set[tuple[str, str]] = set()
    explained: set[tuple[str, str]] = set()
    while not stop.is_set() and time.monotonic() < deadline:
        waiting = 0
        for loaded, period, plan in todo:
            for council, outcome in plan.items():
                key = (loaded.id, council)
                if outcome == NOTHING or (key in played and (outcome != EXPLAINED or key in explained)):
                    continue
                folder = drive_root / folder_path(loaded.id, period, council)
                platform = folder / PLATFORM_FOLDER
                if not platform.is_dir() or not any(platform.iterdir()):
                    waiting += 1
                    continue
                with session(db) as s:
                    sub = expected_submission(s, loaded.id, period, council)
                    latest = latest_version(s, sub.id)
                    status = sub.status.value
                    version = latest.version if latest else None
                if key not in played:
                    if latest is None:  # a restarted demo does not send the same council twice
                        name, data = sample(loaded, council, period, outcome)
                        _drop(folder, name, data)
                    played.add(key)
                    waiting += outcome == EXPLAINED
                    continue
                # explained: wait for the queries and the feedback workbook, then send it back explained
                workbook = platform / feedback_name(version) if version else None
                if status == "queries" and workbook is not None and workbook.is_file():
                    _drop(folder, f"explained_{workbook.name}", explain_workbook(workbook.read_bytes()))
                    explained.add(key)
                elif status in ("accepted", "rejected", "not_received"):
                    explained.add(key)
                else:
                    waiting += 1
        if not waiting:
            log("demo submissions played: accepted, rejected, queries, explained and not yet received councils")
            break
        stop.wait(5)
    else:
        log("demo submissions not all played: " + ("stopped" if stop.is_set() else f"timed out after {timeout:.0f} s"))
        return False
    # The last files are in; once the collect tasks have decided them the pages show every stage.
    while not stop.is_set():
        ok, lines = check(db, register)
        if ok or time.monotonic() > deadline:
            for line in lines:
                log(("demo councils decided: " if ok else "demo councils not all decided in time: ") + line)
            return ok
        stop.wait(10)
    return False


def _period_label(loaded: Any) -> str:
    from lgdp.periods import period_opening_at

    return period_opening_at(loaded.spec.collection, dt.datetime.now(dt.timezone.utc)).label


class Seed(threading.Thread):
    """The thread that plays the demo's councils; ``played`` is drive()'s answer once it ends."""

    def __init__(self, env: dict[str, str], drive_root: Path, port: int, timeout: float, trigger_after: float) -> None:
        super().__init__(name="lgdp-demo-seed", daemon=True)
        self.stop = threading.Event()
        self.played: bool | None = None
        self._args = (env, drive_root, port, self.stop, timeout, trigger_after)

    def run(self) -> None:
        try:
            self.played = drive(*self._args)
        except Exception as exc:  # noqa: BLE001 - the demo goes on; say why nothing more is played
            log(f"demo submissions stopped: {type(exc).__name__}: {exc}")
            self.played = False


def start(env: dict[str, str], m365: Any, port: int, timeout: float = 1800, trigger_after: float = 180) -> Seed | None:
    """Point the demo at specs with a window open today and play councils once Airflow is up."""
    from lgdp.dev import state_dir

    if os.environ.get("LGDP_SPECS_DIR") or os.environ.get("LGDP_DEMO_SEED", "1") == "0":
        log("demo submissions not played (LGDP_SPECS_DIR set or LGDP_DEMO_SEED=0)")
        return None
    folder, periods = demo_specs(state_dir())
    env["LGDP_SPECS_DIR"] = str(folder)
    if os.environ.get("LGDP_DEMO_RETURNS"):
        # Only the named returns are played; every DAG starts paused and drive() unpauses theirs.
        env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "True"
        log(f"playing only {os.environ['LGDP_DEMO_RETURNS']} (LGDP_DEMO_RETURNS); the other DAGs stay paused")
    log("periods open today: " + ", ".join(f"{r} {p}" for r, p in sorted(periods.items())) + f" (specs: {folder})")
    if m365 is None:
        log("a real Graph connection is configured: no demo files are dropped")
        return None
    thread = Seed(env, Path(m365.drive_root), port, timeout, trigger_after)
    thread.start()
    return thread
