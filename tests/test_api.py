"""The councils' submission API on a real ``airflow api-server`` (this project's plugins folder),
a real ledger, the Microsoft 365 stand-in over HTTP, a real SMTP server and, for the end-to-end
comparison, the real ``return_clas`` DAG (``dag.test``: the collect task, its trigger, feedback
and emails).

Checked: every endpoint refuses no token, a malformed, forged, expired or revoked token, an
Airflow login and another council's token (401/403, a JSON error code, nothing read or written);
bad input (size limit, content type, malformed JSON, wrong shape, no idempotency key, a period not
open, a return the council does not provide) is refused with a code and nothing kept; a replay
gives the same answer and no second version; concurrent submissions are each kept, placed and
processed; a submission goes through exactly the SharePoint pipeline (same status, issues, rows,
feedback workbook and emails as the same data dropped in the folder; the issues read after
"decided" are that version's, and a file saved over the submission's later is not its answer), explanations sent as JSON
accept it like a filled-in workbook does; periods owed and templates; rate limits; every request
recorded; tokens only as hashes (CLI); the example client; schemathesis finds no 5xx.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "/council-api"
EDINBURGH, GLASGOW, FIFE = "S12000036", "S12000049", "S12000047"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_FILE_MB = 3
pytestmark = [pytest.mark.airflow, pytest.mark.timeout(1200)]


def _period(days_ago: int = 0) -> str:
    from lgdp.periods import period_opening_at
    from lgdp.specs.load import load_register

    loaded = load_register().get("clas")
    return period_opening_at(loaded.spec.collection, dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days_ago)).label


def _xlsx(council: str, period: str, rows: int, faults: dict[str, int] | None = None, seed: int = 1) -> bytes:
    from lgdp.specs.load import load_register
    from lgdp.synth import write_sample

    buf = io.BytesIO()
    write_sample(load_register().get("clas"), council, period, rows, "xlsx", buf, seed, faults)
    return buf.getvalue()


def _as_council(workbook: bytes, old: str, new: str) -> bytes:
    """The same workbook with another council's code in its cells (the same data from another council)."""
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(workbook))
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if cell.value == old:
                    cell.value = new
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _count(sql: str, **params) -> int:
    from lgdp.ledger.db import engine

    with engine().connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def _footprint() -> tuple[int, int, int]:
    """What a refused request must not change: API submissions, archived files, versions."""
    return (
        _count("SELECT count(*) FROM lgdp.api_submissions"),
        _count("SELECT count(*) FROM lgdp.archived_files"),
        _count("SELECT count(*) FROM lgdp.submission_versions"),
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """CLAS (one table) for Edinburgh and Glasgow, this year's and last year's periods open; the stand-in."""
    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

    from lgdp.devservices.m365 import M365StandIn

    tmp = tmp_path_factory.mktemp("api")
    specs = tmp / "specs"
    shutil.copytree(ROOT / "return_specs" / "shared", specs / "shared")
    text_ = (ROOT / "tests" / "specs_one_table" / "clas.yaml").read_text()
    text_ = text_.replace("providers: all", f"providers: [{EDINBURGH}, {GLASGOW}]")
    text_ = re.sub(r"closes_days_after_opening: \d+", "closes_days_after_opening: 900", text_)
    text_ = text_.replace("formats: [xlsx]", "formats: [xlsx, csv, xml]")
    text_ = text_[: text_.index("\ndistribution:")] + "\n"
    (specs / "clas.yaml").write_text(text_)
    mp = pytest.MonkeyPatch()
    mp.setenv("LGDP_SPECS_DIR", str(specs))
    mp.setenv("LGDP_POLL_INTERVAL_SECONDS", "0.5")
    standin = M365StandIn(tmp / "m365").start()
    KiotaRequestAdapterHook.cached_request_adapters.pop("msgraph_sharepoint", None)
    mp.setenv("AIRFLOW_CONN_MSGRAPH_SHAREPOINT", standin.connection_uri())
    mp.setenv("LGDP_SHAREPOINT_DRIVE_ID", standin.drive_id)
    try:
        yield {"specs": specs, "m365": standin, "tmp": tmp}
    finally:
        standin.stop()
        KiotaRequestAdapterHook.cached_request_adapters.pop("msgraph_sharepoint", None)
        mp.undo()


@pytest.fixture(scope="module")
def ledger(env, ledger_url):
    from lgdp.ledger.db import engine, session
    from lgdp.ledger.models import Base
    from lgdp.ledger.register import open_period, sync_register
    from lgdp.periods import period_from_label
    from lgdp.specs.load import load_register

    with engine().begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(f"lgdp.{t.name}" for t in Base.metadata.sorted_tables) + " RESTART IDENTITY CASCADE"))
        conn.execute(text("DROP SCHEMA IF EXISTS lgdp_staging_versions CASCADE"))
        conn.execute(text("DROP SCHEMA IF EXISTS lgdp_staging CASCADE"))
        conn.execute(text("CREATE SCHEMA lgdp_staging"))
        conn.execute(text("CREATE SCHEMA lgdp_staging_versions"))
    reg = load_register()
    loaded = reg.get("clas")
    # this year's period for the end-to-end test, last year's for the others, the one before for probes
    current, previous, probe = _period(), _period(365), _period(730)
    assert len({current, previous, probe}) == 3
    with session() as s, s.begin():
        sync_register(s, reg.specs, reg.reference.councils)
        for label in (current, previous, probe):
            open_period(s, loaded, period_from_label(loaded.spec.collection, label))
    return {"loaded": loaded, "current": current, "previous": previous, "probe": probe}


