"""Where specs and their shared reference data live (kept import-light for DAG parsing)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def specs_dir() -> Path:
    """Where specs live: ``LGDP_SPECS_DIR`` or the repository's ``return_specs/``."""
    return Path(os.environ.get("LGDP_SPECS_DIR") or REPO_ROOT / "return_specs")


def shared_dir(base: Path | None = None) -> Path:
    """Reference data shared by all specs: dictionary, councils, contacts."""
    env = os.environ.get("LGDP_SHARED_DIR")
    if env:
        return Path(env)
    return (base or specs_dir()) / "shared"
