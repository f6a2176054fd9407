"""The cohort filter of every metric, resolved once: the cohort must exist at the position."""

from __future__ import annotations

from dataclasses import replace

from tutorledger.domain.cohort import UnknownCohort
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.cohorts import list_cohorts
from tutorledger.projections.filters import Filters
from tutorledger.projections.read_models import current_generation


def pin_cohort(store: ProjectionStore, filters: Filters, cohort_id: str) -> Filters:
    """`filters` limited to the cohort, with the read models' generation pinned (the cohort
    and the sessions must come from one generation); 404 when it had no members list yet."""
    generation = filters.generation or current_generation(store)
    pinned = replace(filters, generation=generation, cohort_id=cohort_id)
    cohorts = pinned.tables(store).cohorts
    if not list_cohorts(store, cohorts, filters.district_id, filters.as_of_position, cohort_id):
        raise UnknownCohort(
            f"no cohort '{cohort_id}' in district '{filters.district_id}' "
            f"as of position {filters.as_of_position}"
        )
    return pinned
