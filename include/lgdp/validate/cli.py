"""``lgdp specs contract ID``: print the Soda Core v4 contract generated from a spec."""

from __future__ import annotations

import argparse
import sys


def _cmd_contract(args: argparse.Namespace) -> int:
    from lgdp.specs.load import load_register
    from lgdp.validate.contract import contract_yaml

    try:
        loaded = load_register().get(args.return_id)
    except KeyError as exc:
        print(f"lgdp specs contract: {exc.args[0]}", file=sys.stderr)
        return 1
    for k, view in enumerate(loaded.tables):  # a return of several tables has one contract per table
        if k:
            sys.stdout.write("---\n")
        sys.stdout.write(contract_yaml(view, args.database))
    return 0


def register(specs_subparsers: argparse._SubParsersAction) -> None:
    p = specs_subparsers.add_parser("contract", help="print the Soda data contract generated from a spec")
    p.add_argument("return_id", metavar="ID", help="return id, e.g. clas")
    p.add_argument("--database", help="database holding lgdp_staging (default: the one in LGDP_DATABASE_URL, else lgdp)")
    p.set_defaults(func=_cmd_contract)
