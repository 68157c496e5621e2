"""``lgdp dev m365``: run the Microsoft 365 stand-in in the foreground for the demo."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path


def _m365(args: argparse.Namespace) -> int:
    from lgdp.dev import state_dir
    from lgdp.devservices.m365 import DEFAULT_DRIVE_ID, M365StandIn

    state = Path(args.state).resolve() if args.state else state_dir() / "m365"
    standin = M365StandIn(state, port=args.port, token_port=args.token_port, drive_id=args.drive_id or DEFAULT_DRIVE_ID)
    try:
        standin.start()
    except (OSError, RuntimeError) as e:
        print(f"[lgdp] the M365 stand-in could not start: {e}")
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    conn = json.dumps(standin.connection())
    print(
        f"[lgdp] Microsoft Graph stand-in: {standin.graph_url} (tokens: {standin.authority}, "
        f"certificate {standin.cert_path})\n"
        f"[lgdp] Airflow connection msgraph_sharepoint (fake credentials):\n"
        f"  export AIRFLOW_CONN_MSGRAPH_SHAREPOINT='{conn}'\n"
        f"  # or: airflow connections add msgraph_sharepoint --conn-json '{conn}'\n"
        f"[lgdp] SharePoint drive {standin.drive_id!r}: drop council files into\n"
        f"  {standin.drive_root}/<return>/<period>/<council GSS code>/ (e.g. clas/2025-26/S12000036/)\n"
        f"[lgdp] mail sent through Graph: {standin.state.mail_dir} and {standin.base_url}/_admin/mail\n"
        f"[lgdp] faults: POST {standin.base_url}/_admin/faults; request log: {standin.base_url}/_admin/requests\n"
        f"[lgdp] Ctrl-C stops it; files and mail stay in {state}",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
    return 0


def register(dev: argparse._SubParsersAction) -> None:  # noqa: SLF001 - argparse's own type
    """Add ``m365`` to the ``lgdp dev`` subcommands."""
    p = dev.add_parser("m365", help="local Microsoft Graph (SharePoint, mail) stand-in for the demo")
    p.add_argument("--state", help="state folder (default: <LGDP_STATE_DIR or .lgdp>/m365)")
    p.add_argument("--port", type=int, default=18765, help="Graph API port, plain HTTP (default 18765)")
    p.add_argument("--token-port", type=int, default=18766, help="token endpoint port, HTTPS (default 18766)")
    p.add_argument("--drive-id", help="the drive to create (default lgdp-demo-drive)")
    p.set_defaults(func=_m365)
