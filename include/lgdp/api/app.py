"""The FastAPI app of the councils' submission API (mounted by ``plugins/lgdp_api.py``).

Every route, the OpenAPI schema included, needs a council system token
(``Authorization: Bearer lgdp_...``, issued by ``lgdp api token issue``); a route under
``/v1/councils/<code>/`` answers only the token's own council. An Airflow login is not a token
of this API: requesters and the platform team use the pages at ``/returns``. Every request, refused
ones included, is recorded in ``lgdp.api_requests`` (token, council, method, path, status, error
code, submission, client, duration; never a body). Errors are JSON
``{"error": {"code": ..., "message": ...}}`` with a stable code.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lgdp.api import submissions as subs
from lgdp.api.submissions import ApiError
from lgdp.api.tokens import Caller, TokenProblem, authenticate, token_id_of

log = logging.getLogger(__name__)

ReturnId = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{1,39}$", description="Return id, e.g. clas")]
PeriodLabel = Annotated[str, Path(pattern=r"^\d{4}(-\d{2})?(-Q[1-4])?$", description="Period label, e.g. 2025-26, 2026-27-Q2, 2026-11")]
CouncilCode = Annotated[str, Path(pattern=r"^S12\d{6}$", description="Your council's GSS code, e.g. S12000036")]
SubmissionId = Annotated[str, Path(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description="A submission id from a 202")]
TemplateName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,120}$", description="A template file name from the list")]
bearer = HTTPBearer(auto_error=False, description="A council system token: lgdp_<id>_<secret>")
ERRORS = {
    401: {"description": "No token, or one that is invalid, expired or revoked"},
    403: {"description": "Another council's resource, or a return the council does not provide"},
    429: {"description": "Rate limit of the token reached (Retry-After)"},
}
FILE_TYPES = [t for t in subs.CONTENT_TYPES if t != "application/json"]


POOL_SIZE = 8  # the ledger's default pool (2 + 3) is sized for tasks; the api-server serves many callers at once
_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()


def api_session() -> Any:
    """A ledger session from the API's own connection pool (requests, the request log)."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from lgdp.ledger.db import database_url

    url = database_url()
    with _ENGINES_LOCK:
        if url not in _ENGINES:
            _ENGINES[url] = create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_SIZE)
    return Session(_ENGINES[url], expire_on_commit=False)


def _session() -> Iterator[Any]:
    with api_session() as s:
        yield s


Db = Annotated[Any, Depends(_session)]


def _error(exc: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.as_json(), status_code=exc.status, headers=headers)


# ---- the placing of queued files (threads in the api-server process) ---------------------------
class Placer:
    """A thread with its own event loop that places queued submissions in councils' folders.

    Woken by each new submission, and every few seconds anyway; the queue is the ledger, so a
    restart resumes it and several api-server workers share it (``SKIP LOCKED``). After a failure
    (Graph or the ledger down) it waits longer each time, up to a minute.
    """

    def __init__(self, idle_seconds: float = 5.0) -> None:
        self.idle_seconds = idle_seconds
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        self.start()
        self._wake.set()

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lgdp-api-placer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        import asyncio

        asyncio.run(self._main())

    async def _main(self) -> None:
        import asyncio

        from lgdp.collect.graph import SharePointDrive

        drive = SharePointDrive()
        failures = 0
        while True:
            try:
                placed = await subs.place_queued(drive)
            except Exception:  # noqa: BLE001 - the ledger is down: try again later, never die
                log.warning("placing queued submissions failed; trying again", exc_info=True)
                placed = 0
            if placed:
                failures = 0
                continue
            failures = min(failures + 1, 4) if self._had_queue() else 0
            wait = min(60.0, self.idle_seconds * (2 ** failures)) if failures else self.idle_seconds
            await asyncio.get_running_loop().run_in_executor(None, self._wake.wait, wait)
            self._wake.clear()

    @staticmethod
    def _had_queue() -> bool:
        try:
            with api_session() as s:
                return subs.queued_count(s) > 0
        except Exception:  # noqa: BLE001
            return True


