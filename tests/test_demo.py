"""The README's demo command really starts Airflow, lists every return DAG and collects a file.

Runs ``lgdp dev demo --smoke`` (what ``make demo`` runs, plus a check and a clean stop) against
the test session's PostgreSQL: migrations, the Microsoft 365 stand-in and a persistent Azurite,
``airflow standalone``, health, DAG listing, then a period opened by the real scheduler, a file
dropped into the stand-in and collected through the real triggerer, the feedback workbook in the
council's ``_platform`` folder and the acknowledgement email in the stand-in's mail (Graph
sendMail), and a clean shutdown. The smaller tests check the demo's wiring without Airflow: the
connections it derives from the specs, that it never overrides one the user defined, and demo
pseudonym keys that stay stable between runs.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

DEMO_ENV_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_")
# Configuration the demo fills in unless the user set it: the test starts from none of it.
DEMO_ENV_NAMES = {
    "LGDP_MAIL_TRANSPORT", "LGDP_MAIL_FROM", "LGDP_MSGRAPH_MAIL_CONN_ID", "LGDP_SHAREPOINT_WEB_URL",
    "LGDP_DELIVERY_DIR",
}


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


@pytest.mark.slow
@pytest.mark.airflow
def test_demo_starts_lists_every_return_and_stops(airflow_db, tmp_path):
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(DEMO_ENV_PREFIXES) and k not in DEMO_ENV_NAMES
    }
    state = tmp_path / "state"
    env["LGDP_SPECS_DIR"] = str(_specs_with_an_open_window(tmp_path))
    env["LGDP_STATE_DIR"] = str(state)
    env["LGDP_M365_PORT"] = str(_free_port())
    env["LGDP_AZURITE_PORT"] = str(_free_port())
    lgdp = str(Path(sys.executable).with_name("lgdp"))
    r = subprocess.run(
        [lgdp, "dev", "demo", "--smoke", "--quiet", "--port", str(_free_port()), "--timeout", "600"],
        env=env, capture_output=True, text=True, timeout=1800,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Airflow is up: http://localhost:" in r.stdout
    assert "simple_auth_manager_passwords.json.generated" in r.stdout
    assert "Microsoft 365 stand-in: http://127.0.0.1:" in r.stdout
    # where to look, printed at start
    m365 = f"http://127.0.0.1:{env['LGDP_M365_PORT']}"
    assert f"SharePoint folders (stand-in): {m365}/sites/lgdp/Shared%20Documents" in r.stdout
    assert f"mail sent: {m365}/_admin/mail" in r.stdout
    azurite = f"http://127.0.0.1:{env['LGDP_AZURITE_PORT']}/devstoreaccount1"
    assert f"requesters' blob storage (Azurite): {azurite}" in r.stdout
    assert f"local deliveries (LGDP_DELIVERY_DIR): {state / 'deliveries'}" in r.stdout
    # every wasb connection and pseudonym key the approved specs name, none hard-coded
    wasb, keys = _requester_connections(env["LGDP_SPECS_DIR"])
    assert wasb and keys
    assert f"Azurite (requesters' blob storage): {azurite} for {', '.join(wasb)}" in r.stdout
    key_file = state / "demo-pseudonym-keys.json"
    assert sorted(json.loads(key_file.read_text())["keys"]) == keys
    assert key_file.stat().st_mode & 0o077 == 0
    assert (state / "azurite").is_dir() and any((state / "azurite").iterdir()), "Azurite kept nothing on disk"
    from lgdp.specs.load import load_register

    assert f"smoke: all {len(load_register().approved())} return DAGs are listed" in r.stdout
    # through the real scheduler and triggerer: a period opened, a dropped file collected
    assert "was collected and accepted" in r.stdout
    # ... and answered as the council sees it: the workbook in _platform, the email in the mail
    assert "smoke: feedback workbook feedback_v1.xlsx is in" in r.stdout
    assert "smoke: acknowledgement email sent to" in r.stdout
    mail = list((state / "m365" / "mail").glob("*.json"))
    assert any("accepted (" in json.loads(f.read_text())["message"]["subject"] for f in mail)
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "the demo left processes running"


def _requester_connections(specs_dir: str) -> tuple[list[str], list[str]]:
    """What the specs name, read from the YAML here independently of lgdp.dev."""
    import yaml

    wasb, keys = set(), set()
    for f in Path(specs_dir).glob("*.yaml"):
        spec = yaml.safe_load(f.read_text())
        if spec.get("governance", {}).get("status") != "approved":
            continue
        for dist in spec.get("distribution", []):
            if dist["destination"]["type"] == "wasb":
                wasb.add(dist["destination"]["conn_id"])
            if dist.get("pseudonym_key_conn_id"):
                keys.add(dist["pseudonym_key_conn_id"])
    return sorted(wasb), sorted(keys)


def test_demo_leaves_user_connections_alone(monkeypatch, tmp_path):
    """Connections the user defined (environment or Airflow's table) win: no Azurite, no demo key, no mail."""
    from lgdp import dev
    from lgdp.specs.load import load_register

    monkeypatch.setenv("LGDP_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("LGDP_MAIL_TRANSPORT", raising=False)
    specs = load_register().approved()
    wasb, keys = dev.requester_connections(specs)
    assert (wasb, keys) == _requester_connections(str(Path(__file__).resolve().parents[1] / "return_specs"))
    env: dict[str, str] = {}
    assert dev.start_azurite(env, specs, {c.lower() for c in wasb + keys}) is None
    assert env == {}
    assert not (tmp_path / dev.PSEUDONYM_KEYS_FILE).exists()

    class StandIn:  # only what configure_mail reads from the stand-in
        base_url = "http://127.0.0.1:1"

    assert "configured msgraph_mail" in dev.configure_mail(env, StandIn(), {"msgraph_mail"})
    assert env == {"LGDP_MAIL_TRANSPORT": "msgraph"}
    monkeypatch.setenv("LGDP_MAIL_TRANSPORT", "smtp")
    env = {}
    assert "as configured" in dev.configure_mail(env, StandIn(), set())
    assert env == {}


def test_demo_pseudonym_keys_are_stable_and_private(tmp_path):
    from lgdp.dev import demo_pseudonym_keys
    from lgdp.distribute.pseudonymise import check_key

    first = demo_pseudonym_keys(tmp_path, ["lgdp_pseudonym_key_a"])
    again = demo_pseudonym_keys(tmp_path, ["lgdp_pseudonym_key_a", "lgdp_pseudonym_key_b"])
    assert again["lgdp_pseudonym_key_a"] == first["lgdp_pseudonym_key_a"]
    assert again["lgdp_pseudonym_key_a"] != again["lgdp_pseudonym_key_b"]
    assert all(k.startswith("lgdp-demo-key-") and check_key(k, c) for c, k in again.items())
    assert (tmp_path / "demo-pseudonym-keys.json").stat().st_mode & 0o077 == 0


def test_demo_azurite_keeps_deliveries_between_runs(tmp_path):
    """The demo's Azurite stores on disk: what a requester got is still there after a restart."""
    from azure.storage.blob import BlobServiceClient

    from lgdp.devservices.azurite import AzuriteBlob, AzuriteError

    port = _free_port()
    with AzuriteBlob(tmp_path / "azurite", port=port) as first:
        BlobServiceClient.from_connection_string(first.connection_string).create_container("clas").upload_blob(
            "returns/clas/2025-26/v1/manifest.json", b"{}"
        )
        with pytest.raises(AzuriteError, match="LGDP_AZURITE_PORT"):
            AzuriteBlob(tmp_path / "other", port=port).start()
    with AzuriteBlob(tmp_path / "azurite", port=port) as again:
        blob = BlobServiceClient.from_connection_string(again.connection_string).get_blob_client(
            "clas", "returns/clas/2025-26/v1/manifest.json"
        )
        assert blob.download_blob().readall() == b"{}"
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftovers == []
