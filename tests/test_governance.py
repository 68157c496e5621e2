"""Governance of returns (docs/governance.md), on the real specs.

A proposal (a proposed return, or a proposed change to an approved one) must say what governance
needs, or lint refuses it; it never becomes a DAG nor applies to a period. The review pack of the
proposed change to CLAS in return_specs/clas.yaml (adds an item, rewords one, retires a rule,
tightens a code list) lists exactly those changes with exact burden figures; the change preview
replays councils' accepted submissions under the proposal and its counts equal what validating
them under the new rule book gives, leaving the live ledger as it was; the platform team's weekly
digest lists reviews due, proposals and returns not collected in a year; a retired return stops
collecting and keeps its history.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from lgdp import synth
from lgdp.specs.governance import burden, render_markdown, render_text, review_pack
from lgdp.specs.load import load_register, proposed_rule_book

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "return_specs"
PERIOD = "2025-26"
EDINBURGH, GLASGOW = "S12000036", "S12000049"


def real():
    return load_register(SPECS)


def _folder(tmp_path: Path, name: str, mutate) -> Path:
    data = yaml.safe_load((SPECS / f"{name}.yaml").read_text())
    mutate(data)
    folder = tmp_path / "specs"
    folder.mkdir(exist_ok=True)
    if not (folder / "shared").exists():
        (folder / "shared").symlink_to(SPECS / "shared")
    (folder / f"{data['id']}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


PROPOSAL = {
    "submitted_by": "Scottish Government Housing Statistics (housing-stats@sg.example.org)",
    "submitted_on": "2026-11-20",
    "regularity": "Monthly, because homelessness moves faster than a quarter shows.",
    "duration": "2027-04 to 2030-03, then reviewed",
    "burden": {"records_per_council": 1, "minutes_per_record": 30},
    "agreements": [{"body": "Housing statistics user group", "date": "2026-11-18"}],
}


def _new_return(data):
    data["id"] = "temporary_accommodation_proposed"
    data["title"] = "Households in Temporary Accommodation (proposed weekly detail)"
    data["governance"]["status"] = "proposed"
    data["governance"]["proposal"] = PROPOSAL


# --- lint -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("mutate", "phrase"), [
    (lambda d: d["governance"].update(status="proposed"), "a proposed return needs governance.proposal"),
    (lambda d: (d["governance"].update(status="proposed", proposal={**PROPOSAL, "agreements": [
        {"body": "Housing statistics user group", "date": "2026-11-18", "items": ["households"]}]})),
     "has no data dictionary reference (ref) and no agreement covers its wording"),
    (lambda d: d.setdefault("changes", []).append({"from_period": "2027-04", "version": d["version"] + 1, "status": "proposed",
                                                   "summary": "A change without its proposal."}),
     "a proposed change needs proposal"),
], ids=["proposed-without-proposal", "item-without-agreement", "change-without-proposal"])
def test_a_proposal_must_say_what_governance_needs(tmp_path: Path, mutate, phrase: str) -> None:
    reg = load_register(_folder(tmp_path, "temporary_accommodation_monthly", mutate))
    assert not reg.specs
    [problems] = reg.errors.values()
    assert any(phrase in str(p) for p in problems.problems), [str(p) for p in problems.problems]
    assert all(str(p).split(":")[1].isdigit() for p in problems.problems)  # file:line: path: message


def test_an_approved_change_cannot_follow_a_proposed_one(tmp_path: Path) -> None:
    def mutate(d):
        d["changes"].append({"from_period": "2028-29", "version": 5, "summary": "Approved after a proposal."})
    reg = load_register(_folder(tmp_path, "clas", mutate))
    [problems] = reg.errors.values()
    assert any("cannot follow a proposed one" in str(p) for p in problems.problems)


def test_a_proposal_is_in_the_register_but_never_a_dag_nor_applied(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "temporary_accommodation_monthly", _new_return)
    reg = load_register(folder)
    ids = {s.id for s in reg.specs}
    assert "temporary_accommodation_proposed" in ids
    assert "temporary_accommodation_proposed" not in {s.id for s in reg.approved()}  # DAGs come from approved()
    from lgdp.specs.plans import compute_plans  # what the DAG factory builds DAGs from

    assert "return_temporary_accommodation_proposed" not in {p.dag_id for p in compute_plans(folder).plans}
    clas = real().get("clas")
    # the proposed change to CLAS (from 2027-28) is not applied to any period
    assert "placement_postcode_district" not in [i.name for i in clas.for_period("2027-28").table("placements").items]
    assert "CLAS-Q026" in {r.code for r in clas.for_period("2028-29").spec.rules}


# --- the review pack ------------------------------------------------------------------------


def test_review_pack_of_the_proposed_change_to_clas_lists_exactly_the_changes() -> None:
    reg = real()
    pack = review_pack(reg.get("clas"), reg)
    assert pack.kind == "change" and pack.from_period == "2027-28"
    assert pack.items_added == ["placements.placement_postcode_district"]
    assert pack.items_removed == []
    assert [(r.item, r.field) for r in pack.reworded] == [("episodes.legal_reason", "wording"), ("episodes.legal_reason", "guidance")]
    assert pack.reworded[0].before == "Legal reason for being looked after"
    assert pack.reworded[0].after == "Legal basis on which the child became looked after"
    assert [(c.item, c.added, c.removed) for c in pack.codes_changed] == [("placements.placement_type", (), ("OTH",))]
    assert pack.rules_added == [] and pack.rules_removed == ["CLAS-Q026"] and pack.rules_changed == []
    # burden: items x councils x collections a year, exactly
    b, a = pack.burden_before, pack.burden_after
    assert (b.items, b.councils, b.collections_a_year, b.item_returns) == (20, 32, 1, 640)
    assert (a.items, a.item_returns) == (21, 672)
    assert a.hours_a_year == 1500 * 1.5 * 32 / 60
    text = render_text(pack)
    assert "change: +32 item returns a year (+1 items)" in text and "Rules removed\n\n- CLAS-Q026" in text
    md = render_markdown(pack)
    assert md.startswith("# Review pack: Children Looked After in Scotland (CLAS) (clas), change")
    assert "Agreed by CLAS working group" in md


def test_review_pack_of_a_new_return_finds_items_other_returns_collect(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "temporary_accommodation_monthly", _new_return)
    for name in ("clas", "la_finance_quarterly", "social_care_survey", "temporary_accommodation_monthly"):
        (folder / f"{name}.yaml").write_text((SPECS / f"{name}.yaml").read_text())
    reg = load_register(folder)
    new = reg.get("temporary_accommodation_proposed")
    pack = review_pack(new, reg)
    assert pack.kind == "new return" and pack.burden_before is None
    assert pack.items_added == [i.name for i in new.items]
    # the council code is the same dictionary item as in every other return; the whole of the
    # approved monthly return is worded the same (a near duplicate of every item)
    same = {(d.item, d.other) for d in pack.duplicates if d.why.startswith("same dictionary item")}
    assert ("council_code", "clas.children.council_code") in same
    similar = {d.item for d in pack.duplicates if d.other.startswith("temporary_accommodation_monthly.")}
    assert similar == {i.name for i in new.items}
    assert pack.burden_after.item_returns == len(new.items) * 32 * 12


def test_burden_of_every_real_spec_is_exact() -> None:
    """Items (columns a council fills in, over all tables) x provider councils x collections a year."""
    got = {s.id: (b.items, b.councils, b.collections_a_year, b.item_returns) for s in real().specs for b in [burden(s)]}
    assert got == {
        "clas": (8 + 5 + 6, 32, 1, 608),  # children, episodes, placements (before the 2026-27 change)
        "la_finance_quarterly": (6, 32, 4, 768),
        "social_care_survey": (13, 8, 1, 104),  # a pilot with eight councils
        "temporary_accommodation_monthly": (6, 32, 12, 2304),
    }


def test_review_cli(tmp_path: Path, capsys) -> None:
    from lgdp.cli import main

    out = tmp_path / "pack.md"
    assert main(["specs", "review", str(SPECS / "clas.yaml"), "--output", str(out)]) == 0
    assert "Items added\n\n- placements.placement_postcode_district" in capsys.readouterr().out
    assert out.read_text().startswith("# Review pack")
    assert main(["specs", "review", str(SPECS / "la_finance_quarterly.yaml")]) == 1
    assert "no proposed change" in capsys.readouterr().err


# --- the change preview ---------------------------------------------------------------------


def _tables_snapshot() -> dict[str, int]:
    from sqlalchemy import text

    from lgdp.ledger.db import session

    with session() as s:
        names = s.execute(text(
            "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname IN ('lgdp', 'lgdp_staging', "
            "'lgdp_staging_versions') ORDER BY 1")).scalars().all()
        return {n: s.execute(text(f'SELECT count(*) FROM {".".join(chr(34) + p + chr(34) for p in n.split(".", 1))}')).scalar()
                for n in names}


def test_change_preview_replays_accepted_submissions_and_leaves_the_ledger_alone(clean_ledger, tmp_path: Path, capsys,
                                                                              monkeypatch) -> None:
    import io

    from lgdp.collect.process import process_file
    from lgdp.ledger.db import session
    from lgdp.ledger.register import open_period
    from lgdp.periods import period_from_label
    from lgdp.synth.writers import to_xlsx_tables
    from lgdp.validate.preview import preview

    reg = real()
    clas = reg.get("clas")
    monkeypatch.setenv("LGDP_SPECS_DIR", str(SPECS))
    with session() as s, s.begin():
        open_period(s, clas, period_from_label(clas.spec.collection, PERIOD))
    expected: dict[str, set] = {}
    for k, council in enumerate((EDINBURGH, GLASGOW)):
        data = synth.tables(clas, council, PERIOD, 80, seed=30 + k)
        buf = io.BytesIO()
        to_xlsx_tables(data.tables, {t.dataset: list(t.items) for t in clas.tables}, buf)
        ref = {"name": f"clas-{council}.xlsx", "id": f"item-{k}", "etag": f"e{k}", "path": "clas.xlsx"}
        out = process_file(clas, PERIOD, council, ref, buf.getvalue())
        assert out.status == "accepted", [str(i) for i in out.issues]
        # the proposal drops 'OTH' from the placement types: exactly those rows newly fail
        expected[council] = {("CODE-placement_type", "placements", n + 2)
                             for n, p in enumerate(data.tables["placements"]) if p["placement_type"] == "OTH"}
    assert all(expected.values())
    before_snapshot = _tables_snapshot()
    old, new, _ = proposed_rule_book(clas)
    report = preview(old, new, PERIOD)
    assert _tables_snapshot() == before_snapshot  # the live ledger is unchanged
    by = {c.council: c for c in report.councils}
    assert set(by) == {EDINBURGH, GLASGOW} and len(report.without_accepted) == 30
    for council, want in expected.items():
        assert set(by[council].newly_failing) == want
        assert by[council].newly_passing == []
        assert by[council].status_before == "accepted" and by[council].status_after == "rejected"
        assert by[council].after.get("CODE-placement_type") == len(want)
    assert report.per_rule() == {"CODE-placement_type": (sum(map(len, expected.values())), 0, 2)}
    # the CLI prints the same report
    from lgdp.cli import main

    assert main(["specs", "preview", str(SPECS / "clas.yaml"), "--period", PERIOD]) == 0
    printed = capsys.readouterr().out
    assert f"CODE-placement_type: +{sum(map(len, expected.values()))} / -0; 2 council(s)" in printed
    assert _tables_snapshot() == before_snapshot


# --- review due, the platform team's digest, retirement ----------------------------------------


def test_platform_digest_lists_reviews_due_proposals_and_returns_not_collected(smtp, clean_ledger) -> None:
    from lgdp.notify.platform import plan_platform_digest, send_platform_digest

    reg = real()
    planned = plan_platform_digest(reg, {"clas": dt.date(2026, 8, 1)}, dt.date(2027, 7, 5), ["team@example.org"])
    assert planned is not None
    assert "clas" in planned.review_due  # review date 2027-06-30 has passed
    assert planned.proposals == ["clas"]
    assert "clas" not in planned.not_collected
    assert set(planned.not_collected) == {"la_finance_quarterly", "social_care_survey", "temporary_accommodation_monthly"}
    assert "Review pack: lgdp specs review" in planned.email.text

    import os

    os.environ["LGDP_SPECS_DIR"] = str(SPECS)
    try:
        out = send_platform_digest(dt.datetime(2027, 7, 5, 7, 30, tzinfo=dt.timezone.utc))
        again = send_platform_digest(dt.datetime(2027, 7, 6, 7, 30, tzinfo=dt.timezone.utc))  # same week: not again
    finally:
        os.environ["LGDP_SPECS_DIR"] = str(ROOT / "tests" / "specs_one_table")
    assert out["sent"] is True and again["sent"] is False
    [mail] = smtp.messages
    assert mail["To"] == "lgdp-platform-team@example.org"
    assert mail["Subject"].startswith("Returns governance: ")
    body = mail.get_body(("plain",)).get_content()
    assert "Proposals waiting" in body and "Approved but not collected in over a year" in body


def test_a_retired_return_stops_collecting_and_keeps_its_history(clean_ledger, tmp_path: Path) -> None:
    from sqlalchemy import text

    from lgdp.collect.process import process_file
    from lgdp.ledger.db import session
    from lgdp.ledger.register import open_period, sync_register
    from lgdp.periods import period_from_label
    from lgdp.specs.plans import compute_plans

    ta = real().get("temporary_accommodation_monthly")
    with session() as s, s.begin():
        open_period(s, ta, period_from_label(ta.spec.collection, "2026-02"))
    rows = synth.rows(ta, EDINBURGH, "2026-02", seed=1).rows
    from lgdp.synth.writers import write_rows
    import io

    buf = io.StringIO()
    write_rows(ta, rows, "csv", buf)
    out = process_file(ta, "2026-02", EDINBURGH, {"name": "ta.csv", "id": "i1", "etag": "e1", "path": "ta.csv"},
                       buf.getvalue().encode())
    assert out.status in ("accepted", "queries")

    folder = _folder(tmp_path, "temporary_accommodation_monthly", lambda d: d["governance"].update(status="retired"))
    reg = load_register(folder)
    retired = reg.get("temporary_accommodation_monthly")
    assert retired not in reg.approved()
    assert "return_temporary_accommodation_monthly" not in {p.dag_id for p in compute_plans(folder).plans}
    with session() as s, s.begin():
        sync_register(s, reg.specs, reg.reference.councils)
    with session() as s:
        assert s.execute(text("SELECT status FROM lgdp.returns WHERE id = 'temporary_accommodation_monthly'")).scalar() == "retired"
        assert s.execute(text("SELECT count(*) FROM lgdp.collection_periods WHERE return_id = 'temporary_accommodation_monthly'")).scalar() == 1
        assert s.execute(text("SELECT count(*) FROM lgdp.submission_versions")).scalar() == 1
        assert s.execute(text("SELECT count(*) FROM lgdp.archived_files")).scalar() >= 1
