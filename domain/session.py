"""TutoringSession aggregate: the lifecycle rules (docs/contract.md §1), checked on record."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, DomainEvent, event
from eventsourcing.utils import get_topic

from tutorledger.domain.envelope import EventType, per_kind
from tutorledger.domain.errors import (
    AlreadyRecorded,
    InvalidTransition,
    Rejection,
    TimestampRegression,
    UnknownSession,
)

SESSION_NAMESPACE = UUID("8c1f6d0e-6a3b-4f55-9d8e-2b7a51c0e7a1")

# Which step must be the latest one recorded before each step may follow.
_ALLOWED_AFTER: dict[EventType, frozenset[EventType]] = {
    EventType.MATCHED: frozenset({EventType.REQUESTED}),
    EventType.COMPLETED: frozenset({EventType.MATCHED}),
    EventType.SURVEYED: frozenset({EventType.COMPLETED}),
    EventType.CANCELLED: frozenset({EventType.REQUESTED, EventType.MATCHED}),
}


@lru_cache(maxsize=1 << 16)
def session_key(district_id: str, session_id: str) -> UUID:
    """Stable aggregate id: sessions are addressed by district + emitter's session id.
    (Cached: a session's steps usually arrive in consecutive batches.)"""
    return uuid5(SESSION_NAMESPACE, f"{district_id}/{session_id}")


def check_step(
    steps: dict[EventType, datetime] | None, step: EventType, occurred_at: datetime
) -> Rejection | None:
    """The lifecycle rule: returns why `step` may not follow `steps`, or None if it may.

    `steps` maps each recorded step to when it occurred (None: no such session yet).
    """
    if steps is None:
        if step is EventType.REQUESTED:
            return None
        return UnknownSession(f"no session.requested recorded before {step.value}")
    if step in steps:
        return AlreadyRecorded(f"{step.value} is already recorded for this session")
    if step is EventType.REQUESTED:  # pragma: no cover - requested is always in steps
        return AlreadyRecorded("session.requested is already recorded for this session")
    latest, last_at = _latest(steps)
    if latest not in _ALLOWED_AFTER[step]:
        return InvalidTransition(
            f"{step.value} cannot follow {latest.value}",
            {"current_status": _status_of(latest)},
        )
    if occurred_at < last_at:
        return TimestampRegression(
            f"occurred_at {occurred_at.isoformat()} is before the session's last event "
            f"at {last_at.isoformat()}",
            {"last_occurred_at": last_at.isoformat()},
        )
    return None


# Lifecycle rank, to pick the latest of steps recorded at the same instant. Completed and
# cancelled share a rank (one ends a session the other way). This is a rule, not a storage
# code: the read models' step codes (projections/steps.py) are stored values and differ.
LIFECYCLE_RANK = per_kind(
    {
        EventType.REQUESTED: 0,
        EventType.MATCHED: 1,
        EventType.CANCELLED: 2,
        EventType.COMPLETED: 2,
        EventType.SURVEYED: 3,
    },
    "LIFECYCLE_RANK",
)


def _latest(steps: dict[EventType, datetime]) -> tuple[EventType, datetime]:
    """The latest recorded step (by time, then lifecycle order) and its time, which is also
    the session's last time. (A plain loop: `max` with a key function, run for every event
    of a batch, cost as much as the rest of the rule.)"""
    found: tuple[EventType, datetime] | None = None
    rank = LIFECYCLE_RANK
    for step, at in steps.items():
        if found is None or at > found[1] or (at == found[1] and rank[step] > rank[found[0]]):
            found = (step, at)
    assert found is not None, "a stored session has at least its request"
    return found


def _status_of(step: EventType) -> str:
    return str(step).removeprefix("session.")


class TutoringSession(Aggregate):
    """One tutoring session's history; every event is the validated envelope as stored
    (personal fields sealed under the student's key)."""

    @staticmethod
    def create_id(envelope: dict[str, Any]) -> UUID:
        return session_key(envelope["district_id"], envelope["session_id"])

    @event("Requested")
    def __init__(self, envelope: dict[str, Any]) -> None:
        payload = envelope["payload"]
        self.district_id: str = envelope["district_id"]
        self.session_id: str = envelope["session_id"]
        self.school_id: str = payload["school_id"]
        # The stored form carries the student's token; the id itself is sealed (privacy.py).
        self.student_token: str = payload.get("student_token", "")
        self.grade: int = payload["grade"]
        self.subject: str = payload["subject"]
        self.steps: dict[EventType, datetime] = {}
        self.payloads: dict[EventType, dict[str, Any]] = {}
        self.envelopes: list[dict[str, Any]] = []
        self._note(envelope)

    @event("Stepped")
    def _step(self, envelope: dict[str, Any]) -> None:
        self._note(envelope)

    def _note(self, envelope: dict[str, Any]) -> None:
        step = EventType(envelope["type"])
        self.steps[step] = datetime.fromisoformat(envelope["occurred_at"])
        self.payloads[step] = envelope["payload"]
        self.envelopes.append(envelope)

    def stored_events(self) -> list[dict[str, Any]]:
        """Each recorded step's envelope as stored (personal fields sealed), in order."""
        return list(self.envelopes)

    @property
    def status(self) -> str:
        return _status_of(_latest(self.steps)[0])

    def record(self, step: EventType, occurred_at: datetime, envelope: dict[str, Any]) -> None:
        """Record a later lifecycle step, or raise the Rejection that says why not."""
        problem = check_step(self.steps, step, occurred_at)
        if problem is not None:
            raise problem
        self._step(envelope)

    @classmethod
    def request(cls, envelope: dict[str, Any]) -> TutoringSession:
        return cls(envelope=envelope)


@dataclass
class SessionState:
    """What the lifecycle rule needs of a stored session (its steps, its student's token and
    its version): the write path checks a batch against this instead of replaying aggregates."""

    student_token: str
    steps: dict[EventType, datetime]
    version: int = 0

    @classmethod
    def replay(cls, envelopes: Iterable[dict[str, Any]]) -> SessionState:
        """The state after the session's stored envelopes, in version order."""
        state = cls("", {})
        for envelope in envelopes:
            state.note(envelope)
        return state

    def note(
        self, envelope: dict[str, Any], step: EventType | None = None, at: datetime | None = None
    ) -> None:
        """One more stored step (already checked by `check_step`); `step` and `at` are the
        envelope's type and time when the caller has them parsed already."""
        if self.version == 0:
            self.student_token = envelope["payload"].get("student_token", "")
        step = step or _STEPS[envelope["type"]]
        self.steps[step] = at or datetime.fromisoformat(envelope["occurred_at"])
        self.version += 1


_SESSION_TOPIC = get_topic(TutoringSession)
_STEPS = {str(step): step for step in EventType}


def session_event(
    key: UUID, version: int, envelope: dict[str, Any], now: datetime | None = None
) -> DomainEvent:
    """The domain event `TutoringSession.request` (version 1) or `record` would append, built
    without running the aggregate: the same class, fields and stored form, so reading a
    session back through the repository replays it exactly as if the aggregate had.
    `now` (the event's creation time) defaults to the clock; a batch passes its own."""
    now = now or DomainEvent.create_timestamp()
    if version == 1:
        return TutoringSession.Requested(  # type: ignore[attr-defined,no-any-return]
            originator_id=key,
            originator_version=1,
            timestamp=now,
            originator_topic=_SESSION_TOPIC,
            envelope=envelope,
        )
    return TutoringSession.Stepped(  # type: ignore[attr-defined,no-any-return]
        originator_id=key, originator_version=version, timestamp=now, envelope=envelope
    )
