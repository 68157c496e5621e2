"""Read a council's submitted file into a typed table, or say exactly why it cannot be read.

    from lgdp.parse import parse_submission
    result = parse_submission(loaded, "clas_2025-26.xlsx", data, council_code="S12000036")
    result.readable   # False: the file could not be read at all (FILE-*), see result.issues
    result.issues     # [Issue(code, severity, message, row, item, value), ...]
    result.table      # pyarrow.Table: one column per spec item, in spec order, plus _row_number

``parse_submission`` never raises for anything in the file: every problem is an ``Issue`` with a
catalogued code (``lgdp.parse.codes``). The file name is only compared with the content (it is
never used as a path). Reading is bounded by ``Limits`` (size, rows, uncompressed size, time).
See ``docs/files.md``.
"""

from __future__ import annotations

from lgdp.parse.codes import CODES, CodeDef, issue
from lgdp.parse.core import ParseResult, parse_submission
from lgdp.parse.limits import Limits

__all__ = ["CODES", "CodeDef", "Limits", "ParseResult", "issue", "parse_submission"]
