"""``parse_submission``: detect, read, map headers, type, check identity; never raise for bad input."""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from lgdp.issues import Issue
from lgdp.parse import readers
from lgdp.parse.codes import CODES, issue
from lgdp.parse.coerce import ARROW_TYPES, blank_to_null, coerce_column
from lgdp.parse.headers import HeaderMap, header_issues, map_headers, normalise
from lgdp.parse.limits import MB, Limits
from lgdp.parse.readers import FORMAT_WORDS, Context, RawTable, Stop
from lgdp.specs.load import LoadedSpec

log = logging.getLogger(__name__)

ROW_NUMBER = "_row_number"
EXTENSIONS = {"xlsx": "xlsx", "xlsm": "xlsx", "xls": "xls", "csv": "csv", "txt": "csv", "tsv": "csv", "xml": "xml"}
NOT_DATA_SHEETS = {"guidance", "lists", "list", "instructions", "notes", "readme", "codes"}
# Header rows matching less than this share of a return's required items make us look for a
# return they fit better (ID-002) before listing missing columns.
POOR_MATCH = 0.5
OTHER_MATCH = 0.6


@dataclass
class ParseResult:
    table: pa.Table | None
    issues: list[Issue]
    readable: bool
    format: str | None
    rows: int
    details: dict[str, Any] = field(default_factory=dict)
    """How the file was read: encoding, delimiter, sheet, seconds (never row data)."""
    tables: dict[str, pa.Table] | None = None
    """A return of several tables: each table's typed rows (None unless every table was read)."""

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def queries(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "query"]

    @property
    def clean(self) -> bool:
        return self.readable and not self.issues


def schema_for(loaded: LoadedSpec) -> pa.Schema:
    """The typed table's schema: one column per item in spec order, then ``_row_number``."""
    return pa.schema([pa.field(it.name, ARROW_TYPES[it.type]) for it in loaded.items] + [pa.field(ROW_NUMBER, pa.int64())])


def parse_submission(
    loaded: LoadedSpec,
    filename: str,
    data: bytes,
    *,
    council_code: str | None = None,
    limits: Limits | None = None,
    others: Sequence[LoadedSpec] | None = None,
) -> ParseResult:
    """Read ``data`` (the bytes of ``filename``) as a submission of ``loaded``.

    ``council_code`` is the GSS code of the council whose folder the file came from (rows naming
    another council are ID-001). ``others`` are the other returns, used to recognise a file sent
    for a different return (ID-002); by default the register is loaded once and cached.
    """
    if loaded.multi:  # one sheet (or CSV file) per table: lgdp.parse.tables reads each with this function
        from lgdp.parse.tables import parse_tables

        return parse_tables(loaded, filename, data, council_code=council_code, limits=limits)
    limits = limits or Limits.from_env()
    started = time.monotonic()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = _parse(loaded, filename, data, council_code, limits, others, started)
        except BaseException as exc:  # noqa: BLE001 - turned into FILE-001 below
            box["error"] = exc

    worker = threading.Thread(target=run, name="lgdp-parse", daemon=True)
    worker.start()
    worker.join(limits.parse_timeout_s + 1.0)
    contact = loaded.spec.governance.contact_email
    if worker.is_alive():
        log.warning("reading a %s submission gave up after %.0f s", loaded.id, limits.parse_timeout_s)
        found = issue("FILE-009", limit_s=f"{limits.parse_timeout_s:g}", contact=contact)
        return ParseResult(None, [found], False, None, 0, {"seconds": round(time.monotonic() - started, 3)})
    if "error" in box:
        exc = box["error"]
        log.warning("unexpected %s while reading a %s submission", type(exc).__name__, loaded.id)
        detail = "it is too large to read" if isinstance(exc, MemoryError) else "an unexpected problem stopped it being read"
        found = issue("FILE-001", detail=detail, accepted=_accepted(loaded))
        return ParseResult(None, [found], False, None, 0, {"seconds": round(time.monotonic() - started, 3)})
    result: ParseResult = box["result"]
    result.details["seconds"] = round(time.monotonic() - started, 3)
    log.info("read a %s submission: format=%s rows=%d issues=%d in %.2f s", loaded.id, result.format,
             result.rows, len(result.issues), result.details["seconds"])
    return result


