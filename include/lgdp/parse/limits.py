"""Limits on what a submitted file may cost to read, with safe defaults overridable by env.

| Variable | Default | Meaning |
| --- | --- | --- |
| ``LGDP_MAX_FILE_MB`` | 50 | Largest file accepted, in MB (10^6 bytes). |
| ``LGDP_MAX_ROWS`` | 1500000 | Most data rows in one file. |
| ``LGDP_MAX_UNCOMPRESSED_MB`` | 400 | Most a workbook may expand to (sum of its parts). |
| ``LGDP_MAX_COMPRESSION_RATIO`` | 250 | Largest expansion of any one part of a workbook over 1 MB. |
| ``LGDP_MAX_ZIP_ENTRIES`` | 2000 | Most parts in a workbook. |
| ``LGDP_PARSE_TIMEOUT_S`` | 120 | Seconds allowed to read one file. |
| ``LGDP_MAX_CELL_ISSUES`` | 10000 | Most value-level (TYPE-001) issues listed one by one; the rest are summed up. |

A variable that is not a positive number is ignored (the default applies) with a warning in the
log, so a typo in a deployment cannot switch a limit off.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields, replace

log = logging.getLogger(__name__)

_ENV = {
    "max_file_mb": "LGDP_MAX_FILE_MB",
    "max_rows": "LGDP_MAX_ROWS",
    "max_uncompressed_mb": "LGDP_MAX_UNCOMPRESSED_MB",
    "max_compression_ratio": "LGDP_MAX_COMPRESSION_RATIO",
    "max_zip_entries": "LGDP_MAX_ZIP_ENTRIES",
    "parse_timeout_s": "LGDP_PARSE_TIMEOUT_S",
    "max_cell_issues": "LGDP_MAX_CELL_ISSUES",
}

MB = 1_000_000


@dataclass(frozen=True)
class Limits:
    max_file_mb: float = 50
    max_rows: int = 1_500_000
    max_uncompressed_mb: float = 400
    max_compression_ratio: float = 250
    max_zip_entries: int = 2000
    parse_timeout_s: float = 120
    max_cell_issues: int = 10_000

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * MB)

    @property
    def max_uncompressed_bytes(self) -> int:
        return int(self.max_uncompressed_mb * MB)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Limits":
        env = os.environ if environ is None else environ
        out = cls()
        for f in fields(cls):
            raw = env.get(_ENV[f.name])
            if raw is None or raw.strip() == "":
                continue
            try:
                value = float(raw) if f.type in ("float", float) else int(raw)
                if value <= 0:
                    raise ValueError
            except ValueError:
                log.warning("%s=%r is not a positive number; using the default %s", _ENV[f.name], raw, getattr(out, f.name))
                continue
            out = replace(out, **{f.name: value})
        return out
