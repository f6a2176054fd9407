"""Usage vs grades: the change in a subject's grade between two terms, by usage band.

A student counts when the read models hold a grade for them in both terms (the latest grade
recorded for each (student, subject, term) as of the position). Usage is the number of the
student's **completed** sessions in that subject whose request falls on a local date after
`term_from`'s grading date and on or before `term_to`'s (each term's grading date is the
`term_end` its grades were imported with; the latest one recorded for the term, any subject).
This describes an association between use and grades, not an effect of tutoring.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from tutorledger.domain.errors import InvalidRequest, NotFound
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.cohorts import members_condition
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.steps import COMPLETED

BANDS = ("none", "1-2", "3-9", "10+")
INTERPRETATION = (
    "Association, not effect: students who used tutoring more may differ in other ways "
    "(motivation, need, support at home), so a difference between bands does not show "
    "that tutoring changed grades."
)
TERM_ENDS_SQL = """
SELECT term, max(term_end) FROM {grades}
WHERE district_id = %(district_id)s AND position <= %(as_of)s AND term IN %(terms)s
GROUP BY term
"""
OUTCOMES_SQL = """
SELECT multiIf(n = 0, 'none', n <= 2, '1-2', n <= 9, '3-9', '10+') AS band,
    count() AS students, avg(s_from), avg(s_to), avg(s_to - s_from)
FROM (
    SELECT student_key, s_from, s_to, n FROM (
        SELECT student_key,
            argMaxIf(score, position, term = %(term_from)s) AS s_from,
            argMaxIf(score, position, term = %(term_to)s) AS s_to,
            countIf(term = %(term_from)s) AS has_from,
            countIf(term = %(term_to)s) AS has_to
        FROM {grades}
        WHERE district_id = %(district_id)s AND subject = %(subject)s
            AND position <= %(as_of)s AND term IN %(terms)s {cohort}
        GROUP BY student_key
        HAVING has_from > 0 AND has_to > 0
    ) AS graded ANY LEFT JOIN (
        SELECT student_key, count() AS n FROM {facts} WHERE {usage}
        GROUP BY student_key
    ) AS used USING student_key
)
GROUP BY band
"""


OPTIONS_SQL = """
SELECT subject, term, max(term_end) FROM {grades}
WHERE district_id = %(district_id)s AND position <= %(as_of)s
GROUP BY subject, term
"""


def grade_options(
    store: ProjectionStore, filters: Filters
) -> tuple[list[str], list[tuple[str, date]]]:
    """(graded subjects, terms with their grading dates in date order) as of the position."""
    subjects: set[str] = set()
    ends: dict[str, date] = {}
    for subject, term, end in store.execute(
        OPTIONS_SQL.format(grades=filters.tables(store).grades), filters.params()
    ):
        subjects.add(str(subject))
        ends[str(term)] = max(ends.get(str(term), _day(end)), _day(end))
    return sorted(subjects), sorted(ends.items(), key=lambda p: (p[1], p[0]))


def term_window(
    store: ProjectionStore, filters: Filters, term_from: str, term_to: str
) -> tuple[date, date]:
    """(first, last) local date of the usage window; 404 for a term with no grades."""
    grades = filters.tables(store).grades
    params = {**filters.params(), "terms": (term_from, term_to)}
    ends = {str(t): d for t, d in store.execute(TERM_ENDS_SQL.format(grades=grades), params)}
    missing = [t for t in (term_from, term_to) if t not in ends]
    if missing:
        raise NotFound(f"no grades recorded for term(s) {', '.join(missing)}")
    start, end = _day(ends[term_from]), _day(ends[term_to])
    if end <= start:
        raise InvalidRequest(
            "term_to must be graded after term_from",
            {"term_from_end": start.isoformat(), "term_to_end": end.isoformat()},
        )
    return start + timedelta(days=1), end


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def outcomes(
    store: ProjectionStore, filters: Filters, term_from: str, term_to: str
) -> dict[str, Any]:
    """Bands in order (all four, empty ones with 0 students) and the window they used."""
    first, last = term_window(store, filters, term_from, term_to)
    usage = replace(filters, date_from=first, date_to=last)
    tables = filters.tables(store)
    cohort = ""
    if filters.cohort_id is not None:
        cohort = "AND " + members_condition(tables.cohorts)
    sql = OUTCOMES_SQL.format(
        grades=tables.grades,
        facts=tables.facts,
        usage=facts_where(usage, (COMPLETED,)),
        cohort=cohort,
    )
    params = {
        **usage.params(),
        "terms": (term_from, term_to),
        "term_from": term_from,
        "term_to": term_to,
    }
    found = {str(r[0]): r[1:] for r in store.execute(sql, params)}
    rows = []
    for band in BANDS:
        n, mean_from, mean_to, change = found.get(band, (0, None, None, None))
        rows.append(
            {
                "band": band,
                "students": int(n),
                "mean_from": _round(mean_from),
                "mean_to": _round(mean_to),
                "mean_change": _round(change),
            }
        )
    return {"window_start": first.isoformat(), "window_end": last.isoformat(), "rows": rows}


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 6)
