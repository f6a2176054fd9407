"""Participation for many filters at once: by school, cumulative by week, by month.

The dashboard shows participation for every school, at the end of every week and for every
month of a view. Asking the participation metric once per school or week costs a scan per
row; these answer each table with one grouped scan instead. Every row equals the
participation metric for the narrower filter it stands for (see each function), because
each count is the same aggregate over the same rows, only grouped, and the answer is then
built by the same `participation_figures`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.participation import PARTICIPATION_SELECT, STEPS
from tutorledger.projections.steps import CANCELLED, COMPLETED, MATCHED, REQUESTED

Counts = tuple[int, int, int, int, int]  # served, requested, matched, completed, cancelled
NONE: Counts = (0, 0, 0, 0, 0)
NO_END = date(2105, 12, 31)  # the date `Filters.params` puts in for "no `to`"

# The latest update per (day, school) with as_of <= day, at the position, summed over the
# grade filter: for each day, exactly `participation.enrolled_sql` with `date_to` = day.
ENROLMENT_ON_SQL = """
SELECT toString(day), school_id, sum(n) FROM (
    SELECT day, school_id,
        argMax(enrollment_grades, k) AS grades, argMax(enrollment_counts, k) AS counts
    FROM (
        SELECT day, school_id, enrollment_grades, enrollment_counts,
            toUInt64(as_of) * 10000000000 + position AS k
        FROM {schools}
        ARRAY JOIN arrayMap(x -> toDate(x), %(days)s) AS day
        WHERE district_id = %(district_id)s AND position <= %(as_of)s AND as_of <= day
            AND (%(school_id)s = '' OR school_id = %(school_id)s)
    )
    GROUP BY day, school_id
)
ARRAY JOIN grades AS g, counts AS n
WHERE %(grade)s = -1 OR g = %(grade)s
GROUP BY day, school_id
"""

BY_SCHOOL_SQL = "SELECT school_id, {select} FROM {facts} WHERE {where} GROUP BY school_id"

# Each student once, in the week of their first request in range (served by the end of a
# week = students whose first request falls in it or before), beside each week's step counts.
BY_WEEK_SQL = f"""
SELECT toString(week), sum(firsts), sum(r), sum(m), sum(c), sum(x) FROM (
    SELECT toMonday(min(toDate(requested_at, %(tz)s))) AS week, toUInt64(1) AS firsts,
        toUInt64(0) AS r, toUInt64(0) AS m, toUInt64(0) AS c, toUInt64(0) AS x
    FROM {{facts}} WHERE {{requests}}
    GROUP BY student_key
    UNION ALL
    SELECT toMonday(toDate(requested_at, %(tz)s)) AS week, toUInt64(0) AS firsts,
        countIf(step = {REQUESTED}) AS r, countIf(step = {MATCHED}) AS m,
        countIf(step = {COMPLETED}) AS c, countIf(step = {CANCELLED}) AS x
    FROM {{facts}} WHERE {{steps}}
    GROUP BY week
)
GROUP BY week
ORDER BY week
"""

# A month is the weeks that start in it (Monday to Sunday), so every month row is a
# whole-week range: the finest step a dashboard key's dates take (docs/privacy.md).
BY_MONTH_SQL = """
SELECT toString(toStartOfMonth(toMonday(toDate(requested_at, %(tz)s)))) AS month,
    toDate(requested_at, %(tz)s) < %(split)s AS earlier, {select}
FROM {facts} WHERE {where}
GROUP BY month, earlier
"""

SPAN_SQL = f"""
SELECT toString(toDate(min(requested_at), %(tz)s)), toString(toDate(max(requested_at), %(tz)s)),
    count()