# ---- authentication --------------------------------------------------------------------------
def _caller(request: Request, db: Any, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    presented = credentials.credentials if credentials else None
    header = request.headers.get("authorization")
    if header and credentials is None:
        presented = "malformed"
    try:
        caller = authenticate(db, presented)
    except TokenProblem as p:
        request.state.token_id = _existing_token(db, token_id_of(presented))
        raise ApiError(401, p.code, p.message) from None
    request.state.token_id = caller.token_id
    request.state.council = caller.council_code
    try:
        _rate_limit(db, caller)
    finally:
        db.rollback()  # give the connection back while the body is read and the request handled
    return caller

def _existing_token(db: Any, token_id: str | None) -> str | None:
    from lgdp.ledger.models import ApiToken

    return token_id if token_id and db.get(ApiToken, token_id) is not None else None

def _rate_limit(db: Any, caller: Caller) -> None:
    from sqlalchemy import func, select

    from lgdp.ledger.models import ApiRequest

    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=60)
    used = db.execute(
        select(func.count()).select_from(ApiRequest).where(ApiRequest.token_id == caller.token_id, ApiRequest.at > since)
    ).scalar_one()
    if used >= caller.rate_per_minute:
        raise ApiError(429, "rate_limited", f"This token may make {caller.rate_per_minute} requests a minute; wait and try again.",
                       retry_after_seconds=60)

