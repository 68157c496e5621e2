"""``lgdp check --return ID [--council CODE] [--json] FILE``: read a local file as a submission.

Runs the same parsing the platform runs on an uploaded file, without submitting anything, and
prints every issue: one line each (code, severity, row, column, message) and a summary, or one
JSON document with ``--json``. Exit status: 0 clean, 1 issues found, 2 the file cannot be read
(or does not exist). Never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    chk = sub.add_parser(
        "check",
        help="read a local return file as the platform would and list its problems (exit 0 clean, 1 issues, 2 unreadable)",
    )
    chk.add_argument("--return", dest="return_id", required=True, help="the return's id, e.g. clas")
    chk.add_argument("--council", help="GSS code of the council the file is for (rows naming another council are reported)")
    chk.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    chk.add_argument("file", help="the file to check (xlsx, csv or xml)")
    chk.set_defaults(func=run)


def _line(i) -> str:
    where = []
    if i.row:
        where.append(f"row {i.row}")
    if i.item:
        where.append(f"column {i.item}")
    loc = f" [{', '.join(where)}]" if where else ""
    return f"{i.code} {i.severity}{loc}: {i.message}"


def run(args: argparse.Namespace) -> int:
    from lgdp.specs.load import load_register

    def fail(message: str) -> int:
        if args.json:
            print(json.dumps({"file": args.file, "return": args.return_id, "readable": False, "error": message}))
        else:
            print(f"lgdp check: {message}", file=sys.stderr)
        return 2

    try:
        loaded = load_register().get(args.return_id)
    except KeyError as exc:
        return fail(str(exc.args[0]) if exc.args else f"there is no return {args.return_id!r}")
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return fail(f"{args.file}: no such file")
    except IsADirectoryError:
        return fail(f"{args.file}: is a folder, not a file")
    except OSError as exc:
        return fail(f"{args.file}: cannot be read ({exc.strerror})")

    from lgdp.parse import parse_submission

    result = parse_submission(loaded, os.path.basename(args.file), data, council_code=args.council)
    errors, queries = len(result.errors), len(result.queries)
    if args.json:
        print(json.dumps({
            "file": args.file,
            "return": loaded.id,
            "council": args.council,
            "readable": result.readable,
            "format": result.format,
            "rows": result.rows,
            "errors": errors,
            "queries": queries,
            "issues": [i.as_dict() for i in result.issues],
        }, indent=2, default=str))
    else:
        for i in result.issues:
            print(_line(i))
        if not result.readable:
            summary = "the file could not be read"
        else:
            summary = f"{result.rows:,} row(s) read as {result.format}; {errors} error(s), {queries} quer{'y' if queries == 1 else 'ies'}"
        print(f"{path.name}: {summary}.", file=sys.stderr)
    if not result.readable:
        return 2
    return 1 if result.issues else 0
