"""Participation: who used tutoring, how much, against enrolment (or a cohort's size)."""

from __future__ import annotations

from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.cohorts import list_cohorts
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.group_members import PREFIX
from tutorledger.projections.schools import latest_enrollment_sql
from tutorledger.projections.steps import CANCELLED, COMPLETED, MATCHED, REQUESTED

PARTICIPATION_SELECT = f"""
SELECT
    uniqExactIf(student_key, step = {REQUESTED}) AS students_served,
    countIf(step = {REQUESTED}) AS sessions_requested,
    countIf(step = {MATCHED}) AS sessions_matched,
    countIf(step = {COMPLETED}) AS sessions_completed,
    countIf(step = {CANCELLED}) AS sessions_cancelled
"""
STEPS = (REQUESTED, MATCHED, COMPLETED, CANCELLED)


def enrolled_sql(schools: str) -> str:
    """Latest enrolment per school as of `date_to`, summed over the grade filter."""
    return f"""
SELECT sum(n) FROM ({latest_enrollment_sql(schools)})
ARRAY JOIN grades AS g, counts AS n
WHERE %(grade)s = -1 OR g = %(grade)s
"""


def cohort_size(store: ProjectionStore, filters: Filters) -> int:
    """Members of the filter's cohort (else its roster group) as of its position: the reach
    denominator."""
    cohorts = filters.tables(store).cohorts
    cohort = filters.cohort_id or PREFIX + (filters.group or "")
    found = list_cohorts(store, cohorts, filters.district_id, filters.as_of_position, cohort)
    return found[0]["size"] if found else 0


def participation(store: ProjectionStore, filters: Filters) -> dict[str, Any]:
    """Participation figures for the filters: one scan of the steps it counts."""
    params = filters.params()
    tables = filters.tables(store)
    sql = f"{PARTICIPATION_SELECT} FROM {tables.facts} WHERE {facts_where(filters, STEPS)}"
    counts = store.execute(sql, params)[0]
    enrolled_rows = store.execute(enrolled_sql(tables.schools), params)
    enrolled = int(enrolled_rows[0][0] or 0) if enrolled_rows else 0
    size = (
        None if filters.cohort_id is None and filters.group is None else cohort_size(store, filters)
    )
    return participation_figures(counts, enrolled, size)


def participation_figures(
    counts: tuple[Any, ...], enrolled: int, cohort: int | None
) -> dict[str, Any]:
    """The participation answer from its counts (served, requested, matched, completed,
    cancelled), the enrolment and, with a cohort filter, the cohort's size: the one place its
    rates are computed, for the metric and for the dashboard's grouped figures alike."""
    served, requested, matched, completed, cancelled = (int(v) for v in counts)
    base = enrolled if cohort is None else cohort
    return {
        "enrolled": enrolled,
        **({} if cohort is None else {"cohort_size": cohort}),
        "students_served": served,
        "reach_rate": served / base if base else None,
        "sessions_requested": requested,
        "sessions_matched": matched,
        "sessions_completed": completed,
        "sessions_cancelled": cancelled,
        "sessions_per_served_student": requested / served if served else None,
    }
