"""The figures behind each dashboard page, all from the metrics routes' own builders.

A page resolves its filters once (one ledger position, one chain head, one read-model
generation) and asks every builder at that position, so every table on a page describes the
same ledger state and the page's figures are the API's answers to the same filters by
construction. Tables of many answers (per school, per week, per month, per grade) come from
one grouped query each (`grouped`), never a query per row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from functools import partial
from typing import Any

from pydantic import BaseModel

from tutorledger.api.dashboard import grouped
from tutorledger.api.dashboard.alert_links import alerts_panel
from tutorledger.api.dashboard.grouped import Period, narrowed
from tutorledger.api.dashboard.headline import Tile, headline_table, periods, tiles
from tutorledger.api.dashboard.marks import Shown
from tutorledger.api.dashboard.notes import Partial, partial_previous
from tutorledger.api.dashboard.parallel import run_all
from tutorledger.api.http.alert_schemas import AlertList, AlertScope
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
from tutorledger.projections import reach
from tutorledger.projections.cohorts import list_cohorts
from tutorledger.projections.demand import demand_by_grade
from tutorledger.projections.filters import Filters
from tutorledger.projections.participation import cohort_size
from tutorledger.projections.read_models import current_generation
from tutorledger.projections.schools import latest_schools

Builder = Metric[Keys]
Task = Callable[[], Any]
SCHOOL: tuple[str, ...] = ("school_id",)
__all__ = ["narrowed"]  # re-exported: pages narrow scopes through this module


def answer(
    store: ProjectionStore, scope: Scope, builder: Builder, keys: Keys | None = None
) -> BaseModel:
    """One metric answer, exactly as its route builds it and as the caller's role may see it
    (small cells withheld for dashboard keys); the one place pages ask for figures. `keys` is
    the route's `group_by`, None for its default."""
    return answered(store, scope, builder, keys).model


def answered(
    store: ProjectionStore, scope: Scope, builder: Builder, keys: Keys | None = None
) -> Shown:
    """`answer`, with the exact answer beside it so the page can mark what was withheld."""
    body = builder.compute(store, scope, (builder.group_by or ()) if keys is None else keys)
    return Shown.of(body, scope.protect(body, builder))


def pinned(store: ProjectionStore, scope: Scope) -> Scope:
    """The scope with the read models' generation fixed: every query of a page reads one
    generation (a rebuild published mid-page cannot mix two), and none asks which it is."""
    if scope.filters.generation is not None:
        return scope
    return narrowed(scope, generation=current_generation(store))


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
    names: dict[str, str | None]
    current: Period | None
    previous: Period | None
    tiles: list[Tile]
    participation: Shown
    dosage: Shown
    engagement: Shown
    satisfaction: Shown
    reach_by_school: Shown
    reach_trend: Shown
    use_by_month: Shown
    satisfaction_by_school: Shown
    wait_times: Shown
    timing: Shown
    demand: Shown
    alerts: AlertList
    alerts_shown: list[Any]
    first_request: date | None = None  # the district's, at the page's position

    @property
    def partial_previous(self) -> Partial | None:
        """The previous period, when it starts before the first request (see `notes`)."""
        return partial_previous(self.previous, self.first_request)


HEADLINE: dict[str, Builder] = {
    "participation": PARTICIPATION,
    "dosage": DOSAGE,
    "engagement": ENGAGEMENT,
    "satisfaction": SATISFACTION,
}
DETAIL = ("satisfaction_by_school", "wait_times", "timing", "demand")


def _headline_tasks(store: ProjectionStore, scope: Scope, prefix: str = "") -> dict[str, Task]:
    return {f"{prefix}{k}": partial(answered, store, scope, b) for k, b in HEADLINE.items()}


def _tasks(
    store: ProjectionStore, scope: Scope, monthly: Scope, split: date | None
) -> dict[str, Task]:
    """The page's independent queries: each a whole table, none per school or per week."""
    f = scope.filters
    by_month: Task = partial(reach.by_month, store, monthly.filters, split) if split else dict
    return {
        **_headline_tasks(store, scope),
        "satisfaction_by_school": partial(answered, store, scope, SATISFACTION, SCHOOL),
        "wait_times": partial(answered, store, scope, WAIT_TIMES, SCHOOL),
        "timing": partial(answered, store, scope, TIMING),
        "demand": partial(answered, store, scope, DEMAND),
        "alerts": partial(alerts_panel, store, scope),
        "by_school": partial(reach.by_school, store, f),
        "by_week": partial(reach.by_week, store, f),
        "by_month": by_month,
    }


