"""The README's demo command really starts Airflow, lists every return DAG and collects a file.

Runs ``lgdp dev demo --smoke`` (what ``make demo`` runs, plus a check and a clean stop) against
the test session's PostgreSQL: migrations, the Microsoft 365 stand-in and a persistent Azurite,
``airflow standalone``, health, DAG listing, then a period opened by the real scheduler, a file
dropped into the stand-in and collected through the real triggerer, the feedback workbook in the
council's ``_platform`` folder and the acknowledgement email in the stand-in's mail (Graph
sendMail), and a clean shutdown. The smaller tests check the demo's wiring without Airflow: the
connections it derives from the specs, that it never overrides one the user defined, and demo
pseudonym keys that stay stable between runs.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

DEMO_ENV_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_")
# Configuration the demo fills in unless the user set it: the test starts from none of it.
DEMO_ENV_NAMES = {
    "LGDP_MAIL_TRANSPORT", "LGDP_MAIL_FROM", "LGDP_MSGRAPH_MAIL_CONN_ID", "LGDP_SHAREPOINT_WEB_URL",
    "LGDP_DELIVERY_DIR",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _specs_with_an_open_window(tmp_path: Path) -> Path:
    """The real specs, with the monthly return's window widened so one is open on any date."""
    import re
    import shutil

    root = Path(__file__).resolve().parents[1] / "return_specs"
    specs = tmp_path / "specs"
    shutil.copytree(root, specs)
    monthly = specs / "temporary_accommodation_monthly.yaml"
    monthly.write_text(re.sub(r"closes_days_after_opening: \d+", "closes_days_after_opening: 75", monthly.read_text()))
    return specs


