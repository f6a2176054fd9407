"""GET /v1/metrics/*: dashboard figures, reproducible at any earlier ledger position.

Every route takes the same filters (one dependency), answers JSON or, with `?format=csv` or
`Accept: text/csv`, the same rows as CSV. Definitions live in each route's description.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import Response
from pydantic import BaseModel

from tutorledger.api.http.bounds import (
    GROUP_BY_PATTERN,
    BoundedDate,
    check_span,
    query_date,
    whole_weeks,
)
from tutorledger.api.http.cohort_filter import pin_cohort
from tutorledger.api.http.csv_response import CSV_MEDIA_TYPE, csv_response, wants_csv
from tutorledger.api.http.deps import Dashboard, RuntimeDep, check_district
from tutorledger.api.http.publication import published_position, request_weeks, today_in
from tutorledger.api.http.schemas import ErrorResponse, Participation
from tutorledger.api.metrics import schemas as ms
from tutorledger.api.metrics.docs import DOCS
from tutorledger.api.metrics.suppression import EXACT_ROLES, suppress_metric
from tutorledger.api.runtime import Runtime
from tutorledger.domain.district import DistrictProfile
from tutorledger.domain.errors import InvalidRequest
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.infra.keys import Principal
from tutorledger.projections.demand import demand
from tutorledger.projections.dosage import dosage
from tutorledger.projections.engagement import REGULAR_WEEKS, engagement
from tutorledger.projections.filters import Filters
from tutorledger.projections.groups import GROUP_BY_HELP, GROUPS, parse_group_by
from tutorledger.projections.participation import participation
from tutorledger.projections.satisfaction import satisfaction
from tutorledger.projections.timing import timing
from tutorledger.projections.wait_times import wait_times

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])

DistrictQ = Annotated[str, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
SchoolQ = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
SubjectQ = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9-]{1,64}$")]
GradeQ = Annotated[int | None, Query(ge=0, le=12, description="0 = kindergarten … 12")]
_DAY = "Inclusive local date in the district's zone; `from` must not be after `to`"
FromQ = Annotated[BoundedDate | None, query_date("from", _DAY)]
ToQ = Annotated[BoundedDate | None, query_date("to", _DAY)]
AsOfQ = Annotated[
    int | None,
    Query(ge=0, description="Compute from ledger positions <= this: the report as it was then"),
]
FormatQ = Annotated[
    Literal["json", "csv"] | None,
    Query(alias="format", description="csv: the same rows as CSV (also `Accept: text/csv`)"),
]
GroupByQ = Annotated[
    str | None, Query(pattern=GROUP_BY_PATTERN, description=f"Group rows by {GROUP_BY_HELP}")
]
CohortQ = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Only this cohort's members as of the position (see /v1/cohorts)",
    ),
]
Keys = tuple[str, ...]
M = TypeVar("M", bound=BaseModel)
DEMAND_KEYS: Keys = ("school_id", "subject")
CSV_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}}},
    404: {"model": ErrorResponse, "description": "unknown_cohort: no such cohort at the position"},
    422: {"model": ErrorResponse, "description": "Bad filter: from after to, grade 13, …"},
}


def build_filters(
    runtime: Runtime,
    district_id: str,
    school_id: str | None,
    subject: str | None,
    grade: int | None,
    date_from: date | None,
    date_to: date | None,
    as_of_position: int | None,
    cohort_id: str | None = None,
    *,
    published: bool = False,
) -> tuple[Filters, str | None]:
    """Resolve the effective position (never past what is projected; with `published`, the
    published position at or before it) and its chain head. Ranges longer than the
    `max_range_days` setting are refused before anything runs."""
    if date_from and date_to and date_from > date_to:
        raise InvalidRequest("'from' is after 'to'", {"from": str(date_from), "to": str(date_to)})
    tz = runtime.settings.district(district_id).time_zone
    check_span(date_from, date_to, today_in(tz), runtime.settings.max_range_days)
    projected = runtime.sync()
    effective = projected if as_of_position is None else min(as_of_position, projected)
    if published:
        effective = published_position(runtime.projections, district_id, tz, effective, projected)
    recorder: Any = runtime.ledger.recorder
    head = recorder.head(district_id, effective)
    filters = Filters(
        district_id=district_id,
        as_of_position=effective,
        tz=tz,
        school_id=school_id,
        subject=subject.lower() if subject else None,
        grade=grade,
        date_from=date_from,
        date_to=date_to,
    )
    if cohort_id is not None:
        filters = pin_cohort(runtime.projections, filters, cohort_id)
    return filters, head[1] if head else None


def echo(filters: Filters) -> dict[str, Any]:
    return {
        "school_id": filters.school_id,
        "subject": filters.subject,
        "grade": filters.grade,
        "from": filters.date_from.isoformat() if filters.date_from else None,
        "to": filters.date_to.isoformat() if filters.date_to else None,
        "time_zone": filters.tz,
        "cohort_id": filters.cohort_id,
    }


@dataclass(frozen=True)
class Scope:
    """One metrics request, resolved: filters at a position, the district's calendar, format."""

    filters: Filters
    head_hash: str | None
    profile: DistrictProfile
    csv: bool
    role: str = "dashboard"  # whose figures: dashboards get small cells withheld

    def envelope(self) -> dict[str, Any]:
        return {
            "district_id": self.filters.district_id,
            "as_of_position": self.filters.as_of_position,
            "head_hash": self.head_hash,
            "filters": echo(self.filters),
        }

    def protect(self, model: M, name: str) -> M:
        """The figures this caller may see (small-cell suppression for dashboard keys)."""
        return suppress_metric(name, model, self.role, self.profile.suppression_threshold)

    def answer(self, model: BaseModel, name: str) -> BaseModel | Response:
        model = self.protect(model, name)
        return csv_response(model, name) if self.csv else model


