"""Event row → cohort and grade read-model rows (students as the same 64-bit key of their token
that session_facts holds, so a cohort or a grade joins a session by `student_key`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from tutorledger.domain.cohort import COHORT_EVENT_TYPE
from tutorledger.domain.grades import GRADE_EVENT_TYPE
from tutorledger.projections.read_models import student_key
from tutorledger.projections.rows import COLUMNS

Row = tuple[Any, ...]
COHORT_COLUMNS = ("district_id", "cohort_id", "position", "cohort_name", "members")
GRADE_COLUMNS = (
    "district_id",
    "student_key",
    "subject",
    "term",
    "term_end",
    "score",
    "position",
)
_AT = {name: i for i, name in enumerate(COLUMNS)}


def _date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def insight_rows(rows: Sequence[Row]) -> tuple[list[Row], list[Row]]:
    """(cohort_updates rows, grade_facts rows) of a batch of event rows, in batch order."""
    cohorts: list[Row] = []
    grades: list[Row] = []
    for row in rows:
        kind = row[_AT["type"]]
        if kind == COHORT_EVENT_TYPE:
            members = [student_key(t) for t in row[_AT["members"]]]
            cohorts.append(
                (
                    row[_AT["district_id"]],
                    row[_AT["cohort_id"]],
                    row[_AT["position"]],
                    row[_AT["school_name"]],
                    members,
                )
            )
        elif kind == GRADE_EVENT_TYPE:
            grades.append(
                (
                    row[_AT["district_id"]],
                    student_key(row[_AT["student_id"]]),
                    row[_AT["subject"]],
                    row[_AT["term"]],
                    _date(row[_AT["term_end"]]),
                    float(row[_AT["score"]]),
                    row[_AT["position"]],
                )
            )
    return cohorts, grades
