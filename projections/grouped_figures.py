"""The headline figures of participation, timing, engagement and dosage per `group_by` value.

Each row equals the metric's own headline figures filtered to that group value (a school, a
subject, a provider, a roster group's members); a student in several roster groups counts in
each. Only groups with a row the metric counts appear (a request; for dosage a completed
session). The SQL keeps to functions ClickHouse 18.16 has (the grouped scans of
projections/groups.py, countIf, uniqExact, uniqUpTo, quantilesExact).
"""

from __future__ import annotations

from typing import Any

from tutorledger.domain.district import SchoolHours
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.dosage import US_PER_MINUTE
from tutorledger.projections.engagement import REGULAR_WEEKS
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.groups import BY_GROUP_SQL, STUDENT_GROUP, grouped_sql, key_fields
from tutorledger.projections.participation import STEPS as PARTICIPATION_STEPS
from tutorledger.projections.steps import CANCELLED, COMPLETED, MATCHED, REQUESTED
from tutorledger.projections.wait_times import LEVELS, PERCENTILES

Keys = tuple[str, ...]

PARTICIPATION_COUNTS = f"""
    uniqExactIf(student_key, step = {REQUESTED}) AS students_served,
    countIf(step = {REQUESTED}) AS sessions_requested,
    countIf(step = {MATCHED}) AS sessions_matched,
    countIf(step = {COMPLETED}) AS sessions_completed,
    countIf(step = {CANCELLED}) AS sessions_cancelled
"""


def _rows(store: ProjectionStore, sql: str, params: dict[str, Any], keys: Keys) -> list[Any]:
    """(group fields, figures) per row of a grouped query."""
    return [(key_fields(keys, row), row[len(keys) :]) for row in store.execute(sql, params)]


def participation_groups(
    store: ProjectionStore, filters: Filters, keys: Keys
) -> list[dict[str, Any]]:
    """Participation's counts per group (`sessions_per_served_student` = requested ÷ served)."""
    where = facts_where(filters, PARTICIPATION_STEPS)
    sql = grouped_sql(PARTICIPATION_COUNTS, keys, filters.tables(store).facts, where)
    out = []
    for fields, counts in _rows(store, sql, filters.params(), keys):
        served, requested, matched, completed, cancelled = (int(v) for v in counts)
        if not requested and keys:
            continue  # a group appears with a request (steps of earlier sessions only)
        out.append(
            {
                **fields,
                "students_served": served,
                "sessions_requested": requested,
                "sessions_matched": matched,
                "sessions_completed": completed,
                "sessions_cancelled": cancelled,
                "sessions_per_served_student": requested / served if served else None,
            }
        )
    return out


# Local minute of the day against school hours, as projections/timing.py counts a request.
IN_SCHOOL = """
    count() AS requests,
    countIf(has(%(school_days)s, toDayOfWeek(toDate(requested_at, %(tz)s)))
        AND toHour(requested_at, %(tz)s) * 60 + toMinute(requested_at, %(tz)s)
            >= %(school_start)s
        AND toHour(requested_at, %(tz)s) * 60 + toMinute(requested_at, %(tz)s)
            < %(school_end)s) AS in_school
"""


def timing_groups(
    store: ProjectionStore, filters: Filters, hours: SchoolHours, keys: Keys
) -> list[dict[str, Any]]:
    """Requests, in-school and after-school requests and the after-school share per group."""
    params = {
        **filters.params(),
        "school_days": list(hours.days),
        "school_start": hours.start_minute,
        "school_end": hours.end_minute,
    }
    where = facts_where(filters, (REQUESTED,))
    sql = grouped_sql(IN_SCHOOL, keys, filters.tables(store).facts, where)
    out = []
    for fields, (n, inside) in _rows(store, sql, params, keys):
        total, after = int(n), int(n) - int(inside)
        out.append(
            {
                **fields,
                "requests": total,
                "in_school_requests": int(inside),
                "after_school_requests": after,
                "after_school_share": after / total if total else None,
            }
        )
    return out


# Per (group, student): requests and distinct ISO weeks (exact up to REGULAR_WEEKS, as
# projections/engagement.py counts them); then per group.
PER_STUDENT = f"""
    count() AS n, uniqUpTo({REGULAR_WEEKS})(toMonday(toDate(requested_at, %(tz)s))) AS weeks
"""
PER_GROUP = f"""
    count() AS students, countIf(weeks >= {REGULAR_WEEKS}) AS regular,
    countIf(n = 1) AS one_time, sum(n) AS requests
"""