def metric_scope(
    runtime: RuntimeDep,
    principal: Dashboard,
    district_id: DistrictQ,
    school_id: SchoolQ = None,
    subject: SubjectQ = None,
    grade: GradeQ = None,
    date_from: FromQ = None,
    date_to: ToQ = None,
    as_of_position: AsOfQ = None,
    output_format: FormatQ = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
    cohort_id: CohortQ = None,
) -> Scope:
    """The filters every metric shares (docs/contract.md), checked the same way everywhere."""
    return resolve_scope(
        runtime, principal, district_id, school_id, subject, grade, date_from, date_to,
        as_of_position, cohort_id, csv=wants_csv(output_format, accept),
    )  # fmt: skip


def resolve_scope(
    runtime: Runtime,
    principal: Principal,
    district_id: str,
    school_id: str | None,
    subject: str | None,
    grade: int | None,
    date_from: date | None,
    date_to: date | None,
    as_of_position: int | None,
    cohort_id: str | None,
    *,
    csv: bool,
) -> Scope:
    """One position and chain head for the caller's district; the API and dashboard share it.

    Keys that see suppressed figures get a published position, whole weeks and answers
    checked against their neighbours (api/http/published.py); auditors and admins get
    exactly what they ask."""
    from tutorledger.api.http.published import PublishedScope  # builds on this Scope

    check_district(principal, district_id)
    profile = runtime.settings.district(district_id)
    if principal.role in EXACT_ROLES:
        filters, head_hash = build_filters(
            runtime, district_id, school_id, subject, grade, date_from, date_to,
            as_of_position, cohort_id,
        )  # fmt: skip
        return Scope(filters, head_hash, profile, csv, principal.role)
    asked = {"asked_as_of_position": as_of_position, "asked_from": date_from, "asked_to": date_to}
    start, end = whole_weeks(date_from, date_to)
    filters, head_hash = build_filters(
        runtime, district_id, school_id, subject, grade, start, end, as_of_position, cohort_id,
        published=True,
    )  # fmt: skip
    store = runtime.projections
    span = None  # an open side's neighbours are taken on the weeks the requests cover
    if start is None or end is None:
        facts = filters.tables(store).facts
        span = request_weeks(store, facts, district_id, filters.tz, filters.as_of_position)
    previous = None
    if filters.as_of_position > 0:
        previous = published_position(
            store, district_id, filters.tz, filters.as_of_position - 1,
            runtime.projected_position(),
        )  # fmt: skip
    return PublishedScope(
        filters, head_hash, profile, csv, principal.role, store, previous, span,
        {k: v if v is None or isinstance(v, int) else str(v) for k, v in asked.items()},
    )  # fmt: skip


ScopeDep = Annotated[Scope, Depends(metric_scope)]


def _group_names(keys: tuple[str, ...]) -> list[str]:
    return [name for name, column in GROUPS.items() if column in keys]


def participation_body(store: ProjectionStore, scope: Scope, _: Keys = ()) -> BaseModel:
    return Participation(**scope.envelope(), **participation(store, scope.filters))


def demand_body(store: ProjectionStore, scope: Scope, keys: Keys = DEMAND_KEYS) -> BaseModel:
    rows = demand(store, scope.filters, keys)
    return ms.Demand.model_validate(
        {**scope.envelope(), "group_by": _group_names(keys), "rows": rows}
    )


def wait_times_body(store: ProjectionStore, scope: Scope, keys: Keys = ()) -> BaseModel:
    rows = wait_times(store, scope.filters, keys)
    return ms.WaitTimes.model_validate(
        {**scope.envelope(), "group_by": _group_names(keys), "rows": rows}
    )


