"""Timing: when students ask for help, in the district's local time, against school hours."""

from __future__ import annotations

from typing import Any

from tutorledger.domain.district import SchoolHours
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.steps import REQUESTED

# toDayOfWeek(date): its (DateTime, tz) form is not portable (26.x reads a 2nd arg as a mode).
TIMING_SQL = """
SELECT
    toDayOfWeek(toDate(requested_at, %(tz)s)) AS weekday,
    toHour(requested_at, %(tz)s) AS hour,
    count() AS requests,
    countIf(has(%(school_days)s, toDayOfWeek(toDate(requested_at, %(tz)s)))
        AND toHour(requested_at, %(tz)s) * 60 + toMinute(requested_at, %(tz)s)
            >= %(school_start)s
        AND toHour(requested_at, %(tz)s) * 60 + toMinute(requested_at, %(tz)s)
            < %(school_end)s) AS in_school
FROM {facts} WHERE {where}
GROUP BY weekday, hour
ORDER BY weekday, hour
"""


def timing(store: ProjectionStore, filters: Filters, hours: SchoolHours) -> dict[str, Any]:
    """Requests per local (ISO weekday, hour) cell, all 168 present, and the after-school share."""
    params = {
        **filters.params(),
        "school_days": list(hours.days),
        "school_start": hours.start_minute,
        "school_end": hours.end_minute,
    }
    found = {
        (int(wd), int(h)): (int(n), int(inside))
        for wd, h, n, inside in store.execute(
            TIMING_SQL.format(
                facts=filters.tables(store).facts, where=facts_where(filters, (REQUESTED,))
            ),
            params,
        )
    }
    cells = []
    for weekday in range(1, 8):
        for hour in range(24):
            n, inside = found.get((weekday, hour), (0, 0))
            cells.append(
                {"weekday": weekday, "hour": hour, "requests": n, "in_school_requests": inside}
            )
    total = sum(c["requests"] for c in cells)
    after = total - sum(c["in_school_requests"] for c in cells)
    return {
        "requests": total,
        "after_school_requests": after,
        "after_school_share": after / total if total else None,
        "by_hour": [
            {"hour": h, "requests": sum(c["requests"] for c in cells if c["hour"] == h)}
            for h in range(24)
        ],
        "by_weekday": [
            {"weekday": d, "requests": sum(c["requests"] for c in cells if c["weekday"] == d)}
            for d in range(1, 8)
        ],
        "rows": cells,
    }
