"""``lgdp db ...`` and ``lgdp ledger ...`` commands: the ledger's schema and contents."""

from __future__ import annotations

import argparse
import sys


def _upgrade(args: argparse.Namespace) -> int:
    from lgdp.ledger import db

    db.upgrade(args.revision)
    print(f"ledger schema at revision {db.current_revision()}")
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    from lgdp.ledger import db

    db.downgrade(args.revision)
    print(f"ledger schema at revision {db.current_revision()}")
    return 0


def _current(args: argparse.Namespace) -> int:
    from lgdp.ledger import db

    print(db.current_revision() or "(empty: run 'lgdp db upgrade')")
    return 0


def _status(args: argparse.Namespace) -> int:
    from lgdp.ledger.db import session
    from lgdp.ledger.register import period_status

    with session() as s:
        status = period_status(s, args.return_id, args.period)
    if not status:
        print(f"no period {args.period} of return {args.return_id} in the ledger", file=sys.stderr)
        return 1
    for code, st in status.items():
        print(f"{code}  {st}")
    return 0


def _sync(args: argparse.Namespace) -> int:
    from lgdp.ledger.db import session
    from lgdp.ledger.register import sync_register
    from lgdp.specs.load import load_register

    reg = load_register()
    with session() as s, s.begin():
        changed = sync_register(s, reg.specs, reg.reference.councils if reg.reference else ())
    print(f"register: {len(reg.specs)} returns, {changed} added or changed")
    for path in reg.errors:
        print(f"{path}: has problems, not registered (run 'lgdp specs lint')", file=sys.stderr)
    return 1 if reg.errors else 0


def register(sub: argparse._SubParsersAction) -> None:  # noqa: SLF001 - argparse's own type
    """Add the ledger commands to the ``lgdp`` parser."""
    dbp = sub.add_parser("db", help="the ledger's schema (Alembic migrations)").add_subparsers(
        dest="db_command", required=True
    )
    up = dbp.add_parser("upgrade", help="migrate the ledger (LGDP_DATABASE_URL) to a revision")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=_upgrade)
    down = dbp.add_parser("downgrade", help="migrate the ledger down (default: remove it all)")
    down.add_argument("revision", nargs="?", default="base")
    down.set_defaults(func=_downgrade)
    cur = dbp.add_parser("current", help="print the ledger's revision")
    cur.set_defaults(func=_current)

    led = sub.add_parser("ledger", help="what the ledger holds").add_subparsers(dest="ledger_command", required=True)
    st = led.add_parser("status", help="each council's submission status for one period")
    st.add_argument("--return", dest="return_id", required=True)
    st.add_argument("--period", required=True)
    st.set_defaults(func=_status)
    sy = led.add_parser("sync", help="write every spec (any status) and the councils into the ledger's register")
    sy.set_defaults(func=_sync)

    from lgdp.dev import register as register_dev

    register_dev(sub)
