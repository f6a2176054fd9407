"""The event that opens a migrated ledger's chain: the old chain's head, so continuity shows.

A ledger written before sealed storage is migrated by re-appending every event through the
normal write path into a new store. Each district's new chain starts with one
`ledger.migrated` event naming the old chain's head hash, its event count and last position;
the chain hash of that event covers them, so an auditor who recomputes the old ledger's head
can check it against the new ledger's first entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tutorledger.domain.batch import LedgerEntry
from tutorledger.domain.envelope import DistrictId, body_digest
from tutorledger.domain.errors import MigrationRejected
from tutorledger.domain.school import SCHOOL_EVENT_TYPE, School

MIGRATION_EVENT_TYPE = "ledger.migrated"
MIGRATION_NAMESPACE = UUID("3d8e1b52-7c4f-4a09-b6e1-95f2c0a7d4e3")
FORMAT_PLAINTEXT = "plaintext-v0"  # the stored format before sealed storage


def migration_key(district_id: str) -> UUID:
    return uuid5(MIGRATION_NAMESPACE, district_id)


class LedgerMigration(Aggregate):
    """One per district of a migrated ledger: its first event."""

    @staticmethod
    def create_id(envelope: dict[str, Any]) -> UUID:
        return migration_key(envelope["district_id"])

    @event("Migrated")
    def __init__(self, envelope: dict[str, Any]) -> None:
        self.district_id: str = envelope["district_id"]
        self.previous_head: str = envelope["payload"]["previous_head"]


def migration_envelope(
    district_id: str, previous_head: str, previous_events: int, previous_position: int, at: str
) -> dict[str, Any]:
    """The canonical marker; its event id follows from the district and the old head, so a
    resumed migration writes the same one."""
    body = {
        "event_id": str(uuid5(MIGRATION_NAMESPACE, f"{district_id}/{previous_head}")),
        "type": MIGRATION_EVENT_TYPE,
        "schema_version": 1,
        "district_id": district_id,
        "occurred_at": at,
        "payload": {
            "previous_format": FORMAT_PLAINTEXT,
            "previous_head": previous_head,
            "previous_events": previous_events,
            "previous_position": previous_position,
        },
    }
    MigrationEnvelope.model_validate(body)
    return body


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MigrationPayload(_Frozen):
    previous_format: Literal["plaintext-v0"]
    previous_head: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    previous_events: Annotated[int, Field(ge=1)]
    previous_position: Annotated[int, Field(ge=1)]


class MigrationEnvelope(_Frozen):
    """The stored form of the marker, checked again when it comes off the stream."""

    event_id: UUID
    type: Literal["ledger.migrated"]
    schema_version: Literal[1]
    district_id: DistrictId
    occurred_at: AwareDatetime
    payload: MigrationPayload


def verbatim_record(
    canonical: dict[str, Any], school: Callable[[str, str], School | None]
) -> tuple[Aggregate, LedgerEntry]:
    """A school update or a migration marker as an aggregate event with its ledger entry,
    the envelope kept as given (`school` loads the school's current state, if any)."""
    aggregate: Aggregate
    if canonical["type"] == MIGRATION_EVENT_TYPE:
        aggregate = LedgerMigration(envelope=canonical)
    elif canonical["type"] == SCHOOL_EVENT_TYPE:
        found = school(canonical["district_id"], canonical["school_id"])
        if found is None:
            aggregate = School(envelope=canonical)
        else:
            found.update(canonical)
            aggregate = found
    else:
        raise MigrationRejected(f"{canonical['type']} events cannot be appended verbatim")
    entry = LedgerEntry(
        aggregate.id,
        aggregate.version,
        UUID(canonical["event_id"]),
        canonical["district_id"],
        canonical,
        body_digest(canonical),
    )
    return aggregate, entry
