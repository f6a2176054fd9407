"""The figures behind each dashboard page, all from the metrics routes' own builders.

A page resolves its filters once (one ledger position, one chain head) and asks every
builder at that position, so every table on a page describes the same ledger state and the
page's figures are the API's answers to the same filters by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from tutorledger.api.dashboard.alert_links import alerts_panel
from tutorledger.api.dashboard.tables import (
    DrillGrades,
    GradeRow,
    ReachBySchool,
    ReachRow,
    ReachTrend,
    TrendRow,
)
from tutorledger.api.http.alert_schemas import AlertList
from tutorledger.api.metrics.registry import (
    DEMAND,
    DOSAGE,
    ENGAGEMENT,
    PARTICIPATION,
    SATISFACTION,
    TIMING,
    WAIT_TIMES,
    Keys,
    Metric,
)
from tutorledger.api.metrics.scope import Scope
from tutorledger.api.runtime import Runtime
from tutorledger.domain.errors import InvalidRequest
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.cohorts import list_cohorts
from tutorledger.projections.schools import latest_schools

SCHOOL: tuple[str, ...] = ("school_id",)
GRADES = range(13)
DEMAND_FIELDS = ("requests", "completed", "students", "share", "lift")


def answer(
    store: ProjectionStore, scope: Scope, metric: Metric[Keys], keys: Keys | None = None
) -> BaseModel:
    """One metric answer, exactly as its route builds it and as the caller's role may see it
    (small cells withheld for dashboard keys); the one place pages ask for figures. `keys` is
    the route's `group_by`, None for its default."""
    return metric.answer(store, scope, (metric.group_by or ()) if keys is None else keys)


def narrowed(scope: Scope, **changes: Any) -> Scope:
    """The same position and head, with some filters replaced."""
    return replace(scope, filters=replace(scope.filters, **changes))


@dataclass(frozen=True)
class School:
    school_id: str
    name: str | None


def schools(store: ProjectionStore, scope: Scope) -> list[School]:
    """The district's schools (the schools list's own query), or the one the view filters on."""
    rows = latest_schools(store, scope.filters.district_id)
    found = [School(str(r[0]), str(r[1]) if r[1] else None) for r in rows]
    wanted = scope.filters.school_id
    if wanted is None:
        return found
    return [s for s in found if s.school_id == wanted] or [School(wanted, None)]


def reach_by_school(store: ProjectionStore, scope: Scope, listed: list[School]) -> ReachBySchool:
    rows = []
    for school in listed:
        p = answer(store, narrowed(scope, school_id=school.school_id), PARTICIPATION)
        rows.append(ReachRow(school_id=school.school_id, name=school.name, **_pick(p, ReachRow)))
    return ReachBySchool(**scope.envelope(), rows=rows)


def reach_trend(store: ProjectionStore, scope: Scope, weeks: list[Any]) -> ReachTrend:
    """Cumulative reach at the end of each week of the view: participation with `to` moved."""
    rows = []
    last = scope.filters.date_to
    for week in weeks:
        through = week.week_start + timedelta(days=6)
        through = min(through, last) if last else through
        p = answer(store, narrowed(scope, date_to=through), PARTICIPATION)
        rows.append(
            TrendRow(week=week.week, week_start=week.week_start, through=through,
                     **_pick(p, TrendRow))
        )  # fmt: skip
    return ReachTrend(**scope.envelope(), rows=rows)


def _pick(model: BaseModel, row: type[BaseModel]) -> dict[str, Any]:
    body = model.model_dump()
    return {k: body[k] for k in row.model_fields if k in body and k not in ("school_id", "week")}


@dataclass(frozen=True)
class Freshness:
    """How current a page is, and what reproduces it."""

    as_of_position: int
    head_hash: str | None
    ledger_head: int
    projected_position: int
    historical: bool

    @property
    def projection_lag(self) -> int:
        return max(self.ledger_head - self.projected_position, 0)


def freshness(runtime: Runtime, scope: Scope, asked: int | None) -> Freshness:
    projected = runtime.projected_position()
    return Freshness(
        as_of_position=scope.filters.as_of_position,
        head_hash=scope.head_hash,
        ledger_head=runtime.ledger_head(),
        projected_position=projected,
        historical=asked is not None and asked < projected,
    )


@dataclass(frozen=True)
class DistrictFigures:
    """Every figure of the district page, at one position."""

    schools: list[School]
    participation: BaseModel
    reach_by_school: ReachBySchool
    reach_trend: ReachTrend
    engagement: BaseModel
    demand: BaseModel
    wait_times: BaseModel
    satisfaction: BaseModel
    satisfaction_by_school: BaseModel
    timing: BaseModel
    dosage: BaseModel
    alerts: AlertList


def district_view(store: ProjectionStore, scope: Scope) -> DistrictFigures:
    listed = schools(store, scope)
    engagement = answer(store, scope, ENGAGEMENT)
    return DistrictFigures(
        schools=listed,
        participation=answer(store, scope, PARTICIPATION),
        reach_by_school=reach_by_school(store, scope, listed),
        reach_trend=reach_trend(store, scope, list(getattr(engagement, "rows", []))),
        engagement=engagement,
        demand=answer(store, scope, DEMAND),
        wait_times=answer(store, scope, WAIT_TIMES, SCHOOL),
        satisfaction=answer(store, scope, SATISFACTION),
        satisfaction_by_school=answer(store, scope, SATISFACTION, SCHOOL),
        timing=answer(store, scope, TIMING),
        dosage=answer(store, scope, DOSAGE),
        alerts=alerts_panel(store, scope),
    )


def drill_grades(store: ProjectionStore, scope: Scope) -> DrillGrades:
    """Demand of the drilled school and subject at each grade: the demand answer for each grade
    (its one row, as GET /v1/metrics/demand?school_id=&subject=&grade= answers it)."""
    if scope.filters.school_id is None or scope.filters.subject is None:
        raise InvalidRequest("a drill-down needs a school_id and a subject")
    rows = []
    for grade in GRADES:
        found = answer(store, narrowed(scope, grade=grade), DEMAND)
        (row,) = found.model_dump()["rows"] or [None]
        rows.append(GradeRow(grade=grade, **{k: (row or {}).get(k) for k in DEMAND_FIELDS}))
    return DrillGrades(**scope.envelope(), rows=rows)


def drill_view(store: ProjectionStore, scope: Scope) -> dict[str, BaseModel]:
    """The drill-down of one school × subject cell: by grade and by week, with its waits."""
    return {
        "grades": drill_grades(store, scope),
        "engagement": answer(store, scope, ENGAGEMENT),
        "participation": answer(store, scope, PARTICIPATION),
        "demand": answer(store, scope, DEMAND),
        "wait_times": answer(store, scope, WAIT_TIMES),
        "satisfaction": answer(store, scope, SATISFACTION),
    }


def cohort_options(store: ProjectionStore, scope: Scope) -> list[dict[str, Any]]:
    """The district's cohorts as of the page's position, for the cohort picker."""
    f = scope.filters
    return list_cohorts(store, f.tables(store).cohorts, f.district_id, f.as_of_position)
