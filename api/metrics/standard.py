"""The `dosage-standard` metric's parts: response schema, grouping, computation, planner.

Declared once in the registry like every metric; kept here so the registry stays a list of
declarations. Its `group_by` takes grade and cohort besides school, subject, roster group
and provider.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from itertools import permutations
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from tutorledger.api.metrics.schemas import (
    MARGINS_HELP,
    SUPPRESSED_HELP,
    Count,
    GroupCol,
    MetricResponse,
)
from tutorledger.api.metrics.scope import Scope
from tutorledger.api.metrics.suppression import Cell, Plan
from tutorledger.domain.dosage_standard import DosageStandard
from tutorledger.domain.errors import InvalidRequest
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.dosage_standard import STANDARD_GROUPS, dosage_standard
from tutorledger.projections.groups import STUDENT_GROUP

GROUP_BY_HELP = (
    "one or two of 'school', 'subject', 'grade', 'cohort', 'group' (roster groups), "
    "'provider', comma-separated, not 'cohort' with 'group'"
)
GROUPING = """

**group_by**: one or two of `school`, `subject`, `grade`, `cohort`, `group`, `provider`
(comma-separated, each at most once; not `cohort` with `group`); anything else → 422. Rows are
sorted by their group values; only groups with a completed session appear (a cohort row: its
members as of the position). `group` gives a row per roster group (`student_group`, the code
of the cohort `roster.<code>`; not `roster.all`), its members as of the position: a student
in several groups counts in each, so the rows do not add up; `margins` then holds the same
rows without the group split (a dashboard key's group count is withheld when the margin minus
it would be small). `provider` gives a row per provider named on the session's request (`''`:
sessions without provenance). Without grouping there is exactly one row, with the group
columns null."""


class StandardOut(BaseModel):
    sessions_per_week: int
    session_minutes: int
    weeks: int


class StandardRow(BaseModel):
    school_id: str | None = GroupCol
    subject: str | None = GroupCol
    grade: int | None = GroupCol
    cohort_id: str | None = GroupCol
    student_group: str | None = GroupCol
    provider: str | None = GroupCol
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
    margins: list[StandardRow] | None = Field(default=None, description=MARGINS_HELP)
    weeks: list[StandardWeek] = Field(description="Every week judged (ungrouped), zeros included")


Keys = tuple[str, ...]
# Two memberships at once (a cohort's and a roster group's) would need two joins: refused.
APART = {"cohort", "group"}
# Exactly the accepted values (one name, or two different names in either order, not both
# of APART), so a schema-valid value is always answered.
CHOICES = [
    *STANDARD_GROUPS,
    *(f"{a},{b}" for a, b in permutations(STANDARD_GROUPS, 2) if {a, b} != APART),
]
StandardGroupQ = Annotated[
    str | None,
    Query(pattern=f"^({'|'.join(CHOICES)})$", description=f"Group rows by {GROUP_BY_HELP}"),
]


def parse_standard_group_by(text: str | None) -> Keys:
    """'grade,school' → ('school_id', 'grade') in a fixed order; anything else is a 422."""
    if text is None:
        return ()
    names = [part.strip() for part in text.split(",")]
    if ",".join(names) not in CHOICES:
        raise InvalidRequest(f"group_by must be {GROUP_BY_HELP}", {"group_by": text})
    return tuple(column for name, column in STANDARD_GROUPS.items() if name in names)


def standard_grouping(group_by: StandardGroupQ = None) -> Keys:
    return parse_standard_group_by(group_by)


def compute(store: ProjectionStore, scope: Scope, keys: Keys) -> BaseModel:
    """The figures; by roster group also `margins`, the rows without the group split (what
    each group's row is part of, for suppression's complements)."""
    standard: DosageStandard = scope.profile.dosage_standard
    hours = scope.profile.school_hours
    figures = dosage_standard(store, scope.filters, standard, hours, keys)
    if STUDENT_GROUP in keys:
        rest = tuple(k for k in keys if k != STUDENT_GROUP)
        figures["margins"] = dosage_standard(store, scope.filters, standard, hours, rest)["rows"]
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
    groupings, over each margin) adds up to a figure published elsewhere (by cohort or roster
    group, rows overlap: a line there only withholds more); a week's meeting students are a
    part of its active students. By roster group, each group's count is a part of its
    `margins` row, whose rest must not be small either."""
    rows, margins = body["rows"], body.get("margins") or []
    columns = [STANDARD_GROUPS[name] for name in body.get("group_by") or ()]
    for r in rows + margins:
        plan.closed.append([plan.cell(r, n) for n in STATUSES])
    for name in STATUSES:
        plan.lines.append([plan.cell(r, name) for r in rows])
        for held in columns if len(columns) == 2 else ():
            by: dict[Any, list[Cell]] = defaultdict(list)
            for r in rows:
                by[r.get(held)].append(plan.cell(r, name))
            plan.lines.extend(by.values())
        if margins:
            plan.lines.append([plan.cell(m, name) for m in margins])
    _complements(plan, rows, margins)
    for w in body["weeks"]:
        active, meeting = plan.cell(w, "active_students"), plan.cell(w, "students_meeting_week")
        plan.complements.append((active, meeting, meeting))


def _complements(plan: Plan, rows: list[dict[str, Any]], margins: list[dict[str, Any]]) -> None:
    """Each roster group's count against its margin's: the margin minus the group is the
    rest of the district (of that school, subject …), which must not be small either."""
    others = [c for c in STANDARD_GROUPS.values() if c != STUDENT_GROUP]
    by_key = {tuple(m.get(c) for c in others): m for m in margins}
    for r in rows if margins else ():
        margin = by_key.get(tuple(r.get(c) for c in others))
        if margin is None:
            continue
        for name in STATUSES:
            part = plan.cell(r, name)
            plan.complements.append((plan.cell(margin, name), part, part))
