"""Students' grades, recorded as ledger events so usage can be related to outcomes.

A grade names the student by token only, with the subject, the term, the term's grading date
(`term_end`: the date the grade was given, which bounds "between two terms") and the score on
a 0–100 scale (letter grades are mapped when imported). The event id is derived from those
facts, so importing the same grade again stores nothing; a corrected grade is a new event and
the latest one recorded for a (student, subject, term) counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tutorledger.domain.envelope import DISTRICT_PATTERN, DistrictId, Subject
from tutorledger.domain.errors import TutorLedgerError
from tutorledger.domain.privacy import TOKEN_PATTERN

GRADE_NAMESPACE = UUID("c2d8e0b4-6f1a-4d3e-9b27-5a8c1e7f0d92")
GRADE_EVENT_TYPE = "grade.recorded"
TermId = Annotated[str, Field(pattern=DISTRICT_PATTERN)]


@dataclass(frozen=True)
class Grade:
    """One imported grade, before its student is tokenised."""

    student_id: str
    subject: str
    term: str
    term_end: date
    score: float


class GradeRecord(Aggregate):
    """One recorded grade (its id is the event id: one event per aggregate)."""

    @staticmethod
    def create_id(envelope: dict[str, Any]) -> UUID:
        return UUID(envelope["event_id"])

    @event("Recorded")
    def __init__(self, envelope: dict[str, Any]) -> None:
        self.district_id: str = envelope["district_id"]
        self.envelope = envelope


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GradePayload(_Frozen):
    student_token: Annotated[str, Field(pattern=TOKEN_PATTERN)]
    subject: Subject
    term: TermId
    term_end: date
    score: Annotated[float, Field(ge=0, le=100)]


class GradeRecordedEnvelope(_Frozen):
    """The stored (and published) form of a grade, checked again off the stream."""

    event_id: UUID
    type: Literal["grade.recorded"]
    schema_version: Literal[1]
    district_id: DistrictId
    occurred_at: AwareDatetime
    payload: GradePayload


def grade_envelope(district_id: str, token: str, grade: Grade, at: datetime) -> dict[str, Any]:
    """The canonical grade event; its id depends on the facts only, not on `at`."""
    payload = {
        "student_token": token,
        "subject": grade.subject,
        "term": grade.term,
        "term_end": grade.term_end.isoformat(),
        "score": float(grade.score),
    }
    name = (
        f"{district_id}/{token}/{grade.subject}/{grade.term}/{payload['term_end']}/{grade.score!r}"
    )
    body = {
        "event_id": str(uuid5(GRADE_NAMESPACE, name)),
        "type": GRADE_EVENT_TYPE,
        "schema_version": 1,
        "district_id": district_id,
        "occurred_at": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "payload": payload,
    }
    GradeRecordedEnvelope.model_validate(body)
    return body


class InvalidGrades(TutorLedgerError):
    """The grades file has bad rows; nothing was recorded. `details` names each line."""

    code = "invalid_grades"
    status = 422


class InvalidGradeMapping(TutorLedgerError):
    """The grades mapping (columns, terms, letter scale) cannot be used; nothing recorded."""

    code = "invalid_grade_mapping"
    status = 422
