"""Dosage: how much tutoring students actually got — session length and minutes per week.

A session's length is `session.completed` time − `session.matched` time. Both come from the
session facts: a completed row's `wait_us` is request → completion and its `matched_us` is
request → match, so the length is their difference, exact to the microsecond at any
position (the match always precedes the completion in the ledger).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.engagement import iso_week
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.read_models import Tables
from tutorledger.projections.steps import COMPLETED, MATCHED
from tutorledger.projections.wait_times import LEVELS, PERCENTILES

US_PER_MINUTE = 60_000_000

# One row per completed session (as of the position): its student, request time and length.
# A completion's fact carries its wait to the match, so each is one row...
LENGTHS_SQL = """
SELECT session_id, student_key AS student, school_id AS school, subject AS subj, grade AS gr,
    provider AS prov, requested_at AS at, wait_us - matched_us AS length_us
FROM {facts} WHERE {where} AND matched_us >= 0
"""
# ...except completions projected before that column existed (-1 there): then the matched and
# completed facts are grouped by session, as before (exact either way; `rebuild` fills it).
GROUPED_LENGTHS_SQL = f"""
SELECT session_id, any(student_key) AS student, any(school_id) AS school, any(subject) AS subj,
    any(grade) AS gr, any(provider) AS prov, any(requested_at) AS at,
    maxIf(wait_us, step = {COMPLETED}) - maxIf(wait_us, step = {MATCHED}) AS length_us
FROM {{facts}} WHERE {{where}}
GROUP BY session_id
HAVING countIf(step = {COMPLETED}) > 0 AND countIf(step = {MATCHED}) > 0
"""
# Read without FINAL: whether any completion lacks its match does not change with copies of
# a position (a copy is another write of the same event), and a stale copy can only choose
# the grouped form, which is exact either way. Plain, the scan reads one column by its key
# range; with FINAL it merged the whole sort key of every completion first (2 M events:
# about 2 ms against 40-110 ms, bench.standard_latency).
UNFILLED_SQL = "SELECT count() FROM {facts} WHERE {where} AND matched_us < 0"

# One pass over the lengths: per (student, week), then per week, then one row holding the
# weekly figures as arrays beside the totals (-Array combinators over the weeks' arrays), so
# each session is read once.
DOSAGE_SQL = f"""
SELECT groupArray(week), groupArray(active), groupArray(week_us), groupArray(meeting),
    sum(week_n), uniqExactArray(students), sum(week_us), quantilesExactArray({LEVELS})(lengths),
    maxArray(lengths)
FROM (
    SELECT week, count() AS active, sum(us) AS week_us, countIf(us >= %(target_us)s) AS meeting,
        sum(n) AS week_n, groupArray(student) AS students, groupArrayArray(lens) AS lengths
    FROM (
        SELECT student, toMonday(toDate(at, %(tz)s)) AS week, sum(length_us) AS us,
            count() AS n, groupArray(length_us) AS lens
        FROM ({{lengths}}) GROUP BY student, week
    )
    GROUP BY week
)
"""


def lengths_sql(store: ProjectionStore, filters: Filters) -> str:
    """The per-session lengths of the filters (session_id, student, school, subj, gr, prov,
    at, length_us), as a subquery body: one row per completion when every completion in range
    carries its match, else grouped by session."""
    read = filters.tables(store)
    facts, plain = read.facts, Tables(read.generation).facts
    completed = facts_where(filters, (COMPLETED,))
    unfilled = store.execute(UNFILLED_SQL.format(facts=plain, where=completed), filters.params())
    if not int(unfilled[0][0]):
        return LENGTHS_SQL.format(facts=facts, where=completed)
    grouped = facts_where(filters, (MATCHED, COMPLETED))
    return GROUPED_LENGTHS_SQL.format(facts=facts, where=grouped)


def _minutes(us: int) -> float:
    return us / US_PER_MINUTE


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _weeks(filters: Filters, found: dict[date, tuple[int, int, int]]) -> list[dict[str, Any]]:
    """Every ISO week of the range (zeros included), like engagement's rows."""
    first = _monday(filters.date_from) if filters.date_from else min(found, default=None)
    last = _monday(filters.date_to) if filters.date_to else max(found, default=None)
    rows = []
    week = first
    while week is not None and last is not None and week <= last:
        active, total_us, meeting = found.get(week, (0, 0, 0))
        rows.append(
            {
                "week": iso_week(week),
                "week_start": week,
                "active_students": active,
                "minutes": _minutes(total_us),
                "students_meeting_target": meeting,
            }
        )
        week += timedelta(days=7)
    return rows


def dosage(store: ProjectionStore, filters: Filters, target_minutes: int) -> dict[str, Any]:
    """Completed sessions' count, minutes and length percentiles, and weekly dosage rows."""
    params = {**filters.params(), "target_us": target_minutes * US_PER_MINUTE}
    sql = DOSAGE_SQL.format(lengths=lengths_sql(store, filters))
    weeks, active, week_us, meeting, sessions, students, total_us, ranks, longest = store.execute(
        sql, params
    )[0]
    n, total, served = int(sessions or 0), int(total_us or 0), int(students or 0)
    picks = [_minutes(int(v)) if n else None for v in ranks]
    found = {
        date.fromisoformat(str(w)): (int(a), int(u), int(m))
        for w, a, u, m in zip(weeks, active, week_us, meeting, strict=True)
    }
    return {
        "sessions_completed": n,
        "students_served": served,
        "minutes": _minutes(total),
        "minutes_per_student": total / (served * US_PER_MINUTE) if n else None,
        "length_mean": total / (n * US_PER_MINUTE) if n else None,
        **{f"length_p{p}": v for p, v in zip(PERCENTILES, picks, strict=True)},
        "length_max": _minutes(int(longest)) if n else None,
        "target_minutes": target_minutes,
        "rows": _weeks(filters, found),
    }
