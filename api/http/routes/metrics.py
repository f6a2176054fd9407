"""GET /v1/metrics/*: dashboard figures, reproducible at any earlier ledger position.

One route per entry of the metric registry (api/metrics/registry.py), generated here: each
takes the same filters (one dependency), answers JSON or, with `?format=csv` or
`Accept: text/csv`, the same rows as CSV. Definitions are each entry's description.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date
from typing import Annotated, Any, Literal, NamedTuple

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
from tutorledger.api.http.deps import DashboardIn, InDistrict, RuntimeDep
from tutorledger.api.http.group_filter import pin_group
from tutorledger.api.http.publication import published_positions, today_in
from tutorledger.api.http.published import PublishedScope
from tutorledger.api.http.schemas import ErrorResponse
from tutorledger.api.metrics.csv import CSV_MEDIA_TYPE, csv_response, wants_csv
from tutorledger.api.metrics.registry import METRICS, WITH_FILTERS, Keys, Metric
from tutorledger.api.metrics.scope import Scope
from tutorledger.api.metrics.suppression import EXACT_ROLES
from tutorledger.api.runtime import Runtime
from tutorledger.domain.errors import InvalidRequest
from tutorledger.domain.student_groups import GROUP_PATTERN
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.answer_cache import epochs, reuses
from tutorledger.projections.filters import Filters
from tutorledger.projections.groups import GROUP_BY_HELP, parse_group_by
from tutorledger.projections.read_models import current_tables

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
AcceptH = Annotated[str | None, Header(include_in_schema=False)]
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
GroupQ = Annotated[
    str | None,
    Query(
        pattern=GROUP_PATTERN,
        description="Only this roster group's students as of the position (e.g. ell)",
    ),
]
ProviderQ = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Only sessions whose request names this provider (its provenance)",
    ),
]
CSV_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}}},
    404: {
        "model": ErrorResponse,
        "description": "unknown_cohort / unknown_group: no such cohort or roster group at the "
        "position",
    },
    422: {
        "model": ErrorResponse,
        "description": "Bad filter: from after to, grade 13, a range longer than max_range_days "
        "(range_too_long), …",
    },
}


class Resolved(NamedTuple):
    """Filters at the effective position, its chain head, and (published positions only)
    the previous published position, which the differencing check compares against."""

    filters: Filters
    head_hash: str | None
    previous: int | None


def resolve_filters(
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
    group: str | None = None,
) -> Resolved:
    """Resolve the effective position (never past what is projected; with `published`, the
    published position at or before it, and the one before that) and its chain head. Ranges
    longer than the `max_range_days` setting are refused before anything runs."""
    if date_from and date_to and date_from > date_to:
        raise InvalidRequest("'from' is after 'to'", {"from": str(date_from), "to": str(date_to)})
    tz = runtime.settings.district(district_id).time_zone
    check_span(date_from, date_to, today_in(tz), runtime.settings.max_range_days)
    projected = runtime.sync()
    effective = projected if as_of_position is None else min(as_of_position, projected)
    previous = None
    if published:
        walk = published_positions(runtime.projections, district_id, tz, effective, projected)
        effective = next(walk, 0)
        previous = next(walk, 0) if effective > 0 else None
    head = runtime.chain_head(district_id, effective)
    known = epochs_of(runtime.projections, district_id, (effective, previous))
    filters = Filters(
        district_id=district_id,
        as_of_position=effective,
        tz=tz,
        school_id=school_id,
        subject=subject.lower() if subject else None,
        grade=grade,
        date_from=date_from,
        date_to=date_to,
        epochs=known,
    )
    if cohort_id is not None:
        filters = pin_cohort(runtime.projections, filters, cohort_id)
    if group is not None:
        filters = pin_group(runtime.projections, filters, group)
    return Resolved(filters, head[1] if head else None, previous)


def epochs_of(
    store: ProjectionStore, district_id: str, positions: tuple[int | None, ...]
) -> tuple[tuple[int, str], ...]:
    """The epochs of `positions` when an answer there can be reused, else none (no query)."""
    if not reuses(store):
        return ()
    tables = current_tables(store)
    wanted = [p for p in positions if p is not None]
    return epochs(store, tables.generation, tables.all(), district_id, wanted)


def metric_scope(
    runtime: RuntimeDep,
    caller: DashboardIn,
    school_id: SchoolQ = None,
    subject: SubjectQ = None,
    grade: GradeQ = None,
    date_from: FromQ = None,
    date_to: ToQ = None,
    as_of_position: AsOfQ = None,
    output_format: FormatQ = None,
    accept: AcceptH = None,
    cohort_id: CohortQ = None,
    group: GroupQ = None,
    provider: ProviderQ = None,
) -> Scope:
    """The filters every metric shares (docs/contract.md), checked the same way everywhere."""
    scope = resolve_scope(
        runtime, caller, school_id, subject, grade, date_from, date_to, as_of_position,
        cohort_id, csv=wants_csv(output_format, accept), group=group,
    )  # fmt: skip
    return with_provider(scope, provider)


def with_provider(scope: Scope, provider: str | None) -> Scope:
    """`scope` narrowed to the sessions whose request names `provider` (None: all). The
    position and head do not depend on it; the answer, its checks and its CSV do."""
    if provider is None:
        return scope
    return replace(scope, filters=replace(scope.filters, provider=provider))


def position_scope(
    runtime: RuntimeDep,
    caller: DashboardIn,
    cohort_id: CohortQ = None,
    as_of_position: AsOfQ = None,
    output_format: FormatQ = None,
    accept: AcceptH = None,
) -> Scope:
    """A metric without the shared filters (`filters=False`): district, cohort, position."""
    return resolve_scope(
        runtime, caller, None, None, None, None, None, as_of_position, cohort_id,
        csv=wants_csv(output_format, accept),
    )  # fmt: skip


def resolve_scope(
    runtime: Runtime,
    caller: InDistrict,
    school_id: str | None,
    subject: str | None,
    grade: int | None,
    date_from: date | None,
    date_to: date | None,
    as_of_position: int | None,
    cohort_id: str | None,
    *,
    csv: bool,
    group: str | None = None,
) -> Scope:
    """One position and chain head for the caller's district; the API and dashboard share it.

    Keys that see suppressed figures get a published position, whole weeks and answers
    checked against the previous published one (api/http/published.py); auditors and admins get
    exactly what they ask."""
    district_id = caller.district_id
    role = caller.principal.role
    profile = runtime.settings.district(district_id)
    if role in EXACT_ROLES:
        filters, head_hash, _ = resolve_filters(
            runtime, district_id, school_id, subject, grade, date_from, date_to,
            as_of_position, cohort_id, group=group,
        )  # fmt: skip
        return Scope(filters, head_hash, profile, csv, role)
    asked = {"asked_as_of_position": as_of_position, "asked_from": date_from, "asked_to": date_to}
    start, end = whole_weeks(date_from, date_to)
    filters, head_hash, previous = resolve_filters(
        runtime, district_id, school_id, subject, grade, start, end, as_of_position, cohort_id,
        published=True, group=group,
    )  # fmt: skip
    return PublishedScope(
        filters, head_hash, profile, csv, role, runtime.projections, previous,
        {k: v if v is None or isinstance(v, int) else str(v) for k, v in asked.items()},
    )  # fmt: skip


def every_metric(store: ProjectionStore, scope: Scope) -> dict[str, BaseModel]:
    """Each metric with its default grouping, as the routes answer it (for replay/reports)."""
    return {m.name: m.answer(store, scope, m.group_by or ()) for m in WITH_FILTERS}


def grouping(default: Keys) -> Callable[[str | None], Keys]:
    """The `group_by` parameter of a metric that takes one, `default` when absent."""

    def group_by(group_by: GroupByQ = None) -> Keys:
        return parse_group_by(group_by, default=default)

    return group_by


def ungrouped() -> Keys:
    return ()


def metric_route(metric: Metric[Any]) -> Callable[..., Any]:
    """The endpoint of one registry entry: its scope, its own options, then its answer."""
    scoped = metric_scope if metric.filters else position_scope
    if metric.options is not None:
        options = metric.options
    else:
        options = ungrouped if metric.group_by is None else grouping(metric.group_by)

    # Dependencies as defaults: annotations are strings read in the module's namespace,
    # where this entry's `scoped` and `options` are unknown.
    def endpoint(
        runtime: RuntimeDep, scope: Scope = Depends(scoped), chosen: Any = Depends(options)
    ) -> Any:
        body = metric.answer(runtime.projections, scope, chosen)
        return respond(scope, metric, body)

    return endpoint


def respond(scope: Scope, metric: Metric[Any], body: BaseModel) -> BaseModel | Response:
    return csv_response(body, metric.name, metric.csv_rows) if scope.csv else body


def metric_router(metrics: Iterable[Metric[Any]]) -> APIRouter:
    """GET /v1/metrics/<name> for each metric, its OpenAPI text from the entry."""
    router = APIRouter(prefix="/v1/metrics", tags=["metrics"])
    for metric in metrics:
        responses = dict(CSV_RESPONSES)
        if metric.not_found is not None:
            responses[404] = {"description": metric.not_found}
        router.add_api_route(
            f"/{metric.name}",
            metric_route(metric),
            methods=["GET"],
            name=f"get_{metric.name.replace('-', '_')}",
            response_model=metric.response,
            responses=responses,
            summary=metric.summary,
            description=metric.description,
        )
    return router


router = metric_router(METRICS.values())
