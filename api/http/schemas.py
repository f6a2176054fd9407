"""HTTP DTOs: the API's own shapes, separate from domain events."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from tutorledger.api.http.bounds import DATE_MAX, DATE_MIN, BoundedDate, whole_number
from tutorledger.domain.envelope import TEXT_PATTERN
from tutorledger.domain.school import MAX_ENROLLMENT


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable code, e.g. invalid_request, forbidden")
    message: str
    details: Any | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class EventResult(BaseModel):
    event_id: str | None = Field(
        default=None,
        description="The submitted event_id; absent when the event had no readable string id",
    )
    status: Literal["accepted", "duplicate", "rejected"]
    position: int | None = None
    error: ErrorBody | None = None


class EventsResponse(BaseModel):
    results: list[EventResult]
    position: int = Field(description="Ledger position covering every accepted event")


GradeKey = Annotated[str, StringConstraints(pattern=r"^([0-9]|1[0-2])$")]
Enrolled = Annotated[int, Field(ge=0, le=MAX_ENROLLMENT), BeforeValidator(whole_number)]


class SchoolUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)
    enrollment: dict[GradeKey, Enrolled] = Field(
        description='Students by grade 0-12: {"0": 80, "1": 95}',
        json_schema_extra={"additionalProperties": False},
    )
    as_of: BoundedDate = Field(
        description=f"Date the figures are valid from ({DATE_MIN} … {DATE_MAX})"
    )


class SchoolRecorded(BaseModel):
    district_id: str
    school_id: str
    position: int


class School(BaseModel):
    school_id: str
    name: str
    as_of: date
    enrollment: dict[str, int]
    position: int


class SchoolList(BaseModel):
    district_id: str
    schools: list[School]


class Survey(BaseModel):
    helped: bool
    rating: int
    comment: str | None = None


class SessionView(BaseModel):
    district_id: str
    session_id: str
    status: str
    school_id: str
    student_id: str | None = Field(description="null once the student was erased")
    student_token: str = Field(description="The student's pseudonymous token (kept after erasure)")
    grade: int
    subject: str
    topic: str | None = None
    tutor_id: str | None = None
    requested_at: str
    matched_at: str | None = None
    completed_at: str | None = None
    surveyed_at: str | None = None
    cancelled_at: str | None = None
    cancel_reason: str | None = None
    outcome: str | None = None
    wait_seconds: float | None = None
    duration_seconds: float | None = None
    survey: Survey | None = None
    erased: list[str] = Field(
        default_factory=list, description="Personal fields destroyed by an erasure"
    )


class HistoryItem(BaseModel):
    position: int
    hash: str | None
    event: dict[str, Any] = Field(
        description="The event as stored and chained: personal fields sealed (ciphertext)"
    )
    decrypted: dict[str, Any] = Field(
        description="The emitter's envelope, personal fields in clear (absent once erased)"
    )
    erased: list[str] = Field(default_factory=list, description="Fields destroyed by erasure")
    provenance: dict[str, Any] | None = Field(
        default=None,
        description="Who recorded the event (the key's id and provider, or the import's "
        "provider and file SHA-256), as chained in `event`; null for events stored before "
        "provenance was recorded",
    )


class SessionHistory(BaseModel):
    district_id: str
    session_id: str
    events: list[HistoryItem]
