"""Readers: the bytes of a submitted file -> a table of text cells, with the file's own header.

Nothing here trusts the file name: the format is detected from the content (``sniff``), and the
name is only compared with it. Every reader returns a ``RawTable`` whose columns are pyarrow string
arrays in the order and with the headings the file had, and whose ``row_numbers`` are the rows a
council officer sees: in a sheet or CSV the header is row 1 and the first data row is row 2; in XML
the k-th ``record`` is row k + 1 (the convention of ``lgdp.synth``).

A reader that meets a problem which stops the file being read raises ``Stop`` carrying the
catalogued issue; anything else it finds (formulas, merged cells, short rows) goes into
``RawTable.issues``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
import threading
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lgdp.issues import Issue
from lgdp.parse.codes import issue
from lgdp.parse.limits import MB, Limits


class Stop(Exception):
    """The file cannot be read further; ``issue`` says why."""

    def __init__(self, found: Issue) -> None:
        super().__init__(found.message)
        self.issue = found


@dataclass
class Context:
    """What readers need besides the bytes: limits, the deadline, words for messages."""

    limits: Limits
    deadline: float
    accepted: str  # "an Excel workbook (.xlsx)" ...
    contact: str
    dataset: str

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise Stop(issue("FILE-009", limit_s=f"{self.limits.parse_timeout_s:g}", contact=self.contact))

    def unreadable(self, detail: str) -> Stop:
        return Stop(issue("FILE-001", detail=detail, accepted=self.accepted))


@dataclass
class RawTable:
    headers: list[str]
    columns: list[pa.Array]
    row_numbers: pa.Array
    format: str
    issues: list[Issue] = field(default_factory=list)
    serial_dates: bool = False
    """True for workbooks: a plain number in a date column is an Excel serial date."""
    column_letters: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return len(self.row_numbers)


# ---------------------------------------------------------------------------------------------
# Detecting the format

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

FORMAT_WORDS = {
    "xlsx": "an Excel workbook (.xlsx)",
    "csv": "a CSV file (.csv)",
    "xml": "an XML file (.xml)",
}


def sniff(data: bytes) -> str:
    """The real format: xlsx (any zip), ole2, xml, pdf, or text."""
    head = data[:8]
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head == OLE2_MAGIC:
        return "ole2"
    if data.startswith(b"%PDF"):
        return "pdf"
    start = data[:4096]
    for bom in (b"\xef\xbb\xbf",):
        if start.startswith(bom):
            start = start[len(bom):]
    stripped = start.lstrip()
    if stripped.startswith(b"<"):
        low = stripped[:200].lower()
        if low.startswith(b"<html") or low.startswith(b"<!doctype html"):
            return "html"
        return "xml"
    if start.startswith((b"\xff\xfe<\x00", b"\xfe\xff\x00<")):
        return "xml"
    return "text"


def ole2_kind(data: bytes) -> str:
    """An OLE2 compound file is either an encrypted OOXML package or a legacy Office file."""
    if "EncryptionInfo".encode("utf-16-le") in data or "EncryptedPackage".encode("utf-16-le") in data:
        return "encrypted"
    return "legacy"


# ---------------------------------------------------------------------------------------------
# CSV

DELIMITERS = (",", ";", "\t", "|")
DELIMITER_WORDS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def decode_text(data: bytes) -> tuple[bytes, str]:
    """UTF-8 bytes of the text and the encoding it was read in. Raises ``Stop`` (FILE-011)."""
    if data.startswith(b"\xef\xbb\xbf"):
        body = data[3:]
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Stop(issue("FILE-011", detail=f"it starts as UTF-8 but byte {exc.start + 3} is not UTF-8")) from None
        return body, "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16").encode("utf-8"), "utf-16"
        except UnicodeDecodeError:
            raise Stop(issue("FILE-011", detail="it is marked as UTF-16 but is not valid UTF-16")) from None
    if b"\x00" in data[:65536]:
        raise Stop(issue("FILE-011", detail="it contains binary data, or is UTF-16 text without a byte order mark"))
    if data.isascii():
        return data, "utf-8"
    try:
        data.decode("utf-8")
        return data, "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252").encode("utf-8"), "windows-1252"
    except UnicodeDecodeError as exc:
        raise Stop(issue("FILE-011", detail=f"it is neither UTF-8 nor Windows-1252 (byte {exc.start})")) from None


def _first_line(text: bytes) -> bytes:
    end = text.find(b"\n")
    line = text if end < 0 else text[:end]
    return line.rstrip(b"\r")


def sniff_delimiter(header_line: bytes) -> str:
    """The delimiter used in the header line: the most frequent of , ; tab | outside quotes."""
    counts = {d: 0 for d in DELIMITERS}
    quoted = False
    for ch in header_line.decode("utf-8", "replace"):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def read_csv(data: bytes, ctx: Context) -> RawTable:
    text, encoding = decode_text(data)
    end = len(text)
    while end and text[end - 1] in b"\r\n":
        end -= 1
    if end < len(text):
        text = memoryview(text)[:end]
    if not bytes(text[:4096]).strip() and not bytes(text).strip():
        raise Stop(issue("FILE-006"))
    head = bytes(text[: 1 << 20])
    delimiter = sniff_delimiter(_first_line(head))
    header_text = head.decode("utf-8", "ignore")
    header = next(csv.reader(io.StringIO(header_text, newline=""), delimiter=delimiter), [])
    ctx.check_time()
    table = _csv_arrow(text, header, delimiter)
    if table is None:
        ctx.check_time()
        raw = _csv_python(text, header, delimiter, ctx)
    else:
        cols, n = table
        raw = RawTable(header, cols, _row_numbers(2, n), "csv")
    raw.meta.update(encoding=encoding, delimiter=DELIMITER_WORDS[delimiter])
    return raw


def _row_numbers(first: int, n: int) -> pa.Array:
    return pa.array(np.arange(first, first + n, dtype=np.int64))


def _csv_arrow(text: bytes | memoryview, header: list[str], delimiter: str) -> tuple[list[pa.Array], int] | None:
    """Fast path: pyarrow.csv, every column as text. None if a row does not fit the header."""
    import pyarrow.csv as pacsv

    n = len(header)
    if n == 0:
        return None
    names = [f"c{i}" for i in range(n)]
    has_quotes = (text.obj if isinstance(text, memoryview) else text).find(b'"', 0, len(text)) >= 0

    try:
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(text)),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=16 << 20),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char='"',
                double_quote=True,
                newlines_in_values=has_quotes,
                ignore_empty_lines=False,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in names},
                check_utf8=False,  # decode_text has made the whole text valid UTF-8
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowException):
        return None  # blank lines or ragged rows: the exact reader numbers rows and reports them
    return [table.column(i) for i in range(n)], table.num_rows


def _csv_python(text: bytes | memoryview, header: list[str], delimiter: str, ctx: Context) -> RawTable:
    """Exact reader for CSV files with blank lines or rows longer or shorter than the header."""
    n = len(header)
    cols: list[list[str]] = [[] for _ in range(n)]
    rows: list[int] = []
    issues: list[Issue] = []
    reader = csv.reader(io.StringIO(bytes(text).decode("utf-8"), newline=""), delimiter=delimiter)
    next(reader, None)
    for i, rec in enumerate(reader):
        if i % 50_000 == 0:
            ctx.check_time()
        if not rec:
            continue
        row = i + 2
        if len(rec) > n:
            if any(v.strip() for v in rec[n:]):
                if len(issues) < 100:
                    issues.append(issue("ROW-002", row=row, found=len(rec), expected=n,
                                        delimiter=DELIMITER_WORDS[delimiter]))
            rec = rec[:n]
        elif len(rec) < n:
            rec = rec + [""] * (n - len(rec))
        for j in range(n):
            cols[j].append(rec[j])
        rows.append(row)
    return RawTable(header, [pa.array(c, pa.string()) for c in cols], pa.array(rows, pa.int64()), "csv", issues)


# ---------------------------------------------------------------------------------------------
# XLSX


def col_letter(idx: int) -> str:
    s = ""
    idx += 1
    while idx:
        idx, r = divmod(idx - 1, 26)
        s = chr(65 + r) + s
    return s


def _cell_ref(row0: int, col0: int) -> str:
    return f"{col_letter(col0)}{row0 + 1}"


def inspect_zip(data: bytes, ctx: Context) -> zipfile.ZipFile:
    """Open the package and check its central directory before anything is decompressed."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise ctx.unreadable("it is damaged or incomplete (perhaps cut short while copying)") from None
    lim = ctx.limits
    if len(infos) > lim.max_zip_entries:
        raise Stop(issue("FILE-005", detail=f"it has {len(infos):,} parts, more than the {lim.max_zip_entries:,} allowed"))
    total = sum(i.file_size for i in infos)
    if total > lim.max_uncompressed_bytes:
        raise Stop(issue("FILE-005", detail=f"it expands from {len(data) / MB:,.2f} MB to {total / MB:,.0f} MB, "
                                            f"more than the {lim.max_uncompressed_mb:g} MB allowed"))
    for i in infos:
        if i.file_size > MB and i.file_size > lim.max_compression_ratio * max(i.compress_size, 1):
            raise Stop(issue("FILE-005", detail=f"one part expands {i.file_size / max(i.compress_size, 1):,.0f} times, "
                                                f"more than the {lim.max_compression_ratio:g} times allowed"))
        if i.flag_bits & 0x1:
            raise Stop(issue("FILE-004"))
    names = {i.filename for i in infos}
    if any(n.lower().endswith("vbaproject.bin") for n in names):
        raise Stop(issue("FILE-003"))
    if "[Content_Types].xml" in names:
        ct = _read_member(zf, "[Content_Types].xml", 4 * MB, ctx)
        if b"macroenabled" in ct.lower():
            raise Stop(issue("FILE-003"))
    if "xl/workbook.xml" not in names and not any(n.lower().endswith("workbook.xml") for n in names):
        found = "a zip archive"
        if any(n.startswith("word/") for n in names):
            found = "a Word document"
        elif any(n.startswith("ppt/") for n in names):
            found = "a PowerPoint presentation"
        elif "mimetype" in names and b"spreadsheet" in _read_member(zf, "mimetype", 1000, ctx):
            found = "an OpenDocument spreadsheet (.ods)"
        raise Stop(issue("FILE-008", found=found, accepted=ctx.accepted))
    return zf


