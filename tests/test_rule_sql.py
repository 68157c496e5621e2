"""Rule SQL is parsed (sqlglot, PostgreSQL dialect) and restricted, never trusted.

Lint refuses, with ``file:line: field.path: message``, every rule that would do more than read this
return's own tables, the previous period's, the declared reference tables and safe functions; the
multi-table spec's yearly changes and table declarations are checked the same way.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lgdp.specs.load import load_register

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "return_specs"


def _spec_dir(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((SPECS / "clas.yaml").read_text())
    mutate(data)
    folder = tmp_path / "specs"
    folder.mkdir(exist_ok=True)
    (folder / "shared").symlink_to(SPECS / "shared")
    (folder / "clas.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def _with_query(query: str, *, table: str = "episodes"):
    def mutate(data):
        data["rules"].append({"code": "CLAS-E099", "severity": "error", "table": table,
                              "message": "A rule under test.", "items": ["child_id"], "query": query})
    return mutate


HOSTILE = [
    ("SELECT e._row_number FROM episodes e; DELETE FROM lgdp.submission_versions", "one SQL statement"),
    ("DELETE FROM episodes", "SELECT"),
    ("UPDATE episodes SET legal_reason = 'PO'", "SELECT"),
    ("SELECT _row_number FROM lgdp.submission_versions", "may read only this return's tables"),
    ("SELECT _row_number FROM pg_catalog.pg_class", "may read only this return's tables"),
    ("SELECT _row_number FROM information_schema.tables", "may read only this return's tables"),
    ("SELECT _row_number FROM lgdp_staging.episodes", "may read only this return's tables"),
    ("SELECT e._row_number FROM episodes e WHERE pg_sleep(10) IS NULL", "pg_sleep()"),
    ("SELECT e._row_number FROM episodes e WHERE set_config('role', 'postgres', false) IS NULL", "set_config()"),
    ("SELECT e._row_number FROM episodes e WHERE pg_read_file('/etc/passwd') IS NULL", "pg_read_file()"),
    ("SELECT e._row_number FROM episodes e WHERE dblink('x', 'y') IS NULL", "dblink()"),
    ("SELECT e._row_number INTO TEMP t FROM episodes e", "may only read data"),
    ("SELECT e._row_number FROM episodes e FOR UPDATE", "FOR UPDATE"),
    ("SELECT e._row_number FROM foster_carers e", "not a table of this return"),
    ("SELECT e._row_number FROM reference.secret_list e", "not a shared reference table"),
    ("SELECT e._row_number FROM episodes e WHERE e.no_such_item = 1", "no column 'no_such_item'"),
    ("SELECT e.child_id FROM episodes e", "_row_number"),
    ("SELECT e._row_number FROM episodes e WHERE e.episode_start_date > :tomorrow", ":tomorrow"),
    ("SELEC _row_number FRO episodes", "not valid SQL"),
]


@pytest.mark.parametrize(("query", "phrase"), HOSTILE, ids=[q[:40] for q, _ in HOSTILE])
def test_hostile_or_broken_query_rules_are_lint_errors(tmp_path: Path, query: str, phrase: str) -> None:
    folder = _spec_dir(tmp_path, _with_query(query))
    reg = load_register(folder)
    assert not reg.specs, "the spec must not load"
    [problems] = reg.errors.values()
    lines = [str(p) for p in problems.problems]
    assert len(lines) == 1, lines
    assert "rules.27.query:" in lines[0] and phrase in lines[0], lines[0]
    # it points at the rule's query line in the file
    line_no = int(lines[0].split(":")[1])
    assert (folder / "clas.yaml").read_text().splitlines()[line_no - 1].lstrip().startswith("query:")


HOSTILE_CONDITIONS = [
    ("child_id IS NOT NULL; DROP TABLE x", "no ';'"),
    ("child_id IN (SELECT child_id FROM lgdp.councils)", "query rule"),
    ("count(*) > 1", "query rule"),
    ("pg_sleep(1) IS NULL", "pg_sleep()"),
    ("lgdp.councils.code IS NULL", "without a table"),
    ("no_such_item IS NULL", "not a data item of the table episodes"),
]


@pytest.mark.parametrize(("expression", "phrase"), HOSTILE_CONDITIONS, ids=[q for q, _ in HOSTILE_CONDITIONS])
def test_hostile_row_conditions_are_lint_errors(tmp_path: Path, expression: str, phrase: str) -> None:
    def mutate(data):
        data["rules"].append({"code": "CLAS-E099", "severity": "error", "table": "episodes",
                              "message": "A rule under test.", "items": ["child_id"], "expression": expression})
    reg = load_register(_spec_dir(tmp_path, mutate))
    [problems] = reg.errors.values()
    lines = [str(p) for p in problems.problems]
    assert any("rules.27.expression:" in l and phrase in l for l in lines), lines


@pytest.mark.parametrize(("mutate", "phrase"), [
    (lambda d: d["rules"][0].pop("table"), "must name the table"),
    (lambda d: d["rules"][0].update(table="carers"), "not a table of this return"),
    (lambda d: d["tables"][1]["parent"].update(table="carers"), "not another table"),
    (lambda d: d["tables"][2]["parent"].update(items=["child_id"]), "list exactly those items"),
    (lambda d: d["tables"][0].update(parent={"table": "placements", "items": ["child_id"]}), "loop"),
    (lambda d: d["changes"][0]["retire_rules"].append("CLAS-E999"), "not a rule in force"),
    (lambda d: d["changes"][0].update(version=2), "the version must go up"),
    (lambda d: d["changes"][0]["items"][0].update(table="carers"), "not in this return"),
    (lambda d: d["distribution"][0]["columns"].append("sex"), "name the column as table.item"),
], ids=["rule-without-table", "rule-unknown-table", "unknown-parent", "parent-not-keys", "parent-loop",
        "retire-unknown-rule", "version-not-up", "change-unknown-table", "unqualified-column"])
def test_structure_problems_are_lint_errors(tmp_path: Path, mutate, phrase: str) -> None:
    reg = load_register(_spec_dir(tmp_path, mutate))
    assert not reg.specs
    [problems] = reg.errors.values()
    assert any(phrase in str(p) for p in problems.problems), [str(p) for p in problems.problems]


def test_lint_cli_reports_file_line_and_path(tmp_path: Path) -> None:
    folder = _spec_dir(tmp_path, _with_query("SELECT _row_number FROM lgdp.submission_versions"))
    run = subprocess.run([str(Path(sys.executable).with_name("lgdp")), "specs", "lint", str(folder / "clas.yaml")],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "LGDP_SPECS_DIR": str(folder)})
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "clas.yaml:" in run.stdout and ": rules.27.query: the query reads lgdp.submission_versions" in run.stdout


def test_the_platform_scopes_every_table_itself() -> None:
    """The SQL that runs reads each table through a subquery filtered on council, period and version."""
    from lgdp.validate.checks import checks

    spec = load_register(SPECS).get("clas")
    e020 = next(c for c in checks(spec.table("episodes")) if c.code == "CLAS-E020")
    assert e020.query.count("_council_code = '${var.COUNCIL}'") == 2  # both sides of the self-join
    assert e020.query.count("_submission_version_id = CAST('${var.VERSION}' AS BIGINT)") == 2
    q021 = next(c for c in checks(spec.table("children")) if c.code == "CLAS-Q021")
    assert "CAST('${var.PREVIOUS}' AS BIGINT)" in q021.query
    e005 = next(c for c in checks(spec.table("episodes")) if c.code == "CLAS-E005")
    assert "CAST('${var.PERIOD_END}' AS DATE)" in e005.failing
