"""Load, cross-check and resolve return specs.

The pydantic model checks each block on its own; this module checks what only the whole file and
the shared reference data can tell (an item used by a rule exists, a dictionary reference is
known, a council code is real) and turns every problem into one line a return owner can act on:
``file:line: field.path: message``. Nothing here raises a traceback at a spec author.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import types
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Iterable, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from lgdp.specs.model import (
    Change,
    Code,
    Council,
    CouncilContacts,
    Dictionary,
    Item,
    ItemType,
    ReferenceTable,
    ResolvedItem,
    ReturnSpec,
    Rule,
    Status,
)
from lgdp.specs import rulesql
from lgdp.specs.paths import REPO_ROOT, shared_dir, specs_dir  # noqa: F401 - re-exported
from lgdp.specs.yamlsource import YamlDoc, YamlSyntaxError, read_yaml

NUMERIC = {ItemType.integer, ItemType.decimal}


@dataclass(frozen=True)
class SpecProblem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path or '(file)'}: {self.message}"


class SpecError(Exception):
    """A spec (or reference file) that cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Reference:
    """The shared reference data every spec is checked against."""

    councils: tuple[Council, ...]
    dictionary: Dictionary
    contacts: dict[str, CouncilContacts]
    tables: dict[str, ReferenceTable] = field(default_factory=dict)

    @cached_property
    def council_by_code(self) -> dict[str, Council]:
        return {c.code: c for c in self.councils}


@dataclass(frozen=True)
class LoadedSpec:
    """A spec that passed every check, with dictionary references applied.

    A one-table return is one ``LoadedSpec``; a multi-table return is a ``LoadedSpec`` whose
    ``tables`` are one ``LoadedSpec`` per table (a *table view*: its ``spec`` is the return's spec
    narrowed to that table's items, keys and row rules, its ``table_name`` is set and ``root`` is
    the whole return). The parser, the staging tables, the checks and the Soda contract work on
    table views exactly as they work on a one-table return; the query rules, which read several
    tables, work on the root. ``items`` of a multi-table root are every item of the return, each
    name once.
    """

    spec: ReturnSpec
    items: tuple[ResolvedItem, ...]
    providers: tuple[Council, ...]
    path: str
    sha256: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    table_name: str | None = field(default=None, compare=False)
    root: "LoadedSpec | None" = field(default=None, compare=False, repr=False)
    views: tuple["LoadedSpec", ...] = field(default=(), compare=False, repr=False)
    reference: "Reference | None" = field(default=None, compare=False, repr=False)
    base: "LoadedSpec | None" = field(default=None, compare=False, repr=False)
    period_label: str | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def dag_id(self) -> str:
        return f"return_{self.spec.id}"

    @property
    def multi(self) -> bool:
        """A return of several tables (the root; its table views are not)."""
        return bool(self.views)

    @property
    def tables(self) -> tuple["LoadedSpec", ...]:
        """The return's tables: its table views, or itself for a one-table return."""
        return self.views or (self,)

    @property
    def whole(self) -> "LoadedSpec":
        """The whole return (the root of a table view, else itself)."""
        return self.root or self

    def table(self, name: str) -> "LoadedSpec":
        for t in self.tables:
            if t.dataset == name:
                return t
        raise KeyError(f"{self.id} has no table {name!r}")

    @property
    def dataset(self) -> str:
        """The table's name: the sheet, CSV file and XML record element councils fill in."""
        return self.table_name or self.spec.dataset or ""

    @property
    def staging_name(self) -> str:
        """The staging table's name: the return id, or ``<return id>.<table>`` for a table of a multi-table return."""
        return f"{self.id}.{self.table_name}" if self.table_name else self.id

    @property
    def query_rules(self) -> list[Rule]:
        return [r for r in self.whole.spec.rules if r.is_query]

    def item(self, name: str) -> ResolvedItem:
        """An item by name; ``table.item`` for an item of one table of a multi-table return."""
        if "." in name and self.views:
            table, _, item = name.partition(".")
            return self.table(table).item(item)
        for it in self.items:
            if it.name == name:
                return it
        raise KeyError(name)

    def for_period(self, label: str | None) -> "LoadedSpec":
        """The rule book in force for a period: the spec plus every change from that period or before."""
        base = self.base or self
        if label is None or not base.spec.changes:
            return self if self.table_name is None else self
        if self.table_name is not None:
            return self.whole.for_period(label).table(self.table_name)
        cache = base.extra.setdefault("_periods", {})
        if label not in cache:
            applied = [c for c in base.spec.changes if c.status == "approved"
                       and period_order(base.spec, c.from_period) <= period_order(base.spec, label)]
            if not applied:
                cache[label] = base
            else:
                spec = apply_changes(base.spec, applied)
                assert base.reference is not None
                cache[label] = _build(spec, base.reference, base.path, base.sha256, base=base, period_label=label)
        return cache[label]


def proposed_rule_book(loaded: LoadedSpec, index: int | None = None) -> tuple[LoadedSpec, LoadedSpec, Change]:
    """(the rule book in force before a proposed change, the rule book with it, the change).

    ``index`` is the change's position in ``changes``; by default the first proposed one. The
    rule book before it is the spec with every approved change before it applied.
    """
    base = loaded.base or loaded.whole
    changes = base.spec.changes
    if index is None:
        index = next((k for k, c in enumerate(changes) if c.status == "proposed"), None)
        if index is None:
            raise KeyError(f"{base.id} has no proposed change")
    change = changes[index]
    before = [c for c in changes[:index] if c.status == "approved"]
    assert base.reference is not None
    # Both are fixed rule books (no changes left to apply for a period): today's latest approved
    # rule book before the proposal, and the same with the proposal.
    old = _build(apply_changes(base.spec, before), base.reference, base.path, base.sha256)
    new = _build(apply_changes(base.spec, before + [change]), base.reference, base.path, base.sha256)
    return old, new, change