def _earlier(scope: Scope, previous: Period | None) -> Scope | None:
    if previous is None:
        return None
    return narrowed(scope, date_from=previous.start, date_to=previous.end)


def district_view(store: ProjectionStore, scope: Scope) -> DistrictFigures:
    """Every figure of the district page: a fixed number of queries whatever the number of
    schools, weeks or months; independent ones run together (see `parallel`)."""
    scope = pinned(store, scope)
    f = scope.filters
    listed = schools(store, scope)
    span = reach.request_span(store, f)
    current, previous = periods(f, span)
    earlier = _earlier(scope, previous)
    monthly = narrowed(scope, date_from=previous.start) if previous else scope
    tasks = _tasks(store, scope, monthly, current.start if current else None)
    if earlier is not None:
        tasks |= _headline_tasks(store, earlier, "previous_")
    got = run_all(store, tasks)
    spans = [p for p in (previous, current) if p is not None]
    days = [f.date_to, *grouped.week_ends(scope, grouped.weeks_of(scope, got["by_week"]))]
    days += [last for p in spans for _, _, last in grouped.month_bounds(p)]
    enrolment = reach.enrolment_on(store, f, days)
    near = near_of(store, scope, monthly, current.start if current else None, days)
    cohort = got["participation"].exact.model_dump().get("cohort_size")
    names = {s.school_id: s.name for s in listed}
    before = {k: got[f"previous_{k}"] for k in HEADLINE} if earlier is not None else None
    alerts: AlertList = got["alerts"]
    return DistrictFigures(
        schools=listed,
        names=names,
        current=current,
        previous=previous,
        tiles=tiles({k: got[k] for k in HEADLINE}, before, f.cohort_id is not None),
        reach_by_school=grouped.reach_by_school(
            scope, names, got["by_school"], enrolment[f.date_to], cohort, near
        ),
        reach_trend=grouped.reach_trend(scope, got["by_week"], enrolment, cohort, near),
        use_by_month=grouped.use_by_month(scope, spans, got["by_month"], enrolment, cohort, near),
        alerts=alerts,
        alerts_shown=[a for a in alerts.alerts if follows(a.scope, f)],
        first_request=span.first if span else None,
        **{k: got[k] for k in (*HEADLINE, *DETAIL)},
    )


def near_of(
    store: ProjectionStore,
    scope: Scope,
    monthly: Scope,
    split: date | None,
    days: list[date | None],
) -> grouped.Near | None:
    """The grouped tables at the previous published position (None when the caller's
    answers are not checked against it): five queries, whatever the rows."""
    earlier = scope.previous()
    if earlier is None:
        return None
    f = earlier.filters
    m = replace(monthly.filters, as_of_position=f.as_of_position)
    tasks: dict[str, Task] = {
        "by_school": partial(reach.by_school, store, f),
        "by_week": partial(reach.by_week, store, f),
        "by_month": partial(reach.by_month, store, m, split) if split else dict,
        "enrolment": partial(reach.enrolment_on, store, f, days),
        "cohort": partial(cohort_of, store, f),
    }
    got = run_all(store, tasks)
    return grouped.Near(
        got["by_school"], got["by_week"], got["by_month"], got["enrolment"], got["cohort"]
    )


def follows(scope: AlertScope, filters: Filters) -> bool:
    """An alert concerns the view when it is about the view's school and subject (or the
    view has none): alerts are computed district-wide, so the page shows only these."""
    return (filters.school_id is None or scope.school_id == filters.school_id) and (
        filters.subject is None or scope.subject in (None, filters.subject)
    )


def cohort_of(store: ProjectionStore, filters: Filters) -> int | None:
    return None if filters.cohort_id is None else cohort_size(store, filters)


