"""``lgdp db ...`` commands: the ledger's schema."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # noqa: SLF001 - argparse's own type
    """Add the ledger commands to the ``lgdp`` parser."""