def period_order(spec: ReturnSpec, label: str) -> "Any":
    from lgdp.periods import period_from_label

    return period_from_label(spec.collection, label).starts_on


def _narrow(spec: ReturnSpec, table: str, items: list[Item], keys: list[str]) -> ReturnSpec:
    """The return's spec seen from one table: its items, keys and row rules (query rules stay on the root)."""
    rules = [r for r in spec.rules if not r.is_query and r.table == table]
    return spec.model_copy(update={"dataset": table, "items": items, "keys": keys, "tables": [], "rules": rules, "changes": []})


def _build(spec: ReturnSpec, ref: "Reference", path: str, sha: str, *, base: "LoadedSpec | None" = None,
           period_label: str | None = None) -> LoadedSpec:
    providers = ref.councils if spec.providers == "all" else tuple(ref.council_by_code[c] for c in spec.providers)
    if not spec.tables:
        return LoadedSpec(spec, _resolve(spec.items, ref), tuple(providers), path, sha, reference=ref, base=base,
                          period_label=period_label)
    resolved = {t.name: _resolve(t.items, ref) for t in spec.tables}
    every: dict[str, ResolvedItem] = {}
    for t in spec.tables:
        for it in resolved[t.name]:
            every.setdefault(it.name, it)
    root = LoadedSpec(spec, tuple(every.values()), tuple(providers), path, sha, reference=ref, base=base,
                      period_label=period_label)
    views = tuple(
        LoadedSpec(_narrow(spec, t.name, t.items, t.keys), resolved[t.name], tuple(providers), path, sha,
                   table_name=t.name, root=root, reference=ref, period_label=period_label)
        for t in spec.tables
    )
    object.__setattr__(root, "views", views)
    return root


def apply_changes(spec: ReturnSpec, changes: list[Change]) -> ReturnSpec:
    """The spec with yearly changes applied in order: items added or changed, rules added or
    replaced, retired rules and items removed (Data to Insight's 'last year's rules plus changes
    minus a deletion list')."""
    data = spec.model_dump(exclude_none=True, mode="json")
    for change in changes:
        def merge_items(items: list[dict[str, Any]], new: dict[str, Any]) -> None:
            for i, old in enumerate(items):
                if old["name"] == new["name"]:
                    items[i] = {**old, **new}
                    return
            items.append(new)

        for ci in change.items:
            d = ci.model_dump(exclude_none=True, mode="json")
            table = d.pop("table", None)
            if data.get("tables"):
                target = next(t for t in data["tables"] if t["name"] == table)
                merge_items(target["items"], d)
            else:
                merge_items(data["items"], d)
        for rule in change.rules:
            d = rule.model_dump(exclude_none=True, mode="json")
            for i, old in enumerate(data.get("rules", [])):
                if old["code"] == d["code"]:
                    data["rules"][i] = d
                    break
            else:
                data.setdefault("rules", []).append(d)
        data["rules"] = [r for r in data.get("rules", []) if r["code"] not in set(change.retire_rules)]
        for ref_name in change.retire_items:
            table, _, item = ref_name.rpartition(".")
            if data.get("tables"):
                for t in data["tables"]:
                    if not table or t["name"] == table:
                        t["items"] = [i for i in t["items"] if i["name"] != item]
            else:
                data["items"] = [i for i in data["items"] if i["name"] != item]
        data["version"] = change.version
    data["changes"] = []
    return ReturnSpec.model_validate(data)


