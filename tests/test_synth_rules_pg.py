"""The synthetic data against the specs' own rule SQL, evaluated by PostgreSQL.

For every approved spec: clean rows pass every rule expression, and each rule fault makes
exactly the recorded rows fail that rule's expression (and no other). A row fails a rule when
the expression is not true (false or NULL), the strictest reading. Rows go into a temporary
table whose columns are typed from the items, as the platform's staging tables are.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from lgdp import synth
from lgdp.specs.load import LoadedSpec, load_register

PG_TYPES = {"string": "text", "code": "text", "integer": "bigint", "decimal": "numeric", "date": "date", "boolean": "boolean"}
PERIODS = {"annual": "2025-26", "quarterly": "2025-26-Q3", "monthly": "2026-02"}
SPECS = load_register().approved()


@pytest.fixture(scope="module")
def pg(ledger_url: str) -> Iterator[Connection]:
    engine = create_engine(ledger_url)
    with engine.connect() as conn:
        yield conn
        conn.rollback()
    engine.dispose()


def load_rows(conn: Connection, spec: LoadedSpec, rows: list[dict]) -> None:
    columns = ", ".join(f"{it.name} {PG_TYPES[it.type.value]}" for it in spec.items)
    conn.exec_driver_sql("DROP TABLE IF EXISTS pg_temp.synth_rows")
    conn.exec_driver_sql(f"CREATE TEMP TABLE synth_rows (_row integer, {columns})")
    marks = ", ".join(["%s"] * (len(spec.items) + 1))
    conn.exec_driver_sql(
        f"INSERT INTO synth_rows VALUES ({marks})",
        [tuple([i + synth.FIRST_DATA_ROW] + [r[it.name] for it in spec.items]) for i, r in enumerate(rows)],
    )


def failing_rows(conn: Connection, spec: LoadedSpec) -> dict[str, set[int]]:
    return {
        rule.code: {r[0] for r in conn.exec_driver_sql(f"SELECT _row FROM synth_rows WHERE ({rule.expression}) IS NOT TRUE")}
        for rule in spec.spec.rules
    }


def n_for(spec: LoadedSpec, wanted: int) -> int:
    limit = synth.generator_for(spec).max_rows()
    return min(wanted, limit) if limit else wanted


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_clean_rows_pass_every_rule_expression(pg: Connection, spec: LoadedSpec) -> None:
    for seed, council in enumerate((spec.providers[0].code, spec.providers[-1].code)):
        result = synth.rows(spec, council, PERIODS[spec.spec.collection.frequency.value], n_for(spec, 2000), seed=seed)
        load_rows(pg, spec, result.rows)
        assert failing_rows(pg, spec) == {r.code: set() for r in spec.spec.rules}


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_each_rule_fault_fails_exactly_its_rule_expression(pg: Connection, spec: LoadedSpec) -> None:
    codes = [r.code for r in spec.spec.rules]
    per_rule = 1 if synth.generator_for(spec).max_rows() else 3
    for seed in range(3):
        council = spec.providers[seed % len(spec.providers)].code
        result = synth.rows(
            spec, council, PERIODS[spec.spec.collection.frequency.value], n_for(spec, 300), seed=seed,
            faults={c: per_rule for c in codes},
        )
        load_rows(pg, spec, result.rows)
        expected = {c: {f.row_number for f in result.faults_of(c)} for c in codes}
        assert all(len(rows) == per_rule for rows in expected.values())
        assert failing_rows(pg, spec) == expected