def _accepted(loaded: LoadedSpec) -> str:
    return " or ".join(FORMAT_WORDS[f] for f in loaded.spec.formats)


def unsafe_name(name: str) -> str | None:
    """Why a file name is unsafe, or None. The name is never used as a path; this protects the archive and the officer."""
    if not name or not name.strip():
        return "it is empty"
    if len(name) > 200:
        return "it is longer than 200 characters"
    if "/" in name or "\\" in name:
        return "it contains a folder path (/ or \\)"
    if name.strip(". ") == "" or ".." in name:
        return "it contains '..', which refers to another folder"
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        return "it contains control or invisible characters"
    if ":" in name:
        return "it contains ':'"
    return None


@lru_cache(maxsize=4)
def _register_specs(key: str) -> tuple[LoadedSpec, ...]:
    from lgdp.specs.load import load_register

    try:
        return tuple(load_register().specs)
    except Exception:  # noqa: BLE001 - ID-002 is a courtesy; a register problem must not stop parsing
        return ()


def _other_specs(loaded: LoadedSpec, others: Sequence[LoadedSpec] | None) -> list[LoadedSpec]:
    if others is None:
        from lgdp.specs.paths import specs_dir

        others = _register_specs(str(specs_dir()))
    return [o for o in others if o.id != loaded.id]


def _parse(
    loaded: LoadedSpec,
    filename: str,
    data: bytes,
    council_code: str | None,
    limits: Limits,
    others: Sequence[LoadedSpec] | None,
    started: float,
) -> ParseResult:
    spec = loaded.spec
    ctx = Context(limits, started + limits.parse_timeout_s, _accepted(loaded), spec.governance.contact_email, spec.dataset)
    issues: list[Issue] = []
    fmt: str | None = None
    try:
        why = unsafe_name(filename)
        if why:
            shown = "".join(ch if ch.isprintable() else "?" for ch in filename[:80])
            raise Stop(issue("FILE-010", name=f"'{shown}'", detail=why))
        if len(data) > limits.max_file_bytes:
            raise Stop(issue("FILE-002", size_mb=f"{len(data) / MB:,.1f}", limit_mb=f"{limits.max_file_mb:g}", contact=ctx.contact))
        if not data or (not data[:4096].strip(b" \t\r\n\x00\xef\xbb\xbf") and not data.strip(b" \t\r\n\x00\xef\xbb\xbf")):
            raise Stop(issue("FILE-006"))
        kind = readers.sniff(data)
        if kind == "ole2":
            if readers.ole2_kind(data) == "encrypted":
                raise Stop(issue("FILE-004"))
            raise Stop(issue("FILE-012"))
        found_words = {"pdf": "a PDF document", "html": "a web page (HTML)"}
        if kind in found_words:
            raise Stop(issue("FILE-008", found=found_words[kind], accepted=ctx.accepted))
        fmt = {"zip": "xlsx", "xml": "xml", "text": "csv"}[kind]
        if fmt not in spec.formats:
            raise Stop(issue("FILE-008", found=FORMAT_WORDS[fmt], accepted=ctx.accepted))
        ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if ext in EXTENSIONS and EXTENSIONS[ext] != fmt:
            issues.append(issue("FILE-013", ext=ext, found=FORMAT_WORDS[fmt]))
        other_specs: list[LoadedSpec] | None = None

        def others_() -> list[LoadedSpec]:
            nonlocal other_specs
            if other_specs is None:
                other_specs = _other_specs(loaded, others)
            return other_specs

        if fmt == "csv":
            raw = readers.read_csv(data, ctx)
        elif fmt == "xlsx":
            raw = readers.read_xlsx(data, ctx, _sheet_chooser(loaded))
        else:
            raw = readers.read_xml(data, ctx, [it.name for it in loaded.items], _schema(loaded))
        ctx.check_time()
        issues += raw.issues
        return _finish(loaded, raw, issues, council_code, ctx, others_)
    except Stop as stop:
        issues.append(stop.issue)
        readable = not CODES[stop.issue.code].stops_reading
        return ParseResult(None, issues, readable, fmt, 0)


