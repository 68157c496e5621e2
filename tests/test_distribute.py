"""Distribution against real services: a real PostgreSQL ledger with councils' files accepted through
the collection step (``process_file``), and a real Azurite read back with the azure SDK the way a
requester would read their container. Nothing is mocked.

The test specs are CLAS and temporary accommodation for two councils; CLAS's second requester is
moved to its own Azure container so that each container can be checked against its requester's
entitlement.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import json
import re
import shutil
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from lgdp.ledger.db import engine

ROOT = Path(__file__).resolve().parents[1]
EDINBURGH, GLASGOW = "S12000036", "S12000049"
SG_KEY = "sg-test-key-not-a-secret-0123456789"
SG_PREFIX = "returns/clas"
IS_CONTAINER = "clas-benchmarking"


@pytest.fixture
def specs(tmp_path, monkeypatch, azurite):
    """CLAS and temporary accommodation for Edinburgh and Glasgow, windows open for 500 days."""
    folder = tmp_path / "specs"
    shutil.copytree(ROOT / "return_specs" / "shared", folder / "shared")
    for name in ("clas", "temporary_accommodation_monthly"):
        text_ = (ROOT / "tests" / "specs_one_table" / f"{name}.yaml").read_text()
        text_ = text_.replace("providers: all", f"providers: [{EDINBURGH}, {GLASGOW}]")
        text_ = re.sub(r"closes_days_after_opening: \d+", "closes_days_after_opening: 500", text_)
        text_ = text_.replace(
            "destination: {type: local, path: improvement_service/clas}",
            f"destination: {{type: wasb, conn_id: wasb_improvement_service, container: {IS_CONTAINER}}}",
        )
        (folder / f"{name}.yaml").write_text(text_)
    monkeypatch.setenv("LGDP_SPECS_DIR", str(folder))
    monkeypatch.setenv("LGDP_DELIVERY_DIR", str(tmp_path / "deliveries"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_LGDP_PSEUDONYM_KEY_SCOTTISH_GOVERNMENT",
        json.dumps({"conn_type": "generic", "password": SG_KEY}),
    )
    azurite.connect("wasb_scottish_government")
    azurite.connect("wasb_improvement_service")
    return folder


def _loaded(return_id: str = "clas"):
    from lgdp.specs.load import load_register

    return load_register().get(return_id)


def _current(loaded):
    from lgdp.periods import period_opening_at

    return period_opening_at(loaded.spec.collection, dt.datetime.now(dt.timezone.utc))


def _previous(loaded, period):
    from lgdp.periods import period_containing

    return period_containing(loaded.spec.collection, period.starts_on - dt.timedelta(days=1))


def _open(loaded, period) -> None:
    from lgdp.ledger.db import session
    from lgdp.ledger.register import open_period

    with session() as s, s.begin():
        open_period(s, loaded, period)


class _KeepOpen(io.BytesIO):
    """The CSV writer closes its target; keep the bytes readable."""

    def close(self) -> None:
        pass


def _accept(loaded, label: str, council: str, rows: list[dict] | None = None, n: int | None = 40, seed: int = 1, etag: str = "1"):
    """A council's file through the collection step; it must be accepted."""
    from lgdp.collect.process import process_file
    from lgdp.synth import rows as synth_rows
    from lgdp.synth import write_rows

    fmt = loaded.spec.formats[0]
    if rows is None:
        rows = synth_rows(loaded, council, label, n, seed=seed).rows
    buf = _KeepOpen()
    write_rows(loaded, rows, fmt, buf, council, label)
    ref = {"id": f"{council}-{etag}", "name": f"{loaded.id}.{fmt}", "etag": etag, "last_modified": None, "last_modified_by": None}
    outcome = process_file(loaded, label, council, ref, buf.getvalue())
    assert outcome.status == "accepted", [i.message for i in outcome.issues][:5]
    return rows


def _dist(loaded, requester: str):
    return next(d for d in loaded.spec.distribution if d.requester == requester)


def _deliver(loaded, label: str, requester: str):
    from lgdp.airflow.distribute import connection_password
    from lgdp.distribute.deliver import deliver

    return deliver(loaded, label, _dist(loaded, requester), key_lookup=connection_password)


def _staged(return_id: str, column: str) -> list:
    with engine().connect() as conn:
        return [r[0] for r in conn.execute(text(f'SELECT "{column}" FROM lgdp_staging."{return_id}" ORDER BY 1'))]


