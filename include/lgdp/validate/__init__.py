"""Validation of a loaded submission against its spec: one check list, a Soda Core v4 contract
for the counts and generated SQL for the failing rows (see ``docs/validation.md``)."""

from lgdp.validate.checks import Check, checks
from lgdp.validate.contract import ValidationRuntimeError, contract_yaml, data_source_yaml, verify
from lgdp.validate.rows import count_by_code, failing_rows

__all__ = [
    "Check",
    "ValidationRuntimeError",
    "checks",
    "contract_yaml",
    "count_by_code",
    "data_source_yaml",
    "failing_rows",
    "verify",
]
