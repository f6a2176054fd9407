"""Priority cohorts: named sets of a district's students, recorded in the ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from tutorledger.api.http.deps import AdminIn, DashboardIn, RuntimeDep
from tutorledger.api.http.schemas import ErrorResponse
from tutorledger.api.metrics.insight_schemas import (
    CohortList,
    CohortOut,
    CohortRecorded,
    CohortUpdate,
)
from tutorledger.api.metrics.suppression import EXACT_ROLES
from tutorledger.domain.envelope import DISTRICT_PATTERN
from tutorledger.domain.errors import ReservedCohortId
from tutorledger.domain.records import put_cohort
from tutorledger.domain.student_groups import is_roster_group
from tutorledger.projections.cohorts import list_cohorts
from tutorledger.projections.read_models import current_tables

router = APIRouter(prefix="/v1/cohorts", tags=["cohorts"])
CohortPath = Annotated[str, Path(pattern=DISTRICT_PATTERN, description="[A-Za-z0-9_.-]{1,64}")]


@router.put(
    "/{district_id}/{cohort_id}",
    response_model=CohortRecorded,
    responses={
        409: {
            "model": ErrorResponse,
            "description": "reserved_cohort_id: ids starting "
            "'roster.' are the roster's student groups",
        }
    },
    summary="Record a cohort's name and whole membership (history kept)",
    description="Student ids are tokenised at once (a student with no key yet gets one, as on "
    "ingest); the ledger event names tokens only. Each update replaces the membership; "
    "earlier memberships stay reproducible with `as_of_position`.",
)
def put(
    caller: AdminIn,
    cohort_id: CohortPath,
    update: CohortUpdate,
    runtime: RuntimeDep,
) -> CohortRecorded:
    district_id = caller.district_id
    if is_roster_group(cohort_id):
        raise ReservedCohortId(
            "cohort ids starting 'roster.' are the roster's student groups (import-groups)",
            {"cohort_id": cohort_id},
        )
    position, size = put_cohort(
        runtime.ledger, district_id, cohort_id, update.name, update.student_ids
    )
    return CohortRecorded(
        district_id=district_id, cohort_id=cohort_id, position=position, size=size
    )


@router.get("", response_model=CohortList, summary="A district's cohorts as of a position")
def get_cohorts(
    runtime: RuntimeDep,
    caller: DashboardIn,
    as_of_position: Annotated[int | None, Query(ge=0)] = None,
) -> CohortList:
    principal, district_id = caller.principal, caller.district_id
    projected = runtime.sync()
    at = projected if as_of_position is None else min(as_of_position, projected)
    rows = list_cohorts(
        runtime.projections, current_tables(runtime.projections).cohorts, district_id, at
    )
    threshold = runtime.settings.district(district_id).suppression_threshold
    exact = principal.role in EXACT_ROLES
    return CohortList(
        district_id=district_id,
        as_of_position=at,
        cohorts=[
            CohortOut(
                cohort_id=r["cohort_id"],
                name=r["name"],
                size=r["size"] if exact or not 0 < r["size"] < threshold else None,
                as_of_position=r["position"],
            )
            for r in rows
        ],
    )
