"""Participation: who used tutoring, how much, against enrolment."""

from __future__ import annotations

from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.filters import Filters, filtered_sessions_sql
from tutorledger.projections.schools import LATEST_ENROLLMENT_SQL

PARTICIPATION_SQL = f"""
SELECT
    uniqExact(student_id) AS students_served,
    count() AS sessions_requested,
    countIf(matched > 0) AS sessions_matched,
    countIf(completed > 0) AS sessions_completed,
    countIf(cancelled > 0) AS sessions_cancelled
FROM ({filtered_sessions_sql()})
"""

# Latest enrolment per school as of `date_to`, summed over the grade filter.
ENROLLED_SQL = f"""
SELECT sum(n) FROM ({LATEST_ENROLLMENT_SQL})
ARRAY JOIN grades AS g, counts AS n
WHERE %(grade)s = -1 OR g = %(grade)s
"""


def participation(store: ProjectionStore, filters: Filters) -> dict[str, Any]:
    """Participation figures (docs/contract.md) for the filters."""
    params = filters.params()
    served, requested, matched, completed, cancelled = store.execute(PARTICIPATION_SQL, params)[0]
    enrolled_rows = store.execute(ENROLLED_SQL, params)
    enrolled = int(enrolled_rows[0][0] or 0) if enrolled_rows else 0
    served = int(served)
    return {
        "enrolled": enrolled,
        "students_served": served,
        "reach_rate": served / enrolled if enrolled else None,
        "sessions_requested": int(requested),
        "sessions_matched": int(matched),
        "sessions_completed": int(completed),
        "sessions_cancelled": int(cancelled),
        "sessions_per_served_student": int(requested) / served if served else None,
    }
