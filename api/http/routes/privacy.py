"""/v1/privacy: erase a student, export a student's records, list disclosures (admin).

Erasure destroys the student's key: the ledger keeps its chain and every figure, and the id,
topic and comments can no longer be read by anyone. The export and the disclosure list
answer a parent's request under FERPA: what is held about the student, and who was shown it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from tutorledger.api.http.deps import AdminIn, RuntimeDep
from tutorledger.api.http.disclose import PurposeHeader, disclose, require_purpose
from tutorledger.api.metrics.csv import CSV_MEDIA_TYPE, safe_cell, wants_csv
from tutorledger.api.runtime import Runtime
from tutorledger.consumers.projector import decode
from tutorledger.domain.envelope import SESSION_PATTERN
from tutorledger.domain.erasure import REASON_PATTERN
from tutorledger.domain.errors import InvalidRequest, NotFound
from tutorledger.domain.privacy import StudentKey

router = APIRouter(prefix="/v1/privacy", tags=["privacy"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such student in the district (unknown, or erased)"}
}
StudentP = Annotated[str, Path(pattern=SESSION_PATTERN, description="The district's student id")]
EXPORT_ENDPOINT = "GET /v1/privacy/students/{district_id}/{student_id}"


class EraseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        max_length=64,
        # Documented here, checked by the route after the key's district (403 comes first).
        json_schema_extra={"pattern": REASON_PATTERN},
        description="A code matching [a-z0-9_-]{1,64}, not free text (free text about a "
        "student is personal data): `parent_request`, `contract_end`, `state_law`, `retention`",
    )


class Erased(BaseModel):
    district_id: str
    student_token: str = Field(description="The token that stays in the ledger and figures")
    position: int = Field(description="Ledger position of the erasure event")


class DisclosureOut(BaseModel):
    seq: int
    at: str
    key_id: str = Field(description="First 16 hex digits of the API key's SHA-256")
    role: str
    district_id: str
    students: list[str] = Field(description="Tokens of the students whose data was shown")
    endpoint: str
    resource: str
    purpose: str
    hash: str = Field(description="Chain hash of this record (per district)")


class Disclosures(BaseModel):
    district_id: str
    student_token: str | None
    chain_ok: bool = Field(description="The district's disclosure chain recomputes intact")
    disclosures: list[DisclosureOut]


class RecordEvent(BaseModel):
    position: int
    hash: str | None
    event: dict[str, Any] = Field(description="Decrypted envelope (personal fields in clear)")


class RecordSession(BaseModel):
    session_id: str
    events: list[RecordEvent]


class StudentRecord(BaseModel):
    district_id: str
    student_id: str
    student_token: str
    sessions: list[RecordSession]
    disclosures: list[DisclosureOut]


def live_student(runtime: Runtime, district_id: str, student_id: str) -> StudentKey:
    key = runtime.ledger.index.find_student(district_id, student_id)
    if key is None:
        raise NotFound(f"no student with that id in district '{district_id}' (or erased)")
    return key


@router.post(
    "/students/{district_id}/{student_id}/erase",
    response_model=Erased,
    responses=NOT_FOUND,
    summary="Erase a student (crypto-shredding)",
    description="Records an erasure event (naming the token, not the id) and destroys the "
    "student's key in the same transaction: the id, topics and comments can never be read "
    "again; the chain verifies and every figure is unchanged. Later events for the student's "
    "sessions are rejected `student_erased`. 404 when the id is unknown or already erased.",
)
def erase_student(
    caller: AdminIn,  # the key's district before any check of the body: 403 first
    student_id: StudentP,
    body: EraseRequest,
    runtime: RuntimeDep,
) -> Erased:
    district_id = caller.district_id
    if not re.fullmatch(REASON_PATTERN, body.reason):
        raise InvalidRequest("reason must be a code such as parent_request (no free text)")
    key = live_student(runtime, district_id, student_id)
    position = runtime.ledger.erase(district_id, key.token, body.reason)
    if position is None:  # erased by another request since we looked
        raise NotFound(f"no student with that id in district '{district_id}' (or erased)")
    return Erased(district_id=district_id, student_token=key.token, position=position)


@router.get(
    "/disclosures",
    response_model=Disclosures,
    responses=NOT_FOUND,
    summary="Who was shown a student's records, and why",
    description="The district's disclosure log (of one student given `student_id`), oldest "
    "first, with the result of recomputing its chain.",
)
def list_disclosures(
    runtime: RuntimeDep,
    caller: AdminIn,
    student_id: Annotated[str | None, Query(pattern=SESSION_PATTERN)] = None,
) -> Disclosures:
    district_id = caller.district_id
    token = live_student(runtime, district_id, student_id).token if student_id else None
    log = runtime.disclosures
    return Disclosures(
        district_id=district_id,
        student_token=token,
        chain_ok=log.verify(district_id),
        disclosures=[DisclosureOut(**d) for d in log.list(district_id, token)],
    )


def sessions_of(runtime: Runtime, token: str) -> list[RecordSession]:
    """Every session (and grade) of the student, every event decrypted, in ledger order."""
    store = runtime.store
    sessions = []
    for key in store.sessions_of(token):
        rows = store.chained_events(None, 0, 1000, originator_id=key)
        events = [decode(runtime.ledger, stored) for _, _, _, stored in rows]
        opened = runtime.ledger.open_stored(events)
        items = [
            RecordEvent(position=p, hash=h, event=o.envelope)
            for (p, _, h, _), o in zip(rows, opened, strict=True)
        ]
        # A grade is linked like a session; it has no session id.
        sessions.append(RecordSession(session_id=events[0].get("session_id", ""), events=items))
    sessions.sort(key=lambda s: s.events[0].position)
    return sessions


@router.get(
    "/students/{district_id}/{student_id}",
    response_model=StudentRecord,
    responses={200: {"content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}}}, **NOT_FOUND},
    summary="Export a student's records and their disclosures",
    description="Every session of the student with every event decrypted, plus every "
    "recorded disclosure of their data (this export included). Needs `X-Purpose`. "
    "`?format=csv` (or `Accept: text/csv`): one line per event and per disclosure.",
)
def export_student(
    caller: AdminIn,
    student_id: StudentP,
    runtime: RuntimeDep,
    x_purpose: PurposeHeader = None,
    output_format: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Any:
    principal, district_id = caller.principal, caller.district_id
    purpose = require_purpose(x_purpose)
    key = live_student(runtime, district_id, student_id)
    disclose(
        runtime, principal, purpose, district_id, [key.token], EXPORT_ENDPOINT, "student record"
    )
    record = StudentRecord(
        district_id=district_id,
        student_id=student_id,
        student_token=key.token,
        sessions=sessions_of(runtime, key.token),
        disclosures=[DisclosureOut(**d) for d in runtime.disclosures.list(district_id, key.token)],
    )
    return record_csv(record) if wants_csv(output_format, accept) else record


CSV_COLUMNS = ("record", "session_id", "position", "type", "occurred_at", "details")


def record_csv(record: StudentRecord) -> Response:
    """One line per event (details: its payload) and per disclosure (who, why). Every cell
    goes through the metric CSVs' formula escaping: session ids and purposes are whatever an
    emitter or an admin sent, and `-A1` in a spreadsheet is a formula."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    rows: list[list[Any]] = []
    for session in record.sessions:
        for e in session.events:
            details = json.dumps(e.event["payload"], ensure_ascii=False, sort_keys=True)
            row = ["event", session.session_id, e.position, e.event["type"]]
            rows.append([*row, e.event["occurred_at"], details])
    for d in record.disclosures:
        who = {"key_id": d.key_id, "role": d.role, "purpose": d.purpose, "endpoint": d.endpoint}
        details = json.dumps(who, ensure_ascii=False, sort_keys=True)
        rows.append(["disclosure", "", d.seq, d.resource, d.at, details])
    writer.writerows([safe_cell(cell) for cell in row] for row in rows)
    name = f"student-record-{record.district_id}-{record.student_token}.csv"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(out.getvalue(), media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8", headers=headers)
