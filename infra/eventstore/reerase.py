"""Erasures applied again to a restored store, before anything serves it.

Two sources, because a backup can be older than an erasure:
- the erasures the restored ledger records: their keys are destroyed again (already NULL in
  a consistent copy; this makes sure, whatever the copy's history);
- the erasure journal, kept outside the store and its backups (erasure_journal.py): an
  erasure the restored ledger lacks happened after the backup, so the student's key, still
  in the backup, is destroyed now through the normal path, which records the erasure in the
  ledger again (a new event, same token and reason) in the same transaction. A journaled
  token the restored store never knew (a student first seen after the backup) has nothing
  to destroy: counted, not an error.
Afterwards the store is scrubbed (the destroyed keys' bytes are overwritten).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from tutorledger.domain.erasure import StudentErasure
from tutorledger.domain.errors import NotFound
from tutorledger.domain.ledger import Ledger
from tutorledger.infra.eventstore.audit import envelope_of
from tutorledger.infra.eventstore.erasure_journal import JournaledErasure
from tutorledger.infra.eventstore.recorders import (
    LedgerRecorder,
    store_of,
    tuple_cursor,
)
from tutorledger.infra.eventstore.sqlite import SQLiteLedgerRecorder
from tutorledger.infra.eventstore.vault import sqlite_time

# The stored topic of the erasure event (the class the library made of its `@event`).
ERASED_TOPIC = get_topic(StudentErasure) + ".Erased"


@dataclass
class ErasureReport:
    """What a restore did about erasures (counts of students; tokens name nobody)."""

    in_ledger: int = 0
    keys_destroyed_again: int = 0
    journaled: int = 0
    erased_after_backup: list[int] = field(default_factory=list)  # new erasure positions
    unknown_to_backup: int = 0
    settled: bool = True  # PostgreSQL: no older transaction was running at the scrub

    def as_dict(self) -> dict[str, int]:
        return {
            "erasures_in_ledger": self.in_ledger,
            "keys_destroyed_again": self.keys_destroyed_again,
            "journaled_erasures": self.journaled,
            "erased_after_backup": len(self.erased_after_backup),
            "journaled_unknown_to_backup": self.unknown_to_backup,
            "scrub_after_older_transactions": int(self.settled),
        }


def erasures_in_ledger(ledger: Ledger) -> set[tuple[str, str]]:
    """(district, token) of every erasure event the ledger holds."""
    recorder = store_of(ledger)
    sqlite = isinstance(recorder, SQLiteLedgerRecorder)
    mark = "?" if sqlite else "%s"
    table = recorder.events_table_name  # PostgreSQL: the application's own events table
    if not sqlite:
        table = f'"{recorder.datastore.schema}"."{table}"'
    columns = "originator_id, originator_version, topic, state"
    sql = f"SELECT {columns} FROM {table} WHERE topic = {mark}"
    with tuple_cursor(recorder, commit=False) as c:
        c.execute(sql, (ERASED_TOPIC,))
        rows = c.fetchall()
    found: set[tuple[str, str]] = set()
    for r in rows:
        stored = StoredEvent(UUID(str(r[0])), r[1], r[2], bytes(r[3]))
        envelope = envelope_of(ledger.mapper, stored)
        found.add((envelope["district_id"], envelope["payload"]["student_token"]))
    return found


def destroy_keys(recorder: LedgerRecorder, tokens: Iterable[str]) -> int:
    """NULL the key and id lookup of each token whose key is still there; how many were."""
    sqlite = isinstance(recorder, SQLiteLedgerRecorder)
    mark = "?" if sqlite else "%s"
    now: object = sqlite_time(datetime.now(UTC)) if sqlite else datetime.now(UTC)
    destroyed = 0
    with tuple_cursor(recorder, commit=True) as c:
        if sqlite:
            c.execute("PRAGMA secure_delete = ON")
        for token in tokens:
            c.execute(
                f"UPDATE student_keys SET secret = NULL, lookup = NULL, "
                f"erased_at = COALESCE(erased_at, {mark}) "
                f"WHERE token = {mark} AND (secret IS NOT NULL OR lookup IS NOT NULL)",
                (now, token),
            )
            destroyed += max(c.rowcount, 0)
    return destroyed


def reapply_erasures(ledger: Ledger, journal: Iterable[JournaledErasure]) -> ErasureReport:
    """Destroy again every key the ledger or the journal says was erased (see module doc)."""
    report = ErasureReport()
    recorded = erasures_in_ledger(ledger)
    report.in_ledger = len(recorded)
    report.keys_destroyed_again = destroy_keys(store_of(ledger), sorted(t for _, t in recorded))
    seen: set[tuple[str, str]] = set()
    for entry in journal:
        pair = (entry.district_id, entry.token)
        if pair in seen:
            continue
        seen.add(pair)
        if pair in recorded:
            continue
        try:
            position = ledger.erase(entry.district_id, entry.token, entry.reason, scrub=False)
        except NotFound:
            report.unknown_to_backup += 1
            continue
        if position is not None:
            report.erased_after_backup.append(position)
    report.journaled = len(seen)
    report.settled = ledger.index.scrub()
    return report
