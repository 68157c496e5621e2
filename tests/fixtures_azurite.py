"""The ``azurite`` fixture: a real Azure Blob Storage emulator (Azurite, from npm) for the tests.

Registered by ``pytest_plugins`` in ``conftest.py``. One ``azurite-blob`` process per pytest
session (``node_modules/.bin/azurite-blob``, installed by ``make install`` from package-lock.json)
on a free port, in-memory. Each test that asks for ``azurite`` gets an emptied account and
``azurite.connect(conn_id)`` to point an Airflow ``wasb`` connection at it
(``AIRFLOW_CONN_<ID>`` with a ``connection_string`` extra, undone after the test).

``azurite.outage_proxy()`` starts a real TCP proxy in front of Azurite that can be cut after a
number of bytes sent upstream (``cut_after``) and restored (``restore``): an outage in the middle
of a publish, as a requester's storage would have one, without stopping the in-memory emulator
(which would lose its contents).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
# Azurite's published development key (the same in every Azurite install; not a secret).
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


class OutageProxy:
    """TCP proxy to Azurite: forwards until ``cut_after`` bytes went upstream, then refuses everything."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = _free_port()
        self.budget: int | None = None
        self.down = False
        self.cuts = 0
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after(self, n_bytes: int) -> None:
        with self._lock:
            self.budget = n_bytes

    def restore(self) -> None:
        with self._lock:
            self.budget, self.down = None, False

    def close(self) -> None:
        self._stop = True
        self._server.close()
        self._drop_all()

    def _drop_all(self) -> None:
        with self._lock:
            socks, self._socks = list(self._socks), set()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if counted:
                    with self._lock:
                        if self.budget is not None:
                            self.budget -= len(data)
                            if self.budget < 0:
                                self.down = True
                    if self.down:
                        self.cuts += 1
                        self._drop_all()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass


class Azurite:
    def __init__(self, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.port = port
        self.connection_string = connection_string(port)
        self._monkeypatch = monkeypatch
        self._proxies: list[OutageProxy] = []

    def service(self, port: int | None = None) -> Any:
        """A ``BlobServiceClient`` as a requester would use it (the azure SDK, nothing of ours)."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(connection_string(port or self.port))

    def connect(self, conn_id: str, port: int | None = None, **extra: Any) -> None:
        """Point the Airflow ``wasb`` connection ``conn_id`` at Azurite (or at a proxy's port)."""
        conn = {
            "conn_type": "wasb",
            "extra": {"connection_string": connection_string(port or self.port), **extra},
        }
        self._monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))

    def outage_proxy(self) -> OutageProxy:
        proxy = OutageProxy(self.port)
        self._proxies.append(proxy)
        return proxy

    def blobs(self, container: str, prefix: str = "") -> dict[str, bytes]:
        client = self.service().get_container_client(container)
        if not client.exists():
            return {}
        return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs(name_starts_with=prefix)}

    def reset(self) -> None:
        svc = self.service()
        for c in svc.list_containers():
            svc.delete_container(c.name)

    def close(self) -> None:
        for p in self._proxies:
            p.close()


@pytest.fixture(scope="session")
def azurite_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if not AZURITE.exists():
        pytest.fail(f"{AZURITE} is missing: run `make install` (it runs `npm ci` for Azurite)")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("azurite")
    log = (workdir / "azurite.log").open("wb")
    proc = subprocess.Popen(
        [
            str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
            "--loose", "--skipApiVersionCheck",
        ],
        stdout=log,  # a file, not a pipe: nobody reads a pipe, and a full one would stall Azurite
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = (workdir / "azurite.log").read_text(errors="replace")
            pytest.fail(f"Azurite exited with {proc.returncode}: {out[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("Azurite did not start listening within 60 s")
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def azurite(azurite_port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[Azurite]:
    az = Azurite(azurite_port, monkeypatch)
    az.reset()
    try:
        yield az
    finally:
        az.close()
