"""``lgdp check --return ID [--council CODE] [--period LABEL] [--json] [--parse-only] FILE``.

Tells you, before you send a file, what the council would be told about it: the file is parsed,
loaded and validated by the same code collection runs (``lgdp.validate.offline``), in a scratch
database that is thrown away afterwards (a new database on ``LGDP_DATABASE_URL``'s server, or an
embedded PostgreSQL started for the check: a few seconds). Every issue is printed: one line each
(code, severity, row, column, message) and a summary on stderr, or one JSON document with
``--json``. ``--parse-only`` skips the database: only the parser's issues (file, header, types).

Exit status: 0 clean, 1 issues found, 2 the file cannot be read (or does not exist, or the
arguments are wrong), 3 the validation itself could not run (no database, Soda failed). Never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_CLEAN, EXIT_ISSUES, EXIT_UNREADABLE, EXIT_NOT_RUN = 0, 1, 2, 3


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    chk = sub.add_parser(
        "check",
        help="validate a local return file as collection would and list what the council would be told "
        "(exit 0 clean, 1 issues, 2 unreadable, 3 could not validate)",
        description="Parse, load and validate FILE with the same code as collection, in a scratch database "
        "thrown away afterwards: a new database on LGDP_DATABASE_URL's server if it is set, else an embedded "
        "PostgreSQL started for the check (a few seconds). --parse-only skips the database.",
        epilog="Exit status: 0 no issues, 1 issues found, 2 the file cannot be read (or a wrong return, "
        "council or period), 3 the validation could not run (no database, Soda failed).",
    )
    chk.add_argument("--return", dest="return_id", required=True, help="the return's id, e.g. clas")
    chk.add_argument(
        "--council",
        help="GSS code of the council the file is for (rows naming another council are reported); "
        "default: the return's first council (the spec's checks do not depend on it)",
    )
    chk.add_argument("--period", help="the period label the file is for, e.g. 2025-26 (default: the latest opened)")
    chk.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    chk.add_argument(
        "--parse-only", action="store_true", help="only read the file (no database, none of the spec's checks)"
    )
    chk.add_argument("file", help="the file to check (xlsx, csv or xml)")
    chk.set_defaults(func=run)


_OUTCOME = {
    "accepted": "the council would see it accepted",
    "rejected": "the council would see it rejected",
    "queries": "the council would be asked to fix or explain its queries (in the feedback workbook)",
}


def _line(i) -> str:
    where = []
    if getattr(i, "table", None):
        where.append(f"sheet {i.table}")
    if i.row:
        where.append(f"row {i.row}")
    if i.item:
        where.append(f"column {i.item}")
    loc = f" [{', '.join(where)}]" if where else ""
    return f"{i.code} {i.severity}{loc}: {i.message}"


def run(args: argparse.Namespace) -> int:
    from lgdp.specs.load import load_register

    def fail(message: str, status: int = EXIT_UNREADABLE) -> int:
        if args.json:
            print(json.dumps({"file": args.file, "return": args.return_id, "readable": status != EXIT_UNREADABLE,
                              "validated": False, "error": message}))
        else:
            print(f"lgdp check: {message}", file=sys.stderr)
        return status

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

    from lgdp.validate.offline import OfflineCheckError, check_file

    try:
        res = check_file(loaded, os.path.basename(args.file), data, args.council, args.period,
                         parse_only=args.parse_only)
    except ValueError as exc:  # a period that is not one of the return's, a council that does not send it
        return fail(str(exc))
    except OfflineCheckError as exc:
        return fail(f"the file was read but could not be validated: {exc}", EXIT_NOT_RUN)
    except Exception as exc:  # noqa: BLE001 - a check that cannot run says why, never a traceback
        return fail(f"the file was read but could not be validated: {type(exc).__name__}: {exc}", EXIT_NOT_RUN)

    result = res.parse
    if args.json:
        print(json.dumps({
            "file": args.file,
            "return": loaded.id,
            "council": args.council,
            "period": res.period,
            "readable": result.readable,
            "format": result.format,
            "rows": result.rows,
            "validated": res.validated,
            "outcome": res.outcome,
            "errors": res.errors,
            "queries": res.queries,
            "issues": [i.as_dict() for i in res.issues],
        }, indent=2, default=str))
    else:
        for i in res.issues:
            print(_line(i))
        if not result.readable:
            summary = "the file could not be read"
        else:
            summary = (f"{result.rows:,} row(s) read as {result.format}; {res.errors} error(s), "
                       f"{res.queries} quer{'y' if res.queries == 1 else 'ies'}")
            if res.validated:
                summary += f"; the spec's checks ran: {_OUTCOME.get(res.outcome or '', res.outcome)}"
            elif args.parse_only:
                summary += "; parse only: the spec's checks did not run"
            else:
                summary += "; the spec's checks did not run (the file has structural errors): it would be rejected"
        print(f"{path.name}: {summary}.", file=sys.stderr)
    if not result.readable:
        return EXIT_UNREADABLE
    return EXIT_ISSUES if res.issues else EXIT_CLEAN
