"""Erasure of a student, recorded in the ledger: the event names the token, never the id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4, uuid5

from eventsourcing.domain import Aggregate, event
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tutorledger.domain.envelope import DistrictId
from tutorledger.domain.privacy import ERASURE_EVENT_TYPE, TOKEN_PATTERN

ERASURE_NAMESPACE = UUID("0f3c9a4e-8d21-4b6a-9e57-c1d2a3b4e5f6")
# A reason is a short code, never free text: free text about a student is personal data too.
REASON_PATTERN = r"^[a-z0-9_-]{1,64}$"


def erasure_key(district_id: str, token: str) -> UUID:
    return uuid5(ERASURE_NAMESPACE, f"{district_id}/{token}")


class StudentErasure(Aggregate):
    """The one event that says a student's key was destroyed (and why, as a code)."""

    @staticmethod
    def create_id(envelope: dict[str, Any]) -> UUID:
        return erasure_key(envelope["district_id"], envelope["payload"]["student_token"])

    @event("Erased")
    def __init__(self, envelope: dict[str, Any]) -> None:
        self.district_id: str = envelope["district_id"]
        self.token: str = envelope["payload"]["student_token"]


def erasure_envelope(district_id: str, token: str, reason: str) -> dict[str, Any]:
    """The canonical erasure event (validated by the model below before it is stored)."""
    body = {
        "event_id": str(uuid4()),
        "type": ERASURE_EVENT_TYPE,
        "schema_version": 1,
        "district_id": district_id,
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "payload": {"student_token": token, "reason": reason},
    }
    ErasureEnvelope.model_validate(body)
    return body


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErasurePayload(_Frozen):
    student_token: Annotated[str, Field(pattern=TOKEN_PATTERN)]
    reason: Annotated[str, Field(pattern=REASON_PATTERN)]


class ErasureEnvelope(_Frozen):
    """The stored form of an erasure, checked again when it comes off the stream."""

    event_id: UUID
    type: Literal["privacy.student_erased"]
    schema_version: Literal[1]
    district_id: DistrictId
    occurred_at: AwareDatetime
    payload: ErasurePayload