@pytest.mark.slow
@pytest.mark.airflow
def test_demo_starts_lists_every_return_and_stops(airflow_db, tmp_path):
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(DEMO_ENV_PREFIXES) and k not in DEMO_ENV_NAMES
    }
    state = tmp_path / "state"
    env["LGDP_SPECS_DIR"] = str(_specs_with_an_open_window(tmp_path))
    env["LGDP_STATE_DIR"] = str(state)
    env["LGDP_M365_PORT"] = str(_free_port())
    env["LGDP_AZURITE_PORT"] = str(_free_port())
    lgdp = str(Path(sys.executable).with_name("lgdp"))
    r = subprocess.run(
        [lgdp, "dev", "demo", "--smoke", "--quiet", "--port", str(_free_port()), "--timeout", "600"],
        env=env, capture_output=True, text=True, timeout=1800,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Airflow is up: http://localhost:" in r.stdout
    assert "simple_auth_manager_passwords.json.generated" in r.stdout
    assert "Microsoft 365 stand-in: http://127.0.0.1:" in r.stdout
    # where to look, printed at start
    m365 = f"http://127.0.0.1:{env['LGDP_M365_PORT']}"
    assert f"SharePoint folders (stand-in): {m365}/sites/lgdp/Shared%20Documents" in r.stdout
    assert f"mail sent: {m365}/_admin/mail" in r.stdout
    azurite = f"http://127.0.0.1:{env['LGDP_AZURITE_PORT']}/devstoreaccount1"
    assert f"requesters' blob storage (Azurite): {azurite}" in r.stdout
    assert f"local deliveries (LGDP_DELIVERY_DIR): {state / 'deliveries'}" in r.stdout
    # every wasb connection and pseudonym key the approved specs name, none hard-coded
    wasb, keys = _requester_connections(env["LGDP_SPECS_DIR"])
    assert wasb and keys
    assert f"Azurite (requesters' blob storage): {azurite} for {', '.join(wasb)}" in r.stdout
    key_file = state / "demo-pseudonym-keys.json"
    assert sorted(json.loads(key_file.read_text())["keys"]) == keys
    assert key_file.stat().st_mode & 0o077 == 0
    assert (state / "azurite").is_dir() and any((state / "azurite").iterdir()), "Azurite kept nothing on disk"
    from lgdp.specs.load import load_register

    assert f"smoke: all {len(load_register().approved())} return DAGs are listed" in r.stdout
    # through the real scheduler and triggerer: a period opened, a dropped file collected
    assert "was collected and accepted" in r.stdout
    # ... and answered as the council sees it: the workbook in _platform, the email in the mail
    assert "smoke: feedback workbook feedback_v1.xlsx is in" in r.stdout
    assert "smoke: acknowledgement email sent to" in r.stdout
    mail = list((state / "m365" / "mail").glob("*.json"))
    assert any("accepted (" in json.loads(f.read_text())["message"]["subject"] for f in mail)
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "the demo left processes running"


def _requester_connections(specs_dir: str) -> tuple[list[str], list[str]]:
    """What the specs name, read from the YAML here independently of lgdp.dev."""
    import yaml

    wasb, keys = set(), set()
    for f in Path(specs_dir).glob("*.yaml"):
        spec = yaml.safe_load(f.read_text())
        if spec.get("governance", {}).get("status") != "approved":
            continue
        for dist in spec.get("distribution", []):
            if dist["destination"]["type"] == "wasb":
                wasb.add(dist["destination"]["conn_id"])
            if dist.get("pseudonym_key_conn_id"):
                keys.add(dist["pseudonym_key_conn_id"])
    return sorted(wasb), sorted(keys)


def test_demo_leaves_user_connections_alone(monkeypatch, tmp_path):
    """Connections the user defined (environment or Airflow's table) win: no Azurite, no demo key, no mail."""
    from lgdp import dev
    from lgdp.specs.load import load_register

    monkeypatch.setenv("LGDP_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("LGDP_MAIL_TRANSPORT", raising=False)
    specs = load_register().approved()
    wasb, keys = dev.requester_connections(specs)
    assert (wasb, keys) == _requester_connections(str(Path(__file__).resolve().parents[1] / "return_specs"))
    env: dict[str, str] = {}
    assert dev.start_azurite(env, specs, {c.lower() for c in wasb + keys}) is None
    assert env == {}
    assert not (tmp_path / dev.PSEUDONYM_KEYS_FILE).exists()

    class StandIn:  # only what configure_mail reads from the stand-in
        base_url = "http://127.0.0.1:1"

    assert "configured msgraph_mail" in dev.configure_mail(env, StandIn(), {"msgraph_mail"})
    assert env == {"LGDP_MAIL_TRANSPORT": "msgraph"}
    monkeypatch.setenv("LGDP_MAIL_TRANSPORT", "smtp")
    env = {}
    assert "as configured" in dev.configure_mail(env, StandIn(), set())
    assert env == {}


def test_demo_pseudonym_keys_are_stable_and_private(tmp_path):
    from lgdp.dev import demo_pseudonym_keys
    from lgdp.distribute.pseudonymise import check_key

    first = demo_pseudonym_keys(tmp_path, ["lgdp_pseudonym_key_a"])
    again = demo_pseudonym_keys(tmp_path, ["lgdp_pseudonym_key_a", "lgdp_pseudonym_key_b"])
    assert again["lgdp_pseudonym_key_a"] == first["lgdp_pseudonym_key_a"]
    assert again["lgdp_pseudonym_key_a"] != again["lgdp_pseudonym_key_b"]
    assert all(k.startswith("lgdp-demo-key-") and check_key(k, c) for c, k in again.items())
    assert (tmp_path / "demo-pseudonym-keys.json").stat().st_mode & 0o077 == 0


def test_demo_azurite_keeps_deliveries_between_runs(tmp_path):
    """The demo's Azurite stores on disk: what a requester got is still there after a restart."""
    from azure.storage.blob import BlobServiceClient

    from lgdp.devservices.azurite import AzuriteBlob, AzuriteError

    port = _free_port()
    with AzuriteBlob(tmp_path / "azurite", port=port) as first:
        BlobServiceClient.from_connection_string(first.connection_string).create_container("clas").upload_blob(
            "returns/clas/2025-26/v1/manifest.json", b"{}"
        )
        with pytest.raises(AzuriteError, match="LGDP_AZURITE_PORT"):
            AzuriteBlob(tmp_path / "other", port=port).start()
    with AzuriteBlob(tmp_path / "azurite", port=port) as again:
        blob = BlobServiceClient.from_connection_string(again.connection_string).get_blob_client(
            "clas", "returns/clas/2025-26/v1/manifest.json"
        )
        assert blob.download_blob().readall() == b"{}"
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftovers == []


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.timeout(2400)
def test_living_demo_plays_councils_through_airflow_and_the_pages_show_them(ledger_url, tmp_path, monkeypatch):
    """``make demo``'s own command (``lgdp dev demo``, no smoke) on a fresh ledger and Airflow
    database: the demo's specs give every return a window open today, and its seed thread plays
    CLAS's councils (LGDP_DEMO_RETURNS=clas keeps the other DAGs paused, to spare the machine)
    into their folders in the Microsoft 365 stand-in; the real scheduler, triggerer and collect
    tasks decide them. Checked against the plan: accepted, rejected with errors, queries awaiting
    explanation, queries explained in the returned feedback workbook (then accepted, with the
    explanations recorded) and councils not yet received. Then, logged in with a real Chromium:
    Airflow's grid of ``return_clas`` and the Progress page, whose CLAS row shows each council's
    status from the ledger; screenshots in ``tests/output/demo/``. Ctrl-C (SIGTERM) stops it all."""
    import signal
    import shutil
    import time

    from sqlalchemy.engine import make_url

    from lgdp import demo_seed
    from lgdp.devdb import create_database
    from lgdp.specs.load import load_register

    monkeypatch.setenv("LGDP_DEMO_RETURNS", "clas")  # for demo_seed.plans/check here, as in the demo
    chromium = os.environ.get("LGDP_CHROMIUM", "/usr/bin/chromium")
    assert Path(chromium).exists(), f"{chromium} is missing: run `make install` (Debian's chromium package)"
    name = f"lgdp_test_living_demo_{os.getpid()}"
    db = create_database(ledger_url, name, fresh=True)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(DEMO_ENV_PREFIXES) and k not in DEMO_ENV_NAMES
    }
    env.pop("LGDP_SPECS_DIR", None)  # the demo writes its own copy of return_specs/
    env.pop("LGDP_DEMO_SEED", None)
    state = tmp_path / "state"
    port = _free_port()
    env.update({
        "LGDP_DATABASE_URL": db, "LGDP_STATE_DIR": str(state), "LGDP_DEMO_RETURNS": "clas",
        "LGDP_M365_PORT": str(_free_port()), "LGDP_AZURITE_PORT": str(_free_port()),
        "LGDP_POLL_INTERVAL_SECONDS": "5",
    })
    lgdp = str(Path(sys.executable).with_name("lgdp"))
    out_path = tmp_path / "demo.out"
    output = ROOT_OUTPUT / "demo"
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    with open(out_path, "w") as out:
        proc = subprocess.Popen(
            [lgdp, "dev", "demo", "--quiet", "--port", str(port), "--timeout", "900"],
            env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline and proc.poll() is None:
            text = out_path.read_text()
            if any(f"[lgdp demo] {m}" in text for m in ("demo councils", "demo submissions not all played", "demo submissions stopped")):
                break
            time.sleep(5)
        text = out_path.read_text()
        assert "[lgdp demo] demo submissions played" in text, text[-4000:]
        assert "[lgdp demo] demo councils decided: clas " in text, text[-4000:]
        assert "periods open today: " in text and "playing only clas" in text
        register = load_register(state / "demo-specs")
        # every approved return has a period whose window is open today in the demo's specs
        import datetime as dt

        from lgdp.periods import period_opening_at

        now = dt.datetime.now(dt.timezone.utc)
        for s in register.approved():
            p = period_opening_at(s.spec.collection, now)
            assert p.opens_at <= now < p.due_at, s.id
        ok, lines = demo_seed.check(db, register)
        assert ok, lines
        (loaded, period, plan), = demo_seed.plans(register)
        assert {demo_seed.ACCEPTED, demo_seed.REJECTED, demo_seed.QUERIES, demo_seed.EXPLAINED, demo_seed.NOTHING} == set(plan.values())
        from lgdp.ledger.db import session
        from lgdp.ledger.register import period_status

        with session(db) as s:
            statuses = period_status(s, loaded.id, period)

        # what the platform team sees, in a real browser
        from playwright.sync_api import sync_playwright

        password = json.loads((state / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        base = f"http://localhost:{port}"
        errors: list[str] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{base}/returns/progress")
            from test_ui import login

            login(page, password)
            page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
            if "/returns/progress" not in page.url:
                page.goto(f"{base}/returns/progress")
            row = page.locator(f'tr[data-return="{loaded.id}"][data-period="{period}"]')
            row.wait_for()
            for code, status in statuses.items():
                assert row.locator(f'td[data-council="{code}"]').get_attribute("data-status") == status, code
            page.screenshot(path=str(output / "progress.png"), full_page=True)
            progress_errors = list(errors)
            # Airflow's own grid of the return: one run, its collect task mapped over the councils
            page.goto(f"{base}/dags/{loaded.dag_id}")
            page.wait_for_load_state("networkidle")
            page.get_by_text("collect").first.wait_for()
            page.screenshot(path=str(output / "airflow-grid-return_clas.png"), full_page=True)
            # ... and its collect task's mapped instances, one per council, labelled by name
            from sqlalchemy import create_engine, text as sql

            eng = create_engine(db)
            with eng.connect() as conn:
                runs = conn.execute(sql("SELECT run_id FROM dag_run WHERE dag_id = :d"), {"d": loaded.dag_id}).scalars().all()
            assert len(runs) == 1, runs  # the period open today got one run, not one from the scheduler and one from the seed
            run_id = runs[0]
            eng.dispose()
            page.goto(f"{base}/dags/{loaded.dag_id}/runs/{run_id}/tasks/collect/mapped")
            page.get_by_text(loaded.providers[0].name, exact=True).first.wait_for()
            page.screenshot(path=str(output / "airflow-collect-mapped-by-council.png"), full_page=True)
            browser.close()
        assert not progress_errors, progress_errors
        # and each council got its outcome by email (Graph sendMail to the stand-in)
        outcomes = sum(plan[c] != demo_seed.NOTHING for c in plan)
        wanted = {
            "accepted (": sum(v == "accepted" for v in statuses.values()),
            "Not accepted: errors to fix (": sum(v == "rejected" for v in statuses.values()),
            "Queries to explain (": sum(o in (demo_seed.QUERIES, demo_seed.EXPLAINED) for o in plan.values()),
        }
        deadline = time.monotonic() + 120
        while True:
            mail = [json.loads(f.read_text())["message"]["subject"] for f in (state / "m365" / "mail").glob("*.json")]
            got = {k: sum(k in m for m in mail) for k in wanted}
            if got == wanted or time.monotonic() > deadline:
                break
            time.sleep(5)
        assert got == wanted and sum(wanted.values()) >= outcomes, (got, wanted)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(180)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        from sqlalchemy import create_engine, text as sql

        eng = create_engine(make_url(ledger_url), isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        eng.dispose()
    assert proc.returncode == 0, out_path.read_text()[-3000:]
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "the demo left processes running"


ROOT_OUTPUT = Path(__file__).resolve().parent / "output"
