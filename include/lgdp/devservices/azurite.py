"""Azurite (the Azure Blob Storage emulator) for the demo: the requesters' storage on this machine.

Demo infrastructure only; production code never imports it. ``make install`` installs Azurite from
npm (``package.json``, pinned by ``package-lock.json``) into ``node_modules/``. The demo runs
``azurite-blob`` on 127.0.0.1 with its data on disk under the state folder (not in memory), so a
person can look at the deliveries between runs, and stops it with SIGTERM, on which Azurite saves
its metadata and exits. The tests use their own in-memory Azurite (``tests/fixtures_azurite.py``).

The account is Azurite's development account with its published key: the same in every Azurite
install, documented by Microsoft, not a secret.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lgdp.specs.paths import REPO_ROOT

AZURITE_BLOB = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
# Azurite's published development key (the same in every Azurite install; not a secret).
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    """Azurite is not installed, could not start, or exited; the message says what to do."""


def connection_string(host: str, port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{ACCOUNT};"
    )


@dataclass
class AzuriteBlob:
    """One ``azurite-blob`` process with its workspace in ``location``: ``start()``, ``stop()``."""

    location: Path
    port: int = 10000
    host: str = "127.0.0.1"
    executable: Path = AZURITE_BLOB
    _proc: subprocess.Popen | None = field(init=False, default=None)

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return connection_string(self.host, self.port)

    @property
    def log_path(self) -> Path:
        return Path(self.location) / "azurite.log"

    def connection(self, **extra: Any) -> dict[str, Any]:
        """An Airflow ``wasb`` connection to this Azurite (the ``connection_string`` extra wins in WasbHook)."""
        return {"conn_type": "wasb", "extra": {"connection_string": self.connection_string, **extra}}

    def connection_json(self, **extra: Any) -> str:
        """The connection in the JSON form ``AIRFLOW_CONN_<ID>`` accepts."""
        return json.dumps(self.connection(**extra))

    def _listening(self) -> bool:
        try:
            socket.create_connection((self.host, self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def start(self, timeout: float = 60) -> AzuriteBlob:
        if not Path(self.executable).exists():
            raise AzuriteError(f"{self.executable} is missing: run `make install` (it runs `npm ci` for Azurite)")
        if self._listening():
            raise AzuriteError(
                f"something already listens on {self.host}:{self.port}: stop it or set LGDP_AZURITE_PORT to a free port"
            )
        Path(self.location).mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # a file, not a pipe: nobody reads a pipe, and a full one stalls Azurite
            self._proc = subprocess.Popen(
                [
                    str(self.executable),
                    "--blobHost", self.host,
                    "--blobPort", str(self.port),
                    "--location", str(self.location),
                    "--loose",
                    # azure-storage-blob is newer than the API versions Azurite 3.37 lists.
                    "--skipApiVersionCheck",
                    "--disableTelemetry",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.location,
                # Its own process group: Ctrl-C in the terminal reaches the demo, which stops Azurite
                # after Airflow, so a delivery in progress is not cut off under a running task.
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self._proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                self._proc = None
                raise AzuriteError(f"Azurite exited at start; its log ({self.log_path}) ends:\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise AzuriteError(f"Azurite did not listen on {self.host}:{self.port} within {timeout:.0f} s")
            time.sleep(0.2)
        return self

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (Azurite saves its metadata and closes), then SIGKILL if it does not exit in time."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> AzuriteBlob:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
