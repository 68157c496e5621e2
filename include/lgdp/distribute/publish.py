"""Writing deliveries to a requester's storage, and reading back what they return. The only I/O here.

Two destinations, as the spec's ``distribution[].destination`` says:

- ``wasb``: an Azure Blob Storage container, through the azure provider's ``WasbHook`` and the
  Airflow connection named by ``conn_id`` (credentials never appear in the spec). The container is
  created if missing. The SDK's own retry policy handles transient errors; what it gives up on
  fails the task, and Airflow's retry publishes again.
- ``local``: a folder under ``LGDP_DELIVERY_DIR`` (the embedded default for demos and single-machine
  installs; under CeleryExecutor it must be a shared mount, since workers do not share disks).
  Files are written to a temporary name and renamed, so a reader never sees half a file.

Layout, for a prefix ``returns/clas``::

    returns/clas/<period>/v<delivery version>/<return>_<period>.<format>
    returns/clas/<period>/v<delivery version>/manifest.json     (written last)
    returns/clas/<period>/returned/...                            (written by the requester)

``publish`` writes every data file first and ``manifest.json`` last, so a publish that fails
part-way leaves no manifest; earlier versions' folders are never touched.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

from lgdp.distribute.formats import CONTENT_TYPES
from lgdp.distribute.manifest import MANIFEST_NAME
from lgdp.specs.model import Distribution, LocalDestination, WasbDestination

RETURNED = "returned"
UPLOAD_CONCURRENCY = 4  # parallel block uploads per file (the SDK's threads)


class DeliveryDirNotConfigured(RuntimeError):
    pass


class OutsideFolder(ValueError):
    """A path that leads outside the requester's folder (``..``, or a symbolic link out of it)."""


@dataclass(frozen=True)
class StoredFile:
    path: str  # relative to the destination's root (container + prefix, or folder)
    size: int
    modified: dt.datetime | None


class Destination(Protocol):
    """Where one requester's deliveries go; paths are relative to the requester's root."""

    location: str

    def put(self, path: str, data: bytes, content_type: str) -> None: ...

    def put_chunks(self, path: str, chunks: Iterator[bytes], content_type: str) -> None:
        """Write a file given as chunks (written while it is produced); nothing appears unless
        every chunk arrives."""
        ...

    def get(self, path: str) -> bytes: ...

    def list(self, prefix: str) -> list[StoredFile]: ...


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def version_folder(period: str, version: int) -> str:
    return join(period, f"v{int(version)}")


def returned_folder(period: str) -> str:
    return join(period, RETURNED)


class WasbFolder:
    """A container and prefix reached through ``WasbHook`` (the hook owns the connection)."""

    def __init__(self, conn_id: str, container: str, prefix: str = "") -> None:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        self.hook = WasbHook(wasb_conn_id=conn_id)
        self.container = container
        self.prefix = prefix.strip("/")
        self.location = f"wasb://{container}/{self.prefix + '/' if self.prefix else ''}"
        self._container_ready = False

    def _ensure_container(self) -> None:
        if not self._container_ready:
            from azure.core.exceptions import ResourceExistsError

            try:
                self.hook.blob_service_client.get_container_client(self.container).create_container()
            except ResourceExistsError:
                pass
            self._container_ready = True

    def put(self, path: str, data: bytes, content_type: str) -> None:
        from azure.storage.blob import ContentSettings

        self._ensure_container()
        self.hook.upload(
            self.container,
            join(self.prefix, path),
            data,
            length=len(data),
            overwrite=True,
            max_concurrency=UPLOAD_CONCURRENCY,
            content_settings=ContentSettings(content_type=content_type),
        )

    def put_chunks(self, path: str, chunks: Iterator[bytes], content_type: str) -> None:
        """The SDK pulls ``chunks`` and uploads each full block in its own threads while the next
        is produced; the blob exists only once its block list is committed, after the last chunk."""
        from azure.storage.blob import ContentSettings

        self._ensure_container()
        self.hook.upload(
            self.container,
            join(self.prefix, path),
            chunks,
            length=None,
            overwrite=True,
            max_concurrency=UPLOAD_CONCURRENCY,
            content_settings=ContentSettings(content_type=content_type),
        )

    def get(self, path: str) -> bytes:
        return self.hook.download(self.container, join(self.prefix, path)).readall()

    def list(self, prefix: str) -> list[StoredFile]:
        from azure.core.exceptions import ResourceNotFoundError

        root = join(self.prefix, prefix) + "/"
        cut = len(self.prefix) + 1 if self.prefix else 0
        client = self.hook.blob_service_client.get_container_client(self.container)
        try:
            return [
                StoredFile(b.name[cut:], int(b.size or 0), b.last_modified)
                for b in client.list_blobs(name_starts_with=root)
            ]
        except ResourceNotFoundError:  # no container yet: nothing delivered, nothing returned
            return []


class LocalFolder:
    """A folder under ``LGDP_DELIVERY_DIR``; writes are atomic renames."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = f"file://{root}/"

    def _path(self, path: str) -> Path:
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise OutsideFolder(f"{path!r} leads outside the delivery folder")
        return target

    def put(self, path: str, data: bytes, content_type: str) -> None:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.partial")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def put_chunks(self, path: str, chunks: Iterator[bytes], content_type: str) -> None:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.partial")
        try:
            with tmp.open("wb") as f:
                for chunk in chunks:
                    f.write(chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, target)

    def get(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def list(self, prefix: str) -> list[StoredFile]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        out = []
        for f in sorted(base.rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                st = f.stat()
                out.append(
                    StoredFile(
                        f.relative_to(self.root).as_posix(),
                        st.st_size,
                        dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc),
                    )
                )
        return out


def delivery_dir() -> Path:
    """``LGDP_DELIVERY_DIR``, else ``deliveries/`` in the demo's state folder (``LGDP_STATE_DIR``, .lgdp)."""
    value = os.environ.get("LGDP_DELIVERY_DIR")
    if value:
        return Path(value)
    return Path(os.environ.get("LGDP_STATE_DIR") or ".lgdp") / "deliveries"


def destination_for(dist: Distribution) -> Destination:
    """The requester's storage, as the spec names it."""
    d = dist.destination
    if isinstance(d, WasbDestination):
        return WasbFolder(d.conn_id, d.container, d.prefix)
    if isinstance(d, LocalDestination):
        return LocalFolder(delivery_dir() / d.path)
    raise TypeError(f"unknown destination type {type(d).__name__}")


def publish(dest: Destination, folder: str, files: dict[str, bytes], formats: dict[str, str], manifest: bytes) -> None:
    """Every data file, then ``manifest.json`` last: its presence means the delivery is complete."""
    for name, data in files.items():
        dest.put(join(folder, name), data, CONTENT_TYPES[formats[name]])
    publish_manifest(dest, folder, manifest)


def publish_manifest(dest: Destination, folder: str, manifest: bytes) -> None:
    """``manifest.json``: only ever called after every data file of the delivery is written."""
    dest.put(join(folder, MANIFEST_NAME), manifest, "application/json")


__all__ = [
    "RETURNED",
    "DeliveryDirNotConfigured",
    "Destination",
    "LocalFolder",
    "OutsideFolder",
    "StoredFile",
    "WasbFolder",
    "delivery_dir",
    "destination_for",
    "join",
    "publish",
    "publish_manifest",
    "returned_folder",
    "version_folder",
]
