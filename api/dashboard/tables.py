"""Tables the dashboard composes from several metric answers (one row per answer, copied).

Nothing here computes a figure: each row holds the fields of one metric answer for a
narrower filter (a school, a week's end, a grade), so the CSV download of such a table is
the API's answers to those filters, side by side.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel

from tutorledger.api.metrics.schemas import MetricResponse


class ReachRow(BaseModel):
    """GET /v1/metrics/participation?school_id=<school> (plus the view's other filters)."""

    school_id: str
    name: str | None
    enrolled: int | None
    students_served: int | None
    reach_rate: float | None
    sessions_requested: int | None


class ReachBySchool(MetricResponse):
    rows: list[ReachRow]


class TrendRow(BaseModel):
    """GET /v1/metrics/participation?to=<through> (cumulative since the view's `from`)."""

    week: str
    week_start: date
    through: date
    enrolled: int | None
    students_served: int | None
    reach_rate: float | None


class ReachTrend(MetricResponse):
    rows: list[TrendRow]


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
