"""School aggregate: enrolment by grade, recorded as events so its history is kept."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

SCHOOL_NAMESPACE = UUID("5b0d7c2e-1f4a-4c8e-a6d9-3e2f4b1a9c70")
SCHOOL_EVENT_TYPE = "school.updated"


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