def _read_member(zf: zipfile.ZipFile, name: str, cap: int, ctx: Context) -> bytes:
    try:
        with zf.open(name) as fh:
            out = fh.read(cap + 1)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError):
        raise ctx.unreadable("a part of the workbook is damaged") from None
    if len(out) > cap:
        raise Stop(issue("FILE-005", detail=f"its part {name} is larger than {cap / MB:g} MB"))
    return out


_F_RE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s/>]")
_C_RE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?c\s[^>]*?\br=\"([A-Z]{1,3}\d{1,7})\"")


def _sheet_part(zf: zipfile.ZipFile, sheet_name: str, ctx: Context) -> str | None:
    """The zip path of the worksheet called ``sheet_name`` (workbook.xml + its relationships)."""
    from defusedxml import ElementTree as DET

    try:
        wb = DET.fromstring(_read_member(zf, "xl/workbook.xml", 16 * MB, ctx))
        rels = DET.fromstring(_read_member(zf, "xl/_rels/workbook.xml.rels", 16 * MB, ctx))
    except Stop:
        raise
    except Exception:
        return None
    rid = None
    for el in wb.iter():
        if el.tag.endswith("}sheet") or el.tag == "sheet":
            if el.get("name") == sheet_name:
                rid = next((v for k, v in el.attrib.items() if k.endswith("}id")), None)
                break
    if rid is None:
        return None
    for el in rels.iter():
        if el.get("Id") == rid:
            target = el.get("Target") or ""
            if target.startswith("/"):
                return target.lstrip("/")
            return "xl/" + target
    return None


