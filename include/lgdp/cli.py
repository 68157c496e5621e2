"""The ``lgdp`` command line: spec tooling, the ledger, and developer services.

Every command prints words for people and uses exit codes for machines; none prints a traceback
for a problem in someone's input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lgdp.specs.load import SpecError, load_register, specs_dir


def _cmd_specs_lint(args: argparse.Namespace) -> int:
    given = [Path(p) for p in args.paths]
    missing = [p for p in given if not p.exists()]
    files = [p for p in given if p.exists()]
    dirs = [p for p in files if p.is_dir()]
    plain = [p for p in files if not p.is_dir()]
    lines: list[str] = []
    loaded = 0
    targets: list[tuple[Path | None, list[Path] | None]] = [(d, None) for d in dirs]
    if plain:
        targets.append((None, plain))
    if not given:
        targets = [(None, None)]
    for directory, paths in targets:
        reg = load_register(directory, paths)
        loaded += len(reg.specs)
        for err in reg.errors.values():
            lines += [str(p) for p in err.problems]
    lines += [f"{p}:1: (file): no such file or folder" for p in missing]
    for line in lines:
        print(line)
    if lines:
        print(f"{len(lines)} problem(s) found.", file=sys.stderr)
        return 1
    print(f"{loaded} spec(s) valid.", file=sys.stderr)
    return 0


def _cmd_specs_schema(args: argparse.Namespace) -> int:
    from lgdp.specs.schema import schema_text

    text = schema_text()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    out = Path(args.output) if args.output else specs_dir() / "schema.json"
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


def _cmd_specs_list(args: argparse.Namespace) -> int:
    reg = load_register()
    for s in reg.specs:
        g = s.spec.governance
        print(f"{s.id:28} {g.status.value:9} {s.spec.collection.frequency.value:10} {s.spec.title}")
    for path in reg.errors:
        print(f"{path}: has problems (run 'lgdp specs lint')")
    return 1 if reg.errors else 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from lgdp.synth import SynthError, fault_names, write_sample

    loaded = load_register().get(args.return_id)
    if args.list_faults:
        print("\n".join(fault_names(loaded)))
        return 0
    faults: dict[str, int] = {}
    for f in args.fault:
        name, _, count = f.partition("=")
        if count and not count.isdigit():
            print(f"--fault {f}: write NAME or NAME=COUNT", file=sys.stderr)
            return 2
        faults[name] = faults.get(name, 0) + int(count or 1)
    period = args.period
    if not period:
        from lgdp.periods import period_opening_at
        import datetime as dt

        period = period_opening_at(loaded.spec.collection, dt.datetime.now(dt.timezone.utc)).label
    try:
        placed = write_sample(loaded, args.council, period, args.rows, args.format, args.output, args.seed, faults)
    except SynthError as exc:
        print(f"lgdp synth: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({loaded.id}, {args.council}, {period})")
    for f in placed:
        print(f"  fault {f.kind}: " + (f"{f.table} " if getattr(f, "table", None) else "") + f"row {f.row_number}" + (f", item {f.item}" if f.item else ""))
    return 0


def item_overlap(specs) -> dict[str, list[tuple[str, str]]]:
    """Dictionary item -> [(return id, item name)] for items that more than one return collects."""
    uses: dict[str, list[tuple[str, str]]] = {}
    for loaded in specs:
        for item in loaded.items:
            if item.ref:
                uses.setdefault(item.ref, []).append((loaded.id, item.name))
    return {ref: sorted(u) for ref, u in sorted(uses.items()) if len({r for r, _ in u}) > 1}


def _cmd_specs_overlap(args: argparse.Namespace) -> int:
    reg = load_register()
    overlap = item_overlap(reg.approved())
    if not overlap:
        print("no shared data item is collected by more than one approved return")
    for ref, uses in overlap.items():
        wording = reg.reference.dictionary.items[ref].wording if reg.reference else ref
        print(f"{ref} ({wording}): collected by {len({r for r, _ in uses})} returns")
        for return_id, name in uses:
            print(f"  {return_id}.{name}")
    return 0


def _one_spec(path: str):
    """The spec at ``path`` (a file of the register's folder, or a folder's spec by id)."""
    p = Path(path)
    folder = p.parent if p.suffix == ".yaml" else specs_dir()
    reg = load_register(folder)
    stem = p.stem if p.suffix == ".yaml" else path
    for problem in reg.errors.get(str(p), None) or []:
        print(problem, file=sys.stderr)
    try:
        return reg, reg.get(stem)
    except KeyError as exc:
        print(f"lgdp specs: {exc.args[0]}", file=sys.stderr)
        return reg, None


def _cmd_specs_review(args: argparse.Namespace) -> int:
    from lgdp.specs.governance import render_markdown, render_text, review_pack

    reg, loaded = _one_spec(args.path)
    if loaded is None:
        return 1
    try:
        pack = review_pack(loaded, reg, args.change)
    except (KeyError, IndexError):
        print(f"lgdp specs review: {loaded.id} is approved and has no proposed change to review", file=sys.stderr)
        return 1
    print(render_text(pack), end="")
    if args.output:
        Path(args.output).write_text(render_markdown(pack), encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _cmd_specs_preview(args: argparse.Namespace) -> int:
    from lgdp.specs.load import proposed_rule_book
    from lgdp.validate.offline import OfflineCheckError
    from lgdp.validate.preview import preview

    reg, loaded = _one_spec(args.path)
    if loaded is None:
        return 1
    try:
        before, after, _ = proposed_rule_book(loaded, args.change)
    except (KeyError, IndexError):
        print(f"lgdp specs preview: {loaded.id} has no proposed change to preview", file=sys.stderr)
        return 1
    try:
        report = preview(before, after, args.period)
    except OfflineCheckError as exc:
        print(f"lgdp specs preview: {exc}", file=sys.stderr)
        return 2
    print(report.render(), end="")
    return 0


def _cmd_api_token_issue(args: argparse.Namespace) -> int:
    from lgdp.api.tokens import issue_token
    from lgdp.ledger.db import session

    try:
        with session() as s, s.begin():
            issued = issue_token(s, args.council, name=args.name or "", days=args.days, rate_per_minute=args.rate_per_minute)
    except ValueError as exc:
        print(f"lgdp api token issue: {exc}", file=sys.stderr)
        return 2
    print(issued.token)
    print(
        f"token {issued.id} for council {issued.council_code}, expires {issued.expires_at:%Y-%m-%d}, "
        f"{issued.rate_per_minute} requests a minute. It is shown only now: give it to the council's system.",
        file=sys.stderr,
    )
    return 0


def _cmd_api_token_list(args: argparse.Namespace) -> int:
    import datetime as dt

    from lgdp.api.tokens import list_tokens
    from lgdp.ledger.db import session

    now = dt.datetime.now(dt.timezone.utc)
    with session() as s:
        for t in list_tokens(s, args.council):
            state = "revoked" if t.revoked_at else ("expired" if t.expires_at <= now else "active")
            used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "-"
            print(f"{t.id}  {t.council_code}  {state:7}  expires {t.expires_at:%Y-%m-%d}  {t.rate_per_minute}/min  {t.name}  last used {used}")
    return 0


def _cmd_api_token_revoke(args: argparse.Namespace) -> int:
    from lgdp.api.tokens import revoke_token
    from lgdp.ledger.db import session

    with session() as s, s.begin():
        found = revoke_token(s, args.token_id)
    if not found:
        print(f"lgdp api token revoke: no token {args.token_id}", file=sys.stderr)
        return 1
    print(f"token {args.token_id} revoked")
    return 0


def _cmd_api_submit(args: argparse.Namespace) -> int:
    from lgdp.api.client import main_submit

    return main_submit(args)


def register_api(sub: argparse._SubParsersAction) -> None:  # noqa: SLF001 - argparse's own type
    """``lgdp api token issue|list|revoke`` and ``lgdp api submit`` (the example client)."""
    api = sub.add_parser("api", help="the councils' submission API: tokens and an example client").add_subparsers(
        dest="api_command", required=True)
    token = api.add_parser("token", help="council system tokens").add_subparsers(dest="token_command", required=True)
    issue = token.add_parser("issue", help="issue a token for a council's system (printed once; only its hash is kept)")
    issue.add_argument("--council", required=True, help="GSS code, e.g. S12000036")
    issue.add_argument("--name", help="which system it is for, e.g. 'Mosaic (children's services)'")
    issue.add_argument("--days", type=int, default=365, help="days until it expires (default 365)")
    issue.add_argument("--rate-per-minute", type=int, default=120, help="requests a minute (default 120)")
    issue.set_defaults(func=_cmd_api_token_issue)
    lst = token.add_parser("list", help="tokens (ids, councils, state, expiry; never secrets)")
    lst.add_argument("--council")
    lst.set_defaults(func=_cmd_api_token_list)
    rev = token.add_parser("revoke", help="revoke a token at once")
    rev.add_argument("token_id")
    rev.set_defaults(func=_cmd_api_token_revoke)
    sm = api.add_parser("submit", help="submit a file through the API (example client)")
    sm.add_argument("file", help=".xlsx, .csv, .zip (one CSV per table), .xml or .json (rows)")
    sm.add_argument("--url", default="http://localhost:8080/council-api", help="the API's base address")
    sm.add_argument("--token", help="default: $LGDP_API_TOKEN")
    sm.add_argument("--council", required=True)
    sm.add_argument("--return", dest="return_id", required=True)
    sm.add_argument("--period", required=True)
    sm.add_argument("--idempotency-key", help="default: derived from the content (a rerun does not submit twice)")
    sm.add_argument("--wait", action="store_true", help="wait until decided; exit 0 if accepted, 3 otherwise")
    sm.add_argument("--timeout", type=float, default=600.0)
    sm.set_defaults(func=_cmd_api_submit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lgdp", description="Local Government Data Platform tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    specs = sub.add_parser("specs", help="return specs").add_subparsers(dest="specs_command", required=True)
    lint = specs.add_parser("lint", help="check specs; exit 1 and one line per problem")
    lint.add_argument("paths", nargs="*", help="spec files or folders (default: return_specs/)")
    lint.set_defaults(func=_cmd_specs_lint)
    schema = specs.add_parser("schema", help="write return_specs/schema.json from the model")
    schema.add_argument("--output", "-o", help="where to write (default: return_specs/schema.json)")
    schema.add_argument("--stdout", action="store_true", help="print instead of writing")
    schema.set_defaults(func=_cmd_specs_schema)
    lst = specs.add_parser("list", help="list the register")
    lst.set_defaults(func=_cmd_specs_list)
    ovl = specs.add_parser("overlap", help="shared data items collected by more than one return")
    ovl.set_defaults(func=_cmd_specs_overlap)
    rev = specs.add_parser("review", help="the review pack of a proposed return or change (docs/governance.md)")
    rev.add_argument("path", help="the spec file (e.g. return_specs/clas.yaml) or a return id")
    rev.add_argument("--change", type=int, help="position of the proposed change in changes: (default: the first proposed)")
    rev.add_argument("--output", "-o", help="also write the pack as Markdown to this file")
    rev.set_defaults(func=_cmd_specs_review)
    pre = specs.add_parser("preview", help="replay councils' accepted submissions under a proposed change")
    pre.add_argument("path", help="the spec file or a return id")
    pre.add_argument("--period", required=True, help="the period whose accepted submissions are replayed")
    pre.add_argument("--change", type=int, help="position of the proposed change (default: the first proposed)")
    pre.set_defaults(func=_cmd_specs_preview)
    __import__("lgdp.validate.cli", fromlist=["register"]).register(specs)  # lgdp specs contract ID

    syn = sub.add_parser("synth", help="write a deterministic synthetic submission (clean or with chosen faults)")
    syn.add_argument("--return", dest="return_id", required=True)
    syn.add_argument("--council", default="S12000036", help="GSS code of the submitting council")
    syn.add_argument("--period", help="period label (default: the latest opened)")
    syn.add_argument("--rows", type=int, help="number of data rows (default: the generator's)")
    syn.add_argument("--format", choices=["xlsx", "csv", "xml"], help="default: the return's first format")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--fault", action="append", default=[], metavar="NAME[=COUNT]", help="e.g. CLAS-E001=2, bad_code")
    syn.add_argument("--list-faults", action="store_true", help="print the fault names for this return")
    syn.add_argument("--output", "-o", default="sample.out")
    syn.set_defaults(func=_cmd_synth)

    from lgdp import cli_ledger

    cli_ledger.register(sub)
    from lgdp.parse import cli as parse_cli

    parse_cli.register(sub)  # lgdp check FILE
    register_api(sub)  # lgdp api token issue|list|revoke, lgdp api submit
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SpecError as exc:
        for p in exc.problems:
            print(p)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
