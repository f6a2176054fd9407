"""School aggregate: enrolment by grade, recorded as events so its history is kept."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tutorledger.domain.envelope import TEXT_PATTERN, DistrictId, SchoolId

SCHOOL_NAMESPACE = UUID("5b0d7c2e-1f4a-4c8e-a6d9-3e2f4b1a9c70")
SCHOOL_EVENT_TYPE = "school.updated"
MAX_ENROLLMENT = 10_000_000  # students in one grade of one school; projections hold UInt32


def school_key(district_id: str, school_id: str) -> UUID:
    return uuid5(SCHOOL_NAMESPACE, f"{district_id}/{school_id}")


class School(Aggregate):
    """Name and enrolment of one school; every update is a ledger event with its own position."""

    @staticmethod
    def create_id(envelope: dict[str, Any]) -> UUID:
        return school_key(envelope["district_id"], envelope["school_id"])

    @event("Registered")
    def __init__(self, envelope: dict[str, Any]) -> None:
        self.district_id: str = envelope["district_id"]
        self.school_id: str = envelope["school_id"]
        self.history: list[dict[str, Any]] = []
        self._note(envelope)

    @event("Updated")
    def update(self, envelope: dict[str, Any]) -> None:
        self._note(envelope)

    def _note(self, envelope: dict[str, Any]) -> None:
        self.history.append(envelope["payload"])

    @property
    def latest(self) -> dict[str, Any]:
        """The update with the latest `as_of` date (ties: the one recorded last)."""
        return max(enumerate(self.history), key=lambda p: (p[1]["as_of"], p[0]))[1]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SchoolPayload(_Frozen):
    name: str = Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)
    enrollment: dict[str, Annotated[int, Field(ge=0, le=MAX_ENROLLMENT)]]
    as_of: date


class SchoolUpdatedEnvelope(_Frozen):
    """The stored form of a school update, checked again when it comes off the stream."""

    event_id: UUID
    type: Literal["school.updated"]
    schema_version: Literal[1]
    district_id: DistrictId
    school_id: SchoolId
    occurred_at: AwareDatetime
    payload: SchoolPayload
