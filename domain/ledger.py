"""The Ledger application: validates envelopes, applies lifecycle rules, appends idempotently."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ApplicationRecorder, IntegrityError, Recording, StoredEvent

from tutorledger.domain import privacy
from tutorledger.domain.batch import (
    Batch,
    InBatchDuplicate,
    LedgerEntry,
    LedgerIndex,
    Outcome,
    Status,
    parse_batch,
)
from tutorledger.domain.envelope import (
    EventType,
    body_digest,
    canonical_forms,
    canonical_json,
)
from tutorledger.domain.erasure import StudentErasure, erasure_envelope
from tutorledger.domain.errors import NotFound, Rejection
from tutorledger.domain.gc_pause import paused_gc
from tutorledger.domain.migration import verbatim_record
from tutorledger.domain.privacy import Cipher, KeyWrites
from tutorledger.domain.provenance import Provenance
from tutorledger.domain.school import SCHOOL_EVENT_TYPE, School, school_key
from tutorledger.domain.session import SessionState, TutoringSession, session_key
from tutorledger.domain.session_cache import DEFAULT_SIZE, SessionCache
from tutorledger.domain.write_retry import Pause, retried

__all__ = ["Ledger", "LedgerEntry", "LedgerIndex", "Outcome"]  # the batch types live in batch.py
_T = TypeVar("_T")
# What a record-building callback hands `Ledger.save_built`: aggregates, entries, key writes.
Built = tuple[list[Aggregate], list[LedgerEntry], KeyWrites | None]
# How the composing adapter finds the index port on the recorder the library built from `env`.
IndexOf = Callable[[ApplicationRecorder], LedgerIndex]


class ErasureJournal(Protocol):
    """Where an erasure is written down before its transaction, outside the store, so a
    restore from a backup taken earlier can destroy the key again (docs/operations.md)."""

    def record(self, district_id: str, token: str, reason: str, at: str) -> None:
        """Append (district, token, reason, time) durably; raise if it cannot."""
        ...


def _raw_event_id(raw: Any) -> str | None:
    value = raw.get("event_id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


class Ledger(Application[UUID]):
    """System of record: each event stands or falls alone; the same event_id is stored once."""

    name = "tutorledger"

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        cipher: Cipher,
        index_of: IndexOf,
        encode: privacy.Encode = canonical_json,
        session_cache_size: int = DEFAULT_SIZE,
        pause: Pause = time.sleep,
        erasures: ErasureJournal | None = None,
    ) -> None:
        super().__init__(env=env)
        self.erasures = erasures  # None: erasures are kept only in the store
        # The store's index and key table, reached through the recorder `env` configured;
        # `index_of` refuses a recorder that has none, so a misconfigured store fails here.
        self.index: LedgerIndex = index_of(self.recorder)
        self._pause = pause  # the wait between a lost write race and the next attempt
        self.cipher = cipher
        self.encode = encode
        self._write_lock = threading.Lock()
        self.session_cache = SessionCache(session_cache_size)

    def record_events(
        self, raws: Sequence[Any], provenance: Provenance | None = None
    ) -> list[Outcome]:
        """Validate and append a batch; retried whole when another writer wins a race.
        `provenance` (who posted it) is stored and chained in every event it accepts."""
        with paused_gc():
            return self._record_events(raws, None if provenance is None else provenance.record())

    def _record_events(
        self, raws: Sequence[Any], provenance: dict[str, Any] | None
    ) -> list[Outcome]:
        parsed = parse_batch(raws)
        with self._write_lock:
            return self._retried(
                lambda: self._record_once(parsed, provenance),
                "append kept losing write races; retry later",
            )

    def _retried(self, write: Callable[[], _T], message: str) -> _T:
        """`write()`; after a lost write race, again in the store's exclusive turn, where no
        other process can commit between its read and its append. (Further losses, only
        possible beside a writer that takes no turns, wait a jittered, growing time.)"""
        try:
            return write()
        except IntegrityError:
            self._pause(0.0)
        with self.index.exclusive_writes():
            return retried(write, message, pause=self._pause)

    def _record_once(
        self, parsed: list[tuple[Any, Any]], provenance: dict[str, Any] | None = None
    ) -> list[Outcome]:
        batch = Batch(encode=self.encode, provenance=provenance)
        keys = [
            None if isinstance(env, Rejection) else session_key(env.district_id, env.session_id)
            for _, env in parsed
        ]
        valid = [env for _, env in parsed if not isinstance(env, Rejection)]
        if valid:
            self._read_state(batch, valid, list(dict.fromkeys(k for k in keys if k is not None)))
        results: list[Outcome | LedgerEntry | InBatchDuplicate] = []
        canonical = iter(canonical_forms(valid))
        for (raw, env), key in zip(parsed, keys, strict=True):
            if key is None:
                results.append(Outcome(_raw_event_id(raw), "rejected", error=env))
            else:
                results.append(batch.apply(env, key, self.cipher, next(canonical)))
        try:
            positions = self._save(batch)
        except BaseException:
            self.session_cache.forget(batch.sessions)  # committed or not: the store will tell
            raise
        self.session_cache.remember(batch.sessions)
        outcomes: list[Outcome] = []
        for r in results:
            if isinstance(r, Outcome):
                outcomes.append(r)
                continue
            status: Status = "accepted" if isinstance(r, LedgerEntry) else "duplicate"
            entry = r if isinstance(r, LedgerEntry) else r.original
            position = positions[(entry.originator_id, entry.originator_version)]
            outcomes.append(Outcome(str(entry.event_id), status, position))
        return outcomes

    def _read_state(self, batch: Batch, valid: list[Any], sessions: list[UUID]) -> None:
        """Fill `batch` with what its events are judged against, from one store snapshot: a
        resend another writer just committed must be seen as a duplicate by id, never judged
        against a session state that already contains it. Sessions this ledger recorded are
        taken from its cache when their stored version says nothing changed since."""
        students = sorted(
            {(env.district_id, env.payload.student_id)
             for env in valid if env.type == EventType.REQUESTED}
        )  # fmt: skip
        event_ids = [env.event_id for env in valid]
        while True:
            cached = self.session_cache.versions(sessions)
            unread = [k for k in sessions if k not in cached]
            snapshot = self.index.read_batch(unread, event_ids, students, list(cached))
            fresh, stale = self.session_cache.checkout(snapshot.versions, cached)
            if not stale:  # else read again, those sessions in full, for one snapshot
                break
        batch.seen = dict(snapshot.seen)
        batch.keys, batch.tokens = dict(snapshot.keys), dict(snapshot.tokens)
        batch.sessions = dict.fromkeys(sessions)
        batch.sessions.update(self._replay(snapshot.stored))
        batch.sessions.update(fresh)

    def _replay(self, stored_events: list[StoredEvent]) -> dict[UUID, SessionState]:
        """The lifecycle state of every existing session of a batch, from its stored events
        (in version order): what the rule needs, without rebuilding aggregates."""
        states: dict[UUID, SessionState] = {}
        for stored in stored_events:
            key = stored.originator_id
            key = key if isinstance(key, UUID) else UUID(str(key))
            # The library types what it decodes as a bare DomainEvent; ours carry `envelope`.
            envelope = self.mapper.to_domain_event(stored).envelope  # type: ignore[attr-defined]
            states.setdefault(key, SessionState("", {})).note(envelope)
        return states

    def _save(self, batch: Batch) -> dict[tuple[UUID, int], int]:
        """Append the batch's events, its index entries and key writes in one transaction."""
        if not batch.entries:
            return {}
        # The library's own path from domain events to the recorder (what `save` does with
        # the events it collects from aggregates), for events built without aggregates.
        stored = [self.mapper.to_stored_event(event) for event in batch.events]
        positions = self.recorder.insert_events(
            stored, ledger_entries=batch.entries, key_writes=batch.writes
        )
        assert positions is not None and len(positions) == len(stored)
        return {
            (e.originator_id, e.originator_version): p
            for e, p in zip(batch.entries, positions, strict=True)
        }

    def put_school(
        self, district_id: str, school_id: str, name: str, enrollment: dict[str, int], as_of: date
    ) -> int:
        """Record a school's name and enrolment; returns the ledger position."""
        return self.put_schools(district_id, [(school_id, name, enrollment)], as_of)[school_id]

    def put_schools(
        self, district_id: str, updates: Sequence[tuple[str, str, dict[str, int]]], as_of: date
    ) -> dict[str, int]:
        """Record (school_id, name, enrolment) of several schools in one transaction: a roster
        is recorded whole or not at all. Returns each school's ledger position."""
        if not updates:
            return {}
        recorded_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")

        def attempt() -> dict[str, int]:
            pairs = [
                self._school_update(district_id, *update, as_of, recorded_at) for update in updates
            ]
            recordings = self.save(*(s for s, _ in pairs), ledger_entries=[e for _, e in pairs])
            by_key = {r.domain_event.originator_id: r.notification.id for r in recordings}
            return {s.school_id: by_key[s.id] for s, _ in pairs}

        with self._write_lock:
            return self._retried(attempt, "could not record school after write conflicts")

    def _school_update(
        self,
        district_id: str,
        school_id: str,
        name: str,
        enrollment: dict[str, int],
        as_of: date,
        recorded_at: str,
    ) -> tuple[School, LedgerEntry]:
        event_id = uuid4()
        canonical: dict[str, Any] = {
            "event_id": str(event_id),
            "type": SCHOOL_EVENT_TYPE,
            "schema_version": 1,
            "district_id": district_id,
            "school_id": school_id,
            "occurred_at": recorded_at,
            "payload": {"name": name, "enrollment": enrollment, "as_of": as_of.isoformat()},
        }
        key = school_key(district_id, school_id)
        try:
            school: School = self.repository.get(key)
            school.update(canonical)
        except AggregateNotFoundError:
            school = School(envelope=canonical)
        digest = body_digest(canonical)
        return school, LedgerEntry(key, school.version, event_id, district_id, canonical, digest)

    def append_verbatim(self, envelopes: Sequence[dict[str, Any]]) -> int:
        """Append school updates and migration markers as given (event ids and times kept),
        in one transaction; ids already stored are skipped. For `migrate-ledger` only: such
        events carry no personal fields. Returns how many were appended."""
        with self._write_lock:
            seen = self.index.lookup_event_ids([UUID(e["event_id"]) for e in envelopes])
            pairs = [
                verbatim_record(e, self.get_school)
                for e in envelopes
                if UUID(e["event_id"]) not in seen
            ]
            if pairs:
                self.save(*(a for a, _ in pairs), ledger_entries=[e for _, e in pairs])
            return len(pairs)

    def save_built(self, build: Callable[[], Built]) -> list[Recording[UUID]]:
        """Save what `build` returns under the write lock, in one transaction; `build` runs
        again after a lost write race, so it must read the state it depends on afresh."""

        def attempt() -> list[Recording[UUID]]:
            aggregates, entries, writes = build()
            if not entries:
                return []
            return self.save(*aggregates, ledger_entries=entries, key_writes=writes)

        with self._write_lock:
            return self._retried(
                attempt, "could not record after repeated write conflicts; retry later"
            )

    def get_session(self, district_id: str, session_id: str) -> TutoringSession | None:
        try:
            session: TutoringSession = self.repository.get(session_key(district_id, session_id))
        except AggregateNotFoundError:
            return None
        return session

    def get_school(self, district_id: str, school_id: str) -> School | None:
        try:
            school: School = self.repository.get(school_key(district_id, school_id))
        except AggregateNotFoundError:
            return None
        return school

    def erase(self, district_id: str, token: str, reason: str, *, scrub: bool = True) -> int | None:
        """Record the erasure and destroy the key in one transaction; returns the erasure's
        ledger position, or None when the student was erased already. `scrub=False` leaves
        the store's clean-up to the caller (one `index.scrub()` after many erasures)."""
        canonical = erasure_envelope(district_id, token, reason)

        def attempt() -> int | None:
            key = self.index.student_keys([token]).get(token)
            if key is None or key.district_id != district_id:
                raise NotFound(f"no student with that token in district '{district_id}'")
            if key.erased:
                return None
            if self.erasures is not None:  # before the commit: no committed erasure unjournaled
                self.erasures.record(district_id, token, reason, canonical["occurred_at"])
            record = StudentErasure(envelope=canonical)
            event_id = UUID(canonical["event_id"])
            digest = body_digest(canonical)
            entry = LedgerEntry(record.id, record.version, event_id, district_id, canonical, digest)
            writes = KeyWrites(erased=[token])
            recordings = self.save(record, ledger_entries=[entry], key_writes=writes)
            return recordings[-1].notification.id

        with self._write_lock:
            position = self._retried(attempt, "could not record the erasure after write conflicts")
        if scrub and position is not None:  # outside the lock: it may wait for old readers
            self.index.scrub()
        return position

    def open_stored(self, events: Sequence[dict[str, Any]]) -> list[privacy.Opened]:
        """Stored events read back for a person: decrypted, or their personal fields erased."""
        tokens = sorted({t for e in events if (t := privacy.token_of(e)) is not None})
        keys = self.index.student_keys(tokens) if tokens else {}
        return [privacy.unseal(e, keys.get(privacy.token_of(e) or ""), self.cipher) for e in events]
