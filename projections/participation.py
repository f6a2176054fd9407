"""Participation: who used tutoring, how much, against enrolment."""

from __future__ import annotations

from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.filters import Filters, filtered_sessions_sql

PARTICIPATION_SQL = f"""
SELECT
    uniqExact(student_id) AS students_served,
    count() AS sessions_requested,
    countIf(matched > 0) AS sessions_matched,
    countIf(completed > 0) AS sessions_completed,
    countIf(cancelled > 0) AS sessions_cancelled
FROM ({filtered_sessions_sql()})
"""

# Latest enrolment per school as of `date_to` (ties: the later ledger position), by grade.
ENROLLED_SQL = """
SELECT sum(n) FROM (
    SELECT school_id,
        argMax(enrollment_grades, k) AS grades,
        argMax(enrollment_counts, k) AS counts
    FROM (
        SELECT school_id, enrollment_grades, enrollment_counts,
            toUInt64(as_of) * 10000000000 + position AS k
        FROM ledger_events FINAL
        WHERE district_id = %(district_id)s AND type = 'school.updated'
            AND position <= %(as_of)s AND as_of <= %(date_to)s
            AND (%(school_id)s = '' OR school_id = %(school_id)s)
    )
    GROUP BY school_id
)
ARRAY JOIN grades AS g, counts AS n
WHERE %(grade)s = -1 OR g = %(grade)s
"""


def participation(store: ProjectionStore, filters: Filters) -> dict[str, Any]:
    """CONTRACT §2 participation figures for the filters."""
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