def reach_by_school_table(store: ProjectionStore, scope: Scope) -> BaseModel:
    """The ranked schools alone (their CSV): the same grouped queries as the page."""
    scope = pinned(store, scope)
    f = scope.filters
    names = {s.school_id: s.name for s in schools(store, scope)}
    enrolled = reach.enrolment_on(store, f, [f.date_to])[f.date_to]
    counts = reach.by_school(store, f)
    near = near_of(store, scope, scope, None, [f.date_to])
    cohort = cohort_of(store, f)
    return grouped.reach_by_school(scope, names, counts, enrolled, cohort, near).model


def reach_trend_table(store: ProjectionStore, scope: Scope) -> BaseModel:
    """Cumulative reach by week alone (its CSV)."""
    scope = pinned(store, scope)
    f = scope.filters
    by_week = reach.by_week(store, f)
    ends: list[date | None] = [*grouped.week_ends(scope, grouped.weeks_of(scope, by_week))]
    enrolment = reach.enrolment_on(store, f, ends)
    near = near_of(store, scope, scope, None, ends)
    return grouped.reach_trend(scope, by_week, enrolment, cohort_of(store, f), near).model


def use_by_month_table(store: ProjectionStore, scope: Scope) -> BaseModel:
    """Use by month of the view and of the previous period alone (its CSV)."""
    scope = pinned(store, scope)
    f = scope.filters
    current, previous = periods(f, reach.request_span(store, f))
    spans = [p for p in (previous, current) if p is not None]
    monthly = narrowed(scope, date_from=previous.start) if previous else scope
    by_month = reach.by_month(store, monthly.filters, current.start) if current else {}
    days: list[date | None] = [last for p in spans for _, _, last in grouped.month_bounds(p)]
    enrolment = reach.enrolment_on(store, f, days)
    near = near_of(store, scope, monthly, current.start if current else None, days)
    cohort = cohort_of(store, f)
    return grouped.use_by_month(scope, spans, by_month, enrolment, cohort, near).model


def headline(store: ProjectionStore, scope: Scope) -> BaseModel:
    """The headline tiles as a table (their CSV)."""
    scope = pinned(store, scope)
    current, previous = periods(scope.filters, reach.request_span(store, scope.filters))
    earlier = _earlier(scope, previous)
    tasks = _headline_tasks(store, scope)
    if earlier is not None:
        tasks |= _headline_tasks(store, earlier, "previous_")
    got = run_all(store, tasks)
    before = {k: got[f"previous_{k}"] for k in HEADLINE} if earlier is not None else None
    shown = tiles({k: got[k] for k in HEADLINE}, before, scope.filters.cohort_id is not None)
    return headline_table(scope, shown, current, previous)


def drill_grades(store: ProjectionStore, scope: Scope) -> BaseModel:
    """Demand of the drilled school and subject at each grade: the demand answer for each grade
    (its one row, as GET /v1/metrics/demand?school_id=&subject=&grade= answers it)."""
    return drill_grades_shown(store, scope).model


def drill_grades_shown(store: ProjectionStore, scope: Scope) -> Shown:
    """Every grade from one grouped query (`demand_by_grade`)."""
    if scope.filters.school_id is None or scope.filters.subject is None:
        raise InvalidRequest("a drill-down needs a school_id and a subject")
    earlier = scope.previous()
    near = None if earlier is None else demand_by_grade(store, earlier.filters)
    return grouped.drill_grades(scope, demand_by_grade(store, scope.filters), near)


def drill_view(store: ProjectionStore, scope: Scope) -> dict[str, Shown]:
    """The drill-down of one school × subject cell: by grade and by week, with its waits."""
    scope = pinned(store, scope)
    tasks: dict[str, Task] = {
        "grades": partial(drill_grades_shown, store, scope),
        "engagement": partial(answered, store, scope, ENGAGEMENT),
        "participation": partial(answered, store, scope, PARTICIPATION),
        "demand": partial(answered, store, scope, DEMAND),
        "wait_times": partial(answered, store, scope, WAIT_TIMES),
        "satisfaction": partial(answered, store, scope, SATISFACTION),
    }
    return run_all(store, tasks)


def cohort_options(store: ProjectionStore, scope: Scope) -> list[dict[str, Any]]:
    """The district's cohorts as of the page's position, for the cohort picker."""
    f = scope.filters
    return list_cohorts(store, f.tables(store).cohorts, f.district_id, f.as_of_position)