def _sheet_chooser(loaded: LoadedSpec):
    want = normalise(loaded.spec.dataset)

    def choose(sheets: list[str]) -> str | None:
        for s in sheets:
            if normalise(s) == want:
                return s
        for s in sheets:
            if normalise(s) not in NOT_DATA_SHEETS:
                return s
        return None

    return choose


_SCHEMAS: dict[tuple[str, str], Any] = {}
_SCHEMA_LOCK = threading.Lock()


def _schema(loaded: LoadedSpec) -> Any:
    """The compiled XML Schema of a return (from ``lgdp.collect.template.xsd_for``), cached by spec hash."""
    import xmlschema

    from lgdp.collect.template import xsd_for

    key = (loaded.staging_name, loaded.sha256, loaded.spec.version)  # a table of a multi-table return has its own
    with _SCHEMA_LOCK:
        if key not in _SCHEMAS:
            _SCHEMAS[key] = xmlschema.XMLSchema10(xsd_for(loaded))
        return _SCHEMAS[key]


def _wrong_return(loaded: LoadedSpec, raw: RawTable, hm: HeaderMap | None, others) -> Issue | None:
    """ID-002 when the file says (XML attributes, sheet or root names) or shows (headers) it is another return."""
    evidence: list[str] = []
    other: LoadedSpec | None = None
    if raw.format == "xml":
        said = (raw.meta.get("attributes") or {}).get("return")
        root = raw.meta.get("root")
        if said and said != loaded.id:
            other = next((o for o in others() if o.id == said), None)
            evidence.append(f"its return attribute says '{said}'")
        if root and root != loaded.spec.dataset:
            by_root = next((o for o in others() if o.spec.dataset == root), None)
            if by_root is not None:
                other = other or by_root
                evidence.append(f"its records are in <{root}>")
        if evidence:
            name = other.spec.title if other else f"'{said or root}'"
            return issue("ID-002", other=name, evidence=" and ".join(evidence), this=loaded.spec.title)
        return None
    if hm is None or hm.required_share(loaded) >= POOR_MATCH:
        return None
    best, best_share = None, 0.0
    for o in others():
        share = map_headers(o, raw.headers).item_share(o)
        if share > best_share:
            best, best_share = o, share
    if best is None or best_share < OTHER_MATCH or len(map_headers(best, raw.headers).columns) <= len(hm.columns):
        return None
    evidence.append(f"its columns match that return's items")
    sheet = raw.meta.get("sheet")
    if sheet and normalise(sheet) == normalise(best.spec.dataset):
        evidence.append(f"its sheet is called '{sheet}'")
    return issue("ID-002", other=best.spec.title, evidence=" and ".join(evidence), this=loaded.spec.title)


