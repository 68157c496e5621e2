"""A local stand-in for the parts of Microsoft 365 the platform uses: SharePoint drives and mail.

Test and demo infrastructure only; production code never imports it. It speaks real Microsoft
Graph shapes over real HTTP so that Airflow's azure provider (``KiotaRequestAdapterHook``) and
:mod:`lgdp.collect.graph` run unpatched against it:

- the Graph API (``/v1.0/...``) over plain HTTP on 127.0.0.1 (kiota allows http only on
  localhost), every call checked for a Bearer token this stand-in issued;
- a token endpoint (``POST /{tenant}/oauth2/v2.0/token`` and the OpenID configuration) over
  HTTPS on a second port, with a self-signed certificate generated at start with
  ``cryptography`` (azure-identity refuses an http authority);
- drives persisted as plain folders, ``<state>/drives/<drive id>/<path>``, so a person running
  the demo can drop a file in by hand and the stand-in serves it. Item ids are derived from the
  path (stable across restarts), eTag/cTag from the content and mtime, ``lastModifiedBy`` from an
  optional sidecar in ``<state>/meta/`` (else "Demo user");
- upload sessions for large files (``createUploadSession``, then ``PUT`` byte ranges to a
  pre-authenticated ``/_upload/{session}`` URL), kept in ``<state>/uploads/`` until complete;
- ``sendMail`` stores each message as JSON in ``<state>/mail/``;
- ``/_admin/...``: fault injection (429/503 with Retry-After, slow responses), the request log
  and the stored mail, for tests.

``M365StandIn`` runs both servers in a background thread (tests, ``lgdp dev m365``). See
``docs/m365-standin.md``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import mimetypes
import os
import re
import secrets
import shutil
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import Body, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

DEFAULT_DRIVE_ID = "lgdp-demo-drive"
DEFAULT_TENANT_ID = "lgdp-demo-tenant"
DEMO_CLIENT_ID = "lgdp-demo-client-id"
DEMO_CLIENT_SECRET = "fake-secret-not-a-real-credential"
# Microsoft documents 4 MB as the limit of a simple upload (PUT .../content) for the platform's
# purposes; bigger files need an upload session (createUploadSession).
SIMPLE_UPLOAD_LIMIT = 4 * 1024 * 1024
# Upload sessions (driveItem: createUploadSession): every fragment but the last must be a multiple
# of 320 KiB, no request may carry 60 MiB or more, and each fragment extends the session's life.
UPLOAD_FRAGMENT_UNIT = 320 * 1024
UPLOAD_FRAGMENT_MAX = 60 * 1024 * 1024
UPLOAD_SESSION_SECONDS = 15 * 60
_SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
TOKEN_LIFETIME_SECONDS = 3599
SITE_PREFIX = "sites/lgdp/Shared%20Documents"
_DRIVE_ID_RE = re.compile(r"^[A-Za-z0-9!_.\-]{1,128}$")
_MAX_LOG = 20_000


@dataclass
class UploadSession:
    """One upload session: where the file goes and how many bytes have arrived (in order)."""

    id: str
    drive_id: str
    rel: str
    behaviour: str  # conflictBehavior: fail (Graph's default), replace or rename
    expires: float
    total: int | None = None  # from fileSize or the first Content-Range
    received: int = 0
    app_id: str | None = None


class PathRefused(ValueError):
    """A path that would leave the drive's folder (``..``, backslashes, NUL, symlinks out)."""


class NotFound(LookupError):
    pass


@dataclass
class Fault:
    """One injected fault: the next ``count`` matching requests get it."""

    status: int | None = None
    retry_after: int | str | None = None
    count: int = 1
    path_contains: str = ""
    method: str | None = None
    delay_seconds: float = 0.0
    app: str = "graph"  # "graph" (the API and downloads) or "token" (the identity endpoint)
    id: int = 0

    def matches(self, app: str, method: str, path: str) -> bool:
        return (
            self.count > 0
            and self.app == app
            and self.path_contains in path
            and (self.method is None or self.method.upper() == method.upper())
        )


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _guid(data: bytes) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(data).digest()[:16])).upper()


def item_id_for(rel: str) -> str:
    """A stable, opaque-looking item id derived from the path inside the drive ("" is the root)."""
    raw = ("/" + rel.strip("/")).encode("utf-8")
    return "01" + base64.b32encode(raw).decode("ascii").rstrip("=")


def rel_for_item_id(item_id: str) -> str:
    if not item_id.startswith("01") or len(item_id) < 3:
        raise NotFound(item_id)
    body = item_id[2:]
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8)).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as e:
        raise NotFound(item_id) from e
    if not raw.startswith("/"):
        raise NotFound(item_id)
    return raw.strip("/")


