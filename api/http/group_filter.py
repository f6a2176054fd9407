"""The roster-group filter of every metric, resolved once: the group must be recorded."""

from __future__ import annotations

from dataclasses import replace

from tutorledger.domain.student_groups import UnknownGroup, group_cohort
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.cohorts import list_cohorts
from tutorledger.projections.filters import Filters
from tutorledger.projections.read_models import current_generation


def pin_group(store: ProjectionStore, filters: Filters, group: str) -> Filters:
    """`filters` limited to the group's members, the read models' generation pinned (as for a
    cohort); 404 `unknown_group` when no roster import had recorded it at the position."""
    generation = filters.generation or current_generation(store)
    pinned = replace(filters, generation=generation, group=group)
    cohorts = pinned.tables(store).cohorts
    cohort = group_cohort(group)
    if not list_cohorts(store, cohorts, filters.district_id, filters.as_of_position, cohort):
        raise UnknownGroup(
            f"no roster group '{group}' in district '{filters.district_id}' "
            f"as of position {filters.as_of_position} (import one: tutorledger import-groups)"
        )
    return pinned
