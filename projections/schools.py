"""Each school's latest enrolment: the one definition participation and the schools list share."""

from __future__ import annotations

from datetime import date
from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.read_models import current_tables


def latest_enrollment_sql(schools: str) -> str:
    """Latest update per school by `as_of` date (ties: the later ledger position), limited to
    positions <= %(as_of)s, as_of dates <= %(date_to)s and, when given, one school. The
    argMax key ends in the (unique) position, so a copied row cannot change the answer."""
    return f"""
SELECT school_id,
    argMax(school_name, k) AS name,
    toString(argMax(as_of, k)) AS as_of_date,
    argMax(enrollment_grades, k) AS grades,
    argMax(enrollment_counts, k) AS counts,
    max(position) AS last_position
FROM (
    SELECT school_id, school_name, as_of, enrollment_grades, enrollment_counts, position,
        toUInt64(as_of) * 10000000000 + position AS k
    FROM {schools}
    WHERE district_id = %(district_id)s
        AND position <= %(as_of)s AND as_of <= %(date_to)s
        AND (%(school_id)s = '' OR school_id = %(school_id)s)
)
GROUP BY school_id
"""


def latest_schools(store: ProjectionStore, district_id: str) -> list[tuple[Any, ...]]:
    """(school_id, name, as_of, grades, counts, last position) of every school, by id."""
    params = {
        "district_id": district_id,
        "as_of": 2**62,
        "date_to": date(2105, 12, 31),
        "school_id": "",
    }
    sql = latest_enrollment_sql(current_tables(store).schools)
    return store.execute(f"{sql} ORDER BY school_id", params)