def _pseudonym(value: str) -> str:
    return hmac.new(SG_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def _check_manifest(blobs: dict[str, bytes], folder: str) -> dict:
    manifest = json.loads(blobs[f"{folder}/manifest.json"])
    for f in manifest["files"]:
        data = blobs[f"{folder}/{f['name']}"]
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
    assert sorted(blobs) == sorted([f"{folder}/{f['name']}" for f in manifest["files"]] + [f"{folder}/manifest.json"])
    return manifest


def test_each_requester_gets_its_columns_pseudonyms_and_a_manifest_that_checks(specs, azurite, clean_ledger):
    loaded = _loaded()
    period = _current(loaded)
    _open(loaded, period)
    ed = _accept(loaded, period.label, EDINBURGH, n=40, seed=1)
    gl = _accept(loaded, period.label, GLASGOW, n=25, seed=2)

    sg = _deliver(loaded, period.label, "scottish_government")
    bench = _deliver(loaded, period.label, "improvement_service")
    assert sg.published and sg.version == 1 and sg.reason == "all_accepted" and sg.missing == []
    assert bench.published and bench.rows == 65

    folder = f"{SG_PREFIX}/{period.label}/v1"
    blobs = azurite.blobs("clas")
    manifest = _check_manifest(blobs, folder)
    dist = _dist(loaded, "scottish_government")
    assert manifest["return"] == {"id": "clas", "title": loaded.spec.title, "spec_version": loaded.spec.version}
    assert manifest["period"] == period.label and manifest["delivery_version"] == 1 and manifest["complete"] is True
    assert [(c["code"], c["rows"], c["submission_version"]) for c in manifest["councils_included"]] == [
        (EDINBURGH, 40, 1), (GLASGOW, 25, 1)
    ]
    assert manifest["councils_missing"] == [] and manifest["rows"] == 65
    assert manifest["validation"]["councils_validated"] == 2 and manifest["validation"]["errors"] == 0

    table = pacsv.read_csv(io.BytesIO(blobs[f"{folder}/clas_{period.label}.csv"]))
    parquet = pq.read_table(io.BytesIO(blobs[f"{folder}/clas_{period.label}.parquet"]))
    assert table.column_names == list(dist.columns) == parquet.column_names
    assert table.num_rows == parquet.num_rows == 65
    raw_ids = [r["child_id"] for r in ed + gl]
    assert parquet.column("child_id").to_pylist() == [_pseudonym(v) for v in raw_ids]
    assert table.column("child_id").to_pylist() == [_pseudonym(v) for v in raw_ids]

    # Nothing in the Scottish Government's container carries a raw identifier ...
    everything = b"".join(blobs.values())
    assert not any(v.encode() in everything for v in raw_ids + [r["scn"] for r in ed + gl if r.get("scn")])
    # ... and the benchmarking container holds only the benchmarking columns: no identifiers at all.
    is_blobs = azurite.blobs(IS_CONTAINER)
    is_manifest = _check_manifest(is_blobs, f"{period.label}/v1")
    assert is_manifest["pseudonymised"] == [] and is_manifest["rows"] == 65
    is_table = pacsv.read_csv(io.BytesIO(is_blobs[f"{period.label}/v1/clas_{period.label}.csv"]))
    assert is_table.column_names == list(_dist(loaded, "improvement_service").columns)
    assert not {"child_id", "scn", "date_of_birth", "ethnicity"} & set(is_table.column_names)
    is_all = b"".join(is_blobs.values())
    assert not any(v.encode() in is_all or _pseudonym(v).encode() in is_all for v in raw_ids)

    # A rerun with nothing new publishes nothing new.
    again = _deliver(loaded, period.label, "scottish_government")
    assert not again.published and again.version == 1
    assert azurite.blobs("clas") == blobs


def test_pseudonyms_are_stable_across_periods(specs, azurite, clean_ledger):
    loaded = _loaded()
    this = _current(loaded)
    last = _previous(loaded, this)
    for p in (last, this):
        _open(loaded, p)
    old = _accept(loaded, last.label, EDINBURGH, n=20, seed=5)
    _accept(loaded, last.label, GLASGOW, n=5, seed=6)
    from lgdp.synth import rows as synth_rows

    new = synth_rows(loaded, EDINBURGH, this.label, 20, seed=7).rows
    for i in range(5):  # five children still looked after this year: the council keeps their ids
        new[i]["child_id"] = old[i]["child_id"]
    _accept(loaded, this.label, EDINBURGH, rows=new)
    _accept(loaded, this.label, GLASGOW, n=5, seed=8)
    for p in (last, this):
        assert _deliver(loaded, p.label, "scottish_government").published

    blobs = azurite.blobs("clas")

    def ids(label: str) -> list[str]:
        return pq.read_table(io.BytesIO(blobs[f"{SG_PREFIX}/{label}/v1/clas_{label}.parquet"])).column("child_id").to_pylist()

    before, after = ids(last.label), ids(this.label)
    assert after[:5] == before[:5]  # the same child links year to year
    assert after[:20] == [_pseudonym(r["child_id"]) for r in new]  # Edinburgh first, in file order


def test_small_numbers_are_suppressed_in_the_aggregate_output(specs, azurite, clean_ledger):
    from openpyxl import load_workbook

    loaded = _loaded("temporary_accommodation_monthly")
    period = _current(loaded)
    _open(loaded, period)
    _accept(loaded, period.label, EDINBURGH, n=None, seed=3)  # one row per accommodation type
    _accept(loaded, period.label, GLASGOW, n=None, seed=4)
    result = _deliver(loaded, period.label, "public_dashboard")
    assert result.published

    dist = _dist(loaded, "public_dashboard")
    folder = Path(specs).parent / "deliveries" / dist.destination.path / period.label / "v1"
    manifest = json.loads((folder / "manifest.json").read_text())
    for f in manifest["files"]:
        assert hashlib.sha256((folder / f["name"]).read_bytes()).hexdigest() == f["sha256"]
    items = dist.suppression.items
    small = sum(1 for item in items for v in _staged(loaded.id, item) if v is not None and v < dist.suppression.threshold)
    assert small > 0
    assert manifest["suppression"] == {"threshold": 5, "items": list(items), "marker": "[c]", "cells_suppressed": small}

    csv = pacsv.read_csv(folder / f"{loaded.id}_{period.label}.csv", convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    seen_marker = 0
    for item in items:
        for v in csv.column(item).to_pylist():
            if v == "[c]":
                seen_marker += 1
            elif v is not None:
                assert int(v) >= 5
    assert seen_marker == small
    ws = load_workbook(folder / f"{loaded.id}_{period.label}.xlsx", read_only=True).active
    rows = list(ws.iter_rows(values_only=True))
    header = list(rows[0])
    cells = [r[header.index(item)] for r in rows[1:] for item in items]
    assert sum(c == "[c]" for c in cells) == small
    assert all(c is None or c == "[c]" or int(c) >= 5 for c in cells)


def test_a_late_council_makes_version_2_and_version_1_stays(specs, azurite, clean_ledger):
    loaded = _loaded()
    period = _current(loaded)
    _open(loaded, period)
    _accept(loaded, period.label, EDINBURGH, n=10, seed=1)

    first = _deliver(loaded, period.label, "scottish_government")  # as at the close: Glasgow missing
    assert first.published and first.version == 1 and first.reason == "closed" and first.missing == [GLASGOW]
    v1 = azurite.blobs("clas", f"{SG_PREFIX}/{period.label}/v1/")
    m1 = _check_manifest(v1, f"{SG_PREFIX}/{period.label}/v1")
    assert m1["complete"] is False and [c["code"] for c in m1["councils_missing"]] == [GLASGOW] and m1["rows"] == 10

    assert not _deliver(loaded, period.label, "scottish_government").published  # nothing new

    _accept(loaded, period.label, GLASGOW, n=7, seed=2)
    second = _deliver(loaded, period.label, "scottish_government")
    assert second.published and second.version == 2 and second.reason == "late" and second.missing == []
    m2 = _check_manifest(azurite.blobs("clas", f"{SG_PREFIX}/{period.label}/v2/"), f"{SG_PREFIX}/{period.label}/v2")
    assert m2["supersedes_version"] == 1 and m2["complete"] is True and m2["rows"] == 17
    assert azurite.blobs("clas", f"{SG_PREFIX}/{period.label}/v1/") == v1  # version 1 untouched


def test_an_outage_mid_publish_leaves_no_manifest_and_the_retry_completes(specs, azurite, clean_ledger):
    from lgdp.distribute.deliver import deliveries
    from lgdp.ledger.db import session

    loaded = _loaded()
    period = _current(loaded)
    _open(loaded, period)
    _accept(loaded, period.label, EDINBURGH, n=300, seed=1)
    _accept(loaded, period.label, GLASGOW, n=300, seed=2)
    proxy = azurite.outage_proxy()
    azurite.connect("wasb_scottish_government", port=proxy.port, retry_total=0)
    proxy.cut_after(30_000)  # the CSV (about 60 kB) is cut part-way; the connection then refuses

    with pytest.raises(Exception):
        _deliver(loaded, period.label, "scottish_government")
    assert proxy.cuts >= 1
    folder = f"{SG_PREFIX}/{period.label}/v1"
    assert f"{folder}/manifest.json" not in azurite.blobs("clas")
    with session() as s:
        [row] = deliveries(s, "clas", period.label, "scottish_government")
        assert row.status == "publishing" and row.error and row.manifest_sha256 is None

    proxy.restore()
    retried = _deliver(loaded, period.label, "scottish_government")
    assert retried.published and retried.version == 1  # the same version, finished
    manifest = _check_manifest(azurite.blobs("clas"), folder)
    assert manifest["rows"] == 600
    with session() as s:
        [row] = deliveries(s, "clas", period.label, "scottish_government")
        assert row.status == "published" and row.attempts == 2 and row.error is None


def test_formula_injection_is_neutralised_in_text_outputs(specs):
    import pyarrow as pa
    from openpyxl import load_workbook

    from lgdp.distribute.build import build
    from lgdp.specs.model import Distribution

    loaded = _loaded()
    dist = Distribution(
        requester="test_requester", name="Test", contact_email="t@example.org",
        destination={"type": "local", "path": "t"}, formats=["csv", "xlsx", "xml", "parquet"],
        columns=["council_code", "child_id", "number_of_placements"],
    )
    values = ["=HYPERLINK(\"http://evil.example.org\")", "+1", "-2+3", "@SUM(A1)", "\t=1", "ok", None, ""]
    table = pa.table({
        "council_code": [EDINBURGH] * len(values),
        "child_id": values,
        "number_of_placements": [-1, 1, 2, 3, 4, 5, None, 7],
    })
    built = build(loaded, dist, "2025-26", 1, table, None)
    expected = ["'" + v if v and v[0] in "=+-@\t" else v for v in values]

    csv = pacsv.read_csv(io.BytesIO(built.files["clas_2025-26.csv"]), convert_options=pacsv.ConvertOptions(strings_can_be_null=True, quoted_strings_can_be_null=False))
    assert csv.column("child_id").to_pylist() == expected
    assert csv.column("number_of_placements").to_pylist() == [-1, 1, 2, 3, 4, 5, None, 7]  # numbers untouched
    ws = load_workbook(io.BytesIO(built.files["clas_2025-26.xlsx"])).active
    cells = [c.value for c in ws["B"][1:]]
    # xlsx: text cells, never run, so the values are as accepted (no apostrophe needed)
    assert cells[:6] == values[:6] and all(c.data_type == "s" for c in ws["B"][1:7])
    xml = built.files["clas_2025-26.xml"].decode()
    assert "<child_id>'=HYPERLINK(&quot;" in xml or "<child_id>'=HYPERLINK(\"" in xml
    assert "<child_id>'@SUM(A1)</child_id>" in xml
    parquet = pq.read_table(io.BytesIO(built.files["clas_2025-26.parquet"]))
    assert parquet.column("child_id").to_pylist() == values  # typed data for programs: unchanged


def test_requester_sign_off_is_archived_and_recorded_as_the_final_state(specs, azurite, clean_ledger):
    from lgdp.distribute.publish import destination_for
    from lgdp.distribute.signoff import collect_returned, final_state
    from lgdp.ingest.archive import read_archived
    from lgdp.ledger.db import session

    loaded = _loaded()
    period = _current(loaded)
    _open(loaded, period)
    _accept(loaded, period.label, EDINBURGH, n=5)
    _accept(loaded, period.label, GLASGOW, n=5, seed=2)
    assert _deliver(loaded, period.label, "scottish_government").published

    container = azurite.service().get_container_client("clas")  # the requester writes back with the SDK
    final_csv = b"council_code,child_id\nS12000036,abc\n"
    note = json.dumps({"delivery_version": 1, "status": "final", "by": "cla-statistics@sg.example.org"}).encode()
    container.upload_blob(f"{SG_PREFIX}/{period.label}/returned/clas_final.csv", final_csv)
    container.upload_blob(f"{SG_PREFIX}/{period.label}/returned/signoff.json", note)

    dest = destination_for(_dist(loaded, "scottish_government"))
    with session() as s, s.begin():
        recorded = collect_returned(s, "clas", period.label, "scottish_government", dest)
    assert sorted((r.path.rsplit("/", 1)[1], r.kind, r.delivery_version) for r in recorded) == [
        ("clas_final.csv", "data", None), ("signoff.json", "signoff", 1)
    ]
    with session() as s, s.begin():
        assert collect_returned(s, "clas", period.label, "scottish_government", dest) == []  # idempotent
    with session() as s:
        final = final_state(s, "clas", period.label, "scottish_government")
        assert final is not None and final.path.startswith(f"{period.label}/returned/")
        assert read_archived(s, hashlib.sha256(final_csv).hexdigest()) == final_csv
        assert read_archived(s, hashlib.sha256(note).hexdigest()) == note


def test_streamed_delivery_has_the_same_data_as_building_it_whole_in_file_order(specs, azurite, clean_ledger, tmp_path, monkeypatch):
    """The pipeline (a council at a time, CSV and Parquet uploaded while written) gives the bytes
    ``build`` gives for the whole table, in each council's file order even when the database
    returns a council's rows out of order."""
    from lgdp.distribute import stream
    from lgdp.distribute.build import build
    from lgdp.distribute.publish import LocalFolder
    from lgdp.distribute.select import accepted_batches, accepted_set, read_accepted
    from lgdp.distribute.stream import stream_files
    from lgdp.ledger.db import session

    monkeypatch.setattr(stream, "CSV_SLICE_ROWS", 7)  # several slices and row groups per council
    monkeypatch.setattr(stream, "PARQUET_GROUP_ROWS", 10)
    loaded = _loaded()
    period = _current(loaded)
    _open(loaded, period)
    ed = _accept(loaded, period.label, EDINBURGH, n=30, seed=1)
    gl = _accept(loaded, period.label, GLASGOW, n=17, seed=2)
    with engine().begin() as conn:  # an updated row moves to the end of its partition's heap
        conn.execute(text('UPDATE lgdp_staging."clas" SET sex = sex WHERE _council_code = :c AND _row_number = 3'), {"c": EDINBURGH})
    dist = _dist(loaded, "scottish_government").model_copy(update={"formats": ["csv", "parquet", "xml"]})
    key = SG_KEY.encode()
    with session() as s:
        accepted = accepted_set(s, loaded, period.label)
        whole = build(loaded, dist, period.label, 1, read_accepted(s, loaded, accepted, dist), key)
        dest = LocalFolder(tmp_path / "out")
        streamed = stream_files(loaded, dist, period.label, 1, accepted_batches(s, loaded, accepted, dist), key, dest, "v1")

    name = f"clas_{period.label}"
    written = {p.name: p.read_bytes() for p in (tmp_path / "out" / "v1").iterdir()}
    assert sorted(written) == sorted(whole.files)  # nothing partial left behind
    assert written[f"{name}.csv"] == whole.files[f"{name}.csv"]
    assert written[f"{name}.xml"] == whole.files[f"{name}.xml"]
    ours, theirs = (pq.read_table(io.BytesIO(b)) for b in (written[f"{name}.parquet"], whole.files[f"{name}.parquet"]))
    assert ours.equals(theirs) and pq.ParquetFile(io.BytesIO(written[f"{name}.parquet"])).num_row_groups == 2
    assert [(r.name, r.size, r.sha256) for r in streamed.records] == [
        (n, len(written[n]), hashlib.sha256(written[n]).hexdigest()) for n in whole.files
    ]
    assert streamed.rows == whole.rows == 47
    csv = pacsv.read_csv(io.BytesIO(written[f"{name}.csv"]))
    assert csv.column("child_id").to_pylist() == [_pseudonym(r["child_id"]) for r in ed + gl]


def test_a_failure_while_streaming_leaves_no_file(specs, tmp_path):
    import pyarrow as pa

    from lgdp.distribute.publish import LocalFolder
    from lgdp.distribute.stream import read_ahead, stream_files

    loaded = _loaded()
    dist = _dist(loaded, "improvement_service").model_copy(update={"formats": ["csv", "parquet"]})
    from lgdp.distribute.select import arrow_type

    schema = pa.schema([(c, arrow_type(loaded.item(c).type)) for c in dist.columns])

    def councils():
        yield schema.empty_table()
        raise ConnectionError("the database went away")

    with pytest.raises(ConnectionError, match="went away"):
        stream_files(loaded, dist, "2025-26", 1, read_ahead(councils), None, LocalFolder(tmp_path / "out"), "v1")
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []

    # Closing the read-ahead early stops its thread.
    produced = []

    def endless():
        while True:
            produced.append(1)
            yield len(produced)

    it = read_ahead(endless)
    assert next(it) == 1
    it.close()
    n = len(produced)
    import time as _time

    _time.sleep(0.5)
    assert len(produced) <= n + 1
