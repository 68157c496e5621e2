"""One delivery's files, built and uploaded as a pipeline instead of one step after another.

Why: the steps of a delivery use different machines' worth of work. Reading rows is mostly the
database server's (another process), pseudonyms are this process's CPU, an upload is the
network and the storage service. Done in sequence, a 1,000,000-row delivery took three times as
long as uploading its bytes (``docs/benchmarks.md``). Here:

- a reader thread reads the accepted rows one council at a time (``select.accepted_batches``,
  its own database session) while the previous council is prepared: ``read_ahead``;
- each council's rows are prepared exactly as ``build.build`` prepares the whole table
  (pseudonyms, then suppression, then neutralisation for the text outputs: ``build.prepare``);
- the CSV (and the Parquet file, a row group at a time) is written while earlier parts of it are
  being uploaded: each file has its own ``Upload`` thread, fed through a small bounded queue, and
  the storage SDK uploads full blocks in parallel; the SHA-256 and size the manifest records are
  computed over exactly the bytes handed to the upload, not in a second pass;
- formats that need every row first (xlsx and xml: one sheet or document; Parquet when a decimal
  column's scale must be chosen from all its values) are built from the prepared councils at the
  end and uploaded in turn.

The data are the same as ``build.build`` gives for the whole table (a test checks it: the same
CSV bytes, the same Parquet rows); the manifest is still written last, by
``publish.publish_manifest``, only after every upload has completed.
"""

from __future__ import annotations

import dataclasses

import hashlib
import io
import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, TypeVar

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lgdp.distribute.build import (
    FileRecord,
    decimal_columns,
    file_name,
    prepare,
    suppression_summary,
    text_columns,
    text_file,
)
from lgdp.distribute.formats import CONTENT_TYPES, PARQUET_COMPRESSION, csv_options, neutralise, to_parquet
from lgdp.distribute.publish import Destination, join
from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import Distribution

T = TypeVar("T")
CSV_SLICE_ROWS = 65_536  # rows per CSV write: a few MB, so uploading starts early and memory stays flat
PARQUET_GROUP_ROWS = 65_536  # rows per Parquet row group at least (councils' small files are grouped)
_DONE = object()


def read_ahead(produce: Callable[[], Iterator[T]], depth: int = 1) -> Iterator[T]:
    """``produce()``'s items, produced in a thread up to ``depth`` items ahead of the consumer.

    An exception in the producer is raised in the consumer. Closing the iterator early (the
    consumer failed) stops the producer at its next item, so no thread is left behind.
    """
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        source = produce()
        try:
            for item in source:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # in this thread: e.g. the producer's database session ends here

    thread = threading.Thread(target=run, name="lgdp-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=30)


def csv_bytes(table: pa.Table, header: bool) -> bytes:
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, csv_options(header))
    return buf.getvalue()


class Upload:
    """One file streamed to ``dest`` from a thread of its own while the caller goes on computing.

    ``write`` hands chunks over through a small bounded queue (so memory stays flat and a slow
    upload slows the producer down instead of piling up), counting and hashing them on the way:
    the manifest's size and SHA-256 are of exactly the bytes uploaded. Chunks of 4 MiB match the
    SDK's block size, so each chunk is one block, uploaded in parallel with the next (the SDK's
    ``max_concurrency``). ``close`` waits for the upload and raises its error, if any;
    ``abort`` makes the upload fail, so the file never
    appears (a block blob is committed only after its last chunk; a local file is renamed into
    place only then).
    """

    def __init__(self, dest: Destination, path: str, content_type: str, depth: int = 4, chunk: int = 4 << 20) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._sha = hashlib.sha256()
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._chunk = chunk
        self.size = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(dest, path, content_type), name=f"lgdp-upload-{path.rsplit('/', 1)[-1]}", daemon=True
        )
        self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def _run(self, dest: Destination, path: str, content_type: str) -> None:
        try:
            dest.put_chunks(path, self._chunks(), content_type)
        except BaseException as exc:  # noqa: BLE001 - raised in the producer by write/close
            self.error = exc
            while True:  # unblock a producer waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def _put(self, item: object) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise RuntimeError("the upload thread ended early") from self.error

    def write(self, data: bytes) -> int:
        """Queue ``data`` (buffered into chunks of about ``chunk`` bytes)."""
        self._sha.update(data)
        self.size += len(data)
        self._buffer.append(bytes(data))
        self._buffered += len(data)
        if self._buffered >= self._chunk:
            self._flush(final=False)
        return len(data)

    def _flush(self, final: bool) -> None:
        """Queue whole chunks (and, at the end, the rest)."""
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        whole = len(data) if final else len(data) - len(data) % self._chunk
        for start in range(0, whole, self._chunk):
            self._put(data[start : min(start + self._chunk, whole)])
        rest = data[whole:]
        self._buffer, self._buffered = ([rest] if rest else []), len(rest)

    def close(self) -> None:
        self._flush(final=True)
        self._put(_DONE)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def abort(self, reason: BaseException) -> None:
        if self._thread.is_alive():
            try:
                self._queue.put(reason, timeout=5)
            except queue.Full:
                pass
            self._thread.join(timeout=30)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


