"""Load, cross-check and resolve return specs.

The pydantic model checks each block on its own; this module checks what only the whole file and
the shared reference data can tell (an item used by a rule exists, a dictionary reference is
known, a council code is real) and turns every problem into one line a return owner can act on:
``file:line: field.path: message``. Nothing here raises a traceback at a spec author.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

from pydantic import ValidationError

from lgdp.specs.model import (
    Code,
    Council,
    CouncilContacts,
    Dictionary,
    ItemType,
    ResolvedItem,
    ReturnSpec,
    Status,
)
from lgdp.specs.yamlsource import YamlDoc, YamlSyntaxError, read_yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
NUMERIC = {ItemType.integer, ItemType.decimal}


def specs_dir() -> Path:
    """Where specs live: ``LGDP_SPECS_DIR`` or the repository's ``return_specs/``."""
    return Path(os.environ.get("LGDP_SPECS_DIR") or REPO_ROOT / "return_specs")


def shared_dir(base: Path | None = None) -> Path:
    """Reference data shared by all specs: dictionary, councils, contacts."""
    env = os.environ.get("LGDP_SHARED_DIR")
    if env:
        return Path(env)
    return (base or specs_dir()) / "shared"


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

    @cached_property
    def council_by_code(self) -> dict[str, Council]:
        return {c.code: c for c in self.councils}


@dataclass(frozen=True)
class LoadedSpec:
    """A spec that passed every check, with dictionary references applied."""

    spec: ReturnSpec
    items: tuple[ResolvedItem, ...]
    providers: tuple[Council, ...]
    path: str
    sha256: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def dag_id(self) -> str:
        return f"return_{self.spec.id}"

    def item(self, name: str) -> ResolvedItem:
        for it in self.items:
            if it.name == name:
                return it
        raise KeyError(name)


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


_FRIENDLY = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field: it is not part of a return spec (check the spelling)",
    "date_from_datetime_parsing": "must be a date written YYYY-MM-DD",
    "date_parsing": "must be a date written YYYY-MM-DD",
    "date_type": "must be a date written YYYY-MM-DD",
}
_PATTERN_WORDS = {
    r"^[a-z][a-z0-9_]{1,39}$": "must be a lowercase slug (letters, digits, underscores; starting with a letter)",
    r"^[a-z][a-z0-9_]{0,62}$": "must be a lowercase name (letters, digits, underscores; starting with a letter)",
    r"^[A-Z][A-Z0-9_-]{1,30}$": "must be an upper-case code such as CLAS-E001",
    r"^S12\d{6}$": "must be a council GSS code such as S12000036",
}


