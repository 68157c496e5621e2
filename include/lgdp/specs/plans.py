"""What the DAG factory needs from each spec, cached by the specs' content.

Airflow parses the DAG folder every few seconds in fresh processes. Validating 170 specs each
time would cost seconds, so the few fields a DAG is built from (a ``DagPlan``) are computed once
per distinct content of the spec folder and kept as JSON (never pickle: the cache must not be a
way to run code). Any change to a spec, the shared reference data or the code that reads them
changes the fingerprint, and the next parse validates everything again. Tasks and
``lgdp specs lint`` always load specs in full; only parsing takes this shortcut.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from typing import TYPE_CHECKING

# Only light imports at module level: a warm parse must not pay for pydantic models.
from lgdp.specs.paths import shared_dir, specs_dir

if TYPE_CHECKING:
    from lgdp.specs.load import LoadedSpec

CACHE_FORMAT = 3
_CODE = ("model.py", "load.py", "yamlsource.py", "plans.py")


@dataclass(frozen=True)
class DagPlan:
    return_id: str
    dag_id: str
    title: str
    description: str
    doc_md: str
    cron: str
    max_active_runs: int
    tags: list[str]
    providers: list[list[str]]  # [GSS code, council name] per provider council
    reminders: list[str]  # reminder kinds in schedule order, one ``remind_<kind>`` task each
    requesters: list[str]  # requester slugs of the spec's distribution block (empty: no distribute task)


def doc_md(loaded: LoadedSpec) -> str:
    s = loaded.spec
    g = s.governance
    c = s.collection
    return (
        f"# {s.title}\n\n{g.purpose}\n\n"
        f"- **Legal basis:** {g.legal_basis}\n- **Requester:** {g.requester}\n- **Owner:** {g.owner} "
        f"({g.contact_email})\n- **Frequency:** {c.frequency.value}; opens day {c.opens.day} at {c.opens.time} "
        f"(Europe/London), due {c.due_days_after_opening} days later, closes after "
        f"{c.closes_days_after_opening} days\n- **Providers:** {len(loaded.providers)} councils\n"
        f"- **Spec:** `{loaded.path}` (version {s.version}); review by {g.review_date}\n"
        "\nTrigger with config `{\"period\": \"<label>\"}` to open a given period; without it the run "
        "opens the latest period whose window has opened.\n"
    )


def plan_for(loaded: LoadedSpec) -> DagPlan:
    from lgdp.periods import opening_cron

    s = loaded.spec
    return DagPlan(
        return_id=s.id,
        dag_id=loaded.dag_id,
        title=s.title,
        description=s.governance.purpose[:200],
        doc_md=doc_md(loaded),
        cron=opening_cron(s.collection),
        max_active_runs=s.collection.max_active_periods,
        tags=sorted({s.governance.requester[:100], s.collection.frequency.value, "return"}),
        providers=[[c.code, c.name] for c in loaded.providers],
        reminders=[r.kind for r in s.reminders],
        requesters=[d.requester for d in s.distribution],
    )


@dataclass(frozen=True)
class Plans:
    plans: list[DagPlan]
    problems: list[str]
    broken_files: list[str]


def _fingerprint(base: Path) -> str:
    h = hashlib.sha256(f"{CACHE_FORMAT}\0{base.resolve()}\0{os.environ.get('LGDP_SHARED_DIR', '')}".encode())
    here = Path(__file__).parent
    files = sorted(base.glob("*.yaml")) + sorted(shared_dir(base).rglob("*.yaml")) + [here / n for n in _CODE]
    for f in files:
        h.update(str(f).encode() + b"\0")
        try:
            h.update(f.read_bytes())
        except OSError:
            h.update(b"<unreadable>")
    return h.hexdigest()


def _cache_path(base: Path) -> Path:
    root = os.environ.get("LGDP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "lgdp"
    )
    key = hashlib.sha256(str(base.resolve()).encode()).hexdigest()[:16]
    return Path(root) / f"dag-plans-{key}.json"


def compute_plans(base: Path) -> Plans:
    from lgdp.specs.load import load_register

    register = load_register(base)
    problems = [str(p) for err in register.errors.values() for p in err.problems]
    return Plans([plan_for(s) for s in register.approved()], problems, sorted(register.errors))


def load_plans(directory: Path | None = None, *, use_cache: bool = True) -> Plans:
    """Plans for every approved spec and the problems of broken ones, from cache when unchanged."""
    base = directory or specs_dir()
    if not use_cache:
        return compute_plans(base)
    fingerprint = _fingerprint(base)
    path = _cache_path(base)
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("fingerprint") == fingerprint:
            return Plans([DagPlan(**p) for p in cached["plans"]], cached["problems"], cached["broken_files"])
    except (OSError, ValueError, TypeError, KeyError):
        pass
    plans = compute_plans(base)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"fingerprint": fingerprint, "plans": [asdict(p) for p in plans.plans],
                "problems": plans.problems, "broken_files": plans.broken_files}
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as tmp:
            json.dump(data, tmp)
        os.replace(tmp.name, path)
    except OSError:
        pass  # a read-only home is fine: we just validate on every parse
    return plans