_F_MARKS = (b"<f>", b"<f ", b"<f/", b":f>", b":f ", b":f/")
_ROW_R = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?row\b[^>]*?\br=\"(\d{1,7})\"")
_MERGE_RE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?mergeCell\s[^>]*?\bref=\"([A-Z]{1,3})(\d{1,7})(?::([A-Z]{1,3})(\d{1,7}))?\"")


@dataclass
class SheetScan:
    """What one streamed pass over a worksheet's XML finds besides the values themselves."""

    formula_refs: list[str] = field(default_factory=list)
    formula_count: int = 0
    merged: list[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    """Merged ranges as ((first row, first column), (last row, last column)), 0-based, in file order."""
    first_value_row: int | None = None
    last_value_row: int | None = None
    """1-based rows of the first and last ``<row>`` holding a cell with a value (None: not found)."""


def _col_index(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ch - 64
    return n - 1


def _row_before(block: bytes, pos: int) -> int | None:
    """The ``r`` of the ``<row>`` element that holds position ``pos`` of a block of whole rows."""
    start = max(block.rfind(b"<row", 0, pos), block.rfind(b":row", 0, pos))
    if start < 0:
        return None
    if block[start] == 0x3A:  # ":row": back to the "<" of its prefix
        start = block.rfind(b"<", 0, start)
    m = _ROW_R.match(block, start)
    return int(m.group(1)) if m else None


_SHEET_DATA = re.compile(rb"<([A-Za-z_][\w.-]*:)?sheetData[\s/>]")
_PREFIXED_MAIN = re.compile(rb"xmlns:[A-Za-z_][\w.-]*=[\"']http://schemas\.openxmlformats\.org/spreadsheetml/2006/main[\"']")


def _data_end(block: bytes) -> int:
    """Where ``</sheetData>`` starts in the block (the block's length if it is not there)."""
    at = block.find(b"sheetData>")
    while at >= 0:
        lt = block.rfind(b"<", 0, at)
        if lt >= 0 and block[lt + 1: lt + 2] == b"/":
            return lt
        at = block.find(b"sheetData>", at + 10)
    return len(block)


def scan_sheet(zf: zipfile.ZipFile, part: str, ctx: Context, cap: int = 50) -> SheetScan:
    """Stream the sheet XML a block of whole rows at a time: the cells holding a formula (a plain
    byte search first, so a sheet without formulas costs one pass of ``bytes.find``), the merged
    ranges, and the first and last rows with a value (where the sheet's cell range starts and
    ends, for the columnar reader's row numbers).

    The tag prefix of ``<sheetData>`` (none, or e.g. ``x:``) is read from the first block; the
    byte searches then look only for that spelling (one pass each instead of two), unless the
    head also binds a prefix to the sheet namespace. A formula element elsewhere (``<xm:f>`` in
    an ``extLst``'s data validation) is then not taken for a cell's formula.
    """
    out = SheetScan()
    refs = out.formula_refs
    carry = b""
    prefix: bytes | None = None  # unknown until <sheetData> is seen: search for every spelling
    f_any: tuple[bytes, ...] = (b"<f", b":f")
    f_marks = _F_MARKS
    row_end: tuple[bytes, ...] = (b"</row>", b":row>")
    data_start: int | None = None
    try:
        fh = zf.open(part)
    except KeyError:
        return out
    with fh:
        while True:
            chunk = fh.read(4 << 20)
            buf = carry + chunk
            if prefix is None:
                m = _SHEET_DATA.search(buf, 0, 1 << 20)
                if m:
                    prefix = m.group(1) or b""
                    data_start = m.start()
                    # One spelling only when the head binds no prefix to the sheet namespace
                    # (then an unprefixed <f> is the only formula element there can be).
                    if prefix or not _PREFIXED_MAIN.search(buf, 0, m.start()):
                        f_any = (b"<" + prefix + b"f",)
                        f_marks = tuple(b"<" + prefix + b"f" + end for end in (b">", b" ", b"/"))
                        row_end = (b"</" + prefix + b"row>",)
            if chunk:
                cut = max(buf.rfind(end) + len(end) for end in row_end)  # after the last </row>
                if cut < 6:
                    if len(buf) > (64 << 20):
                        raise Stop(issue("FILE-005", detail="one row of the sheet is larger than 64 MB"))
                    carry = buf
                    continue
            else:
                cut = len(buf)
            block, carry = buf[:cut], buf[cut:]
            if any(f in block for f in f_any) and any(mark in block for mark in f_marks):
                cells = [(m.start(), m.group(1).decode()) for m in _C_RE.finditer(block)]
                k = 0
                ref = "?"
                for m in _F_RE.finditer(block):
                    while k < len(cells) and cells[k][0] < m.start():
                        ref = cells[k][1]
                        k += 1
                    out.formula_count += 1
                    if len(refs) < cap and (not refs or refs[-1] != ref):
                        refs.append(ref)
            # Rows with a value: any "v>" (<v>, </v>, </x:v>) or "is>" (inline strings) inside
            # sheetData. A block other than the last ends at a </row>, so </sheetData> is in the last.
            end = len(block) if chunk else _data_end(block)
            begin = len(block)  # nothing of sheetData seen yet
            head = 0  # how much of the block comes before <sheetData>
            if data_start is not None:
                begin = head = data_start
                data_start = 0
            if begin < end:
                if out.first_value_row is None:
                    hits = [p for p in (block.find(b"v>", begin, end), block.find(b"is>", begin, end)) if p >= 0]
                    if hits:
                        out.first_value_row = _row_before(block, min(hits))
                last = max(block.rfind(b"v>", begin, end), block.rfind(b"is>", begin, end))
                if last >= 0:
                    out.last_value_row = _row_before(block, last)
            # <mergeCells> follows </sheetData>, so it is in the last block (or, out of order, in
            # the head): blocks of whole rows in between are not searched.
            merge_zone = block if not chunk else block[:head]
            if b"mergeCell" in merge_zone:
                for m in _MERGE_RE.finditer(merge_zone):
                    r0, c0 = int(m.group(2)) - 1, _col_index(m.group(1))
                    r1, c1 = (int(m.group(4)) - 1, _col_index(m.group(3))) if m.group(3) else (r0, c0)
                    out.merged.append(((r0, c0), (r1, c1)))
            ctx.check_time()
            if not chunk:
                break
    return out


def find_formulas(zf: zipfile.ZipFile, part: str, ctx: Context, cap: int = 50) -> tuple[list[str], int]:
    """Cells of the sheet XML that hold a formula (see ``scan_sheet``)."""
    found = scan_sheet(zf, part, ctx, cap)
    return found.formula_refs, found.formula_count


def cell_text(v: Any) -> str:
    """A calamine cell value as text: numbers as Excel shows them (15 significant digits)."""
    t = type(v)
    if t is str:
        return v
    if t is float:
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.15g}"
    if t is int:
        return str(v)
    if t is bool:
        return "true" if v else "false"
    if t is dt.datetime:
        if v.time() == dt.time(0):
            return v.date().isoformat()
        return v.isoformat(sep=" ")
    if t is dt.date:
        return v.isoformat()
    if v is None:
        return ""
    return str(v)


_DATE_TYPES = {str, dt.date}
_DATETIME_TYPES = {str, dt.datetime}
_FLOAT_TYPES = {str, float}


def _text_column(col: Sequence[Any]) -> pa.Array:
    """A column of calamine cell values as ``cell_text`` would write them, as one Arrow string array.

    Whole columns of text, dates (and date-times at midnight) or whole numbers below 10^15 are
    converted by Arrow; anything else (times, fractions, booleans, mixed columns) cell by cell.
    Empty cells are "" in calamine, and stay "".
    """
    kinds = set(map(type, col))
    if kinds == {str}:
        return pa.array(col, pa.string())
    if kinds <= _DATE_TYPES or kinds <= _DATETIME_TYPES or kinds <= _FLOAT_TYPES:
        if str not in kinds or not any(v for v in col if type(v) is str):  # the only text is empty cells
            out = _typed_text(col, kinds)
            if out is not None:
                return out
    return pa.array([cell_text(v) for v in col], pa.string())


def _typed_text(col: Sequence[Any], kinds: set[type]) -> pa.Array | None:
    values = [None if type(v) is str else v for v in col] if str in kinds else col
    if dt.datetime in kinds:
        ts = pa.array(values, pa.timestamp("us"))
        days = pc.cast(pc.floor_temporal(ts, unit="day"), pa.date32())
        if pc.all(pc.equal(pc.cast(days, pa.timestamp("us")), ts)).as_py() is False:
            return None  # a time of day: written as date-time, cell by cell
    elif dt.date in kinds:
        days = pa.array(values, pa.date32())
    else:
        nums = pa.array(values, pa.float64())
        whole = pc.and_(pc.equal(pc.floor(nums), nums), pc.less(pc.abs(nums), 1e15))
        if pc.all(whole).as_py() is False:
            return None
        return pc.fill_null(pc.cast(pc.cast(nums, pa.int64()), pa.string()), "")
    first = pc.min(pc.cast(days, pa.int32())).as_py()
    if first is not None and first < _YEAR_1000:
        return None  # isoformat pads years below 1000; leave those to it
    return pc.fill_null(pc.cast(days, pa.string()), "")


_YEAR_1000 = (dt.date(1000, 1, 1) - dt.date(1970, 1, 1)).days


def read_xlsx(data: bytes, ctx: Context, sheet_chooser: Callable[[list[str]], str | None]) -> RawTable:
    """A workbook's chosen sheet as text cells.

    Two readers, one result. The columnar one (fastexcel: calamine straight to Arrow, the cells
    never become Python objects) is tried first; when the sheet is anything but plain (a column
    mixing text with numbers or dates, a cell fastexcel cannot convert, a header cell that is not
    text or is repeated, a time of day, a range whose start the scan cannot confirm) its result is
    dropped and python-calamine reads the sheet cell by cell as before. Both give the same headers,
    text, row numbers and issues: ``tests/test_parse.py`` compares them on awkward workbooks.
    Either way the sheet XML is also streamed once (``scan_sheet``) for formulas and merged cells,
    on the other core while the reader works without the GIL.
    """
    from python_calamine import CalamineWorkbook, PasswordError, SheetTypeEnum, SheetVisibleEnum

    zf = inspect_zip(data, ctx)
    ctx.check_time()
    try:
        wb = CalamineWorkbook.from_filelike(io.BytesIO(data))
        meta = wb.sheets_metadata
    except PasswordError:
        raise Stop(issue("FILE-004")) from None
    except Exception:
        raise ctx.unreadable("its workbook structure is damaged") from None
    sheets = [m.name for m in meta if m.typ == SheetTypeEnum.WorkSheet and m.visible == SheetVisibleEnum.Visible]
    all_sheets = [m.name for m in meta]
    chosen = sheet_chooser(sheets)
    if chosen is None:
        found = ", ".join(f"'{n}'" for n in all_sheets[:10])
        raise Stop(issue("FILE-014", detail=f" (it has only {found})" if found else "", sheet=ctx.dataset))

    fast: dict[str, Any] = {}
    loader = threading.Thread(target=_load_columnar, args=(data, chosen, fast), name="lgdp-xlsx-sheet", daemon=True)
    loader.start()
    scan: SheetScan | None = None
    scan_stop: Exception | None = None
    try:
        part = _sheet_part(zf, chosen, ctx)
        if part:
            scan = scan_sheet(zf, part, ctx)
    except Exception as exc:  # noqa: BLE001 - raised below, after the sheet's own problems
        scan_stop = exc
    loader.join()
    ctx.check_time()
    raw = None
    if scan_stop is None and "batch" in fast:
        raw = _columnar_table(fast, scan, ctx)
    if raw is None:
        raw = _read_cells(wb, chosen, scan, scan_stop, ctx)
    raw.meta.update(sheet=chosen, sheets=all_sheets)
    return raw


# fastexcel logs a warning for every column with no value at all (normal in a return: an optional
# item left empty); a column it cannot read makes it raise, which is what we act on.
logging.getLogger("fastexcel").setLevel(logging.ERROR)


def _load_columnar(data: bytes, chosen: str, box: dict[str, Any]) -> None:
    """fastexcel's read of the sheet, every column typed from all its cells (``strict``: a column
    mixing types is an error, so a text column is known to hold only text). Any failure leaves
    ``box`` without a batch, and the cell-by-cell reader takes over."""
    try:
        import fastexcel

        sheet = fastexcel.read_excel(data).load_sheet(
            chosen, header_row=0, schema_sample_rows=None, dtype_coercion="strict"
        )
        box["height"] = sheet.height
        box["columns"] = sheet.available_columns()
        box["batch"], box["errors"] = sheet.to_arrow_with_errors()
    except BaseException as exc:  # noqa: BLE001 - the exact reader decides what the problem is
        box.clear()
        box["error"] = exc


_NUMBER_LIKE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|true|false|inf|-inf|NaN", re.I)


def _plain_header(columns: list[Any]) -> bool:
    """True when fastexcel's column names are the header cells' text as written: each looked up
    (not generated for a blank cell), not a number or boolean turned into text, not renamed
    ``name_1`` because it repeats an earlier heading."""
    seen: list[str] = []
    for col in columns:
        name = col.name
        if col.column_name_from != "looked_up" or _NUMBER_LIKE.fullmatch(name):
            return False
        base, _, k = name.rpartition("_")
        if base and k.isdigit() and base in seen:
            return False
        seen.append(name)
    return True


def _columnar_table(fast: dict[str, Any], scan: SheetScan | None, ctx: Context) -> RawTable | None:
    """The RawTable from fastexcel's batch, or None when the sheet needs the cell-by-cell reader."""
    errors = fast.get("errors")
    columns = fast["columns"]
    batch: pa.RecordBatch = fast["batch"]
    height = fast["height"]
    if errors is not None and errors.errors:
        return None
    if scan is None or scan.first_value_row is None or scan.last_value_row is None or not columns:
        return None
    if scan.last_value_row - scan.first_value_row != height or batch.num_rows != height:
        return None  # the range is not where the scan says: let calamine number the rows
    if not _plain_header(columns):
        return None
    if height > ctx.limits.max_rows:
        raise Stop(issue("ROW-001", rows=f"{height:,}", limit=f"{ctx.limits.max_rows:,}", contact=ctx.contact))
    texts: list[pa.Array] = []
    for j, col in enumerate(columns):
        out = _arrow_text(batch.column(j), col.dtype)
        if out is None:
            return None
        texts.append(out)
        ctx.check_time()
    header = [col.name.strip() for col in columns]
    letters = [col_letter(col.absolute_index) for col in columns]
    # Data rows follow the header, the range's first row: the first row holding a value.
    rows = _row_numbers(scan.first_value_row + 1, height)
    return RawTable(header, texts, rows, "xlsx", _sheet_issues(scan), serial_dates=True, column_letters=letters)


def _arrow_text(col: pa.Array, dtype: str) -> pa.Array | None:
    """A typed fastexcel column as the text ``cell_text`` gives for the same cells (empty cells
    null), or None where only the cell-by-cell reader gives the same text (times of day,
    durations, ISO date cells, years before 1000)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if dtype == "string":
        return col.cast(pa.string()) if col.type != pa.string() else col
    if dtype == "null":
        return pa.nulls(len(col), pa.string())
    if dtype == "boolean":
        return pc.if_else(col, "true", "false")
    if dtype == "int":
        return pc.cast(col, pa.string())
    if dtype == "float":
        whole = pc.and_(pc.equal(pc.floor(col), col), pc.less(pc.abs(col), 1e15))
        if pc.all(whole).as_py() is False:
            return pa.array([None if v is None else cell_text(v) for v in col.to_pylist()], pa.string())
        return pc.cast(pc.cast(col, pa.int64()), pa.string())
    if dtype == "datetime":
        days = pc.cast(pc.floor_temporal(col, unit="day"), pa.date32())
        if pc.all(pc.equal(pc.cast(days, col.type), col)).as_py() is False:
            return None  # a time of day
        first = pc.min(pc.cast(days, pa.int32())).as_py()
        if first is not None and first < _YEAR_1000:
            return None
        return pc.cast(days, pa.string())
    return None


def _sheet_issues(scan: SheetScan | None) -> list[Issue]:
    """CELL-002 for merged ranges and CELL-001 for formulas, as a council officer reads them."""
    issues: list[Issue] = []
    if scan is None:
        return issues
    merged = scan.merged
    for (r0, c0), (r1, c1) in merged[:50]:
        issues.append(issue("CELL-002", row=r0 + 1, cells=f"{_cell_ref(r0, c0)}:{_cell_ref(r1, c1)}"))
    if len(merged) > 50:
        issues.append(issue("CELL-002", cells=f"in {len(merged) - 50} more places"))
    issues += _formula_issues(scan)
    return issues


def _formula_issues(scan: SheetScan) -> list[Issue]:
    out: list[Issue] = []
    for ref in scan.formula_refs:
        m = re.match(r"[A-Z]+(\d+)", ref)
        out.append(issue("CELL-001", row=int(m.group(1)) if m else None, cell=ref))
    if scan.formula_count > len(scan.formula_refs):
        out.append(issue("CELL-001", cell=f"… and {scan.formula_count - len(scan.formula_refs)} more cells"))
    return out


def _read_cells(wb: Any, chosen: str, scan: SheetScan | None, scan_stop: Exception | None, ctx: Context) -> RawTable:
    """The cell-by-cell reader: python-calamine's values, one Python object per cell."""
    try:
        sheet = wb.get_sheet_by_name(chosen)
    except Exception:
        raise ctx.unreadable(f"the sheet '{chosen}' is damaged") from None
    ctx.check_time()
    if sheet.height - 1 > ctx.limits.max_rows:
        raise Stop(issue("ROW-001", rows=f"{sheet.height - 1:,}", limit=f"{ctx.limits.max_rows:,}", contact=ctx.contact))
    issues: list[Issue] = []
    merged = sheet.merged_cell_ranges or []
    for (r0, c0), (r1, c1) in merged[:50]:
        issues.append(issue("CELL-002", row=r0 + 1, cells=f"{_cell_ref(r0, c0)}:{_cell_ref(r1, c1)}"))
    if len(merged) > 50:
        issues.append(issue("CELL-002", cells=f"in {len(merged) - 50} more places"))
    if scan_stop is not None:
        raise scan_stop
    if scan is not None:
        issues += _formula_issues(scan)
    try:
        values = sheet.to_python()
    except Exception:
        raise ctx.unreadable(f"the sheet '{chosen}' could not be read") from None
    ctx.check_time()
    start_row, start_col = sheet.start or (0, 0)
    if not values:
        raise Stop(issue("FILE-006"))
    header = [cell_text(v).strip() for v in values[0]]
    body = values[1:]
    width = len(header)
    if body and all(len(r) == width for r in body):
        by_column: list[Any] = list(zip(*body))  # calamine's ranges are rectangular: one C-level transpose
    else:
        by_column = [[r[j] if j < len(r) else "" for r in body] for j in range(width)]
    columns = [_text_column(col) for col in by_column]
    rows = _row_numbers(start_row + 2, len(body))
    letters = [col_letter(start_col + j) for j in range(width)]
    return RawTable(header, columns, rows, "xlsx", issues, serial_dates=True, column_letters=letters)


# ---------------------------------------------------------------------------------------------
# XML


_RECORD_INDEX = re.compile(r"record\[(\d+)\]")
XSD_SAMPLE = 500


def _record_structure(root: Any, names: set[str], skip: int, cap: int, ctx: Context) -> list[Issue]:
    """The XSD's rules for records after the first ``skip``: only <record> elements, each holding
    at most one element per item, with plain values (no attributes or nested elements)."""
    out: list[Issue] = []
    k = 0
    for i, rec in enumerate(root):
        if i % 50_000 == 0:
            ctx.check_time()
        tag = _local(rec.tag) if isinstance(rec.tag, str) else None
        if tag is None:
            continue
        if tag != "record":
            if i >= skip:
                out.append(issue("XSD-001", detail=f"<{tag}> is not allowed here: the file may hold only <record> elements"))
            continue
        k += 1
        if i < skip:
            continue
        seen: set[str] = set()
        problem = None
        if rec.attrib:
            problem = "a <record> may not have attributes"
        for ch in rec:
            if not isinstance(ch.tag, str):
                continue
            c = _local(ch.tag)
            if c not in names:
                problem = f"<{c}> is not an item of this return"
            elif c in seen:
                problem = f"<{c}> appears more than once in the record"
            elif len(ch) or ch.attrib:
                problem = f"<{c}> must hold a plain value (no attributes or nested elements)"
            seen.add(c)
        if rec.text and rec.text.strip():
            problem = "a <record> may hold only item elements, not text"
        if problem:
            out.append(issue("XSD-001", row=k + 1, detail=problem))
            if len(out) >= cap:
                break
    return out


def read_xml(data: bytes, ctx: Context, item_names: list[str], schema: Any) -> RawTable:
    """Parse with defusedxml (no DTDs, entities or external references), validate, rows."""
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml import ElementTree as DET

    if b"<!DOCTYPE" in data[:1 << 16].upper() or b"<!ENTITY" in data.upper():
        raise Stop(issue("FILE-007"))
    try:
        root = DET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise Stop(issue("FILE-007")) from None
    except ParseError as exc:
        line, col = getattr(exc, "position", (None, None))
        where = f" at line {line}, column {col}" if line else ""
        raise ctx.unreadable(f"it is not well-formed XML{where} (a tag is not closed, or a character such as & is not escaped)") from None
    ctx.check_time()
    issues: list[Issue] = []
    names = set(item_names)
    if schema is not None:
        # xmlschema is thorough but slow (tens of thousands of elements a second): it checks the
        # root and the first XSD_SAMPLE records; the same rules for the remaining records are
        # checked by ``_record_structure`` below, which is a plain loop.
        sample = root
        if len(root) > XSD_SAMPLE:
            sample = root.makeelement(root.tag, dict(root.attrib))
            sample.extend(list(root)[:XSD_SAMPLE])
        for err in schema.iter_errors(sample):
            elem = getattr(err, "elem", None)
            tag = _local(elem.tag) if elem is not None and isinstance(elem.tag, str) else None
            if tag in names and elem is not None and len(elem) == 0 and _is_simple_type_error(err):
                continue  # a value that is not of its type: reported as TYPE-001 with its row
            m = _RECORD_INDEX.search(err.path or "")
            reason = (err.reason or str(err.message) or "it does not fit the schema").rstrip(".")
            if "is not an element of the schema" in reason:
                detail = f"the outermost element must be <{ctx.dataset}> (without a namespace), not <{tag}>"
            else:
                detail = (f"in <{tag}>, " if tag else "") + _plain_reason(reason)
            issues.append(issue("XSD-001", row=int(m.group(1)) + 1 if m else None, item=tag if tag in names else None,
                                detail=detail))
            if len(issues) >= 50:
                break
        if len(root) > XSD_SAMPLE and len(issues) < 50:
            issues += _record_structure(root, names, XSD_SAMPLE, 50 - len(issues), ctx)
    cols: dict[str, list[str | None]] = {name: [] for name in item_names}
    rows: list[int] = []
    k = 0
    for rec in root:
        if not isinstance(rec.tag, str) or _local(rec.tag) != "record":
            continue
        k += 1
        vals = {_local(ch.tag): (ch.text or "") for ch in rec if isinstance(ch.tag, str)}
        for name in item_names:
            cols[name].append(vals.get(name))
        rows.append(k + 1)
        if k % 50_000 == 0:
            ctx.check_time()
    present = [name for name in item_names if any(v is not None for v in cols[name])] if rows else list(item_names)
    raw = RawTable(present, [pa.array(cols[n], pa.string()) for n in present], pa.array(rows, pa.int64()), "xml", issues)
    raw.meta.update(root=_local(root.tag), attributes={k: v for k, v in root.attrib.items() if isinstance(k, str)})
    return raw


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _is_simple_type_error(err: Any) -> bool:
    v = getattr(err, "validator", None)
    name = type(v).__name__
    return name.startswith(("XsdAtomic", "XsdSimple", "XsdUnion", "XsdList", "XsdRestriction")) or (
        getattr(v, "is_simple", lambda: False)() if callable(getattr(v, "is_simple", None)) else False
    )


_REASONS = [
    (re.compile(r"Unexpected child with tag '?(?:\{[^}]*\})?([\w.:-]+)'? at position \d+"),
     r"<\1> is not allowed here (it is not one of the return's elements, or it is given twice)"),
    (re.compile(r"'?([\w.:-]+)'? attribute not allowed for element"), r"the attribute \1 is not allowed here"),
    (re.compile(r"attribute '?([\w.:-]+)'? not allowed for element"), r"the attribute \1 is not allowed here"),
    (re.compile(r"simple content element can'?t have child elements"), "it must hold a plain value, not other elements"),
    (re.compile(r"character data between child elements not allowed"), "there is text between elements"),
]


def _plain_reason(reason: str) -> str:
    for pattern, plain in _REASONS:
        m = pattern.search(reason)
        if m:
            return m.expand(plain)
    reason = re.sub(r"\{[^}]*\}", "", reason)
    reason = re.sub(r"\bchild with tag\b", "element", reason, flags=re.I)
    return reason.replace("'", "")