def _pydantic_problems(exc: ValidationError, doc: YamlDoc, name: str) -> list[SpecProblem]:
    out = []
    for err in exc.errors():
        path = _data_path(doc.data, err["loc"])
        kind = err["type"]
        if kind == "string_pattern_mismatch":
            pattern = (err.get("ctx") or {}).get("pattern", "")
            words = _PATTERN_WORDS.get(pattern, f"does not have the expected form ({pattern})")
            msg = f"{err.get('input')!r} {words}"
        elif kind in ("literal_error", "enum"):
            msg = f"{err.get('input')!r} is not allowed: {err['msg'].replace('Input should be', 'use')}"
        elif kind == "value_error":
            msg = err["msg"].removeprefix("Value error, ")
        else:
            msg = _FRIENDLY.get(kind, err["msg"])
        out.append(SpecProblem(name, doc.line_of(path), _dotted(path), msg))
    return out


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Map a pydantic location onto the YAML data, dropping union tags that are not in the file."""
    path: list[Any] = []
    cur = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(cur, dict) and part in cur:
            path.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and part < len(cur):
            path.append(part)
            cur = cur[part]
        elif last or isinstance(cur, dict) and isinstance(part, str) and not _is_tag(part, cur):
            path.append(part)
            cur = None
    return tuple(path)


def _is_tag(part: str, cur: dict[str, Any]) -> bool:
    return cur.get("type") == part or part in ("str", "list[constrained-str]", "function-after")


def load_reference(directory: Path | None = None) -> Reference:
    """Read councils, the data dictionary and contacts; raises ``SpecError`` on any problem."""
    base = directory or shared_dir()
    problems: list[SpecProblem] = []
    councils: list[Council] = []
    dictionary = Dictionary()
    contacts: dict[str, CouncilContacts] = {}
    try:
        doc, name, _ = _read(base / "councils.yaml")
        for i, row in enumerate((doc.data or {}).get("councils", [])):
            try:
                councils.append(Council.model_validate(row))
            except ValidationError as exc:
                problems += _pydantic_problems(exc, _sub(doc, ("councils", i)), name)
    except SpecError as exc:
        problems += exc.problems
    try:
        doc, name, _ = _read(base / "dictionary.yaml")
        try:
            dictionary = Dictionary.model_validate(doc.data or {})
        except ValidationError as exc:
            problems += _pydantic_problems(exc, doc, name)
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
            problems += _pydantic_problems(exc, doc, name)
    if problems:
        raise SpecError(problems)
    return Reference(tuple(councils), dictionary, contacts)


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


def _cross_check(spec: ReturnSpec, ref: Reference) -> list[tuple[tuple[Any, ...], str]]:
    """Checks needing the whole spec and the reference data; returns (path, message) pairs."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    names: dict[str, int] = {}
    for i, item in enumerate(spec.items):
        if item.name in names:
            problems.append((("items", i, "name"), f"item {item.name!r} is defined twice (first as items.{names[item.name]})"))
        else:
            names[item.name] = i
        base = None
        if item.ref is not None:
            base = ref.dictionary.items.get(item.ref)
            if base is None:
                problems.append((("items", i, "ref"), f"{item.ref!r} is not in the shared data dictionary"))
        if base is None and item.ref is None:
            if item.type is None:
                problems.append((("items", i, "type"), "required field is missing (give a type, or a ref to the data dictionary)"))
            if item.wording is None:
                problems.append((("items", i, "wording"), "required field is missing (the question councils see)"))
        code_list = item.code_list or (base.code_list if base else None)
        if code_list and code_list != "councils" and code_list not in ref.dictionary.code_lists:
            problems.append((("items", i, "code_list"), f"{code_list!r} is not a code list in the shared data dictionary"))
        typ = item.type or (base.type if base else None)
        if typ == ItemType.code and not (item.codes or code_list or (base and base.codes)):
            problems.append((("items", i), "an item of type code needs codes or a code_list"))
    item_types = {it.name: it.type or (ref.dictionary.items[it.ref].type if it.ref in ref.dictionary.items else None) for it in spec.items}

    def unknown(name: str) -> str:
        return f"{name!r} is not a data item of this return"

    for i, key in enumerate(spec.keys):
        if key not in names:
            problems.append((("keys", i), unknown(key)))
    codes: dict[str, int] = {}
    for r, rule in enumerate(spec.rules):
        if rule.code in codes:
            problems.append((("rules", r, "code"), f"rule code {rule.code} is used twice (first at rules.{codes[rule.code]})"))
        codes.setdefault(rule.code, r)
        for j, name in enumerate(rule.items):
            if name not in names:
                problems.append((("rules", r, "items", j), unknown(name)))
        if ";" in rule.expression or "--" in rule.expression or "/*" in rule.expression:
            problems.append((("rules", r, "expression"), "an expression is one SQL condition: no ';' and no comments"))
        for name in sorted(expression_identifiers(rule.expression)):
            if name not in names:
                problems.append((("rules", r, "expression"), f"uses {name!r}, which is not a data item of this return"))
            elif name not in rule.items:
                problems.append((("rules", r, "items"), f"the expression uses {name!r}: list it in items"))
    if spec.plausibility:
        for t, tot in enumerate(spec.plausibility.totals):
            if tot.item not in names:
                problems.append((("plausibility", "totals", t, "item"), unknown(tot.item)))
            elif item_types.get(tot.item) not in NUMERIC:
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
            if col not in names:
                problems.append((("distribution", d, "columns", c), unknown(col)))
        for c, col in enumerate(dist.pseudonymise):
            if col not in dist.columns:
                problems.append((("distribution", d, "pseudonymise", c), f"{col!r} is not among this requester's columns"))
        if dist.suppression:
            for c, col in enumerate(dist.suppression.items):
                if col not in dist.columns:
                    problems.append((("distribution", d, "suppression", "items", c), f"{col!r} is not among this requester's columns"))
                elif item_types.get(col) != ItemType.integer:
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


def _resolve(spec: ReturnSpec, ref: Reference) -> tuple[ResolvedItem, ...]:
    council_codes = [Code(code=c.code, label=c.name) for c in ref.councils]
    out = []
    for item in spec.items:
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
        raise SpecError(_pydantic_problems(exc, doc, name)) from None
    cross = _cross_check(spec, ref)
    if cross:
        raise SpecError([SpecProblem(name, doc.line_of(p), _dotted(p), m) for p, m in cross])
    if path.stem != spec.id:
        raise SpecError([SpecProblem(name, doc.line_of(("id",)), "id", f"the id {spec.id!r} must match the file name ({path.stem}.yaml)")])
    providers = ref.councils if spec.providers == "all" else tuple(ref.council_by_code[c] for c in spec.providers)
    return LoadedSpec(spec, _resolve(spec, ref), tuple(providers), name, hashlib.sha256(raw).hexdigest())


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
    try:
        ref = load_reference(shared_dir(base) if not os.environ.get("LGDP_SHARED_DIR") else None)
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
