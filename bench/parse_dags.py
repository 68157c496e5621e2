"""Benchmark: how long Airflow takes to parse the return DAGs, against an EmptyOperator floor.

Usage::

    python bench/parse_dags.py [--specs 170] [--repeat 5] [--profile] [--keep]

What it does:

1. Generates ``--specs`` synthetic *approved* return specs in a temporary folder by cloning the
   real specs in ``return_specs/`` round-robin under new ids (``bench_clas_000``,
   ``bench_lfq_001``, ...), with a copy of ``return_specs/shared`` beside them.
2. Writes a *floor* DAG file in the same temporary folder: the same DAG ids and tasks (``open_collection`` then ``collect`` mapped over the providers, ``remind_<kind>`` tasks, ``distribute``)
   (``EmptyOperator`` with the same task id), the same schedule type and crons
   (``CronTriggerTimetable(cron, timezone="Europe/London")``), built in a plain module-level loop.
3. Parses ``dags/returns.py``, ``dags/return_spec_problems.py`` and the floor file the way the dag
   processor does: each parse in a FRESH Python process. The child first imports
   ``airflow.dag_processing.processor`` (what the dag processor has loaded before it forks a
   parser; the same for every file and outside the timed section), then times only the
   ``DagBag(dag_folder=<file>, load_op_links=False)`` call, i.e. importing the DAG file and
   everything it imports that is not loaded yet, and collecting its DAGs. The time to serialize
   the DAGs (which the dag processor does next) is reported too, separately.
4. Repeats ``--repeat`` times (after one discarded warm-up run per file, so byte-code caches are
   written) and reports medians; the headline is ``returns.py / floor``, goal <= 1.5x.

It exits 0 whatever the ratio (benchmarks are measured, not asserted) and 1 if any parse fails,
has import errors, or does not give exactly one DAG per spec with its tasks (open, mapped collect, one per reminder, distribute).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
SPECS = REPO / "return_specs"
RETURNS_FILE = DAGS / "returns.py"
PROBLEMS_FILE = DAGS / "return_spec_problems.py"

# Imported by every child before the clock starts: what a forked dag-processor parser has loaded.
PRELUDE = "import airflow.dag_processing.processor"

# The child that parses one DAG file and reports timings and what it found, as one JSON line.
CHILD = textwrap.dedent(
    """
    import json, sys, time, warnings
    t0 = time.perf_counter()
    {prelude}
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    t1 = time.perf_counter()
    path = sys.argv[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t2 = time.perf_counter()
        bag = DagBag(dag_folder=path, load_op_links=False)
        t3 = time.perf_counter()
    for dag in bag.dags.values():
        DagSerialization.to_dict(dag)
    t4 = time.perf_counter()
    print("BENCH " + json.dumps({{
        "prelude_s": t1 - t0,
        "bag_s": t3 - t2,
        "serialize_s": t4 - t3,
        "files_parsed": len(bag.file_last_changed),
        "dags": {{d: len(dag.tasks) for d, dag in bag.dags.items()}},
        "import_errors": bag.import_errors,
        "warnings": sorted({{str(w.message) for w in caught}}),
    }}))
    """
).format(prelude=PRELUDE)

# The child that splits returns.py's parse into its parts (same prelude, same fresh process).
BREAKDOWN = textwrap.dedent(
    """
    import json, time
    {prelude}
    t0 = time.perf_counter()
    from lgdp.airflow.factory import build_dags
    from lgdp.specs.load import load_reference, shared_dir
    from lgdp.specs.plans import compute_plans, load_plans
    from lgdp.specs.paths import specs_dir
    t1 = time.perf_counter()
    load_reference(shared_dir())
    t2 = time.perf_counter()
    cold = compute_plans(specs_dir())
    t3 = time.perf_counter()
    plans = load_plans()
    t4 = time.perf_counter()
    plans = load_plans()
    t5 = time.perf_counter()
    dags = build_dags(plans)
    t6 = time.perf_counter()
    print("BENCH " + json.dumps({{
        "import_lgdp_s": t1 - t0,
        "load_reference_s": t2 - t1,
        "load_register_s": t3 - t2,
        "load_plans_warm_s": t5 - t4,
        "build_dags_s": t6 - t5,
        "specs": len(cold.plans) + len(cold.broken_files),
        "approved": len(plans.plans),
        "errors": plans.broken_files,
        "dags": len(dags),
    }}))
    """
).format(prelude=PRELUDE)

# The child that profiles the timed section of returns.py (only with --profile).
PROFILE = textwrap.dedent(
    """
    import cProfile, pstats, sys
    {prelude}
    from airflow.dag_processing.dagbag import DagBag
    prof = cProfile.Profile()
    prof.enable()
    DagBag(dag_folder=sys.argv[1], load_op_links=False)
    prof.disable()
    prof.dump_stats(sys.argv[2])
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(25)
    """
).format(prelude=PRELUDE)


class BenchError(Exception):
    """The benchmark could not measure what it should (a parse failed or found the wrong DAGs)."""


# ---------------------------------------------------------------------------------------------
# Inputs


def short_name(spec_id: str) -> str:
    """``clas`` -> ``clas``; ``la_finance_quarterly`` -> ``lfq``: keeps generated ids short."""
    parts = spec_id.split("_")
    return spec_id if len(parts) == 1 and len(spec_id) <= 8 else "".join(p[0] for p in parts)


def generate_specs(target: Path, n: int) -> list[str]:
    """Clone the real specs round-robin into ``target`` under new ids; return the new ids."""
    shutil.copytree(SPECS / "shared", target / "shared")
    templates = sorted(SPECS.glob("*.yaml"))
    if not templates:
        raise BenchError(f"no spec templates in {SPECS}")
    width = max(3, len(str(n - 1)))
    ids = []
    for i in range(n):
        template = templates[i % len(templates)]
        text = template.read_text(encoding="utf-8")
        new_id = f"bench_{short_name(template.stem)}_{i:0{width}d}"
        if not re.fullmatch(r"[a-z][a-z0-9_]{1,39}", new_id):
            raise BenchError(f"generated id {new_id!r} is not a valid spec id")
        text, count = re.subn(r"^id:[ \t]*\S+[ \t]*$", f"id: {new_id}", text, count=1, flags=re.MULTILINE)
        if count != 1 or not re.search(r"^  status:[ \t]*approved[ \t]*$", text, flags=re.MULTILINE):
            raise BenchError(f"{template.name}: cannot clone it (no top-level id, or not approved)")
        (target / f"{new_id}.yaml").write_text(text, encoding="utf-8")
        ids.append(new_id)
    return ids


def expected_dags(specs_dir: Path, n: int) -> list[tuple[str, str, list[str], list[str], bool]]:
    """(dag id, opening cron) of every generated spec, via the platform's own loader."""
    from lgdp.periods import opening_cron
    from lgdp.specs.load import load_register

    register = load_register(specs_dir)
    if register.errors:
        raise BenchError("generated specs do not load:\n" + "\n".join(str(e) for e in register.errors.values()))
    approved = register.approved()
    if len(approved) != n:
        raise BenchError(f"expected {n} approved specs, the loader found {len(approved)}")
    return [
        (s.dag_id, opening_cron(s.spec.collection), [c.code for c in s.providers],
         [r.kind for r in s.spec.reminders], bool(s.spec.distribution))
        for s in approved
    ]


def write_floor(path: Path, dags: list[tuple[str, str, list[str], list[str], bool]]) -> None:
    """The floor: the same DAG ids, tasks, mapping, dependencies and schedules, out of EmptyOperators."""
    rows = "\n".join(
        f"    ({dag_id!r}, {cron!r}, {councils!r}, {kinds!r}, {dist!r}),"
        for dag_id, cron, councils, kinds, dist in dags
    )
    path.write_text(
        f'''"""Floor for bench/parse_dags.py: {len(dags)} airflow DAGs of EmptyOperators (generated)."""

import datetime as dt

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, CronTriggerTimetable

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
DAGS = [
{rows}
]

for dag_id, cron, councils, kinds, distributes in DAGS:
    with DAG(
        dag_id=dag_id,
        schedule=CronTriggerTimetable(cron, timezone="Europe/London"),
        start_date=START,
        catchup=False,
    ) as dag:
        opened = EmptyOperator(task_id="open_collection")
        collect = EmptyOperator.partial(task_id="collect").expand_kwargs([{{"doc": c}} for c in councils])
        opened >> collect
        for kind in kinds:
            opened >> EmptyOperator(task_id=f"remind_{{kind}}")
        if distributes:
            collect >> EmptyOperator(task_id="distribute", trigger_rule="all_done")
    globals()[dag_id] = dag
''',
        encoding="utf-8",
    )


# ---------------------------------------------------------------------------------------------
# Running children


def child_env(airflow_home: Path, specs_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LGDP_SHARED_DIR", None)
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        LGDP_SPECS_DIR=str(specs_dir),
        LGDP_CACHE_DIR=str(airflow_home / "lgdp-cache"),
        PYTHONWARNINGS="ignore",
    )
    return env


def run_child(code: str, args: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        raise BenchError(f"child for {args} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("BENCH ") :])


def check_bag(name: str, result: dict, expected: dict[str, int]) -> None:
    """A parse must have read the file, had no import errors and found exactly the expected DAGs."""
    if result["files_parsed"] != 1:
        raise BenchError(f"{name}: the file was not parsed (files parsed: {result['files_parsed']})")
    if result["import_errors"]:
        raise BenchError(f"{name}: import errors:\n" + "\n".join(result["import_errors"].values()))
    if result["dags"] != expected:
        missing = sorted(set(expected) - set(result["dags"]))[:5]
        extra = sorted(set(result["dags"]) - set(expected))[:5]
        raise BenchError(
            f"{name}: expected {len(expected)} DAGs with the returns' task counts, got {len(result['dags'])} "
            f"(missing {missing}, unexpected {extra}, tasks {sorted(set(result['dags'].values()))})"
        )


def median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


# ---------------------------------------------------------------------------------------------
# Main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", type=int, default=170, help="number of synthetic approved specs (default 170)")
    parser.add_argument("--repeat", type=int, default=5, help="fresh-process parses per file; medians reported (default 5)")
    parser.add_argument("--profile", action="store_true", help="also cProfile one parse of returns.py and print the top costs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (specs, floor file, profile)")
    args = parser.parse_args(argv)
    if args.specs < 1 or args.repeat < 1:
        parser.error("--specs and --repeat must be at least 1")

    tmp = Path(tempfile.mkdtemp(prefix="lgdp-bench-parse-"))
    try:
        specs_dir, airflow_home, floor_file = tmp / "return_specs", tmp / "airflow_home", tmp / "floor" / "floor_dags.py"
        specs_dir.mkdir()
        airflow_home.mkdir()
        floor_file.parent.mkdir()
        generate_specs(specs_dir, args.specs)
        os.environ.pop("LGDP_SHARED_DIR", None)
        dags = expected_dags(specs_dir, args.specs)
        write_floor(floor_file, dags)
        expected = {dag_id: 2 + len(kinds) + dist for dag_id, _, _, kinds, dist in dags}
        env = child_env(airflow_home, specs_dir)

        files = {
            "returns.py": (RETURNS_FILE, expected),
            "returns.py (cold cache)": (RETURNS_FILE, expected),
            "return_spec_problems.py": (PROBLEMS_FILE, {}),
            "floor": (floor_file, expected),
        }
        results: dict[str, list[dict]] = {name: [] for name in files}
        load_start = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        for rep in range(args.repeat + 1):  # run 0 is the warm-up (writes byte-code caches), discarded
            for name, (path, want) in files.items():
                if "cold" in name:  # a spec changed since the last parse: everything is validated again
                    shutil.rmtree(airflow_home / "lgdp-cache", ignore_errors=True)
                result = run_child(CHILD, [str(path)], env)
                check_bag(name, result, want)
                if rep:
                    results[name].append(result)
        parts = [run_child(BREAKDOWN, [], env) for _ in range(args.repeat)]
        if parts[0]["approved"] != args.specs or parts[0]["errors"]:
            raise BenchError(f"breakdown child loaded {parts[0]['approved']} approved specs, errors {parts[0]['errors']}")

        n = args.specs
        returns_s = median(results["returns.py"], "bag_s")
        floor_s = median(results["floor"], "bag_s")
        problems_s = median(results["return_spec_problems.py"], "bag_s")
        ratio = returns_s / floor_s

        print(f"DAG parsing: {n} synthetic approved specs, {args.repeat} fresh-process parses per file (medians)")
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}; "
              f"load average at start {load_start}, at end {load}")
        print(f"timed: DagBag(dag_folder=<file>) only; untimed in every child: `{PRELUDE}` "
              f"(median {median(results['floor'], 'prelude_s') * 1000:.0f} ms)")
        print()
        header = f"{'file':<26} {'DAGs':>5} {'parse ms':>9} {'ms/DAG':>7} {'min':>8} {'max':>8} {'serialize ms':>13}"
        print(header)
        print("-" * len(header))
        for name in ("returns.py", "returns.py (cold cache)", "return_spec_problems.py", "floor"):
            rs = results[name]
            bag = [r["bag_s"] * 1000 for r in rs]
            count = len(rs[0]["dags"])
            per = f"{statistics.median(bag) / count:7.2f}" if count else f"{'-':>7}"
            print(f"{name:<26} {count:>5} {statistics.median(bag):9.1f} {per} {min(bag):8.1f} {max(bag):8.1f} "
                  f"{median(rs, 'serialize_s') * 1000:13.1f}")
        print()
        print(f"specs loaded: {parts[0]['specs']} ({parts[0]['approved']} approved); import errors: 0 in every parse; "
              f"{n} DAGs of {min(expected.values())}-{max(expected.values())} tasks (one mapped) in both bags")
        print("returns.py broken down (fresh process, same prelude, medians): "
              f"import lgdp {median(parts, 'import_lgdp_s') * 1000:.0f} ms, "
              f"load_reference {median(parts, 'load_reference_s') * 1000:.0f} ms, "
              f"full validation (cold) {median(parts, 'load_register_s') * 1000:.0f} ms "
              f"({median(parts, 'load_register_s') * 1000 / n:.2f} ms/spec), "
              f"cached plans (warm) {median(parts, 'load_plans_warm_s') * 1000:.1f} ms, "
              f"build_dags {median(parts, 'build_dags_s') * 1000:.0f} ms "
              f"({median(parts, 'build_dags_s') * 1000 / n:.2f} ms/DAG)")
        print(f"both factory files (returns.py + return_spec_problems.py) vs floor: {(returns_s + problems_s) / floor_s:.2f}×")
        best = min(r["bag_s"] for r in results["returns.py"]) / min(r["bag_s"] for r in results["floor"])
        print(f"ratio of the fastest runs (noise check): {best:.2f}×")
        cold_s = median(results["returns.py (cold cache)"], "bag_s")
        print(f"after a spec changes (cold cache), returns.py vs floor: {cold_s / floor_s:.2f}×")
        print(f"ratio: {ratio:.2f}× (goal ≤ 1.5×; returns.py with its plan cache warm, the steady state)")

        if args.profile:
            out = tmp / "returns.prof"
            proc = subprocess.run([sys.executable, "-c", PROFILE, str(RETURNS_FILE), str(out)], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise BenchError(f"profile child failed:\n{proc.stderr[-4000:]}")
            print("\n--- cProfile of one parse of returns.py (fresh process) ---")
            print(proc.stdout)
            if args.keep:
                print(f"profile data: {out}")
        if args.keep:
            print(f"kept: {tmp}")
        return 0
    except BenchError as exc:
        print(f"parse_dags: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
