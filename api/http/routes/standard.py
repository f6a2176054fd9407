"""Student-level reads of the high-dosage standard: who falls short, and the Ed-Fi export.

`GET /v1/dosage-standard/students` (auditors and admins) lists the students short of the
district's standard by token; `GET /v1/exports/edfi` (admins) gives the district's tutoring
as Ed-Fi intervention resources with student ids. Both are personal-data reads: they need
`X-Purpose` and are recorded in the disclosure log before the answer leaves.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tutorledger.api.http.bounds import BoundedDate, query_date
from tutorledger.api.http.deps import AdminIn, AuditorIn, RuntimeDep
from tutorledger.api.http.disclose import PurposeHeader, disclose, require_purpose
from tutorledger.api.http.edfi_export import ENDPOINT as EDFI_ENDPOINT
from tutorledger.api.http.edfi_export import export_edfi
from tutorledger.api.http.routes.metrics import (
    AsOfQ,
    CohortQ,
    FromQ,
    GradeQ,
    GroupQ,
    ProviderQ,
    SchoolQ,
    SubjectQ,
    ToQ,
    resolve_filters,
)
from tutorledger.api.metrics.scope import echo
from tutorledger.api.metrics.standard import StandardOut
from tutorledger.projections.alerts_students import tokens
from tutorledger.projections.dosage_standard import falling_short

router = APIRouter(tags=["dosage standard"])
STUDENTS_ENDPOINT = "GET /v1/dosage-standard/students"
STUDENTS_DOC = (
    "The students who fall *short* of the district's dosage standard (see the "
    "`dosage-standard` metric for the rule), under the same filters, by token, sorted. Each "
    "names the Monday of their first week with a completed session, their met weeks, the "
    "counted weeks since then and their completed sessions. Auditor and admin keys only; "
    "needs `X-Purpose`; each read is recorded in the disclosure log."
)
EDFI_DOC = (
    "The district's tutoring from `from` to `to` (local request dates, both required) as "
    "Ed-Fi Data Standard v5 resources: `files` maps each file name (`interventions.json`, "
    "`studentInterventionAssociations.json`, `studentInterventionAttendanceEvents.json`) to "
    "its resources, exactly as `tutorledger export-edfi` writes them. Needs "
    "`edfi.education_organization_id` in the districts file (else 409 "
    "`edfi_not_configured`). Admin keys only; needs `X-Purpose`; recorded in the disclosure "
    "log. Erased students are left out."
)


class ShortStudent(BaseModel):
    student_token: str
    first_week: date = Field(description="Monday of their first week with a completed session")
    met_weeks: int
    counted_weeks: int = Field(description="Weeks with a school day since their first week")
    sessions_completed: int


class ShortList(BaseModel):
    district_id: str
    as_of_position: int
    head_hash: str | None
    filters: dict[str, Any]
    standard: StandardOut
    first_week: date | None
    last_week: date | None
    students: list[ShortStudent]


class EdFiFiles(BaseModel):
    district_id: str
    as_of_position: int
    head_hash: str | None
    students: int
    attendance_events: int
    files: dict[str, list[dict[str, Any]]]


@router.get(
    "/v1/dosage-standard/students",
    response_model=ShortList,
    description=STUDENTS_DOC,
    responses={404: {"description": "unknown_cohort: no such cohort at the position"}},
)
def get_short_students(
    runtime: RuntimeDep,
    caller: AuditorIn,
    school_id: SchoolQ = None,
    subject: SubjectQ = None,
    grade: GradeQ = None,
    date_from: FromQ = None,
    date_to: ToQ = None,
    as_of_position: AsOfQ = None,
    cohort_id: CohortQ = None,
    group: GroupQ = None,
    provider: ProviderQ = None,
    x_purpose: PurposeHeader = None,
) -> ShortList:
    principal, district_id = caller.principal, caller.district_id
    purpose = require_purpose(x_purpose)
    filters, head, _ = resolve_filters(
        runtime, district_id, school_id, subject, grade, date_from, date_to, as_of_position,
        cohort_id, group=group,
    )  # fmt: skip
    filters = replace(filters, provider=provider)
    profile = runtime.settings.district(district_id)
    standard = profile.dosage_standard
    span, found = falling_short(runtime.projections, filters, standard, profile.school_hours)
    token_of = tokens(runtime.projections, district_id, [f["session_id"] for f in found])
    students = sorted(
        (ShortStudent(student_token=token_of.get(f.pop("session_id"), ""), **f) for f in found),
        key=lambda s: s.student_token,
    )
    resource = f"as_of_position={filters.as_of_position} filters={json.dumps(echo(filters))}"
    disclose(
        runtime, principal, purpose, district_id, [s.student_token for s in students],
        STUDENTS_ENDPOINT, resource,
    )  # fmt: skip
    return ShortList(
        district_id=district_id,
        as_of_position=filters.as_of_position,
        head_hash=head,
        filters=echo(filters),
        standard=StandardOut(**standard.model_dump(include={"sessions_per_week",
                                                            "session_minutes", "weeks"})),
        first_week=span.first,
        last_week=span.last,
        students=students,
    )  # fmt: skip


@router.get(
    "/v1/exports/edfi",
    response_model=EdFiFiles,
    description=EDFI_DOC,
    responses={409: {"description": "edfi_not_configured: the district has no Ed-Fi identity"}},
)
def get_edfi_export(
    runtime: RuntimeDep,
    caller: AdminIn,
    date_from: Annotated[BoundedDate, query_date("from", "First local request date")],
    date_to: Annotated[BoundedDate, query_date("to", "Last local request date, inclusive")],
    as_of_position: AsOfQ = None,
    x_purpose: PurposeHeader = None,
) -> EdFiFiles:
    purpose = require_purpose(x_purpose)
    filters, head, _ = resolve_filters(
        runtime, caller.district_id, None, None, None, date_from, date_to, as_of_position
    )
    done = export_edfi(runtime, caller.principal, purpose, filters, head, EDFI_ENDPOINT)
    return EdFiFiles(
        district_id=done.district_id,
        as_of_position=done.as_of_position,
        head_hash=done.head_hash,
        students=done.students,
        attendance_events=done.attendance_events,
        files={name: json.loads(data) for name, data in done.files.items()},
    )
