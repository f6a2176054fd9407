"""Engagement: regular use rather than one-off, by ISO week of the request's local date."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.steps import REQUESTED

REGULAR_WEEKS = 3

# One row per (student, ISO week); toMonday names the week portably (no toISOWeek needed).
STUDENT_WEEKS_SQL = """
SELECT student_key, toMonday(toDate(requested_at, %(tz)s)) AS week, count() AS n
FROM {facts} WHERE {where}
GROUP BY student_key, week
"""

# One pass: per-student figures ride on the student's first week (i = 1), so summing those
# columns over all weeks counts each student once.
ENGAGEMENT_SQL = """
SELECT week, count() AS active, sum(n) AS requests,
    countIf(i = 1) AS students,
    countIf(i = 1 AND weeks >= %(regular_weeks)s) AS regular,
    countIf(i = 1 AND sessions = 1) AS one_time
FROM (
    SELECT student_key, groupArray(week) AS ws, groupArray(n) AS ns,
        length(ws) AS weeks, arraySum(ns) AS sessions
    FROM ({STUDENT_WEEKS_SQL})
    GROUP BY student_key
)
ARRAY JOIN ws AS week, ns AS n, arrayEnumerate(ws) AS i
GROUP BY week
ORDER BY week
"""


def iso_week(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def engagement(store: ProjectionStore, filters: Filters) -> dict[str, Any]:
    """Weekly active students (every week of the range, zeros included), regular and one-time."""
    params = {**filters.params(), "regular_weeks": REGULAR_WEEKS}
    weekly: dict[date, tuple[int, int]] = {}
    students = regular = one_time = 0
    inner = STUDENT_WEEKS_SQL.format(
        facts=filters.tables(store).facts, where=facts_where(filters, (REQUESTED,))
    )
    sql = ENGAGEMENT_SQL.replace("{STUDENT_WEEKS_SQL}", inner)
    for week, active, requests, *per_student in store.execute(sql, params):
        weekly[date.fromisoformat(str(week))] = (int(active), int(requests))
        students += int(per_student[0])
        regular += int(per_student[1])
        one_time += int(per_student[2])
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
