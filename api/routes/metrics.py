"""GET /v1/metrics/*: dashboard figures, reproducible at any earlier ledger position."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query

from tutorledger.api.deps import Dashboard, RuntimeDep, check_district
from tutorledger.api.runtime import Runtime
from tutorledger.api.schemas import Participation
from tutorledger.domain.errors import InvalidRequest
from tutorledger.projections.filters import Filters
from tutorledger.projections.participation import participation

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])

DistrictQ = Annotated[str, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
SchoolQ = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
SubjectQ = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9-]{1,64}$")]
GradeQ = Annotated[int | None, Query(ge=0, le=12)]
DateQ = Annotated[date | None, Query(description="Inclusive local date in the district's zone")]
AsOfQ = Annotated[
    int | None,
    Query(ge=0, description="Compute from ledger positions <= this: the report as it was then"),
]


def build_filters(
    runtime: Runtime,
    district_id: str,
    school_id: str | None,
    subject: str | None,
    grade: int | None,
    date_from: date | None,
    date_to: date | None,
    as_of_position: int | None,
) -> tuple[Filters, str | None]:
    """Resolve the effective position (never past what is projected) and its chain head."""
    if date_from and date_to and date_from > date_to:
        raise InvalidRequest("'from' is after 'to'", {"from": str(date_from), "to": str(date_to)})
    projected = runtime.sync()
    effective = projected if as_of_position is None else min(as_of_position, projected)
    recorder: Any = runtime.ledger.recorder
    head = recorder.head(district_id, effective)
    filters = Filters(
        district_id=district_id,
        as_of_position=effective,
        tz=runtime.settings.district_tz,
        school_id=school_id,
        subject=subject.lower() if subject else None,
        grade=grade,
        date_from=date_from,
        date_to=date_to,
    )
    return filters, head[1] if head else None


def echo(filters: Filters) -> dict[str, Any]:
    return {
        "school_id": filters.school_id,
        "subject": filters.subject,
        "grade": filters.grade,
        "from": filters.date_from.isoformat() if filters.date_from else None,
        "to": filters.date_to.isoformat() if filters.date_to else None,
        "time_zone": filters.tz,
    }


@router.get(
    "/participation",
    response_model=Participation,
    summary="Who used tutoring and how much",
    description=(
        "`students_served`: distinct students with at least one request in the range. "
        "`enrolled`: sum of each school's latest enrolment (by `as_of` date, on or before "
        "`to`), limited to the school/grade filters. `reach_rate` = served / enrolled (null "
        "when nothing is enrolled). Sessions belong to the local day they were requested. "
        "`sessions_matched`/`completed`/`cancelled` count sessions that reached that step."
    ),
)
def get_participation(
    runtime: RuntimeDep,
    principal: Dashboard,
    district_id: DistrictQ,
    school_id: SchoolQ = None,
    subject: SubjectQ = None,
    grade: GradeQ = None,
    date_from: Annotated[DateQ, Query(alias="from")] = None,
    date_to: Annotated[DateQ, Query(alias="to")] = None,
    as_of_position: AsOfQ = None,
) -> Participation:
    check_district(principal, district_id)
    filters, head_hash = build_filters(
        runtime, district_id, school_id, subject, grade, date_from, date_to, as_of_position
    )
    figures = participation(runtime.projections, filters)
    return Participation(
        district_id=district_id,
        as_of_position=filters.as_of_position,
        head_hash=head_hash,
        filters=echo(filters),
        **figures,
    )