@pytest.fixture(scope="module")
def tokens(ledger):
    from lgdp.api.tokens import issue_token, revoke_token
    from lgdp.ledger.db import session

    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)
    with session() as s, s.begin():
        out = {
            "edinburgh": issue_token(s, EDINBURGH, name="Mosaic", rate_per_minute=10_000).token,
            "glasgow": issue_token(s, GLASGOW, rate_per_minute=10_000).token,
            "fife": issue_token(s, FIFE, rate_per_minute=10_000).token,
            "expired": issue_token(s, EDINBURGH, days=1, now=past).token,
            "schemathesis": issue_token(s, EDINBURGH, rate_per_minute=10_000).token,
            "slow": issue_token(s, EDINBURGH, rate_per_minute=3).token,
        }
        revoked = issue_token(s, EDINBURGH)
        revoke_token(s, revoked.id)
        out["revoked"] = revoked.token
    tid = out["edinburgh"].split("_")[1]
    out["forged"] = f"lgdp_{tid}_{'A' * 43}"
    out["garbage"] = "not-a-token"
    return out


@pytest.fixture(scope="module")
def server(env, ledger, airflow_db, tmp_path_factory):
    from fixtures_apiserver import api_server

    with api_server(tmp_path_factory.mktemp("api-server"), {"LGDP_MAX_FILE_MB": str(MAX_FILE_MB)}) as srv, \
            httpx.Client(base_url=srv.base + PREFIX, timeout=120) as client:
        yield {"base": srv.base, "client": client, "password": srv.password, "log": srv.log}


def _call(client, method, path, token=None, body=None, ctype=None, key=None, headers=None):
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    if ctype:
        h["Content-Type"] = ctype
    if key:
        h["Idempotency-Key"] = key
    return client.request(method, path, content=body, headers=h)


def _submit(server, token, council, period, body, ctype=XLSX, key=None, name="return.xlsx"):
    key = key or "k-" + hashlib.sha256(body + council.encode() + period.encode()).hexdigest()[:40]
    return _call(server["client"], "POST", f"/v1/councils/{council}/returns/clas/periods/{period}/submissions",
                 token, body, ctype, key, {"X-Filename": name})


def _status(server, token, council, sid):
    r = _call(server["client"], "GET", f"/v1/councils/{council}/submissions/{sid}", token)
    assert r.status_code == 200, r.text
    return r.json()


def _until(predicate, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def _ledger_picture(council: str, period: str) -> list[tuple]:
    """What the ledger holds for a council's period (ids, statuses, counts; no row data): for failure messages."""
    from lgdp.ledger.db import engine

    with engine().connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT 'version', v.id, v.version, v.status::text, v.source_item_id, v.source_etag, "
            "(SELECT string_agg(i.severity || ':' || i.code, ',' ORDER BY i.id) FROM lgdp.submission_issues i WHERE i.version_id = v.id) "
            "FROM lgdp.submission_versions v JOIN lgdp.expected_submissions e ON e.id = v.submission_id "
            "JOIN lgdp.collection_periods p ON p.id = e.period_id WHERE e.council_code = :c AND p.period = :p "
            "UNION ALL SELECT 'api', NULL, a.attempts, a.status, a.source_item_id, a.source_etag, a.kind FROM lgdp.api_submissions a "
            "WHERE a.council_code = :c AND a.period = :p "
            "UNION ALL SELECT 'email', s.id, NULL, s.status, s.dedupe_key, NULL, NULL FROM lgdp.sent_emails s "
            "WHERE s.council_code = :c AND s.period = :p ORDER BY 1, 2"), {"c": council, "p": period})]


def _placed(server, token, council, sid):
    return _until(lambda: (s := _status(server, token, council, sid))["state"] != "queued" and s, what=f"{sid} placed")


def collect_once(council: str, period: str) -> None:
    """What the council's collect task does on waking: each new file of the folder, then the feedback owed.

    The operator's own methods (``_process``, ``_send_feedback``), without Airflow's deferral: for
    checks that need no scheduler (the real DAG runs in ``test_both_routes_...``).
    """
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
        assert op._process(loaded, p, drive, ref)
    assert op._send_feedback(loaded, p, drive)


# ---- security: every endpoint -----------------------------------------------------------------------
def _endpoints(period: str, sid: str) -> list[tuple[str, str, bytes | None, str | None]]:
    c = EDINBURGH
    base = f"/v1/councils/{c}"
    return [
        ("GET", "/v1/me", None, None),
        ("GET", "/v1/openapi.json", None, None),
        ("GET", f"{base}/periods", None, None),
        ("GET", f"{base}/returns/clas/periods/{period}/templates", None, None),
        ("GET", f"{base}/returns/clas/periods/{period}/templates/episodes.xsd", None, None),
        ("POST", f"{base}/returns/clas/periods/{period}/submissions", b'{"rows": []}', "application/json"),
        ("GET", f"{base}/submissions/{sid}", None, None),
        ("GET", f"{base}/submissions/{sid}/issues", None, None),
        ("POST", f"{base}/submissions/{sid}/explanations", b'{"explanations": [{"code": "X", "row": 2, "item": null, "explanation": "e"}]}', "application/json"),
    ]


