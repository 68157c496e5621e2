"""``lgdp check``: exit 0 clean, 1 issues, 2 unreadable; --json for machines; never a traceback.

The parser's side (file, header and type issues). The full validation in a scratch database is
tested in ``tests/test_check_offline.py``.
"""

from __future__ import annotations

import io
import json

from lgdp import synth
from lgdp.cli import main
from lgdp.specs.load import load_register

SPECS = {s.id: s for s in load_register().specs}
COUNCIL = "S12000036"


def write_csv(path, council=COUNCIL, bad=False):
    loaded = SPECS["temporary_accommodation_monthly"]
    text = io.StringIO()
    rows = synth.rows(loaded, council, "2025-07", None, seed=2).rows
    synth.write_rows(loaded, rows, "csv", text)
    body = text.getvalue()
    if bad:
        lines = body.splitlines()
        parts = lines[2].split(",")
        parts[2] = "lots"
        lines[2] = ",".join(parts)
        body = "\n".join(lines) + "\n"
    path.write_text(body)
    return path


def test_clean_file_exits_0(tmp_path, capsys):
    f = write_csv(tmp_path / "ta.csv")
    assert main(["check", "--return", "temporary_accommodation_monthly", "--council", COUNCIL, str(f)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "8 row(s) read as csv; 0 error(s), 0 queries" in err


def test_issues_exit_1_one_line_each(tmp_path, capsys):
    f = write_csv(tmp_path / "ta.csv", bad=True)
    assert main(["check", "--return", "temporary_accommodation_monthly", str(f)]) == 1
    out, _ = capsys.readouterr()
    [line] = out.splitlines()
    assert line.startswith("TYPE-001 error [row 3, column households]: 'lots' in ")


def test_other_council_exit_1(tmp_path, capsys):
    f = write_csv(tmp_path / "ta.csv", council="S12000005")
    assert main(["check", "--return", "temporary_accommodation_monthly", "--council", COUNCIL, str(f)]) == 1
    assert "ID-001" in capsys.readouterr().out


def test_unreadable_exit_2_json(tmp_path, capsys):
    f = tmp_path / "clas.xlsx"
    f.write_bytes(b"PK\x03\x04 this is not a workbook")
    assert main(["check", "--return", "clas", "--json", str(f)]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["readable"] is False and doc["issues"][0]["code"] == "FILE-001"
    assert set(doc["issues"][0]) == {"code", "severity", "message", "row", "item", "value", "table"}


def test_json_clean(tmp_path, capsys):
    f = write_csv(tmp_path / "ta.csv")
    assert main(["check", "--return", "temporary_accommodation_monthly", "--json", str(f)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {**doc, "readable": True, "format": "csv", "rows": 8, "errors": 0, "queries": 0, "issues": []}


def test_missing_file_and_unknown_return_exit_2(tmp_path, capsys):
    assert main(["check", "--return", "clas", str(tmp_path / "nope.xlsx")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["check", "--return", "nope", str(tmp_path)]) == 2
    assert "no return" in capsys.readouterr().err
    assert main(["check", "--return", "clas", str(tmp_path)]) == 2
    assert "folder" in capsys.readouterr().err


def test_parse_only_needs_no_database(tmp_path, capsys, monkeypatch):
    f = write_csv(tmp_path / "ta.csv", bad=True)
    monkeypatch.setenv("LGDP_DATABASE_URL", "postgresql+psycopg://nobody@/nowhere?host=/nonexistent")
    assert main(["check", "--return", "temporary_accommodation_monthly", "--parse-only", str(f)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("TYPE-001 error [row 3, column households]") and "parse only" in err
    f = write_csv(tmp_path / "ta.csv")
    assert main(["check", "--return", "temporary_accommodation_monthly", "--parse-only", "--json", str(f)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["validated"] is False and doc["outcome"] is None and doc["issues"] == []


def test_json_clean_was_validated(tmp_path, capsys):
    f = write_csv(tmp_path / "ta.csv")
    assert main(["check", "--return", "temporary_accommodation_monthly", "--council", COUNCIL, "--json", str(f)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["validated"] is True and doc["outcome"] == "accepted" and doc["period"]