def any_caller(request: Request, db: Db, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Caller:
    return _caller(request, db, credentials)

def council_caller(
    request: Request, council: CouncilCode, db: Db,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    caller = _caller(request, db, credentials)
    if caller.council_code != council:
        raise ApiError(403, "council_mismatch", f"This token is for council {caller.council_code}; it cannot read or submit for {council}.")
    return caller

Anyone = Annotated[Caller, Depends(any_caller)]
Council = Annotated[Caller, Depends(council_caller)]

def _own_submission(db: Any, request: Request, caller: Caller, submission_id: str):
    from lgdp.ledger.models import ApiSubmission

    sub = db.get(ApiSubmission, submission_id)
    if sub is None or sub.council_code != caller.council_code:  # another council's: as if it did not exist
        raise ApiError(404, "submission_unknown", f"No submission {submission_id} of council {caller.council_code}.")
    request.state.submission_id = sub.id
    return sub



def create_app(*, placer: Placer | None = None) -> FastAPI:
    placer = placer or Placer()
    app = FastAPI(
        title="LGDP submission API for councils' systems",
        version="1",
        description=(
            "Submit a return from a council's case-management or finance system, then read back its status and "
            "issues, the periods owed and the templates. Authenticate with the council system token issued by the "
            "platform team (Authorization: Bearer lgdp_...). Every submission goes through the same pipeline as a "
            "file in the council's SharePoint folder. Errors: {\"error\": {\"code\", \"message\"}}."
        ),
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    # ---- every request recorded ----------------------------------------------------------------
    @app.middleware("http")
    async def record(request: Request, call_next):  # noqa: ANN202
        started = time.monotonic()
        placer.start()  # on the first request of the process: what a restart left queued is placed
        request.state.code = None
        request.state.token_id = None
        request.state.council = None
        request.state.submission_id = None
        try:
            response = await call_next(request)
        except Exception:  # noqa: BLE001 - logged with the request, answered as a 500 with a code
            log.exception("submission API request failed")
            response = JSONResponse({"error": {"code": "internal", "message": "Something went wrong on the platform; nothing you sent is lost if you had a 202. Try again later."}}, status_code=500)
        try:
            await run_in_threadpool(_log_request, request, response.status_code, int((time.monotonic() - started) * 1000))
        except Exception:  # noqa: BLE001 - the answer stands; the log line says the record failed
            log.warning("could not record an API request", exc_info=True)
        return response

    def _log_request(request: Request, status: int, ms: int) -> None:
        from lgdp.ledger.models import ApiRequest

        with api_session() as s, s.begin():
            s.add(ApiRequest(
                at=dt.datetime.now(dt.timezone.utc), token_id=request.state.token_id, council_code=request.state.council,
                method=request.method[:10], path=request.url.path[:2000], status=status, code=request.state.code,
                submission_id=request.state.submission_id,
                client=(request.client.host if request.client else None), duration_ms=ms,
            ))
            if request.state.council is not None:  # authenticated: the token was used now
                from sqlalchemy import update

                from lgdp.ledger.models import ApiToken

                s.execute(update(ApiToken).where(ApiToken.id == request.state.token_id).values(last_used_at=dt.datetime.now(dt.timezone.utc)))

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):  # noqa: ANN202
        request.state.code = exc.code
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 429:
            headers = {"Retry-After": str(exc.extra.get("retry_after_seconds", 60))}
        return _error(exc, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):  # noqa: ANN202
        request.state.code = "invalid_request"
        problems = [{"where": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()][:20]
        return _error(ApiError(422, "invalid_request", "The request does not fit this API: " + "; ".join(f"{p['where']}: {p['message']}" for p in problems), problems=problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):  # noqa: ANN202
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        request.state.code = code
        return _error(ApiError(exc.status_code, code, str(exc.detail)))

    # ---- routes -----------------------------------------------------------------------------------
    @app.get("/v1/openapi.json", include_in_schema=False)
    def openapi(caller: Anyone) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/v1/me", summary="The token's council, expiry and rate limit", responses=ERRORS)
    def me(caller: Anyone) -> dict[str, Any]:
        return {"token_id": caller.token_id, "council": caller.council_code, "expires_at": caller.expires_at.isoformat(),
                "rate_per_minute": caller.rate_per_minute}

    @app.get("/v1/councils/{council}/periods", summary="Open periods the council owes, with due dates and status", responses=ERRORS)
    def periods(council: CouncilCode, caller: Council, db: Db, request: Request) -> dict[str, Any]:
        root = request.scope.get("root_path", "")
        out = subs.open_periods(db, council)
        for p in out:
            base = f"{root}/v1/councils/{council}/returns/{p['return_id']}/periods/{p['period']}"
            p["submit_url"], p["templates_url"] = f"{base}/submissions", f"{base}/templates"
        return {"council": council, "periods": out}

    def _templates(db: Any, council: str, return_id: str, period: str) -> dict[str, bytes]:
        from lgdp.collect.template import template_files
        from lgdp.periods import period_from_label

        loaded = subs.load_return(return_id)
        subs.expected_for(db, loaded, period, council)
        p = period_from_label(loaded.spec.collection, period)
        return template_files(loaded.for_period(period), period, p.due_in_words())

    @app.get("/v1/councils/{council}/returns/{return_id}/periods/{period}/templates",
             summary="The templates of the return for the period (workbook, CSV headers, XSD and sample XML)", responses=ERRORS)
    def templates(council: CouncilCode, return_id: ReturnId, period: PeriodLabel, caller: Council, db: Db, request: Request) -> dict[str, Any]:
        files = _templates(db, council, return_id, period)
        root = request.scope.get("root_path", "")
        return {"return_id": return_id, "period": period, "files": [
            {"name": n, "bytes": len(b), "url": f"{root}/v1/councils/{council}/returns/{return_id}/periods/{period}/templates/{n}"}
            for n, b in files.items()]}

    @app.get("/v1/councils/{council}/returns/{return_id}/periods/{period}/templates/{name}",
             summary="One template file", responses={**ERRORS, 404: {"description": "No such template"}},
             response_class=Response)
    def template(council: CouncilCode, return_id: ReturnId, period: PeriodLabel, name: TemplateName, caller: Council, db: Db) -> Response:
        import mimetypes

        files = _templates(db, council, return_id, period)
        if name not in files:
            raise ApiError(404, "template_unknown", f"No template {name!r}; the list is at .../templates.")
        kind = "application/xml" if name.endswith((".xsd", ".xml")) else mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Response(files[name], media_type=kind, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.post(
        "/v1/councils/{council}/returns/{return_id}/periods/{period}/submissions",
        status_code=202,
        summary="Submit the return for the period: a file (xlsx, csv, zip of one CSV per table, xml) or JSON rows",
        responses={**ERRORS, 400: {"description": "Idempotency-Key missing, empty body or malformed JSON"},
                   409: {"description": "Period not open, or the idempotency key used for other content"},
                   413: {"description": "Body over the size limit"}, 415: {"description": "Content type not accepted"},
                   422: {"description": "JSON rows not in the expected shape"}},
        openapi_extra={"requestBody": {"required": True, "content": {
            **{t: {"schema": {"type": "string", "format": "binary"}} for t in FILE_TYPES},
            "application/json": {"schema": {"type": "object", "description":
                '{"rows": [{"item": value, ...}]} for a return of one table; {"tables": {"<table>": [rows]}} for several',
                "properties": {"rows": {"type": "array", "items": {"type": "object"}},
                               "tables": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "object"}}}}}},
        }}},
    )
    async def submit(
        council: CouncilCode, return_id: ReturnId, period: PeriodLabel, request: Request, caller: Council,
        idempotency_key: Annotated[str | None, Header(description="New for each submission, the same on a retry")] = None,
        x_filename: Annotated[str | None, Header(description="The file's name in your system (optional)", max_length=200)] = None,
    ) -> JSONResponse:
        key = subs.check_key(idempotency_key)
        kind = subs.media_type(request.headers.get("content-type"))
        body = await _read_body(request)
        received = await run_in_threadpool(_receive, caller, council, return_id, period, body, kind, x_filename, key)
        return _accepted(request, council, received)

    def _receive(caller: Caller, council: str, return_id: str, period: str, body: bytes, kind: str, name: str | None, key: str):
        loaded = subs.load_return(return_id)
        with api_session() as s, s.begin():
            received = subs.receive(s, token_id=caller.token_id, council=council, loaded=loaded, period=period,
                                    body=body, content_type=kind, filename=name, key=key)
        placer.wake()
        return received

    def _accepted(request: Request, council: str, received: subs.Received) -> JSONResponse:
        sub = received.submission
        request.state.submission_id = sub.id
        root = request.scope.get("root_path", "")
        status_url = f"{root}/v1/councils/{council}/submissions/{sub.id}"
        body = {"submission_id": sub.id, "kind": sub.kind, "state": "queued" if not received.replay else sub.status,
                "replay": received.replay, "status_url": status_url, "issues_url": f"{status_url}/issues"}
        return JSONResponse(body, status_code=202, headers={"Location": status_url})

    async def _read_body(request: Request) -> bytes:
        limit = subs.max_body_bytes()
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, "body_too_large", f"The body is over the limit of {limit} bytes; nothing was kept.", limit=limit)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "body_too_large", f"The body is over the limit of {limit} bytes; nothing was kept.", limit=limit)
            chunks.append(chunk)
        return b"".join(chunks)

    @app.get("/v1/councils/{council}/submissions/{submission_id}", summary="Where a submission stands", responses=ERRORS)
    def status(council: CouncilCode, submission_id: SubmissionId, caller: Council, db: Db, request: Request) -> dict[str, Any]:
        return subs.status_json(db, _own_submission(db, request, caller, submission_id))

    @app.get("/v1/councils/{council}/submissions/{submission_id}/issues",
             summary="The issues of the submission's version, as in its feedback workbook", responses=ERRORS)
    def issues(
        council: CouncilCode, submission_id: SubmissionId, caller: Council, db: Db, request: Request,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> dict[str, Any]:
        return subs.issues_json(db, _own_submission(db, request, caller, submission_id), offset, limit)

    @app.post(
        "/v1/councils/{council}/submissions/{submission_id}/explanations",
        status_code=202,
        summary="Explain the queries of a submission (the feedback workbook's Explanation column, as JSON)",
        responses={**ERRORS, 409: {"description": "Not decided, superseded, or the key used for other content"},
                   422: {"description": "Not in the expected shape, or matching no query"}},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["explanations"],
            "properties": {"explanations": {"type": "array", "items": {"type": "object", "required": ["code", "explanation"],
                "properties": {"code": {"type": "string"}, "row": {"type": ["integer", "null"]}, "item": {"type": ["string", "null"]},
                               "explanation": {"type": "string"}}}}}}}}}},
    )
    async def explain(
        council: CouncilCode, submission_id: SubmissionId, request: Request, caller: Council,
        idempotency_key: Annotated[str | None, Header(description="New for each set of explanations, the same on a retry")] = None,
    ) -> JSONResponse:
        key = subs.check_key(idempotency_key)
        if subs.media_type(request.headers.get("content-type")) != "application/json":
            raise ApiError(415, "unsupported_content_type", "Send explanations as application/json.")
        body = await _read_body(request)
        received = await run_in_threadpool(_explain, request, caller, council, submission_id, body, key)
        return _accepted(request, council, received)

    def _explain(request: Request, caller: Caller, council: str, submission_id: str, body: bytes, key: str):
        with api_session() as s, s.begin():
            sub = _own_submission(s, request, caller, submission_id)
            received = subs.receive_explanations(s, token_id=caller.token_id, council=council, sub=sub, body=body, key=key)
        placer.wake()
        return received

    return app
