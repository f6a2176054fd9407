"""Priority cohorts: a named set of a district's students, recorded as ledger events.

Each `PUT` records the cohort's whole membership (tokens, never student ids), so its
membership at any ledger position is the last update at or before that position. An erased
student's token stays a member (figures must not change on erasure) and resolves to nobody.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4, uuid5

from eventsourcing.domain import Aggregate, event
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tutorledger.domain.envelope import DISTRICT_PATTERN, TEXT_PATTERN, DistrictId
from tutorledger.domain.errors import NotFound
from tutorledger.domain.privacy import TOKEN_PATTERN

COHORT_NAMESPACE = UUID("9a4e1c77-3b2d-4f60-8e15-7c0d2b6a4f31")
COHORT_EVENT_TYPE = "cohort.updated"
MAX_MEMBERS = 200_000  # a large district's whole enrolment, with room to spare

CohortId = Annotated[str, Field(pattern=DISTRICT_PATTERN)]
Token = Annotated[str, Field(pattern=TOKEN_PATTERN)]


def cohort_key(district_id: str, cohort_id: str) -> UUID:
    return uuid5(COHORT_NAMESPACE, f"{district_id}/{cohort_id}")


class Cohort(Aggregate):
    """One cohort's history: every update is a ledger event with its own position."""

    @staticmethod
    def create_id(envelope: dict[str, Any]) -> UUID:
        return cohort_key(envelope["district_id"], envelope["cohort_id"])

    @event("Defined")
    def __init__(self, envelope: dict[str, Any]) -> None:
        self.district_id: str = envelope["district_id"]
        self.cohort_id: str = envelope["cohort_id"]
        self.envelope = envelope

    @event("Redefined")
    def update(self, envelope: dict[str, Any]) -> None:
        self.envelope = envelope


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CohortPayload(_Frozen):
    name: str = Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)
    student_tokens: list[Token] = Field(max_length=MAX_MEMBERS)


class CohortUpdatedEnvelope(_Frozen):
    """The stored (and published) form of a cohort update, checked again off the stream."""

    event_id: UUID
    type: Literal["cohort.updated"]
    schema_version: Literal[1]
    district_id: DistrictId
    cohort_id: CohortId
    occurred_at: AwareDatetime
    payload: CohortPayload


def cohort_envelope(
    district_id: str, cohort_id: str, name: str, tokens: list[str], at: datetime
) -> dict[str, Any]:
    """The canonical cohort event (members sorted, so equal sets give equal bodies)."""
    body = {
        "event_id": str(uuid4()),
        "type": COHORT_EVENT_TYPE,
        "schema_version": 1,
        "district_id": district_id,
        "cohort_id": cohort_id,
        "occurred_at": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "payload": {"name": name, "student_tokens": sorted(set(tokens))},
    }
    CohortUpdatedEnvelope.model_validate(body)
    return body


class UnknownCohort(NotFound):
    """A cohort filter naming a cohort the district had not defined as of the position."""

    code = "unknown_cohort"