# ---------------------------------------------------------------------------------------------
# Reading files


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _read(path: Path) -> tuple[YamlDoc, str, bytes]:
    name = _rel(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise SpecError([SpecProblem(name, 1, "", f"cannot read the file: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise SpecError([SpecProblem(name, 1, "", "the file is not UTF-8 text")]) from None
    try:
        doc = read_yaml(text)
    except YamlSyntaxError as exc:
        raise SpecError([SpecProblem(name, exc.line, "", exc.message)]) from None
    problems = [
        SpecProblem(name, line, _dotted(p), "this field is given twice; keep one") for p, line in doc.duplicates
    ]
    if problems:
        raise SpecError(problems)
    return doc, name, raw


def _dotted(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path)


_PATTERN_WORDS = {
    r"^[a-z][a-z0-9_]{1,39}$": "must be a lowercase slug (letters, digits, underscores; starting with a letter)",
    r"^[a-z][a-z0-9_]{0,62}$": "must be a lowercase name (letters, digits, underscores; starting with a letter)",
    r"^[A-Z][A-Z0-9_-]{1,30}$": "must be an upper-case code such as CLAS-E001",
    r"^S12\d{6}$": "must be a council GSS code such as S12000036",
    r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$": "must be an email address such as returns@example.org",
    r"^([01]\d|2[0-3]):[0-5]\d$": "must be a time written HH:MM, such as 09:00",
    r"^(0[1-9]|1[0-2])-01$": "must be the first day of a month written MM-01, such as \"04-01\" (in quotes)",
    r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$": "must be a storage container name (lowercase letters, digits and hyphens)",
}
_DATE_LIKE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}$")
# Pydantic's location of an error includes the branch of a union it tried ("str",
# "list[constrained-str]", "literal['all']", "local"): words that are never in the file.
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "date", "none", "function-after"})
_NOT_A_FIELD_NAME = re.compile(r"[^a-z0-9_]")
# Model-level checks raise plain ValueErrors; point them at the field the owner must change.
_VALUE_ERROR_FIELDS = (
    ("the due date", "due_days_after_opening"),
    ("minimum (", "minimum"),
    ("min_date is after", "min_date"),
    ("give either codes or code_list", "code_list"),
    ("codes are only allowed", "codes"),
    ("codes are only allowed", "code_list"),
    ("pseudonymise needs", "pseudonymise"),
    ("items must list", "items"),
    ("a spec has either dataset", "tables"),
    ("a rule needs exactly one of", "expression"),
)


def _entries(n: Any) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _friendly(err: dict[str, Any]) -> str:
    """One pydantic error in words a return owner understands."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    shown = repr(value) if isinstance(value, (str, int, float, bool)) else "this"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        return f"{shown} " + _PATTERN_WORDS.get(pattern, f"does not have the expected form ({pattern})")
    if kind in ("literal_error", "enum"):
        return f"{shown} is not allowed: " + err["msg"].replace("Input should be", "use")
    if kind == "union_tag_invalid":
        return f"{ctx.get('tag')!r} is not allowed: use " + str(ctx.get("expected_tags", "")).replace(", '", " or '")
    if kind == "union_tag_not_found":
        return "required field is missing (it says which kind this is)"
    if kind == "value_error":
        return err["msg"].removeprefix("Value error, ")
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{shown} must be a whole number"
    if kind in ("float_parsing", "float_type", "decimal_parsing", "decimal_type"):
        return f"{shown} must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return f"{shown} must be true or false"
    if kind in ("string_type",):
        return f"{shown} must be text (put it in quotes)" if value is not None else "must be text, not empty"
    if kind in ("date_parsing", "date_from_datetime_parsing", "date_from_datetime_inexact", "date_type"):
        if isinstance(value, str) and _DATE_LIKE.match(value.strip()):
            return f"{shown} is not a real date"
        return f"{shown} must be a date written YYYY-MM-DD" if value is not None else "must be a date written YYYY-MM-DD"
    if kind == "list_type":
        return "must be a list: one entry per line starting with '- ', or [a, b] on one line"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a block of fields (name: value lines indented below it), not a single value"
    if kind == "too_short":
        return f"must list at least {_entries(ctx.get('min_length', 1))}"
    if kind == "too_long":
        return f"must list at most {_entries(ctx.get('max_length', 1))}"
    if kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else f"is too short: write at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"is too long: at most {ctx.get('max_length')} characters"
    if kind == "greater_than_equal":
        return f"{shown} is too small: it must be {ctx.get('ge')} or more"
    if kind == "less_than_equal":
        return f"{shown} is too large: it must be {ctx.get('le')} or less"
    if kind == "greater_than":
        return f"{shown} is too small: it must be more than {ctx.get('gt')}"
    if kind == "less_than":
        return f"{shown} is too large: it must be less than {ctx.get('lt')}"
    return err["msg"]


def _is_tag(part: Any, cur: Any) -> bool:
    """Is ``part`` a union branch pydantic added to the location, rather than a key of the file?"""
    if not isinstance(part, str):
        return False
    if isinstance(cur, dict) and part in cur:
        return False
    if isinstance(cur, dict) and cur.get("type") == part:
        return True  # the branch of a discriminated union (destination type: local)
    return part in _TYPE_TAGS or bool(_NOT_A_FIELD_NAME.search(part))


def _split_loc(data: Any, loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], str | None, tuple[Any, ...]]:
    """(path in the file, union branch or None, raw location up to the branch)."""
    path: list[Any] = []
    cur = data
    tag = None
    raw_prefix: tuple[Any, ...] = ()
    for i, part in enumerate(loc):
        if _is_tag(part, cur):
            if tag is None:
                tag, raw_prefix = part, loc[:i]
            continue
        path.append(part)
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        else:
            cur = None
    return tuple(path), tag, raw_prefix


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Map a pydantic location onto the YAML data, dropping union branches that are not in the file."""
    return _split_loc(data, loc)[0]


def _value_at(data: Any, path: Iterable[Any]) -> Any:
    cur = data
    for part in path:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        else:
            return None
    return cur


def _branch_fits(tag: str, value: Any) -> bool:
    """Could the value written in the file be meant for this branch of a union?"""
    if tag.startswith(("list", "tuple", "set")):
        return isinstance(value, list)
    if tag.startswith("dict"):
        return isinstance(value, dict)
    if tag.startswith(("literal", "str", "int", "float", "bool", "date", "enum")):
        return not isinstance(value, (list, dict))
    return True


def _drop_other_branches(errors: list[dict[str, Any]], data: Any) -> tuple[list[dict[str, Any]], set[int]]:
    """A value that fails a union fails every branch; report only the branch the owner meant
    (``providers: [S12000036, E06000001]`` is a list, so not the ``'all'`` branch). Also returns
    the errors kept where a list would have been accepted instead."""
    groups: dict[tuple[Any, ...], list[tuple[str, dict[str, Any]]]] = {}
    for err in errors:
        _, tag, prefix = _split_loc(data, err["loc"])
        if tag is not None and not (isinstance(_value_at(data, prefix), dict) and _value_at(data, prefix).get("type") == tag):
            groups.setdefault(prefix, []).append((tag, err))
    dropped: set[int] = set()
    list_also: set[int] = set()
    for prefix, members in groups.items():
        value = _value_at(data, prefix)
        fitting = {tag for tag, _ in members if _branch_fits(tag, value)}
        keep = fitting or {members[0][0]}
        if len(keep) > 1:
            keep = {next(tag for tag, _ in members if tag in keep)}
        dropped |= {id(err) for tag, err in members if tag not in keep}
        if any(tag.startswith("list") and tag not in keep for tag, _ in members):
            list_also |= {id(err) for tag, err in members if tag in keep}
    return [err for err in errors if id(err) not in dropped], list_also


def _flatten_type(t: Any) -> list[Any]:
    origin = get_origin(t)
    if origin is Annotated:
        return _flatten_type(get_args(t)[0])
    if origin in (Union, types.UnionType):
        return [u for a in get_args(t) for u in _flatten_type(a)]
    return [t]


def _fields_at(model: type[BaseModel] | None, raw_loc: tuple[Any, ...]) -> set[str]:
    """Field names allowed at a (pydantic) location of ``model``; empty if it cannot tell."""
    if model is None:
        return set()
    current: list[Any] = [model]
    for part in raw_loc:
        nxt: list[Any] = []
        for t in current:
            for u in _flatten_type(t):
                if isinstance(u, type) and issubclass(u, BaseModel):
                    if isinstance(part, str) and part in u.model_fields:
                        nxt.append(u.model_fields[part].annotation)
                elif get_origin(u) is list and isinstance(part, int):
                    nxt.append(get_args(u)[0])
                elif get_origin(u) is dict and isinstance(part, str):
                    nxt.append(get_args(u)[1])
        if nxt:
            current = nxt  # else: a union branch, the types stay the same
    return {
        name
        for t in current
        for u in _flatten_type(t)
        if isinstance(u, type) and issubclass(u, BaseModel)
        for name in u.model_fields
    }


def _pydantic_problems(
    exc: ValidationError, doc: YamlDoc, name: str, model: type[BaseModel] | None = None
) -> list[SpecProblem]:
    errors, list_also = _drop_other_branches(list(exc.errors()), doc.data)
    # A misspelt field is both unknown (the typo) and missing (the real name): say it once.
    missing = {(_data_path(doc.data, e["loc"])[:-1], e["loc"][-1]) for e in errors if e["type"] == "missing"}
    suggested: set[tuple[tuple[Any, ...], Any]] = set()
    messages: dict[int, str] = {}
    for err in errors:
        if err["type"] != "extra_forbidden":
            continue
        path = _data_path(doc.data, err["loc"])
        parent, key = path[:-1], path[-1]
        allowed = _fields_at(model, tuple(err["loc"][:-1])) | {m for p, m in missing if p == parent}
        block = _value_at(doc.data, parent)
        unused = allowed - set(block) if isinstance(block, dict) else allowed
        close = difflib.get_close_matches(str(key), sorted(unused), n=1, cutoff=0.6)
        if close:
            messages[id(err)] = f"unknown field: did you mean {close[0]!r}?"
            suggested.add((parent, close[0]))
        elif allowed:
            messages[id(err)] = "unknown field (check the spelling); the fields allowed here are: " + ", ".join(sorted(allowed))
        else:
            messages[id(err)] = "unknown field: it is not part of a return spec (check the spelling)"
    out = []
    for err in errors:
        path = _data_path(doc.data, err["loc"])
        if err["type"] == "missing" and (path[:-1], path[-1]) in suggested:
            continue
        msg = messages.get(id(err)) or _friendly(err)
        if id(err) in list_also:
            msg += ", or give a list"
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            path = (*path, str((err.get("ctx") or {}).get("discriminator", "type")).strip("'"))
        elif err["type"] == "value_error":
            path = _value_error_path(doc.data, path, msg)
        out.append(SpecProblem(name, doc.line_of(path), _dotted(path), msg))
    return out


def _value_error_path(data: Any, path: tuple[Any, ...], msg: str) -> tuple[Any, ...]:
    """Point a block-level check at the field to change, when the file has that field."""
    block = _value_at(data, path)
    if not isinstance(block, dict):
        return path
    m = re.match(r"code '(.*)' is listed twice", msg)
    if m and isinstance(block.get("codes"), list):
        seen = 0
        for i, c in enumerate(block["codes"]):
            if isinstance(c, dict) and str(c.get("code", "")).strip() == m.group(1):
                seen += 1
                if seen == 2:
                    return (*path, "codes", i, "code")
        return (*path, "codes")
    for start, field_name in _VALUE_ERROR_FIELDS:
        if msg.startswith(start) and field_name in block:
            return (*path, field_name)
    return path


def load_reference(directory: Path | None = None) -> Reference:
    """Read councils, the data dictionary and contacts; raises ``SpecError`` on any problem."""
    base = directory or shared_dir()
    problems: list[SpecProblem] = []
    councils: list[Council] = []
    dictionary = Dictionary()
    contacts: dict[str, CouncilContacts] = {}
    try:
        doc, name, _ = _read(base / "councils.yaml")
        rows = doc.data.get("councils") if isinstance(doc.data, dict) else None
        if not isinstance(rows, list):
            raise SpecError([SpecProblem(name, 1, "councils", "the file must hold a list 'councils:' of {code, name}")])
        for i, row in enumerate(rows):
            try:
                councils.append(Council.model_validate(row))
            except ValidationError as exc:
                problems += _pydantic_problems(exc, _sub(doc, ("councils", i)), name, Council)
    except SpecError as exc:
        problems += exc.problems
    try:
        doc, name, _ = _read(base / "dictionary.yaml")
        try:
            dictionary = Dictionary.model_validate(doc.data or {})
        except ValidationError as exc:
            problems += _pydantic_problems(exc, doc, name, Dictionary)
    except SpecError as exc:
        problems += exc.problems
    known = {c.code for c in councils}
    for path in sorted((base / "contacts").glob("*.yaml")):
        try:
            doc, name, _ = _read(path)
            cc = CouncilContacts.model_validate(doc.data or {})
            if cc.council not in known:
                problems.append(SpecProblem(name, doc.line_of(("council",)), "council", f"{cc.council} is not a known council"))
            contacts[cc.council] = cc
        except SpecError as exc:
            problems += exc.problems
        except ValidationError as exc:
            problems += _pydantic_problems(exc, doc, name, CouncilContacts)
    tables: dict[str, ReferenceTable] = {}
    for path in sorted((base / "reference").glob("*.yaml")):
        try:
            doc, name, _ = _read(path)
            rt = ReferenceTable.model_validate(doc.data or {})
            if rt.name != path.stem:
                problems.append(SpecProblem(name, doc.line_of(("name",)), "name", f"the name {rt.name!r} must match the file name ({path.stem}.yaml)"))
            tables[rt.name] = rt
        except SpecError as exc:
            problems += exc.problems
        except ValidationError as exc:
            problems += _pydantic_problems(exc, doc, name, ReferenceTable)
    if problems:
        raise SpecError(problems)
    return Reference(tuple(councils), dictionary, contacts, tables)


def _sub(doc: YamlDoc, prefix: tuple[Any, ...]) -> YamlDoc:
    data = doc.data
    for p in prefix:
        data = data[p]
    lines = {k[len(prefix) :]: v for k, v in doc.lines.items() if k[: len(prefix)] == prefix}
    return YamlDoc(data, lines)


# ---------------------------------------------------------------------------------------------
# Cross-checks

SQL_WORDS = frozenset(
    """and or not null is in between case when then else end true false like ilike similar to
    distinct from as cast coalesce nullif greatest least abs round floor ceil length lower upper
    trim btrim substring position date interval extract year month day days age date_part
    date_trunc current_date integer int numeric decimal text varchar boolean bool any all exists
    sum count min max avg mod""".split()
)
_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")
_IDENT = re.compile(r"(?<![0-9.])\b[A-Za-z_][A-Za-z0-9_]*\b")


def expression_identifiers(expression: str) -> set[str]:
    """Names in a rule's SQL expression that are not SQL words: they must be data items."""
    stripped = _STRING_LITERAL.sub("''", expression)
    return {m.group(0).lower() for m in _IDENT.finditer(stripped)} - SQL_WORDS


def _item_problems(items: list[Item], prefix: tuple[Any, ...], ref: Reference) -> tuple[list[tuple[tuple[Any, ...], str]], dict[str, int], dict[str, Any]]:
    """Checks of one table's items: names, dictionary references, code lists, types."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    names: dict[str, int] = {}
    for i, item in enumerate(items):
        here = (*prefix, i)
        if item.name in names:
            first = ".".join(str(p) for p in (*prefix, names[item.name]))
            problems.append(((*here, "name"), f"item {item.name!r} is defined twice (first as {first})"))
        else:
            names[item.name] = i
        base = None
        if item.ref is not None:
            base = ref.dictionary.items.get(item.ref)
            if base is None:
                problems.append(((*here, "ref"), f"{item.ref!r} is not in the shared data dictionary"))
        if base is None and item.ref is None:
            if item.type is None:
                problems.append(((*here, "type"), "required field is missing (give a type, or a ref to the data dictionary)"))
            if item.wording is None:
                problems.append(((*here, "wording"), "required field is missing (the question councils see)"))
        code_list = item.code_list or (base.code_list if base else None)
        if code_list and code_list != "councils" and code_list not in ref.dictionary.code_lists:
            problems.append(((*here, "code_list"), f"{code_list!r} is not a code list in the shared data dictionary"))
        typ = item.type or (base.type if base else None)
        if typ == ItemType.code and not (item.codes or code_list or (base and base.codes)):
            problems.append((here, "an item of type code needs codes or a code_list"))
    types_ = {it.name: it.type or (ref.dictionary.items[it.ref].type if it.ref in ref.dictionary.items else None) for it in items}
    return problems, names, types_


def _catalog(spec: ReturnSpec, ref: Reference) -> rulesql.Catalog:
    if spec.tables:
        tables = {t.name: frozenset(i.name for i in t.items) for t in spec.tables}
    else:
        tables = {str(spec.dataset): frozenset(i.name for i in spec.items)}
    reference = {name: frozenset(c.name for c in t.columns) for name, t in ref.tables.items()}
    return rulesql.Catalog(tables, reference)


def _rule_problems(spec: ReturnSpec, ref: Reference, rules: list[Rule], prefix: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str]]:
    problems: list[tuple[tuple[Any, ...], str]] = []
    catalog = _catalog(spec, ref)
    default_table = None if spec.tables else spec.dataset
    codes: dict[str, int] = {}
    for r, rule in enumerate(rules):
        here = (*prefix, r)
        if rule.code in codes:
            problems.append(((*here, "code"), f"rule code {rule.code} is used twice (first at rules.{codes[rule.code]})"))
        codes.setdefault(rule.code, r)
        table = rule.table or default_table
        if table is None:
            problems.append(((*here, "table"), "a rule of a return with several tables must name the table whose rows it flags: "
                             + ", ".join(catalog.tables)))
            continue
        if table not in catalog.tables:
            problems.append(((*here, "table"), f"{table!r} is not a table of this return (its tables: {', '.join(catalog.tables)})"))
            continue
        own = catalog.tables[table]
        for j, name in enumerate(rule.items):
            t, _, item = name.rpartition(".")
            t = t or table
            if t not in catalog.tables:
                problems.append(((*here, "items", j), f"{name!r}: {t!r} is not a table of this return"))
            elif item not in catalog.tables[t]:
                problems.append(((*here, "items", j), f"{item!r} is not a data item of the table {t}" if spec.tables
                                 else f"{item!r} is not a data item of this return"))
        if rule.expression is not None:
            if ";" in rule.expression or "--" in rule.expression or "/*" in rule.expression:
                problems.append(((*here, "expression"), "an expression is one SQL condition: no ';' and no comments"))
                continue
            try:
                rulesql.parse_condition(rule.expression, own)
            except rulesql.UnknownItem as exc:
                where = f"the table {table}" if spec.tables else "this return"
                problems.append(((*here, "expression"), f"uses {exc.name!r}, which is not a data item of {where}"))
                continue
            except rulesql.RuleSqlError as exc:
                problems.append(((*here, "expression"), str(exc)))
                continue
            listed = {n.rpartition(".")[2] for n in rule.items if n.rpartition(".")[0] in ("", table)}
            for name in sorted(rulesql.condition_items(rule.expression)):
                if name not in listed:
                    problems.append(((*here, "items"), f"the expression uses {name!r}: list it in items"))
        else:
            try:
                rulesql.parse_query(rule.query or "", catalog, table)
            except rulesql.RuleSqlError as exc:
                problems.append(((*here, "query"), str(exc)))
    return problems


def _cross_check(spec: ReturnSpec, ref: Reference) -> list[tuple[tuple[Any, ...], str]]:
    """Checks needing the whole spec and the reference data; returns (path, message) pairs."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    # name -> (table or None, item type): the columns distribution and plausibility may name
    columns: dict[str, Any] = {}
    if spec.tables:
        table_names: dict[str, int] = {}
        for t, table in enumerate(spec.tables):
            if table.name in table_names:
                problems.append((("tables", t, "name"), f"table {table.name!r} is defined twice (first as tables.{table_names[table.name]})"))
            table_names.setdefault(table.name, t)
            found, names, types_ = _item_problems(table.items, ("tables", t, "items"), ref)
            problems += found
            for k, key in enumerate(table.keys):
                if key not in names:
                    problems.append((("tables", t, "keys", k), f"{key!r} is not a data item of the table {table.name}"))
            for name, typ in types_.items():
                columns[f"{table.name}.{name}"] = typ
        by_name = {t.name: t for t in spec.tables}
        for t, table in enumerate(spec.tables):
            if table.parent is None:
                continue
            parent = by_name.get(table.parent.table)
            if parent is None or parent.name == table.name:
                problems.append((("tables", t, "parent", "table"), f"{table.parent.table!r} is not another table of this return"))
                continue
            mine = {i.name for i in table.items}
            theirs = {i.name for i in parent.items}
            for j, name in enumerate(table.parent.items):
                if name not in mine:
                    problems.append((("tables", t, "parent", "items", j), f"{name!r} is not a data item of the table {table.name}"))
                elif name not in theirs:
                    problems.append((("tables", t, "parent", "items", j), f"{name!r} is not a data item of the parent table {parent.name}"))
            if set(table.parent.items) != set(parent.keys) and all(n in theirs for n in table.parent.items):
                problems.append((("tables", t, "parent", "items"), f"the parent's rows are identified by its keys ({', '.join(parent.keys) or 'none'}): "
                                 "list exactly those items"))
        # a parent chain must not loop (children -> episodes -> children)
        for table in spec.tables:
            seen, cur = set(), table
            while cur is not None and cur.parent is not None:
                if cur.name in seen:
                    problems.append((("tables",), f"the parent tables form a loop through {table.name}"))
                    break
                seen.add(cur.name)
                cur = by_name.get(cur.parent.table)
    else:
        found, names, types_ = _item_problems(spec.items, ("items",), ref)
        problems += found
        for i, key in enumerate(spec.keys):
            if key not in names:
                problems.append((("keys", i), f"{key!r} is not a data item of this return"))
        columns = dict(types_)
    problems += _rule_problems(spec, ref, spec.rules, ("rules",))

    def unknown(name: str) -> str:
        if spec.tables and "." not in name:
            return f"{name!r}: in a return with several tables, name the column as table.item (e.g. {spec.tables[0].name}.{name})"
        return f"{name!r} is not a data item of this return"

    if spec.plausibility:
        for t, tot in enumerate(spec.plausibility.totals):
            name = tot.item if not spec.tables or "." in tot.item else tot.item
            typ = columns.get(name) if not spec.tables else columns.get(f"{spec.tables[0].name}.{name}")
            if typ is None:
                problems.append((("plausibility", "totals", t, "item"), f"{tot.item!r} is not a data item of this return"
                                 + (f" (plausibility totals are over the table {spec.tables[0].name})" if spec.tables else "")))
            elif typ not in NUMERIC:
                problems.append((("plausibility", "totals", t, "item"), f"{tot.item!r} is not a number, so it has no total"))
    kinds: dict[str, int] = {}
    for k, rem in enumerate(spec.reminders):
        if rem.kind in kinds:
            problems.append((("reminders", k), f"reminder {rem.kind} is given twice"))
        kinds.setdefault(rem.kind, k)
        if rem.days_from_due is not None and rem.days_from_due > spec.collection.closes_days_after_opening - spec.collection.due_days_after_opening:
            problems.append((("reminders", k, "days_from_due"), "this reminder would be sent after the collection closes"))
        if rem.days_from_due is not None and rem.days_from_due < -spec.collection.due_days_after_opening:
            problems.append((("reminders", k, "days_from_due"), "this reminder would be sent before the collection opens"))
    requesters: set[str] = set()
    for d, dist in enumerate(spec.distribution):
        if dist.requester in requesters:
            problems.append((("distribution", d, "requester"), f"requester {dist.requester} is listed twice"))
        requesters.add(dist.requester)
        for c, col in enumerate(dist.columns):
            if col not in columns:
                problems.append((("distribution", d, "columns", c), unknown(col)))
        for c, col in enumerate(dist.pseudonymise):
            if col not in dist.columns:
                problems.append((("distribution", d, "pseudonymise", c), f"{col!r} is not among this requester's columns"))
        if dist.suppression:
            for c, col in enumerate(dist.suppression.items):
                if col not in dist.columns:
                    problems.append((("distribution", d, "suppression", "items", c), f"{col!r} is not among this requester's columns"))
                elif columns.get(col) != ItemType.integer:
                    problems.append((("distribution", d, "suppression", "items", c), f"{col!r} is not a count (integer)"))
    if isinstance(spec.providers, list):
        seen: set[str] = set()
        for p, code in enumerate(spec.providers):
            if code not in ref.council_by_code:
                problems.append((("providers", p), f"{code} is not one of the 32 Scottish councils"))
            if code in seen:
                problems.append((("providers", p), f"{code} is listed twice"))
            seen.add(code)
    return problems


def _item_refs(spec: ReturnSpec) -> dict[str, tuple[tuple[Any, ...], Any]]:
    """'table.item' (or 'item') -> (path, item) of every item of the spec."""
    out: dict[str, tuple[tuple[Any, ...], Any]] = {}
    if spec.tables:
        for t, table in enumerate(spec.tables):
            for i, it in enumerate(table.items):
                out[f"{table.name}.{it.name}"] = (("tables", t, "items", i), it)
    else:
        for i, it in enumerate(spec.items):
            out[it.name] = (("items", i), it)
    return out


def _agreed(proposal: Any, name: str) -> bool:
    short = name.rpartition(".")[2]
    return any(a.items is None or name in a.items or short in a.items for a in proposal.agreements)


def _proposal_problems(spec: ReturnSpec) -> list[tuple[tuple[Any, ...], str]]:
    """A proposed return or change says what governance needs: the proposal block, and for every
    item a dictionary reference or an agreement on its wording."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    g = spec.governance
    if g.status == Status.proposed:
        if g.proposal is None:
            problems.append((("governance", "status"), "a proposed return needs governance.proposal: who asks, regularity, "
                             "duration, burden inputs and who agreed the items' wording (see docs/governance.md)"))
        else:
            for name, (path, it) in _item_refs(spec).items():
                if it.ref is None and not _agreed(g.proposal, name):
                    problems.append(((*path, "name"), f"{name!r} has no data dictionary reference (ref) and no agreement "
                                     "covers its wording: add ref, or list it in governance.proposal.agreements"))
    seen_proposed = False
    for k, change in enumerate(spec.changes):
        if change.status == "proposed":
            seen_proposed = True
            if change.proposal is None:
                problems.append((("changes", k, "status"), "a proposed change needs proposal: who asks, regularity, duration, "
                                 "burden inputs and who agreed the new or changed items' wording (see docs/governance.md)"))
                continue
            for i, ci in enumerate(change.items):
                name = f"{ci.table}.{ci.name}" if ci.table else ci.name
                if ci.ref is None and (ci.wording is not None or ci.guidance is not None or ci.type is not None) \
                        and not _agreed(change.proposal, name):
                    problems.append((("changes", k, "items", i, "name"), f"{name!r} has no data dictionary reference and no "
                                     "agreement covers its wording: add ref, or list it in proposal.agreements"))
        elif seen_proposed:
            problems.append((("changes", k, "status"), "an approved change cannot follow a proposed one: approve or "
                             "withdraw the proposed change first"))
    return problems


def _change_problems(spec: ReturnSpec, ref: Reference) -> list[tuple[tuple[Any, ...], str]]:
    """Each yearly change: names things that exist, in period order, and leaves a valid rule book."""
    from lgdp.periods import period_from_label

    problems: list[tuple[tuple[Any, ...], str]] = []
    previous = None
    version = spec.version
    for k, change in enumerate(spec.changes):
        here = ("changes", k)
        try:
            starts = period_from_label(spec.collection, change.from_period).starts_on
        except ValueError as exc:
            problems.append(((*here, "from_period"), f"{change.from_period!r} is not a period of this return: {exc}"))
            continue
        if previous is not None and starts <= previous:
            problems.append(((*here, "from_period"), "changes must be listed oldest first, one per period"))
        previous = starts
        if change.version <= version:
            problems.append(((*here, "version"), f"the version must go up: {change.version} is not after {version}"))
        version = change.version
        try:
            effective = apply_changes(spec, spec.changes[: k + 1])
        except StopIteration:
            problems.append(((*here, "items"), "an item names a table that is not in this return"))
            continue
        except ValueError as exc:
            msg = str(exc).splitlines()
            problems.append((here, "the rule book after this change is not valid: " + " ".join(m.strip() for m in msg[:3])))
            continue
        codes_before = {r.code for r in apply_changes(spec, spec.changes[:k]).rules} if k else {r.code for r in spec.rules}
        for j, code in enumerate(change.retire_rules):
            if code not in codes_before:
                problems.append(((*here, "retire_rules", j), f"{code} is not a rule in force before this change"))
        for path, message in _cross_check(effective, ref):
            problems.append((here, f"after this change, {'.'.join(str(p) for p in path)}: {message}"))
    return problems


def _resolve(items: list[Item], ref: Reference) -> tuple[ResolvedItem, ...]:
    council_codes = [Code(code=c.code, label=c.name) for c in ref.councils]
    out = []
    for item in items:
        base = ref.dictionary.items.get(item.ref) if item.ref else None
        merged: dict[str, Any] = base.model_dump(exclude_none=True) if base else {}
        merged.update(item.model_dump(exclude_none=True, exclude={"name", "ref"}))
        if "codes" in merged and merged.get("code_list") is None:
            codes = [Code.model_validate(c) for c in merged["codes"]]
        elif item.codes is None and merged.get("code_list"):
            name = merged["code_list"]
            codes = council_codes if name == "councils" else list(ref.dictionary.code_lists[name])
        else:
            codes = None
        if item.codes is not None:
            codes = list(item.codes)
        out.append(
            ResolvedItem(
                name=item.name,
                ref=item.ref,
                wording=merged["wording"],
                guidance=merged.get("guidance", ""),
                type=merged["type"],
                required=merged.get("required", False),
                codes=codes,
                minimum=merged.get("minimum"),
                maximum=merged.get("maximum"),
                min_date=merged.get("min_date"),
                max_date=merged.get("max_date"),
                max_length=merged.get("max_length"),
                pattern=merged.get("pattern"),
                unit=merged.get("unit"),
                personal_data=merged.get("personal_data", False),
            )
        )
    return tuple(out)


def load_spec(path: Path, ref: Reference) -> LoadedSpec:
    """Load one spec file; raises ``SpecError`` listing every problem found."""
    doc, name, raw = _read(path)
    if not isinstance(doc.data, dict):
        raise SpecError([SpecProblem(name, 1, "", "a return spec must be a YAML mapping of fields (id, title, ...)")])
    try:
        spec = ReturnSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise SpecError(_pydantic_problems(exc, doc, name, ReturnSpec)) from None
    cross = _cross_check(spec, ref)
    if not cross:
        cross = _change_problems(spec, ref) + _proposal_problems(spec)
    if cross:
        raise SpecError([SpecProblem(name, doc.line_of(p), _dotted(p), m) for p, m in cross])
    if path.stem != spec.id:
        raise SpecError([SpecProblem(name, doc.line_of(("id",)), "id", f"the id {spec.id!r} must match the file name ({path.stem}.yaml)")])
    return _build(spec, ref, name, hashlib.sha256(raw).hexdigest())


def spec_files(directory: Path | None = None) -> list[Path]:
    return sorted((directory or specs_dir()).glob("*.yaml"))


@dataclass
class Register:
    """Every spec in a folder: the ones that loaded, and the problems of the ones that did not."""

    specs: list[LoadedSpec]
    errors: dict[str, SpecError]
    reference: Reference | None

    def approved(self) -> list[LoadedSpec]:
        return [s for s in self.specs if s.spec.governance.status == Status.approved]

    def get(self, return_id: str) -> LoadedSpec:
        for s in self.specs:
            if s.id == return_id:
                return s
        if any(Path(p).stem == return_id for p in self.errors):
            raise KeyError(f"the spec for {return_id!r} has problems: run 'lgdp specs lint'")
        raise KeyError(f"there is no return {return_id!r}")


def load_register(directory: Path | None = None, files: list[Path] | None = None) -> Register:
    """Load every spec (or the given files); a broken one never stops the others loading."""
    base = directory or specs_dir()
    ref_dir = shared_dir(base)
    if not ref_dir.is_dir() and not os.environ.get("LGDP_SHARED_DIR"):
        ref_dir = shared_dir()  # a folder of specs without its own reference data uses the platform's
    try:
        ref = load_reference(ref_dir)
    except SpecError as exc:
        return Register([], {"shared": exc}, None)
    specs: list[LoadedSpec] = []
    errors: dict[str, SpecError] = {}
    ids: dict[str, str] = {}
    for path in files if files is not None else spec_files(base):
        try:
            loaded = load_spec(path, ref)
        except SpecError as exc:
            errors[_rel(path)] = exc
            continue
        if loaded.id in ids:
            errors[loaded.path] = SpecError([SpecProblem(loaded.path, 1, "id", f"id {loaded.id!r} is already used by {ids[loaded.id]}")])
            continue
        ids[loaded.id] = loaded.path
        specs.append(loaded)
    return Register(specs, errors, ref)
