"""Tables the dashboard composes from several metric answers (one row per answer, copied).

Each row holds the fields of one metric answer for a narrower filter (a school, a week's
end, a month, a grade), so the CSV download of such a table is the API's answers to those
filters, side by side. The only figures computed here are ratios of a row's own figures
(a school's sessions per enrolled student, a headline figure's change), withheld whenever
one of their terms is.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from tutorledger.api.metrics.schemas import MetricResponse


class ReachRow(BaseModel):
    """GET /v1/metrics/participation?school_id=<school> (plus the view's other filters)."""

    school_id: str
    name: str | None
    enrolled: int | None
    cohort_size: int | None = None
    students_served: int | None
    reach_rate: float | None
    sessions_requested: int | None
    sessions_completed: int | None
    sessions_per_student: float | None = Field(
        description="sessions_completed ÷ enrolled (with a cohort: ÷ cohort_size)"
    )
    rank: int | None = Field(description="1 = least use per student; null: not ranked")


class ReachBySchool(MetricResponse):
    rows: list[ReachRow]


class TrendRow(BaseModel):
    """GET /v1/metrics/participation?to=<through> (cumulative since the view's `from`)."""

    week: str
    week_start: date
    through: date
    enrolled: int | None
    cohort_size: int | None = None
    students_served: int | None
    reach_rate: float | None


class ReachTrend(MetricResponse):
    rows: list[TrendRow]


class MonthRow(BaseModel):
    """GET /v1/metrics/participation?from=<from>&to=<to>: one month of one period."""

    period: str = Field(description="'current' (the view) or 'previous' (the period before)")
    month: str
    from_date: date = Field(description="The API query's `from`")
    to_date: date = Field(description="The API query's `to`")
    enrolled: int | None
    cohort_size: int | None = None
    students_served: int | None
    reach_rate: float | None
    sessions_requested: int | None
    sessions_completed: int | None


class UseByMonth(MetricResponse):
    rows: list[MonthRow]


class HeadlineRow(BaseModel):
    """One headline figure: the view's value and the previous period's (same filters)."""

    figure: str
    metric: str = Field(description="The API metric and field it is read from")
    value: float | None
    previous: float | None
    change: float | None = Field(description="value − previous")
    relative_change: float | None = Field(description="change ÷ previous")
    period_from: date | None = Field(description="The view's first day (else the data's)")
    period_to: date | None
    previous_from: date | None = Field(description="null: no previous period (no `from`)")
    previous_to: date | None


class Headline(MetricResponse):
    rows: list[HeadlineRow]


class GradeRow(BaseModel):
    """GET /v1/metrics/demand?grade=<grade> for the drilled school and subject (its one row)."""

    grade: int
    requests: int | None
    completed: int | None
    students: int | None
    share: float | None
    lift: float | None


class DrillGrades(MetricResponse):
    rows: list[GradeRow]
