"""Demand: where requests come from, and which school/subject pairs stand out (lift)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.groups import grouped_sql, key_fields
from tutorledger.projections.steps import COMPLETED, REQUESTED

DEMAND_SELECT = f"""
    countIf(step = {REQUESTED}) AS requests,
    countIf(step = {COMPLETED}) AS completed_sessions,
    uniqExactIf(student_key, step = {REQUESTED}) AS students
"""

BY_PAIR = ("school_id", "subject")


def baseline_sql(facts: str, filters: Filters) -> str:
    """Requests per (school, subject) under the grade/date filters only: the denominators."""
    where = facts_where(filters, (REQUESTED,))
    group = "GROUP BY school_id, subject"
    return f"SELECT school_id, subject, count() FROM {facts} WHERE {where} {group}"


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def demand(store: ProjectionStore, filters: Filters, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per group; share and lift use the request counts of wider scopes.

    A row's scope is its school (or the `school_id` filter, else the district); its subjects
    are its subject (or the `subject` filter, else all). share = scope's requests in those
    subjects ÷ scope's requests in all subjects; lift = share ÷ the same share for the whole
    district. Grade and date filters apply to every count.
    """
    facts = filters.tables(store).facts
    where = facts_where(filters, (REQUESTED, COMPLETED))
    rows = store.execute(grouped_sql(DEMAND_SELECT, keys, facts, where), filters.params())
    if keys == BY_PAIR and filters.school_id is None and filters.subject is None:
        pairs = [row[:3] for row in rows]  # the default view already holds every denominator
    else:
        wide = replace(filters, school_id=None, subject=None)
        pairs = store.execute(baseline_sql(facts, wide), wide.params())
    base: Counter[tuple[str | None, str | None]] = Counter()
    for school, subject, count in pairs:
        for s in (school, None):
            for t in (subject, None):
                base[(s, t)] += int(count)
    result = []
    for row in rows:
        fields = key_fields(keys, row)
        requests, completed, students = (int(v) for v in row[len(keys) :])
        school = fields["school_id"] if "school_id" in keys else filters.school_id
        subject = fields["subject"] if "subject" in keys else filters.subject
        share = _ratio(base[(school, subject)], base[(school, None)])
        district_share = _ratio(base[(None, subject)], base[(None, None)])
        lift = share / district_share if share is not None and district_share else None
        result.append(
            {
                **fields,
                "requests": requests,
                "completed": completed,
                "students": students,
                "share": share,
                "lift": lift,
            }
        )
    return result


# One pass for the drill-down's grades: the drilled pair's figures and the four request
# counts its share and lift divide, at every grade.
BY_GRADE_SQL = f"""
SELECT grade,
    countIf(step = {REQUESTED} AND pair) AS requests,
    countIf(step = {COMPLETED} AND pair) AS completed_sessions,
    uniqExactIf(student_key, step = {REQUESTED} AND pair) AS students,
    countIf(step = {COMPLETED} AND pair) + countIf(step = {REQUESTED} AND pair) AS rows_of_pair,
    countIf(step = {REQUESTED} AND school_id = %(school_id)s) AS school_requests,
    countIf(step = {REQUESTED} AND subject = %(subject)s) AS subject_requests,
    countIf(step = {REQUESTED}) AS all_requests
FROM (
    SELECT grade, step, school_id, subject, student_key,
        school_id = %(school_id)s AND subject = %(subject)s AS pair
    FROM {{facts}} WHERE {{where}}
)
GROUP BY grade
"""


def demand_by_grade(store: ProjectionStore, filters: Filters) -> dict[int, dict[str, Any] | None]:
    """For a school and subject filter: at each grade 0–12, the one row `demand` answers with
    `grade` = that grade (None where it answers no row), from one grouped scan. share = the
    pair's requests ÷ the school's, lift = share ÷ the subject's share of the district's, all
    at that grade and under the date and cohort filters, as `demand` computes them."""
    if filters.school_id is None or filters.subject is None:
        raise ValueError("demand by grade needs a school and a subject")
    wide = replace(filters, school_id=None, subject=None, grade=None)
    sql = BY_GRADE_SQL.format(
        facts=filters.tables(store).facts, where=facts_where(wide, (REQUESTED, COMPLETED))
    )
    out: dict[int, dict[str, Any] | None] = dict.fromkeys(range(13))
    for grade, requests, completed, students, rows, school, subject, total in store.execute(
        sql, filters.params()
    ):
        if not int(rows) or int(grade) not in out:
            continue
        share = _ratio(int(requests), int(school))
        district_share = _ratio(int(subject), int(total))
        lift = share / district_share if share is not None and district_share else None
        out[int(grade)] = {
            "school_id": filters.school_id,
            "subject": filters.subject,
            "requests": int(requests),
            "completed": int(completed),
            "students": int(students),
            "share": share,
            "lift": lift,
        }
    return out
