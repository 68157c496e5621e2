"""The README's demo command really starts Airflow, lists every return DAG and collects a file.

Runs ``lgdp dev demo --smoke`` (what ``make demo`` runs, plus a check and a clean stop) against
the test session's PostgreSQL: migrations, ``airflow standalone``, health, DAG listing, then a
period opened by the real scheduler, a file dropped into the Microsoft 365 stand-in and collected
through the real triggerer, and a clean shutdown.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.airflow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _specs_with_an_open_window(tmp_path: Path) -> Path:
    """The real specs, with the monthly return's window widened so one is open on any date."""
    import re
    import shutil

    root = Path(__file__).resolve().parents[1] / "return_specs"
    specs = tmp_path / "specs"
    shutil.copytree(root, specs)
    monthly = specs / "temporary_accommodation_monthly.yaml"
    monthly.write_text(re.sub(r"closes_days_after_opening: \d+", "closes_days_after_opening: 75", monthly.read_text()))
    return specs


def test_demo_starts_lists_every_return_and_stops(airflow_db, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env["LGDP_SPECS_DIR"] = str(_specs_with_an_open_window(tmp_path))
    env["LGDP_STATE_DIR"] = str(tmp_path / "state")
    env["LGDP_M365_PORT"] = str(_free_port())
    env.pop("AIRFLOW_CONN_MSGRAPH_SHAREPOINT", None)
    lgdp = str(Path(sys.executable).with_name("lgdp"))
    r = subprocess.run(
        [lgdp, "dev", "demo", "--smoke", "--quiet", "--port", str(_free_port()), "--timeout", "300"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Airflow is up: http://localhost:" in r.stdout
    assert "simple_auth_manager_passwords.json.generated" in r.stdout
    assert "Microsoft 365 stand-in: http://127.0.0.1:" in r.stdout
    from lgdp.specs.load import load_register

    assert f"smoke: all {len(load_register().approved())} return DAGs are listed" in r.stdout
    # through the real scheduler and triggerer: a period opened, a dropped file collected
    assert "was collected and accepted" in r.stdout
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "the demo left processes running"
