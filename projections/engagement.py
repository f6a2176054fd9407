"""Engagement: regular use rather than one-off, by ISO week of the request's local date."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.steps import REQUESTED

REGULAR_WEEKS = 3

# Two grouped scans of the requests instead of one per (student, week) and an ARRAY JOIN
# back over the weeks: a third less CPU at 2 M events (docs/benchmarks.md).
# Per ISO week (toMonday names the week portably, no toISOWeek needed): its distinct
# students and its requests.
WEEKLY_SQL = """
SELECT toMonday(toDate(requested_at, %(tz)s)) AS week, uniqExact(student_key), count()
FROM {facts} WHERE {where}
GROUP BY week
ORDER BY week
"""
# Per student: regular when active in at least REGULAR_WEEKS distinct weeks. uniqUpTo(N)
# counts distinct values exactly up to N (a date is kept as its own value, not a hash) and
# answers N + 1 above, so `>= N` is exact while each student's state holds at most N weeks.
STUDENTS_SQL = f"""
SELECT count(), countIf(weeks >= {REGULAR_WEEKS}), countIf(n = 1)
FROM (
    SELECT student_key, count() AS n,
        uniqUpTo({REGULAR_WEEKS})(toMonday(toDate(requested_at, %(tz)s))) AS weeks
    FROM {{facts}} WHERE {{where}}
    GROUP BY student_key
)
"""


def iso_week(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def engagement(store: ProjectionStore, filters: Filters) -> dict[str, Any]:
    """Weekly active students (every week of the range, zeros included), regular and one-time."""
    params = filters.params()
    scope = {"facts": filters.tables(store).facts, "where": facts_where(filters, (REQUESTED,))}
    weekly = {
        date.fromisoformat(str(week)): (int(active), int(requests))
        for week, active, requests in store.execute(WEEKLY_SQL.format(**scope), params)
    }
    students, regular, one_time = (
        int(v) for v in store.execute(STUDENTS_SQL.format(**scope), params)[0]
    )
    first = _monday(filters.date_from) if filters.date_from else min(weekly, default=None)
    last = _monday(filters.date_to) if filters.date_to else max(weekly, default=None)
    rows = []
    week = first
    while week is not None and last is not None and week <= last:
        active, requests = weekly.get(week, (0, 0))
        rows.append(
            {
                "week": iso_week(week),
                "week_start": week,
                "weekly_active_students": active,
                "requests": requests,
            }
        )
        week += timedelta(days=7)
    return {
        "students": students,
        "regular_students": regular,
        "one_time_students": one_time,
        "rows": rows,
    }