def test_every_endpoint_refuses_bad_tokens_and_other_councils_and_reads_or_writes_nothing(server, tokens, ledger):
    client = server["client"]
    r = _submit(server, tokens["edinburgh"], EDINBURGH, ledger["probe"], _xlsx(EDINBURGH, ledger["probe"], 5, seed=9), key="security-probe-0001")
    assert r.status_code == 202, r.text
    sid = r.json()["submission_id"]
    airflow_jwt = httpx.post(f"{server['base']}/auth/token", json={"username": "admin", "password": server["password"]}).json()["access_token"]
    before = _footprint()
    refusals = {
        None: "token_missing",
        tokens["garbage"]: "token_invalid",
        tokens["forged"]: "token_invalid",
        tokens["expired"]: "token_expired",
        tokens["revoked"]: "token_revoked",
        airflow_jwt: "token_invalid",
    }
    endpoints = _endpoints(ledger["probe"], sid)
    for method, path, body, ctype in endpoints:
        for token, code in refusals.items():
            resp = _call(client, method, path, token, body, ctype, "security-probe-0002")
            assert resp.status_code == 401, (method, path, code, resp.text)
            assert resp.json() == {"error": {"code": code, "message": resp.json()["error"]["message"]}}
            assert resp.headers.get("www-authenticate") == "Bearer"
        if "/councils/" in path:  # another council's token (and one of a council that provides nothing)
            for other in ("glasgow", "fife"):
                resp = _call(client, method, path, tokens[other], body, ctype, "security-probe-0003")
                assert resp.status_code == 403, (method, path, resp.text)
                assert resp.json()["error"]["code"] == "council_mismatch"
    assert _footprint() == before
    # Glasgow asking for Edinburgh's submission under its own council: as if it did not exist
    resp = _call(client, "GET", f"/v1/councils/{GLASGOW}/submissions/{sid}", tokens["glasgow"])
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "submission_unknown"
    # every refusal was recorded, with the token when it exists (forged: the real id; garbage: none)
    expected = len(endpoints) * len(refusals)
    assert _count("SELECT count(*) FROM lgdp.api_requests WHERE status = 401") >= expected
    forged_id = tokens["forged"].split("_")[1]
    assert _count("SELECT count(*) FROM lgdp.api_requests WHERE status = 401 AND code = 'token_invalid' AND token_id = :t", t=forged_id) >= len(endpoints)
    assert _count("SELECT count(*) FROM lgdp.api_requests WHERE status = 403 AND code = 'council_mismatch'") >= 2 * (len(endpoints) - 2)


