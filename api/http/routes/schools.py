"""Schools: enrolment by grade, recorded in the ledger with its history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from tutorledger.api.http.deps import AdminIn, DashboardIn, RuntimeDep
from tutorledger.api.http.schemas import School, SchoolList, SchoolRecorded, SchoolUpdate
from tutorledger.domain.envelope import DISTRICT_PATTERN
from tutorledger.projections.schools import latest_schools

router = APIRouter(prefix="/v1/schools", tags=["schools"])
SchoolPath = Annotated[str, Path(pattern=DISTRICT_PATTERN, description="[A-Za-z0-9_.-]{1,64}")]


@router.put(
    "/{district_id}/{school_id}",
    response_model=SchoolRecorded,
    summary="Record a school's name and enrolment (history kept)",
)
def put_school(
    caller: AdminIn,
    school_id: SchoolPath,
    update: SchoolUpdate,
    runtime: RuntimeDep,
) -> SchoolRecorded:
    district_id = caller.district_id
    position = runtime.ledger.put_school(
        district_id, school_id, update.name, update.enrollment, update.as_of
    )
    return SchoolRecorded(district_id=district_id, school_id=school_id, position=position)


@router.get("", response_model=SchoolList, summary="Schools with their latest enrolment")
def list_schools(runtime: RuntimeDep, caller: DashboardIn) -> SchoolList:
    district_id = caller.district_id
    runtime.sync()
    rows = latest_schools(runtime.projections, district_id)
    return SchoolList(
        district_id=district_id,
        schools=[
            School(
                school_id=r[0],
                name=r[1],
                as_of=r[2],
                enrollment={str(g): int(c) for g, c in zip(r[3], r[4], strict=True)},
                position=int(r[5]),
            )
            for r in rows
        ],
    )
