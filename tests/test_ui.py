"""The platform team's pages in Airflow: a real ``airflow api-server`` with this project's plugins
folder, a real ledger filled through the real pipeline, Airflow's simple auth manager, and a real
headless Chromium (Debian's ``chromium``, driven by Playwright) for the pages.

One api-server serves the whole module. Checked: anonymous requests get 401 (API, feeds, schema) or
a redirect to Airflow's login (pages), never data; every API endpoint answers from the ledger;
schemathesis finds no 5xx in the OpenAPI schema; after logging in, every page shows what the
ledger holds (a rejected council's matrix cell says rejected and links to its issues), the pages
are in Airflow's nav, no page logs a browser console error; screenshots go to ``tests/output/ui/``.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lgdp import demo_seed

from test_ui_data import ABERDEEN, EDINBURGH, FIFE, GLASGOW, HIGHLAND, PLAN, open_label

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "tests" / "output" / "ui"
CHROMIUM = os.environ.get("LGDP_CHROMIUM", "/usr/bin/chromium")
PREFIX = "/returns"
TA = "temporary_accommodation_monthly"
pytestmark = [pytest.mark.airflow, pytest.mark.timeout(900)]


def _get(url: str, token: str | None = None, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, method=method, data=body, headers=dict(headers or {}))
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - our own local server
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):  # noqa: ANN002, ANN003
        return None


@pytest.fixture(scope="module")
def ledger(ledger_url):
    """A ledger with one open period of the monthly return played through the pipeline."""
    from sqlalchemy import text

    from lgdp.ledger.db import engine, session
    from lgdp.ledger.models import Base
    from lgdp.ledger.register import sync_register
    from lgdp.specs.load import load_register

    with engine().begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(f"lgdp.{t.name}" for t in Base.metadata.sorted_tables) + " RESTART IDENTITY CASCADE"))
    reg = load_register()
    with session() as s, s.begin():
        sync_register(s, reg.specs, reg.reference.councils)
    ta = reg.get(TA)
    period = open_label(ta)
    statuses = demo_seed.play(ta, period, PLAN)
    return {"reg": reg, "period": period, "statuses": statuses}


@pytest.fixture(scope="module")
def server(airflow_db, ledger, tmp_path_factory):
    """``airflow api-server`` on a free port with the project's plugins; yields (base url, admin password)."""
    from fixtures_apiserver import api_server

    with api_server(tmp_path_factory.mktemp("api-server")) as srv:
        yield srv.base, srv.password