def generate_self_signed_certificate(tls_dir: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """Write a fresh self-signed certificate (also usable as its own CA bundle) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LGDP M365 stand-in (development only)")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                + ([x509.DNSName(host)] if host not in ("127.0.0.1", "localhost") else [])
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    tls_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = tls_dir / "cert.pem", tls_dir / "key.pem"
    key_path.write_bytes(b"")
    key_path.chmod(0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


class StandInState:
    """Everything both apps share: the folders, the signing secret, faults and the request log."""

    def __init__(self, state_dir: Path, page_size: int = 200) -> None:
        self.root = Path(state_dir).resolve()
        self.drives_dir = self.root / "drives"
        self.meta_dir = self.root / "meta"
        self.mail_dir = self.root / "mail"
        self.tls_dir = self.root / "tls"
        self.uploads_dir = self.root / "uploads"
        for d in (self.drives_dir, self.meta_dir, self.mail_dir, self.uploads_dir):
            d.mkdir(parents=True, exist_ok=True)
        secret_file = self.root / "token-secret"
        if not secret_file.exists():
            secret_file.write_bytes(secrets.token_bytes(32))
            secret_file.chmod(0o600)
        self.secret = secret_file.read_bytes()
        self.page_size = page_size
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        self._seq = 0
        self._fault_seq = 0
        self._sha_cache: dict[tuple[str, int, int], str] = {}
        self.upload_lock = threading.Lock()
        self.upload_session_seconds = UPLOAD_SESSION_SECONDS
        # Request counters by app ("graph", "token"), never truncated like the log (benchmarks).
        self.counters: dict[str, int] = {}
        # delta: token -> the drive as it was then (rel -> (is_folder, size, mtime_ns)); pages of a
        # delta answer not yet fetched: cursor -> (items left, the token of the final deltaLink).
        self.delta_lock = threading.Lock()
        self.delta_snapshots: dict[str, dict[str, tuple[bool, int, int]]] = {}
        self.delta_cursors: dict[str, tuple[list[str], list[str], str]] = {}

    # --- tokens -------------------------------------------------------------------------------
    def sign(self, text: str) -> str:
        return _b64(hmac.new(self.secret, text.encode("utf-8"), hashlib.sha256).digest())

    def issue_token(self, client_id: str, tenant: str) -> str:
        body = _b64(json.dumps({"cid": client_id, "tid": tenant, "exp": int(time.time()) + TOKEN_LIFETIME_SECONDS}).encode())
        return f"lgdp-fake.{body}.{self.sign(body)}"

    def check_token(self, authorization: str | None) -> dict[str, Any] | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        parts = authorization[7:].strip().split(".")
        if len(parts) != 3 or parts[0] != "lgdp-fake" or not hmac.compare_digest(parts[2], self.sign(parts[1])):
            return None
        try:
            claims = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        return claims if claims.get("exp", 0) > time.time() else None

    # --- faults and the request log -------------------------------------------------------------
    def add_fault(self, fault: Fault) -> Fault:
        if fault.retry_after is not None and not isinstance(fault.retry_after, (int, str)):
            raise ValueError("retry_after must be whole seconds (int) or an HTTP date (str)")
        if fault.status is not None and not 400 <= fault.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if fault.app not in ("graph", "token"):
            raise ValueError("app must be 'graph' or 'token'")
        with self.lock:
            self._fault_seq += 1
            fault.id = self._fault_seq
            self.faults.append(fault)
        return fault

    def take_fault(self, app: str, method: str, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.matches(app, method, path):
                    f.count -= 1
                    return Fault(**{**asdict(f), "count": 1})
        return None

    def log(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.counters[entry["app"]] = self.counters.get(entry["app"], 0) + 1
            self._seq += 1
            entry["seq"] = self._seq
            self.requests.append(entry)
            del self.requests[:-_MAX_LOG]

    # --- drives -------------------------------------------------------------------------------
    def drive_root(self, drive_id: str) -> Path:
        if not _DRIVE_ID_RE.match(drive_id) or drive_id in (".", ".."):
            raise NotFound(drive_id)
        root = self.drives_dir / drive_id
        if not root.is_dir():
            raise NotFound(drive_id)
        return root

    @staticmethod
    def clean_rel(rel: str) -> str:
        segments = [s for s in rel.split("/") if s]
        for s in segments:
            if s in (".", "..") or "\\" in s or "\x00" in s:
                raise PathRefused(rel)
        return "/".join(segments)

    def resolve(self, drive_id: str, rel: str) -> tuple[str, Path]:
        root = self.drive_root(drive_id)
        rel = self.clean_rel(rel)
        path = root.joinpath(*rel.split("/")) if rel else root
        real_root = root.resolve()
        real = path.resolve()
        if real != real_root and not real.is_relative_to(real_root):
            raise PathRefused(rel)
        return rel, path

    def meta_path(self, drive_id: str, rel: str) -> Path:
        return self.meta_dir / drive_id / (rel + ".json")

    def set_modified_by(self, drive_id: str, rel: str, modified_by: dict[str, Any]) -> None:
        meta = self.meta_path(drive_id, rel)
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"lastModifiedBy": modified_by}), encoding="utf-8")

    def modified_by(self, drive_id: str, rel: str) -> dict[str, Any]:
        meta = self.meta_path(drive_id, rel)
        if meta.is_file():
            try:
                return json.loads(meta.read_text(encoding="utf-8"))["lastModifiedBy"]
            except (ValueError, KeyError):
                pass
        return {"user": {"displayName": "Demo user"}}

    def sha256(self, path: Path, st: os.stat_result) -> str:
        key = (str(path), st.st_size, st.st_mtime_ns)
        sha = self._sha_cache.get(key)
        if sha is None:
            h = hashlib.sha256()
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            sha = h.hexdigest()
            with self.lock:
                if len(self._sha_cache) > 10_000:
                    self._sha_cache.clear()
                self._sha_cache[key] = sha
        return sha

    # --- delta: what changed in a drive since a token ------------------------------------------
    def drive_snapshot(self, drive_id: str) -> dict[str, tuple[bool, int, int]]:
        """Every item under the drive's root: rel -> (is_folder, size, mtime_ns); hidden names skipped."""
        root = self.drive_root(drive_id)
        snap: dict[str, tuple[bool, int, int]] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            base = Path(dirpath).relative_to(root).as_posix()
            base = "" if base == "." else base
            for name in dirnames + [f for f in filenames if not f.startswith(".")]:
                rel = f"{base}/{name}" if base else name
                try:
                    st = (root / rel).stat()
                except OSError:
                    continue
                is_dir = name in dirnames
                snap[rel] = (is_dir, 0 if is_dir else st.st_size, st.st_mtime_ns)
        return snap

    def new_delta_token(self, snapshot: dict[str, tuple[bool, int, int]]) -> str:
        token = secrets.token_urlsafe(16)
        with self.delta_lock:
            self.delta_snapshots[token] = snapshot
            while len(self.delta_snapshots) > 64:  # a token older than that answers 410, as Graph may
                self.delta_snapshots.pop(next(iter(self.delta_snapshots)))
        return token

    # --- upload sessions: <state>/uploads/<id>.json (the session) and <id>.part (the bytes) -----
    def upload_part(self, session_id: str) -> Path:
        return self.uploads_dir / f"{session_id}.part"

    def new_upload_session(
        self, drive_id: str, rel: str, behaviour: str, total: int | None, app_id: str | None
    ) -> UploadSession:
        self.sweep_upload_sessions()
        session = UploadSession(
            id=secrets.token_urlsafe(24),  # the URL is the credential: unguessable
            drive_id=drive_id,
            rel=rel,
            behaviour=behaviour,
            expires=time.time() + self.upload_session_seconds,
            total=total,
            app_id=app_id,
        )
        self.upload_part(session.id).write_bytes(b"")
        self.save_upload_session(session)
        return session

    def save_upload_session(self, session: UploadSession) -> None:
        target = self.uploads_dir / f"{session.id}.json"
        tmp = target.with_name(f".{session.id}.json.tmp")
        tmp.write_text(json.dumps(asdict(session)), encoding="utf-8")
        os.replace(tmp, target)

    def load_upload_session(self, session_id: str) -> UploadSession | None:
        """The live session, or None if it never existed, was finished or cancelled, or expired."""
        if not _SESSION_ID_RE.match(session_id):
            return None
        meta = self.uploads_dir / f"{session_id}.json"
        try:
            session = UploadSession(**json.loads(meta.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None
        if session.expires <= time.time():
            self.drop_upload_session(session_id)
            return None
        return session

    def drop_upload_session(self, session_id: str) -> None:
        for f in (self.uploads_dir / f"{session_id}.json", self.upload_part(session_id)):
            f.unlink(missing_ok=True)

    def upload_sessions(self) -> list[UploadSession]:
        sessions = []
        for meta in sorted(self.uploads_dir.glob("*.json")):
            try:
                sessions.append(UploadSession(**json.loads(meta.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                continue
        return sessions

    def sweep_upload_sessions(self) -> None:
        """Remove expired sessions and their bytes (Graph cleans them up after expiry too)."""
        now = time.time()
        for session in self.upload_sessions():
            if session.expires <= now:
                self.drop_upload_session(session.id)

    def download_sig(self, drive_id: str, item_id: str) -> str:
        return self.sign(f"download:{drive_id}:{item_id}")

    def item_json(self, base_url: str, drive_id: str, rel: str, path: Path) -> dict[str, Any]:
        st = path.stat()
        item_id = item_id_for(rel)
        name = rel.rsplit("/", 1)[-1] if rel else "root"
        parent_rel = rel.rsplit("/", 1)[0] if "/" in rel else ""
        item: dict[str, Any] = {
            "id": item_id,
            "name": name,
            "createdDateTime": _iso(min(st.st_ctime, st.st_mtime)),
            "lastModifiedDateTime": _iso(st.st_mtime),
            "webUrl": f"{base_url}{SITE_PREFIX}/{quote(rel)}".rstrip("/"),
            "createdBy": {"user": {"displayName": "Demo user"}},
            "lastModifiedBy": self.modified_by(drive_id, rel),
        }
        if rel:
            item["parentReference"] = {
                "driveType": "documentLibrary",
                "driveId": drive_id,
                "id": item_id_for(parent_rel),
                "path": f"/drives/{drive_id}/root:" + (quote("/" + parent_rel) if parent_rel else ""),
            }
        else:
            item["parentReference"] = {"driveType": "documentLibrary", "driveId": drive_id}
            item["root"] = {}
        if path.is_dir():
            children = [c for c in path.iterdir() if not c.name.startswith(".")]
            basis = f"{st.st_mtime_ns}:{len(children)}".encode()
            item["eTag"] = f'"{{{_guid(basis)}}},1"'
            item["cTag"] = f'"c:{{{_guid(basis)}}},0"'
            item["size"] = sum(c.stat().st_size for c in children if c.is_file())
            item["folder"] = {"childCount": len(children)}
        else:
            sha = self.sha256(path, st)
            item["eTag"] = f'"{{{_guid(f"{sha}:{st.st_size}:{st.st_mtime_ns}".encode())}}},1"'
            item["cTag"] = f'"c:{{{_guid(sha.encode())}}},1"'
            item["size"] = st.st_size
            item["file"] = {
                "mimeType": mimetypes.guess_type(name)[0] or "application/octet-stream",
                "hashes": {"sha256Hash": sha.upper()},
            }
            item["@microsoft.graph.downloadUrl"] = (
                f"{base_url}_download/{drive_id}/{item_id}?sig={self.download_sig(drive_id, item_id)}"
            )
        return item


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": _iso(time.time()), "request-id": str(uuid.uuid4())},
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


_FAULT_CODES = {
    429: "TooManyRequests",
    503: "serviceNotAvailable",
    504: "gatewayTimeout",
    500: "generalException",
}


def _install_middleware(app, state: StandInState, app_name: str, require_token: bool) -> None:
    @app.middleware("http")
    async def _faults_auth_log(request: Request, call_next):
        path = request.url.path
        if path.startswith("/_admin"):
            return await call_next(request)
        started = time.time()
        entry: dict[str, Any] = {
            "app": app_name,
            "time": _iso(started),
            "method": request.method,
            "path": path,
            "query": request.url.query,
            "retry_attempt": request.headers.get("Retry-Attempt"),
            # recorded so tests can show the bearer token never goes to a pre-authenticated upload URL
            "authorization": "authorization" in request.headers,
            "fault": None,
        }
        response = None
        try:
            if require_token and path.startswith("/v1.0/") and state.check_token(request.headers.get("authorization")) is None:
                response = _error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
                return response
            fault = state.take_fault(app_name, request.method, path + ("?" + request.url.query if request.url.query else ""))
            if fault is not None:
                entry["fault"] = fault.id
                if fault.delay_seconds:
                    await asyncio.sleep(fault.delay_seconds)
                if fault.status is not None:
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
                    code = _FAULT_CODES.get(fault.status, "injectedFault")
                    response = _error(fault.status, code, f"Injected fault {fault.id} (stand-in).", headers)
                    return response
            response = await call_next(request)
            return response
        finally:
            entry["status"] = response.status_code if response is not None else 500
            entry["elapsed_ms"] = round((time.time() - started) * 1000, 1)
            state.log(entry)


def _install_admin(app, state: StandInState) -> None:
    @app.get("/_admin/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/_admin/faults")
    def add_faults(body: Any = Body(...)) -> JSONResponse:
        specs = body if isinstance(body, list) else [body]
        try:
            added = [state.add_fault(Fault(**{k: v for k, v in s.items() if k != "id"})) for s in specs]
        except (TypeError, ValueError) as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse([asdict(f) for f in added], status_code=201)

    @app.get("/_admin/faults")
    def list_faults() -> list[dict[str, Any]]:
        with state.lock:
            return [asdict(f) for f in state.faults if f.count > 0]

    @app.delete("/_admin/faults", status_code=204)
    def clear_faults() -> None:
        with state.lock:
            state.faults.clear()

    @app.get("/_admin/requests")
    def list_requests() -> list[dict[str, Any]]:
        with state.lock:
            return list(state.requests)

    @app.delete("/_admin/requests", status_code=204)
    def clear_requests() -> None:
        with state.lock:
            state.requests.clear()

    @app.get("/_admin/counters")
    def counters() -> dict[str, int]:
        """Requests served by app since start (the log keeps only the latest ones)."""
        with state.lock:
            return dict(state.counters)

    @app.get("/_admin/mail")
    def list_mail() -> list[dict[str, Any]]:
        return read_mail(state)

    @app.delete("/_admin/mail", status_code=204)
    def clear_mail() -> None:
        for f in state.mail_dir.glob("*.json"):
            f.unlink()


def read_mail(state: StandInState) -> list[dict[str, Any]]:
    return [json.loads(f.read_text(encoding="utf-8")) for f in sorted(state.mail_dir.glob("*.json"))]


def create_graph_app(state: StandInState):
    """The Graph API app (plain HTTP): drives, items, content, sendMail, admin."""
    app = FastAPI(title="LGDP Microsoft Graph stand-in", docs_url=None, redoc_url=None, openapi_url=None)
    _install_middleware(app, state, "graph", require_token=True)
    _install_admin(app, state)

    def split_tail(tail: str) -> tuple[str, str]:
        """``root:/a/b:/children`` -> (``a/b``, ``children``); ids and paths may be combined."""
        if tail == "root" or tail.startswith(("root/", "root:")):
            base, rest = "", tail[4:]
        elif tail.startswith("items/"):
            m = re.match(r"items/([^/:]+)(.*)$", tail)
            if not m:
                raise NotFound(tail)
            base, rest = rel_for_item_id(m.group(1)), m.group(2)
        else:
            raise NotFound(tail)
        if rest.startswith(":"):
            rest = rest[1:]
            rel_part, _, suffix = rest.partition(":")
            rel = "/".join(p for p in (base, rel_part.strip("/")) if p)
        else:
            rel, suffix = base, rest
        return rel, suffix.strip("/")

    def list_children(request: Request, drive_id: str, rel: str, path: Path) -> Response:
        if not path.is_dir():
            return _error(400, "invalidRequest", "The item is not a folder.")
        base = str(request.base_url)
        names = sorted(c.name for c in path.iterdir() if not c.name.startswith("."))
        try:
            top = int(request.query_params.get("$top", state.page_size))
            skip = int(request.query_params.get("$skiptoken", "0"))
        except ValueError:
            return _error(400, "invalidRequest", "Invalid $top or $skiptoken.")
        top = max(1, min(top, state.page_size))
        page = names[skip : skip + top]
        value = [state.item_json(base, drive_id, "/".join(p for p in (rel, n) if p), path / n) for n in page]
        body: dict[str, Any] = {"@odata.context": f"{base}v1.0/$metadata#Collection(driveItem)", "value": value}
        if skip + top < len(names):
            body["@odata.nextLink"] = str(
                request.url.include_query_params(**{"$skiptoken": str(skip + top), "$top": str(top)})
            )
        return JSONResponse(body)

    def delta(request: Request, drive_id: str, rel: str) -> Response:
        """``GET /drives/{id}/root/delta``: what changed since ``token`` (everything without one).

        Like SharePoint: only on the root; ``token=latest`` returns nothing but a deltaLink for
        now; an unknown or expired token answers 410 ``resyncRequired``; changed items come
        parents first, deleted ones with a ``deleted`` facet; ``parentReference`` carries the
        parent's id but no ``path`` (Graph leaves it out of delta answers: track items by id).
        Pages of ``$top`` (default the page size) are linked by ``@odata.nextLink``; the last page
        has the ``@odata.deltaLink`` to use next time.
        """
        if rel:
            return _error(400, "invalidRequest", "delta is only supported on the root of a SharePoint drive.")
        base = str(request.base_url)
        link = f"{base}v1.0/drives/{quote(drive_id, safe='!')}/root/delta"
        try:
            top = max(1, min(int(request.query_params.get("$top", state.page_size)), state.page_size))
        except ValueError:
            return _error(400, "invalidRequest", "Invalid $top.")
        cursor = request.query_params.get("$skiptoken")
        if cursor is not None:
            with state.delta_lock:
                pending = state.delta_cursors.pop(cursor, None)
            if pending is None:
                return _error(410, "resyncRequired", "The page of this delta query expired; start again.")
            changed, deleted, token = pending
        else:
            token_in = request.query_params.get("token")
            now = state.drive_snapshot(drive_id)
            if token_in == "latest":
                changed, deleted = [], []
            elif token_in:
                with state.delta_lock:
                    before = state.delta_snapshots.get(token_in)
                if before is None:
                    return _error(410, "resyncRequired", "The delta token is not known or has expired; resync.")
                changed = [r for r, v in now.items() if before.get(r) != v]
                deleted = [r for r in before if r not in now]
            else:
                changed, deleted = list(now), []
            changed.sort(key=lambda r: (r.count("/"), r))
            if changed or deleted or not token_in:
                changed.insert(0, "")  # the root comes first, as in Graph's answers
            token = state.new_delta_token(now)
        value: list[dict[str, Any]] = []
        while deleted and len(value) < top:
            r = deleted.pop(0)
            parent = r.rsplit("/", 1)[0] if "/" in r else ""
            value.append({"id": item_id_for(r), "name": r.rsplit("/", 1)[-1], "deleted": {"state": "deleted"},
                          "parentReference": {"driveId": drive_id, "driveType": "documentLibrary", "id": item_id_for(parent)}})
        while changed and len(value) < top:
            r = changed.pop(0)
            try:
                item = state.item_json(base, drive_id, r, state.resolve(drive_id, r)[1])
            except (OSError, NotFound, PathRefused):
                continue  # gone since the snapshot: the next delta reports it deleted
            item["parentReference"].pop("path", None)
            value.append(item)
        body: dict[str, Any] = {"@odata.context": f"{base}v1.0/$metadata#Collection(driveItem)", "value": value}
        if changed or deleted:
            cursor = secrets.token_urlsafe(12)
            with state.delta_lock:
                state.delta_cursors[cursor] = (changed, deleted, token)
                while len(state.delta_cursors) > 256:
                    state.delta_cursors.pop(next(iter(state.delta_cursors)))
            body["@odata.nextLink"] = f"{link}?$skiptoken={cursor}&$top={top}"
        else:
            body["@odata.deltaLink"] = f"{link}?token={token}"
        return JSONResponse(body)

    async def create_folder(request: Request, drive_id: str, rel: str, path: Path) -> Response:
        if not path.is_dir():
            return _error(404 if not path.exists() else 400, "itemNotFound", "The parent folder does not exist.")
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return _error(400, "invalidRequest", "Invalid JSON body.")
        name = body.get("name")
        if not isinstance(name, str) or not name or "folder" not in body:
            return _error(400, "invalidRequest", "A folder needs 'name' and 'folder'.")
        if "/" in name:
            return _error(400, "invalidRequest", "The name must not contain '/'.")
        behaviour = body.get("@microsoft.graph.conflictBehavior", "fail")
        child_rel, child = state.resolve(drive_id, "/".join(p for p in (rel, name) if p))
        if child.exists():
            if behaviour == "fail":
                return _error(409, "nameAlreadyExists", "The specified item name already exists.")
            if behaviour == "rename":
                n = 1
                while child.exists():
                    child_rel, child = state.resolve(drive_id, "/".join(p for p in (rel, f"{name} {n}") if p))
                    n += 1
            elif behaviour == "replace":
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            else:
                return _error(400, "invalidRequest", f"Unknown conflictBehavior {behaviour!r}.")
        child.mkdir()
        return JSONResponse(state.item_json(str(request.base_url), drive_id, child_rel, child), status_code=201)

    async def upload(request: Request, drive_id: str, rel: str, path: Path, claims: dict[str, Any]) -> Response:
        if not rel:
            return _error(400, "invalidRequest", "Cannot upload to the root itself.")
        content = await request.body()
        if len(content) > SIMPLE_UPLOAD_LIMIT:
            return _error(413, "requestEntityTooLarge", "Simple upload is limited to 4 MB; use an upload session.")
        if path.is_dir():
            return _error(409, "nameAlreadyExists", "A folder with this name exists.")
        behaviour = request.query_params.get("@microsoft.graph.conflictBehavior", "replace")
        existed = path.exists()
        if existed and behaviour == "fail":
            return _error(409, "nameAlreadyExists", "The specified item name already exists.")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".upload-{uuid.uuid4().hex}")
        tmp.write_bytes(content)
        os.replace(tmp, path)
        state.set_modified_by(
            drive_id, rel, {"application": {"displayName": f"App {claims.get('cid')}", "id": claims.get("cid")}}
        )
        item = state.item_json(str(request.base_url), drive_id, rel, path)
        return JSONResponse(item, status_code=200 if existed else 201)

    async def create_upload_session(
        request: Request, drive_id: str, rel: str, path: Path, claims: dict[str, Any]
    ) -> Response:
        """``POST .../createUploadSession``: an uploadSession whose uploadUrl needs no token."""
        if not rel:
            return _error(400, "invalidRequest", "An upload session needs a file path, not the root.")
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return _error(400, "invalidRequest", "Invalid JSON body.")
        item = body.get("item", {}) if isinstance(body, dict) else None
        if not isinstance(item, dict):
            return _error(400, "invalidRequest", "The body must be an object with an optional 'item' object.")
        if body.get("deferCommit"):
            return _error(400, "invalidRequest", "deferCommit is not implemented by the stand-in.")
        name = item.get("name")
        if name is not None and name != rel.rsplit("/", 1)[-1]:
            return _error(400, "invalidRequest", "The item's name must be the name at the end of the path.")
        behaviour = item.get("@microsoft.graph.conflictBehavior", "fail")  # Graph's default here
        if behaviour not in ("fail", "replace", "rename"):
            return _error(400, "invalidRequest", f"Unknown conflictBehavior {behaviour!r}.")
        size = item.get("fileSize")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            return _error(400, "invalidRequest", "fileSize must be a positive whole number of bytes.")
        if path.is_dir() or (path.exists() and behaviour == "fail"):
            return _error(409, "nameAlreadyExists", "The specified item name already exists.")
        with state.upload_lock:
            session = state.new_upload_session(drive_id, rel, behaviour, size, claims.get("cid"))
        return JSONResponse(
            {
                "@odata.context": f"{request.base_url}v1.0/$metadata#microsoft.graph.uploadSession",
                "uploadUrl": f"{request.base_url}_upload/{session.id}",
                "expirationDateTime": _iso(session.expires),
                "nextExpectedRanges": ["0-"],
            }
        )

    def complete_upload(request: Request, session: UploadSession) -> Response:
        """The last byte arrived: move the file into place at once, as a simple upload does."""
        try:
            rel, path = state.resolve(session.drive_id, session.rel)
        except (NotFound, PathRefused):
            state.drop_upload_session(session.id)
            return _error(404, "itemNotFound", "The destination of the upload no longer exists.")
        if path.is_dir():
            return _error(409, "nameAlreadyExists", "A folder with this name exists.")
        existed = path.exists()
        if existed and session.behaviour == "fail":
            # Graph keeps the session until it expires, so the caller can commit under another name.
            return _error(409, "nameAlreadyExists", "Another file exists with the same name as the uploaded session.")
        if existed and session.behaviour == "rename":
            stem, suffix, n = Path(path.name).stem, Path(path.name).suffix, 1
            while path.exists():
                rel, path = state.resolve(session.drive_id, f"{rel.rpartition('/')[0]}/{stem} {n}{suffix}".lstrip("/"))
                n += 1
            existed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            return _error(409, "nameAlreadyExists", "A file is in the way of a parent folder.")
        tmp = path.with_name(f".upload-{uuid.uuid4().hex}")
        shutil.move(state.upload_part(session.id), tmp)  # a rename on the same file system
        os.replace(tmp, path)
        state.drop_upload_session(session.id)
        app_id = session.app_id
        state.set_modified_by(session.drive_id, rel, {"application": {"displayName": f"App {app_id}", "id": app_id}})
        item = state.item_json(str(request.base_url), session.drive_id, rel, path)
        return JSONResponse(item, status_code=200 if existed else 201)

    @app.api_route("/_upload/{session_id}", methods=["GET", "PUT", "DELETE"])
    async def upload_url(session_id: str, request: Request) -> Response:
        """The pre-authenticated upload URL: PUT byte ranges in order, GET the status, DELETE to cancel."""
        if "authorization" in request.headers:
            # Graph: "If you include the Authorization header when issuing the PUT call, it may
            # result in an HTTP 401 Unauthorized response." The stand-in always refuses it, so a
            # client that leaks its bearer token to the upload host fails loudly.
            return _error(401, "unauthenticated", "The upload URL is pre-authenticated: send no Authorization header.")
        content = await request.body() if request.method == "PUT" else b""
        with state.upload_lock:
            session = state.load_upload_session(session_id)
            if session is None:
                return _error(404, "itemNotFound", "The upload session does not exist or has expired.")
            if request.method == "DELETE":
                state.drop_upload_session(session.id)
                return Response(status_code=204)
            if request.method == "GET":
                return JSONResponse(
                    {"expirationDateTime": _iso(session.expires), "nextExpectedRanges": [f"{session.received}-"]}
                )
            m = _CONTENT_RANGE_RE.fullmatch(request.headers.get("content-range", "").strip())
            if not m:
                return _error(400, "invalidRange", "Content-Range: bytes {start}-{end}/{total} is required.")
            start, end, total = (int(g) for g in m.groups())
            if end < start or end >= total or len(content) != end - start + 1:
                return _error(400, "invalidRange", "The Content-Range does not match the length of the body.")
            if len(content) >= UPLOAD_FRAGMENT_MAX:
                return _error(413, "requestEntityTooLarge", "A fragment must be smaller than 60 MiB.")
            if session.total is not None and total != session.total:
                return _error(400, "invalidRange", f"The file size must stay {session.total} in every fragment.")
            if start != session.received:
                # Graph answers 416 for a range it already has; the stand-in also for one it skips
                # ahead to (fragments must arrive in order). GET the URL for nextExpectedRanges.
                return _error(416, "invalidRange", f"Expected the range starting at byte {session.received}.")
            if end + 1 < total and len(content) % UPLOAD_FRAGMENT_UNIT:
                return _error(400, "invalidRange", "Every fragment but the last must be a multiple of 320 KiB.")
            with state.upload_part(session.id).open("r+b") as f:
                f.seek(start)
                f.write(content)
                f.truncate()
            session.total, session.received = total, end + 1
            session.expires = time.time() + state.upload_session_seconds
            if session.received < total:
                state.save_upload_session(session)
                return JSONResponse(
                    {"expirationDateTime": _iso(session.expires), "nextExpectedRanges": [f"{session.received}-"]},
                    status_code=202,
                )
            state.save_upload_session(session)
            return complete_upload(request, session)

    @app.api_route("/v1.0/drives/{drive_id}/{tail:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def drive_endpoint(drive_id: str, tail: str, request: Request) -> Response:
        try:
            rel, suffix = split_tail(tail)
            rel, path = state.resolve(drive_id, rel)
        except PathRefused:
            return _error(400, "invalidRequest", "The path is not valid: it may not leave the drive.")
        except NotFound:
            return _error(404, "itemNotFound", "The resource could not be found.")
        method = request.method
        base = str(request.base_url)
        if method == "PUT" and suffix == "content":
            claims = state.check_token(request.headers.get("authorization")) or {}
            return await upload(request, drive_id, rel, path, claims)
        if method == "POST" and suffix == "createUploadSession":
            if tail.startswith("items/") and ":" not in tail and not path.exists():
                return _error(404, "itemNotFound", "The resource could not be found.")  # items/{id}: must exist
            claims = state.check_token(request.headers.get("authorization")) or {}
            return await create_upload_session(request, drive_id, rel, path, claims)
        if not path.exists():
            return _error(404, "itemNotFound", "The resource could not be found.")
        if suffix == "" and method == "GET":
            return JSONResponse(state.item_json(base, drive_id, rel, path))
        if suffix == "" and method == "DELETE":
            if not rel:
                return _error(400, "invalidRequest", "Cannot delete the root.")
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            return Response(status_code=204)
        if suffix == "children" and method == "GET":
            return list_children(request, drive_id, rel, path)
        if suffix == "delta" and method == "GET":
            return delta(request, drive_id, rel)
        if suffix == "children" and method == "POST":
            return await create_folder(request, drive_id, rel, path)
        if suffix == "content" and method == "GET":
            if path.is_dir():
                return _error(400, "invalidRequest", "A folder has no content.")
            item_id = item_id_for(rel)
            # Like Graph: a redirect to a short-lived pre-authenticated download URL.
            return RedirectResponse(
                f"{base}_download/{drive_id}/{item_id}?sig={state.download_sig(drive_id, item_id)}", status_code=302
            )
        return _error(400, "invalidRequest", f"{method} {suffix or 'item'} is not implemented by the stand-in.")

    @app.get("/_download/{drive_id}/{item_id}")
    def download(drive_id: str, item_id: str, sig: str = "") -> Response:
        if not hmac.compare_digest(sig, state.download_sig(drive_id, item_id)):
            return _error(401, "unauthenticated", "Invalid download signature.")
        try:
            _, path = state.resolve(drive_id, rel_for_item_id(item_id))
        except (NotFound, PathRefused):
            return _error(404, "itemNotFound", "The resource could not be found.")
        if not path.is_file():
            return _error(404, "itemNotFound", "The resource could not be found.")
        return Response(
            path.read_bytes(), media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        )

    @app.post("/v1.0/users/{user_id}/sendMail")
    async def send_mail(user_id: str, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "invalidRequest", "Invalid JSON body.")
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict) or not message.get("toRecipients"):
            return _error(400, "ErrorInvalidRecipients", "At least one recipient is required.")
        stored = {
            "from": user_id,
            "received": _iso(time.time()),
            "saveToSentItems": body.get("saveToSentItems", True),
            "message": message,
        }
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
        tmp = state.mail_dir / f".{name}"
        tmp.write_text(json.dumps(stored, indent=1), encoding="utf-8")
        os.replace(tmp, state.mail_dir / name)
        return Response(status_code=202)

    @app.get("/sites/lgdp/Shared Documents/{rel:path}", response_class=HTMLResponse)
    @app.get("/sites/lgdp/Shared Documents", response_class=HTMLResponse)
    def browse(request: Request, rel: str = "") -> Response:
        """What a folder's webUrl opens: a plain listing of the default drive, for the demo."""
        drives = sorted(p.name for p in state.drives_dir.iterdir() if p.is_dir())
        if not drives:
            return HTMLResponse("<p>No drives.</p>", status_code=404)
        drive_id = DEFAULT_DRIVE_ID if DEFAULT_DRIVE_ID in drives else drives[0]
        try:
            rel, path = state.resolve(drive_id, rel)
        except (PathRefused, NotFound):
            return HTMLResponse("<p>Invalid path.</p>", status_code=400)
        if not path.exists():
            return HTMLResponse("<p>Not found.</p>", status_code=404)
        if path.is_file():
            return Response(path.read_bytes(), media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        from html import escape

        rows = "".join(
            f'<li><a href="{base_quote(request, rel, c.name)}">{escape(c.name)}{"/" if c.is_dir() else ""}</a></li>'
            for c in sorted(path.iterdir())
            if not c.name.startswith(".")
        )
        return HTMLResponse(
            f"<h1>Shared Documents/{escape(rel)}</h1><p>LGDP SharePoint stand-in (development only).</p><ul>{rows}</ul>"
        )

    def base_quote(request: Request, rel: str, name: str) -> str:
        return f"{request.base_url}{SITE_PREFIX}/" + quote("/".join(p for p in (rel, name) if p))

    return app


def create_token_app(state: StandInState):
    """The identity app (HTTPS): client-credentials tokens and the OpenID configuration."""
    app = FastAPI(title="LGDP identity stand-in", docs_url=None, redoc_url=None, openapi_url=None)
    _install_middleware(app, state, "token", require_token=False)
    _install_admin(app, state)

    @app.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8")).items()}
        if form.get("grant_type") != "client_credentials":
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "Only client_credentials."}, status_code=400
            )
        client_id = form.get("client_id")
        if not client_id or not (form.get("client_secret") or form.get("client_assertion")):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "client_id and a secret are required."},
                status_code=401,
            )
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_SECONDS,
                "ext_expires_in": TOKEN_LIFETIME_SECONDS,
                "access_token": state.issue_token(client_id, tenant),
            }
        )

    @app.get("/{tenant}/v2.0/.well-known/openid-configuration")
    def openid_configuration(tenant: str, request: Request) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        return {
            "issuer": f"{base}/{tenant}/v2.0",
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "response_types_supported": ["code", "id_token", "token"],
            "tenant_region_scope": "EU",
        }

    @app.get("/common/discovery/instance")
    def instance_discovery(request: Request, authorization_endpoint: str = "") -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        m = re.search(r"https://[^/]+/([^/]+)/", authorization_endpoint)
        tenant = m.group(1) if m else "common"
        host = request.url.netloc
        return {
            "tenant_discovery_endpoint": f"{base}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }

    return app


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@dataclass
class M365StandIn:
    """Both servers in a background thread: ``with M365StandIn(tmp) as m365: ...``.

    ``port``/``token_port`` 0 pick free ports. The default drive ``drive_id`` is created at start;
    any other folder under ``<state>/drives/`` is a drive too.
    """

    state_dir: Path
    port: int = 0
    token_port: int = 0
    host: str = "127.0.0.1"
    drive_id: str = DEFAULT_DRIVE_ID
    # For a container network (docker-compose's dev profile): the name clients reach it by (in its
    # URLs, certificate and allowed_hosts; default ``host``), and the Graph API over HTTPS too,
    # because the Graph client accepts plain HTTP only on a loopback address.
    public_host: str | None = None
    graph_tls: bool = False
    tenant_id: str = DEFAULT_TENANT_ID
    page_size: int = 200
    state: StandInState = field(init=False)
    cert_path: Path = field(init=False)
    _servers: list[Any] = field(init=False, default_factory=list)
    _thread: threading.Thread | None = field(init=False, default=None)
    _error: BaseException | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.state = StandInState(self.state_dir, page_size=self.page_size)
        (self.state.drives_dir / self.drive_id).mkdir(parents=True, exist_ok=True)

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 20) -> M365StandIn:
        import uvicorn

        self.cert_path, key_path = generate_self_signed_certificate(self.state.tls_dir, self.public_host or self.host)
        graph_sock, token_sock = _bind(self.host, self.port), _bind(self.host, self.token_port)
        self.port, self.token_port = graph_sock.getsockname()[1], token_sock.getsockname()[1]
        common = {"log_level": "warning", "lifespan": "off", "access_log": False, "timeout_graceful_shutdown": 1}
        graph_tls = {"ssl_certfile": str(self.cert_path), "ssl_keyfile": str(key_path)} if self.graph_tls else {}
        graph = uvicorn.Server(uvicorn.Config(create_graph_app(self.state), **graph_tls, **common))
        token = uvicorn.Server(
            uvicorn.Config(
                create_token_app(self.state), ssl_certfile=str(self.cert_path), ssl_keyfile=str(key_path), **common
            )
        )
        self._servers = [graph, token]

        def run() -> None:
            async def both() -> None:
                await asyncio.gather(graph.serve(sockets=[graph_sock]), token.serve(sockets=[token_sock]))

            try:
                asyncio.run(both())
            except BaseException as e:  # noqa: BLE001 - reported by start()
                self._error = e
            finally:
                graph_sock.close()
                token_sock.close()

        self._thread = threading.Thread(target=run, name="m365-standin", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not (graph.started and token.started):
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the M365 stand-in did not start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the M365 stand-in did not start in time")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        for s in self._servers:
            s.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None

    def __enter__(self) -> M365StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses and the Airflow connection --------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"{'https' if self.graph_tls else 'http'}://{self.public_host or self.host}:{self.port}"

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    @property
    def authority(self) -> str:
        return f"https://{self.public_host or self.host}:{self.token_port}"

    @property
    def drive_root(self) -> Path:
        return self.state.drives_dir / self.drive_id

    def connection_extra(self, verify: bool | str | None = None) -> dict[str, Any]:
        """The msgraph connection's extras; ``verify`` defaults to the generated certificate."""
        return {
            "tenant_id": self.tenant_id,
            "base_url": self.graph_url,
            "authority": self.authority,
            "allowed_hosts": self.public_host or self.host,
            "verify": str(self.cert_path) if verify is None else verify,
            "drive_id": self.drive_id,
        }

    def connection(self, verify: bool | str | None = None) -> dict[str, Any]:
        return {
            "conn_type": "msgraph",
            "login": DEMO_CLIENT_ID,
            "password": DEMO_CLIENT_SECRET,
            "extra": self.connection_extra(verify),
        }

    def connection_uri(self, verify: bool | str | None = None) -> str:
        """The connection as JSON, the form ``AIRFLOW_CONN_<ID>`` accepts (keeps JSON booleans)."""
        return json.dumps(self.connection(verify))

    # --- test helpers (in-process, no HTTP) ----------------------------------------------------
    def put_file(
        self,
        path: str,
        content: bytes,
        modified_by: str = "Demo council user",
        email: str | None = None,
        mtime: float | None = None,
    ) -> Path:
        """Write a file into the drive as if a council user had uploaded it through SharePoint."""
        rel, target = self.state.resolve(self.drive_id, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        if mtime is not None:
            os.utime(target, (mtime, mtime))
        user: dict[str, Any] = {"displayName": modified_by}
        if email:
            user["email"] = email
        self.state.set_modified_by(self.drive_id, rel, {"user": user})
        return target

    def inject_fault(
        self,
        status: int | None = None,
        retry_after: int | str | None = None,
        count: int = 1,
        path_contains: str = "",
        method: str | None = None,
        delay_seconds: float = 0.0,
        app: str = "graph",
    ) -> Fault:
        """The next ``count`` requests matching get ``status`` (with Retry-After) and/or a delay."""
        return self.state.add_fault(Fault(status, retry_after, count, path_contains, method, delay_seconds, app))

    def clear_faults(self) -> None:
        with self.state.lock:
            self.state.faults.clear()

    def requests(self, app: str | None = "graph") -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(r) for r in self.state.requests if app is None or r["app"] == app]

    def clear_requests(self) -> None:
        with self.state.lock:
            self.state.requests.clear()

    def counters(self) -> dict[str, int]:
        """Requests served by app ("graph", "token") since start."""
        with self.state.lock:
            return dict(self.state.counters)

    def upload_sessions(self) -> list[UploadSession]:
        """Upload sessions not yet finished or cancelled (expired ones included until swept)."""
        with self.state.upload_lock:
            return self.state.upload_sessions()

    def expire_upload_sessions(self) -> int:
        """Let every open upload session expire now (its URL answers 404); how many there were."""
        with self.state.upload_lock:
            sessions = self.state.upload_sessions()
            for session in sessions:
                session.expires = time.time() - 1
                self.state.save_upload_session(session)
        return len(sessions)

    def list_names(self, path: str = "") -> list[str]:
        """Names in a folder of the drive, read from disk ([] if the folder does not exist)."""
        _, folder = self.state.resolve(self.drive_id, path)
        return sorted(c.name for c in folder.iterdir() if not c.name.startswith(".")) if folder.is_dir() else []

    def mail(self) -> list[dict[str, Any]]:
        return read_mail(self.state)

    def issue_token(self, client_id: str = DEMO_CLIENT_ID) -> str:
        """A valid access token, for tests that call the Graph app directly."""
        return self.state.issue_token(client_id, self.tenant_id)


def main(argv: list[str] | None = None) -> int:
    """``python -m lgdp.devservices.m365``: the stand-in on a container network (docker-compose's dev profile).

    Listens on ``--bind`` (0.0.0.0), names itself ``--public-host`` in its URLs and certificate,
    and serves the Graph API over HTTPS with the generated certificate (``--tls``), so Airflow in
    other containers can use it; prints the connection JSON (``verify`` false: development only).
    """
    import argparse
    import signal

    p = argparse.ArgumentParser(description=main.__doc__.split("\n")[0] if main.__doc__ else None)
    p.add_argument("--state", required=True)
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--public-host", default="m365")
    p.add_argument("--port", type=int, default=18765)
    p.add_argument("--token-port", type=int, default=18766)
    p.add_argument("--tls", action="store_true", help="serve the Graph API over HTTPS too")
    args = p.parse_args(argv)
    standin = M365StandIn(
        Path(args.state), port=args.port, token_port=args.token_port, host=args.bind,
        public_host=args.public_host, graph_tls=args.tls,
    ).start()
    print(f"[lgdp] Microsoft Graph stand-in: {standin.graph_url}; connection (development only):", flush=True)
    print(json.dumps(standin.connection(verify=False)), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
