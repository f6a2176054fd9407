"""One batch of envelopes applied to its sessions: lifecycle, idempotency and sealing.

Each event stands or falls alone. An accepted event is sealed under its student's key (a new
student gets a new token and key, written with the events); its idempotency digest is keyed
by the same key, so a resend is recognised while nothing unkeyed about the plaintext is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple, Protocol
from uuid import UUID

from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import StoredEvent
from pydantic import ValidationError

from tutorledger.domain import privacy
from tutorledger.domain.envelope import EventType, canonical_json, parse_envelope, parse_envelopes
from tutorledger.domain.errors import (
    EventIdConflict,
    InvalidEvent,
    Rejection,
    StudentErased,
    UnmigratedLedger,
)
from tutorledger.domain.privacy import Cipher, KeyWrites, StudentKey
from tutorledger.domain.provenance import PROVENANCE_FIELD
from tutorledger.domain.session import SessionState, check_step, session_event

Status = Literal["accepted", "duplicate", "rejected"]
ERASED_MESSAGE = "this session's student was erased; nothing more is recorded for it"


class Outcome(NamedTuple):
    """What happened to one submitted event, in request order. (Immutable tuples: one of
    these and one LedgerEntry are made per event, and a frozen dataclass costs more.)"""

    event_id: str | None
    status: Status
    position: int | None = None
    error: Rejection | None = None


class LedgerEntry(NamedTuple):
    """Index facts the store keeps beside each stored event (idempotency key, chain input)."""

    originator_id: UUID
    originator_version: int
    event_id: UUID
    district_id: str
    canonical: dict[str, Any]
    digest: bytes


@dataclass(frozen=True)
class BatchSnapshot:
    """What a batch needs from the store, read in one consistent snapshot."""

    stored: list[StoredEvent]
    seen: dict[UUID, tuple[int, bytes]]  # already-stored event id -> (position, digest)
    keys: dict[str, StudentKey]  # token -> key, for the batch's sessions and students
    tokens: dict[tuple[str, str], str]  # (district, student id) -> token, live students only
    versions: dict[UUID, int] = field(default_factory=dict)  # known session -> stored version


class LedgerIndex(Protocol):
    """Port to the store's index of event ids and its student key table (the recorder)."""

    def lookup_event_ids(self, event_ids: Sequence[UUID]) -> dict[UUID, tuple[int, bytes]]:
        """Map already-stored event ids to (position, body digest)."""
        ...

    def read_batch(
        self,
        originator_ids: Sequence[UUID],
        event_ids: Sequence[UUID],
        students: Sequence[tuple[str, str]] = (),
        known: Sequence[UUID] = (),
    ) -> BatchSnapshot:
        """The batch's sessions (stored events of `originator_ids`, only the stored version
        of `known` ones), already-stored ids and student keys, from one snapshot."""
        ...

    def student_keys(self, tokens: Sequence[str]) -> dict[str, StudentKey]:
        """Keys by token (erased ones with `secret` None; unknown tokens absent)."""
        ...

    def find_student(self, district_id: str, student_id: str) -> StudentKey | None:
        """The live key of a district's student id (None: unknown, or erased)."""
        ...

    def scrub(self) -> bool:
        """Make destroyed keys unrecoverable from the store's files (after an erasure). False
        when a reader older than the call outlived the store's wait: its old row versions
        may survive until the next scrub."""
        ...

    def exclusive_writes(self) -> AbstractContextManager[None]:
        """While held, no other writer (in any process) commits an append: a writer that
        lost a race reads, judges and appends inside it, so it cannot lose again."""
        ...


@dataclass(frozen=True)
class InBatchDuplicate:
    original: LedgerEntry