def engagement_groups(store: ProjectionStore, filters: Filters, keys: Keys) -> list[dict[str, Any]]:
    """Students, regular and one-time students, and requests per group."""
    where = facts_where(filters, (REQUESTED,))
    inner = grouped_sql(PER_STUDENT, (*keys, "student_key"), filters.tables(store).facts, where)
    sql = _outer(PER_GROUP, keys, inner)
    out = []
    for fields, counts in _rows(store, sql, filters.params(), keys):
        students, regular, one_time, requests = (int(v or 0) for v in counts)
        out.append(
            {
                **fields,
                "students": students,
                "regular_students": regular,
                "one_time_students": one_time,
                "requests": requests,
            }
        )
    return out


def _outer(select: str, keys: Keys, inner: str, nested: bool = True) -> str:
    """`select` per `keys` over an inner query's rows (one row when there are no keys);
    `nested` False: `inner` is a FROM clause already."""
    head = "".join(f"{k}, " for k in keys)
    tail = f" GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}" if keys else ""
    source = f"({inner})" if nested else inner
    return f"SELECT {head}{select} FROM {source}{tail}"


# One row per completed session with the columns a grouping reads: a completion's fact carries
# its wait to the match (projections/dosage.py)...
LENGTHS = """
SELECT student_key, school_id, subject, provider, wait_us - matched_us AS length_us
FROM {facts} WHERE {where} AND matched_us >= 0
"""
# ...unless projected before that column existed: then matched and completed facts by session.
GROUPED_LENGTHS = f"""
SELECT student AS student_key, school AS school_id, subj AS subject, prov AS provider, length_us
FROM (
    SELECT any(student_key) AS student, any(school_id) AS school, any(subject) AS subj,
        any(provider) AS prov,
        maxIf(wait_us, step = {COMPLETED}) - maxIf(wait_us, step = {MATCHED}) AS length_us
    FROM {{facts}} WHERE {{where}}
    GROUP BY session_id
    HAVING countIf(step = {COMPLETED}) > 0 AND countIf(step = {MATCHED}) > 0
)
"""
UNFILLED = "SELECT count() FROM {facts} WHERE {where} AND matched_us < 0"
DOSAGE_FIGURES = f"""
    count() AS sessions, uniqExact(student_key) AS students, sum(length_us) AS total_us,
    quantilesExact({LEVELS})(length_us) AS ranks, max(length_us) AS longest
"""


def _lengths(store: ProjectionStore, filters: Filters) -> str:
    facts = filters.tables(store).facts
    completed = facts_where(filters, (COMPLETED,))
    unfilled = store.execute(UNFILLED.format(facts=facts, where=completed), filters.params())
    if not int(unfilled[0][0]):
        return LENGTHS.format(facts=facts, where=completed)
    return GROUPED_LENGTHS.format(facts=facts, where=facts_where(filters, (MATCHED, COMPLETED)))


def dosage_groups(store: ProjectionStore, filters: Filters, keys: Keys) -> list[dict[str, Any]]:
    """Completed sessions, students served, minutes and length percentiles per group."""
    source = f"({_lengths(store, filters)})"
    if STUDENT_GROUP in keys:  # the same sessions, joined to their students' roster groups
        cohorts = filters.tables(store).cohorts
        source = BY_GROUP_SQL.format(table=source, where="1", cohorts=cohorts)
    sql = _outer(DOSAGE_FIGURES, keys, source, nested=False)
    out = []
    for fields, (sessions, students, total_us, ranks, longest) in _rows(
        store, sql, filters.params(), keys
    ):
        n, served, total = int(sessions), int(students), int(total_us or 0)
        if not n and keys:
            continue
        picks = [int(v) / US_PER_MINUTE if n else None for v in ranks]
        out.append(
            {
                **fields,
                "sessions_completed": n,
                "students_served": served,
                "minutes": total / US_PER_MINUTE,
                "minutes_per_student": total / (served * US_PER_MINUTE) if n else None,
                "length_mean": total / (n * US_PER_MINUTE) if n else None,
                **{f"length_p{p}": v for p, v in zip(PERCENTILES, picks, strict=True)},
                "length_max": int(longest) / US_PER_MINUTE if n else None,
            }
        )
    return out