class _ParquetSink:
    """The file object ``pyarrow.parquet.ParquetWriter`` writes to: straight into an ``Upload``."""

    def __init__(self, upload: Upload) -> None:
        self.upload = upload
        self.position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.position += len(data)
        return self.upload.write(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@dataclass
class Streamed:
    """What a streamed delivery wrote (the manifest's input); no row data."""

    rows: int = 0
    cells_suppressed: int = 0
    records: list[FileRecord] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    suppression: dict[str, object] | None = None


def stream_files(
    loaded: LoadedSpec,
    dist: Distribution,
    period: str,
    delivery_version: int,
    batches: Iterator[pa.Table],
    key: bytes | None,
    dest: Destination,
    folder: str,
) -> Streamed:
    """Prepare ``batches`` (one council each, in order) and write every data file of the
    requester's formats to ``dest`` under ``folder``; the caller writes the manifest after.

    CSV is streamed; Parquet too unless a decimal column needs every row to choose its scale
    (row groups of at least ``PARQUET_GROUP_ROWS`` rows); xlsx and xml are built at the end."""
    out = Streamed(columns=list(dist.columns))
    texts = text_columns(loaded, dist)
    decimals = decimal_columns(loaded, dist)
    # one-table return: clas_2025-26.csv; a table of a multi-table return: clas_children_2025-26.csv
    names = {fmt: file_name(loaded.staging_name.replace(".", "_"), period, fmt) for fmt in dist.formats}
    stream_csv = "csv" in names
    stream_parquet = "parquet" in names and not decimals
    at_end = [fmt for fmt in dist.formats if fmt not in ("csv", "parquet") or (fmt == "parquet" and not stream_parquet)]
    uploads: dict[str, Upload] = {}
    records: dict[str, FileRecord] = {}
    kept: list[pa.Table] = []  # prepared rows for the formats built at the end
    group: list[pa.Table] = []  # prepared rows waiting to be a Parquet row group
    writer: pq.ParquetWriter | None = None
    first_csv = True
    try:
        for fmt in ("csv", "parquet"):
            if (fmt == "csv" and stream_csv) or (fmt == "parquet" and stream_parquet):
                uploads[fmt] = Upload(dest, join(folder, names[fmt]), CONTENT_TYPES[fmt])
        for batch in batches:
            table, cells = prepare(batch, dist, key)
            out.rows += table.num_rows
            out.cells_suppressed += cells
            if stream_csv and (table.num_rows or first_csv):
                safe = neutralise(table, texts)
                for start in range(0, max(safe.num_rows, 1), CSV_SLICE_ROWS):
                    uploads["csv"].write(csv_bytes(safe.slice(start, CSV_SLICE_ROWS), header=first_csv))
                    first_csv = False
            if stream_parquet:
                group.append(table)
                if sum(t.num_rows for t in group) >= PARQUET_GROUP_ROWS:
                    writer = _write_group(writer, group, uploads["parquet"])
            if at_end:
                kept.append(table)
        empty = _empty(loaded, dist, key)
        if stream_csv:
            if first_csv:  # no council at all: still a file with its header row
                uploads["csv"].write(csv_bytes(empty, header=True))
        if stream_parquet:
            if group or writer is None:
                writer = _write_group(writer, group or [empty], uploads["parquet"])
            writer.close()
        for fmt, upload in uploads.items():
            upload.close()
            records[fmt] = FileRecord(names[fmt], fmt, upload.size, upload.sha256)
    except BaseException as exc:
        for upload in uploads.values():
            upload.abort(exc)
        raise
    if at_end:
        table = pa.concat_tables(kept) if kept else _empty(loaded, dist, key)
        kept.clear()
        safe: pa.Table | None = None
        for fmt in at_end:
            if fmt == "parquet":
                data = to_parquet(table, decimals)
            else:
                if safe is None:
                    safe = neutralise(table, texts)
                data = text_file(loaded, dist, period, delivery_version, fmt, safe, raw=table)
            dest.put(join(folder, names[fmt]), data, CONTENT_TYPES[fmt])
            records[fmt] = FileRecord(names[fmt], fmt, len(data), hashlib.sha256(data).hexdigest())
            del data
    out.records = [records[fmt] for fmt in dist.formats]
    if loaded.table_name is not None:
        out.records = [dataclasses.replace(r, rows=out.rows, table=loaded.table_name) for r in out.records]
    out.suppression = suppression_summary(dist, out.cells_suppressed)
    return out


def _write_group(writer: pq.ParquetWriter | None, group: list[pa.Table], upload: Upload) -> pq.ParquetWriter:
    table = pa.concat_tables(group)
    group.clear()
    if writer is None:
        writer = pq.ParquetWriter(_ParquetSink(upload), table.schema, compression=PARQUET_COMPRESSION)
    writer.write_table(table, row_group_size=max(table.num_rows, 1))
    return writer


def _empty(loaded: LoadedSpec, dist: Distribution, key: bytes | None) -> pa.Table:
    from lgdp.distribute.select import arrow_type

    schema = pa.schema([(c, arrow_type(loaded.item(c).type)) for c in dist.columns])
    return prepare(schema.empty_table(), dist, key)[0]


__all__ = [
    "CSV_SLICE_ROWS",
    "PARQUET_GROUP_ROWS",
    "Streamed",
    "Upload",
    "csv_bytes",
    "read_ahead",
    "stream_files",
]