def test_bad_input_is_refused_with_a_code_and_nothing_is_kept(server, tokens, ledger):
    client, tok, cur = server["client"], tokens["edinburgh"], ledger["current"]
    path = f"/v1/councils/{EDINBURGH}/returns/clas/periods/{cur}/submissions"
    before = _footprint()
    cases = [
        (dict(body=b"x" * (MAX_FILE_MB * 1_000_000 + 1), ctype="text/csv", key="too-large-0001"), 413, "body_too_large"),
        (dict(body=b"a,b\n1,2\n", ctype="application/pdf", key="wrong-type-0001"), 415, "unsupported_content_type"),
        (dict(body=b"a,b\n1,2\n", ctype=None, key="no-type-00001"), 415, "unsupported_content_type"),
        (dict(body=b'{"rows": [', ctype="application/json", key="malformed-0001"), 400, "malformed_json"),
        (dict(body=b'[1, 2]', ctype="application/json", key="shape-000001"), 422, "invalid_rows"),
        (dict(body=b'{"rows": [{"a": [1]}]}', ctype="application/json", key="shape-000002"), 422, "invalid_rows"),
        (dict(body=b'{"tables": {"nope": []}}', ctype="application/json", key="shape-000003"), 422, "invalid_rows"),
        (dict(body=b"a,b\n1,2\n", ctype="text/csv", key=None), 400, "idempotency_key_required"),
        (dict(body=b"a,b\n1,2\n", ctype="text/csv", key="short"), 400, "idempotency_key_required"),
        (dict(body=b"", ctype="text/csv", key="empty-body-0001"), 400, "empty_body"),
    ]
    for kw, status, code in cases:
        r = _call(client, "POST", path, tok, kw["body"], kw["ctype"], kw["key"])
        assert r.status_code == status, (code, r.text)
        assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    # a period that is not open, a return the council does not provide, a return that does not exist
    r = _call(client, "POST", f"/v1/councils/{EDINBURGH}/returns/clas/periods/2001-02/submissions", tok, b"a\n", "text/csv", "not-open-0001")
    assert r.status_code == 409 and r.json()["error"]["code"] == "period_not_open"
    assert set(r.json()["error"]["open_periods"]) == {cur, ledger["previous"], ledger["probe"]}
    r = _call(client, "POST", f"/v1/councils/{FIFE}/returns/clas/periods/{cur}/submissions", tokens["fife"], b"a\n", "text/csv", "not-provided-01")
    assert r.status_code == 403 and r.json()["error"]["code"] == "return_not_provided"
    r = _call(client, "GET", f"/v1/councils/{FIFE}/returns/clas/periods/{cur}/templates", tokens["fife"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "return_not_provided"
    r = _call(client, "POST", f"/v1/councils/{EDINBURGH}/returns/no_such_return/periods/{cur}/submissions", tok, b"a\n", "text/csv", "unknown-ret-01")
    assert r.status_code == 404 and r.json()["error"]["code"] == "return_unknown"
    r = _call(client, "GET", f"/v1/councils/{EDINBURGH}/submissions/not-a-uuid", tok)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert _footprint() == before


# ---- the pipeline: both routes, the same outcome (first: no council has a history yet) -------------------
def test_both_routes_give_the_same_outcome_through_the_real_collect_task(server, tokens, ledger, env, smtp, airflow_db):
    """Edinburgh's system submits through the API; Glasgow drops the same data in its folder. The
    real DAG (``dag.test``: collect tasks, trigger, feedback, emails) processes both; then each
    explains its queries, Edinburgh as JSON through the API, Glasgow with the filled-in workbook."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook
    from openpyxl import load_workbook

    from lgdp.collect.graph import folder_path

    cur, m365 = ledger["current"], env["m365"]
    faults = {"CLAS-Q001": 2}
    ed_data = _xlsx(EDINBURGH, cur, 30, faults, seed=5)
    gl_data = _as_council(ed_data, EDINBURGH, GLASGOW)  # the same rows, as Glasgow's
    r = _submit(server, tokens["edinburgh"], EDINBURGH, cur, ed_data, key="both-routes-0001")
    assert r.status_code == 202
    sid = r.json()["submission_id"]
    m365.put_file(f"{folder_path('clas', cur, GLASGOW)}/clas-return.xlsx", gl_data)
    tok = tokens["edinburgh"]
    outcome: dict[str, object] = {}

    # dag.test runs the councils' collect tasks one after another, each waiting in its trigger: so
    # each council acts on its own, as real councils do (one waiting for the other would never end)
    def edinburgh_explains_through_the_api() -> None:
        seen: list[tuple] = []  # every status read (state, version, counts, feedback_sent): for a failure message

        def decided() -> dict | bool:
            s = _status(server, tok, EDINBURGH, sid)
            seen.append((round(time.monotonic(), 2), s["state"], s.get("version"), s.get("feedback_sent")))
            return s["decided"] and s["feedback_sent"] and s

        try:
            status = _until(decided, timeout=600, what="the API submission decided")
            issues = _call(server["client"], "GET", f"/v1/councils/{EDINBURGH}/submissions/{sid}/issues", tok).json()
            outcome["status"], outcome["issues"] = status, issues
            # a council's system that read "decided" reads that version's issues
            assert (issues.get("version"), issues.get("state")) == (status["version"]["number"], status["state"]), issues
            ed_book = m365.drive_root / folder_path("clas", cur, EDINBURGH) / "_platform" / "feedback_v1.xlsx"
            outcome["ed_book"] = ed_book.read_bytes()
            queries = [i for i in issues["issues"] if i["severity"] == "query"]
            r = _call(server["client"], "POST", f"/v1/councils/{EDINBURGH}/submissions/{sid}/explanations", tok,
                      json.dumps({"explanations": [{"code": q["code"], "row": q["row"], "item": q["item"],
                                                    "explanation": "A second children's house opened in May."} for q in queries]}).encode(),
                      "application/json", "both-routes-explain-1")
            assert r.status_code == 202, r.text
            outcome["explain_id"] = r.json()["submission_id"]
        except BaseException as exc:  # noqa: BLE001 - reported by the test below, with what was seen
            try:
                picture = _ledger_picture(EDINBURGH, cur)
            except Exception as e:  # noqa: BLE001
                picture = [f"ledger not readable: {e!r}"]
            got = outcome.get("issues") or {}
            issues_seen = {k: got.get(k) for k in ("state", "version", "status", "total")} | {
                "issues": [(i.get("code"), i.get("severity"), i.get("row"), i.get("item")) for i in got.get("issues") or []]}
            outcome["error"] = AssertionError(
                f"{type(exc).__name__}: {exc}\nstatus reads (last 8): {seen[-8:]}\nstatus: {outcome.get('status')}\n"
                f"issues: {issues_seen}\nledger: {picture}")

    def glasgow_explains_in_the_workbook() -> None:
        try:
            gl_book = _until(lambda: (p := m365.drive_root / folder_path("clas", cur, GLASGOW) / "_platform" / "feedback_v1.xlsx").exists() and p,
                             timeout=600, what="Glasgow's feedback workbook")
            time.sleep(1)
            wb = load_workbook(io.BytesIO(gl_book.read_bytes()))
            ws = wb["Issues"]
            header = [c.value for c in ws[1]]
            sev = header.index("Severity")
            expl = next(i for i, h in enumerate(header) if str(h).startswith("Explanation"))
            for row in ws.iter_rows(min_row=2):
                if row[sev].value == "query":
                    row[expl].value = "A second children's house opened in May."
            buf = io.BytesIO()
            wb.save(buf)
            m365.put_file(f"{folder_path('clas', cur, GLASGOW)}/feedback_v1.xlsx", buf.getvalue())
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            outcome["error"] = exc

    KiotaRequestAdapterHook.cached_request_adapters.pop("msgraph_sharepoint", None)
    councils = [threading.Thread(target=f, daemon=True) for f in (edinburgh_explains_through_the_api, glasgow_explains_in_the_workbook)]
    for t in councils:
        t.start()
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    run = bag.dags["return_clas"].test(run_conf={"period": cur})
    for t in councils:
        t.join(30)
    assert "error" not in outcome, outcome.get("error")
    assert run.state == "success"

    # the same decision, issues (code, severity, row, item, message) and rows by both routes
    from lgdp.ledger.db import engine

    def version_issues(council_code: str) -> list[tuple]:
        with engine().connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT v.version, v.status::text, v.rows_loaded, i.code, i.severity, i.row_number, i.item, "
                "replace(i.message, :name, '<council>') FROM lgdp.submission_versions v "
                "JOIN lgdp.expected_submissions e ON e.id = v.submission_id JOIN lgdp.collection_periods p ON p.id = e.period_id "
                "LEFT JOIN lgdp.submission_issues i ON i.version_id = v.id "
                "WHERE e.council_code = :c AND p.period = :p ORDER BY v.version, i.row_number, i.code"),
                {"c": council_code, "p": cur, "name": council_code})]

    assert version_issues(EDINBURGH) == version_issues(GLASGOW)
    assert version_issues(EDINBURGH)[0][1] == "accepted"  # queries explained: accepted by both routes
    assert outcome["status"]["state"] == "queries" and outcome["status"]["version"]["queries"] == 2
    # the API's issues are the feedback workbook's rows, cell for cell
    wb = load_workbook(io.BytesIO(outcome["ed_book"]))
    ws = wb["Issues"]
    header = [c.value for c in ws[1]]
    rows = [dict(zip(header, [c.value for c in r])) for r in ws.iter_rows(min_row=2) if r[0].value is not None or r[3].value]
    api = outcome["issues"]["issues"]
    assert len(api) == len(rows) == outcome["issues"]["total"]
    for got, cell in zip(api, rows):
        assert (got["row"], got["code"], got["severity"], got["message"]) == (cell["Row"], cell["Rule code"], cell["Severity"], cell["Message"])
    # explanations via the API were applied like the workbook's, and each council was told the same
    explained = _status(server, tok, EDINBURGH, outcome["explain_id"])
    assert explained["state"] == "explanations_applied" and explained["explained"] == 2
    final = _status(server, tok, EDINBURGH, sid)
    assert final["state"] == "accepted" and final["feedback_sent"]
    ed = [s for s in (m["Subject"] for m in smtp.messages) if "Edinburgh" in s and ", version " in s]
    gl = [s for s in (m["Subject"] for m in smtp.messages) if "Glasgow" in s and ", version " in s]
    assert len(ed) == len(gl) >= 2  # the queries, then the acceptance: the same messages by both routes
    assert [s.replace("City of Edinburgh", "X") for s in ed] == [s.replace("Glasgow City", "X") for s in gl]


def test_a_file_saved_over_the_submission_does_not_change_what_the_api_reports_for_it(server, tokens, ledger, env, smtp):
    """The submission's status and issues are those of the version made from the file the API
    placed. A later file saved over the same SharePoint item (an officer editing it in SharePoint:
    the same item id, a new eTag) is a version of its own. The API used to answer with the newest
    version of the item, so a system that had read "decided" (queries) could then read the issues
    of that other version (none while it is processed) and explain nothing."""
    probe, tok, m365 = ledger["probe"], tokens["glasgow"], env["m365"]
    data = _xlsx(GLASGOW, probe, 10, {"CLAS-Q001": 1}, seed=11)
    r = _submit(server, tok, GLASGOW, probe, data, key="saved-over-0001")
    assert r.status_code == 202, r.text
    sid = r.json()["submission_id"]
    _placed(server, tok, GLASGOW, sid)
    collect_once(GLASGOW, probe)
    first = _status(server, tok, GLASGOW, sid)
    assert first["state"] == "queries" and first["decided"] and first["feedback_sent"] and first["version"]["number"] == 1
    issues_path = f"/v1/councils/{GLASGOW}/submissions/{sid}/issues"
    before = _call(server["client"], "GET", issues_path, tok).json()
    assert before["version"] == 1 and [i["severity"] for i in before["issues"]] == ["query"]
    # the same item saved over with other content: version 2 of the council's submission, rejected
    m365.put_file(f"{first['folder']}/{first['file']}", _xlsx(GLASGOW, probe, 12, {"bad_code": 1}, seed=12))
    collect_once(GLASGOW, probe)
    assert [(row[2], row[3]) for row in _ledger_picture(GLASGOW, probe) if row[0] == "version"] == [(1, "queries"), (2, "rejected")]
    after = _status(server, tok, GLASGOW, sid)
    assert after["state"] == "queries" and after["decided"] and after["feedback_sent"] and after["version"]["number"] == 1
    assert after["version"]["queries"] == 1 and after["version"]["errors"] == 0
    again = _call(server["client"], "GET", issues_path, tok).json()
    assert (again["version"], again["state"]) == (1, "queries") and again["issues"] == before["issues"]
    # explaining it now is refused (a later version stands), not taken for the other file's issues
    q = before["issues"][0]
    r = _call(server["client"], "POST", f"/v1/councils/{GLASGOW}/submissions/{sid}/explanations", tok,
              json.dumps({"explanations": [{"code": q["code"], "row": q["row"], "item": q["item"], "explanation": "x"}]}).encode(),
              "application/json", "saved-over-explain-1")
    assert r.status_code == 409 and r.json()["error"]["code"] == "version_superseded", r.text
    # the placed bytes saved again (a new eTag, as a retried placing would write them): still version 1
    m365.put_file(f"{first['folder']}/{first['file']}", data)
    collect_once(GLASGOW, probe)
    assert [row[2] for row in _ledger_picture(GLASGOW, probe) if row[0] == "version"] == [1, 2, 3]
    assert _count("SELECT count(*) FROM lgdp.submission_versions WHERE file_sha256 = :s", s=hashlib.sha256(data).hexdigest()) == 2
    last = _status(server, tok, GLASGOW, sid)
    assert (last["state"], last["version"]["number"]) == ("queries", 1)
    assert _call(server["client"], "GET", issues_path, tok).json()["issues"] == before["issues"]


def test_replay_gives_the_same_answer_and_no_second_version(server, tokens, ledger, env, smtp):
    prev = ledger["previous"]
    data = _xlsx(GLASGOW, prev, 12, seed=3)
    first = _submit(server, tokens["glasgow"], GLASGOW, prev, data, key="replay-key-0001")
    again = _submit(server, tokens["glasgow"], GLASGOW, prev, data, key="replay-key-0001")
    assert first.status_code == again.status_code == 202
    assert first.json()["submission_id"] == again.json()["submission_id"] and again.json()["replay"] is True
    other = _submit(server, tokens["glasgow"], GLASGOW, prev, _xlsx(GLASGOW, prev, 13, seed=3), key="replay-key-0001")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert other.json()["error"]["submission_id"] == first.json()["submission_id"]
    sid = first.json()["submission_id"]
    _placed(server, tokens["glasgow"], GLASGOW, sid)
    collect_once(GLASGOW, prev)
    again = _submit(server, tokens["glasgow"], GLASGOW, prev, data, key="replay-key-0001")  # after processing too
    assert again.json()["submission_id"] == sid
    collect_once(GLASGOW, prev)
    status = _status(server, tokens["glasgow"], GLASGOW, sid)
    assert status["state"] == "accepted" and status["decided"] and status["version"]["number"] == 1
    assert status["version"]["rows"] == 12 and status["feedback_sent"] is True
    assert _count("SELECT count(*) FROM lgdp.api_submissions WHERE idempotency_key = 'replay-key-0001'") == 1
    # the original bytes are archived, and they are what went into the folder
    assert _count("SELECT count(*) FROM lgdp.archived_files WHERE sha256 = :s", s=hashlib.sha256(data).hexdigest()) == 1
    placed = env["m365"].drive_root / status["folder"] / status["file"]
    assert placed.read_bytes() == data


def test_concurrent_submissions_for_one_council_are_each_kept_placed_and_processed(server, tokens, ledger, smtp):
    prev = ledger["previous"]
    # each with an error, so each is a version of its own (a file after an acceptance would be kept as late)
    files = [_xlsx(EDINBURGH, prev, 8 + n, {"bad_code": 1}, seed=20 + n) for n in range(6)]
    jobs = [(f, f"concurrent-{n:04d}") for n, f in enumerate(files)] + [(files[0], "concurrent-0000")] * 3

    def send(job):
        data, key = job
        return _submit(server, tokens["edinburgh"], EDINBURGH, prev, data, key=key)

    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(send, jobs))
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers if a.status_code != 202]
    ids = {a.json()["submission_id"] for a in answers}
    assert len(ids) == 6  # the three replays of the first answered with its id
    for sid in ids:
        _placed(server, tokens["edinburgh"], EDINBURGH, sid)
    collect_once(EDINBURGH, prev)
    states = [_status(server, tokens["edinburgh"], EDINBURGH, sid) for sid in ids]
    versions = sorted(s["version"]["number"] for s in states)
    assert versions == [1, 2, 3, 4, 5, 6]  # nothing lost: each a version, in the order they were placed
    assert all(s["state"] == "rejected" and s["decided"] and s["version"]["errors"] >= 1 for s in states)
    assert len({s["file"] for s in states}) == 6
    assert _count("SELECT count(DISTINCT original_sha256) FROM lgdp.api_submissions WHERE idempotency_key LIKE 'concurrent-%'") == 6


def test_json_rows_give_the_same_version_as_the_csv_dropped_in_the_folder(server, tokens, ledger, env, smtp, tmp_path):
    """JSON rows are the CSV a council would send: the same issues on the same rows (row 2 = index 0)."""
    import csv as csv_

    from lgdp.api.submissions import rows_to_file
    from lgdp.collect.graph import folder_path
    from lgdp.synth import write_sample

    prev, loaded, tok = ledger["previous"], ledger["loaded"], tokens["edinburgh"]
    path = tmp_path / "rows.csv"
    write_sample(loaded, EDINBURGH, prev, 15, "csv", path, 7, {"bad_code": 2})
    rows = list(csv_.DictReader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))
    body = json.dumps({"rows": rows}).encode()
    made, ext = rows_to_file(loaded, body)
    assert ext == "csv" and list(csv_.DictReader(io.StringIO(made.decode()))) == rows
    r = _submit(server, tok, EDINBURGH, prev, body, ctype="application/json", key="json-rows-000001")
    assert r.status_code == 202, r.text
    sid = r.json()["submission_id"]
    _placed(server, tok, EDINBURGH, sid)
    collect_once(EDINBURGH, prev)
    env["m365"].put_file(f"{folder_path('clas', prev, EDINBURGH)}/rows-by-hand.csv", path.read_bytes())
    collect_once(EDINBURGH, prev)
    status = _status(server, tok, EDINBURGH, sid)
    assert status["state"] == "superseded" or status["state"] == "rejected"
    api_issues = _call(server["client"], "GET", f"/v1/councils/{EDINBURGH}/submissions/{sid}/issues", tok).json()
    assert api_issues["total"] >= 2 and all(i["index"] == i["row"] - 2 for i in api_issues["issues"] if i["row"])
    from lgdp.ledger.db import engine

    with engine().connect() as conn:
        by_version = conn.execute(text(
            "SELECT v.version, array_agg(i.code || ':' || coalesce(i.row_number::text, '') || ':' || coalesce(i.item, '') ORDER BY i.id) "
            "FROM lgdp.submission_versions v JOIN lgdp.expected_submissions e ON e.id = v.submission_id "
            "JOIN lgdp.collection_periods p ON p.id = e.period_id JOIN lgdp.submission_issues i ON i.version_id = v.id "
            "WHERE e.council_code = :c AND p.period = :p GROUP BY v.version ORDER BY v.version DESC LIMIT 2"), {"c": EDINBURGH, "p": prev}).all()
    (hand_v, hand), (json_v, from_json) = by_version
    assert json_v == status["version"]["number"] and hand_v == json_v + 1
    assert from_json == hand
    assert [f"{i['code']}:{i['row'] or ''}:{i['item'] or ''}" for i in api_issues["issues"]] == sorted(from_json, key=from_json.index) or \
        sorted(f"{i['code']}:{i['row'] or ''}:{i['item'] or ''}" for i in api_issues["issues"]) == sorted(from_json)
    # the request body itself is archived byte for byte
    assert _count("SELECT count(*) FROM lgdp.archived_files WHERE sha256 = :s", s=hashlib.sha256(body).hexdigest()) == 1


def test_json_rows_of_a_return_of_several_tables_parse_like_its_zip(tmp_path):
    """The multi-table CLAS: {"tables": {...}} becomes the zip of one CSV per table the parser reads."""
    import csv as csv_
    import zipfile

    from lgdp.api.submissions import ApiError, rows_to_file
    from lgdp.parse import parse_submission
    from lgdp.specs.load import load_register
    from lgdp.synth import write_sample

    loaded = load_register(ROOT / "return_specs").get("clas")
    assert loaded.multi
    path = tmp_path / "clas.zip"
    write_sample(loaded, EDINBURGH, _period(), 20, "csv", path, 4, {})
    buf = io.BytesIO(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
        tables = {n.rsplit(".", 1)[0]: list(csv_.DictReader(io.StringIO(zf.read(n).decode("utf-8-sig")))) for n in zf.namelist()}
    made, ext = rows_to_file(loaded, json.dumps({"tables": tables}).encode())
    assert ext == "zip"
    a = parse_submission(loaded, "a.zip", buf.getvalue(), council_code=EDINBURGH)
    b = parse_submission(loaded, "b.zip", made, council_code=EDINBURGH)
    assert [(i.code, i.row, i.item) for i in a.issues] == [(i.code, i.row, i.item) for i in b.issues]
    assert {k: t.num_rows for k, t in a.tables.items()} == {k: t.num_rows for k, t in b.tables.items()}
    with pytest.raises(ApiError) as e:
        rows_to_file(loaded, b'{"rows": []}')
    assert e.value.code == "invalid_rows" and "children" in e.value.message


# ---- reading: periods, templates; limits, the log, tokens, the client --------------------------------
def test_periods_owed_and_templates(server, tokens, ledger):
    from lgdp.collect.template import template_files
    from lgdp.periods import period_from_label

    client, tok = server["client"], tokens["edinburgh"]
    r = _call(client, "GET", f"/v1/councils/{EDINBURGH}/periods", tok)
    assert r.status_code == 200
    periods = {p["period"]: p for p in r.json()["periods"]}
    assert set(periods) == {ledger["current"], ledger["previous"], ledger["probe"]}
    loaded = ledger["loaded"]
    p = period_from_label(loaded.spec.collection, ledger["current"])
    assert dt.datetime.fromisoformat(periods[ledger["current"]]["due_at"]) == p.due_at
    assert periods[ledger["current"]]["submit_url"].endswith(f"/periods/{ledger['current']}/submissions")
    r = _call(client, "GET", f"/v1/councils/{EDINBURGH}/returns/clas/periods/{ledger['current']}/templates", tok)
    names = [f["name"] for f in r.json()["files"]]
    want = template_files(loaded.for_period(ledger["current"]), ledger["current"], p.due_in_words())
    assert set(names) == set(want) and any(n.endswith(".xsd") for n in names)
    xsd = next(n for n in names if n.endswith(".xsd"))
    r = _call(client, "GET", f"/v1/councils/{EDINBURGH}/returns/clas/periods/{ledger['current']}/templates/{xsd}", tok)
    assert r.status_code == 200 and r.content == want[xsd] and r.headers["content-type"].startswith("application/xml")
    r = _call(client, "GET", f"/v1/councils/{EDINBURGH}/returns/clas/periods/{ledger['current']}/templates/nope.xlsx", tok)
    assert r.status_code == 404 and r.json()["error"]["code"] == "template_unknown"


def test_rate_limit_per_token_and_every_request_recorded(server, tokens):
    client = server["client"]
    answers = [_call(client, "GET", "/v1/me", tokens["slow"]).status_code for _ in range(5)]
    assert answers[:3] == [200, 200, 200] and answers[3:] == [429, 429]
    r = _call(client, "GET", "/v1/me", tokens["slow"])
    assert r.json()["error"]["code"] == "rate_limited" and r.headers["retry-after"] == "60"
    assert _call(client, "GET", "/v1/me", tokens["glasgow"]).status_code == 200  # per token, not for everyone
    slow = tokens["slow"].split("_")[1]
    from lgdp.ledger.db import engine

    with engine().connect() as conn:
        rows = conn.execute(text("SELECT council_code, method, path, status, code FROM lgdp.api_requests WHERE token_id = :t ORDER BY id"), {"t": slow}).all()
    assert [r.status for r in rows] == [200, 200, 200, 429, 429, 429]
    assert all(r.council_code == EDINBURGH and r.method == "GET" and r.path == f"{PREFIX}/v1/me" for r in rows)
    assert [r.code for r in rows][3:] == ["rate_limited"] * 3


def test_cli_issues_a_token_kept_only_as_a_hash_and_revokes_it(server, ledger, capsys):
    from lgdp.cli import main

    assert main(["api", "token", "issue", "--council", GLASGOW, "--name", "Finance system", "--days", "30"]) == 0
    token = capsys.readouterr().out.strip()
    _, token_id, secret = token.split("_", 2)  # the secret may itself hold "_"
    from lgdp.ledger.db import engine

    with engine().connect() as conn:
        dump = conn.execute(text("SELECT row_to_json(t)::text FROM lgdp.api_tokens t WHERE id = :i"), {"i": token_id}).scalar_one()
    assert secret not in dump and hashlib.sha256(secret.encode()).hexdigest() in dump
    assert _call(server["client"], "GET", "/v1/me", token).json()["council"] == GLASGOW
    assert main(["api", "token", "list", "--council", GLASGOW]) == 0
    assert token_id in capsys.readouterr().out
    assert main(["api", "token", "revoke", token_id]) == 0
    r = _call(server["client"], "GET", "/v1/me", token)
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_revoked"
    assert main(["api", "token", "issue", "--council", "S12999999"]) == 2


def test_example_client_submits_and_a_graph_outage_only_delays_placing(server, tokens, ledger, env, tmp_path, capsys):
    from lgdp.cli import main

    m365, prev = env["m365"], ledger["previous"]
    f = tmp_path / "clas-from-mosaic.xlsx"
    f.write_bytes(_xlsx(EDINBURGH, prev, 9, seed=40))
    m365.inject_fault(status=503, retry_after=1, count=40, path_contains="api-")
    args = ["api", "submit", str(f), "--url", server["base"] + PREFIX, "--token", tokens["edinburgh"],
            "--council", EDINBURGH, "--return", "clas", "--period", prev]
    assert main(args) == 0
    sid = json.loads(capsys.readouterr().out)["submission_id"]
    queued = _until(lambda: (s := _status(server, tokens["edinburgh"], EDINBURGH, sid))["place_attempts"] >= 1 and s, what="a failed placing")
    assert queued["state"] == "queued" and queued["place_error"]
    m365.clear_faults()
    _until(lambda: _status(server, tokens["edinburgh"], EDINBURGH, sid)["state"] != "queued", timeout=180, what="placed after the outage")
    assert main(args) == 0  # a rerun of the client: the same submission (its key comes from the content)
    assert json.loads(capsys.readouterr().out)["submission_id"] == sid


def test_schemathesis_finds_no_server_error(server, tokens):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    url = server["base"] + PREFIX
    headers = {"Authorization": f"Bearer {tokens['schemathesis']}"}
    schema = schemathesis.openapi.from_url(f"{url}/v1/openapi.json", headers=headers)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(base_url=url, headers=headers)
            if response.status_code >= 500:
                failures.append((case.method, case.formatted_path, response.status_code, response.text[:300]))

        check()
    assert len(list(schema.get_all_operations())) >= 8
    assert not failures, failures
