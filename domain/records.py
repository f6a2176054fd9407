"""Recording cohorts and grades: student ids tokenised at the door, one transaction each.

Both go through `Ledger.save_built`, so they are hash-chained, positioned and projected like
every other event, and the keys they issue commit with them or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from tutorledger.domain.batch import LedgerEntry
from tutorledger.domain.cohort import Cohort, cohort_envelope, cohort_key
from tutorledger.domain.envelope import body_digest
from tutorledger.domain.grades import Grade, GradeRecord, grade_envelope
from tutorledger.domain.ledger import Built, Ledger
from tutorledger.domain.tokens import tokenise


def _entry(aggregate: Aggregate, envelope: dict[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        aggregate.id,
        aggregate.version,
        UUID(envelope["event_id"]),
        envelope["district_id"],
        envelope,
        body_digest(envelope),
    )


def put_cohort(
    ledger: Ledger, district_id: str, cohort_id: str, name: str, student_ids: Sequence[str]
) -> tuple[int, int]:
    """Record a cohort's name and whole membership; returns (ledger position, size)."""
    size = len(set(student_ids))

    def build() -> Built:
        at = datetime.now(UTC)
        tokens, writes = tokenise(ledger.index, ledger.cipher, district_id, student_ids, at)
        envelope = cohort_envelope(district_id, cohort_id, name, list(tokens.values()), at)
        try:
            cohort: Cohort = ledger.repository.get(cohort_key(district_id, cohort_id))
            cohort.update(envelope)
        except AggregateNotFoundError:
            cohort = Cohort(envelope=envelope)
        return [cohort], [_entry(cohort, envelope)], writes

    recordings = ledger.save_built(build)
    return recordings[-1].notification.id, size


@dataclass(frozen=True)
class GradesRecorded:
    """What an import did: grades newly recorded, and those already in the ledger."""

    recorded: int
    unchanged: int
    position: int | None


def record_grades(ledger: Ledger, district_id: str, grades: Sequence[Grade]) -> GradesRecorded:
    """Record every grade not yet in the ledger, all in one transaction (or none)."""
    unchanged = 0

    def build() -> Built:
        nonlocal unchanged
        at = datetime.now(UTC)
        ids = [g.student_id for g in grades]
        tokens, writes = tokenise(ledger.index, ledger.cipher, district_id, ids, at)
        envelopes: dict[UUID, dict[str, Any]] = {}
        for g in grades:
            envelope = grade_envelope(district_id, tokens[g.student_id], g, at)
            envelopes.setdefault(UUID(envelope["event_id"]), envelope)
        seen = ledger.index.lookup_event_ids(list(envelopes))
        fresh = [e for key, e in envelopes.items() if key not in seen]
        unchanged = len(grades) - len(fresh)
        used = {e["payload"]["student_token"] for e in fresh}
        writes.issued = [(k, s) for k, s in writes.issued if k.token in used]
        writes.activity = {t: a for t, a in writes.activity.items() if t in used}
        records = [GradeRecord(envelope=e) for e in fresh]
        # Linked to the student's key like their sessions: the record export includes them.
        writes.sessions = [(r.envelope["payload"]["student_token"], r.id) for r in records]
        return list(records), [_entry(r, e) for r, e in zip(records, fresh, strict=True)], writes

    recordings = ledger.save_built(build)
    position = recordings[-1].notification.id if recordings else None
    return GradesRecorded(len(grades) - unchanged, unchanged, position)