@dataclass
class Batch:
    """A batch's view of its sessions and students, and what it will append.

    Sessions are checked as `SessionState` (steps, token, version), not replayed aggregates:
    the rule is the same `check_step` the aggregate applies, and `events` are the very domain
    events the aggregate would have appended (`session_event`)."""

    sessions: dict[UUID, SessionState | None] = field(default_factory=dict)
    entries: list[LedgerEntry] = field(default_factory=list)
    events: list[DomainEvent] = field(default_factory=list)
    seen: dict[UUID, tuple[int, bytes]] = field(default_factory=dict)
    accepted: dict[UUID, LedgerEntry] = field(default_factory=dict)
    keys: dict[str, StudentKey] = field(default_factory=dict)
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    writes: KeyWrites = field(default_factory=KeyWrites)
    encode: privacy.Encode = canonical_json
    created: datetime = field(default_factory=DomainEvent.create_timestamp)  # the events' time
    # Who posted the batch (domain/provenance.py): stored, and chained, in each accepted event.
    provenance: dict[str, Any] | None = None

    def apply(
        self, env: Any, key: UUID, cipher: Cipher, canonical: dict[str, Any] | None = None
    ) -> Outcome | LedgerEntry | InBatchDuplicate:
        """Apply one valid envelope to its session (`key`); a LedgerEntry means accepted.
        `canonical` is `env.canonical()` when the caller made it already."""
        canonical = env.canonical() if canonical is None else canonical
        session = self.sessions[key]
        student = self._student_of(env, session)
        if student is not None and student.erased:
            return Outcome(str(env.event_id), "rejected", error=StudentErased(ERASED_MESSAGE))
        if env.event_id in self.seen:
            return self._resent(env, student, canonical, cipher)
        step: EventType = env.type  # validated: already the member
        problem = check_step(None if session is None else session.steps, step, env.occurred_at)
        if problem is not None:
            return Outcome(str(env.event_id), "rejected", error=problem)
        if student is None:  # a request from a student this district has not sent before
            student = self._issue(env, cipher)
        digest = privacy.digest(student, canonical, cipher, self.encode)
        stored = privacy.seal(canonical, student, cipher, self.encode)
        if self.provenance is not None:  # after the digest: a resend via another key is a duplicate
            stored = {**stored, PROVENANCE_FIELD: self.provenance}
        if session is None:
            session = self.sessions[key] = SessionState(student.token, {})
            self.writes.sessions.append((student.token, key))
        session.note(stored, step, env.occurred_at)
        self.events.append(session_event(key, session.version, stored, self.created))
        self.writes.touch(student.token, env.occurred_at)
        # -1: accepted earlier in this batch; its position is known only after the save.
        self.seen[env.event_id] = (-1, digest)
        entry = LedgerEntry(key, session.version, env.event_id, env.district_id, stored, digest)
        self.entries.append(entry)
        self.accepted[env.event_id] = entry
        return entry

    def _resent(
        self, env: Any, student: StudentKey | None, canonical: dict[str, Any], cipher: Cipher
    ) -> Outcome | InBatchDuplicate:
        """An event id already stored: the same body is a duplicate, another is a conflict."""
        position, stored_digest = self.seen[env.event_id]
        same = (
            student is not None
            and privacy.digest(student, canonical, cipher, self.encode) == stored_digest
        )
        if not same:
            conflict = EventIdConflict("event_id already recorded with a different body")
            return Outcome(str(env.event_id), "rejected", error=conflict)
        if env.event_id in self.accepted:
            return InBatchDuplicate(self.accepted[env.event_id])
        return Outcome(str(env.event_id), "duplicate", position)

    def _student_of(self, env: Any, session: SessionState | None) -> StudentKey | None:
        """The key of the session's student (or, for a new session, of the requesting id)."""
        if session is not None:
            key = self.keys.get(session.student_token)
            if key is None:
                raise UnmigratedLedger(
                    "this session has no student key: the ledger predates sealed storage "
                    "(run `tutorledger migrate-ledger`)"
                )
            return key
        if env.type != EventType.REQUESTED:
            return None
        token = self.tokens.get((env.district_id, env.payload.student_id))
        return self.keys.get(token) if token is not None else None

    def _issue(self, env: Any, cipher: Cipher) -> StudentKey:
        """A new token and data key, stored with the events in the same transaction."""
        student = StudentKey(env.district_id, cipher.new_token(), cipher.new_key())
        self.keys[student.token] = student
        self.tokens[(env.district_id, env.payload.student_id)] = student.token
        self.writes.issued.append((student, env.payload.student_id))
        return student


def _validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def parse_batch(raws: Sequence[Any]) -> list[tuple[Any, Any]]:
    """Each raw envelope with its validated form or the InvalidEvent saying why not."""
    valid = parse_envelopes(raws)
    if valid is not None:
        return list(zip(raws, valid, strict=True))
    parsed: list[tuple[Any, Any]] = []
    for raw in raws:
        try:
            parsed.append((raw, parse_envelope(raw)))
        except ValidationError as exc:
            problem = InvalidEvent("event failed validation", _validation_details(exc))
            parsed.append((raw, problem))
    return parsed