def satisfaction_body(store: ProjectionStore, scope: Scope, keys: Keys = ()) -> BaseModel:
    rows = satisfaction(store, scope.filters, keys)
    return ms.Satisfaction.model_validate(
        {**scope.envelope(), "group_by": _group_names(keys), "rows": rows}
    )


def timing_body(store: ProjectionStore, scope: Scope, _: Keys = ()) -> BaseModel:
    hours = scope.profile.school_hours
    figures = timing(store, scope.filters, hours)
    school_hours = ms.SchoolHoursOut(days=list(hours.days), start=hours.start, end=hours.end)
    return ms.Timing(
        **scope.envelope(), time_zone=scope.filters.tz, school_hours=school_hours, **figures
    )


def engagement_body(store: ProjectionStore, scope: Scope, _: Keys = ()) -> BaseModel:
    figures = engagement(store, scope.filters)
    return ms.Engagement(**scope.envelope(), regular_weeks=REGULAR_WEEKS, **figures)


def dosage_body(store: ProjectionStore, scope: Scope, _: Keys = ()) -> BaseModel:
    figures = dosage(store, scope.filters, scope.profile.dosage_target_minutes)
    return ms.Dosage(**scope.envelope(), **figures)


BODIES: dict[str, Callable[[ProjectionStore, Scope], BaseModel]] = {
    "participation": participation_body,
    "demand": demand_body,
    "wait-times": wait_times_body,
    "satisfaction": satisfaction_body,
    "timing": timing_body,
    "engagement": engagement_body,
    "dosage": dosage_body,
}


def every_metric(store: ProjectionStore, scope: Scope) -> dict[str, BaseModel]:
    """Each metric with its default grouping, as the routes answer it (for replay/reports)."""
    return {name: scope.protect(body(store, scope), name) for name, body in BODIES.items()}


@router.get(
    "/participation",
    response_model=Participation,
    responses=CSV_RESPONSES,
    summary="Who used tutoring and how much",
    description=DOCS["participation"],
)
def get_participation(scope: ScopeDep, runtime: RuntimeDep) -> Any:
    return scope.answer(participation_body(runtime.projections, scope), "participation")


@router.get(
    "/demand",
    response_model=ms.Demand,
    responses=CSV_RESPONSES,
    summary="Where requests come from; school × subject hotspots",
    description=DOCS["demand"],
)
def get_demand(scope: ScopeDep, runtime: RuntimeDep, group_by: GroupByQ = None) -> Any:
    keys = parse_group_by(group_by, default=DEMAND_KEYS)
    return scope.answer(demand_body(runtime.projections, scope, keys), "demand")


@router.get(
    "/wait-times",
    response_model=ms.WaitTimes,
    responses=CSV_RESPONSES,
    summary="Request → match wait, seconds",
    description=DOCS["wait-times"],
)
def get_wait_times(scope: ScopeDep, runtime: RuntimeDep, group_by: GroupByQ = None) -> Any:
    keys = parse_group_by(group_by)
    return scope.answer(wait_times_body(runtime.projections, scope, keys), "wait-times")


@router.get(
    "/satisfaction",
    response_model=ms.Satisfaction,
    responses=CSV_RESPONSES,
    summary="Post-session surveys",
    description=DOCS["satisfaction"],
)
def get_satisfaction(scope: ScopeDep, runtime: RuntimeDep, group_by: GroupByQ = None) -> Any:
    keys = parse_group_by(group_by)
    return scope.answer(satisfaction_body(runtime.projections, scope, keys), "satisfaction")


@router.get(
    "/timing",
    response_model=ms.Timing,
    responses=CSV_RESPONSES,
    summary="When students ask: local hour, weekday, after school",
    description=DOCS["timing"],
)
def get_timing(scope: ScopeDep, runtime: RuntimeDep) -> Any:
    return scope.answer(timing_body(runtime.projections, scope), "timing")


@router.get(
    "/engagement",
    response_model=ms.Engagement,
    responses=CSV_RESPONSES,
    summary="Weekly active, regular and one-time students",
    description=DOCS["engagement"],
)
def get_engagement(scope: ScopeDep, runtime: RuntimeDep) -> Any:
    return scope.answer(engagement_body(runtime.projections, scope), "engagement")


@router.get(
    "/dosage",
    response_model=ms.Dosage,
    responses=CSV_RESPONSES,
    summary="Session length and weekly minutes per student",
    description=DOCS["dosage"],
)
def get_dosage(scope: ScopeDep, runtime: RuntimeDep) -> Any:
    return scope.answer(dosage_body(runtime.projections, scope), "dosage")
