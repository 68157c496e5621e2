"""Which generator makes rows for which spec: per-return modules by spec id, else the generic one."""

from __future__ import annotations

from lgdp.specs.load import LoadedSpec
from lgdp.synth.core import SpecGenerator
from lgdp.synth.returns.clas import ClasGenerator
from lgdp.synth.returns.clas_tables import ClasTablesGenerator
from lgdp.synth.returns.la_finance_quarterly import FinanceGenerator
from lgdp.synth.returns.social_care_survey import SocialCareSurveyGenerator
from lgdp.synth.returns.temporary_accommodation_monthly import TemporaryAccommodationGenerator

GENERATORS: dict[str, type[SpecGenerator]] = {
    g.spec_id: g  # type: ignore[misc]
    for g in (ClasGenerator, FinanceGenerator, TemporaryAccommodationGenerator, SocialCareSurveyGenerator)
}


MULTI_GENERATORS = {"clas": ClasTablesGenerator}


def generator_for(loaded: LoadedSpec) -> SpecGenerator:
    """The generator for a spec: its own module if there is one, otherwise the generic generator.

    The generic generator's clean rows satisfy every item-level constraint and have unique keys,
    but may break the spec's cross-item rules, and it offers only the generic faults.
    """
    if loaded.multi:
        if loaded.id not in MULTI_GENERATORS:
            from lgdp.synth.core import SynthError

            raise SynthError(f"there is no synthetic data generator for {loaded.id}, a return of several tables")
        return MULTI_GENERATORS[loaded.id](loaded)  # type: ignore[return-value]
    return GENERATORS.get(loaded.id, SpecGenerator)(loaded)
