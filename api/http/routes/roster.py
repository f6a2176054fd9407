"""POST /v1/admin/roster/{district_id}: a OneRoster zip becomes each school's dated enrolment;
POST /v1/admin/roster/{district_id}/groups: its student groups, by token."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from tutorledger.api.http.bounds import BoundedDate
from tutorledger.api.http.deps import AdminIn, RuntimeDep
from tutorledger.infra.importers.oneroster import Limits
from tutorledger.infra.importers.roster import import_roster
from tutorledger.infra.importers.student_groups import import_groups

router = APIRouter(prefix="/v1/admin/roster", tags=["admin"])


class SchoolImported(BaseModel):
    school_id: str
    name: str
    enrolled: int
    status: Literal["recorded", "unchanged"]
    position: int | None


class RosterImported(BaseModel):
    district_id: str
    as_of: date
    students_in_roster: int
    students_counted: int
    in_several_schools: int
    outside_k12: int
    schools: list[SchoolImported]


DESCRIPTION = (
    "Body: a OneRoster 1.1 CSV bundle as a zip (`Content-Type: application/zip`) holding "
    "`orgs.csv`, `users.csv` and optionally `enrollments.csv`. Each school's enrolment by "
    "grade on `as_of` is recorded with the same school event `PUT /v1/schools` records (all "
    "schools in one transaction; history kept). A student counts once, at the school whose "
    "enrolment began latest among those active on the date. Only counts are stored: no "
    "student identifier, name, e-mail or birth date leaves the import. Any bad row: 422 "
    "`invalid_roster` listing each `{file, line, column, problem}` (up to 1,000: reading stops "
    "there; a problem names its place, never a cell's value), and nothing is recorded. Two "
    "files of one name in the zip (`orgs.csv` and `a/orgs.csv`): 422. The files are read as "
    "streams: past `TUTORLEDGER_ROSTER_MAX_BYTES` unpacked or `TUTORLEDGER_ROSTER_MAX_ROWS` "
    "records, 413 `roster_too_large`, whatever the zip's compression ratio. "
    "The same roster for the same date again records nothing (`unchanged`). The zip counts "
    "against `TUTORLEDGER_MAX_BODY_BYTES` like any body; `tutorledger import-roster` has no "
    "such limit (the unpacked limits apply to both)."
)


@router.post(
    "/{district_id}",
    response_model=RosterImported,
    summary="Import a district's OneRoster roster as enrolment on a date",
    description=DESCRIPTION,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def post_roster(
    caller: AdminIn,
    request: Request,
    runtime: RuntimeDep,
    as_of: Annotated[BoundedDate, Query(description="Enrolment on this date (YYYY-MM-DD)")],
    school_key: Annotated[
        Literal["sourcedId", "identifier"],
        Query(description="orgs.csv column holding the school id emitters use"),
    ] = "sourcedId",
) -> RosterImported:
    district_id = caller.district_id
    body = await request.body()  # its size is bounded by the app's body guard
    limits = Limits.from_settings(runtime.settings)
    result = await run_in_threadpool(
        import_roster, runtime.ledger, body, district_id, as_of, school_key, limits
    )
    return RosterImported.model_validate(result.as_dict())


class GroupsImported(BaseModel):
    district_id: str
    as_of: date
    students: int = Field(description="Students of the roster (recorded as roster.all)")
    groups: dict[str, int] = Field(description="Each group the bundle has a column for: size")
    positions: dict[str, int | None] = Field(
        description="Ledger position of each group's new record; null: unchanged"
    )


GROUPS_DESCRIPTION = (
    "Body: a zip (`application/zip`) holding OneRoster `users.csv` with programme flags as "
    "`metadata.*` columns and optionally `demographics.csv`, or a Clever-style `students.csv` "
    "(docs/onboarding.md lists the columns and group codes). Each group's whole membership "
    "is recorded as of `as_of` under the cohort id `roster.<code>`, with `roster.all` (every "
    "student of the roster), all in one transaction; student ids are tokenised at the door "
    "and names and birth dates are never read into anything. Any bad row: 422 "
    "`invalid_roster` with `{file, line, column, problem}`, nothing recorded. The same roster "
    "again records nothing. Limits as for the roster import."
)


@router.post(
    "/{district_id}/groups",
    response_model=GroupsImported,
    summary="Import a roster's student groups (programmes, sex, race/ethnicity) on a date",
    description=GROUPS_DESCRIPTION,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def post_groups(
    caller: AdminIn,
    request: Request,
    runtime: RuntimeDep,
    as_of: Annotated[BoundedDate, Query(description="The roster's date (YYYY-MM-DD)")],
    student_key: Annotated[
        Literal["sourcedId", "identifier"],
        Query(description="users.csv column holding the student id emitters use"),
    ] = "sourcedId",
) -> GroupsImported:
    body = await request.body()  # its size is bounded by the app's body guard
    limits = Limits.from_settings(runtime.settings)
    result = await run_in_threadpool(
        import_groups, runtime.ledger, body, caller.district_id, as_of, student_key, limits
    )
    return GroupsImported.model_validate(result.as_dict())
