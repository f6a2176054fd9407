"""The `dosage-standard` metric's parts: response schema, grouping, computation, planner.

Declared once in the registry like every metric; kept here so the registry stays a list of
declarations. Its `group_by` takes grade and cohort besides school and subject.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from itertools import permutations
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from tutorledger.api.metrics.schemas import SUPPRESSED_HELP, Count, GroupCol, MetricResponse
from tutorledger.api.metrics.scope import Scope
from tutorledger.api.metrics.suppression import Cell, Plan
from tutorledger.domain.dosage_standard import DosageStandard
from tutorledger.domain.errors import InvalidRequest
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.dosage_standard import STANDARD_GROUPS, dosage_standard

GROUP_BY_HELP = "one or two of 'school', 'subject', 'grade', 'cohort', comma-separated"
GROUPING = """

**group_by**: one or two of `school`, `subject`, `grade`, `cohort` (comma-separated, each at
most once); anything else → 422. Rows are sorted by their group values; only groups with a
completed session appear (a cohort row: its members as of the position). Without grouping
there is exactly one row, with the group columns null."""


class StandardOut(BaseModel):
    sessions_per_week: int
    session_minutes: int
    weeks: int


class StandardRow(BaseModel):
    school_id: str | None = GroupCol
    subject: str | None = GroupCol
    grade: int | None = GroupCol
    cohort_id: str | None = GroupCol
    students: Count = Field(description="Distinct students with a completed session")
    met: Count = Field(description="Of those, with at least `weeks` met weeks")
    on_track: Count = Field(description="Not yet met, but every counted week since their first met")
    short: Count = Field(description="students − met − on_track")
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class StandardWeek(BaseModel):
    week: str = Field(description="ISO week, e.g. 2026-W44")
    week_start: date = Field(description="Its Monday")
    school_days: int = Field(description="School days outside breaks; 0: the week is not judged")
    active_students: Count = Field(description="Students with a completed session that week")
    students_meeting_week: Count = Field(
        description="Students with sessions_per_week sessions of session_minutes or more"
    )
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class DosageStandardOut(MetricResponse):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "district_id": "clayton", "as_of_position": 181234, "head_hash": "9f2c…",
                "filters": {"from": "2026-09-07", "to": "2026-12-18"}, "group_by": [],
                "standard": {"sessions_per_week": 3, "session_minutes": 30, "weeks": 10},
                "first_week": "2026-09-07", "last_week": "2026-12-14", "counted_weeks": 14,
                "rows": [{"students": 410, "met": 12, "on_track": 31, "short": 367}],
                "weeks": [{"week": "2026-W37", "week_start": "2026-09-07", "school_days": 4,
                           "active_students": 120, "students_meeting_week": 9}],
            }
        }
    )  # fmt: skip

    group_by: list[str]
    standard: StandardOut
    first_week: date | None = Field(description="Monday of the first week judged")
    last_week: date | None = Field(description="Monday of the last week judged")
    counted_weeks: int = Field(description="Weeks judged that have a school day")
    rows: list[StandardRow]
    weeks: list[StandardWeek] = Field(description="Every week judged (ungrouped), zeros included")


Keys = tuple[str, ...]
# Exactly the accepted values (one name, or two different names in either order), so a
# schema-valid value is always answered.
CHOICES = [*STANDARD_GROUPS, *(f"{a},{b}" for a, b in permutations(STANDARD_GROUPS, 2))]
StandardGroupQ = Annotated[
    str | None,
    Query(pattern=f"^({'|'.join(CHOICES)})$", description=f"Group rows by {GROUP_BY_HELP}"),
]


def parse_standard_group_by(text: str | None) -> Keys:
    """'grade,school' → ('school_id', 'grade') in a fixed order; anything else is a 422."""
    if text is None:
        return ()
    names = [part.strip() for part in text.split(",")]
    if any(n not in STANDARD_GROUPS for n in names) or len(set(names)) != len(names):
        raise InvalidRequest(f"group_by must be {GROUP_BY_HELP}", {"group_by": text})
    return tuple(column for name, column in STANDARD_GROUPS.items() if name in names)


def standard_grouping(group_by: StandardGroupQ = None) -> Keys:
    return parse_standard_group_by(group_by)


def compute(store: ProjectionStore, scope: Scope, keys: Keys) -> BaseModel:
    standard: DosageStandard = scope.profile.dosage_standard
    figures = dosage_standard(store, scope.filters, standard, scope.profile.school_hours, keys)
    names = [n for n, c in STANDARD_GROUPS.items() if c in keys]
    return DosageStandardOut.model_validate(
        {
            **scope.envelope(),
            "group_by": names,
            "standard": standard.model_dump(
                include={"sessions_per_week", "session_minutes", "weeks"}
            ),  # fmt: skip
            **figures,
        }
    )


STATUSES = ("students", "met", "on_track", "short")


def plan_dosage_standard(plan: Plan, body: dict[str, Any]) -> None:
    """students = met + on_track + short in each row; each count over the rows (and, with two
    groupings, over each margin) adds up to a figure published elsewhere; a week's meeting
    students are a part of its active students."""
    rows = body["rows"]
    columns = [STANDARD_GROUPS[name] for name in body.get("group_by") or ()]
    for r in rows:
        plan.closed.append([plan.cell(r, n) for n in STATUSES])
    for name in STATUSES:
        plan.lines.append([plan.cell(r, name) for r in rows])
        for held in columns if len(columns) == 2 else ():
            by: dict[Any, list[Cell]] = defaultdict(list)
            for r in rows:
                by[r.get(held)].append(plan.cell(r, name))
            plan.lines.extend(by.values())
    for w in body["weeks"]:
        active, meeting = plan.cell(w, "active_students"), plan.cell(w, "students_meeting_week")
        plan.complements.append((active, meeting, meeting))
