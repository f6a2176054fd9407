"""The published form of ledger events: what the stream carries and projections are fed.

It is the stored form without the ciphertext: a request names the student's token, never
the student id, and no free text (`topic`, `comment`) appears at all. The projector checks
every message against these models, so a message carrying personal fields is refused
(dead-lettered) rather than projected.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from tutorledger.domain.cohort import COHORT_EVENT_TYPE, CohortUpdatedEnvelope
from tutorledger.domain.envelope import (
    CancelledPayload,
    CompletedPayload,
    EventType,
    GradeLevel,
    Helped,
    MatchedPayload,
    PersonId,
    Rating,
    SchoolId,
    Subject,
    _Envelope,
    _Strict,
)
from tutorledger.domain.erasure import ErasureEnvelope
from tutorledger.domain.grades import GRADE_EVENT_TYPE, GradeRecordedEnvelope
from tutorledger.domain.migration import MIGRATION_EVENT_TYPE, MigrationEnvelope
from tutorledger.domain.privacy import ERASURE_EVENT_TYPE, TOKEN_PATTERN
from tutorledger.domain.provenance import Provenance
from tutorledger.domain.school import SCHOOL_EVENT_TYPE, SchoolUpdatedEnvelope

Token = Annotated[str, Field(pattern=TOKEN_PATTERN)]


class PublishedRequestedPayload(_Strict):
    school_id: SchoolId
    student_token: Token
    grade: GradeLevel
    subject: Subject
    requested_tutor_id: PersonId | None = None


class PublishedSurveyedPayload(_Strict):
    helped: Helped
    rating: Rating
    student_token: Token | None = None


class _Provenanced(_Envelope):
    """Who recorded the event (domain/provenance.py); absent on events stored before."""

    provenance: Provenance | None = None


class PublishedRequested(_Provenanced):
    type: Literal[EventType.REQUESTED]
    payload: PublishedRequestedPayload


class PublishedMatched(_Provenanced):
    type: Literal[EventType.MATCHED]
    payload: MatchedPayload


class PublishedCompleted(_Provenanced):
    type: Literal[EventType.COMPLETED]
    payload: CompletedPayload


class PublishedSurveyed(_Provenanced):
    type: Literal[EventType.SURVEYED]
    payload: PublishedSurveyedPayload


class PublishedCancelled(_Provenanced):
    type: Literal[EventType.CANCELLED]
    payload: CancelledPayload


PublishedSession = Annotated[
    PublishedRequested | PublishedMatched | PublishedCompleted | PublishedSurveyed
    | PublishedCancelled,
    Field(discriminator="type"),
]  # fmt: skip
_SESSION: TypeAdapter[PublishedSession] = TypeAdapter(PublishedSession)
_OTHER: dict[str, type[BaseModel]] = {
    SCHOOL_EVENT_TYPE: SchoolUpdatedEnvelope,
    ERASURE_EVENT_TYPE: ErasureEnvelope,
    MIGRATION_EVENT_TYPE: MigrationEnvelope,
    COHORT_EVENT_TYPE: CohortUpdatedEnvelope,
    GRADE_EVENT_TYPE: GradeRecordedEnvelope,
}


def parse_published(doc: dict[str, Any]) -> dict[str, Any]:
    """Validate a published event; returns it in canonical JSON form (raises on anything
    else, personal fields included)."""
    model = _OTHER.get(str(doc.get("type")))
    if model is not None:
        body = model.model_validate(doc).model_dump(mode="json", exclude_none=True)
        body["occurred_at"] = doc["occurred_at"]  # as stored (its exact text is chained)
        return body
    return _SESSION.validate_python(doc).canonical()
