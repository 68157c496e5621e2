"""The FastAPI app of the pages and their JSON API (mounted by ``plugins/lgdp_ui.py`` at ``/returns``).

Every route, the OpenAPI schema included, depends on ``authenticate``: in Airflow, the auth
manager's ``get_user`` (a JWT in the ``Authorization`` header or Airflow's ``_token`` cookie). A
page asked for without a login redirects to the login page; the API and the calendar feeds answer
401. Pages are rendered on the server from the same functions that answer the API.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lgdp.ui import calendar as cal
from lgdp.ui import council as councils
from lgdp.ui import progress as prog
from lgdp.ui import register as reg
from lgdp.ui.render import matrix_cells, render

log = logging.getLogger(__name__)

ReturnId = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{1,39}$", description="Return id, e.g. clas")]
PeriodLabel = Annotated[str, Path(pattern=r"^\d{4}(-\d{2})?(-Q[1-4])?$", description="Period label, e.g. 2025-26, 2026-27-Q2, 2026-11")]
CouncilCode = Annotated[str, Path(pattern=r"^S12\d{6}$", description="Council GSS code, e.g. S12000036")]
ABBREV = {"expected": "·", "received": "R", "processing": "P", "rejected": "✗", "queries": "?", "accepted": "✓", "not_received": "–"}
NOT_FOUND = {404: {"description": "Not in the ledger"}}


def _session() -> Iterator[Any]:
    from lgdp.ledger.db import session

    with session() as s:
        yield s


Db = Annotated[Any, Depends(_session)]


def _today() -> dt.date:
    from lgdp.periods import LONDON

    return dt.datetime.now(LONDON).date()


def _is_page(request: Request) -> bool:
    path = request.scope.get("path", "")
    root = request.scope.get("root_path", "")
    rel = path[len(root):] if root and path.startswith(root) else path
    return not (rel.startswith("/api") or rel.endswith(".ics") or rel.endswith(".json"))


def create_app(
    authenticate: Callable[..., Any] | None,
    *,
    login_url: Callable[[str], str] | None = None,
    task_url: Callable[[str, str, str], str | None] | None = None,
    session_dependency: Callable[..., Any] = _session,
) -> FastAPI:
    """The app; ``authenticate`` is a FastAPI dependency that raises 401/403 for an anonymous caller."""
    app = FastAPI(
        title="LGDP returns: register, calendar, progress, councils",
        version="1",
        description=(
            "What the platform collects, when, and how far each council has got, read from the ledger. "
            "Authenticate with an Airflow JWT (Authorization: Bearer, from POST /auth/token) or Airflow's session cookie."
        ),
        openapi_url=None,  # served below, behind the login like everything else
        docs_url=None,
        redoc_url=None,
    )
    deps = [Depends(authenticate)] if authenticate is not None else []
    if session_dependency is not _session:
        app.dependency_overrides[_session] = session_dependency

    @app.exception_handler(StarletteHTTPException)
    async def _auth_redirect(request: Request, exc: StarletteHTTPException):  # noqa: ANN202
        if exc.status_code in (401, 403) and _is_page(request) and login_url is not None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(login_url(target), status_code=303)
        if _is_page(request) and exc.status_code == 404:
            html = render("error.html", prefix=request.scope.get("root_path", ""), title="Not found", message=str(exc.detail))
            return HTMLResponse(html, status_code=404)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    api = APIRouter(prefix="/api", dependencies=deps, tags=["api"])
    pages = APIRouter(dependencies=deps, tags=["pages"])

    def page(request: Request, template: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(render(template, prefix=request.scope.get("root_path", ""), **context))

    def _task_url(return_id: str, period: str, council: str) -> str | None:
        if task_url is None:
            return None
        try:
            return task_url(return_id, period, council)
        except Exception:  # noqa: BLE001 - a link we cannot work out is left out, the page still shows
            log.warning("could not find the collect task of %s %s %s", return_id, period, council, exc_info=True)
            return None

    # ---- JSON API ---------------------------------------------------------------------------
    @api.get("/register", summary="Every registered return, optionally filtered")
    def api_register(
        db: Db,
        q: Annotated[str | None, Query(max_length=200, description="Words to look for")] = None,
        status: Annotated[str | None, Query(pattern="^(approved|proposed|retired)$")] = None,
        frequency: Annotated[str | None, Query(pattern="^(annual|quarterly|monthly)$")] = None,
    ) -> list[dict[str, Any]]:
        return [r.as_json() for r in reg.register(db, q, status, frequency, _today())]

    @api.get("/register/{return_id}", summary="One return: items, rules, distribution, shared items", responses=NOT_FOUND)
    def api_return(return_id: ReturnId, db: Db) -> dict[str, Any]:
        detail = reg.return_detail(db, return_id)
        if detail is None:
            raise HTTPException(404, f"no return {return_id!r} in the register")
        return detail

    @api.get("/calendar", summary="Windows, due dates, load per council, peak months and clashes")
    def api_calendar(
        db: Db,
        months: Annotated[int, Query(ge=1, le=24)] = 12,
        clash_threshold: Annotated[int, Query(ge=1, le=50)] = cal.DEFAULT_CLASH_THRESHOLD,
    ) -> dict[str, Any]:
        return cal.calendar(db, _today(), months, clash_threshold)

    @api.get("/progress", summary="Open periods × councils by ledger status")
    def api_progress(db: Db, return_id: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{1,39}$")] = None) -> dict[str, Any]:
        return prog.progress(db, return_id=return_id).as_json()

    @api.get("/submissions/{return_id}/{period}/{council}", summary="One council's submission for one period", responses=NOT_FOUND)
    def api_submission(return_id: ReturnId, period: PeriodLabel, council: CouncilCode, db: Db) -> dict[str, Any]:
        s = prog.submission(db, return_id, period, council)
        if s is None:
            raise HTTPException(404, f"no submission of {return_id} {period} by {council}")
        s["task_url"] = _task_url(return_id, period, council)
        return s

    @api.get("/councils", summary="The councils")
    def api_councils(db: Db) -> list[dict[str, str]]:
        return councils.council_list(db)

    @api.get("/councils/{code}", summary="One council: returns, statuses, latest issues, emails", responses=NOT_FOUND)
    def api_council(code: CouncilCode, db: Db) -> dict[str, Any]:
        c = councils.council(db, code)
        if c is None:
            raise HTTPException(404, f"no council {code}")
        return c

    # ---- pages ------------------------------------------------------------------------------
    @pages.get("/", include_in_schema=False)
    def index(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/progress", status_code=303)

    @pages.get("/register", response_class=HTMLResponse, summary="Register page")
    def register_page(
        request: Request,
        db: Db,
        q: Annotated[str | None, Query(max_length=200)] = None,
        status: Annotated[str | None, Query(pattern="^(approved|proposed|retired|)$")] = None,
        frequency: Annotated[str | None, Query(pattern="^(annual|quarterly|monthly|)$")] = None,
    ) -> HTMLResponse:
        rows = reg.register(db, q, status or None, frequency or None, _today())
        return page(request, "register.html", page="register", rows=rows, q=q, status=status, frequency=frequency)

    @pages.get("/register/{return_id}", response_class=HTMLResponse, summary="One return's page", responses=NOT_FOUND)
    def return_page(request: Request, return_id: ReturnId, db: Db) -> HTMLResponse:
        detail = reg.return_detail(db, return_id)
        if detail is None:
            raise HTTPException(404, f"There is no return {return_id!r} in the register.")
        return page(request, "return.html", page="register", r=detail)

    @pages.get("/calendar", response_class=HTMLResponse, summary="Calendar page")
    def calendar_page(
        request: Request, db: Db, clash_threshold: Annotated[int, Query(ge=1, le=50)] = cal.DEFAULT_CLASH_THRESHOLD
    ) -> HTMLResponse:
        return page(request, "calendar.html", page="calendar", c=cal.calendar(db, _today(), 12, clash_threshold))

    @pages.get("/calendar/{code}.ics", summary="iCalendar feed of one council's due dates", responses=NOT_FOUND)
    def calendar_feed(request: Request, code: CouncilCode, db: Db) -> Response:
        base = str(request.base_url).rstrip("/") + request.scope.get("root_path", "")
        body = cal.ics_feed(db, code, _today(), 12, base)
        if body is None:
            raise HTTPException(404, f"no council {code}")
        return Response(body, media_type="text/calendar; charset=utf-8", headers={"Content-Disposition": f'inline; filename="{code}.ics"'})

    @pages.get("/progress", response_class=HTMLResponse, summary="Progress page")
    def progress_page(
        request: Request, db: Db, return_id: Annotated[str | None, Query(pattern=r"^([a-z][a-z0-9_]{1,39})?$")] = None
    ) -> HTMLResponse:
        p = prog.progress(db, return_id=return_id or None)
        cells = matrix_cells(p, request.scope.get("root_path", ""), ABBREV)
        return page(request, "progress.html", page="progress", p=p, cells=cells, statuses=prog.STATUSES, return_id=return_id)

    @pages.get("/submissions/{return_id}/{period}/{council}", response_class=HTMLResponse, summary="Submission page", responses=NOT_FOUND)
    def submission_page(request: Request, return_id: ReturnId, period: PeriodLabel, council: CouncilCode, db: Db) -> HTMLResponse:
        s = prog.submission(db, return_id, period, council)
        if s is None:
            raise HTTPException(404, f"No submission of {return_id} {period} is expected from {council}.")
        return page(request, "submission.html", page="progress", s=s, task_url=_task_url(return_id, period, council))

    @pages.get("/councils", response_class=HTMLResponse, summary="Councils page")
    def councils_page(request: Request, db: Db) -> HTMLResponse:
        return page(request, "councils.html", page="councils", councils=councils.council_list(db), p=prog.progress(db))

    @pages.get("/councils/{code}", response_class=HTMLResponse, summary="One council's page", responses=NOT_FOUND)
    def council_page(request: Request, code: CouncilCode, db: Db) -> HTMLResponse:
        c = councils.council(db, code)
        if c is None:
            raise HTTPException(404, f"There is no council {code}.")
        return page(request, "council.html", page="councils", c=c)

    @pages.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    app.include_router(api)
    app.include_router(pages)
    return app
