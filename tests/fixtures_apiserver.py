"""A real ``airflow api-server`` with this project's plugins, for the UI and council API tests."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ApiServer:
    base: str
    password: str  # the simple auth manager's admin password
    log: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - our own loopback server
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def api_server(log_dir: Path, extra_env: dict[str, str] | None = None, timeout: float = 240) -> Iterator[ApiServer]:
    """Start the api-server on a free port (plugins from ``plugins/``), wait until healthy, stop it after."""
    port = _free_port()
    env = os.environ.copy()
    env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
    env["AIRFLOW__API__PORT"] = str(port)
    env["AIRFLOW__API__BASE_URL"] = f"http://127.0.0.1:{port}"
    env.update(extra_env or {})
    log = (log_dir / "api-server.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("airflow")), "api-server", "--port", str(port), "--host", "127.0.0.1"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"api-server exited; see {log.name}"
            if _healthy(f"{base}/api/v2/monitor/health"):
                break
            time.sleep(2)
        else:
            pytest.fail(f"api-server did not start; see {log.name}")
        home = Path(env["AIRFLOW_HOME"])
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        yield ApiServer(base, password, log.name)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