def _finish(loaded: LoadedSpec, raw: RawTable, issues: list[Issue], council_code: str | None, ctx: Context, others) -> ParseResult:
    fmt = raw.format
    details: dict[str, Any] = {k: v for k, v in raw.meta.items() if k in ("encoding", "delimiter", "sheet")}
    hm: HeaderMap | None = None
    if fmt == "xml":
        columns = {name: i for i, name in enumerate(raw.headers)}
    else:
        hm = map_headers(loaded, raw.headers)
        columns = hm.columns
    wrong = _wrong_return(loaded, raw, hm, others)
    if wrong is not None:
        return ParseResult(None, issues + [wrong], True, fmt, 0, details)
    blocking = False
    if hm is not None:
        hdr = header_issues(loaded, raw.headers, hm, raw.column_letters)
        blocking = any(i.severity == "error" for i in hdr)
        issues += hdr
    # Drop rows with nothing in them (Excel's formatted-but-empty rows, ",,,," lines).
    cleaned = [blank_to_null(c) for c in raw.columns]
    if cleaned:
        keep = pc.is_valid(cleaned[0])
        for c in cleaned[1:]:
            keep = pc.or_(keep, pc.is_valid(c))
        if not pc.all(keep).as_py():
            cleaned = [pc.filter(c, keep) for c in cleaned]
            raw.columns = [pc.filter(c, keep) for c in raw.columns]
            raw.row_numbers = pc.filter(raw.row_numbers, keep)
    n = raw.num_rows if cleaned else 0
    if hm is not None:
        for i in hm.blank:
            if cleaned and pc.any(pc.is_valid(cleaned[i])).as_py():
                col = raw.column_letters[i] if raw.column_letters else f"number {i + 1}"
                issues.append(issue("HDR-005", row=1, column=col))
                blocking = True
    if n == 0:
        record = loaded.spec.dataset.replace("_", " ").rstrip("s")
        issues.append(issue("HDR-004", record=record, contact=ctx.contact))
        return ParseResult(None, issues, True, fmt, 0, details)
    if n > ctx.limits.max_rows:
        issues.append(issue("ROW-001", rows=f"{n:,}", limit=f"{ctx.limits.max_rows:,}", contact=ctx.contact))
        return ParseResult(None, issues, False, fmt, n, details)
    if blocking:
        return ParseResult(None, issues, True, fmt, n, details)
    ctx.check_time()
    budget = [ctx.limits.max_cell_issues]
    arrays: list[pa.Array] = []
    for it in loaded.items:
        idx = columns.get(it.name)
        if idx is None:
            arrays.append(pa.nulls(n, ARROW_TYPES[it.type]))
            continue
        typed, found = coerce_column(it, raw.columns[idx], raw.row_numbers, raw.serial_dates, budget, cleaned[idx])
        issues += found
        arrays.append(typed)
        ctx.check_time()
    arrays.append(raw.row_numbers)
    table = pa.Table.from_arrays(arrays, schema=schema_for(loaded))
    issues += _council_issues(loaded, raw, table, council_code)
    return ParseResult(table, issues, True, fmt, n, details)


def _council_issues(loaded: LoadedSpec, raw: RawTable, table: pa.Table, council_code: str | None) -> list[Issue]:
    """ID-001: rows (or the XML's council attribute) naming another real council than the folder's."""
    if not council_code:
        return []
    names = {c.code: c.name for c in loaded.providers}
    item = next((it for it in loaded.items if it.name == "council_code" or it.ref == "council_code"), None)
    if item is not None and item.codes:
        names.update({c.code: c.label for c in item.codes})
    label = lambda code: f"{code} ({names[code]})" if code in names else code  # noqa: E731
    out: list[Issue] = []
    said = (raw.meta.get("attributes") or {}).get("council") if raw.format == "xml" else None
    if said and said.strip().upper() != council_code.upper() and said.strip().upper() in names:
        out.append(issue("ID-001", value=said, detail="The file's council attribute names", other=label(said.strip().upper()),
                         council=label(council_code)))
    if item is None:
        return out
    col = pc.ascii_upper(table.column(item.name).combine_chunks())
    known = pa.array(sorted(c for c in names if c != council_code.upper()))
    other = pc.fill_null(pc.is_in(col, value_set=known), False)
    if not pc.any(other).as_py():
        return out
    rows = table.column(ROW_NUMBER).combine_chunks()
    counts = pc.value_counts(pc.filter(col, other)).to_pylist()
    for entry in sorted(counts, key=lambda e: -e["counts"])[:10]:
        code, count = entry["values"], entry["counts"]
        first = pc.filter(rows, pc.fill_null(pc.equal(col, code), False))[0].as_py()
        detail = f"Row {first} names" if count == 1 else f"{count:,} rows (the first is row {first}) name"
        out.append(issue("ID-001", row=first, item=item.name, value=code, detail=detail, other=label(code),
                         council=label(council_code)))
    return out