@pytest.fixture(scope="module")
def token(server) -> str:
    base, password = server
    status, _, body = _get(
        f"{base}/auth/token", method="POST", body=json.dumps({"username": "admin", "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status in (200, 201), body
    return json.loads(body)["access_token"]


ENDPOINTS = [
    "/api/register",
    "/api/register/clas",
    "/api/calendar",
    "/api/progress",
    f"/api/councils",
    f"/api/councils/{EDINBURGH}",
    f"/calendar/{EDINBURGH}.ics",
    "/openapi.json",
]
PAGES = ["/register", "/register/clas", "/calendar", "/progress", "/councils", f"/councils/{EDINBURGH}"]


def test_anonymous_gets_401_or_the_login_page_never_data(server, ledger):
    base, _ = server
    period = ledger["period"]
    for path in [*ENDPOINTS, f"/api/submissions/{TA}/{period}/{EDINBURGH}"]:
        status, _, body = _get(base + PREFIX + path)
        assert status == 401, (path, status)
        assert b"Edinburgh" not in body and b"rejected" not in body
    opener = urllib.request.build_opener(_NoRedirect)
    for path in [*PAGES, f"/submissions/{TA}/{period}/{EDINBURGH}"]:
        try:
            opener.open(base + PREFIX + path, timeout=60)
            pytest.fail(f"{path} answered an anonymous request")
        except urllib.error.HTTPError as e:
            assert e.code in (302, 303, 307), (path, e.code)
            assert "/auth/login" in e.headers["Location"] and "next=" in e.headers["Location"]
    # a forged token is no better than none
    status, _, _ = _get(base + PREFIX + "/api/progress", token="not-a-jwt")
    assert status in (401, 403)


def test_every_endpoint_answers_from_the_ledger(server, token, ledger):
    from icalendar import Calendar

    from lgdp.ledger.db import session
    from lgdp.ledger.register import period_status

    base, _ = server
    period = ledger["period"]
    got = {}
    for path in ENDPOINTS:
        status, headers, body = _get(base + PREFIX + path, token)
        assert status == 200, (path, status, body[:300])
        got[path] = body
    register = json.loads(got["/api/register"])
    assert {r["id"] for r in register} == {s.id for s in ledger["reg"].specs}
    clas = json.loads(got["/api/register/clas"])
    assert [r["code"] for r in clas["rules"]] == [r.code for r in ledger["reg"].get("clas").spec.rules]
    progress = json.loads(got["/api/progress"])
    row = next(r for r in progress["periods"] if r["return_id"] == TA and r["period"] == period)
    with session() as s:
        assert row["statuses"] == period_status(s, TA, period)
    assert row["statuses"][EDINBURGH] == "rejected" and row["statuses"][HIGHLAND] == "expected"
    cal = json.loads(got["/api/calendar"])
    assert len(cal["months"]) == 12 and cal["councils"]
    assert {c["code"] for c in json.loads(got["/api/councils"])} >= set(PLAN)
    council = json.loads(got[f"/api/councils/{EDINBURGH}"])
    assert any(s["return_id"] == TA and s["status"] == "rejected" for s in council["submissions"])
    assert Calendar.from_ical(got[f"/calendar/{EDINBURGH}.ics"]).walk("VEVENT")
    status, _, body = _get(f"{base}{PREFIX}/api/submissions/{TA}/{period}/{EDINBURGH}", token)
    sub = json.loads(body)
    assert status == 200 and sub["status"] == "rejected" and sub["issue_counts"]["error"] >= 1
    for path in ("/api/register/no_such_return", f"/api/councils/S12999999", f"/api/submissions/{TA}/1999-01/{EDINBURGH}"):
        assert _get(base + PREFIX + path, token)[0] == 404, path
    assert _get(base + PREFIX + "/api/councils/not-a-code", token)[0] == 422


def test_schemathesis_finds_no_server_error(server, token):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    base, _ = server
    schema = schemathesis.openapi.from_url(f"{base}{PREFIX}/openapi.json", headers={"Authorization": f"Bearer {token}"})
    failures = []
    for op in schema.get_all_operations():
        operation = op.ok()

        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def run(case):
            response = case.call(base_url=f"{base}{PREFIX}", headers={"Authorization": f"Bearer {token}"})
            if response.status_code >= 500:
                failures.append((case.method, case.formatted_path, case.query, response.status_code))

        run()
    assert len(list(schema.get_all_operations())) >= 10
    assert not failures, failures


# ---- the pages in a real browser --------------------------------------------------------------


@pytest.fixture(scope="module")
def browser_page(server):
    """A logged-in Chromium page (Airflow's login form); console errors collected for every page."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make install` (Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    base, password = server
    shutil.rmtree(OUTPUT, ignore_errors=True)
    OUTPUT.mkdir(parents=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
        # An anonymous visit to a page lands on Airflow's login form, which then brings us back.
        page.goto(f"{base}{PREFIX}/progress")
        login(page, password)
        yield base, page, errors
        context.close()
        browser.close()


def login(page, password: str, attempts: int = 3) -> None:
    """Fill Airflow's login form until it lets us through (on a loaded machine the form may still
    be starting when first filled, and the first values are lost)."""
    for _ in range(attempts):
        page.wait_for_selector('input[name="username"]')
        page.fill('input[name="username"]', "admin")
        page.fill('input[name="password"]', password)
        page.locator('button[type="submit"]').click()
        try:
            page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)
            page.wait_for_load_state("load")
            return
        except Exception:  # noqa: BLE001 - still on the login page: fill it again
            continue
    pytest.fail("could not log into Airflow with the admin password")


def _open(page, url: str, shot: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, (url, response and response.status)
    page.screenshot(path=str(OUTPUT / f"{shot}.png"), full_page=True)


def test_progress_page_shows_the_ledger_and_links_a_rejected_council_to_its_issues(browser_page, ledger):
    base, page, errors = browser_page
    period = ledger["period"]
    if "/progress" not in page.url:  # the login came back to Airflow's home page
        _open(page, f"{base}{PREFIX}/progress", "progress")
    else:
        page.screenshot(path=str(OUTPUT / "progress.png"), full_page=True)
    row = page.locator(f'tr[data-return="{TA}"][data-period="{period}"]')
    for code, status in ledger["statuses"].items():
        cell = row.locator(f'td[data-council="{code}"]')
        assert cell.get_attribute("data-status") == status, code
    rejected = row.locator(f'td[data-council="{EDINBURGH}"] a')
    assert "rejected" in rejected.get_attribute("title")
    rejected.click()
    page.wait_for_selector("#status")
    assert page.url.endswith(f"/submissions/{TA}/{period}/{EDINBURGH}#issues")
    assert page.locator("#status").inner_text() == "rejected"
    assert page.locator("#issue-rows tbody tr").count() >= 1
    assert page.locator("#issue-rows").inner_text().count("error") >= 1
    assert "feedback_v1.xlsx" in page.locator("#versions").inner_text()
    assert page.locator("#task-link").get_attribute("href").startswith(f"/dags/return_{TA}")
    page.screenshot(path=str(OUTPUT / "submission-rejected.png"), full_page=True)
    assert not errors, errors


def test_register_and_return_pages(browser_page, ledger):
    base, page, errors = browser_page
    _open(page, f"{base}{PREFIX}/register", "register")
    ids = page.locator("#register tbody tr").evaluate_all("rows => rows.map(r => r.dataset.return)")
    assert set(ids) == {s.id for s in ledger["reg"].specs}
    page.fill('input[name="q"]', "looked after")
    page.click('form.filters button[type="submit"]')
    page.wait_for_load_state("load")
    assert page.locator("#register tbody tr").evaluate_all("rows => rows.map(r => r.dataset.return)") == ["clas"]
    page.click('#register a[href$="/register/clas"]')
    page.wait_for_selector("#rules")
    clas = ledger["reg"].get("clas")
    text = page.locator("main").inner_text()
    for item in clas.items:
        assert item.wording in text
    for rule in clas.spec.rules:
        assert rule.code in page.locator("#rules").inner_text()
    assert page.locator("#shared tbody tr").count() >= 1
    assert page.locator("#distribution tbody tr").count() == len(clas.spec.distribution)
    page.screenshot(path=str(OUTPUT / "return-clas.png"), full_page=True)
    assert not errors, errors


def test_calendar_page(browser_page, ledger):
    base, page, errors = browser_page
    _open(page, f"{base}{PREFIX}/calendar?clash_threshold=1", "calendar")
    assert page.locator("#heat-councils tbody tr[data-council]").count() == 32
    assert page.locator(f'#heat-returns tr[data-return="{TA}"]').count() == 1
    assert "Peak month" in page.locator("#peaks").inner_text()
    assert page.locator("#clashes").inner_text().startswith("Clashes")
    href = page.locator(f'#heat-councils tr[data-council="{EDINBURGH}"] a[href$=".ics"]').get_attribute("href")
    feed = page.request.get(base + href)
    assert feed.status == 200 and feed.text().startswith("BEGIN:VCALENDAR")
    assert not errors, errors


def test_council_pages(browser_page, ledger):
    base, page, errors = browser_page
    _open(page, f"{base}{PREFIX}/councils", "councils")
    assert page.locator("#councils tbody tr").count() == 32
    page.click(f'#councils tr[data-council="{EDINBURGH}"] a')
    page.wait_for_selector("#submissions")
    row = page.locator(f'#submissions tr[data-return="{TA}"]')
    assert "rejected" in row.inner_text()
    assert page.locator("#latest-issues tbody tr").count() >= 1
    page.screenshot(path=str(OUTPUT / "council-edinburgh.png"), full_page=True)
    _open(page, f"{base}{PREFIX}/councils/{GLASGOW}", "council-glasgow")
    assert "accepted" in page.locator(f'#submissions tr[data-return="{TA}"]').inner_text()
    assert not errors, errors


def test_pages_are_in_airflows_nav(browser_page):
    """Plugins > Returns > Progress opens the progress page inside Airflow (an iframe, same login)."""
    base, page, errors = browser_page
    page.goto(f"{base}/")
    page.wait_for_load_state("networkidle")
    page.get_by_label("Plugins").first.click()
    page.get_by_role("menuitem", name="Returns").click()
    page.get_by_role("menuitem", name="Progress").wait_for()
    for name in ("Register", "Calendar", "Councils"):
        assert page.get_by_role("menuitem", name=name).count() == 1
    page.screenshot(path=str(OUTPUT / "airflow-plugins-menu.png"))
    page.get_by_role("menuitem", name="Progress").click()
    page.wait_for_url("**/plugin/lgdp-progress")
    page.frame_locator("iframe").locator("#matrix").wait_for()
    page.screenshot(path=str(OUTPUT / "airflow-nav-progress.png"), full_page=True)
    assert not errors, errors
