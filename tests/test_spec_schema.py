"""return_specs/schema.json: generated from the model, kept in sync, and usable by editors.

Editors validate specs against the JSON Schema as they are typed, so the committed file must be
what ``lgdp specs schema`` writes today, must accept every real spec and must refuse at least the
mistakes the schema can see on its own (unknown fields, values outside a list, wrong types).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lgdp.specs.schema import schema_text, spec_json_schema

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "return_specs"
BROKEN = ROOT / "tests" / "broken_specs"
SCHEMA_FILE = SPECS / "schema.json"
REAL_SPECS = sorted(SPECS.glob("*.yaml"))


def as_json(value: Any) -> Any:
    """YAML as JSON sees it: dates become 'YYYY-MM-DD' strings (JSON Schema 'format: date')."""
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_committed_schema_is_in_sync_with_the_model() -> None:
    assert SCHEMA_FILE.exists(), "return_specs/schema.json is missing: run 'lgdp specs schema'"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "return_specs/schema.json is out of date with include/lgdp/specs/model.py: "
        "run 'lgdp specs schema' and commit the result"
    )


def test_schema_command_writes_the_same_text(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    run = subprocess.run(
        [sys.executable, "-m", "lgdp.cli", "specs", "schema", "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert out.read_text(encoding="utf-8") == schema_text()


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = spec_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    # strict like the model: a misspelt field is refused by the editor too
    assert schema.get("additionalProperties") is False


@pytest.mark.parametrize("path", REAL_SPECS, ids=[p.stem for p in REAL_SPECS])
def test_every_real_spec_validates_against_the_schema(path: Path) -> None:
    data = as_json(yaml.safe_load(path.read_text(encoding="utf-8")))
    errors = sorted(validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_there_are_real_specs() -> None:
    assert any(p.stem == "clas" for p in REAL_SPECS)


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("broken_unknown_top_field", ()),
        ("broken_unknown_nested_field", ("governance",)),
        ("broken_unknown_item_field", ("items", 1)),
        ("broken_bad_status", ("governance", "status")),
        ("broken_bad_frequency", ("collection", "frequency")),
        ("broken_missing_legal_basis", ("governance",)),
        ("broken_wrong_type_version", ("version",)),
        ("broken_id_not_slug", ("id",)),
        ("broken_provider_not_gss", ("providers",)),
        ("broken_bad_format", ("formats", 1)),
        ("broken_opening_day", ("collection", "opens", "day")),
        ("broken_rule_bad_severity", ("rules", 1, "severity")),
        ("broken_destination_type", ("distribution", 1, "destination")),
        ("broken_items_empty", ("items",)),
        ("broken_review_date_format", ("governance", "review_date")),
    ],
)
def test_broken_specs_are_refused_by_the_schema_too(name: str, where: tuple[Any, ...]) -> None:
    data = as_json(yaml.safe_load((BROKEN / f"{name}.yaml").read_text(encoding="utf-8")))
    errors = list(validator().iter_errors(data))
    assert errors, f"the JSON Schema accepts {name}.yaml"
    paths = {tuple(e.absolute_path) for e in errors}
    assert any(p[: len(where)] == where for p in paths), paths
