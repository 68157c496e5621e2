"""A small client of the submission API: what ``lgdp api submit`` does, and an example to copy.

It sends a file (or a JSON file of rows) with an idempotency key derived from the content, so
running it again after a timeout cannot submit twice; with ``wait`` it polls the status until the
submission is decided and returns the final status (with the issues, first page).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx

TYPES = {
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".csv": "text/csv",
    ".zip": "application/zip",
    ".xml": "application/xml",
    ".json": "application/json",
}


class ApiRefused(Exception):
    def __init__(self, status: int, body: Any) -> None:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"{status} {err.get('code', '')}: {err.get('message', body)}")
        self.status = status
        self.code = err.get("code")
        self.body = body


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return {"error": {"code": "not_json", "message": r.text[:300]}}


def submit(
    base_url: str,
    token: str,
    council: str,
    return_id: str,
    period: str,
    path: Path,
    *,
    key: str | None = None,
    wait: bool = False,
    timeout: float = 600.0,
    poll_seconds: float = 2.0,
    client: httpx.Client | None = None,
) -> dict[str, Any]:
    data = path.read_bytes()
    ctype = TYPES.get(path.suffix.lower())
    if ctype is None:
        raise ValueError(f"{path.name}: send .xlsx, .csv, .zip, .xml or .json (rows)")
    key = key or "sha256-" + hashlib.sha256(f"{council}/{return_id}/{period}/".encode() + data).hexdigest()[:64]
    own = client is None
    client = client or httpx.Client(timeout=120.0)
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key, "Content-Type": ctype, "X-Filename": path.name[:200]}
    try:
        url = f"{base_url.rstrip('/')}/v1/councils/{council}/returns/{return_id}/periods/{period}/submissions"
        r = client.post(url, content=data, headers=headers)
        body = _json(r)
        if r.status_code != 202:
            raise ApiRefused(r.status_code, body)
        if not wait:
            return body
        status_url = f"{base_url.rstrip('/')}/v1/councils/{council}/submissions/{body['submission_id']}"
        auth = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + timeout
        while True:
            r = client.get(status_url, headers=auth)
            status = _json(r)
            if r.status_code != 200:
                raise ApiRefused(r.status_code, status)
            if status.get("decided"):
                issues = client.get(f"{status_url}/issues", headers=auth, params={"limit": 50})
                status["issues"] = _json(issues).get("issues", [])
                return status
            if time.monotonic() > deadline:
                status["timed_out"] = True
                return status
            time.sleep(poll_seconds)
    finally:
        if own:
            client.close()


def main_submit(args: Any) -> int:
    import os
    import sys

    token = args.token or os.environ.get("LGDP_API_TOKEN")
    if not token:
        print("lgdp api submit: give --token or set LGDP_API_TOKEN", file=sys.stderr)
        return 2
    path = Path(args.file)
    if not path.is_file():
        print(f"lgdp api submit: no file {path}", file=sys.stderr)
        return 2
    try:
        out = submit(args.url, token, args.council, args.return_id, args.period, path, key=args.idempotency_key,
                     wait=args.wait, timeout=args.timeout)
    except (ApiRefused, ValueError, httpx.HTTPError) as exc:
        print(f"lgdp api submit: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2))
    if args.wait:
        return 0 if out.get("state") == "accepted" else 3
    return 0