FROM {{facts}}
WHERE district_id = %(district_id)s AND step = {REQUESTED} AND position <= %(as_of)s
"""


def _counts(row: Iterable[Any]) -> Counts:
    served, requested, matched, completed, cancelled = (int(v) for v in row)
    return served, requested, matched, completed, cancelled


def by_school(store: ProjectionStore, filters: Filters) -> dict[str, Counts]:
    """Participation counts per school: each row is the participation metric's count query
    with `school_id` = that school (schools without a request in range are absent)."""
    sql = BY_SCHOOL_SQL.format(
        select=PARTICIPATION_SELECT.replace("SELECT", "", 1),
        facts=filters.tables(store).facts,
        where=facts_where(filters, STEPS),
    )
    return {str(r[0]): _counts(r[1:]) for r in store.execute(sql, filters.params())}


def enrolment_on(
    store: ProjectionStore, filters: Filters, days: Iterable[date | None]
) -> dict[date | None, dict[str, int]]:
    """Each school's enrolment as of each day (None: no `to`, the latest), under the filters'
    school and grade: for each day, what participation counts as `enrolled` with `to` = day,
    school by school (schools with nothing counted are absent; their enrolment is 0)."""
    wanted = sorted({day or NO_END for day in days})
    out: dict[date | None, dict[str, int]] = {day: {} for day in days}
    if not wanted:
        return out
    params = {**filters.params(), "days": [d.isoformat() for d in wanted]}
    sql = ENROLMENT_ON_SQL.format(schools=filters.tables(store).schools)
    found: dict[date, dict[str, int]] = {day: {} for day in wanted}
    for day, school, n in store.execute(sql, params):
        found[date.fromisoformat(str(day))][str(school)] = int(n)
    return {day: found[day or NO_END] for day in out}


def by_week(store: ProjectionStore, filters: Filters) -> dict[date, Counts]:
    """Per ISO week (its Monday) of the request's local date: the students whose first request
    in range falls in that week, and the week's step counts. Their running sums are the
    participation counts with `to` moved to each week's end."""
    facts = filters.tables(store).facts
    sql = BY_WEEK_SQL.format(
        facts=facts, requests=facts_where(filters, (REQUESTED,)), steps=facts_where(filters, STEPS)
    )
    return {
        date.fromisoformat(str(r[0])): _counts(r[1:]) for r in store.execute(sql, filters.params())
    }


def by_month(
    store: ProjectionStore, filters: Filters, split: date
) -> dict[tuple[date, bool], Counts]:
    """Participation counts per (month, before `split`) of the request's local date: each is
    the participation metric for that month clipped to the filters' range and to `split`."""
    sql = BY_MONTH_SQL.format(
        select=PARTICIPATION_SELECT.replace("SELECT", "", 1),
        facts=filters.tables(store).facts,
        where=facts_where(filters, STEPS),
    )
    params = {**filters.params(), "split": split}
    return {
        (date.fromisoformat(str(r[0])), bool(r[1])): _counts(r[2:])
        for r in store.execute(sql, params)
    }


@dataclass(frozen=True)
class Span:
    """The local dates of the district's first and last request at the position."""

    first: date
    last: date


def request_span(store: ProjectionStore, filters: Filters) -> Span | None:
    """The district's data range (all schools, subjects, grades), None before any request."""
    sql = SPAN_SQL.format(facts=filters.tables(store).facts)
    rows = store.execute(sql, filters.params())
    if not rows or not int(rows[0][2]):
        return None
    return Span(date.fromisoformat(str(rows[0][0])), date.fromisoformat(str(rows[0][1])))


def mondays(first: date | None, last: date | None) -> list[date]:
    """Every Monday from the week of `first` to the week of `last`."""
    if first is None or last is None:
        return []
    week, end = first - timedelta(days=first.weekday()), last - timedelta(days=last.weekday())
    out = []
    while week <= end:
        out.append(week)
        week += timedelta(days=7)
    return out


def month_starts(first: date, last: date) -> list[date]:
    """The first day of every month from `first`'s to `last`'s."""
    out, month = [], first.replace(day=1)
    while month <= last:
        out.append(month)
        month = (month + timedelta(days=32)).replace(day=1)
    return out


def month_end(month: date) -> date:
    return (month + timedelta(days=32)).replace(day=1) - timedelta(days=1)


def first_monday(month: date) -> date:
    """The first Monday on or after the first of `month`."""
    first = month.replace(day=1)
    return first + timedelta(days=(7 - first.weekday()) % 7)


def month_weeks(month: date) -> tuple[date, date]:
    """The month as whole weeks: from its first Monday to the Sunday before the next month's."""
    following = (month.replace(day=1) + timedelta(days=32)).replace(day=1)
    return first_monday(month), first_monday(following) - timedelta(days=1)
