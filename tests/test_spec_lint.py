"""`lgdp specs lint`: every broken spec in tests/broken_specs/ is refused with the right line.

Each file in tests/broken_specs/ is a small copy of the CLAS spec with exactly one deliberate
problem, described by its header::

    # expect: <line>: <field.path>: <phrase of the message>

Lint must report exactly one problem for it, ``<file>:<line>: <field.path>: <message>``, with the
phrase in the message, exit 1 and never print a traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lgdp.cli import main
from lgdp.specs.load import load_reference, load_register, load_spec, SpecError

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "return_specs"
BROKEN = ROOT / "tests" / "broken_specs"
EXPECT = re.compile(r"^# expect: (\d+): (\S+): (.+)$", re.M)
PROBLEM = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<path>\S+): (?P<message>.+)$")


def _corpus() -> list[tuple[Path, int, str, str]]:
    out = []
    for path in sorted(BROKEN.glob("*.yaml")):
        m = EXPECT.search(path.read_text(encoding="utf-8"))
        assert m, f"{path.name} has no '# expect: <line>: <field.path>: <phrase>' header"
        out.append((path, int(m.group(1)), m.group(2), m.group(3).strip()))
    return out


CORPUS = _corpus()


def _env() -> dict[str, str]:
    env = os.environ.copy()
    env.pop("LGDP_SPECS_DIR", None)
    env.pop("LGDP_SHARED_DIR", None)
    return env


def lint(*paths: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a return owner would."""
    return subprocess.run(
        [sys.executable, "-m", "lgdp.cli", "specs", "lint", *map(str, paths)],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _problems(stdout: str) -> list[dict[str, str]]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    parsed = [PROBLEM.match(line) for line in lines]
    assert all(parsed), f"lines not in 'file:line: field.path: message' form:\n{stdout}"
    return [m.groupdict() for m in parsed if m]


@pytest.fixture(autouse=True)
def _default_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LGDP_SPECS_DIR", raising=False)
    monkeypatch.delenv("LGDP_SHARED_DIR", raising=False)


@pytest.fixture(scope="module")
def corpus_run() -> subprocess.CompletedProcess[str]:
    """One run of the real CLI over the whole corpus (one process, so the suite stays quick)."""
    return lint(_rel(BROKEN))


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 16
    for path, *_ in CORPUS:
        # load.py requires the id to be the file name: a file whose id differs would be broken
        # for that reason too. Only broken_id_* files play with the id on purpose.
        if not path.stem.startswith(("broken_id_", "broken_list_", "broken_empty_", "broken_yaml_")):
            assert re.search(rf"^id: {path.stem}$", path.read_text(encoding="utf-8"), re.M), path.name


def test_corpus_run_has_no_traceback_and_fails(corpus_run: subprocess.CompletedProcess[str]) -> None:
    assert corpus_run.returncode == 1
    assert "Traceback" not in corpus_run.stdout + corpus_run.stderr
    assert f"{len(CORPUS)} problem(s) found." in corpus_run.stderr


@pytest.mark.parametrize(("path", "line", "field", "phrase"), CORPUS, ids=[c[0].stem for c in CORPUS])
def test_broken_spec_is_reported_at_the_right_place(
    corpus_run: subprocess.CompletedProcess[str], path: Path, line: int, field: str, phrase: str
) -> None:
    mine = [p for p in _problems(corpus_run.stdout) if p["file"] == _rel(path)]
    assert len(mine) == 1, f"{path.name} must be broken for exactly one reason, lint says:\n" + "\n".join(
        f"{p['line']}: {p['path']}: {p['message']}" for p in mine
    )
    got = mine[0]
    assert (int(got["line"]), got["path"]) == (line, field), got
    assert phrase in got["message"], got


@pytest.mark.parametrize(("path", "line", "field", "phrase"), CORPUS, ids=[c[0].stem for c in CORPUS])
def test_broken_spec_alone_exits_1(
    capsys: pytest.CaptureFixture[str], path: Path, line: int, field: str, phrase: str
) -> None:
    """The same through the command's entry point, one file at a time (in process: quick)."""
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert main(["specs", "lint", _rel(path)]) == 1
    finally:
        os.chdir(cwd)
    out = capsys.readouterr()
    [reported] = out.out.splitlines()
    assert reported.startswith(f"{_rel(path)}:{line}: {field}: ")
    assert phrase in reported
    assert "1 problem(s) found." in out.err


@pytest.mark.parametrize("name", ["broken_unknown_top_field", "broken_review_date_invalid", "broken_yaml_syntax"])
def test_single_broken_file_through_the_real_cli(name: str) -> None:
    path, line, field, phrase = next(c for c in CORPUS if c[0].stem == name)
    run = lint(_rel(path))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    [got] = _problems(run.stdout)
    assert (got["file"], int(got["line"]), got["path"]) == (_rel(path), line, field)
    assert phrase in got["message"]


def test_the_real_specs_are_valid() -> None:
    run = lint()
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    assert f"{len(list(SPECS.glob('*.yaml')))} spec(s) valid." in run.stderr


def test_the_real_specs_folder_given_explicitly_is_valid() -> None:
    run = lint("return_specs")
    assert run.returncode == 0, run.stdout + run.stderr


def test_folder_with_a_good_and_a_broken_spec_reports_only_the_broken_one(tmp_path: Path) -> None:
    shutil.copy(SPECS / "clas.yaml", tmp_path / "clas.yaml")
    broken = BROKEN / "broken_bad_status.yaml"
    shutil.copy(broken, tmp_path / broken.name)
    run = lint(tmp_path)
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    problems = _problems(run.stdout)
    assert [Path(p["file"]).name for p in problems] == [broken.name]
    assert problems[0]["path"] == "governance.status"
    assert "clas.yaml" not in run.stdout


def test_nonexistent_path_is_a_clear_problem(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_spec.yaml"
    run = lint(missing)
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines and all(line.startswith(f"{missing}:1: (file): ") for line in lines), run.stdout
    assert any("no such file" in line.lower() for line in lines)


def test_good_and_broken_files_named_together(tmp_path: Path) -> None:
    run = lint("return_specs/clas.yaml", "tests/broken_specs/broken_duplicate_item.yaml")
    assert run.returncode == 1
    [got] = _problems(run.stdout)
    assert got["file"] == "tests/broken_specs/broken_duplicate_item.yaml"


# ---------------------------------------------------------------------------------------------
# The loader itself


def test_a_broken_spec_does_not_stop_a_good_one_loading(tmp_path: Path) -> None:
    shutil.copy(SPECS / "clas.yaml", tmp_path / "clas.yaml")
    for name in ("broken_yaml_syntax", "broken_unknown_top_field", "broken_rule_unknown_item"):
        shutil.copy(BROKEN / f"{name}.yaml", tmp_path / f"{name}.yaml")
    shutil.copytree(SPECS / "shared", tmp_path / "shared")
    reg = load_register(tmp_path)
    assert [s.id for s in reg.specs] == ["clas"]
    assert sorted(Path(p).stem for p in reg.errors) == [
        "broken_rule_unknown_item",
        "broken_unknown_top_field",
        "broken_yaml_syntax",
    ]
    with pytest.raises(KeyError, match="has problems"):
        reg.get("broken_yaml_syntax")
    assert reg.get("clas").spec.id == "clas"


def test_a_folder_without_shared_data_uses_the_platform_reference(tmp_path: Path) -> None:
    shutil.copy(SPECS / "clas.yaml", tmp_path / "clas.yaml")
    reg = load_register(tmp_path)
    assert [s.id for s in reg.specs] == ["clas"]
    assert reg.errors == {}


def test_every_real_spec_loads() -> None:
    reg = load_register(SPECS)
    assert reg.errors == {}, "\n".join(str(e) for e in reg.errors.values())
    assert sorted(s.id for s in reg.specs) == sorted(p.stem for p in SPECS.glob("*.yaml"))


@pytest.mark.parametrize(("path", "line", "field", "phrase"), CORPUS, ids=[c[0].stem for c in CORPUS])
def test_load_spec_raises_spec_error(path: Path, line: int, field: str, phrase: str) -> None:
    ref = load_reference(SPECS / "shared")
    with pytest.raises(SpecError) as info:
        load_spec(path, ref)
    [problem] = info.value.problems
    assert (problem.line, problem.path or "(file)") == (line, field)
    assert phrase in problem.message


@pytest.mark.parametrize(
    ("text", "field", "phrase"),
    [
        ("a: &x [*x]\n", "(file)", "refers to itself"),
        ("? [a, b]\n: 1\n", "(file)", "single word"),
        ("id: x\n---\nid: y\n", "(file)", "more than one document"),
        ("id: x\n  title: y\n", "(file)", "not valid YAML"),
        ("\ufeffid: [\n", "(file)", "not valid YAML"),
        ("!!python/object:os.system {}\n", "(file)", "is not allowed"),
        ("id: !!python/name:os.system x\n", "(file)", "not valid YAML"),
    ],
)
def test_odd_yaml_never_raises_a_traceback(tmp_path: Path, text: str, field: str, phrase: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path, load_reference(SPECS / "shared"))
    assert any(p.path in ("", field) and phrase in p.message for p in info.value.problems), info.value


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("title: Caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(path, load_reference(SPECS / "shared"))
