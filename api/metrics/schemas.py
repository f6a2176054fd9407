"""HTTP DTOs of the metrics catalogue: each response names the ledger position behind it."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

GroupCol = Field(description="Group value; null when the rows are not grouped by it")
# The provider group (projections/groups.py): absent from rows built elsewhere (the drill).
ProviderCol = Field(default=None, description="Group value; null when not grouped by provider")
GroupOpt = Field(default=None, description="Roster group (group_by=group); null otherwise")
MARGINS_HELP = (
    "With group_by=group: the same rows without the group split (a student is in any number "
    "of groups, so groups do not add up to these); null otherwise"
)
SUPPRESSED_HELP = (
    "True when a figure here was withheld (null) for a dashboard key: a count below the "
    "district's suppression_threshold, a figure derived from one, or a complement that would "
    "let one be recomputed. Auditor and admin keys see exact figures."
)
Count = int | None  # null: withheld by small-cell suppression (dashboard keys)


class GroupKeys(BaseModel):
    """The group columns of a `groups` row (projections/groups.py GROUPS)."""

    school_id: str | None = GroupCol
    subject: str | None = GroupCol
    student_group: str | None = GroupOpt
    provider: str | None = ProviderCol


GROUPS_HELP = "With group_by: the headline figures per group value, sorted by group; else absent"
GROUPED_MARGINS_HELP = MARGINS_HELP.replace("; null otherwise", "; else absent")


def _absent(value: Any) -> bool:
    return value is None


def grouped_field(description: str) -> Any:
    """A field of a groupable metric left out of the answer when not grouped, so an
    ungrouped answer is exactly what it was before `group_by` existed."""
    return Field(default=None, description=description, exclude_if=_absent)


GROUP_BY_HELP = "With group_by: the group names; else absent"


class MetricResponse(BaseModel):
    """What every metric answers besides its figures: enough to reproduce them later."""

    district_id: str
    as_of_position: int = Field(description="Ledger position the figures were computed at")
    head_hash: str | None = Field(description="District chain hash at that position")
    filters: dict[str, Any] = Field(description="The filters applied, with the time zone used")
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class DemandRow(BaseModel):
    school_id: str | None = GroupCol
    subject: str | None = GroupCol
    student_group: str | None = GroupOpt
    provider: str | None = ProviderCol
    requests: Count
    completed: Count = Field(description="Requests that reached session.completed")
    students: Count = Field(description="Distinct students with a request in the group")
    share: float | None = Field(description="Requests ÷ requests of the row's school, 0-1")
    lift: float | None = Field(description="share ÷ the same share for the whole district")
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class Demand(MetricResponse):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "district_id": "clayton", "as_of_position": 181234, "head_hash": "9f2c…",
                "filters": {"time_zone": "America/New_York"}, "group_by": ["school", "subject"],
                "rows": [{"school_id": "sch-03", "subject": "geometry", "requests": 540,
                          "completed": 488, "students": 210, "share": 0.45, "lift": 4.1}],
            }
        }
    )  # fmt: skip

    group_by: list[str]
    rows: list[DemandRow]
    margins: list[DemandRow] | None = Field(default=None, description=MARGINS_HELP)


class WaitRow(BaseModel):
    school_id: str | None = GroupCol
    subject: str | None = GroupCol
    student_group: str | None = GroupOpt
    provider: str | None = ProviderCol
    requests: Count
    matched: Count = Field(description="Requests matched to a tutor")
    unmatched: Count = Field(description="Requests never matched: still waiting or cancelled first")
    p50: float | None = Field(description="Nearest-rank 50th percentile wait, seconds")
    p90: float | None = Field(description="Nearest-rank 90th percentile wait, seconds")
    p99: float | None = Field(description="Nearest-rank 99th percentile wait, seconds")
    max: float | None = Field(description="Longest wait, seconds")
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class WaitTimes(MetricResponse):
    group_by: list[str]
    rows: list[WaitRow]
    margins: list[WaitRow] | None = Field(default=None, description=MARGINS_HELP)


class SatisfactionRow(BaseModel):
    school_id: str | None = GroupCol
    subject: str | None = GroupCol
    student_group: str | None = GroupOpt
    provider: str | None = ProviderCol
    completed: Count
    surveys: Count
    helped: Count = Field(description="Surveys answering helped = true")
    helped_rate: float | None = Field(description="helped ÷ surveys")
    mean_rating: float | None = Field(description="Mean rating 1-5 over surveys")
    survey_rate: float | None = Field(description="surveys ÷ completed")
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class Satisfaction(MetricResponse):
    group_by: list[str]
    rows: list[SatisfactionRow]
    margins: list[SatisfactionRow] | None = Field(default=None, description=MARGINS_HELP)


class SchoolHoursOut(BaseModel):
    days: list[int] = Field(description="ISO weekdays, 1 = Monday")
    start: str
    end: str


class HourCount(BaseModel):
    hour: int
    requests: Count
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class WeekdayCount(BaseModel):
    weekday: int = Field(description="ISO weekday, 1 = Monday … 7 = Sunday")
    requests: Count
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class TimingCell(BaseModel):
    weekday: int
    hour: int
    requests: Count
    in_school_requests: Count = Field(description="Of these, requests inside school hours")
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class TimingGroup(GroupKeys):
    requests: Count
    in_school_requests: Count = Field(description="Of these, requests inside school hours")
    after_school_requests: Count
    after_school_share: float | None = Field(description="after_school_requests ÷ requests")
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class Timing(MetricResponse):
    time_zone: str
    school_hours: SchoolHoursOut
    requests: Count
    after_school_requests: Count
    after_school_share: float | None = Field(description="after_school_requests ÷ requests")
    by_hour: list[HourCount] = Field(description="Local hour 0-23, all present")
    by_weekday: list[WeekdayCount] = Field(description="ISO weekday 1-7, all present")
    rows: list[TimingCell] = Field(description="All 168 (weekday, hour) cells")
    group_by: list[str] | None = grouped_field(GROUP_BY_HELP)
    groups: list[TimingGroup] | None = grouped_field(GROUPS_HELP)
    margins: list[TimingGroup] | None = grouped_field(GROUPED_MARGINS_HELP)


class WeekRow(BaseModel):
    week: str = Field(description="ISO week, e.g. 2026-W44")
    week_start: date = Field(description="Its Monday")
    weekly_active_students: Count
    requests: Count
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class EngagementGroup(GroupKeys):
    students: Count = Field(description="Distinct students with a request in range")
    regular_students: Count = Field(description="Active in >= regular_weeks distinct ISO weeks")
    one_time_students: Count = Field(description="Exactly one request in range")
    requests: Count
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class Engagement(MetricResponse):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "district_id": "clayton", "as_of_position": 181234, "head_hash": "9f2c…",
                "filters": {"from": "2026-10-26", "to": "2026-11-08"}, "students": 3,
                "regular_students": 0, "one_time_students": 2, "regular_weeks": 3,
                "rows": [{"week": "2026-W44", "week_start": "2026-10-26",
                          "weekly_active_students": 2, "requests": 3},
                         {"week": "2026-W45", "week_start": "2026-11-02",
                          "weekly_active_students": 1, "requests": 1}],
            }
        }
    )  # fmt: skip

    students: Count = Field(description="Distinct students with a request in range")
    regular_students: Count = Field(description="Active in >= regular_weeks distinct ISO weeks")
    one_time_students: Count = Field(description="Exactly one request in range")
    regular_weeks: int
    rows: list[WeekRow]
    group_by: list[str] | None = grouped_field(GROUP_BY_HELP)
    groups: list[EngagementGroup] | None = grouped_field(GROUPS_HELP)
    margins: list[EngagementGroup] | None = grouped_field(GROUPED_MARGINS_HELP)


class DosageWeek(BaseModel):
    week: str = Field(description="ISO week, e.g. 2026-W44")
    week_start: date = Field(description="Its Monday")
    active_students: Count = Field(description="Distinct students with a completed session")
    minutes: float | None = Field(description="Their session minutes that week")
    students_meeting_target: Count = Field(
        description="Students whose minutes that week are at least target_minutes"
    )
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class DosageFigures(BaseModel):
    """The dosage headline, for the district and for each group (one definition of both)."""

    sessions_completed: Count = Field(description="Sessions matched and then completed")
    students_served: Count = Field(description="Distinct students with a completed session")
    minutes: float | None = Field(description="Sum of session lengths, minutes")
    minutes_per_student: float | None = Field(description="minutes ÷ students_served")
    length_mean: float | None = Field(description="Mean session length, minutes")
    length_p50: float | None = Field(description="Nearest-rank median length, minutes")
    length_p90: float | None = Field(description="Nearest-rank 90th percentile, minutes")
    length_p99: float | None = Field(description="Nearest-rank 99th percentile, minutes")
    length_max: float | None = Field(description="Longest session, minutes")


class DosageGroup(DosageFigures, GroupKeys):
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class Dosage(DosageFigures, MetricResponse):
    target_minutes: int = Field(description="The district's weekly dosage target")
    rows: list[DosageWeek]
    group_by: list[str] | None = grouped_field(GROUP_BY_HELP)
    groups: list[DosageGroup] | None = grouped_field(GROUPS_HELP)
    margins: list[DosageGroup] | None = grouped_field(GROUPED_MARGINS_HELP)


class ParticipationGroup(GroupKeys):
    students_served: Count = Field(description="Distinct students with a request")
    sessions_requested: Count
    sessions_matched: Count
    sessions_completed: Count
    sessions_cancelled: Count
    sessions_per_served_student: float | None = Field(description="requested ÷ served")
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class Participation(BaseModel):
    district_id: str
    as_of_position: int
    head_hash: str | None
    filters: dict[str, Any]
    enrolled: int | None
    cohort_size: int | None = Field(
        default=None, description="With cohort_id: the cohort's members as of the position"
    )
    students_served: int | None
    reach_rate: float | None = Field(
        description="students_served / enrolled (0-1); with cohort_id, / cohort_size"
    )
    sessions_requested: int | None
    sessions_matched: int | None
    sessions_completed: int | None
    sessions_cancelled: int | None
    sessions_per_served_student: float | None
    suppressed: bool = Field(
        default=False,
        description="True when a figure was withheld (null) for a dashboard key: a count "
        "below the district's suppression_threshold or a figure derived from one",
    )
    group_by: list[str] | None = grouped_field(GROUP_BY_HELP)
    groups: list[ParticipationGroup] | None = grouped_field(GROUPS_HELP)
    margins: list[ParticipationGroup] | None = grouped_field(GROUPED_MARGINS_HELP)
