"""Cohort membership over the read models: who was in a cohort as of a ledger position.

The metric filter (`projections.filters.facts_where`) restricts session steps to the
students this module names; participation uses the cohort's size as its reach denominator.
"""

from __future__ import annotations

from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore

# The latest update at or before %(as_of)s, as its members' student keys (none if no update).
MEMBERS_SQL = """
SELECT arrayJoin(m) FROM (
    SELECT argMax(members, position) AS m FROM {cohorts}
    WHERE district_id = %(district_id)s AND cohort_id = %(cohort_id)s AND position <= %(as_of)s
)
"""
# Every cohort of a district as of %(as_of)s: name and size from its latest update.
LIST_SQL = """
SELECT cohort_id, argMax(cohort_name, position) AS name,
    length(argMax(members, position)) AS size, max(position) AS last_position
FROM {cohorts}
WHERE district_id = %(district_id)s AND position <= %(as_of)s
    AND (%(cohort_id)s = '' OR cohort_id = %(cohort_id)s)
GROUP BY cohort_id
ORDER BY cohort_id
"""


def members_condition(cohorts: str) -> str:
    """A `session_facts` condition: the step's student is a member as of the position."""
    return f"student_key IN ({MEMBERS_SQL.format(cohorts=cohorts)})"


def list_cohorts(
    store: ProjectionStore, cohorts: str, district_id: str, as_of: int, cohort_id: str = ""
) -> list[dict[str, Any]]:
    """Cohorts (id, name, size, the position of the update that defines them) as of `as_of`."""
    params = {"district_id": district_id, "as_of": as_of, "cohort_id": cohort_id}
    return [
        {"cohort_id": c, "name": n, "size": int(s), "position": int(p)}
        for c, n, s, p in store.execute(LIST_SQL.format(cohorts=cohorts), params)
    ]
